"""Official-checkpoint and VGGT-weight loading: full-size layouts, strictness, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lagernvs.models import LagerNVSModel, load_original_state_dict, load_vggt_weights

# (variant, preset, overrides): every official variant at full size.
FULL_SIZE_VARIANTS = [
    ("full_attention", "re10k_2v_256", {}),
    ("cross_attention", "general_512", {"attention_type": "cross_attention"}),
    ("bidirectional_cross_attention", "general_512", {}),
    ("bidirectional_cross_attention", "dl3dv_256", {}),
]


def _meta_state_dict(manifest: dict) -> dict[str, torch.Tensor]:
    """Shape-only state dict of a full-size manifest (no memory allocated)."""
    return {
        key: torch.empty(spec["shape"], dtype=getattr(torch, spec["dtype"]), device="meta")
        for key, spec in manifest["keys"].items()
    }


@pytest.mark.parametrize(("variant", "preset", "overrides"), FULL_SIZE_VARIANTS)
def test_full_size_layout_matches_official(
    fixture_dir: Path, variant: str, preset: str, overrides: dict
) -> None:
    manifest = json.loads((fixture_dir / f"state_dict_{variant}.json").read_text())
    model = LagerNVSModel.from_original_checkpoint(_meta_state_dict(manifest), preset, **overrides)
    ours = model.state_dict()
    assert list(ours) == list(manifest["keys"])  # same keys, same order
    for key, spec in manifest["keys"].items():
        assert list(ours[key].shape) == spec["shape"], key
    assert sum(p.numel() for p in model.parameters()) == manifest["total_parameters"]
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen == manifest["parameters_with_requires_grad_false"]
    buffers = dict(model.named_buffers())
    for spec in manifest["non_persistent_buffers"]:
        expected = torch.tensor(spec["value"]).view(spec["shape"])
        torch.testing.assert_close(buffers[spec["name"]], expected, rtol=0, atol=0)


def test_wrong_variant_is_named(fixture_dir: Path) -> None:
    manifest = json.loads((fixture_dir / "state_dict_full_attention.json").read_text())
    with pytest.raises(ValueError, match="'full_attention' LagerNVS checkpoint.*'bidirectional"):
        LagerNVSModel.from_original_checkpoint(_meta_state_dict(manifest), "general_512")


@pytest.fixture
def tiny_state_dict() -> dict[str, torch.Tensor]:
    return LagerNVSModel.from_preset("tiny").state_dict()


def test_missing_key_is_named(tiny_state_dict: dict[str, torch.Tensor]) -> None:
    key = "renderer.renderer_core.renderer_blocks.1.self_attn.k_norm.weight"
    del tiny_state_dict[key]
    with pytest.raises(ValueError, match=f"missing keys: {key}"):
        LagerNVSModel.from_original_checkpoint(tiny_state_dict, "tiny")


def test_unexpected_key_is_named(tiny_state_dict: dict[str, torch.Tensor]) -> None:
    tiny_state_dict["renderer.extra.weight"] = torch.zeros(2)
    with pytest.raises(ValueError, match="unexpected keys: renderer.extra.weight"):
        LagerNVSModel.from_original_checkpoint(tiny_state_dict, "tiny")


def test_shape_mismatch_names_key_and_shapes(tiny_state_dict: dict[str, torch.Tensor]) -> None:
    key = "reconstructor.geo_feature_connector.weight"
    tiny_state_dict[key] = torch.zeros(16, 64)
    message = rf"wrong shape: {key}: checkpoint \(16, 64\) vs model \(32, 64\)"
    with pytest.raises(ValueError, match=message):
        LagerNVSModel.from_original_checkpoint(tiny_state_dict, "tiny")


def test_depth_mismatch_reports_missing_blocks(tiny_state_dict: dict[str, torch.Tensor]) -> None:
    message = (
        r"missing keys: renderer\.renderer_core\.renderer_blocks\.1\.norm1_x\.weight.*; "
        r"unexpected keys: renderer\.renderer_core\.renderer_blocks\.1\.norm1\.weight"
    )
    with pytest.raises(ValueError, match=message):
        LagerNVSModel.from_original_checkpoint(tiny_state_dict, "tiny", renderer_depth=3)


def test_official_file_round_trip_with_bf16_registers(tmp_path: Path) -> None:
    source = LagerNVSModel.from_preset("tiny", attention_type="cross_attention")
    state_dict = {k: v.clone() for k, v in source.state_dict().items()}
    registers = torch.randn(state_dict["renderer.per_view_register_tokens"].shape)
    state_dict["renderer.per_view_register_tokens"] = registers.to(torch.bfloat16)
    path = tmp_path / "model.pt"
    torch.save({"model": state_dict, "step": 10}, path)

    loaded = LagerNVSModel.from_original_checkpoint(path, source.config)
    assert not loaded.training
    assert loaded.renderer.per_view_register_tokens.dtype == torch.float32
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state_dict[key].float(), rtol=0, atol=0)


def test_truncated_file_is_rejected(tmp_path: Path, tiny_state_dict) -> None:
    path = tmp_path / "model.pt"
    torch.save({"model": tiny_state_dict}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_original_state_dict(path)


def test_non_checkpoint_files_are_rejected(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_original_state_dict(text)
    other = tmp_path / "other.pt"
    torch.save({"optimizer": {"lr": 1e-3}, "step": 3}, other)
    with pytest.raises(ValueError, match="not a state dict"):
        load_original_state_dict(other)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_original_state_dict(tmp_path / "missing.pt")


def test_unknown_config_key_is_rejected(tiny_state_dict) -> None:
    with pytest.raises(ValueError, match="unknown LagerNVSModel config keys.*'depth'"):
        LagerNVSModel.from_original_checkpoint(tiny_state_dict, "tiny", depth=3)


def _vggt_style_checkpoint(seed: int) -> dict[str, torch.Tensor]:
    """A small VGGT-like state dict: aggregator weights plus head weights to be ignored."""
    torch.manual_seed(seed)
    donor = LagerNVSModel.from_preset("tiny")
    aggregator = donor.reconstructor.vggt["aggregator"].state_dict()
    state_dict = {f"aggregator.{k}": torch.randn_like(v) for k, v in aggregator.items()}
    state_dict["camera_head.trunk.0.attn.qkv.weight"] = torch.randn(6, 2)
    state_dict["depth_head.projects.0.weight"] = torch.randn(3, 3)
    return state_dict


def test_load_vggt_weights(tmp_path: Path) -> None:
    checkpoint = _vggt_style_checkpoint(seed=1)
    path = tmp_path / "vggt.pt"
    torch.save(checkpoint, path)
    model = LagerNVSModel.from_preset("tiny")
    connector_before = model.reconstructor.geo_feature_connector.weight.clone()

    result = load_vggt_weights(model, path)

    aggregator_keys = [k for k in checkpoint if k.startswith("aggregator.")]
    assert sorted(result.loaded) == sorted(aggregator_keys)
    assert result.ignored == ["camera_head.trunk.0.attn.qkv.weight", "depth_head.projects.0.weight"]
    ours = model.state_dict()
    for key in aggregator_keys:
        torch.testing.assert_close(ours[f"reconstructor.vggt.{key}"], checkpoint[key])
    torch.testing.assert_close(model.reconstructor.geo_feature_connector.weight, connector_before)


def test_load_vggt_weights_is_strict_on_the_aggregator() -> None:
    checkpoint = _vggt_style_checkpoint(seed=2)
    key = "aggregator.frame_blocks.1.attn.q_norm.bias"
    del checkpoint[key]
    with pytest.raises(ValueError, match="missing keys: frame_blocks.1.attn.q_norm.bias"):
        load_vggt_weights(LagerNVSModel.from_preset("tiny"), checkpoint)
    with pytest.raises(ValueError, match="no 'aggregator.\\*' keys"):
        load_vggt_weights(LagerNVSModel.from_preset("tiny"), {"camera_head.w": torch.zeros(1)})


def _saved_tiny(folder: Path, **config_changes) -> Path:
    """A tiny model saved with save_pretrained, its config.json then edited."""
    torch.manual_seed(0)
    LagerNVSModel.from_preset("tiny").save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    for key, change in config_changes.items():
        config[key] = change(config[key])
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"renderer_depth": lambda d: d - 1},
            r"different models \(missing renderer\.renderer_core",
        ),
        ({"renderer_width": lambda w: 2 * w}, r"different models \(.*expected shape"),
    ],
)
def test_from_pretrained_refuses_a_config_that_disagrees_with_its_weights(
    tmp_path, change, message
) -> None:
    """diffusers would warn and initialise the missing blocks at random (or fail with a long
    message); the API refuses in one line, as every command does."""
    folder = _saved_tiny(tmp_path / "model", **change)
    with pytest.raises(ValueError, match=message):
        LagerNVSModel.from_pretrained(folder)


def test_from_pretrained_refuses_non_finite_weights_and_loads_sound_ones(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    folder = _saved_tiny(tmp_path / "model")
    loaded = LagerNVSModel.from_pretrained(folder)
    assert torch.equal(
        loaded.renderer.tgt_norm.weight, torch.ones_like(loaded.renderer.tgt_norm.weight)
    )
    model, info = LagerNVSModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["renderer.tgt_norm.weight"][0] = float("nan")
    save_file(state, weights)
    with pytest.raises(ValueError, match=r"non-finite weights .*renderer\.tgt_norm\.weight"):
        LagerNVSModel.from_pretrained(folder)
