"""Official LagerNVS and VGGT-1B weights -> our modules, strictly and with clear errors.

Our parameter names are the official ones, so an official state dict maps onto
``LagerNVSModel.state_dict()`` key for key; the only conversion is the dtype of
``renderer.per_view_register_tokens`` (bfloat16 in the reference, float32 here, same values).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]
_SHOWN = 8

# A key of the first renderer block that only one attention variant has.
_VARIANT_MARKERS = {
    "renderer.renderer_core.renderer_blocks.0.attn.q_proj.weight": "full_attention",
    "renderer.renderer_core.renderer_blocks.0.norm2_kv.weight": "cross_attention",
    "renderer.renderer_core.renderer_blocks.0.norm1_x.weight": "bidirectional_cross_attention",
}
_VGGT_PREFIX = "aggregator."
_AGGREGATOR_PREFIX = "reconstructor.vggt.aggregator."


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f", ... ({len(keys)} in total)" if len(keys) > _SHOWN else "")


def _read(path: str | os.PathLike) -> object:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {error}); the file may "
            "be truncated or not a PyTorch/safetensors checkpoint: download it again"
        ) from error


def _as_state_dict(obj: object, source: str) -> StateDict:
    """Unwrap ``{"model": state_dict}`` (official ``model.pt``) or accept a plain state dict."""
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(
            f"{source} holds no state dict: expected {{'model': state_dict}} (an official "
            f"LagerNVS model.pt) or a plain state dict, got {type(obj).__name__}"
        )
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"{source} is not a state dict: entries {_listing(not_tensors)} are not tensors "
            "(expected {'model': state_dict} or a plain state dict)"
        )
    return dict(obj)


def load_original_state_dict(path_or_state_dict: str | os.PathLike | Mapping) -> StateDict:
    """Read an official ``model.pt`` (``{"model": state_dict}``) or a plain state dict.

    Files are read with ``torch.load(weights_only=True)`` (or safetensors) onto the CPU.
    """
    if isinstance(path_or_state_dict, Mapping):
        return _as_state_dict(path_or_state_dict, "the given mapping")
    return _as_state_dict(_read(path_or_state_dict), str(path_or_state_dict))


def infer_attention_type(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The renderer attention variant implied by a state dict's keys (None if unrecognisable)."""
    for key, attention_type in _VARIANT_MARKERS.items():
        if key in state_dict:
            return attention_type
    return None


def check_state_dict(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raise ValueError unless ``given`` has exactly the keys and shapes of ``expected``.

    The message lists the missing keys, the unexpected keys and the shape mismatches.
    """
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and given[k].shape != v.shape
    ]
    problems = [
        f"{what}: {_listing(keys)}"
        for what, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("tensors of the wrong shape", mismatched),
        )
        if keys
    ]
    if problems:
        raise ValueError(
            f"{source} does not match the model ({'; '.join(problems)}); build the model with "
            "the preset/config the checkpoint was trained with"
        )


def load_original_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load an official LagerNVS state dict into ``model`` strictly.

    Tensors are assigned (not copied), cast to the model's parameter dtypes, so a model built on
    the meta device is materialised by this call.
    """
    expected_type = model.config.attention_type
    implied_type = infer_attention_type(state_dict)
    if implied_type is not None and implied_type != expected_type:
        raise ValueError(
            f"the state dict is a {implied_type!r} LagerNVS checkpoint but the model is configured "
            f"for {expected_type!r}; build it with attention_type={implied_type!r} (or a preset of "
            "that variant)"
        )
    expected = model.state_dict()
    check_state_dict(expected, state_dict, "the LagerNVS state dict")
    converted = {k: state_dict[k].to(dtype=v.dtype) for k, v in expected.items()}
    model.load_state_dict(converted, strict=True, assign=True)


@dataclass(frozen=True)
class VGGTLoadResult:
    """Which keys of a VGGT checkpoint were loaded into the encoder and which were ignored."""

    loaded: list[str]
    ignored: list[str]


def load_vggt_weights(
    model: nn.Module, path_or_state_dict: str | os.PathLike | Mapping
) -> VGGTLoadResult:
    """Initialise the encoder's aggregator from a VGGT(-1B) checkpoint.

    Every ``aggregator.*`` key of the model must be present with the right shape (strict); the
    checkpoint's other entries (camera/depth/point/track heads) are ignored. The camera-token MLP,
    connector and renderer keep their current weights.
    """
    state_dict = load_original_state_dict(path_or_state_dict)
    aggregator_weights = {
        k[len(_VGGT_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(_VGGT_PREFIX)
    }
    ignored = sorted(k for k in state_dict if not k.startswith(_VGGT_PREFIX))
    if not aggregator_weights:
        raise ValueError(
            f"no '{_VGGT_PREFIX}*' keys found (top-level keys: {_listing(ignored)}); "
            "expected a VGGT checkpoint such as VGGT-1B's model.pt"
        )
    aggregator = model.get_submodule(_AGGREGATOR_PREFIX.rstrip("."))
    expected = aggregator.state_dict()
    check_state_dict(expected, aggregator_weights, "the VGGT checkpoint's aggregator")
    aggregator.load_state_dict(
        {k: v.to(dtype=expected[k].dtype) for k, v in aggregator_weights.items()}, strict=True
    )
    return VGGTLoadResult(loaded=[_VGGT_PREFIX + k for k in expected], ignored=ignored)
