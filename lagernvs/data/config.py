"""The `data` section of the training configs: which shards to stream and how to sample views.

Read with :mod:`lagernvs.config`; turned into batch streams by
:mod:`lagernvs.data.training_stream`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lagernvs.config import config_error, join_key, require
from lagernvs.data.views import sampler_preset

__all__ = ["DataConfig", "DatasetConfig", "SyntheticDataConfig", "sampler_arguments"]


@dataclass
class DatasetConfig:
    """One training dataset: its shards and the view sampling of `data.recipe` for it."""

    shards: str | list[str] | None = None  # folder, brace pattern, URL list (s3://, pipe:)
    dataset: str = "re10k"  # sampler preset (recipe, dataset) of lagernvs.data.views
    weight: float = 1.0  # relative share of batches drawn from this dataset
    sampler: dict[str, Any] = field(default_factory=dict)  # ViewSamplerConfig overrides
    # Fixed context frames of every sample (e.g. the designated sources of the synthetic
    # "modes" family), targets uniform over the other frames: see FixedContextSampler.
    context_frames: list[int] | None = None


@dataclass
class SyntheticDataConfig:
    """Procedural scenes written as shards into `<output_dir>/synthetic` when shards are absent.

    `family` "modes" (:mod:`lagernvs.data.synthetic.modes`) gives the frames that the source
    frames `sources` do not see one of K known alternative textures per scene.
    """

    train_scenes: int = 32
    val_scenes: int = 8
    num_frames: int = 12
    image_size: int = 64
    seed: int = 0
    family: Literal["default", "modes"] = "default"
    sources: list[int] = field(default_factory=lambda: [3, 6])

    def validate(self, prefix: str) -> None:
        for name in ("train_scenes", "val_scenes", "num_frames", "image_size"):
            value = getattr(self, name)
            require(value >= 1, join_key(prefix, name), f"must be >= 1, got {value}")
        require(
            bool(self.sources) and all(0 <= s < self.num_frames for s in self.sources),
            join_key(prefix, "sources"),
            f"needs frame indices in [0, {self.num_frames - 1}], got {self.sources}",
        )


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
        require(len(self.train) >= 1, join_key(prefix, "train"), "needs at least one dataset")
        for index, dataset in enumerate(self.train):
            key = join_key(prefix, f"train[{index}]")
            require(dataset.weight > 0, f"{key}.weight", f"must be > 0, got {dataset.weight}")
            require(
                dataset.shards is not None or self.synthetic is not None,
                f"{key}.shards",
                "is required (or set data.synthetic to generate synthetic shards)",
            )
            try:
                sampler_preset(self.recipe, dataset.dataset, **sampler_arguments(dataset.sampler))
            except (TypeError, ValueError) as error:
                raise config_error(f"{key}.sampler", str(error)) from None
            frames = dataset.context_frames
            require(
                frames is None
                or (bool(frames) and min(frames) >= 0 and len(set(frames)) == len(frames)),
                f"{key}.context_frames",
                f"needs distinct frame indices >= 0 (or null), got {frames}",
            )
        for name in ("val_batches", "num_workers", "shuffle_buffer"):
            value = getattr(self, name)
            require(value >= 0, join_key(prefix, name), f"must be >= 0, got {value}")


def sampler_arguments(overrides: dict[str, Any]) -> dict[str, Any]:
    """YAML sampler overrides as ViewSamplerConfig arguments (lists become tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
