"""Evaluation protocols: the YAML schema of ``configs/eval/*.yaml``.

A protocol is data: which dataset and split index file, at what resolution, with how many
context views, posed or unposed, which model, which precision and metrics.
:func:`load_protocol` reads a file plus ``--set key=value`` overrides into a validated
:class:`Protocol` (through :mod:`lagernvs.config`, so a bad key or value fails before anything
runs). The dataset it describes is :mod:`lagernvs.evaluation.dataset`, the model
:mod:`lagernvs.evaluation.model`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lagernvs.config import load_config, require, to_dict

__all__ = [
    "FORMATS",
    "DatasetConfig",
    "ExtrapolationConfig",
    "MetricsConfig",
    "ModelConfig",
    "Protocol",
    "SweepConfig",
    "SyntheticConfig",
    "expand_path",
    "load_protocol",
    "protocol_path",
]

FORMATS = ("re10k", "dl3dv", "synthetic")
_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "eval"


@dataclass
class SyntheticConfig:
    """Procedural scenes generated for a ``synthetic`` dataset, all with the same views.

    ``family: modes`` (:mod:`lagernvs.data.synthetic.modes`) makes the context frames the
    scenes' designated sources: every surface they do not see carries one of K known
    alternative textures, all rendered, and the extrapolation benchmark scores unseen pixels
    against the nearest one (:mod:`lagernvs.evaluation.modes`).
    """

    num_scenes: int = 4
    num_frames: int = 10
    seed: int = 0
    context: list[int] = field(default_factory=lambda: [2, 7])
    target: list[int] = field(default_factory=lambda: [3, 4, 5, 6])
    family: Literal["default", "modes"] = "default"

    def validate(self, prefix: str) -> None:
        require(self.num_scenes >= 1, f"{prefix}.num_scenes", "must be >= 1")
        require(self.num_frames >= 2, f"{prefix}.num_frames", "must be >= 2")
        for name in ("context", "target"):
            frames = getattr(self, name)
            require(
                bool(frames) and all(0 <= f < self.num_frames for f in frames),
                f"{prefix}.{name}",
                f"needs frame indices in [0, {self.num_frames - 1}], got {frames}",
            )


@dataclass
class DatasetConfig:
    """Where the views come from and how they are prepared.

    ``image_size`` null means the model's own resolution; ``num_cond_views`` (if set) is
    checked against every index entry; ``posed: false`` zeroes the context cameras (unposed
    evaluation, targets in the first context camera's frame at the normalised scale).
    ``skip_missing`` evaluates the index scenes that exist (the summary counts the others).
    ``max_samples`` keeps only the first N samples (quick checks; excluded from resume checks).
    """

    format: Literal["re10k", "dl3dv", "synthetic"] = "re10k"
    root: str | None = None
    split: str = "test"
    index: str | None = None
    index_format: Literal["auto", "pixelsplat", "latentsplat", "dl3dv"] = "auto"
    image_size: tuple[int, int] | None = None
    num_cond_views: int | None = None
    posed: bool = True
    skip_missing: bool = False
    max_samples: int | None = None
    synthetic: SyntheticConfig | None = None

    def validate(self, prefix: str) -> None:
        if self.format == "synthetic":
            require(
                self.synthetic is not None,
                f"{prefix}.synthetic",
                "is required for format 'synthetic' (num_scenes, num_frames, context, target)",
            )
        else:
            require(self.root is not None, f"{prefix}.root", f"is required for {self.format}")
            require(self.index is not None, f"{prefix}.index", "is required (a view index file)")
        if self.image_size is not None:
            require(
                all(s > 0 and s % 8 == 0 for s in self.image_size),
                f"{prefix}.image_size",
                f"needs positive multiples of 8 (renderer patch size), got {self.image_size}",
            )
        for name in ("num_cond_views", "max_samples"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"{prefix}.{name}", "must be >= 1 or null")


@dataclass
class ModelConfig:
    """The model, as :func:`lagernvs.pipeline.load_pipeline` names it.

    ``pretrained``: ``demo``, a pipeline, model or run folder, or ``preset:NAME`` (random
    weights: smoke runs only); or ``checkpoint``: an official ``model.pt`` with its ``preset``.
    A protocol evaluates at the resolution its model was trained at; set
    ``allow_resolution_mismatch`` to evaluate a model at another one on purpose.
    """

    pretrained: str | None = None
    checkpoint: str | None = None
    preset: str | None = None
    allow_resolution_mismatch: bool = False

    def validate(self, prefix: str) -> None:
        require(
            (self.pretrained is None) != (self.checkpoint is None),
            prefix,
            "set exactly one of model.pretrained ('demo', a pipeline/model/run folder or "
            "'preset:NAME') and model.checkpoint (an official model.pt, with model.preset)",
        )
        require(
            self.checkpoint is None or self.preset is not None,
            f"{prefix}.preset",
            "is required with model.checkpoint (e.g. re10k_2v_256, dl3dv_256, general_512)",
        )
        require(
            self.checkpoint is not None or self.preset is None,
            f"{prefix}.preset",
            "only applies to model.checkpoint; for random weights set model.pretrained=preset:NAME",
        )


@dataclass
class MetricsConfig:
    """Which metrics to compute.

    LPIPS-VGG needs the ImageNet VGG-16 file in the torch hub cache; ``lpips: false`` leaves it
    out, ``lpips_pretrained: false`` uses a random trunk (tests only: not comparable numbers).
    FID/KID (Inception, needs torch-fidelity and its weight file): ``auto`` computes them when
    both are present.
    """

    lpips: bool = True
    lpips_pretrained: bool = True
    fid: bool | Literal["auto"] = False


@dataclass
class SweepConfig:
    """Synthetic distance sweep: targets ever further outside a fixed pair of context frames.

    Targets are every frame from the context span out to ``max_distance`` frames beyond it on
    both sides; each is binned by its distance in frames (0 = between the context frames).
    """

    num_scenes: int = 4
    num_frames: int = 16
    seed: int = 1
    context: list[int] = field(default_factory=lambda: [6, 9])
    max_distance: int = 6

    def validate(self, prefix: str) -> None:
        require(self.num_scenes >= 1, f"{prefix}.num_scenes", "must be >= 1")
        require(
            len(self.context) >= 1 and all(0 <= c < self.num_frames for c in self.context),
            f"{prefix}.context",
            f"needs frame indices in [0, {self.num_frames - 1}]",
        )
        require(self.max_distance >= 1, f"{prefix}.max_distance", "must be >= 1")

    def views(self) -> tuple[list[int], list[int]]:
        """Context and target frames of every sweep scene."""
        lo, hi = min(self.context), max(self.context)
        first = max(0, lo - self.max_distance)
        last = min(self.num_frames - 1, hi + self.max_distance)
        targets = [f for f in range(first, last + 1) if f not in self.context]
        return list(self.context), targets


@dataclass
class ExtrapolationConfig:
    """``lagernvs bench extrapolation``: deterministic vs sampled rendering.

    ``sampled: auto`` runs the sampled half when the pipeline has a denoiser; ``sampler`` holds
    extra arguments of the sampled call (``num_inference_steps``, ``guidance_scale``,
    ``strength``). Sample k of sample i uses a generator seeded from (``seed``, i).
    """

    sampled: bool | Literal["auto"] = "auto"
    num_samples: int = 4
    seed: int = 0
    sampler: dict[str, Any] = field(default_factory=dict)
    distance_sweep: SweepConfig | None = None

    def validate(self, prefix: str) -> None:
        require(self.num_samples >= 1, f"{prefix}.num_samples", "must be >= 1")


@dataclass
class Protocol:
    """One evaluation protocol (see ``configs/eval/``).

    ``precision``: ``auto`` (bf16 autocast on CUDA, float32 otherwise, as the official eval),
    ``bf16`` or ``fp32``. ``batch_size`` samples per forward pass (per process);
    ``chunk_size`` target views per render pass; ``num_grids`` image grids written for the
    first samples; ``resume`` continues a half-finished run in the same output folder.
    """

    name: str = ""  # empty: the file's stem
    description: str = ""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(pretrained="demo"))
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    batch_size: int = 1
    chunk_size: int = 8
    num_workers: int = 2
    num_grids: int = 4
    resume: bool = True
    extrapolation: ExtrapolationConfig | None = None

    def validate(self, prefix: str) -> None:
        for name in ("batch_size", "chunk_size"):
            require(getattr(self, name) >= 1, name, "must be >= 1")
        for name in ("num_workers", "num_grids"):
            require(getattr(self, name) >= 0, name, "must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def identity(self) -> dict[str, Any]:
        """The settings that determine the results (compared when a run resumes)."""
        data = self.to_dict()
        for key in ("batch_size", "chunk_size", "num_workers", "num_grids", "resume"):
            data.pop(key)
        data["dataset"].pop("max_samples")
        return data


def expand_path(value: str | Path) -> Path:
    """A path from a protocol value, with ``~`` and ``$VARIABLES`` expanded."""
    return Path(os.path.expandvars(os.path.expanduser(str(value))))


def protocol_path(name_or_path: str | Path) -> Path:
    """A protocol file, given as a path or as a name of ``configs/eval/<name>.yaml``."""
    path = expand_path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        raise IsADirectoryError(
            f"protocol file {path} is a folder; pass the path of a protocol YAML"
        )
    bare_name = os.sep not in str(name_or_path) and path.suffix == ""
    if bare_name:
        for folder in (Path("configs/eval"), _CONFIG_DIR):
            candidate = folder / f"{name_or_path}.yaml"
            if candidate.is_file():
                return candidate
    also = f" (nor configs/eval/{name_or_path}.yaml)" if bare_name else ""
    raise FileNotFoundError(
        f"protocol file {path} does not exist{also}; pass the path of a protocol YAML"
    )


def load_protocol(path: str | Path, overrides: Sequence[str] = ()) -> Protocol:
    """Read a protocol YAML (path or ``configs/eval`` name) and apply ``key=value`` overrides."""
    path = protocol_path(path)
    protocol = load_config(Protocol, path, list(overrides))
    protocol.name = protocol.name or path.stem
    return protocol
