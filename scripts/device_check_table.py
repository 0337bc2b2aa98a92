"""The markdown of a scripts/device_check.py report: one table per section."""

from __future__ import annotations

from typing import Any


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 and value else f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _short(error: str | None) -> str:
    """An error cell: 'skipped' or the exception's name."""
    if error is None:
        return ""
    return "skipped" if error.startswith("skipped") else error.split(":")[0]


def _renderer_pivot(rows: list[dict[str, Any]]) -> list[str]:
    """FPS per (variant, size, path) over the source-view counts."""
    views = sorted({r["views"] for r in rows})
    groups: dict[tuple, dict[int, str]] = {}
    for r in rows:
        key = (r["attention_type"], r["size"], r["path"])
        groups.setdefault(key, {})[r["views"]] = _short(r["error"]) or _cell(r["fps"])
    header = ["attention", "size", "path", *(f"{v} view{'s' * (v > 1)}" for v in views)]
    body = [
        [a, f"{s}²", p, *(cells.get(v, "") for v in views)] for (a, s, p), cells in groups.items()
    ]
    return _table(header, body)


def format_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# LagerNVS device check ({report['mode']})",
        "",
        f"{env.get('date')}; {env.get('gpu') or env.get('device')}; torch {env.get('torch')} "
        f"(CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}); Python {env.get('python')}; "
        f"default fast path {env.get('fast_path')}; {report['elapsed_s']} s of a "
        f"{report['budget_s']:.0f} s budget; wheels: {env.get('wheels')}.",
        "",
        "## Goals",
        "",
    ]
    lines += _table(
        ["goal", "target", "measured (default path)", "met", "best", "best path", "paper"],
        [
            [g["goal"], f"{'≤' if g['unit'] == 'ms' else '≥'} {g['target']:.0f} {g['unit']}",
             g["measured"], g["met"], g["best"], g["best_path"], g["paper"]]
            for g in report["goals"]
        ],
    )  # fmt: skip
    lines += ["## Renderer FPS (one target per call)", ""]
    lines += _renderer_pivot(report["renderer"])
    lines += ["## Encoder latency (ms)", ""]
    lines += _table(
        ["views", "size", "precision", "ms", "peak MB", "error"],
        [[r["views"], r["size"], r["precision"], r["ms"], r["peak_mb"], r["error"]]
         for r in report["encoder"]],
    )  # fmt: skip
    lines += ["## Fast-path options (one changed at a time) and torch.compile", ""]
    lines += _table(
        ["attention", "size", "views", "targets", "option", "path", "ms", "FPS", "peak MB",
         "compile s", "error"],
        [[r["attention_type"], f"{r['size']}²", r["views"], r["targets"], r["option"], r["path"],
          r["ms"], r["fps"], r["peak_mb"], r.get("compile_s"), r["error"]]
         for r in report["ablations"] + report["compile"]],
    )  # fmt: skip
    lines += ["## bf16 against fp32 (rendered pixels in [0, 1])", ""]
    lines += _table(
        ["attention", "scope", "size", "max abs", "mean abs", "PSNR dB", "fast fp32 vs plain",
         "fast bf16 vs autocast", "error"],
        [[r["attention_type"], r["scope"], f"{r['size']}²", r["max_abs"], r["mean_abs"],
          r["psnr_db"], r["fast_fp32_max_abs"], r["fast_bf16_max_abs"], r["error"]]
         for r in report["parity"]],
    )  # fmt: skip
    lines += ["## Training (forward + backward per micro batch, bf16)", ""]
    lines += _table(
        ["recipe", "preset", "micro batch", "views", "size", "steps", "images/s", "step ms",
         "optimizer step ms", "peak MB", "error"],
        [[r["recipe"], r["preset"], r["micro_batch"],
          f"{r['context_views']}+{r['target_views']}", f"{r['size']}²", r["steps"],
          r["images_per_s"], r["step_ms"], r["optimizer_step_ms"], r["peak_mb"], r["error"]]
         for r in report["training"]],
    )  # fmt: skip
    memory = report["memory"]
    lines.append(
        f"Peak GPU memory of one case: {_cell(memory.get('peak_allocated_mb'))} MB "
        f"({memory.get('peak_case') or '-'}) of {_cell(memory.get('device_total_mb'))} MB."
    )
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines)
