"""`scripts/device_check.sh --dry-run`: the GPU check runs on the CPU at tiny size and writes its
JSON with every field and its markdown (timings are recorded, never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lagernvs.models.fast import BF16_TOLERANCE

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from device_check import DRY, ROW_FIELDS  # noqa: E402

TOP_LEVEL = {"schema", "mode", "started", "elapsed_s", "budget_s", "environment", "goals",
             "memory", "notes", "parity", "renderer", "encoder", "ablations", "training",
             "compile"}  # fmt: skip
ENVIRONMENT = {"date", "python", "torch", "cuda", "cudnn", "device", "gpu", "capability",
               "multiprocessors", "memory_mb", "tf32_matmul", "cpu_threads", "packages",
               "wheels", "fast_path"}  # fmt: skip
GOAL = {"goal", "unit", "target", "measured", "met", "best", "best_path", "paper"}


def run_check(out: Path, *args: str) -> dict:
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "WHEELS": str(out / "none"),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    done = subprocess.run(["bash", str(REPO / "scripts" / "device_check.sh"), "--dry-run", *args],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "device_check: no wheels in" in done.stdout
    return json.loads((out / "device_check.json").read_text())


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("check")
    run_check(folder)
    return folder


@pytest.fixture
def report(out: Path) -> dict:
    return json.loads((out / "device_check.json").read_text())


def test_every_field_is_written(report: dict) -> None:
    assert set(report) == TOP_LEVEL and report["mode"] == "dry-run"
    assert set(report["environment"]) == ENVIRONMENT
    assert report["environment"]["device"] == "cpu" and report["environment"]["fast_path"] == "bf16"
    for section, fields in ROW_FIELDS.items():
        assert report[section], section
        for row in report[section]:
            assert tuple(row) == fields, section
    assert len(report["goals"]) == 3 and all(set(g) == GOAL for g in report["goals"])
    assert set(report["memory"]) == {"peak_allocated_mb", "peak_case", "device_total_mb"}
    assert 0 < report["elapsed_s"] < report["budget_s"] == DRY.budget_s


def test_cases_are_measured_or_carry_their_error(report: dict) -> None:
    grid = len(DRY.render_sizes) * len(DRY.render_views) * 3
    paths = [r["path"] for r in report["renderer"]]
    assert paths.count("bf16") == paths.count("plain") == grid
    for row in report["renderer"] + report["ablations"] + report["compile"]:
        if row["error"] is None:
            assert row["ms"] > 0 and row["fps"] == pytest.approx(
                1e3 * row["targets"] / row["ms"], rel=0.01
            )
    errors = {r["option"]: r["error"] for r in report["ablations"] if r["error"]}
    assert errors["graphs on"].startswith("ValueError: CUDA graphs need CUDA tensors")
    assert "sdpa cudnn" in errors  # no cuDNN attention kernel on the CPU
    assert {r["option"] for r in report["ablations"] if r["error"] is None} >= {
        "default", "bf16 off", "sdpa math", "math backend", "2 targets, one call each"
    }  # fmt: skip
    assert all(r["error"] is None and r["compile_s"] >= 0 for r in report["compile"])
    assert {r["precision"] for r in report["encoder"]} == {"fp32", "bf16-autocast", "bf16-weights"}
    assert all(r["error"] is None and r["ms"] > 0 for r in report["encoder"])
    assert all(r["error"] is None and r["images_per_s"] > 0 for r in report["training"])
    for row in report["parity"]:
        assert row["error"] is None and 0 < row["max_abs"] < BF16_TOLERANCE
        if row["scope"] == "renderer":  # the fast path renders the plain path's pixels exactly
            assert row["fast_fp32_max_abs"] == 0 and row["fast_bf16_max_abs"] == 0
    assert all(g["measured"] is not None and g["met"] is not None for g in report["goals"])


def test_markdown_has_every_section(out: Path) -> None:
    markdown = (out / "device_check.md").read_text()
    for title in ("## Goals", "## Renderer FPS", "## Encoder latency", "## Fast-path options",
                  "## bf16 against fp32", "## Training"):  # fmt: skip
        assert title in markdown
    assert "| bidirectional_cross_attention | 32² | bf16 |" in markdown


def test_an_exhausted_budget_skips_every_case(tmp_path: Path) -> None:
    report = run_check(tmp_path, "--budget-s", "1")
    rows = [row for section in ROW_FIELDS for row in report[section]]
    assert rows and all(row["error"].startswith("skipped: time budget") for row in rows)
    assert (
        report["notes"][-1]
        == f"{len(rows)} cases: {len(rows)} skipped for time, 0 failed (see error)"
    )
    assert all(g["measured"] is None and g["met"] is None for g in report["goals"])
