"""Evaluation protocols: the YAML schema, the indexed dataset it describes and the model it names.

A protocol is data (``configs/eval/*.yaml``): which dataset and split index file, at what
resolution, with how many context views, posed or unposed, which model, which precision and
metrics. :func:`load_protocol` reads a file plus ``--set key=value`` overrides into a validated
:class:`Protocol`; :class:`IndexedViews` turns it into model samples with the reference-exact
preprocessing (:func:`lagernvs.data.preprocess_views`, the code path of
:class:`lagernvs.data.Re10kEvalDataset`); :func:`load_model` loads the model it names.

``dataset.format: synthetic`` generates procedural scenes (Re10k layout, with depth) under the
run's output folder, so such protocols run anywhere; their samples carry per-target visibility
masks (``seen``: target pixels some context view sees).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lagernvs.config import apply_overrides, from_dict, to_dict
from lagernvs.data.preprocess import preprocess_views, reference_c2w
from lagernvs.data.sources import IMAGE_EXTENSIONS, list_scenes, load_scene
from lagernvs.data.views import IndexEntry, read_view_index

__all__ = [
    "DatasetConfig",
    "ExtrapolationConfig",
    "IndexedViews",
    "MetricsConfig",
    "ModelConfig",
    "Protocol",
    "SweepConfig",
    "SyntheticConfig",
    "autocast_dtype",
    "build_dataset",
    "load_model",
    "load_protocol",
    "protocol_path",
    "sample_ids",
    "write_synthetic_split",
]

FORMATS = ("re10k", "dl3dv", "synthetic")
_LISTED = 10  # how many offending scenes an error message names
_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "eval"


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ValueError(f"protocol key '{key}': {message}")


def _path(value: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(value)))


@dataclass
class SyntheticConfig:
    """Procedural scenes generated for a ``synthetic`` dataset, all with the same views."""

    num_scenes: int = 4
    num_frames: int = 10
    seed: int = 0
    context: list[int] = field(default_factory=lambda: [2, 7])
    target: list[int] = field(default_factory=lambda: [3, 4, 5, 6])

    def validate(self, prefix: str) -> None:
        _check(self.num_scenes >= 1, f"{prefix}.num_scenes", "must be >= 1")
        _check(self.num_frames >= 2, f"{prefix}.num_frames", "must be >= 2")
        for name in ("context", "target"):
            frames = getattr(self, name)
            _check(
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
            _check(
                self.synthetic is not None,
                f"{prefix}.synthetic",
                "is required for format 'synthetic' (num_scenes, num_frames, context, target)",
            )
        else:
            _check(self.root is not None, f"{prefix}.root", f"is required for {self.format}")
            _check(self.index is not None, f"{prefix}.index", "is required (a view index file)")
        if self.image_size is not None:
            _check(
                all(s > 0 and s % 8 == 0 for s in self.image_size),
                f"{prefix}.image_size",
                f"needs positive multiples of 8 (renderer patch size), got {self.image_size}",
            )
        for name in ("num_cond_views", "max_samples"):
            value = getattr(self, name)
            _check(value is None or value >= 1, f"{prefix}.{name}", "must be >= 1 or null")


@dataclass
class ModelConfig:
    """The model: a ``save_pretrained`` folder or ``demo``, or an official ``model.pt`` + preset.

    A protocol evaluates at the resolution its model was trained at; set
    ``allow_resolution_mismatch`` to evaluate a model at another one on purpose.
    """

    pretrained: str | None = None
    checkpoint: str | None = None
    preset: str | None = None
    allow_resolution_mismatch: bool = False

    def validate(self, prefix: str) -> None:
        _check(
            (self.pretrained is None) != (self.checkpoint is None),
            prefix,
            "set exactly one of model.pretrained (a save_pretrained folder or 'demo') and "
            "model.checkpoint (an official model.pt, with model.preset)",
        )
        _check(
            self.checkpoint is None or self.preset is not None,
            f"{prefix}.preset",
            "is required with model.checkpoint (e.g. re10k_2v_256, dl3dv_256, general_512)",
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
        _check(self.num_scenes >= 1, f"{prefix}.num_scenes", "must be >= 1")
        _check(
            len(self.context) >= 1 and all(0 <= c < self.num_frames for c in self.context),
            f"{prefix}.context",
            f"needs frame indices in [0, {self.num_frames - 1}]",
        )
        _check(self.max_distance >= 1, f"{prefix}.max_distance", "must be >= 1")

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
        _check(self.num_samples >= 1, f"{prefix}.num_samples", "must be >= 1")


@dataclass
class Protocol:
    """One evaluation protocol (see ``configs/eval/``).

    ``precision``: ``auto`` (bf16 autocast on CUDA, float32 otherwise, as the official eval),
    ``bf16`` or ``fp32``. ``batch_size`` samples per forward pass (per process);
    ``chunk_size`` target views per render pass; ``num_grids`` image grids written for the
    first samples; ``resume`` continues a half-finished run in the same output folder.
    """

    name: str
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
            _check(getattr(self, name) >= 1, name, "must be >= 1")
        for name in ("num_workers", "num_grids"):
            _check(getattr(self, name) >= 0, name, "must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def identity(self) -> dict[str, Any]:
        """The settings that determine the results (compared when a run resumes)."""
        data = self.to_dict()
        for key in ("batch_size", "chunk_size", "num_workers", "num_grids", "resume"):
            data.pop(key)
        data["dataset"].pop("max_samples")
        return data


def protocol_path(name_or_path: str | Path) -> Path:
    """A protocol file, given as a path or as a name of ``configs/eval/<name>.yaml``."""
    path = _path(str(name_or_path))
    if path.is_file():
        return path
    for folder in (Path("configs/eval"), _CONFIG_DIR):
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"protocol file {path} does not exist (nor configs/eval/{name_or_path}.yaml); pass the "
        "path of a protocol YAML"
    )


def load_protocol(path: str | Path, overrides: Sequence[str] = ()) -> Protocol:
    """Read a protocol YAML (path or ``configs/eval`` name) and apply ``key=value`` overrides."""
    import yaml

    path = protocol_path(path)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"protocol file {path} must hold a mapping, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    try:
        return from_dict(Protocol, apply_overrides(data, list(overrides)))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


# ----------------------------------------------------------------------------- model


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a protocol precision on ``device`` (None: plain float32)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def load_model(config: ModelConfig) -> tuple[Any, dict[str, Any]]:
    """The pipeline a protocol names and a description of it for the summary."""
    from lagernvs.models import LagerNVSModel
    from lagernvs.pipeline import LagerNVSPipeline

    if config.pretrained == "demo":
        try:
            from lagernvs.demo import demo_pipeline
        except ImportError as error:
            raise FileNotFoundError(
                "the bundled demo model is not part of this installation (lagernvs.demo is "
                "missing); set model.pretrained to a save_pretrained folder"
            ) from error
        pipe, source = demo_pipeline(), "demo"
    elif config.pretrained is not None:
        folder = _path(config.pretrained)
        if (folder / "model_index.json").is_file():
            pipe = LagerNVSPipeline.from_pretrained(folder)
        elif (folder / "config.json").is_file():
            pipe = LagerNVSPipeline(model=LagerNVSModel.from_pretrained(folder))
        else:
            raise FileNotFoundError(
                f"model.pretrained {folder} is not a save_pretrained folder (no model_index.json "
                "or config.json); for an official model.pt use model.checkpoint and model.preset"
            )
        source = str(folder)
    else:
        checkpoint = _path(str(config.checkpoint))
        if not checkpoint.is_file():
            raise FileNotFoundError(
                f"model.checkpoint {checkpoint} does not exist; download the official LagerNVS "
                "model.pt or point model.checkpoint at it"
            )
        pipe = LagerNVSPipeline.from_original_checkpoint(checkpoint, str(config.preset))
        source = f"{checkpoint} (preset {config.preset})"
    model = pipe.model
    info = {
        "source": source,
        "attention_type": model.config.attention_type,
        "image_size": list(model.image_size),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "denoiser": getattr(pipe, "denoiser", None) is not None,
    }
    return pipe, info


# ----------------------------------------------------------------------------- synthetic data


def write_synthetic_split(
    root: Path, config: SyntheticConfig | SweepConfig, image_size: tuple[int, int], split: str
) -> tuple[Path, list[str]]:
    """Generate synthetic scenes (with depth) and a pixelSplat-style index, once per folder.

    Returns the index file and the scene ids. A folder generated earlier with the same settings
    is reused (resumed runs), one with other settings is an error.
    """
    from lagernvs.data.synthetic import write_synthetic_dataset

    if isinstance(config, SweepConfig):
        context, target = config.views()
    else:
        context, target = list(config.context), list(config.target)
    settings = {**dataclasses.asdict(config), "image_size": list(image_size), "split": split}
    stamp = root / "settings.json"
    index_path = root / "index.json"
    if stamp.is_file():
        if json.loads(stamp.read_text()) != settings:
            raise ValueError(
                f"{root} holds synthetic scenes generated with other settings; delete it or use "
                "another --output-dir"
            )
        return index_path, list(json.loads(index_path.read_text()))
    ids = write_synthetic_dataset(
        root,
        config.num_scenes,
        split=split,
        seed=config.seed,
        num_frames=config.num_frames,
        height=image_size[0],
        width=image_size[1],
        save_depth=True,
    )
    index = {scene: {"context": context, "target": target} for scene in ids}
    index_path.write_text(json.dumps(index, indent=1))
    stamp.write_text(json.dumps(settings))
    return index_path, ids


# ----------------------------------------------------------------------------- dataset


def sample_ids(entries: Sequence[IndexEntry]) -> list[str]:
    """One id per entry: the scene, or ``scene#k`` for scenes with several entries."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.scene] = counts.get(entry.scene, 0) + 1
    seen: dict[str, int] = {}
    ids = []
    for entry in entries:
        k = seen.get(entry.scene, 0)
        seen[entry.scene] = k + 1
        ids.append(entry.scene if counts[entry.scene] == 1 else f"{entry.scene}#{k}")
    return ids


