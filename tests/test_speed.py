"""`lagernvs bench speed` on CPU with tiny models (times are reported, never asserted)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from lagernvs.evaluation.bench import build_parser, fast_options
from lagernvs.evaluation.bench import main as bench_main
from lagernvs.evaluation.speed import format_speed_table, measure_ms, run_speed
from lagernvs.models import ATTENTION_TYPES, LagerNVSModel, get_attention_backend
from lagernvs.models.fast import FastOptions
from lagernvs.pipeline import LagerNVSPipeline
from lagernvs.pipeline.loading import DEMO_MODEL_DIR


def test_every_variant_size_and_view_count_is_timed(tmp_path: Path) -> None:
    report = run_speed(
        "preset:tiny", "cpu", tmp_path, sizes=[16, 24], views=[1, 3], precisions=["fp32"], warmup=0,
        runs=1,
    )  # fmt: skip
    results = report["results"]
    cases = {(r["attention_type"], r["image_size"], r["num_views"]) for r in results}
    assert cases == {(a, s, v) for a in ATTENTION_TYPES for s in (16, 24) for v in (1, 3)}
    for r in results:
        assert r["weights"] == "random" and r["precision"] == "fp32" and r["error"] is None
        assert r["encode_ms"] > 0 and r["render_ms"] > 0 and r["prepare_ms"] >= 0
        assert r["fps"] == pytest.approx(1e3 / r["render_ms"])
        assert r["encode_peak_mb"] is None  # CPU: no per-stage peak memory
    assert report["device"] == "cpu" and report["timer"] == "perf_counter"
    assert json.loads((tmp_path / "speed.json").read_text())["results"] == results
    table = (tmp_path / "speed.md").read_text()
    assert table.count("\n| ") == 1 + len(results)
    assert "| cross_attention | random | fp32 | 24²" in table


def test_cli_with_a_saved_model_in_bf16(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = LagerNVSModel.from_preset("tiny", image_size=(16, 16), attention_type="cross_attention")
    LagerNVSPipeline(model=model).save_pretrained(tmp_path / "model")
    assert bench_main(["speed", "--model", str(tmp_path / "model"), "--device", "cpu",
                       "--output-dir", str(tmp_path / "out"), "--sizes", "16", "--views", "2",
                       "--attention-types", "cross_attention", "full_attention",
                       "--precisions", "bf16", "--targets", "2", "--runs", "1",
                       "--warmup", "1"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "cross_attention bf16 16² 2 views: encode" in printed
    report = json.loads((tmp_path / "out" / "speed.json").read_text())
    weights = {r["attention_type"]: r["weights"] for r in report["results"]}
    assert weights == {"cross_attention": "loaded", "full_attention": "random"}
    assert all(r["targets"] == 2 and r["precision"] == "bf16" for r in report["results"])
    assert report["model"] == str(tmp_path / "model")


def test_errors_and_oom_rows(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="'no_such_model' does not exist; give 'demo'"):
        run_speed("no_such_model", "cpu", sizes=[16], views=[1])
    with pytest.raises(ValueError, match="spell random weights as 'preset:tiny'"):
        run_speed("tiny", "cpu", sizes=[16], views=[1])
    with pytest.raises(ValueError, match="multiples of the patch size 8"):
        run_speed("preset:tiny", "cpu", sizes=[20], views=[1])
    with pytest.raises(ValueError, match="unknown precisions"):
        run_speed("preset:tiny", "cpu", sizes=[16], views=[1], precisions=["fp16"])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            run_speed("preset:tiny", "cuda", sizes=[16], views=[1])
    report = {
        "model": "m", "device": "cpu", "runs": 1, "warmup": 0, "timer": "perf_counter",
        "results": [{"attention_type": "full_attention", "weights": "random", "precision": "fp32",
                     "image_size": 512, "num_views": 9, "error": "CUDA out of memory"}],
    }  # fmt: skip
    assert "| 512² | 9 | CUDA out of memory | - |" in format_speed_table(report)


def test_demo_is_timed_as_it_is() -> None:
    backend = get_attention_backend()
    report = run_speed("demo", "cpu", views=[1], precisions=["fp32"], warmup=0, runs=1,
                       backend="math")  # fmt: skip
    (result,) = report["results"]  # its own size and attention variant only, with its weights
    demo = LagerNVSModel.from_pretrained(DEMO_MODEL_DIR, subfolder="model")
    assert result["image_size"] == demo.image_size[0]
    assert result["attention_type"] == demo.config.attention_type
    assert result["weights"] == "loaded" and report["model"] == "demo"
    assert report["attention_backend"] == "math" and get_attention_backend() == backend
    assert "Model: demo; device: cpu, attention kernel math" in format_speed_table(report)


def test_measure_ms_calls_warmup_then_runs() -> None:
    calls: list[int] = []
    median, peak = measure_ms(lambda: calls.append(1), torch.device("cpu"), warmup=2, runs=3)
    assert len(calls) == 5 and median >= 0 and peak is None


def test_measure_ms_stops_at_max_seconds() -> None:
    calls: list[int] = []

    def slow() -> None:
        calls.append(1)
        time.sleep(0.02)

    measure_ms(slow, torch.device("cpu"), warmup=1, runs=1000, max_seconds=0.05)
    assert 2 <= len(calls) <= 6  # one warm-up, then timed calls until 50 ms have passed


def test_fast_path_rows_and_cli_flags(tmp_path: Path) -> None:
    report = run_speed("preset:tiny", "cpu", sizes=[16], views=[2], precisions=["fp32", "bf16"],
                       attention_types=["cross_attention"], warmup=0, runs=1,
                       fast=FastOptions(compile="default", compile_backend="eager"))  # fmt: skip
    paths = [r["path"] for r in report["results"]]
    assert paths == ["compile:eager:default", "bf16+compile:eager:default"]
    assert all(r["error"] is None and r["fps"] > 0 for r in report["results"])
    assert format_speed_table(report).splitlines()[-1].endswith("| bf16+compile:eager:default |")

    def options(*flags: str) -> FastOptions | None:
        args = build_parser().parse_args(
            ["speed", "--model", "demo", "--output-dir", "x", "--device", "cpu", *flags]
        )
        return fast_options(args)

    assert options() is None
    assert options("--fast") == FastOptions()  # the CPU default: the plain renderer
    assert options("--per-target", "--sdpa-kernels", "math", "--compile", "default") == FastOptions(
        batch_targets=False, sdpa_kernels=("math",), compile="default"
    )
