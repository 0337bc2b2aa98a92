"""`lagernvs bench speed`: encoder latency, renderer frames per second and peak memory.

The model is any spec of :func:`lagernvs.pipeline.load_pipeline` (``demo``, a folder, an official
checkpoint with its preset); by default it is timed as it is: at its own resolution, with its own
renderer attention variant. ``preset:NAME`` times a random-weight model of an official size, by
default in every attention variant. For every attention variant, precision, render size and
number of source views:

* ``encode_ms``: one scene's encoder pass (V source views -> scene tokens);
* ``prepare_ms``: the renderer's per-scene preparation (e.g. cross-attention keys/values),
  done once per scene like the encoder;
* ``render_ms`` / ``fps``: rendering ``targets`` novel views from the prepared scene, which is
  what an interactive viewer pays per frame (``fps = targets / render time``);
* ``encode_peak_mb`` / ``render_peak_mb``: CUDA peak memory of each stage (CPU runs report
  none: the process RSS cannot be attributed to one stage).

Times are medians over ``runs`` calls after ``warmup`` calls; on CUDA they come from CUDA
events. Weights do not change the timings: variants other than the loaded model's own are
built with random weights and the same sizes (``weights: random`` in the results). The attention
kernel is ``backend`` (default: ``LAGERNVS_ATTENTION``, see :mod:`lagernvs.models.attention`).
``bf16`` runs under bfloat16 autocast with float32 weights, as the official evaluation does.
With ``fast`` (a :class:`~lagernvs.models.fast.FastOptions`) the renderer is timed through its
fast path instead (``bf16`` then also means bf16 weights); ``path`` names it in the results.
Nothing here asserts a time.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from lagernvs.models import ATTENTION_TYPES, LagerNVSModel, attention_backend, get_attention_backend
from lagernvs.models.fast import FastOptions, FastRenderer
from lagernvs.pipeline import load_pipeline, resolve_device
from lagernvs.pipeline.loading import PRESET_PREFIX

__all__ = [
    "PRECISIONS",
    "SpeedResult",
    "format_speed_table",
    "load_speed_model",
    "measure_ms",
    "run_speed",
]

PRECISIONS = ("fp32", "bf16")


@dataclass
class SpeedResult:
    """Timings of one (attention variant, precision, size, number of source views) case."""

    attention_type: str
    weights: str
    precision: str
    image_size: int
    num_views: int
    targets: int
    path: str = "plain"
    encode_ms: float | None = None
    prepare_ms: float | None = None
    render_ms: float | None = None
    fps: float | None = None
    encode_peak_mb: float | None = None
    render_peak_mb: float | None = None
    error: str | None = None


def load_speed_model(
    spec: str, device: torch.device, preset: str | None = None
) -> tuple[LagerNVSModel, str]:
    """The model of ``--model`` (any :func:`~lagernvs.pipeline.load_pipeline` spec, ``preset``
    for an official checkpoint file), in eval mode on ``device``, with a description."""
    model = load_pipeline(spec, preset=preset, device=device, with_denoiser=False).model
    if spec.startswith(PRESET_PREFIX):
        return model.eval(), f"{spec} (random weights)"
    return model.eval(), spec if preset is None else f"{spec} (preset {preset})"


def _default_sizes(model: LagerNVSModel) -> tuple[int]:
    """The model's own (square) resolution."""
    height, width = model.image_size
    if height != width:
        raise ValueError(f"the model renders {height}x{width} views; pass square sizes (--sizes)")
    return (height,)


def _variant(
    model: LagerNVSModel, attention_type: str, device: torch.device, weights: str
) -> tuple[LagerNVSModel, str]:
    """``model`` (with its ``weights`` label) for its own attention type, else a random model
    of the same sizes."""
    if model.config.attention_type == attention_type:
        return model, weights
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}
    config["attention_type"] = attention_type
    with torch.device(device):
        return LagerNVSModel(**config).eval(), "random"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_ms(
    fn: Callable[[], Any],
    device: torch.device,
    warmup: int,
    runs: int,
    max_seconds: float | None = None,
) -> tuple[float, float | None]:
    """Median milliseconds of ``fn`` over ``runs`` calls after ``warmup`` calls, and the CUDA
    peak memory (MB) during the timed calls (None on CPU). With ``max_seconds``, the timed calls
    stop once they have taken that long together (after one call at least)."""
    for _ in range(warmup):
        fn()
    _synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    while len(times) < runs and (max_seconds is None or sum(times) < max_seconds * 1e3):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e3)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return statistics.median(times), peak


def _measure_case(
    model: LagerNVSModel,
    result: SpeedResult,
    device: torch.device,
    warmup: int,
    runs: int,
    fast: FastOptions | None = None,
) -> None:
    """Fill ``result`` with the timings of its case (the renderer through ``fast`` if given)."""
    size, views = result.image_size, result.num_views
    generator = torch.Generator(device="cpu").manual_seed(0)
    images = torch.rand(1, views, 3, size, size, generator=generator).to(device)
    tokens = torch.randn(1, views, model.config.camera_token_dim, generator=generator).to(device)
    rays = torch.randn(1, result.targets, 6, size, size, generator=generator).to(device)
    enabled = result.precision == "bf16"
    renderer: Any = model.renderer
    if fast is not None:
        renderer = FastRenderer(model.renderer, replace(fast, bf16=enabled))
        result.path = renderer.options.describe()
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=enabled):
        result.encode_ms, result.encode_peak_mb = measure_ms(
            lambda: model.encode(images, tokens), device, warmup, runs
        )
        scene_tokens = model.encode(images, tokens)
        result.prepare_ms, _ = measure_ms(
            lambda: renderer.prepare_scene(scene_tokens), device, warmup, runs
        )
        prepared = renderer.prepare_scene(scene_tokens)
        result.render_ms, result.render_peak_mb = measure_ms(
            lambda: renderer.render_views(prepared, rays), device, warmup, runs
        )
    result.fps = 1e3 * result.targets / result.render_ms


