"""The model a protocol names, loaded through the one loader, and the precision it runs at."""

from __future__ import annotations

from typing import Any

import torch

from lagernvs.evaluation.protocol import ModelConfig, expand_path
from lagernvs.pipeline import LagerNVSPipeline, load_pipeline
from lagernvs.pipeline.loading import PRESET_PREFIX

__all__ = ["autocast_dtype", "check_model_paths", "load_model", "model_info"]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a protocol precision on ``device`` (None: plain float32)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def model_info(pipe: Any, source: str) -> dict[str, Any]:
    """What the summary records about a pipeline's model, ``source`` saying where it came from."""
    model = pipe.model
    return {
        "source": source,
        "attention_type": model.config.attention_type,
        "image_size": list(model.image_size),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "denoiser": getattr(pipe, "denoiser", None) is not None,
    }


def check_model_paths(config: ModelConfig) -> None:
    """Fail now, naming the key, when the file or folder the ``model`` section names is missing
    (``demo`` and ``preset:NAME`` name no path)."""
    if config.checkpoint is not None:
        checkpoint = expand_path(config.checkpoint)
        if not checkpoint.is_file():
            kind = "is a folder" if checkpoint.is_dir() else "does not exist"
            raise FileNotFoundError(
                f"config key 'model.checkpoint': {checkpoint} {kind}; download the official "
                "LagerNVS model.pt or point model.checkpoint at it"
            )
        return
    spec = str(config.pretrained)
    if spec != "demo" and not spec.startswith(PRESET_PREFIX) and not expand_path(spec).exists():
        raise FileNotFoundError(
            f"config key 'model.pretrained': {expand_path(spec)} does not exist; give 'demo', a "
            "pipeline, model or run folder, or 'preset:NAME'"
        )


def load_model(
    config: ModelConfig, device: str | torch.device = "cpu"
) -> tuple[LagerNVSPipeline, dict[str, Any]]:
    """The pipeline a protocol's ``model`` section names, on ``device``, and its summary entry.

    ``model.pretrained`` is any spec of :func:`~lagernvs.pipeline.load_pipeline` (``demo``, a
    folder, ``preset:NAME``); ``model.checkpoint`` an official ``model.pt`` with ``model.preset``.
    """
    if config.checkpoint is not None:
        checkpoint = expand_path(config.checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(
                f"model.checkpoint {checkpoint} does not exist; download the official LagerNVS "
                "model.pt or point model.checkpoint at it"
            )
        pipe = load_pipeline(checkpoint, preset=config.preset, device=device)
        return pipe, model_info(pipe, f"{checkpoint} (preset {config.preset})")
    spec = str(expand_path(str(config.pretrained)))
    pipe = load_pipeline(spec, device=device)
    random = " (random weights)" if spec.startswith(PRESET_PREFIX) else ""
    return pipe, model_info(pipe, spec + random)
