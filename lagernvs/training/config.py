"""Typed training configs: YAML files plus `--set key=value` overrides, validated at start-up.

Configs are nested dataclasses. `load_config(cls, path, overrides)` reads the YAML, applies the
overrides, converts every value to the declared type and runs each section's `validate(prefix)`,
so an unknown key, a wrong type or an impossible value fails before any model is built, with a
message naming the dotted key. `OptimConfig` and `LoopConfig` are shared by every entry point
that uses the training loop; `TrainConfig` is the deterministic model's file layout.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml
from diffusers.optimization import SchedulerType

T = TypeVar("T")


def _fail(key: str, message: str) -> ValueError:
    return ValueError(f"config key '{key}': {message}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(v) for v in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Return `value` as type `tp` or raise a ValueError naming `key`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _fail(key, f"expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, key)
            except ValueError as error:
                errors.append(error)
        raise _fail(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise _fail(key, f"expected one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(key, f"expected a list ({_type_name(tp)}), got {value!r}")
        if origin is list:
            return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(key, f"expected {len(args)} values ({_type_name(tp)}), got {value!r}")
        return tuple(
            _convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(key, f"expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        # YAML 1.1 reads `4e-4` (no dot) as a string; accept any string float() understands.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _fail(key, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"config field '{key}' has unsupported annotation {tp!r}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from a plain mapping, checking keys and types, then validate it."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"section '{prefix}'" if prefix else "the top level"
        raise ValueError(
            f"unknown config key '{_join(prefix, unknown[0])}'; valid keys in {where}: "
            f"{', '.join(sorted(fields))}"
        )
    values = {}
    for name, spec in fields.items():
        key = _join(prefix, name)
        if name in data:
            values[name] = _convert(data[name], hints[name], key)
        elif dataclasses.is_dataclass(hints[name]):  # validate default sections too
            values[name] = from_dict(hints[name], {}, key)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise _fail(key, "is required but missing")
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(prefix)
    return obj


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.sub=value` strings (values parsed as YAML) to a nested mapping in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key.sub=value (e.g. optim.lr=1e-4)")
        parts = key.split(".")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise _fail(
                    ".".join(parts[: depth + 1]), f"is a value, cannot set '{key}' inside it"
                )
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            raise ValueError(
                f"override {item!r}: the value is not valid YAML ({error.problem}); quote it"
            ) from None
    return data


def config_parser(
    prog: str, description: str, config_help: str, set_example: str
) -> argparse.ArgumentParser:
    """The `--config FILE --output-dir DIR [--set key=value ...]` parser every entry point uses."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help=config_help)
    parser.add_argument("--output-dir", required=True, type=Path, help="run folder (resumable)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. {set_example} (repeatable)",
    )
    return parser


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Read YAML `path` (None = all defaults), apply `overrides` and return a validated `cls`."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must hold a mapping of sections, got {loaded!r}")
        data = loaded or {}
    return from_dict(cls, apply_overrides(data, list(overrides or [])))


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples as lists), suitable for YAML/JSON dumps."""
    return yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(config)), sort_keys=False))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise _fail(key, message)


@dataclass
class OptimConfig:
    """AdamW, learning-rate schedule, clipping and EMA (shared by every training entry point)."""

    lr: float = 4e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.05
    # Parameters whose names contain one of these (plus every 1-D parameter) get no decay.
    no_decay_keywords: list[str] = field(default_factory=lambda: ["token", "register", "pos_embed"])
    lr_schedule: str = "cosine"  # any diffusers SchedulerType name
    warmup_steps: int = 3000
    grad_clip: float | None = 1.0  # null: no clipping (non-finite norms still skip the step)
    skip_factor: float = 5.0  # skip the step when grad norm > skip_factor * grad_clip
    ema_decay: float | None = None  # null: no EMA

    def validate(self, prefix: str) -> None:
        _require(self.lr > 0, _join(prefix, "lr"), f"must be > 0, got {self.lr}")
        for i, beta in enumerate(self.betas):
            _require(0 <= beta < 1, _join(prefix, f"betas[{i}]"), f"must be in [0, 1), got {beta}")
        _require(self.eps > 0, _join(prefix, "eps"), f"must be > 0, got {self.eps}")
        _require(self.weight_decay >= 0, _join(prefix, "weight_decay"), "must be >= 0")
        names = [s.value for s in SchedulerType]
        _require(
            self.lr_schedule in names,
            _join(prefix, "lr_schedule"),
            f"unknown schedule {self.lr_schedule!r}; choose one of {', '.join(names)}",
        )
        _require(self.warmup_steps >= 0, _join(prefix, "warmup_steps"), "must be >= 0")
        _require(
            self.grad_clip is None or self.grad_clip > 0,
            _join(prefix, "grad_clip"),
            f"must be > 0 or null, got {self.grad_clip}",
        )
        _require(
            self.skip_factor >= 1,
            _join(prefix, "skip_factor"),
            f"must be >= 1, got {self.skip_factor}",
        )
        _require(
            self.ema_decay is None or 0 < self.ema_decay < 1,
            _join(prefix, "ema_decay"),
            f"must be in (0, 1) or null, got {self.ema_decay}",
        )


@dataclass
class LoopConfig:
    """Steps, batch sizes, precision, checkpointing and logging of the training loop.

    `global_batch_size` is the number of samples per optimizer step summed over all processes;
    each process runs micro batches of `micro_batch_size`, and the gradient accumulation steps
    are derived from the world size, so the same file gives the same global batch on 1 or 64
    GPUs (it must divide evenly).
    """

    max_steps: int = 100_000
    global_batch_size: int = 512
    micro_batch_size: int = 8
    mixed_precision: Literal["auto", "no", "bf16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    gradient_checkpointing: bool = True
    seed: int = 0
    checkpoint_every: int = 1000
    checkpoints_total_limit: int | None = 3  # null keeps every checkpoint
    log_every: int = 50
    eval_every: int = 2000  # 0 disables periodic evaluation
    image_every: int = 2000  # 0 disables image grids
    log_with: Literal["auto", "tensorboard", "none"] = "auto"  # auto: tensorboard if installed

    def validate(self, prefix: str) -> None:
        for name in ("max_steps", "global_batch_size", "micro_batch_size", "checkpoint_every"):
            value = getattr(self, name)
            _require(value >= 1, _join(prefix, name), f"must be >= 1, got {value}")
        for name in ("log_every", "eval_every", "image_every"):
            value = getattr(self, name)
            _require(value >= 0, _join(prefix, name), f"must be >= 0, got {value}")
        _require(
            self.checkpoints_total_limit is None or self.checkpoints_total_limit >= 1,
            _join(prefix, "checkpoints_total_limit"),
            "must be >= 1 or null",
        )
        _require(
            self.global_batch_size % self.micro_batch_size == 0,
            _join(prefix, "global_batch_size"),
            f"{self.global_batch_size} is not divisible by micro_batch_size "
            f"{self.micro_batch_size}",
        )

    def gradient_accumulation_steps(self, world_size: int, prefix: str = "loop") -> int:
        """Micro batches per process per optimizer step; fails if the global batch cannot split."""
        per_step = self.micro_batch_size * world_size
        _require(
            self.global_batch_size % per_step == 0,
            _join(prefix, "global_batch_size"),
            f"{self.global_batch_size} is not divisible by micro_batch_size "
            f"({self.micro_batch_size}) x number of processes ({world_size}); change "
            "loop.global_batch_size or loop.micro_batch_size",
        )
        return self.global_batch_size // per_step


@dataclass
class ModelConfig:
    """Which model to train and how to initialise it.

    `checkpoint` is either a `save_pretrained` folder of this package or an official LagerNVS
    `model.pt` (read with `preset` + `overrides` as its config); `vggt_weights` initialises the
    encoder's aggregator of a fresh model from a VGGT(-1B) checkpoint. `freeze_encoder` freezes
    the VGGT aggregator (the official `freeze_vggt`); the camera-token MLP, the connector and
    the renderer always train.
    """

    preset: str = "re10k_2v_256"
    overrides: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    vggt_weights: str | None = None
    freeze_encoder: bool = False

    def validate(self, prefix: str) -> None:
        from lagernvs.models.presets import PRESETS

        _require(
            self.preset in PRESETS,
            _join(prefix, "preset"),
            f"unknown preset {self.preset!r}; choose one of {', '.join(sorted(PRESETS))}",
        )
        _require(
            self.checkpoint is None or self.vggt_weights is None,
            _join(prefix, "vggt_weights"),
            "cannot be combined with model.checkpoint (which already holds the encoder)",
        )


@dataclass
class DatasetConfig:
    """One training dataset: its shards and the view sampling of `data.recipe` for it."""

    shards: str | list[str] | None = None  # folder, brace pattern, URL list (s3://, pipe:)
    dataset: str = "re10k"  # sampler preset (recipe, dataset) of lagernvs.data.views
    weight: float = 1.0  # relative share of batches drawn from this dataset
    sampler: dict[str, Any] = field(default_factory=dict)  # ViewSamplerConfig overrides


@dataclass
class SyntheticDataConfig:
    """Procedural scenes written as shards into `<output_dir>/synthetic` when shards are absent."""

    train_scenes: int = 32
    val_scenes: int = 8
    num_frames: int = 12
    image_size: int = 64
    seed: int = 0

    def validate(self, prefix: str) -> None:
        for name in ("train_scenes", "val_scenes", "num_frames", "image_size"):
            value = getattr(self, name)
            _require(value >= 1, _join(prefix, name), f"must be >= 1, got {value}")


@dataclass
class DataConfig:
    """Shard streams: training datasets mixed by weight, a held-out validation stream.

    Validation draws `val_batches` batches per process from `val_shards` with the first
    dataset's view sampling and a fixed seed, so every evaluation sees the same views.
    With `synthetic` set, a dataset without `shards` (and a null `val_shards`) use shards
    generated under `<output_dir>/synthetic/`.
    """

    recipe: str = "re10k"  # official recipe of the sampler presets: re10k | dl3dv | general
    train: list[DatasetConfig] = field(default_factory=lambda: [DatasetConfig()])
    val_shards: str | list[str] | None = None  # null: no periodic evaluation
    val_batches: int = 4
    shuffle_buffer: int = 256
    num_workers: int = 4
    synthetic: SyntheticDataConfig | None = None

    def validate(self, prefix: str) -> None:
        from lagernvs.data.views import sampler_preset

        _require(len(self.train) >= 1, _join(prefix, "train"), "needs at least one dataset")
        for index, dataset in enumerate(self.train):
            key = _join(prefix, f"train[{index}]")
            _require(dataset.weight > 0, f"{key}.weight", f"must be > 0, got {dataset.weight}")
            _require(
                dataset.shards is not None or self.synthetic is not None,
                f"{key}.shards",
                "is required (or set data.synthetic to generate synthetic shards)",
            )
            try:
                sampler_preset(self.recipe, dataset.dataset, **sampler_arguments(dataset.sampler))
            except (TypeError, ValueError) as error:
                raise _fail(f"{key}.sampler", str(error)) from None
        for name in ("val_batches", "num_workers", "shuffle_buffer"):
            value = getattr(self, name)
            _require(value >= 0, _join(prefix, name), f"must be >= 0, got {value}")


def sampler_arguments(overrides: dict[str, Any]) -> dict[str, Any]:
    """YAML sampler overrides as ViewSamplerConfig arguments (lists become tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
