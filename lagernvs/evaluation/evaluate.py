"""`lagernvs eval`: run a standard protocol, write ``summary.json``, ``per_scene.csv`` and grids.

    lagernvs eval --config configs/eval/re10k_2v.yaml --output-dir runs/eval_re10k \\
        [--set key=value ...]
    accelerate launch -m lagernvs.evaluation.evaluate --config ... --output-dir ...

Every sample is rendered deterministically (one forward pass) and each target scored; the runner
(:class:`~lagernvs.evaluation.runner.Evaluation`) splits the samples between processes and
resumes a half-finished run. The paths the protocol names are checked before the model loads,
and one process at a time works in an output folder (a lock; the processes of one multi-GPU
launch share it). Arguments are parsed before torch is imported (fast ``--help``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lagernvs.config import config_parser, run_command
from lagernvs.evaluation.protocol import Protocol, load_protocol
from lagernvs.runlock import run_lock

if TYPE_CHECKING:
    import torch

    from lagernvs.evaluation.records import Record
    from lagernvs.evaluation.runner import Evaluation

__all__ = ["build_parser", "evaluate", "format_metrics", "main", "score_deterministic"]

PROG = "lagernvs eval"


def score_deterministic(ev: Evaluation, batch: dict[str, Any], fid: dict[str, Any]) -> list[Record]:
    """Render a batch deterministically and score every target."""
    from lagernvs.evaluation.records import grid_name, save_grid

    pred, seconds = ev.render(batch)
    target = batch["images"][:, batch["num_cond_views"] :]
    scores = ev.scores(pred, target)
    for fid_metric, kid_metric in fid.values():
        for metric in (fid_metric, kid_metric):
            metric.update(target.flatten(0, 1).to(ev.device), real=True)
            metric.update(pred.flatten(0, 1), real=False)
    records = []
    for i in range(pred.shape[0]):
        record = ev.base_record(batch, i, seconds / pred.shape[0])
        record["scores"] = {key: value[i].tolist() for key, value in scores.items()}
        records.append(record)
        if ev.wants_grid(record["position"]):
            count = batch["num_cond_views"]
            save_grid(
                ev.output_dir / "grids" / grid_name(record["sample"]),
                [batch["images"][i, :count], target[i], pred[i]],
                ["sources", "ground truth", "LagerNVS"],
            )
    return records


def evaluate(
    protocol: Protocol,
    output_dir: str | Path,
    pipe: Any = None,
    accelerator: Any = None,
    fid_feature: int | torch.nn.Module = 2048,
) -> dict[str, Any] | None:
    """Run a standard protocol; write and return the summary (None on non-main processes).

    ``pipe`` replaces the model the protocol names; the other arguments are those of
    :class:`~lagernvs.evaluation.runner.Evaluation`.
    """
    from lagernvs.evaluation.dataset import check_dataset_paths
    from lagernvs.evaluation.model import check_model_paths
    from lagernvs.evaluation.records import summarize, throughput
    from lagernvs.evaluation.runner import Evaluation

    check_dataset_paths(protocol.dataset)
    if pipe is None:
        check_model_paths(protocol.model)
    with run_lock(output_dir, PROG):
        ev = Evaluation(protocol, output_dir, pipe, accelerator, fid_feature)
        fid = ev.new_distribution_metrics(["deterministic"])
        dataset, records, distribution = ev.score_dataset(
            lambda batch: score_deterministic(ev, batch, fid), fid, protocol.name
        )
        if records is None:
            return None
        return ev.finish(
            dataset,
            records,
            summarize(records),
            **throughput(records, "seconds"),
            fid_kid=distribution,
        )


def format_metrics(metrics: dict[str, float | None]) -> str:
    """``psnr 31.3900  ssim 0.9280`` (``n/a`` for a score no sample has)."""
    return "  ".join(
        f"{key} {value:.4f}" if value is not None else f"{key} n/a"
        for key, value in metrics.items()
    )


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    return config_parser(
        prog,
        "Evaluate a model on a protocol (configs/eval/*.yaml).",
        "protocol YAML, or a configs/eval name",
        "--set batch_size=4 --set metrics.lpips=false",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``lagernvs eval --config FILE --output-dir DIR [--set key=value ...]``."""
    args = build_parser().parse_args(argv)
    protocol = load_protocol(args.config, args.overrides)
    summary = evaluate(protocol, args.output_dir)
    if summary is not None:
        done = f"{summary['num_samples']}/{summary['num_expected']} samples"
        print(f"{protocol.name}: {format_metrics(summary['metrics'])} ({done})")
        print(f"wrote {Path(args.output_dir) / 'summary.json'} and per_scene.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_command(PROG, main))
