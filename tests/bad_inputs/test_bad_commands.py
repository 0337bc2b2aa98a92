"""Bad input to `lagernvs shards`, `train`, `train-denoiser`, `eval`, `bench` and `view`: each
is refused at once (before any data generation or model loading) with its exit code and one line
naming the problem, no traceback, and nothing written (see bad_input_helpers.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from bad_input_helpers import (
    REPO_ROOT,
    TINY_EVAL,
    TINY_TRAIN,
    assert_nothing_written,
    assert_refused,
    fill,
    run_cli,
    snapshot,
)

from lagernvs.evaluation import bench

TRAIN = ["--config", str(TINY_TRAIN)]
EVAL = ["--config", str(TINY_EVAL)]
DENOISER = ["--config", str(REPO_ROOT / "configs" / "train" / "denoiser_tiny.yaml")]
SHARDS = "data.train=[{shards: '%s', sampler: {context_gap: [3, 5], num_targets: 2}}]"
UNREADABLE = SHARDS % "{shards}/shard-{000000..000001}.tar"

# (id, arguments, message, exit code); --output-dir is tmp_path/out unless given.
CASES = [
    ("shards-unknown-source", ["shards", "--source", "blender", "--root", "{a_folder}"],
     "invalid choice: 'blender'", 2),
    ("shards-missing-root", ["shards", "--source", "re10k", "--root", "{tmp}/nope"],
     "does not exist", 1),
    ("shards-file-as-root", ["shards", "--source", "colmap", "--root", "{view0.png}"],
     "view0.png", 1),
    ("shards-empty-root", ["shards", "--source", "llff", "--root", "{a_folder}"], "a_folder", 1),
    ("shards-unknown-split", ["shards", "--source", "re10k", "--root", "{re10k}", "--split",
     "val"], "no Re10k split 'val'", 1),
    ("shards-output-is-a-file", ["shards", "--source", "re10k", "--root", "{re10k}", "--split",
     "test", "--output-dir", "{view0.png}"], "is a file", 1),
    ("shards-zero-per-shard", ["shards", "--source", "re10k", "--root", "{a_folder}",
     "--scenes-per-shard", "0"], "expected a positive integer", 2),
    ("train-missing-config", ["train", "--config", "{tmp}/nope.yaml"], "does not exist", 1),
    ("train-folder-as-config", ["train", "--config", "{a_folder}"], "is a folder", 1),
    ("train-invalid-yaml", ["train", "--config", "{invalid.yaml}"], "is not valid YAML (line", 1),
    ("train-list-yaml", ["train", "--config", "{a_list.yaml}"], "must hold a mapping", 1),
    ("train-unknown-section", ["train", "--config", "{unknown_section.yaml}"],
     "unknown config key 'modle'", 1),
    ("train-unknown-top-key", ["train", "--config", "{bad_type.yaml}"],
     "unknown config key 'seed_text'", 1),
    ("train-unknown-set-key", ["train", *TRAIN, "--set", "optim.learning_rate=1"],
     "unknown config key 'optim.learning_rate'", 1),
    ("train-wrong-type", ["train", *TRAIN, "--set", "loop.max_steps=many"],
     "config key 'loop.max_steps': expected an integer", 1),
    ("train-set-without-value", ["train", *TRAIN, "--set", "optim.lr"],
     "must look like key.sub=value", 1),
    ("train-unknown-preset", ["train", *TRAIN, "--set", "model.preset=huge"],
     "unknown preset 'huge'", 1),
    ("train-missing-vggt", ["train", *TRAIN, "--set", "model.vggt_weights=/nope/model.pt"],
     "config key 'model.vggt_weights'", 1),
    ("train-missing-checkpoint", ["train", *TRAIN, "--set", "model.checkpoint=/nope/model.pt"],
     "config key 'model.checkpoint': /nope/model.pt does not exist", 1),
    ("train-unreadable-shards", ["train", *TRAIN, "--set", "data.synthetic=null", "--set",
     UNREADABLE], "none of the 2 shards of config key 'data.train[0].shards' can be read", 1),
    ("train-shards-without-index", ["train", *TRAIN, "--set", "data.synthetic=null", "--set",
     SHARDS % "{shards}"], "index.json does not exist", 1),
    ("train-output-is-a-file", ["train", *TRAIN, "--output-dir", "{view0.png}"],
     "is a file; choose a folder", 1),
    ("train-output-under-a-file", ["train", *TRAIN, "--output-dir", "{view0.png}/run"],
     "cannot write to output folder", 1),
    ("train-zero-steps", ["train", *TRAIN, "--set", "loop.max_steps=0"],
     "config key 'loop.max_steps': must be >= 1", 1),
    ("train-negative-lr", ["train", *TRAIN, "--set", "optim.lr=-1"],
     "config key 'optim.lr': must be > 0", 1),
    ("train-batch-split", ["train", *TRAIN, "--set", "loop.global_batch_size=3"],
     "not divisible by micro_batch_size", 1),
    ("train-no-config", ["train", "--output-dir", "{tmp}/out"], "--config", 2),
    ("denoiser-invalid-yaml", ["train-denoiser", "--config", "{invalid.yaml}"],
     "is not valid YAML", 1),
    ("denoiser-with-vggt", ["train-denoiser", *DENOISER, "--set", "model.vggt_weights=/v.pt"],
     "config key 'model.vggt_weights'", 1),
    ("denoiser-missing-model", ["train-denoiser", *DENOISER, "--set", "model.checkpoint=/nope"],
     "does not exist", 1),
    ("eval-missing-config", ["eval", "--config", "{tmp}/nope.yaml"], "nope", 1),
    ("eval-invalid-yaml", ["eval", "--config", "{invalid.yaml}"], "is not valid YAML", 1),
    ("eval-unknown-key", ["eval", *EVAL, "--set", "metrics.fid_score=true"],
     "unknown config key 'metrics.fid_score'", 1),
    ("eval-missing-model", ["eval", *EVAL, "--set", "model.pretrained={tmp}/nope"],
     "does not exist", 1),
    ("eval-bad-format", ["eval", *EVAL, "--set", "dataset.format=blender"], "dataset.format", 1),
    ("eval-output-is-a-file", ["eval", *EVAL, "--output-dir", "{view0.png}"], "is a file", 1),
    ("eval-zero-batch", ["eval", *EVAL, "--set", "batch_size=0"],
     "config key 'batch_size': must be >= 1", 1),
    ("eval-unknown-protocol", ["eval", "--config", "nope_protocol"],
     "protocol file nope_protocol does not exist", 1),
    ("bench-unknown", ["bench", "memory"], "invalid choice: 'memory'", 2),
    ("bench-missing-model", ["bench", "speed", "--model", "{tmp}/nope"], "does not exist", 1),
    ("bench-bogus-device", ["bench", "speed", "--model", "demo", "--device", "tpu"],
     "unknown device 'tpu'", 1),
    ("bench-zero-size", ["bench", "speed", "--model", "demo", "--sizes", "0"],
     "at least one positive value", 1),
    ("bench-size-too-big", ["bench", "speed", "--model", "demo", "--sizes", "800000"],
     "--sizes 800000 is above 4096", 1),
    ("bench-size-off-grid", ["bench", "speed", "--model", "demo", "--sizes", "62"],
     "multiples of the patch size", 1),
    ("bench-zero-views", ["bench", "speed", "--model", "demo", "--views", "0"],
     "at least one positive value", 1),
    ("bench-unknown-precision", ["bench", "speed", "--model", "demo", "--precisions", "fp8"],
     "invalid choice: 'fp8'", 2),
    ("bench-preset-with-demo", ["bench", "speed", "--model", "demo", "--preset", "tiny"],
     "a preset only applies", 1),
    ("bench-negative-warmup", ["bench", "speed", "--model", "demo", "--warmup", "-1"],
     "warmup >= 0", 1),
    ("bench-output-is-a-file", ["bench", "speed", "--model", "demo", "--output-dir",
     "{view0.png}"], "is a file", 1),
    ("bench-extrapolation-yaml", ["bench", "extrapolation", "--config", "{invalid.yaml}"],
     "is not valid YAML", 1),
    ("view-no-source", ["view"], "give exactly one source", 1),
    ("view-two-sources", ["view", "--demo", "--images", "{view0.png}"],
     "got --images and --demo", 1),
    ("view-bad-port", ["view", "--demo", "--port", "70000"], "--port must be in 0..65535", 1),
    ("view-views-without-scene", ["view", "--demo", "--views", "0", "1"],
     "it needs --scene", 1),
    ("view-missing-scene", ["view", "--scene", "{tmp}/nope"], "does not exist", 1),
    ("view-cameras-without-images", ["view", "--demo", "--cameras", "{cameras.json}"],
     "they need --images", 1),
    ("view-missing-model", ["view", "--images", "{view0.png}", "--model", "{tmp}/nope"],
     "does not exist", 1),
    ("view-missing-image", ["view", "--images", "{tmp}/nope.png", "--device", "cpu"],
     "does not exist", 1),
]  # fmt: skip
NO_OUTPUT_DIR = {"shards-unknown-source", "train-no-config", "bench-unknown"}


@pytest.mark.parametrize(
    ("argv", "message", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_command_refuses(argv, message, code, inputs, tmp_path, capsys, request):
    argv = fill(argv, inputs, tmp_path)
    case = request.node.callspec.id
    if "--output-dir" not in argv and argv[0] != "view" and case not in NO_OUTPUT_DIR:
        argv += ["--output-dir", str(tmp_path / "out")]
    watched = (tmp_path, inputs["root"])
    before = [snapshot(folder) for folder in watched]
    started = time.monotonic()
    assert_refused(run_cli(argv, capsys), argv[0], message, code)
    assert time.monotonic() - started < 20, "refused only after expensive work"
    for folder, paths in zip(watched, before, strict=True):
        assert_nothing_written(paths, folder)


@pytest.mark.parametrize("command", ["train", "train-denoiser", "eval", "bench", "bench speed"])
def test_help_answers_without_importing_torch(command):
    """`--help` (and argument errors) come before any heavy import."""
    script = (
        "import contextlib, io, sys\nfrom lagernvs.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, "
        "contextlib.suppress(SystemExit):\n"
        f"    main({command.split() + ['--help']!r})\n"
        "assert 'usage: lagernvs' in out.getvalue(), out.getvalue()\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'accelerate') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_bench_choices_are_the_model_modules_names():
    from lagernvs.models import ATTENTION_TYPES
    from lagernvs.models.attention import BACKENDS, SDPA_KERNELS

    assert bench.ATTENTION_TYPES == ATTENTION_TYPES and bench.BACKENDS == BACKENDS
    assert set(bench.SDPA_KERNELS) == set(SDPA_KERNELS)


def test_an_unforeseen_error_is_one_line_and_its_traceback_on_request(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something\nno check foresaw")

    monkeypatch.setattr("lagernvs.cli.render.run_render", broken)
    result = run_cli(["render", "--output-dir", "x"], capsys)
    assert_refused(result, "render", "unexpected RuntimeError: something no check foresaw")
    assert "LAGERNVS_TRACEBACK=1" in result.err
    monkeypatch.setenv("LAGERNVS_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="no check foresaw"):
        run_cli(["render", "--output-dir", "x"], capsys)
