"""The synthetic "modes" family (what the sources never see has K known answers), the training
views that go with it, and the scores of predictions against the alternatives."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from accelerate import PartialState

from lagernvs.config import from_dict
from lagernvs.data.config import DataConfig
from lagernvs.data.readers import load_scene
from lagernvs.data.synthetic import (
    MIN_SHOWN_FRACTION,
    MODE_COLORS,
    NUM_MODES,
    PATTERNS,
    alternative_texture,
    cast_world_views,
    hidden_mask,
    render_modes_scene,
    render_synthetic_scene,
    smooth_materials,
    unproject_depth,
    write_synthetic_dataset,
)
from lagernvs.data.training_stream import FixedContextSampler, prepare_synthetic_shards
from lagernvs.data.views import SceneTooShortError, sampler_preset
from lagernvs.evaluation.modes import (
    alternative_distances,
    alternatives_differ,
    chosen_alternative,
    mode_coverage,
    mode_error,
)

H = W = 32


@pytest.fixture(scope="module")
def scene():
    return render_modes_scene(seed=11, num_frames=10, height=H, width=W)


def test_alternatives_differ_exactly_where_the_sources_do_not_look(scene) -> None:
    k, n = NUM_MODES, 10
    assert scene.alternatives.shape == (k, n, 3, H, W) and scene.hidden.shape == (n, H, W)
    assert torch.equal(scene.images, scene.alternatives[scene.mode])
    assert scene.sources == (3, 6) and not scene.hidden[list(scene.sources)].any()
    spread = (scene.alternatives - scene.alternatives[:1]).abs().amax(dim=(0, 2))  # (N, H, W)
    assert bool((spread[~scene.hidden] == 0).all())  # seen surfaces keep the world's textures
    assert bool(alternatives_differ(scene.alternatives.transpose(0, 1))[scene.hidden].all())
    # Each alternative has its own hue: its mean colour over the hidden pixels is dominated by
    # the channel its MODE_COLORS entry is brightest in.
    for mode in range(k):
        mean = scene.alternatives[mode].permute(1, 0, 2, 3)[:, scene.hidden].mean(dim=1)
        assert int(mean.argmax()) == int(np.argmax(MODE_COLORS[mode]))
    again = render_modes_scene(seed=11, num_frames=10, height=H, width=W)
    assert torch.equal(again.alternatives, scene.alternatives) and again.mode == scene.mode


def test_hidden_surface_is_a_property_of_the_3d_point(scene) -> None:
    """A pixel of frame 0 that frame 1 sees unoccluded has the same hidden flag in frame 1."""
    src, dst = 0, 1
    points = unproject_depth(scene.depth[src], scene.c2w[src], scene.fxfycxcy[src])
    w2c = torch.linalg.inv(scene.c2w[dst])
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    fx, fy, cx, cy = scene.fxfycxcy[dst].tolist()
    x, y = fx * cam[..., 0] / cam[..., 2] + cx, fy * cam[..., 1] / cam[..., 2] + cy
    col, row = x.floor().long(), y.floor().long()
    inside = (cam[..., 2] > 0) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
    col, row = col.clamp(0, W - 1), row.clamp(0, H - 1)
    visible = inside & ((scene.depth[dst][row, col] - cam[..., 2]).abs() < 0.02 * cam[..., 2])
    agree = scene.hidden[src] == scene.hidden[dst][row, col]
    assert visible.sum() > 100
    assert float(agree[visible].float().mean()) > 0.97  # up to pixel rounding at the edges


def test_extrapolated_frames_look_at_much_that_the_sources_do_not_see() -> None:
    fractions = torch.stack(
        [render_modes_scene(seed, height=H, width=W).hidden.float().mean(dim=(1, 2))
         for seed in range(6)]
    ).mean(dim=0)  # fmt: skip
    assert 0.25 < float(fractions[[0, 9]].mean()) < 0.6, fractions
    assert float(fractions[[4, 5]].mean()) < 0.1, fractions  # between the sources: seen


def test_same_world_as_the_default_family_and_textures_are_the_fixed_set(scene) -> None:
    plain = render_synthetic_scene(seed=11, num_frames=10, height=H, width=W)
    assert _is_subset(scene.world.spheres, plain.world.spheres)  # less the ones no source shows
    assert torch.allclose(plain.c2w[:, :3, 3], scene.c2w[:, :3, 3])  # same path, panned views
    assert not torch.allclose(plain.c2w[0, :3, :3], scene.c2w[0, :3, :3])
    points = torch.randn(5, 3, dtype=torch.float64)
    for mode in range(NUM_MODES):
        colour = alternative_texture(points, mode)
        hue = torch.tensor(MODE_COLORS[mode], dtype=torch.float64)
        assert bool(((colour / hue) <= 1.0 + 1e-9).all() and ((colour / hue) >= 0.69).all())
    with pytest.raises(ValueError, match="mode must be in"):
        alternative_texture(points, NUM_MODES)
    with pytest.raises(ValueError, match="sources must be frame indices"):
        render_modes_scene(seed=1, num_frames=4, height=H, width=W, sources=(3, 6))
    mask = hidden_mask(scene.depth, scene.c2w, scene.fxfycxcy, [0])
    assert not mask[0].any() and mask.any()


def test_seen_surfaces_are_smooth_gradients_of_the_same_geometry(scene) -> None:
    """The family keeps the default world's geometry and colours but makes every material a slow
    gradient, so neighbouring seen pixels differ much less than with checkers and stripes."""
    plain = render_synthetic_scene(seed=11, num_frames=10, height=H, width=W)
    assert _is_subset(scene.world.colors_a, plain.world.colors_a)
    assert (scene.world.patterns == PATTERNS.index("gradient")).all()
    assert bool((scene.world.frequencies < 0.5 + 1e-9).all())
    smooth = smooth_materials(plain.world, 11)
    assert _is_subset(scene.world.frequencies[:, None], smooth.frequencies[:, None])
    seen = ~scene.hidden[:, :, 1:] & ~scene.hidden[:, :, :-1]

    def mean_step(images: torch.Tensor) -> float:  # between horizontal neighbours, seen pixels
        return float((images[..., 1:] - images[..., :-1]).abs().amax(dim=1)[seen].mean())

    assert mean_step(scene.images) < 0.5 * mean_step(plain.images)


def _is_subset(rows: torch.Tensor, of: torch.Tensor) -> bool:
    """Every row of `rows` (R, C) is a row of `of`, in the same order."""
    matches = [int(i) for row in rows for i in (of == row).all(dim=1).nonzero()[:1].flatten()]
    return len(matches) == len(rows) and matches == sorted(matches)


def test_objects_no_source_shows_are_dropped() -> None:
    """What no source saw must have only the K alternatives as its uncertainty: an object the
    sources never show (whose very presence nothing could tell) is not in the scene, every
    object left is shown by a source, and the sources' views are those of the full world."""
    dropped = 0
    for seed in range(8):
        scene = render_modes_scene(seed, height=H, width=W)
        full = render_synthetic_scene(seed, num_frames=10, height=H, width=W).world
        full = smooth_materials(full, seed)
        sources = list(scene.sources)
        c2w, fxfycxcy = scene.c2w[sources], scene.fxfycxcy[sources]
        kept = scene.world.spheres.shape[0] + scene.world.box_centers.shape[0]
        total = full.spheres.shape[0] + full.box_centers.shape[0]
        dropped += total - kept
        assert _is_subset(scene.world.spheres, full.spheres)
        assert _is_subset(scene.world.box_centers, full.box_centers)
        shown = cast_world_views(scene.world, c2w, fxfycxcy, H, W)[0].objects
        pixels = torch.bincount(shown.flatten(), minlength=kept + 1)[1:]
        assert bool((pixels >= MIN_SHOWN_FRACTION * H * W).all()), (seed, pixels)
        before = cast_world_views(full, c2w, fxfycxcy, H, W)[0].colors
        after = cast_world_views(scene.world, c2w, fxfycxcy, H, W)[0].colors
        changed = (before - after).abs().amax(dim=-1) > 1e-6
        assert int(changed.sum()) <= (total - kept) * MIN_SHOWN_FRACTION * H * W
    assert dropped > 0  # the rule matters: panned targets do look at objects no source shows