def _re10k_frame_counts(root: Path, split: str, scenes: Sequence[str]) -> dict[str, int]:
    """Number of image files of each Re10k sequence (the reference indexes the sorted list)."""
    split_dir = next(
        (d for d in (root / split, root / "re10k" / split) if (d / "images").is_dir()), None
    )
    if split_dir is None:
        raise FileNotFoundError(f"no Re10k images under {root / split} or {root / 're10k' / split}")
    counts = {}
    for scene in scenes:
        with os.scandir(split_dir / "images" / scene) as files:
            counts[scene] = sum(Path(f.name).suffix.lower() in IMAGE_EXTENSIONS for f in files)
    return counts


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" (and {len(items) - _LISTED} more)" if len(items) > _LISTED else "")


class IndexedViews(Dataset):
    """The samples of a protocol's view index, preprocessed exactly as the reference does.

    Each item is :func:`~lagernvs.data.preprocess_views`' dict (context views first) plus
    ``sample_id``, ``scene``, ``position`` (index in this dataset), ``context`` / ``target``
    (frame indices) and, for synthetic scenes, ``seen`` (T, H, W) bool visibility masks of the
    targets. Re10k (and synthetic) poses go through :func:`~lagernvs.data.preprocess.
    reference_c2w` as in :class:`~lagernvs.data.Re10kEvalDataset`.

    The constructor checks the whole index against the dataset and lists every scene it names
    that the dataset lacks and every frame index beyond a scene's frames.
    """

    def __init__(
        self,
        root: str | Path,
        index_file: str | Path,
        format: str,  # noqa: A002
        image_size: tuple[int, int],
        split: str = "test",
        index_format: str | None = None,
        num_cond_views: int | None = None,
        posed: bool = True,
        skip_missing: bool = False,
        max_samples: int | None = None,
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"unknown dataset format {format!r}; use one of {FORMATS}")
        self.root = _path(str(root))
        self.format = format
        self.reader = "dl3dv" if format == "dl3dv" else "re10k"
        self.split = split
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.posed = posed
        index_file = _path(str(index_file))
        entries = read_view_index(index_file, format=index_format)
        entries, self.missing = self._check_scenes(entries, index_file, skip_missing)
        self._check_frames(entries, index_file)
        if num_cond_views is not None:
            wrong = sorted({e.scene for e in entries if len(e.context) != num_cond_views})
            if wrong:
                raise ValueError(
                    f"{index_file} has entries with another number of context views than "
                    f"dataset.num_cond_views={num_cond_views}: {_listed(wrong)}"
                )
        ids = sample_ids(entries)
        if max_samples is not None:
            entries, ids = entries[:max_samples], ids[:max_samples]
        self.entries, self.ids = entries, ids

    def _check_scenes(
        self, entries: list[IndexEntry], index_file: Path, skip_missing: bool
    ) -> tuple[list[IndexEntry], list[str]]:
        available = list_scenes(self.root, self.reader, split=self.split)
        self.scene_dirs = {s: s for s in available}
        if self.reader == "dl3dv":  # indices may name a DL3DV scene by its bare hash
            self.scene_dirs.update({s.rsplit("/", 1)[-1]: s for s in available})
        missing = sorted({e.scene for e in entries} - set(self.scene_dirs))
        if missing and not skip_missing:
            where = f"{self.root}" + (f" split {self.split!r}" if self.reader == "re10k" else "")
            raise FileNotFoundError(
                f"{index_file} names {len(missing)} scenes that {where} lacks: {_listed(missing)}; "
                "check dataset.root and dataset.split, or --set dataset.skip_missing=true to "
                "evaluate the scenes present"
            )
        return [e for e in entries if e.scene in self.scene_dirs], missing

    def _frame_counts(self, scenes: Sequence[str]) -> dict[str, int]:
        if self.reader == "re10k":
            return _re10k_frame_counts(self.root, self.split, scenes)
        return {s: self._dl3dv_frames(self.scene_dirs[s]) for s in scenes}

    def _dl3dv_frames(self, scene_id: str) -> int:
        try:  # from transforms.json alone when it declares the image size
            scene = load_scene(self.root, "dl3dv", scene_id=scene_id, require_images=False)
        except ValueError:
            scene = load_scene(self.root, "dl3dv", scene_id=scene_id)
        return scene.num_frames

    def _check_frames(self, entries: list[IndexEntry], index_file: Path) -> None:
        counts = self._frame_counts(sorted({e.scene for e in entries}))
        bad = sorted(
            {
                f"{e.scene} (frame {max(e.indices)} of {counts[e.scene]} frames)"
                for e in entries
                if max(e.indices) >= counts[e.scene]
            }
        )
        if bad:
            raise ValueError(
                f"{index_file} asks for frames that {len(bad)} scenes of {self.root} lack: "
                f"{_listed(bad)}; the index does not match this version of the dataset"
            )

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, position: int) -> dict[str, Any]:
        entry = self.entries[position]
        scene = load_scene(
            self.root, self.reader, scene_id=self.scene_dirs[entry.scene], split=self.split
        )
        views = scene.select(entry.indices)
        c2w = reference_c2w(views.c2w) if self.reader == "re10k" else views.c2w
        sample = preprocess_views(
            views.image_paths,
            c2w,
            views.fxfycxcy,
            self.image_size,
            num_cond_views=len(entry.context),
            split="test",
            zero_cond_cameras=not self.posed,
            image_ids=[f"{entry.scene}_{p.name.removesuffix('.jpg')}" for p in views.image_paths],
        )
        sample.update(
            sample_id=self.ids[position],
            scene=entry.scene,
            position=position,
            context=list(entry.context),
            target=list(entry.target),
        )
        if self.format == "synthetic":
            sample["seen"] = self._visibility(entry, views)
        return sample

    def _visibility(self, entry: IndexEntry, views: Any) -> Tensor:
        """(T, H, W) masks of target pixels that some context view sees (synthetic depth)."""
        from lagernvs.data.synthetic import visibility_mask

        size = tuple(views.image_sizes[0].tolist())
        if size != self.image_size:
            raise ValueError(
                f"synthetic scene {entry.scene} was generated at {size} but the protocol "
                f"evaluates at {self.image_size}; delete the generated folder {self.root}"
            )
        depth_file = self.root / self.split / "depth" / f"{entry.scene}.npy"
        depth = torch.from_numpy(np.load(depth_file))[list(entry.indices)]
        count = len(entry.context)
        return torch.stack(
            [
                visibility_mask(
                    depth[t],
                    views.c2w[t],
                    views.fxfycxcy[t],
                    depth[:count],
                    views.c2w[:count],
                    views.fxfycxcy[:count],
                )
                for t in range(count, len(entry.indices))
            ]
        )


def build_dataset(
    config: DatasetConfig, image_size: tuple[int, int], output_dir: Path
) -> IndexedViews:
    """The protocol's dataset; synthetic scenes are generated under ``output_dir/synthetic``
    (or ``dataset.root``) on first use."""
    if config.format == "synthetic":
        assert config.synthetic is not None  # checked by DatasetConfig.validate
        root = _path(config.root) if config.root else output_dir / "synthetic"
        index, _ = write_synthetic_split(root, config.synthetic, image_size, config.split)
    else:
        root, index = _path(str(config.root)), _path(str(config.index))
    return IndexedViews(
        root,
        index,
        config.format,
        image_size,
        split=config.split,
        index_format=None if config.index_format == "auto" else config.index_format,
        num_cond_views=config.num_cond_views,
        posed=config.posed,
        skip_missing=config.skip_missing,
        max_samples=config.max_samples,
    )
