"""Parity with the official LagerNVS implementation on the reference fixtures.

The cases are discovered at collection time in the directory named by
``LAGERNVS_REFERENCE_FIXTURES`` (see ``conftest.reference_fixture_dir``), so the same file runs on
any directory of cases in the reference format (README "Model-case safetensors layout").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from parity_cameras import check_camera_fixture
from parity_metrics import check_metric_fixture
from reference_fixtures import reference_fixture_dir
from safetensors.torch import load_file

from lagernvs.models import LagerNVSModel

# --------------------------------------------------------------------------------------------
# Model cases: <name>.json (dimensions) + <name>.safetensors (weights, inputs, outputs)
# --------------------------------------------------------------------------------------------

TOKEN_TOLERANCE = 5e-5  # out.aggregator_tokens, out.rec_tokens
IMAGE_TOLERANCE = 1e-5  # out.rendered, out.full
NO_MODEL_CASE = "no-model-case-found"
WEIGHT_PREFIX = "state_dict."


def _is_model_case(meta: Any) -> bool:
    """Model cases name an attention type and a forward pass (state-dict manifests do not)."""
    keys = ("attention_to_features_type", "num_cond_views")
    return isinstance(meta, dict) and all(key in meta for key in keys)


def _model_case_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    names = []
    for path in sorted(directory.glob("*.json")):
        try:
            meta = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if _is_model_case(meta):
            names.append(path.stem)
    return names


MODEL_CASES = _model_case_names(reference_fixture_dir())


def model_config(meta: dict[str, Any]) -> dict[str, Any]:
    """LagerNVSModel config of a model case JSON."""
    encoder, renderer = meta["encoder"], meta["renderer"]
    fixed = meta.get("fixed_as_in_reference", {})
    # Settings the model does not expose as config must be the reference's.
    assert fixed.get("aggregator_camera_tokens", 1) == 1
    assert fixed.get("renderer_out_channels", 3) == 3
    assert fixed.get("dino_interpolate_antialias", True) is True
    assert fixed.get("dino_interpolate_offset", 0.0) == 0.0
    assert fixed.get("aggregator_qk_norm", True) is True
    assert fixed.get("renderer_qk_norm", "RMSNorm") == "RMSNorm"
    return {
        "attention_type": meta["attention_to_features_type"],
        "image_size": tuple(meta["image_hw"]),
        "encoder_dim": encoder["embed_dim"],
        "dino_depth": encoder["dino_depth"],
        "dino_heads": encoder["dino_heads"],
        "aggregator_depth": encoder["aggregator_depth"],
        "aggregator_heads": encoder["aggregator_heads"],
        "encoder_image_size": fixed.get("vggt_img_size", 518),
        "encoder_patch_size": fixed.get("vggt_patch_size", 14),
        "dino_num_register_tokens": fixed.get("dino_num_register_tokens", 4),
        "aggregator_num_register_tokens": fixed.get("aggregator_num_register_tokens", 4),
        "encoder_mlp_ratio": fixed.get("mlp_ratio", 4),
        "rope_frequency": fixed.get("rope_freq", 100),
        "camera_token_dim": meta.get("camera_mlp", [11])[0],
        "renderer_width": renderer["width"],
        "renderer_heads": renderer["heads"],
        "renderer_depth": renderer["depth"],
        "patch_size": renderer["patch_size"],
        "renderer_num_registers": fixed.get("renderer_n_registers", 4),
        "renderer_mlp_ratio": fixed.get("renderer_mlp_ratio", 4),
    }


def _assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    diff = (actual.float() - expected.float()).abs().max().item()
    assert diff <= tol, f"{name}: max |diff| {diff:.3e} > {tol:.0e}"


@pytest.mark.parametrize("case_name", MODEL_CASES or [NO_MODEL_CASE])
def test_model_case(fixture_dir: Path, case_name: str) -> None:
    if case_name == NO_MODEL_CASE:
        pytest.fail(
            f"no model case (*.json with 'attention_to_features_type' and 'num_cond_views') in "
            f"{fixture_dir}; point LAGERNVS_REFERENCE_FIXTURES at the reference fixtures"
        )
    meta = json.loads((fixture_dir / f"{case_name}.json").read_text())
    tensors_path = fixture_dir / f"{case_name}.safetensors"
    assert tensors_path.is_file(), f"model case {case_name} has no {tensors_path.name}"
    tensors = load_file(tensors_path)
    weights = {
        k[len(WEIGHT_PREFIX) :]: v for k, v in tensors.items() if k.startswith(WEIGHT_PREFIX)
    }
    model = LagerNVSModel.from_original_checkpoint(weights, model_config(meta))

    height, width = meta["image_hw"]
    assert model.reconstructor.input_size(height, width) == tuple(
        meta["vggt_input_hw_after_resize"]
    )

    captured: dict[str, torch.Tensor] = {}
    aggregator = model.reconstructor.vggt["aggregator"]
    aggregator.register_forward_hook(lambda m, i, out: captured.__setitem__("aggregator", out))
    model.reconstructor.register_forward_hook(lambda m, i, out: captured.__setitem__("rec", out))
    num_cond = meta["num_cond_views"]
    with torch.no_grad():
        full = model(tensors["images"], tensors["rays"], tensors["cam_token"], num_cond)

    expected_aggregator = tensors["out.aggregator_tokens"]
    _assert_close("aggregator_tokens", captured["aggregator"], expected_aggregator, TOKEN_TOLERANCE)
    _assert_close("rec_tokens", captured["rec"], tensors["out.rec_tokens"], TOKEN_TOLERANCE)
    _assert_close("rendered", full[:, num_cond:], tensors["out.rendered"], IMAGE_TOLERANCE)
    _assert_close("full", full, tensors["out.full"], IMAGE_TOLERANCE)


# --------------------------------------------------------------------------------------------
# Camera maths (cameras.safetensors / cameras.json) and metrics (metrics.safetensors / .json)
# --------------------------------------------------------------------------------------------


def test_camera_fixture(fixture_dir: Path) -> None:
    check_camera_fixture(fixture_dir)


def test_metric_fixture(fixture_dir: Path) -> None:
    check_metric_fixture(fixture_dir)
