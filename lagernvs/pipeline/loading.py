"""The one model loader: every command and entry point turns a model spec into a pipeline here.

A spec is one of

* ``"demo"``: the small bundled demo model (and its denoiser), shipped with the package;
* a pipeline folder (``model_index.json``, written by ``save_pretrained`` / ``lagernvs convert``
  / ``lagernvs train-denoiser``);
* a model folder (``config.json`` of a ``LagerNVSModel`` + weights, written by ``lagernvs train``
  into ``RUN/model``), or a run folder holding ``pipeline/`` or ``model/``;
* an official checkpoint file (``model.pt``, ``.pth``, ``.bin``, ``.ckpt`` or ``.safetensors``)
  together with a ``preset`` (e.g. ``re10k_2v_256``);
* ``"preset:NAME"``: a freshly initialised model of preset NAME (random weights; for speed tests
  and smoke runs — it is spelled out so that nobody benchmarks random weights by accident).

Folders are read locally only (``local_files_only``): a missing path is reported as missing, never
looked up on the Hugging Face Hub. Their networks are loaded strictly
(:func:`~lagernvs.models.checkpoints.load_pretrained_model`): weights that disagree with the
folder's ``config.json``, or that are not finite, are refused instead of diffusers' warning.
Every refusal is a one-line ValueError or FileNotFoundError.

``vggt_weights`` attaches a camera estimator (VGGT-1B's ``model.pt``) to any of them, for
``source_cameras="estimate"``; a pipeline saved with one brings it back by itself.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers import LCMScheduler

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
MODEL_CLASS = "LagerNVSModel"


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide diffusers' "Loading pipeline components" bar (commands print one line each)."""
    from diffusers.utils import logging as diffusers_logging

    shown = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            diffusers_logging.enable_progress_bar()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A usable torch device from a user string, or a one-line ValueError saying why not.

    ``None`` and ``"auto"`` pick CUDA when available, else the CPU.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or auto") from None
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

    target = resolve_device(device)
    if not (DEMO_MODEL_DIR / "model_index.json").is_file():
        raise FileNotFoundError(
            f"the bundled demo model is missing from {DEMO_MODEL_DIR}; reinstall lagernvs or "
            "rebuild it with scripts/train_demo_model.py"
        )
    with _quiet_loading():
        pipe = LagerNVSPipeline.from_pretrained(DEMO_MODEL_DIR, local_files_only=True)
    has_denoiser = (DEMO_DENOISER_DIR / "denoiser" / "config.json").is_file()
    if with_denoiser or (with_denoiser is None and has_denoiser):
        from lagernvs.diffusion import DenoisingRenderer

        if not has_denoiser:
            raise FileNotFoundError(
                f"the bundled demo denoiser is missing from {DEMO_DENOISER_DIR}; reinstall "
                "lagernvs or use the deterministic demo"
            )
        pipe.register_modules(
            denoiser=DenoisingRenderer.from_pretrained(DEMO_DENOISER_DIR, subfolder="denoiser"),
            scheduler=_demo_sampler(),
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(target)


def _demo_sampler() -> LCMScheduler:
    """The demo's sampler: the bundled denoiser's noise schedule (a DDPMScheduler config) as an
    LCMScheduler, given only the settings LCM takes (so saved configs carry no others)."""
    from diffusers import LCMScheduler

    config = LCMScheduler.load_config(DEMO_DENOISER_DIR, subfolder="scheduler")
    accepted = inspect.signature(LCMScheduler.__init__).parameters
    return LCMScheduler.from_config({key: v for key, v in config.items() if key in accepted})


def _model_class(config_file: Path) -> str | None:
    """The ``_class_name`` a diffusers ``config.json`` names (None: unreadable or absent)."""
    try:
        config = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return config.get("_class_name") if isinstance(config, dict) else None


def _strict_components(folder: Path, with_denoiser: bool | None) -> dict[str, object]:
    """The networks of pipeline folder ``folder``, loaded strictly (see
    :func:`~lagernvs.models.checkpoints.load_pretrained_model`: diffusers would only warn about
    weights that do not match the config); None for a denoiser that is not wanted."""
    from lagernvs.diffusion import DenoisingRenderer
    from lagernvs.models import LagerNVSModel
    from lagernvs.models.checkpoints import load_pretrained_model

    components: dict[str, object] = {
        "model": load_pretrained_model(folder / "model", LagerNVSModel)
    }
    if with_denoiser is False:
        components |= {"denoiser": None, "scheduler": None}
    elif (folder / "denoiser" / "config.json").is_file():
        components["denoiser"] = load_pretrained_model(folder / "denoiser", DenoisingRenderer)
    return components


def _folder_pipeline(folder: Path, with_denoiser: bool | None) -> LagerNVSPipeline:
    """A pipeline from a pipeline folder, a model folder or a run folder (weights strictly)."""
    from lagernvs.models import LagerNVSModel
    from lagernvs.models.checkpoints import load_pretrained_model
    from lagernvs.pipeline.pipeline import LagerNVSPipeline

    for candidate in (folder, folder / "pipeline"):
        if (candidate / "model_index.json").is_file():
            components = _strict_components(candidate, with_denoiser)
            with _quiet_loading():
                return LagerNVSPipeline.from_pretrained(
                    candidate, local_files_only=True, **components
                )
    for candidate in (folder, folder / "model"):
        config = candidate / "config.json"
        if config.is_file():
            name = _model_class(config)
            if name is not None and name != MODEL_CLASS:
                raise ValueError(
                    f"{config} describes a {name}, not a {MODEL_CLASS}; "
                    f"give the model folder written by `lagernvs train` (RUN/model) or {SPEC_HELP}"
                )
            return LagerNVSPipeline(model=load_pretrained_model(candidate, LagerNVSModel))
    raise FileNotFoundError(
        f"{folder} is not a saved pipeline or model: it holds no model_index.json (a pipeline "
        "folder), no config.json (a model folder written by `lagernvs train`) and no pipeline/ "
        f"or model/ (a run folder); give {SPEC_HELP}"
    )


def _checkpoint_pipeline(path: Path, preset: str | None) -> LagerNVSPipeline:
    """A pipeline around an official checkpoint file of a named preset."""
    from lagernvs.models import PRESETS
    from lagernvs.pipeline.pipeline import LagerNVSPipeline

    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise ValueError(
            f"{path} is not a readable checkpoint (expected a {', '.join(CHECKPOINT_SUFFIXES)} "
            f"file); give {SPEC_HELP}"
        )
    if preset is None:
        raise ValueError(
            f"{path} is an official checkpoint: name its preset ({', '.join(sorted(PRESETS))})"
        )
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(sorted(PRESETS))}")
    return LagerNVSPipeline.from_original_checkpoint(path, preset)


