"""`lagernvs bench extrapolation`: deterministic vs sampled rendering off the context span.

For a protocol whose targets lie outside the context views (latentSplat Re10k ``extra``,
MVSplat360 DL3DV, or the synthetic one with exact visibility masks) every sample is rendered

* deterministically (one forward pass, the reference-exact inputs of ``lagernvs eval``), and
* when the pipeline has a diffusion decoder, ``K`` times in sampled mode through the pipeline's
  public call ``pipe(images=..., source_cameras=..., target_cameras=..., mode="sampled",
  num_samples=K, generator=...)``.

Reported side by side (scores per target, averaged per sample then over samples): PSNR / SSIM /
LPIPS of the deterministic render, of the samples on average (``sampled_mean``) and of the best
of the K samples per target and metric (``sampled_best``); the same restricted to seen / unseen
pixels where visibility masks exist; sample diversity (mean pairwise LPIPS between the K
samples, and the per-pixel standard deviation across samples, ``spread``); FID/KID when their
weights exist, on whole views and (with visibility masks) on crops around their unseen pixels
(:func:`~lagernvs.evaluation.samples.unseen_crops`); time per frame. A synthetic distance sweep
adds the same scores binned by how many frames a target lies beyond the context span (0 =
between the context frames).

On scenes of the synthetic ``modes`` family, whose unseen surfaces carry one of K known
alternatives, the summary's ``modes`` entry reports what ``lagernvs demo --mode sampled`` does:
the distance of unseen pixels to the nearest alternative for the deterministic render and the
samples, the fraction of alternatives the samples cover (:mod:`lagernvs.evaluation.modes`),
and the spread and seen-pixel PSNR of the samples next to the deterministic render.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lagernvs.cameras import Cameras
from lagernvs.evaluation.dataset import IndexedViews
from lagernvs.evaluation.metrics import SceneMean
from lagernvs.evaluation.modes import mode_scores
from lagernvs.evaluation.protocol import ExtrapolationConfig, Protocol, expand_path
from lagernvs.evaluation.records import (
    Record,
    grid_name,
    save_grid,
    summarize,
    throughput,
    write_json,
)
from lagernvs.evaluation.runner import Evaluation
from lagernvs.evaluation.samples import (
    pairwise_lpips,
    sample_generator,
    sample_spread,
    samples_by_target,
    unseen_crops,
)
from lagernvs.evaluation.synthetic import load_alternatives, modes_folder, write_synthetic_split

__all__ = [
    "ExtrapolationScorer",
    "camera_offsets",
    "format_table",
    "pairwise_lpips",
    "run_extrapolation",
    "sample_generator",
    "sample_spread",
    "samples_by_target",
    "target_distances",
    "unseen_crops",
]

_LOWER_IS_BETTER = ("lpips",)


def target_distances(context: list[int], target: list[int]) -> list[int]:
    """Frames each target lies beyond the context span (0 when between the context frames)."""
    lo, hi = min(context), max(context)
    return [max(lo - t, t - hi, 0) for t in target]


def camera_offsets(c2w: Tensor, num_cond_views: int) -> Tensor:
    """(T,) distance of each target camera to the nearest context camera, in units of the
    largest distance between context cameras (NaN for a single context view)."""
    centres = c2w[:, :3, 3].double()
    context, target = centres[:num_cond_views], centres[num_cond_views:]
    nearest = torch.cdist(target, context).min(dim=1).values
    baseline = torch.cdist(context, context).max()
    if num_cond_views < 2 or float(baseline) == 0.0:
        return torch.full_like(nearest, math.nan)
    return nearest / baseline


def _prefixed(prefix: str, scores: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}/{key}": value for key, value in scores.items()}


class ExtrapolationScorer:
    """Scores a batch deterministically and (optionally) in sampled mode; see the module doc.

    Args:
        ev: the evaluation (model, metrics, device).
        config: the protocol's extrapolation settings.
        sampled: run the sampled half.
        distribution: FID/KID metrics by name (``deterministic``, ``sampled`` and their
            ``_unseen`` crops), may be empty.
        grid_dir: folder for image grids of the first ``ev.protocol.num_grids`` samples.
        modes_dir: folder of the alternatives of ``modes`` scenes (None: no such scenes).
    """

    def __init__(
        self,
        ev: Evaluation,
        config: ExtrapolationConfig,
        sampled: bool,
        distribution: dict[str, tuple[Any, Any]],
        grid_dir: Path | None,
        modes_dir: Path | None = None,
    ) -> None:
        self.ev = ev
        self.config = config
        self.sampled = sampled
        self.distribution = distribution
        self.grid_dir = grid_dir
        self.modes_dir = modes_dir

    def __call__(self, batch: dict[str, Any]) -> list[Record]:
        ev, count = self.ev, batch["num_cond_views"]
        pred, seconds = ev.render(batch)
        target = batch["images"][:, count:]
        masks = batch.get("seen")
        scores = self._masked("deterministic", pred, target, masks)
        if masks is not None:
            scores["visibility/unseen_fraction"] = (~masks).float().mean(dim=(-2, -1))
        self._update_distribution("deterministic", pred, target)
        records = []
        for i in range(pred.shape[0]):
            record = ev.base_record(batch, i, seconds / pred.shape[0])
            record["scores"] = {key: value[i].tolist() for key, value in scores.items()}
            record["target_distance"] = target_distances(record["context"], record["target"])
            record["camera_offset"] = camera_offsets(batch["c2w"][i], count).tolist()
            samples = None
            if self.sampled:
                samples, sampled_seconds = self._sample(batch, i)
                mask = None if masks is None else masks[i]
                sampled_scores = self._sampled_scores(samples, target[i], mask)
                record["scores"].update({k: v.tolist() for k, v in sampled_scores.items()})
                record["sampled_seconds"] = sampled_seconds
                self._update_distribution("sampled", samples[:, 0][None], target[i][None])
            if masks is not None:
                self._update_unseen(pred[i], samples, target[i], ~masks[i].to(pred.device))
                record["scores"].update(self._mode_scores(batch, i, pred[i], samples, ~masks[i]))
            if self.grid_dir is not None and ev.wants_grid(record["position"]):
                rows = [batch["images"][i, :count], target[i], pred[i]]
                labels = ["sources", "ground truth", "deterministic"]
                if samples is not None:
                    rows += list(samples.transpose(0, 1))
                    labels += [f"sample {s + 1}" for s in range(samples.shape[1])]
                save_grid(self.grid_dir / grid_name(record["sample"]), rows, labels)
            records.append(record)
        return records

    def _masked(
        self, prefix: str, pred: Tensor, target: Tensor, seen: Tensor | None
    ) -> dict[str, Tensor]:
        """Scores of ``pred`` against ``target`` (broadcast), overall and on seen/unseen pixels."""
        target = target.expand_as(pred)
        scores = _prefixed(prefix, self.ev.scores(pred, target))
        if seen is not None:
            seen = seen.to(pred.device).expand(*pred.shape[:-3], *pred.shape[-2:])
            scores.update(_prefixed(f"{prefix}/seen", self.ev.scores(pred, target, seen)))
            scores.update(_prefixed(f"{prefix}/unseen", self.ev.scores(pred, target, ~seen)))
        return scores

    def _sampled_scores(
        self, samples: Tensor, target: Tensor, seen: Tensor | None
    ) -> dict[str, Tensor]:
        """Per-target scores (T,) of K samples (T, K, 3, H, W): mean, best-of-K, diversity."""
        per_sample = self._masked(
            "sampled", samples, target[:, None], None if seen is None else seen[:, None]
        )
        out: dict[str, Tensor] = {}
        for key, values in per_sample.items():  # (T, K)
            name = key.removeprefix("sampled/")
            out[f"sampled_mean/{name}"] = values.nanmean(dim=1)
            lower = name.rsplit("/", 1)[-1] in _LOWER_IS_BETTER
            best = values.nan_to_num(float("inf") if lower else float("-inf"))
            best = best.min(dim=1).values if lower else best.max(dim=1).values
            out[f"sampled_best/{name}"] = best.masked_fill(values.isnan().all(dim=1), math.nan)
        out["diversity/spread"] = sample_spread(samples).cpu()
        if seen is not None:
            seen = seen.to(samples.device)
            out["diversity/seen/spread"] = sample_spread(samples, seen).cpu()
            out["diversity/unseen/spread"] = sample_spread(samples, ~seen).cpu()
        if self.ev.lpips_net is not None:
            out["diversity/lpips"] = pairwise_lpips(self.ev.lpips_net, samples).float().cpu()
        return out

    def _sample(self, batch: dict[str, Any], i: int) -> tuple[Tensor, float]:
        """K samples (T, K, 3, H, W) of sample ``i`` through the pipeline's sampled mode."""
        ev, count = self.ev, batch["num_cond_views"]
        c2w, intrinsics = batch["c2w"][i], batch["fxfycxcy"][i]
        size = ev.image_size
        sources = Cameras(c2w[:count], intrinsics[:count], size)
        targets = Cameras(c2w[count:], intrinsics[count:], size)
        generator = sample_generator(self.config.seed, batch["position"][i])
        ev.synchronize()
        start = time.perf_counter()
        with torch.autocast(
            ev.device.type, dtype=ev.autocast or torch.bfloat16, enabled=ev.autocast is not None
        ):
            output = ev.pipe(
                images=batch["images"][i, :count],
                source_cameras=sources if ev.protocol.dataset.posed else None,
                target_cameras=targets,
                mode="sampled",
                num_samples=self.config.num_samples,
                generator=generator,
                output_type="pt",
                **self.config.sampler,
            )
        ev.synchronize()
        seconds = time.perf_counter() - start
        images = samples_by_target(output.images, len(targets), self.config.num_samples)
        return images.float().to(ev.device), seconds

    def _update_unseen(
        self, pred: Tensor, samples: Tensor | None, target: Tensor, unseen: Tensor
    ) -> None:
        """FID/KID of crops around the unseen pixels of one sample's targets."""
        views = {"deterministic_unseen": pred}
        if samples is not None:
            views["sampled_unseen"] = samples[:, 0]
        for name, images in views.items():
            crops, truth = unseen_crops(images, target, unseen)
            if len(crops):
                self._update_distribution(name, crops[None], truth[None])

    def _mode_scores(
        self, batch: dict[str, Any], i: int, pred: Tensor, samples: Tensor | None, unseen: Tensor
    ) -> dict[str, list[float]]:
        """Distances to the nearest alternative and coverage (modes scenes only)."""
        if self.modes_dir is None:
            return {}
        alternatives = load_alternatives(self.modes_dir, batch["scene"][i], batch["target"][i])
        if alternatives is None:
            return {}
        scores = mode_scores(
            pred.cpu(),
            alternatives,
            unseen.cpu(),
            None if samples is None else samples.transpose(0, 1).cpu(),
        )
        return {f"modes/{key}": value.tolist() for key, value in scores.items()}

    def _update_distribution(self, name: str, pred: Tensor, target: Tensor) -> None:
        if name not in self.distribution:
            return
        for metric in self.distribution[name]:
            metric.update(target.flatten(0, 1).to(self.ev.device), real=True)
            metric.update(pred.flatten(0, 1).to(self.ev.device), real=False)


