"""Procedural scenes with exact cameras: textured boxes and spheres in a room, ray cast in torch.

Tests, the demo model and benchmark sanity checks need images whose cameras, depth and
visibility are known exactly. A world is drawn from a seed (room, objects, procedural textures,
a camera trajectory like the Re10k ones: forward walks and arcs; `world.py`), rendered by a small
vectorised ray caster with view-independent Lambertian shading (`raycast.py`, `render.py`), its
depth reprojected into other views (`visibility.py`), and written in the Re10k LVSM layout read
by `lagernvs.data.load_scene` (`dataset.py`). The "modes" family (`modes.py`) gives what a
scene's designated source views do not see one of K known alternative textures, rendering all of
them, so that samples of unseen content can be scored against every plausible answer.

Conventions: OpenCV cameras (x right, y down, z forward), camera-to-world `c2w` (float64),
`fxfycxcy` in pixels with pixel (row i, column j) sampled at its centre (j + 0.5, i + 0.5) as in
`lagernvs.cameras.plucker_rays`; world z is up. Depth is z-depth (along the optical axis).
"""

from lagernvs.data.synthetic.dataset import FAMILIES, write_synthetic_dataset
from lagernvs.data.synthetic.modes import (
    MIN_SHOWN_FRACTION,
    MODE_COLORS,
    MODE_FRAMES,
    MODE_SOURCES,
    NUM_MODES,
    ModesRender,
    alternative_texture,
    drop_unshown_objects,
    hidden_mask,
    render_modes_scene,
    smooth_materials,
)
from lagernvs.data.synthetic.raycast import RayHits, cast_rays, shading
from lagernvs.data.synthetic.render import (
    SyntheticRender,
    cast_world_views,
    draw_cameras,
    render_synthetic_scene,
    render_world_views,
)
from lagernvs.data.synthetic.visibility import project_depth, unproject_depth, visibility_mask
from lagernvs.data.synthetic.world import (
    PATTERNS,
    ROOM_HI,
    ROOM_LO,
    TRAJECTORIES,
    SyntheticWorld,
    look_at,
    make_world,
    select_objects,
)

__all__ = [
    "FAMILIES",
    "MIN_SHOWN_FRACTION",
    "MODE_COLORS",
    "MODE_FRAMES",
    "MODE_SOURCES",
    "NUM_MODES",
    "PATTERNS",
    "ROOM_HI",
    "ROOM_LO",
    "TRAJECTORIES",
    "ModesRender",
    "RayHits",
    "SyntheticRender",
    "SyntheticWorld",
    "alternative_texture",
    "cast_rays",
    "cast_world_views",
    "draw_cameras",
    "drop_unshown_objects",
    "hidden_mask",
    "look_at",
    "make_world",
    "project_depth",
    "render_modes_scene",
    "render_synthetic_scene",
    "render_world_views",
    "select_objects",
    "shading",
    "smooth_materials",
    "unproject_depth",
    "visibility_mask",
    "write_synthetic_dataset",
]