def _preset_pipeline(name: str, target: torch.device) -> LagerNVSPipeline:
    """A freshly initialised model of preset ``name``, built directly on ``target``."""
    from lagernvs.models import PRESETS, LagerNVSModel
    from lagernvs.pipeline.pipeline import LagerNVSPipeline

    if name not in PRESETS:
        raise ValueError(
            f"unknown preset {name!r} in '{PRESET_PREFIX}{name}'; presets: "
            f"{', '.join(sorted(PRESETS))}"
        )
    with torch.device(target):
        return LagerNVSPipeline(model=LagerNVSModel.from_preset(name).eval())


def load_pipeline(
    spec: str | os.PathLike,
    preset: str | None = None,
    device: str | torch.device | None = "cpu",
    with_denoiser: bool | None = None,
    vggt_weights: str | os.PathLike | None = None,
) -> LagerNVSPipeline:
    """The pipeline a model spec names (see the module docstring), in eval mode on ``device``.

    Args:
        spec: ``"demo"``, a folder, an official checkpoint file (with ``preset``) or
            ``"preset:NAME"``.
        preset: the preset of an official checkpoint file (``re10k_2v_256``, ``dl3dv_256``,
            ``general_512``); refused for the other specs, which carry their own configuration.
        device: where to put the pipeline (``"auto"``/None: CUDA when available).
        with_denoiser: None: the denoiser the spec holds, if any; True: require one (the demo's
            bundled denoiser, or a pipeline folder's); False: the deterministic model only.
        vggt_weights: a local VGGT checkpoint file (VGGT-1B's ``model.pt``): attach its camera
            estimator as the ``camera_estimator`` component (checked before the model loads).
    """
    from lagernvs.models import PRESETS
    from lagernvs.pipeline.estimation import check_vggt_weights, load_camera_estimator

    if not isinstance(spec, str | os.PathLike):
        raise ValueError(f"model must be a string or a path, got {spec!r}; give {SPEC_HELP}")
    target = resolve_device(device)
    if vggt_weights is not None:
        check_vggt_weights(vggt_weights)
    text = os.fspath(spec)
    path = Path(text)
    named = text == "demo" or text.startswith(PRESET_PREFIX)
    if not named and not path.exists():
        if text in PRESETS:
            raise ValueError(
                f"model {text!r} is a preset name: spell random weights as "
                f"'{PRESET_PREFIX}{text}', or give an official checkpoint file with this preset"
            )
        raise FileNotFoundError(f"model {text!r} does not exist; give {SPEC_HELP}")
    if preset is not None and not path.is_file():
        raise ValueError(
            f"a preset only applies to an official checkpoint file, not to model {text!r} "
            "(it carries its own configuration); drop the preset"
        )
    if text == "demo":
        pipe = demo_pipeline(target, with_denoiser=with_denoiser)
    elif text.startswith(PRESET_PREFIX):
        pipe = _preset_pipeline(text[len(PRESET_PREFIX) :], target)
    elif path.is_dir():
        pipe = _folder_pipeline(path, with_denoiser)
    elif path.is_file():
        pipe = _checkpoint_pipeline(path, preset)
    else:
        raise ValueError(f"model {path} is neither a folder nor a file; give {SPEC_HELP}")
    if vggt_weights is not None:
        pipe.register_modules(camera_estimator=load_camera_estimator(vggt_weights))
    if with_denoiser and (pipe.denoiser is None or pipe.scheduler is None):
        raise ValueError(
            f"model {text!r} has no denoiser and scheduler; give a pipeline folder written by "
            "`lagernvs train-denoiser`, or 'demo'"
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(target)
