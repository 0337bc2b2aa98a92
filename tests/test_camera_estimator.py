"""VGGT camera estimator at tiny size with random weights (CPU, float32).

Checks the viewer conventions of ``estimate_cameras`` against a direct computation from the
head's pose encoding, input validation, strict VGGT-1B checkpoint loading (full-size layout from
the reference manifests on the meta device; error messages on a tiny state dict) and a round trip
of the estimated cameras through ``Cameras``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lagernvs.cameras import SCENE_SCALE_FACTOR, Cameras
from lagernvs.models.camera_estimator import VGGTCameraEstimator, vggt_input_size

ESTIMATOR_LOGGER = "lagernvs.models.camera_estimator"
LAGERNVS_AGGREGATOR_PREFIX = "reconstructor.vggt.aggregator."


def _tiny_estimator() -> VGGTCameraEstimator:
    """Random tiny estimator whose predicted fields of view lie well inside (0, pi)."""
    torch.manual_seed(0)
    estimator = VGGTCameraEstimator.from_preset("tiny").eval()
    last = estimator.camera_head.pose_branch.fc2
    with torch.no_grad():
        last.weight[7:9] *= 0.05
        last.bias[7:9] = 0.25  # four iterations add up to a FoV near 1 rad
    return estimator


@pytest.fixture(scope="module")
def estimator() -> VGGTCameraEstimator:
    return _tiny_estimator()


def _images(views: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(views, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _expected_cameras(
    estimator: VGGTCameraEstimator, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """c2w (V, 4, 4) and the shared focal, computed directly from the head's last encoding."""
    height, width = images.shape[-2:]
    resized = F.interpolate(
        images, estimator.input_size(height, width), mode="bilinear", antialias=True
    )
    with torch.no_grad():
        encoding = estimator(resized[None])[-1][0].double()
    translation, quaternion, fov_h, fov_w = encoding.split((3, 4, 1, 1), dim=-1)
    x, y, z, w = (quaternion / quaternion.norm(dim=-1, keepdim=True)).unbind(-1)
    rotation = torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        dim=-2,
    )
    w2c = torch.eye(4, dtype=torch.float64).repeat(len(encoding), 1, 1)
    w2c[:, :3, :3], w2c[:, :3, 3] = rotation, translation
    c2w = torch.linalg.inv(w2c)
    relative = torch.linalg.inv(c2w[:1]) @ c2w
    distances = relative[:, :3, 3].norm(dim=-1)
    if len(relative) > 1:
        relative[:, :3, 3] /= SCENE_SCALE_FACTOR * distances.max()
    fx = (width / 2) / torch.tan(fov_w / 2)
    fy = (height / 2) / torch.tan(fov_h / 2)
    return relative, torch.cat([fx, fy]).mean()


# --------------------------------------------------------------------------------------------
# estimate_cameras: conventions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("views", "height", "width"), [(3, 48, 64), (2, 64, 48), (1, 40, 40)])
def test_estimated_cameras_follow_the_viewer_convention(
    estimator: VGGTCameraEstimator, views: int, height: int, width: int
) -> None:
    images = _images(views, height, width)
    cameras = estimator.estimate_cameras(images)

    assert isinstance(cameras, Cameras)
    assert len(cameras) == views and cameras.image_size == (height, width)
    assert cameras.dtype == torch.float32 and cameras.device == images.device
    expected_c2w, expected_focal = _expected_cameras(estimator, images)
    torch.testing.assert_close(cameras.c2w[0], torch.eye(4), rtol=0, atol=1e-6)
    torch.testing.assert_close(cameras.c2w.double(), expected_c2w, rtol=0, atol=1e-5)
    focal = float(expected_focal)
    expected_intrinsics = torch.tensor([focal, focal, width / 2, height / 2]).expand(views, 4)
    torch.testing.assert_close(cameras.fxfycxcy, expected_intrinsics, rtol=1e-6, atol=0)
    farthest = float(cameras.centers.norm(dim=-1).max())
    assert math.isclose(farthest, 1 / SCENE_SCALE_FACTOR if views > 1 else 0.0, abs_tol=1e-6)


