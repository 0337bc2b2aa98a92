"""The one GPU check of LagerNVS speed (run it through scripts/device_check.sh).

With random weights at full size (``--dry-run``: the tiny preset on the CPU, in seconds) it
measures, in this order:

1. parity: fp32 vs bf16 rendered pixels per attention variant (and encoder + renderer end to
   end), and the fast path against the plain path in each precision;
2. renderer FPS of the default fast path (bf16 weights, SDPA, CUDA graphs) at 256² and 512² for
   1-9 source views, per attention variant;
3. encoder latency for 1, 2, 4, 8 and 10 views at 518 (fp32, bf16 autocast, bf16 weights);
4. ablations at 512² with 1 and 9 views: each fast-path option off in turn, SDPA kernels,
   the math and xformers backends, one call per target against one call for all;
5. the plain renderer (float32, eager) over the same grid as 2;
6. training throughput at the official per-GPU micro batches (bf16 autocast, gradient
   checkpointing, MSE + perceptual loss, fused AdamW);
7. torch.compile of the renderer (on top of the fast path) at 512², bidirectional.

Every case is guarded: a failure becomes an ``error`` string in its row and the run goes on.
Each section ends at its share of ``--budget-s``; cases past it are recorded as skipped. Peak
GPU memory is kept per case and overall. ``device_check.json`` and ``device_check.md`` are
rewritten into ``--out`` after every section, so a stopped run still leaves its results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from device_check_table import format_markdown

# The budget counts from the start of device_check.sh (wheel install included) when run by it.
STARTED = float(os.environ.get("DEVICE_CHECK_STARTED") or time.time())

SCHEMA = 1
SHARES = {  # when each section stops starting cases, as a share of the budget (cumulative)
    "parity": 0.10,
    "renderer_fast": 0.24,
    "encoder": 0.30,
    "ablations": 0.42,
    "renderer_plain": 0.52,
    "training": 0.72,
    "compile": 1.0,
}
ROW_FIELDS = {
    "parity": (
        "attention_type",
        "scope",
        "size",
        "views",
        "targets",
        "max_abs",
        "mean_abs",
        "psnr_db",
        "fast_fp32_max_abs",
        "fast_bf16_max_abs",
        "error",
    ),
    "renderer": (
        "attention_type",
        "size",
        "views",
        "targets",
        "path",
        "ms",
        "fps",
        "peak_mb",
        "error",
    ),
    "encoder": ("views", "size", "precision", "ms", "peak_mb", "error"),
    "ablations": (
        "attention_type",
        "size",
        "views",
        "targets",
        "option",
        "path",
        "ms",
        "fps",
        "peak_mb",
        "error",
    ),
    "training": (
        "recipe",
        "preset",
        "attention_type",
        "micro_batch",
        "context_views",
        "target_views",
        "size",
        "steps",
        "seconds",
        "images_per_s",
        "step_ms",
        "optimizer_step_ms",
        "peak_mb",
        "error",
    ),
}
ROW_FIELDS["compile"] = ROW_FIELDS["ablations"] + ("compile_s",)


@dataclass(frozen=True)
class Recipe:
    """One training setting: a preset and its official per-GPU micro batch."""

    name: str
    preset: str
    micro_batch: int
    context_views: int
    target_views: int
    size: int


@dataclass(frozen=True)
class Plan:
    """What is measured, at full size or in the dry run."""

    preset: str
    render_sizes: tuple[int, ...]
    render_views: tuple[int, ...]
    encoder_views: tuple[int, ...]
    encoder_size: int
    goal_size: int
    ablation_views: tuple[int, ...]
    batch_targets: int
    warmup: int
    runs: int
    case_seconds: float
    compile_backend: str
    compile_estimate_s: float
    recipes: tuple[Recipe, ...]
    train_seconds: float
    budget_s: float


FULL = Plan(
    preset="general_512",
    render_sizes=(256, 512),
    render_views=tuple(range(1, 10)),
    encoder_views=(1, 2, 4, 8, 10),
    encoder_size=518,
    goal_size=512,
    ablation_views=(1, 9),
    batch_targets=4,
    warmup=3,
    runs=20,
    case_seconds=1.0,
    compile_backend="inductor",
    compile_estimate_s=90.0,
    recipes=(
        Recipe("re10k", "re10k_2v_256", micro_batch=8, context_views=2, target_views=6, size=256),
        Recipe("general", "general_512", micro_batch=2, context_views=10, target_views=8, size=512),
    ),
    train_seconds=30.0,
    budget_s=400.0,
)
DRY = Plan(
    preset="tiny",
    render_sizes=(16, 32),
    render_views=(1, 2),
    encoder_views=(1, 2),
    encoder_size=112,
    goal_size=32,
    ablation_views=(1, 2),
    batch_targets=2,
    warmup=1,
    runs=2,
    case_seconds=0.1,
    compile_backend="eager",
    compile_estimate_s=1.0,
    recipes=(
        Recipe("re10k", "tiny", micro_batch=2, context_views=2, target_views=2, size=32),
        Recipe("general", "tiny", micro_batch=1, context_views=3, target_views=2, size=32),
    ),
    train_seconds=0.5,
    budget_s=400.0,
)


class Check:
    """The report being filled, the clock and the guarded running of cases."""

    def __init__(self, plan: Plan, device: torch.device, out: Path, mode: str) -> None:
        self.plan, self.device, self.out = plan, device, out
        self.config: dict[str, Any] = {}  # model sizes and the default fast path, set by the
        self.fast: Any = None  # first section (device_check_cases.setup)
        self.report: dict[str, Any] = {
            "schema": SCHEMA,
            "mode": mode,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": 0.0,
            "budget_s": plan.budget_s,
            "environment": {},
            "goals": [],
            "memory": {},
            "notes": [],
            **{section: [] for section in ROW_FIELDS},
        }

    def elapsed(self) -> float:
        return time.time() - STARTED

    def deadline(self, section: str) -> float:
        return self.plan.budget_s * SHARES[section]

    def row(
        self,
        section: str,
        values: dict[str, Any],
        fn: Callable[[], dict[str, Any]],
        until: float,
        needs_s: float = 0.0,
    ) -> dict[str, Any]:
        """Run ``fn`` for one case (unless the section's time is up) into a row of ``section``."""
        row = dict.fromkeys(ROW_FIELDS[section])
        row.update(values)
        left = min(until, self.plan.budget_s) - self.elapsed()
        if left <= needs_s:
            row["error"] = f"skipped: time budget ({max(left, 0):.0f} s left of this section)"
        else:
            try:
                row.update(fn())
            except torch.cuda.OutOfMemoryError:
                row["error"] = "CUDA out of memory"
            except Exception as exc:  # every failure is a result, never the end of the run
                row["error"] = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:400]
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        self.report[section].append(row)
        return row

    def note(self, text: str) -> None:
        self.report["notes"].append(text)

    def write(self) -> None:
        self.report["elapsed_s"] = round(self.elapsed(), 1)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "device_check.json").write_text(json.dumps(self.report, indent=2) + "\n")
        (self.out / "device_check.md").write_text(format_markdown(self.report) + "\n")


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and the device, plus what the wheel install in device_check.sh reported."""
    packages = {}
    for name in ("diffusers", "webdataset", "lpips", "xformers", "accelerate", "triton"):
        try:
            module = __import__(name)
            packages[name] = getattr(module, "__version__", "installed")
        except Exception as exc:
            packages[name] = f"missing ({type(exc).__name__})"
    info: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "gpu": None,
        "capability": None,
        "multiprocessors": None,
        "memory_mb": None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "cpu_threads": torch.get_num_threads(),
        "packages": packages,
        "wheels": os.environ.get("DEVICE_CHECK_WHEELS", "not run through device_check.sh"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
            memory_mb=round(props.total_memory / 2**20),
        )
    return info


def peak_memory(report: dict[str, Any]) -> dict[str, Any]:
    """The largest per-case CUDA peak (MB) and where it was (None on the CPU)."""
    peaks = [
        (row["peak_mb"], f"{section}: " + ", ".join(str(row[k]) for k in ROW_FIELDS[section][:4]))
        for section in ROW_FIELDS
        for row in report[section]
        if row.get("peak_mb") is not None
    ]
    peak, case = max(peaks, default=(None, None))
    total = report["environment"].get("memory_mb")
    return {"peak_allocated_mb": peak, "peak_case": case, "device_total_mb": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (seconds)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "device_check_out")
    parser.add_argument("--budget-s", type=float, default=None, help="time budget (seconds)")
    args = parser.parse_args(argv)
    plan = DRY if args.dry_run else FULL
    if args.budget_s is not None:
        plan = replace(plan, budget_s=args.budget_s)
    device = torch.device("cpu" if args.dry_run else "cuda")
    check = Check(plan, device, Path(args.out), "dry-run" if args.dry_run else "full")
    check.report["environment"] = environment(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        check.note("no CUDA device: nothing was measured; use --dry-run on a CPU")
        check.write()
        return 1
    try:
        from device_check_cases import SECTIONS  # imports lagernvs (needs the carried wheels)

        for section in SECTIONS:
            section(check)
            check.write()
    except KeyboardInterrupt:  # device_check.sh's timeout: keep what was measured
        check.note(f"stopped by a signal after {check.elapsed():.0f} s")
    except Exception as exc:
        check.note(f"the check stopped: {type(exc).__name__}: {exc}")
        check.write()
        raise
    check.report["memory"] = peak_memory(check.report)
    check.write()
    print(format_markdown(check.report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
