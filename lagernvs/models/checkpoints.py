"""Official LagerNVS and VGGT-1B weights -> our modules, strictly and with clear errors.

Our parameter names are the official ones, so an official state dict maps onto
``LagerNVSModel.state_dict()`` key for key; the only conversion is the dtype of
``renderer.per_view_register_tokens`` (bfloat16 in the reference, float32 here, same values).

Every load refuses what would give a silently wrong model: missing or unexpected keys, tensors
of another shape (named, with the architecture the checkpoint reveals:
:func:`infer_architecture`) and non-finite weights. Folders written by ``save_pretrained`` load
the same way (:func:`load_pretrained_model`), not through diffusers' lenient loading.

What a checkpoint cannot tell: ``image_size``, ``variable_aspect``, ``max_aspect``,
``rope_frequency`` and ``dino_heads`` leave no trace in the weights, so the official
``dl3dv_256`` and ``general_512`` checkpoints (same variant, same shapes) are told apart only by
their file names (:func:`preset_name_conflict`).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]
M = TypeVar("M", bound=nn.Module)
_SHOWN = 8

# A key of the first renderer block that only one attention variant has.
_VARIANT_MARKERS = {
    "renderer.renderer_core.renderer_blocks.0.attn.q_proj.weight": "full_attention",
    "renderer.renderer_core.renderer_blocks.0.norm2_kv.weight": "cross_attention",
    "renderer.renderer_core.renderer_blocks.0.norm1_x.weight": "bidirectional_cross_attention",
}
_VGGT_PREFIX = "aggregator."
_AGGREGATOR_PREFIX = "reconstructor.vggt.aggregator."
_RENDERER_BLOCKS = "renderer.renderer_core.renderer_blocks."
# Words in the file names of the official checkpoints, per preset.
_PRESET_WORDS = {"re10k_2v_256": "re10k", "dl3dv_256": "dl3dv", "general_512": "general"}


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
            f"{path} is not a readable checkpoint ({_load_failure(error)}); the file may be "
            "truncated or not a PyTorch/safetensors checkpoint: download it again"
        ) from error


def _load_failure(error: Exception) -> str:
    """Why a checkpoint did not load, in a few words. torch's refusal to unpickle anything but
    tensors suggests ``weights_only=False``, which would run the file's code: not repeated."""
    if isinstance(error, pickle.UnpicklingError):
        return "it is not a pickle of tensors only; other objects are never unpickled, for safety"
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first[:200]}"


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