def _nested(flat: dict[str, float | None]) -> dict[str, dict[str, float | None]]:
    """``{"deterministic/seen/psnr": v}`` -> ``{"deterministic": {"seen/psnr": v}}``."""
    out: dict[str, dict[str, float | None]] = {}
    for key, value in flat.items():
        head, _, rest = key.partition("/")
        out.setdefault(head if rest else "other", {})[rest or head] = value
    return out


def _with_modes(metrics: dict[str, Any]) -> dict[str, Any]:
    """Complete the ``modes`` entry (modes scenes) with the spread and seen-pixel PSNR, so that
    it holds every number of ``lagernvs demo --mode sampled`` (spread here is the population
    standard deviation across samples)."""
    if "modes" not in metrics:
        return metrics
    diversity, sampled = metrics.get("diversity", {}), metrics.get("sampled_mean", {})
    extra = {"psnr_seen_deterministic": metrics["deterministic"].get("seen/psnr")}
    if sampled:
        extra.update(
            spread_seen=diversity.get("seen/spread"),
            spread_unseen=diversity.get("unseen/spread"),
            psnr_seen=sampled.get("seen/psnr"),
        )
    return {**metrics, "modes": {**metrics["modes"], **extra}}


def by_distance(records: list[Record]) -> list[dict[str, Any]]:
    """Scores per target distance (frames beyond the context span): for each distance, the
    targets at that distance averaged per sample, then over samples."""
    distances = sorted({d for r in records for d in r["target_distance"]})
    keys = sorted({key for r in records for key in r["scores"]})
    rows = []
    for distance in distances:
        row: dict[str, Any] = {"distance": distance}
        picks = [(r, torch.tensor([d == distance for d in r["target_distance"]])) for r in records]
        row["num_targets"] = int(sum(int(p.sum()) for _, p in picks))
        for key in ["camera_offset", *keys]:
            metric = SceneMean(sync_on_compute=False)  # records are already gathered
            for record, pick in picks:
                values = record[key] if key == "camera_offset" else record["scores"].get(key)
                if values is not None and bool(pick.any()):
                    metric.update(torch.tensor(values, dtype=torch.float64)[pick])
            value = float(metric.compute()) if metric.num_scenes else math.nan
            row[key] = None if np.isnan(value) else value
        rows.append(row)
    return rows


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def format_table(summary: dict[str, Any]) -> str:
    """Deterministic and sampled scores side by side (markdown)."""
    metrics = summary["metrics"]
    columns = [c for c in ("deterministic", "sampled_mean", "sampled_best") if c in metrics]
    k = summary.get("num_samples_per_target")
    titles = {"sampled_mean": f"sampled (mean of {k})", "sampled_best": f"sampled (best of {k})"}
    names = sorted({n for c in columns for n in metrics[c]}, key=lambda n: (n.count("/"), n))

    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    def row(name: str, values: list[str]) -> str:
        return f"| {name} | " + " | ".join(values) + " |"

    times = summary["seconds_per_frame"]
    lines = [row("metric", [titles.get(c, c) for c in columns]), "|---" * (len(columns) + 1) + "|"]
    lines += [row(n, [cell(metrics[c].get(n)) for c in columns]) for n in names]
    lines.append(
        row(
            "seconds per frame",
            [cell(times["sampled" if c != "deterministic" else c]) for c in columns],
        )
    )
    unseen = metrics.get("visibility", {}).get("unseen_fraction")
    if unseen is not None:
        lines.append(row("unseen pixel fraction", [cell(unseen)] + [""] * (len(columns) - 1)))
    for name, value in metrics.get("diversity", {}).items():
        lines.append(row(f"diversity {name}", ["", cell(value), ""][: len(columns)]))
    modes = metrics.get("modes", {})
    if "mode_error_deterministic" in modes:
        values = [modes["mode_error_deterministic"], modes.get("mode_error_sampled"), None]
        cells = [cell(v) if v is not None else "" for v in values][: len(columns)]
        lines.append(row("unseen: distance to nearest alternative", cells))
    if "mode_coverage" in modes:
        coverage = ["", cell(modes["mode_coverage"]), ""][: len(columns)]
        lines.append(row("alternatives covered by the samples", coverage))
    return "\n".join(lines)