def test_written_modes_dataset_keeps_the_alternatives(tmp_path) -> None:
    ids = write_synthetic_dataset(
        tmp_path, 2, split="test", seed=5, num_frames=10, height=H, width=W, family="modes",
        save_depth=True, save_alternatives=True,
    )  # fmt: skip
    meta = json.loads((tmp_path / "test" / "metadata" / f"{ids[0]}.json").read_text())
    assert meta["modes"]["sources"] == [3, 6] and 0 <= meta["modes"]["mode"] < NUM_MODES
    stored = np.load(tmp_path / "test" / "modes" / f"{ids[0]}.npz")
    assert stored["alternatives"].shape == (NUM_MODES, 10, H, W, 3)
    assert stored["alternatives"].dtype == np.uint8 and stored["hidden"].shape == (10, H, W)
    scene = load_scene(tmp_path, "re10k", scene_id=ids[0], split="test")
    from lagernvs.data.images import load_images

    image = load_images(scene.image_paths[:1])[0]
    expected = torch.from_numpy(stored["alternatives"][int(stored["mode"]), 0]).permute(2, 0, 1)
    assert torch.allclose(image, expected.float() / 255.0, atol=1 / 255)
    with pytest.raises(ValueError, match="unknown synthetic family"):
        write_synthetic_dataset(tmp_path, 1, family="other")


