"""Preprocessing parity with the reference Re10k evaluation pipeline, and its building blocks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torchvision import transforms as T  # noqa: N812

from lagernvs.cameras import center_crop_size, crop_resize_intrinsics
from lagernvs.data import Re10kEvalDataset, load_scene, preprocess_views
from lagernvs.data.model_inputs import center_crop_offsets, crop_resize_images
from lagernvs.data.preprocess import reference_c2w

# Tolerances against the reference: images to 1e-6, camera tensors (float32 maths) to 1e-5.
IMAGE_ATOL = 1e-6
CAMERA_ATOL = 1e-5


def _sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()


def check_re10k_pipeline_fixture(fixture_dir: Path) -> None:
    """Run our Re10k evaluation dataset on the reference's fake dataset and compare everything
    the fixture stores; raises AssertionError on any mismatch.

    Images must be bit-identical (SHA-256 of the full float32 tensors). Rays, tokens and
    normalised poses are compared within the README tolerances, full-tensor ray sums to 1e-6
    relative: our camera maths is float64 inside, so those tensors are not bit-identical.
    """
    folder = Path(fixture_dir) / "re10k_pipeline"
    meta = json.loads((folder / "re10k_pipeline.json").read_text())
    ref = load_file(folder / "re10k_pipeline.safetensors")
    dataset = Re10kEvalDataset(
        folder / "data", folder / "view_indices_2v.json", split="test", image_size=(256, 256),
        num_cond_views=2,
    )  # fmt: skip
    assert len(dataset) == len(meta["samples"]) == 2
    window = (slice(None), slice(None), slice(112, 144), slice(112, 144))
    for expected in meta["samples"]:
        sample = dataset[expected["index"]]
        key = f"sample{expected['index']}."
        sums = expected["checksums_full_float32"]
        assert sample["image_ids"] == expected["image_ids"]
        assert (
            sample["is_valid"].tolist() == [expected["is_valid"]] == ref[key + "is_valid"].tolist()
        )
        for name, shape in expected["full_shapes"].items():
            out = sample["cam_tokens" if name == "cam_token" else name]
            assert tuple(out.shape) == tuple(shape) and out.dtype == torch.float32, name
        images, rays = sample["images"], sample["rays"]
        assert _sha256(images) == sums["images_sha256"]
        assert abs(images.double().sum().item() - sums["images_sum"]) < 1e-6 * sums["images_sum"]
        assert abs(rays.double().sum().item() - sums["rays_sum"]) < 1e-6 * abs(sums["rays_sum"])
        checks = [
            (images[..., ::4, ::4], "images_stride4", IMAGE_ATOL),
            (images[window], "images_window_r112_144_c112_144", IMAGE_ATOL),
            (rays[..., ::4, ::4], "rays_stride4", CAMERA_ATOL),
            (rays[window], "rays_window_r112_144_c112_144", CAMERA_ATOL),
            (sample["cam_tokens"], "cam_token", CAMERA_ATOL),
            (sample["c2w"], "c2w_normalized", CAMERA_ATOL),
            (sample["camera_scale"], "camera_scale", CAMERA_ATOL),
            (sample["fxfycxcy"], "fxfycxcy_post_crop", 0.0),
        ]
        for ours, name, atol in checks:
            theirs = ref[key + name]
            assert ours.dtype == theirs.dtype, name
            torch.testing.assert_close(ours, theirs, rtol=0, atol=atol, msg=f"{key}{name}")


def test_re10k_pipeline_matches_reference(fixture_dir: Path) -> None:
    check_re10k_pipeline_fixture(fixture_dir)


@pytest.mark.parametrize(
    ("src_hw", "dst_hw"),
    [((37, 64), (16, 16)), ((50, 31), (24, 40)), ((45, 80), (45, 80)), ((40, 41), (64, 48))],
)
def test_crop_resize_matches_torchvision(src_hw, dst_hw) -> None:
    """Odd size differences: image offsets round half to even (torchvision CenterCrop), the
    intrinsics floor; upsampling and downsampling both follow torchvision Resize bit for bit."""
    images = torch.rand(2, 3, *src_hw, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    crop = center_crop_size(src_hw, dst_hw)
    reference = T.Resize(dst_hw, antialias=True)(T.CenterCrop(crop)(images)).clamp(0, 1)
    ours = crop_resize_images(images, dst_hw)
    assert torch.equal(ours, reference)
    assert ours.min() >= 0 and ours.max() <= 1
    top, left = center_crop_offsets(src_hw, crop)
    assert (top, left) == (round((src_hw[0] - crop[0]) / 2), round((src_hw[1] - crop[1]) / 2))


def test_crop_offsets_round_half_even() -> None:
    assert center_crop_offsets((5, 7), (2, 4)) == (2, 2)  # 1.5 -> 2, 1.5 -> 2
    assert center_crop_offsets((3, 9), (2, 4)) == (0, 2)  # 0.5 -> 0, 2.5 -> 2


@pytest.fixture(scope="module")
def fake_scene(fixture_dir: Path):
    root = fixture_dir / "re10k_pipeline" / "data"
    return load_scene(root, "re10k", scene_id="fake0000bbbb2222", split="test").select(
        [0, 11, 4, 6]
    )


def test_frames_as_paths_tensors_or_bytes_agree(fake_scene) -> None:
    from lagernvs.data.images import read_image

    args = (reference_c2w(fake_scene.c2w), fake_scene.fxfycxcy, (32, 48), 2)
    by_path = preprocess_views(fake_scene.image_paths, *args)
    by_tensor = preprocess_views([read_image(p) for p in fake_scene.image_paths], *args)
    by_bytes = preprocess_views([p.read_bytes() for p in fake_scene.image_paths], *args)
    for other in (by_tensor, by_bytes):
        for name in ("images", "rays", "cam_tokens", "c2w", "fxfycxcy"):
            assert torch.equal(by_path[name], other[name]), name
    assert by_path["images"].shape == (4, 3, 32, 48) and by_path["rays"].shape == (4, 6, 32, 48)
    assert by_path["num_cond_views"] == 2 and bool(by_path["is_valid"])
    torch.testing.assert_close(by_path["c2w"][0], torch.eye(4))
    assert abs(float(by_path["camera_scale"]) - 1 / 1.35) < 1e-6


def test_mixed_frame_sizes_use_per_frame_intrinsics(fake_scene) -> None:
    from lagernvs.data.images import read_image

    frames = [read_image(p) for p in fake_scene.image_paths]
    frames[1] = frames[1][:, 20:340, 40:600]  # a cropped frame: principal point moves
    fxfycxcy = fake_scene.fxfycxcy.clone()
    fxfycxcy[1, 2:] -= torch.tensor([40.0, 20.0], dtype=torch.float64)
    out = preprocess_views(frames, fake_scene.c2w, fxfycxcy, (64, 64), 2)
    expected = crop_resize_intrinsics(fxfycxcy[1], (320, 560), (64, 64))
    assert torch.equal(out["fxfycxcy"][1], expected)
    assert torch.equal(out["images"][1], crop_resize_images(frames[1], (64, 64)))
    assert torch.equal(out["images"][0], crop_resize_images(frames[0], (64, 64)))


def test_zeroed_conditioning_cameras_and_single_view(fake_scene) -> None:
    args = (fake_scene.image_paths, fake_scene.c2w, fake_scene.fxfycxcy, (16, 16))
    posed = preprocess_views(*args, num_cond_views=2)
    unposed = preprocess_views(*args, num_cond_views=2, zero_cond_cameras=True)
    assert unposed["rays"][:2].abs().max() == 0 and unposed["cam_tokens"][:2, :9].abs().max() == 0
    assert torch.equal(unposed["rays"][2:], posed["rays"][2:])
    assert torch.equal(unposed["cam_tokens"][:, 9:], posed["cam_tokens"][:, 9:])
    single = preprocess_views(*args, num_cond_views=1)
    # Reference rule: one test-split conditioning view gives scales (0, 1) and camera_scale 0,
    # hence is_valid False.
    assert single["cam_tokens"][:, 9:].tolist() == [[0.0, 1.0]] * 4
    assert not bool(single["is_valid"])


def test_preprocess_input_errors(fake_scene) -> None:
    with pytest.raises(ValueError, match="inconsistent frame counts"):
        preprocess_views(
            fake_scene.image_paths[:3], fake_scene.c2w, fake_scene.fxfycxcy, (16, 16), 2
        )
    with pytest.raises(ValueError, match="float"):
        preprocess_views(
            [torch.zeros(3, 8, 8, dtype=torch.uint8)] * 4,
            fake_scene.c2w,
            fake_scene.fxfycxcy,
            (16, 16),
            2,
        )
    with pytest.raises(FileNotFoundError, match="does not exist"):
        preprocess_views(
            [Path("/nonexistent.png")] * 4, fake_scene.c2w, fake_scene.fxfycxcy, (16, 16), 2
        )
    with pytest.raises(ValueError, match="cannot decode image"):
        preprocess_views([b"garbage"] * 4, fake_scene.c2w, fake_scene.fxfycxcy, (16, 16), 2)


def test_eval_dataset_index_checks(tmp_path: Path, fixture_dir: Path) -> None:
    folder = fixture_dir / "re10k_pipeline"
    index = json.loads((folder / "view_indices_2v.json").read_text())
    index["missing0000scene"] = {"context": [0, 3], "target": [1]}
    index["skipped0000scene"] = None
    path = tmp_path / "index.json"
    path.write_text(json.dumps(index))
    with pytest.raises(FileNotFoundError, match="1 scenes .* not in"):
        Re10kEvalDataset(folder / "data", path)
    with pytest.warns(UserWarning, match="skipping 1 scenes"):
        dataset = Re10kEvalDataset(folder / "data", path, skip_missing=True, image_size=(16, 16))
    assert [e.scene for e in dataset.entries] == ["fake0000aaaa1111", "fake0000bbbb2222"]
    assert dataset[1]["images"].shape == (5, 3, 16, 16)
    with pytest.raises(ValueError, match="num_cond_views=3"):
        Re10kEvalDataset(folder / "data", folder / "view_indices_2v.json", num_cond_views=3)
    bad = {"fake0000aaaa1111": {"context": [0, 30], "target": [1]}}
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="out of range"):
        Re10kEvalDataset(folder / "data", path)[0]
