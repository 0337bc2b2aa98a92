"""View selection: the three index formats and the training sampler's properties/determinism."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lagernvs.data.views import (
    FixedViewSelector,
    SceneTooShortError,
    TrainViewSampler,
    ViewSamplerConfig,
    detect_index_format,
    make_generator,
    read_view_index,
    sampler_preset,
)

# ----------------------------------------------------------------------------- index files


def test_pixelsplat_index(shared_data_dir: Path) -> None:
    path = shared_data_dir / "splits" / "re10k_2v.json"
    entries = read_view_index(path)
    assert detect_index_format(json.loads(path.read_text())) == "pixelsplat"
    assert len(entries) == 6474 and len({e.scene for e in entries}) == 6474
    first = entries[0]
    assert (first.scene, first.context, first.target) == (
        "5aca87f95a9412c6",
        (58, 133),
        (84, 102, 129),
    )
    assert first.indices == [58, 133, 84, 102, 129]
    # pixelSplat's evaluation is interpolation: all targets between the two context frames.
    assert all(min(e.context) <= t <= max(e.context) for e in entries for t in e.target)
    assert read_view_index(path, format="lagernvs") == entries


def test_latentsplat_index(shared_data_dir: Path) -> None:
    entries = read_view_index(shared_data_dir / "splits" / "re10k_extra_latentsplat.json")
    assert len(entries) == 6424  # 7194 keys, 770 with an empty list are skipped
    assert entries[0].context == (58, 133) and entries[0].target == (13, 135, 141)
    # latentSplat's extrapolation split: every target outside the context range.
    assert all(not min(e.context) < t < max(e.context) for e in entries for t in e.target)


@pytest.mark.parametrize(
    ("name", "num_context"), [("dl3dv_2v", 2), ("dl3dv_4v", 4), ("dl3dv_6v", 6)]
)
def test_dl3dv_index(shared_data_dir: Path, name: str, num_context: int) -> None:
    path = shared_data_dir / "splits" / f"{name}.json"
    entries = read_view_index(path)
    assert detect_index_format(json.loads(path.read_text())) == "dl3dv"
    assert len(entries) == 140 and all(len(e.context) == num_context for e in entries)
    assert all("/" in e.scene and max(e.indices) <= 49 for e in entries)


def test_dl3dv_bare_hash_index(shared_data_dir: Path) -> None:
    path = shared_data_dir / "splits" / "dl3dv_ctx_5v_tgt_56v_mvsplat360.json"
    entries = read_view_index(path, format="dl3dv")
    assert len(entries) == 140 and all(len(e.context) == 5 and len(e.target) == 56 for e in entries)
    assert all(len(e.scene) == 64 for e in entries)


def test_index_nulls_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    path.write_text(json.dumps({"a": {"context": [0, 5], "target": [2]}, "b": None}))
    assert [e.scene for e in read_view_index(path)] == ["a"]
    path.write_text(json.dumps({"a": {"context": [0, -1], "target": [2]}}))
    with pytest.raises(ValueError, match="non-negative frame indices"):
        read_view_index(path)
    path.write_text(json.dumps({"a": {"context": [], "target": [2]}}))
    with pytest.raises(ValueError, match="empty context"):
        read_view_index(path)
    path.write_text(json.dumps({"a": [{"context": [0, 1], "target": [2]}]}))
    with pytest.raises(ValueError, match="latentSplat"):
        read_view_index(path, format="pixelsplat")
    with pytest.raises(ValueError, match="DL3DV keys"):
        path.write_text(json.dumps({"a": {"context": [0], "target": [2]}}))
        read_view_index(path, format="dl3dv")
    with pytest.raises(ValueError, match="unknown view index format"):
        read_view_index(path, format="mvsplat")
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_view_index(path)
    with pytest.raises(FileNotFoundError):
        read_view_index(tmp_path / "missing.json")


def test_fixed_selector(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    path.write_text(
        json.dumps({"s": [{"context": [0, 4], "target": [2]}, {"context": [1, 3], "target": [9]}]})
    )
    selector = FixedViewSelector.from_file(path)
    assert "s" in selector and selector.scenes == ["s"]
    assert len(selector.select("s", num_frames=10)) == 2
    with pytest.raises(ValueError, match="frame 9 of scene 's', which has 5 frames"):
        selector.select("s", num_frames=5)
    with pytest.raises(KeyError):
        selector.select("t", num_frames=5)


# ----------------------------------------------------------------------------- training sampler


def _draws(sampler: TrainViewSampler, num_frames: int, count: int, seed: int = 0):
    rng = make_generator(seed)
    out = []
    for _ in range(count):
        n = sampler.draw_num_cond_views(rng)
        out.append((n, sampler.draw_views(num_frames, n, rng)))
    return out


@pytest.mark.parametrize(
    ("recipe", "dataset"), [("re10k", "re10k"), ("dl3dv", "dl3dv"), ("general", "dl3dv")]
)
def test_sampler_view_properties(recipe: str, dataset: str) -> None:
    config = sampler_preset(recipe, dataset)
    sampler = TrainViewSampler(config)
    num_frames = 300
    lo, hi = config.context_gap
    for n, views in _draws(sampler, num_frames, 1500):
        context, target = np.array(views.context), np.array(views.target)
        assert len(context) == n and len(target) == config.num_targets
        gap = context[-1] - context[0]
        if n >= 2:
            assert lo <= gap <= hi
            assert np.all(np.diff(context) > 0)  # distinct, ordered, ends on the span
        margin = int(np.floor(config.expansion_factor * max(gap, lo if n == 1 else gap)))
        if n >= 2:
            assert target.min() >= max(0, context[0] - margin)
            assert target.max() <= min(num_frames - 1, context[-1] + margin)
        assert target.min() >= 0 and target.max() < num_frames


def test_sampler_jitter_and_span_coverage() -> None:
    config = ViewSamplerConfig(context_gap=(40, 40), num_targets=4, cond_view_weights={4: 1.0})
    sampler = TrainViewSampler(config)
    rng = make_generator(3)
    seen_inner = Counter()
    for _ in range(600):
        views = sampler.draw_views(100, 4, rng)
        start = views.context[0]
        assert views.context[-1] == start + 40
        # Two inner views, one per stratum of the 39 interior frames.
        offsets = [c - start for c in views.context[1:3]]
        assert 1 <= offsets[0] <= 19 and 20 <= offsets[1] <= 39
        seen_inner.update(offsets)
        assert all(start <= t <= start + 40 for t in views.target)  # expansion 0
    assert len(seen_inner) == 39  # every interior frame reachable: jittered, not fixed


def test_sampler_probabilities() -> None:
    config = ViewSamplerConfig(
        context_gap=(900, 1000), num_targets=3, context_as_target_prob=0.3,
        cond_view_weights={1: 1.0, 2: 2.0, 4: 1.0}, zero_cameras_prob=0.4,
    )  # fmt: skip
    sampler = TrainViewSampler(config)
    assert sampler.cond_view_probs == {1: 0.25, 2: 0.5, 4: 0.25}
    rng = make_generator(7)
    draws = 4000
    counts, repeats, zeros = Counter(), 0, 0
    for _ in range(draws):
        n = sampler.draw_num_cond_views(rng)
        counts[n] += 1
        views = sampler.draw_views(5000, n, rng)
        repeats += bool(set(views.context) & set(views.target))
        zeros += sampler.draw_zero_cameras(rng)
    for n, p in sampler.cond_view_probs.items():
        assert abs(counts[n] / draws - p) < 0.03
    # Chance overlaps are rare with a ~1000-frame span, so the rate is ~ the probability.
    assert abs(repeats / draws - 0.3) < 0.03
    assert abs(zeros / draws - 0.4) < 0.03
    always = TrainViewSampler(sampler_preset("re10k", "re10k"))
    rng = make_generator(8)
    assert all(
        set(v.context) & set(v.target) for v in (always.draw_views(400, 2, rng) for _ in range(200))
    )


def test_sampler_image_sizes() -> None:
    sampler = TrainViewSampler(sampler_preset("general", "re10k"))
    rng = make_generator(1)
    sizes = [sampler.draw_image_size(rng) for _ in range(2000)]
    assert all(max(h, w) == 512 and h % 8 == 0 and w % 8 == 0 for h, w in sizes)
    aspects = np.array([w / h for h, w in sizes])
    assert aspects.min() >= 0.5 - 0.02 and aspects.max() <= 2.0 + 0.04
    # w/h uniform in [0.5, 2]: P(w/h < 0.95) = 0.45 / 1.5, P(w/h > 1.05) = 0.95 / 1.5.
    assert abs((aspects < 0.95).mean() - 0.3) < 0.04
    assert abs((aspects > 1.05).mean() - 0.95 / 1.5) < 0.04
    square = TrainViewSampler(sampler_preset("re10k", "re10k"))
    assert {square.draw_image_size(rng) for _ in range(20)} == {(256, 256)}
    layout = sampler.draw_layout(make_generator(0))
    assert 1 <= layout.num_cond_views <= 10 and max(layout.image_size) == 512


def test_sampler_is_reproducible_per_stream() -> None:
    sampler = TrainViewSampler(sampler_preset("general", "dl3dv"))

    def stream(seed: int, epoch: int, rank: int, worker: int):
        rng = make_generator(seed, epoch, rank, worker)
        out = []
        for _ in range(50):
            layout = sampler.draw_layout(rng)
            views = sampler.draw_views(200, layout.num_cond_views, rng)
            out.append((layout, views, sampler.draw_zero_cameras(rng)))
        return out

    base = stream(0, 0, 0, 0)
    assert base == stream(0, 0, 0, 0)
    for other in ((1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)):
        assert stream(*other) != base, other
    state = np.random.get_state()
    stream(0, 0, 0, 0)
    assert np.array_equal(np.random.get_state()[1], state[1])  # global RNG untouched


def test_sampler_short_scenes_and_config_errors() -> None:
    sampler = TrainViewSampler(sampler_preset("re10k", "re10k"))
    assert sampler.min_frames(2) == 26
    sampler.draw_views(26, 2, make_generator(0))
    with pytest.raises(SceneTooShortError, match="25 frames is too short"):
        sampler.draw_views(25, 2, make_generator(0))
    with pytest.raises(ValueError, match="context_gap"):
        ViewSamplerConfig(context_gap=(5, 2), num_targets=1)
    with pytest.raises(ValueError, match="probability"):
        ViewSamplerConfig(context_gap=(1, 2), num_targets=1, zero_cameras_prob=1.5)
    with pytest.raises(ValueError, match="cond_view_weights"):
        ViewSamplerConfig(context_gap=(1, 2), num_targets=1, cond_view_weights={0: 1.0})
    with pytest.raises(ValueError, match="no sampler preset"):
        sampler_preset("re10k", "co3d")
    with pytest.raises(ValueError, match="non-negative"):
        make_generator(0, rank=-1)
