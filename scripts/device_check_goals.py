"""The last section of scripts/device_check.py: the speed goals against what the cases measured
(a row per goal in the report's ``"goals"``), and a count of the cases skipped or failed."""

from __future__ import annotations

from typing import Any

GOAL_VARIANT = "bidirectional_cross_attention"
RENDER_GOALS = ((1, 150.0, 56.0), (9, 60.0, 30.0))  # views, our FPS goal, the paper's FPS (H100)
ENCODER_GOAL = (2, 60.0)  # views, milliseconds
CASE_SECTIONS = ("parity", "renderer", "encoder", "ablations", "training", "compile")


def goals(check: Any) -> None:
    """The issue's goals against the default fast path (and the best path measured)."""
    plan, report = check.plan, check.report
    rows = report["renderer"] + report["ablations"] + report["compile"]
    for views, goal, paper in RENDER_GOALS:
        views = min(views, max(plan.render_views))
        cases = [
            r
            for r in rows
            if r["attention_type"] == GOAL_VARIANT
            and r["error"] is None
            and r["size"] == plan.goal_size
            and r["views"] == views
            and r["targets"] == 1
        ]
        default = next((r for r in cases if r["path"] == check.fast.describe()), None)
        best = max(cases, key=lambda r: r["fps"], default=None)
        _goal(
            check,
            f"renderer {plan.goal_size}² bidirectional, {views} view(s)",
            "FPS",
            goal,
            default and default["fps"],
            best,
            paper,
            higher=True,
        )
    views, goal = ENCODER_GOAL
    cases = [r for r in report["encoder"] if r["views"] == views and r["error"] is None]
    default = next((r for r in cases if r["precision"] == "bf16-autocast"), None)
    best = min(cases, key=lambda r: r["ms"], default=None)
    _goal(
        check,
        f"encoder, {views} views at {plan.encoder_size}",
        "ms",
        goal,
        default and default["ms"],
        best,
        None,
        higher=False,
    )
    rows = [row for section in CASE_SECTIONS for row in report[section]]
    skipped = sum(1 for r in rows if (r["error"] or "").startswith("skipped"))
    failed = sum(1 for r in rows if r["error"] and not r["error"].startswith("skipped"))
    check.note(f"{len(rows)} cases: {skipped} skipped for time, {failed} failed (see error)")


def _goal(
    check: Any,
    name: str,
    unit: str,
    goal: float,
    measured: float | None,
    best: dict | None,
    paper: float | None,
    higher: bool,
) -> None:
    met = None if measured is None else (measured >= goal if higher else measured <= goal)
    check.report["goals"].append(
        {
            "goal": name,
            "unit": unit,
            "target": goal,
            "measured": measured,
            "met": met,
            "best": best and best[unit.lower()],
            "best_path": best and (best.get("path") or best.get("precision")),
            "paper": paper,
        }
    )