def run_speed(
    model_spec: str,
    device: str | torch.device | None = "auto",
    output_dir: str | Path | None = None,
    sizes: Sequence[int] | None = None,
    views: Sequence[int] = tuple(range(1, 10)),
    attention_types: Sequence[str] | None = None,
    precisions: Sequence[str] = PRECISIONS,
    targets: int = 1,
    warmup: int = 3,
    runs: int = 10,
    progress: Callable[[SpeedResult], None] | None = None,
    preset: str | None = None,
    backend: str | None = None,
    fast: FastOptions | None = None,
) -> dict[str, Any]:
    """Time every case; write ``speed.json`` and ``speed.md`` to ``output_dir`` when given.

    ``sizes`` None: the model's own resolution; ``attention_types`` None: the model's own variant
    (every variant for ``preset:NAME``); ``preset``: of an official checkpoint file ``model_spec``;
    ``backend``: the attention kernel (None: the current one); ``fast``: time the renderer's
    fast path with these options (their ``bf16`` follows each precision). A case that runs out
    of CUDA memory is recorded with ``error`` and the sweep goes on.
    """
    device = resolve_device(device)
    _check_options(sizes, views, attention_types, precisions, targets, warmup, runs)
    model, source = load_speed_model(model_spec, device, preset)
    random_weights = model_spec.startswith(PRESET_PREFIX)
    if sizes is None:
        sizes = _default_sizes(model)
    if attention_types is None:
        attention_types = ATTENTION_TYPES if random_weights else (model.config.attention_type,)
    patch = model.config.patch_size
    if any(size % patch for size in sizes):
        raise ValueError(f"sizes {list(sizes)} must be multiples of the patch size {patch}")
    backend = backend or get_attention_backend()
    own = "random" if random_weights else "loaded"
    results = []
    with attention_backend(backend):
        for attention_type in attention_types:
            variant, weights = _variant(model, attention_type, device, own)
            for precision, size, count in itertools.product(precisions, sizes, views):
                result = SpeedResult(attention_type, weights, precision, size, count, targets)
                try:
                    _measure_case(variant, result, device, warmup, runs, fast)
                except torch.cuda.OutOfMemoryError:
                    result.error = "CUDA out of memory"
                    torch.cuda.empty_cache()
                results.append(result)
                if progress is not None:
                    progress(result)
            del variant
    report = {
        "model": source,
        "model_config": {k: v for k, v in model.config.items() if not k.startswith("_")},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "attention_backend": backend,
        "torch": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "warmup": warmup,
        "runs": runs,
        "timer": "cuda events" if device.type == "cuda" else "perf_counter",
        "results": [asdict(r) for r in results],
    }
    if output_dir is not None:
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "speed.json").write_text(json.dumps(report, indent=2, default=list) + "\n")
        (folder / "speed.md").write_text(format_speed_table(report) + "\n")
    return report


def _check_options(
    sizes: Sequence[int] | None,
    views: Sequence[int],
    attention_types: Sequence[str] | None,
    precisions: Sequence[str],
    targets: int,
    warmup: int,
    runs: int,
) -> None:
    """Refuse impossible options before the model loads."""
    unknown = sorted(set(attention_types or ()) - set(ATTENTION_TYPES))
    if unknown:
        raise ValueError(f"unknown attention types {unknown}; choose from {ATTENTION_TYPES}")
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        raise ValueError(f"unknown precisions {unknown}; choose from {PRECISIONS}")
    if (sizes is not None and (not sizes or min(sizes) < 1)) or not views or min(views) < 1:
        raise ValueError("sizes and views need at least one positive value each")
    if targets < 1 or runs < 1 or warmup < 0:
        raise ValueError("targets and runs must be >= 1 and warmup >= 0")


def format_speed_table(report: dict[str, Any]) -> str:
    """The results as a markdown table."""

    def cell(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        f"Model: {report['model']}; device: {report['device']}, attention kernel "
        f"{report.get('attention_backend', 'auto')}; median of {report['runs']} runs after "
        f"{report['warmup']} warm-up ({report['timer']}).",
        "",
        "| attention | weights | precision | size | views | encode ms | prepare ms | "
        "render ms | FPS | encode peak MB | render peak MB | render path |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if r["error"]:
            timings = [r["error"]] + ["-"] * 5
        else:
            timings = [
                cell(r["encode_ms"], 2),
                cell(r["prepare_ms"], 2),
                cell(r["render_ms"], 2),
                cell(r["fps"]),
                cell(r["encode_peak_mb"], 0),
                cell(r["render_peak_mb"], 0),
            ]
        lines.append(
            f"| {r['attention_type']} | {r['weights']} | {r['precision']} | {r['image_size']}² | "
            f"{r['num_views']} | " + " | ".join(timings) + f" | {r.get('path', 'plain')} |"
        )
    return "\n".join(lines)
