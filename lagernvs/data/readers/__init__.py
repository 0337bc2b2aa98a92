"""Scene readers: Re10k (LVSM layout), DL3DV, NeRF/instant-ngp, COLMAP, LLFF -> `Scene`.

Entry points: :func:`load_scene` (one scene, format detected when not given),
:func:`list_scenes` (the scene ids under a dataset root) and :func:`detect_format`. One module
per format holds its layout and conversions; ``common.py`` what they share.

Every reader returns OpenCV camera-to-world poses and pixel intrinsics of the images actually on
disk, in float64, with frames ordered by image file name. Conversions:

* Re10k stores world-to-camera matrices: c2w is their float64 inverse.
* NeRF / instant-ngp / DL3DV store OpenGL camera-to-world: the camera y and z axes are flipped.
* COLMAP stores world-to-camera (qvec w x y z, tvec): c2w = [R^T | -R^T t].
* LLFF stores c2w columns as (down, right, back): OpenCV x = right, y = down, z = -back.

Intrinsics given for another resolution than the images read (DL3DV's full-resolution values
with ``images_4``, LLFF's hwf, COLMAP models with downscaled images) are scaled per axis by
(disk size / declared size); the principal point scales with them (corner-origin pixels).
"""

from lagernvs.data.readers.colmap import colmap_model_dir
from lagernvs.data.readers.common import IMAGE_EXTENSIONS, MissingImagesError
from lagernvs.data.readers.discover import SCENE_FORMATS, detect_format, list_scenes
from lagernvs.data.readers.load import load_scene

__all__ = [
    "IMAGE_EXTENSIONS",
    "SCENE_FORMATS",
    "MissingImagesError",
    "colmap_model_dir",
    "detect_format",
    "list_scenes",
    "load_scene",
]