def _block_count(keys: list[str], prefix: str) -> int:
    found = {m.group(1) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return len(found)


def _shape(state_dict: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...] | None:
    value = state_dict.get(key)
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def infer_architecture(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The ``LagerNVSModel`` config values a state dict reveals by its keys and shapes.

    Only values whose tell-tale tensors are present are returned (see the module docstring for
    what no checkpoint reveals).
    """
    keys = list(state_dict)
    agg = _AGGREGATOR_PREFIX
    found: dict[str, Any] = {}
    if (attention_type := infer_attention_type(state_dict)) is not None:
        found["attention_type"] = attention_type
    if cls_token := _shape(state_dict, agg + "patch_embed.cls_token"):
        found["encoder_dim"] = cls_token[-1]
    for name, prefix in (
        ("dino_depth", agg + "patch_embed.blocks."),
        ("aggregator_depth", agg + "frame_blocks."),
        ("renderer_depth", _RENDERER_BLOCKS),
    ):
        if count := _block_count(keys, prefix):
            found[name] = count
    head = _shape(state_dict, agg + "frame_blocks.0.attn.q_norm.weight")
    if head and "encoder_dim" in found:
        found["aggregator_heads"] = found["encoder_dim"] // head[0]
    if patch := _shape(state_dict, agg + "patch_embed.patch_embed.proj.weight"):
        found["encoder_patch_size"] = patch[-1]
        if positions := _shape(state_dict, agg + "patch_embed.pos_embed"):
            found["encoder_image_size"] = math.isqrt(positions[1] - 1) * patch[-1]
    for name, key, axis in (
        ("dino_num_register_tokens", agg + "patch_embed.register_tokens", 1),
        ("aggregator_num_register_tokens", agg + "register_token", 2),
        ("camera_token_dim", "reconstructor.camera_mlp.0.weight", 1),
        ("renderer_width", "renderer.tgt_norm.weight", 0),
        ("patch_size", "renderer.tgt_embedder.proj.weight", -1),
        ("renderer_num_registers", "renderer.per_view_register_tokens", 1),
    ):
        if shape := _shape(state_dict, key):
            found[name] = shape[axis]
    renderer_head = next(
        (v for k, v in state_dict.items() if k.startswith(_RENDERER_BLOCKS + "0.")
         and k.endswith(".q_norm.weight")),
        None,
    )  # fmt: skip
    if renderer_head is not None and "renderer_width" in found:
        found["renderer_heads"] = found["renderer_width"] // renderer_head.shape[0]
    return found


def architecture_differences(
    config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]
) -> list[str]:
    """``name: V in the checkpoint vs W in the config`` for each revealed value that differs."""
    return [
        f"{name}: {value} in the checkpoint vs {config[name]} in the config"
        for name, value in infer_architecture(state_dict).items()
        if name in config and config[name] != value
    ]


def check_finite(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ValueError naming the tensors that hold NaN or infinite values (meta tensors pass)."""
    bad = [
        key
        for key, value in state_dict.items()
        if value.is_floating_point() and not value.is_meta and not bool(value.isfinite().all())
    ]
    if bad:
        raise ValueError(
            f"{source} holds non-finite weights (NaN or inf) in {_listing(bad)}; the file is "
            "corrupt or its training diverged: use another checkpoint"
        )


def preset_name_conflict(path: str | os.PathLike, preset: str) -> str | None:
    """Why the file name of an official checkpoint suggests another preset (None: it does not).

    The weights of ``dl3dv_256`` and ``general_512`` cannot be told apart (see the module
    docstring); their official file names can.
    """
    name = Path(path).name.lower()  # the file's name: not the folders it lies in
    named = [p for p, word in _PRESET_WORDS.items() if word in name]
    if not named or preset in named:
        return None
    return (
        f"{path} looks like a {' or '.join(named)} checkpoint but preset {preset!r} was given; "
        "the weights cannot tell these presets apart (they differ in image size and aspect "
        "handling only): check the preset"
    )


def check_state_dict(
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, torch.Tensor],
    source: str,
    config: Mapping[str, Any] | None = None,
    fix: str = "build the model with the preset/config the checkpoint was trained with",
) -> None:
    """Raise ValueError unless ``given`` has exactly the keys and shapes of ``expected``.

    The message lists the config values ``given`` reveals that differ from ``config`` (when
    given), the missing keys, the unexpected keys and the shape mismatches, then ``fix``.
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
    differences = architecture_differences(config, given) if problems and config else []
    if differences:
        problems.insert(0, "architecture: " + ", ".join(differences))
    if problems:
        raise ValueError(f"{source} does not match the model ({'; '.join(problems)}); {fix}")


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
    _load_strictly(model, state_dict, "the LagerNVS state dict")


def _load_strictly(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, **fix: str
) -> None:
    """Check keys, shapes and finiteness, then assign the tensors in the model's dtypes."""
    expected = model.state_dict()
    check_state_dict(expected, state_dict, source, dict(model.config), **fix)
    check_finite(state_dict, source)
    converted = {k: state_dict[k].to(dtype=v.dtype) for k, v in expected.items()}
    model.load_state_dict(converted, strict=True, assign=True)


def check_loading_info(info: Mapping[str, list], source: str) -> None:
    """Refuse what diffusers' ``from_pretrained`` only warns about (its ``output_loading_info``):
    missing keys (initialised at random), unexpected keys (dropped) and load errors, named."""
    problems = [
        f"{label} {_listing([str(k) for k in info.get(key) or []])}"
        for key, label in (
            ("missing_keys", "missing"),
            ("unexpected_keys", "unexpected"),
            ("mismatched_keys", "mismatched"),
            ("error_msgs", "errors:"),
        )
        if info.get(key)
    ]
    if problems:
        raise ValueError(
            f"{source}: its config.json and its weights come from different models "
            f"({'; '.join(problems)}); save the model again"
        )


_FOLDER_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def local_folder(path: str | os.PathLike, what: str = "model folder") -> Path:
    """``path`` as an existing local folder, else a one-line FileNotFoundError (or
    NotADirectoryError) saying so. Models are read from local folders only: a name that is not
    a folder here is never looked up on the Hugging Face Hub (call this before diffusers'
    ``from_pretrained``, which would try the Hub first)."""
    folder = Path(path)
    if folder.is_file():
        raise NotADirectoryError(
            f"{what} {folder} is a file; give the folder written by save_pretrained (an official "
            "model.pt loads with from_original_checkpoint or `lagernvs convert`)"
        )
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{what} {folder} does not exist; give a local folder written by save_pretrained "
            "(models are never downloaded)"
        )
    return folder


