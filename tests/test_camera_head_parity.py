"""Parity of the VGGT camera head with the reference on ``<fixtures>/camera_head/``.

Every ``cam_*.json`` case in the folder (found at collection time, see
``conftest.reference_fixture_dir``) is built from its JSON, loaded strictly and compared on all
outputs and intermediates with the README's tolerances, so the file runs unchanged on held-out
cases of other sizes. A missing folder or one without cases fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from reference_fixtures import reference_fixture_dir
from safetensors.torch import load_file

from lagernvs.models.camera_head import CameraHead, pose_encoding_to_cameras

CASE_DIR_NAME = "camera_head"
NO_CASE = "no-camera-head-case-found"
WEIGHT_PREFIX = "state_dict."
ENCODING_TOLERANCE = 2e-5  # out.pose_enc_list.*, out.extrinsics (max abs)
FOCAL_RELATIVE_TOLERANCE = 2e-5  # fx, fy of out.intrinsics
INTRINSICS_TOLERANCE = 1e-4  # the other entries of out.intrinsics (max abs)
DEBUG_TOLERANCE = 1e-4  # debug.* (max abs)
FULL_SIZE_PARAMETERS = 216_174_610


def _case_names(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("cam_*.json")) if directory.is_dir() else []


CASES = _case_names(reference_fixture_dir() / CASE_DIR_NAME)


def head_kwargs(constructor: dict[str, Any], num_iterations: int) -> dict[str, Any]:
    """CameraHead arguments of a reference constructor record (case JSON or manifest)."""
    assert constructor.get("pose_encoding_type", "absT_quaR_FoV") == "absT_quaR_FoV"
    names = ("dim_in", "num_heads", "trunk_depth", "mlp_ratio", "init_values")
    activations = ("trans_act", "quat_act", "fl_act")
    return {
        **{name: constructor[name] for name in names + activations},
        "num_iterations": num_iterations,
    }


def _assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    diff = (actual - expected).abs().max().item()
    assert diff <= tol, f"{name}: max |diff| {diff:.3e} > {tol:.0e}"


def _assert_intrinsics(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape, f"intrinsics: shape {actual.shape} != {expected.shape}"
    focal = torch.zeros(3, 3, dtype=torch.bool)
    focal[0, 0] = focal[1, 1] = True
    relative = ((actual - expected).abs() / expected.abs())[..., focal].max().item()
    assert relative <= FOCAL_RELATIVE_TOLERANCE, f"fx/fy relative diff {relative:.3e}"
    other = (actual - expected).abs()[..., ~focal].max().item()
    assert other <= INTRINSICS_TOLERANCE, f"intrinsics (not fx/fy): max |diff| {other:.3e}"


def _run_with_debug(
    head: CameraHead, tokens: list[torch.Tensor]
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Pose encodings of ``head(tokens)`` and the README's debug.* intermediates."""
    calls: dict[str, list[torch.Tensor]] = {}

    def keep(name: str, value: torch.Tensor) -> None:
        calls.setdefault(name, []).append(value)

    hooks = [
        head.token_norm.register_forward_hook(lambda m, i, o: keep("pose_tokens_normed", o)),
        head.poseLN_modulation.register_forward_hook(lambda m, i, o: keep("modulation", o)),
        head.trunk.register_forward_hook(lambda m, i, o: keep("trunk_input", i[0])),
        head.trunk.register_forward_hook(lambda m, i, o: keep("trunk_output", o)),
        head.pose_branch.register_forward_hook(lambda m, i, o: keep("pose_delta", o)),
    ]
    with torch.no_grad():
        encodings = head(tokens)
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        calls["pose_enc_raw"] = head.raw_estimates(tokens)
    (normed,) = calls.pop("pose_tokens_normed")
    debug = {"debug.pose_tokens_normed": normed}
    for name, values in calls.items():
        debug.update({f"debug.{name}.{k}": value for k, value in enumerate(values)})
    return encodings, debug


@pytest.mark.parametrize("case_name", CASES or [NO_CASE])
def test_camera_head_case(fixture_dir: Path, case_name: str) -> None:
    case_dir = fixture_dir / CASE_DIR_NAME
    if case_name == NO_CASE:
        pytest.fail(
            f"no camera-head case (cam_*.json) in {case_dir}; point LAGERNVS_REFERENCE_FIXTURES "
            "at the reference fixtures (with their camera_head/ folder)"
        )
    meta = json.loads((case_dir / f"{case_name}.json").read_text())
    tensors = load_file(case_dir / f"{case_name}.safetensors")
    eps = meta["layer_norm_eps"]  # settings the head does not expose must be the reference's
    assert (eps["token_norm"], eps["trunk_norm"], eps["trunk_blocks_norm1_norm2"]) == (1e-5,) * 3
    assert eps["adaln_norm_no_affine"] == 1e-6
    assert meta["target_dim"] == 9
    head = CameraHead(**head_kwargs(meta["constructor"], meta["num_iterations"])).eval()
    weights = {
        k[len(WEIGHT_PREFIX) :]: v for k, v in tensors.items() if k.startswith(WEIGHT_PREFIX)
    }
    head.load_state_dict(weights, strict=True)
    tokens = [tensors[f"aggregated_tokens_list.{i}"] for i in range(meta["list_len"])]

    encodings, debug = _run_with_debug(head, tokens)

    assert len(encodings) == meta["num_iterations"]
    for k, encoding in enumerate(encodings):
        name = f"out.pose_enc_list.{k}"
        _assert_close(name, encoding, tensors[name], ENCODING_TOLERANCE)
    expected_debug = sorted(k for k in tensors if k.startswith("debug."))
    assert sorted(debug) == expected_debug
    for name in expected_debug:
        _assert_close(name, debug[name], tensors[name], DEBUG_TOLERANCE)
    extrinsics, intrinsics = pose_encoding_to_cameras(encodings[-1], meta["image_size_hw"])
    _assert_close("extrinsics", extrinsics, tensors["out.extrinsics"], ENCODING_TOLERANCE)
    _assert_intrinsics(intrinsics, tensors["out.intrinsics"])
    # Only the last entry of the token list is read.
    with torch.no_grad():
        torch.testing.assert_close(head(tokens[-1:]), encodings, rtol=0, atol=0)


def test_full_size_layout_matches_manifest(fixture_dir: Path) -> None:
    manifest = json.loads((fixture_dir / CASE_DIR_NAME / "state_dict_camera_head.json").read_text())
    kwargs = head_kwargs(
        manifest["constructor_defaults"], manifest["forward_default_num_iterations"]
    )
    with torch.device("meta"):
        head = CameraHead(**kwargs)
        default_head = CameraHead()
    ours = head.state_dict()
    assert list(ours) == list(manifest["keys"])  # same keys, same order
    for key, spec in manifest["keys"].items():
        assert list(ours[key].shape) == spec["shape"], key
        assert str(ours[key].dtype) == f"torch.{spec['dtype']}", key
    count = sum(p.numel() for p in head.parameters())
    assert count == manifest["total_parameters"] == FULL_SIZE_PARAMETERS
    for prefix, elements in manifest["elements_by_prefix"].items():
        under = [v for k, v in ours.items() if k == prefix or k.startswith(prefix + ".")]
        assert sum(v.numel() for v in under) == elements, prefix
    assert list(head.buffers()) == [] == manifest["buffers"]
    default_shapes = {k: v.shape for k, v in default_head.state_dict().items()}
    assert default_shapes == {k: v.shape for k, v in ours.items()}