def _sampled_enabled(ev: Evaluation, config: ExtrapolationConfig) -> tuple[bool, str | None]:
    has_denoiser = getattr(ev.pipe, "denoiser", None) is not None
    if config.sampled is True and not has_denoiser:
        raise ValueError(
            f"extrapolation.sampled=true but the model ({ev.model_info['source']}) has no "
            "diffusion decoder (denoiser); use a pipeline saved with one, or --set "
            "extrapolation.sampled=auto to run the deterministic half only"
        )
    if config.sampled is False:
        return False, "disabled (extrapolation.sampled=false)"
    if not has_denoiser:
        return False, "skipped: the pipeline has no denoiser (deterministic only)"
    return True, None


def _sweep_dataset(ev: Evaluation, config: ExtrapolationConfig) -> IndexedViews:
    assert config.distance_sweep is not None
    root = ev.output_dir / "sweep" / "synthetic"
    with ev.accelerator.main_process_first():
        index, _ = write_synthetic_split(root, config.distance_sweep, ev.image_size, "test")
    return IndexedViews(root, index, "synthetic", ev.image_size, posed=ev.protocol.dataset.posed)


def run_extrapolation(
    protocol: Protocol,
    output_dir: str | Path,
    pipe: Any = None,
    accelerator: Any = None,
    fid_feature: int | torch.nn.Module = 2048,
) -> dict[str, Any] | None:
    """Run the extrapolation benchmark; write and return its summary (main process only).

    Writes ``summary.json``, ``per_scene.csv``, ``table.md``, grids (context / ground truth /
    deterministic / one row per sample) and, with a distance sweep, ``distance_sweep.json`` and
    ``distance_sweep.csv``.
    """
    config = protocol.extrapolation or ExtrapolationConfig()
    ev = Evaluation(protocol, output_dir, pipe, accelerator, fid_feature)
    sampled, sampled_note = _sampled_enabled(ev, config)
    names = ["deterministic", "sampled"] if sampled else ["deterministic"]
    synthetic = protocol.dataset.format == "synthetic"
    if synthetic:  # visibility masks: FID/KID of crops around unseen pixels too
        names += [f"{name}_unseen" for name in names]
    distribution = ev.new_distribution_metrics(names)
    modes_dir = None
    if synthetic and protocol.dataset.synthetic and protocol.dataset.synthetic.family == "modes":
        root = protocol.dataset.root
        root = expand_path(root) if root else ev.output_dir / "synthetic"
        modes_dir = modes_folder(root, protocol.dataset.split)
    scorer = ExtrapolationScorer(
        ev, config, sampled, distribution, ev.output_dir / "grids", modes_dir
    )
    dataset, records, distribution_scores = ev.score_dataset(
        scorer, distribution, f"{protocol.name} extrapolation"
    )
    sweep: dict[str, Any] = {}
    if config.distance_sweep is not None:
        sweep_scorer = ExtrapolationScorer(ev, config, sampled, {}, None)
        sweep_records = ev.run(
            _sweep_dataset(ev, config),
            ev.output_dir / "sweep" / "records",
            sweep_scorer,
            "distance sweep",
        )
        if sweep_records is not None:
            sweep["distance_sweep"] = by_distance(sweep_records)
    if records is None:
        return None
    deterministic = throughput(records, "seconds")
    sampled_rate = throughput(records, "sampled_seconds", config.num_samples)
    summary = ev.finish(
        dataset,
        records,
        _with_modes(_nested(summarize(records))),
        sampled=sampled,
        sampled_note=sampled_note,
        num_samples_per_target=config.num_samples if sampled else None,
        seconds_per_frame={
            "deterministic": deterministic["seconds_per_image"],
            "sampled": sampled_rate["seconds_per_image"],
        },
        fid_kid=distribution_scores,
        **sweep,
    )
    if sweep:
        write_json(ev.output_dir / "distance_sweep.json", {"rows": sweep["distance_sweep"]})
        _write_rows(ev.output_dir / "distance_sweep.csv", sweep["distance_sweep"])
    (ev.output_dir / "table.md").write_text(format_table(summary) + "\n")
    return summary