def test_fixed_context_sampler_draws_targets_around_the_designated_sources() -> None:
    config = sampler_preset("re10k", "re10k", num_targets=4, context_as_target_prob=0.0)
    sampler = FixedContextSampler(config, [3, 6])
    rng = np.random.default_rng(0)
    assert sampler.draw_layout(rng).num_cond_views == 2
    drawn = [sampler.draw_views(10, 2, rng) for _ in range(200)]
    assert all(v.context == (3, 6) for v in drawn)
    targets = np.array([v.target for v in drawn])
    assert not np.isin(targets, [3, 6]).any()
    assert all(len(set(t)) == 4 for t in targets.tolist())
    assert set(np.unique(targets)) == {0, 1, 2, 4, 5, 7, 8, 9}
    repeat = FixedContextSampler(
        sampler_preset("re10k", "re10k", num_targets=4, context_as_target_prob=1.0), [3, 6]
    )
    assert all(set(repeat.draw_views(10, 2, rng).target) & {3, 6} for _ in range(20))
    with pytest.raises(SceneTooShortError):
        sampler.draw_views(7, 2, rng)


def test_config_picks_the_family_of_the_synthetic_shards(tmp_path) -> None:
    section = {
        "train": [{"context_frames": [3, 6], "sampler": {"num_targets": 2, "long_side": 32}}],
        "num_workers": 0,
        "synthetic": {"train_scenes": 2, "val_scenes": 1, "num_frames": 10, "image_size": 32,
                      "family": "modes", "sources": [3, 6]},
    }  # fmt: skip
    data = from_dict(DataConfig, section, "data")
    written = prepare_synthetic_shards(data, tmp_path, PartialState())
    assert written.train[0].shards.endswith("train-shards")
    settings = json.loads((tmp_path / "synthetic" / "settings.json").read_text())
    assert settings["family"] == "modes"
    other = from_dict(DataConfig, {**section, "synthetic": {**section["synthetic"], "seed": 9}})
    with pytest.raises(ValueError, match="other data.synthetic settings"):
        prepare_synthetic_shards(other, tmp_path, PartialState())
    with pytest.raises(ValueError, match="context_frames"):
        from_dict(DataConfig, {**section, "train": [{"context_frames": [3, 3]}]}, "data")
    with pytest.raises(ValueError, match="sources"):
        bad = {**section["synthetic"], "sources": [3, 12]}
        from_dict(DataConfig, {**section, "synthetic": bad}, "data")
    with pytest.raises(ValueError, match="family"):
        from_dict(DataConfig, {**section, "synthetic": {"family": "other"}}, "data")


def _alternatives() -> torch.Tensor:
    """(K=3, 3, 4, 4): pure red, green, blue images."""
    return torch.eye(3)[:, :, None, None].expand(3, 3, 4, 4).clone()


def test_mode_error_is_zero_on_an_alternative_and_large_on_the_blend() -> None:
    alternatives = _alternatives()
    mask = torch.ones(4, 4, dtype=torch.bool)
    assert float(mode_error(alternatives[1], alternatives, mask)) == 0.0
    blend = alternatives.mean(dim=0)  # (1/3, 1/3, 1/3): |1/3 - 1| + 2 |1/3 - 0| over 3
    assert float(mode_error(blend, alternatives, mask)) == pytest.approx(4 / 9)
    blurry = 0.7 * alternatives[2] + 0.3 * blend  # still much nearer blue than the blend is
    assert float(mode_error(blurry, alternatives, mask)) < 0.5 * 4 / 9
    assert int(chosen_alternative(blurry, alternatives, mask)) == 2
    assert alternative_distances(blend, alternatives).shape == (3, 4, 4)
    # Only masked pixels where the alternatives differ count; none left gives NaN and -1.
    same = alternatives.clone()
    same[:, :, :, :2] = 0.5
    left = torch.zeros(4, 4, dtype=torch.bool)
    left[:, :2] = True
    assert math.isnan(float(mode_error(blend, same, left)))
    assert int(chosen_alternative(blend, same, left)) == -1
    assert float(mode_error(blend, same, mask)) == pytest.approx(4 / 9)  # right half only


def test_choices_and_coverage_over_samples_and_targets() -> None:
    alternatives = _alternatives()[None].expand(2, 3, 3, 4, 4)  # (T=2, K, 3, H, W)
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    picks = torch.tensor([[0, 2], [0, 1], [0, 2]])  # (S=3, T=2) alternatives per sample
    samples = alternatives[torch.arange(2), picks] + 0.1 * torch.rand(3, 2, 3, 4, 4)
    choices = chosen_alternative(samples, alternatives, mask)
    assert torch.equal(choices, picks)
    coverage = mode_coverage(choices, 3)
    assert torch.allclose(coverage, torch.tensor([1 / 3, 2 / 3]))
    errors = mode_error(samples, alternatives, mask)
    assert errors.shape == (3, 2) and bool((errors < 0.1).all())
    none = mode_coverage(torch.full((3, 1), -1), 3)
    assert math.isnan(float(none[0]))
    with pytest.raises(ValueError, match="pred"):
        alternative_distances(torch.rand(4, 4), alternatives)