def test_list_and_tensor_inputs_agree(estimator: VGGTCameraEstimator) -> None:
    images = _images(2, 48, 64)
    from_tensor = estimator.estimate_cameras(images)
    from_list = estimator.estimate_cameras(list(images))
    torch.testing.assert_close(from_list.c2w, from_tensor.c2w, rtol=0, atol=0)
    torch.testing.assert_close(from_list.fxfycxcy, from_tensor.fxfycxcy, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((480, 640), (378, 518)),
        ((640, 480), (686, 518)),
        ((294, 518), (294, 518)),
        ((64, 64), (518, 518)),
    ],
)
def test_vggt_input_size_is_width_518(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    assert vggt_input_size(*hw, 518, 14) == expected


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(3, 48, 64), "images must be a \\(V, 3, H, W\\) tensor"),
        (torch.rand(2, 4, 48, 64), "images must be a \\(V, 3, H, W\\) tensor"),
        ([], "list of nothing"),
        ([torch.rand(3, 48, 64), torch.rand(3, 40, 64)], "same size"),
        ([torch.rand(3, 48, 64), "photo.jpg"], "list of"),
        ("photo.jpg", "got str"),
        (torch.zeros(2, 3, 48, 64, dtype=torch.uint8), "divide by 255"),
        (torch.full((1, 3, 48, 64), 2.0), "in \\[0, 1\\]"),
        (torch.full((1, 3, 48, 64), float("nan")), "NaN"),
        (torch.rand(1, 3, 2, 200), "too wide"),
    ],
)
def test_bad_images_get_one_line_errors(
    estimator: VGGTCameraEstimator, images: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as error:
        estimator.estimate_cameras(images)
    assert "\n" not in str(error.value)


def test_unusable_field_of_view_is_reported() -> None:
    estimator = _tiny_estimator()
    with torch.no_grad():
        estimator.camera_head.pose_branch.fc2.bias[7:9] = -10.0  # ReLU -> FoV 0
    with pytest.raises(ValueError, match="field of view outside"):
        estimator.estimate_cameras(_images(2, 48, 64))


def test_cameras_round_trip(estimator: VGGTCameraEstimator, tmp_path: Path) -> None:
    cameras = estimator.estimate_cameras(_images(3, 48, 64))
    loaded = Cameras.load(cameras.save(tmp_path / "cameras.json"))
    rebuilt = Cameras.from_dict(json.loads(json.dumps(cameras.to_dict())))
    for other in (loaded, rebuilt):
        torch.testing.assert_close(other.c2w, cameras.c2w.double(), rtol=0, atol=0)
        torch.testing.assert_close(other.fxfycxcy, cameras.fxfycxcy.double(), rtol=0, atol=0)
        assert torch.equal(other.image_sizes, cameras.image_sizes)


# --------------------------------------------------------------------------------------------
# VGGT checkpoints
# --------------------------------------------------------------------------------------------


def _meta_tensors(manifest_keys: dict, prefix: str, new_prefix: str) -> dict[str, torch.Tensor]:
    return {
        new_prefix + key[len(prefix) :]: torch.empty(
            spec["shape"], dtype=getattr(torch, spec["dtype"]), device="meta"
        )
        for key, spec in manifest_keys.items()
        if key.startswith(prefix)
    }


def test_full_size_vggt_1b_layout_loads_strictly(fixture_dir: Path) -> None:
    lagernvs = json.loads((fixture_dir / "state_dict_full_attention.json").read_text())
    head = json.loads((fixture_dir / "camera_head" / "state_dict_camera_head.json").read_text())
    vggt = {
        **_meta_tensors(lagernvs["keys"], LAGERNVS_AGGREGATOR_PREFIX, "aggregator."),
        **_meta_tensors(head["keys"], "", head["checkpoint_key_prefix"]),
    }
    assert len(vggt) == len(head["keys"]) + sum(
        k.startswith(LAGERNVS_AGGREGATOR_PREFIX) for k in lagernvs["keys"]
    )
    estimator = VGGTCameraEstimator.from_vggt_checkpoint(vggt)

    ours = estimator.state_dict()
    assert list(ours) == list(vggt)  # aggregator.* then camera_head.*, as in VGGT
    assert all(ours[key].shape == tensor.shape for key, tensor in vggt.items())
    head_parameters = sum(p.numel() for p in estimator.camera_head.parameters())
    assert head_parameters == head["total_parameters"]


@pytest.fixture
def tiny_vggt_state_dict(estimator: VGGTCameraEstimator) -> dict[str, torch.Tensor]:
    """The tiny estimator's weights in VGGT layout, with the heads the estimator ignores."""
    return {
        **{k: v.clone() for k, v in estimator.state_dict().items()},
        "depth_head.projects.0.weight": torch.zeros(4, 8),
        "depth_head.scratch.output_conv.bias": torch.zeros(2),
        "point_head.projects.0.weight": torch.zeros(4, 8),
        "track_head.fnet.weight": torch.zeros(3),
    }


@pytest.mark.parametrize("source", ["state_dict", "model.pt", "model.safetensors"])
def test_tiny_checkpoint_loads_and_reports_ignored_heads(
    tiny_vggt_state_dict: dict[str, torch.Tensor],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    source: str,
) -> None:
    checkpoint: object = tiny_vggt_state_dict
    if source == "model.pt":
        checkpoint = tmp_path / source
        torch.save(tiny_vggt_state_dict, checkpoint)
    elif source == "model.safetensors":
        checkpoint = tmp_path / source
        save_file(tiny_vggt_state_dict, checkpoint)
    with caplog.at_level(logging.INFO, logger=ESTIMATOR_LOGGER):
        loaded = VGGTCameraEstimator.from_vggt_checkpoint(checkpoint, "tiny")

    for key, value in loaded.state_dict().items():
        assert torch.equal(value, tiny_vggt_state_dict[key]), key
    messages = [r.getMessage() for r in caplog.records if r.name == ESTIMATOR_LOGGER]
    assert len(messages) == 1
    assert "ignored 4 keys" in messages[0]
    assert "depth_head (2), point_head (1), track_head (1)" in messages[0]
    images = _images(2, 48, 64)
    torch.testing.assert_close(
        loaded.estimate_cameras(images).c2w, _tiny_estimator().estimate_cameras(images).c2w
    )


def test_load_result_lists_loaded_and_ignored_keys(
    tiny_vggt_state_dict: dict[str, torch.Tensor],
) -> None:
    target = VGGTCameraEstimator.from_preset("tiny")
    result = target.load_vggt_checkpoint(tiny_vggt_state_dict)
    assert result.loaded == list(target.state_dict())
    assert sorted(result.ignored) == sorted(
        k for k in tiny_vggt_state_dict if not k.startswith(("aggregator.", "camera_head."))
    )


def test_missing_key_is_named(tiny_vggt_state_dict: dict[str, torch.Tensor]) -> None:
    key = "camera_head.trunk.0.ls1.gamma"
    del tiny_vggt_state_dict[key]
    with pytest.raises(ValueError, match=f"missing keys: {key}"):
        VGGTCameraEstimator.from_vggt_checkpoint(tiny_vggt_state_dict, "tiny")


def test_unexpected_key_is_named(tiny_vggt_state_dict: dict[str, torch.Tensor]) -> None:
    tiny_vggt_state_dict["aggregator.extra.weight"] = torch.zeros(2)
    with pytest.raises(ValueError, match="unexpected keys: aggregator.extra.weight"):
        VGGTCameraEstimator.from_vggt_checkpoint(tiny_vggt_state_dict, "tiny")


def test_wrong_shape_is_named_with_the_file(
    tiny_vggt_state_dict: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    key = "camera_head.embed_pose.weight"
    tiny_vggt_state_dict[key] = torch.zeros(64, 7)
    path = tmp_path / "wrong.pt"
    torch.save(tiny_vggt_state_dict, path)
    message = rf"{path}.*wrong shape: {key}: checkpoint \(64, 7\) vs model \(64, 9\)"
    with pytest.raises(ValueError, match=message):
        VGGTCameraEstimator.from_vggt_checkpoint(path, "tiny")


def test_lagernvs_checkpoint_is_not_a_vggt_checkpoint(
    tiny_vggt_state_dict: dict[str, torch.Tensor],
) -> None:
    lagernvs_layout = {
        LAGERNVS_AGGREGATOR_PREFIX + k[len("aggregator.") :]: v
        for k, v in tiny_vggt_state_dict.items()
        if k.startswith("aggregator.")
    }
    with pytest.raises(ValueError, match="no 'aggregator.\\*' or 'camera_head.\\*' keys"):
        VGGTCameraEstimator.from_vggt_checkpoint(lagernvs_layout, "tiny")
