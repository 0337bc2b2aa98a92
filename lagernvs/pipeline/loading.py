"""The one model loader: every command and entry point turns a model spec into a pipeline here.

A spec is one of

* ``"demo"``: the small bundled demo model (and its denoiser), shipped with the package;
* a pipeline folder (``model_index.json``, written by ``save_pretrained`` / ``lagernvs convert``
  / ``lagernvs train-denoiser``);
* a model folder (``config.json`` + weights, written by ``lagernvs train`` into ``RUN/model``), or
  a run folder holding ``model/`` or ``pipeline/``;
* an official checkpoint file (``model.pt``, ``.pth``, ``.bin`` or ``.safetensors``) together
  with a ``preset`` (e.g. ``re10k_2v_256``);
* ``"preset:NAME"``: a freshly initialised model of preset NAME (random weights; for speed tests
  and smoke runs — it is spelled out so that nobody benchmarks random weights by accident).

Folders are read locally only (``local_files_only``): a missing path is reported as missing, never
looked up on the Hugging Face Hub.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from lagernvs.pipeline.pipeline import LagerNVSPipeline

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "DEMO_DENOISER_DIR",
    "DEMO_MODEL_DIR",
    "DEMO_SCENES_DIR",
    "PRESET_PREFIX",
    "demo_pipeline",
    "load_pipeline",
    "resolve_device",
]

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_MODEL_DIR = ASSETS / "demo_model"
DEMO_DENOISER_DIR = ASSETS / "demo_denoiser"
DEMO_SCENES_DIR = ASSETS / "demo_scenes"
PRESET_PREFIX = "preset:"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
SPEC_HELP = (
    "'demo', a pipeline or model folder, a run folder, an official model.pt with a preset, or "
    "'preset:NAME' for random weights"
)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A usable torch device from a user string, or a one-line ValueError saying why not.

    ``None`` and ``"auto"`` pick CUDA when available, else the CPU.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or auto"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but CUDA is not available; use cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} was asked for but MPS is not available; use cpu")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use cpu, cuda, cuda:N, mps or auto")
    return resolved


def demo_pipeline(
    device: str | torch.device = "cpu", with_denoiser: bool | None = None
) -> LagerNVSPipeline:
    """The bundled demo pipeline (64x64 views), loaded from the package without network.

    The bundled demo denoiser and its scheduler (fine-tuned from the demo model, for
    ``mode="sampled"``) are attached when ``with_denoiser`` is True (required) or None (when
    present); False loads the deterministic model only.
    """
    from lagernvs.pipeline.pipeline import LagerNVSPipeline

    if not (DEMO_MODEL_DIR / "model_index.json").is_file():
        raise FileNotFoundError(
            f"the bundled demo model is missing from {DEMO_MODEL_DIR}; reinstall lagernvs or "
            "rebuild it with scripts/train_demo_model.py"
        )
    pipe = LagerNVSPipeline.from_pretrained(DEMO_MODEL_DIR, local_files_only=True)
    has_denoiser = (DEMO_DENOISER_DIR / "denoiser" / "config.json").is_file()
    if with_denoiser or (with_denoiser is None and has_denoiser):
        from diffusers import DDIMScheduler

        from lagernvs.diffusion import DenoisingRenderer

        if not has_denoiser:
            raise FileNotFoundError(
                f"the bundled demo denoiser is missing from {DEMO_DENOISER_DIR}; reinstall "
                "lagernvs or use the deterministic demo"
            )
        pipe.register_modules(
            denoiser=DenoisingRenderer.from_pretrained(DEMO_DENOISER_DIR, subfolder="denoiser"),
            scheduler=DDIMScheduler.from_pretrained(DEMO_DENOISER_DIR, subfolder="scheduler"),
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(resolve_device(device))


def _folder_pipeline(folder: Path) -> LagerNVSPipeline:
    """A pipeline from a pipeline folder, a model folder or a run folder."""
    from lagernvs.models import LagerNVSModel
    from lagernvs.pipeline.pipeline import LagerNVSPipeline

    for candidate in (folder, folder / "pipeline"):
        if (candidate / "model_index.json").is_file():
            return LagerNVSPipeline.from_pretrained(candidate, local_files_only=True)
    for candidate in (folder, folder / "model"):
        if (candidate / "config.json").is_file():
            return LagerNVSPipeline(model=LagerNVSModel.from_pretrained(candidate))
    raise FileNotFoundError(
        f"{folder} holds no model: expected model_index.json (a pipeline folder), config.json (a "
        "model folder written by `lagernvs train`) or a run folder with model/ or pipeline/"
    )


def load_pipeline(
    spec: str | os.PathLike,
    preset: str | None = None,
    device: str | torch.device | None = "cpu",
    with_denoiser: bool | None = None,
) -> LagerNVSPipeline:
    """The pipeline a model spec names (see the module docstring), in eval mode on ``device``.

    Args:
        spec: ``"demo"``, a folder, an official checkpoint file (with ``preset``) or
            ``"preset:NAME"``.
        preset: the preset of an official checkpoint file (``re10k_2v_256``, ``dl3dv_256``,
            ``general_512``); refused for the other specs, which carry their own configuration.
        device: where to put the pipeline (``"auto"``/None: CUDA when available).
        with_denoiser: for ``"demo"``: attach the bundled denoiser (None: when present).
    """
    from lagernvs.models import PRESETS, LagerNVSModel
    from lagernvs.pipeline.pipeline import LagerNVSPipeline

    target = resolve_device(device)
    text = os.fspath(spec)
    is_file = Path(text).is_file()
    if preset is not None and not is_file:
        raise ValueError(
            f"a preset only applies to an official checkpoint file, not to model {text!r}"
        )
    if text == "demo":
        return demo_pipeline(target, with_denoiser=with_denoiser)
    if text.startswith(PRESET_PREFIX):
        name = text[len(PRESET_PREFIX) :]
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r} in {text!r}; presets: {sorted(PRESETS)}")
        with torch.device(target):
            pipe = LagerNVSPipeline(model=LagerNVSModel.from_preset(name).eval())
        return pipe.to(target)
    path = Path(text)
    if path.is_dir():
        pipe = _folder_pipeline(path)
    elif is_file:
        if path.suffix not in CHECKPOINT_SUFFIXES:
            raise ValueError(
                f"{path} is not a checkpoint file (expected {', '.join(CHECKPOINT_SUFFIXES)}); "
                f"give {SPEC_HELP}"
            )
        if preset is None:
            raise ValueError(
                f"{path} is an official checkpoint: name its preset ({', '.join(sorted(PRESETS))})"
            )
        pipe = LagerNVSPipeline.from_original_checkpoint(path, preset)
    elif path.exists():
        raise ValueError(f"model {path} is neither a folder nor a file; give {SPEC_HELP}")
    elif text in PRESETS:
        raise ValueError(
            f"model {text!r} is a preset name: spell random weights as '{PRESET_PREFIX}{text}', "
            "or give an official checkpoint file with this preset"
        )
    else:
        raise FileNotFoundError(f"model {text!r} does not exist; give {SPEC_HELP}")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(target)