def _folder_config(folder: Path, model_class: type) -> dict[str, Any]:
    """The constructor arguments in ``folder/config.json`` (checked against ``model_class``)."""
    config_file = local_folder(folder) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"model folder {folder} holds no config.json; give a folder written by save_pretrained "
            "(e.g. RUN/model of `lagernvs train`)"
        )
    try:
        config = json.loads(config_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{config_file} is not valid JSON ({error}); save the model again"
        ) from None
    name = config.get("_class_name") if isinstance(config, dict) else None
    if name != model_class.__name__:
        raise ValueError(
            f"{config_file} describes a {name or 'model of unknown class'}, not a "
            f"{model_class.__name__}; give a {model_class.__name__} folder"
        )
    values = {k: v for k, v in config.items() if not k.startswith("_")}
    accepted = set(inspect.signature(model_class.__init__).parameters) - {"self"}
    if unknown := sorted(set(values) - accepted):
        raise ValueError(
            f"{config_file} has keys {model_class.__name__} does not take: {_listing(unknown)}; "
            "it was written by another version or edited by hand"
        )
    return values


def _folder_weights(folder: Path) -> StateDict:
    for name in _FOLDER_WEIGHTS:
        if (folder / name).is_file():
            return _as_state_dict(_read(folder / name), str(folder / name))
    raise FileNotFoundError(
        f"model folder {folder} holds a config.json but no {' or '.join(_FOLDER_WEIGHTS)}; the "
        "folder is incomplete: save the model again"
    )


def load_pretrained_model(folder: str | os.PathLike, model_class: type[M]) -> M:
    """A ``model_class`` (e.g. ``LagerNVSModel``) saved with ``save_pretrained``, loaded strictly.

    Unlike diffusers' ``from_pretrained``, which warns about missing or unexpected keys and
    initialises the missing ones at random, this refuses in one line: a ``config.json`` that
    disagrees with the weights (naming the architecture the weights reveal and the keys),
    unknown config keys, and non-finite weights. Returns the model in eval mode on the CPU.
    """
    from accelerate import init_empty_weights

    folder = Path(folder)
    config = _folder_config(folder, model_class)
    state_dict = _folder_weights(folder)
    try:
        with init_empty_weights(include_buffers=False):
            model = model_class(**config)
    except (TypeError, ValueError) as error:
        message = " ".join(str(error).split())
        raise ValueError(
            f"{folder / 'config.json'} does not describe a valid {model_class.__name__} "
            f"({message}); save the model again"
        ) from None
    _load_strictly(
        model,
        state_dict,
        f"model folder {folder}",
        fix="its config.json and its weights come from different models: save the model again",
    )
    return model.eval()


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
    check_finite(aggregator_weights, "the VGGT checkpoint's aggregator")
    aggregator.load_state_dict(
        {k: v.to(dtype=expected[k].dtype) for k, v in aggregator_weights.items()}, strict=True
    )
    return VGGTLoadResult(loaded=[_VGGT_PREFIX + k for k in expected], ignored=ignored)
