"""`lagernvs render` as a tool: cameras.json round trips, one encoder pass per video, every path
preset, all-or-nothing output folders (--overwrite, unwritable folders, SIGINT) and the checks
that run before any rendering."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lagernvs import Cameras, LagerNVSModel, LagerNVSPipeline
from lagernvs.cli import main
from lagernvs.cli.render import PATH_KINDS, SCENE_FORMATS
from lagernvs.data.readers import SCENE_FORMATS as READER_FORMATS
from lagernvs.data.synthetic import render_synthetic_scene
from lagernvs.trajectories import PATHS

REPO_ROOT = Path(__file__).resolve().parents[1]


def tiny_model(seed: int = 0) -> LagerNVSModel:
    model = LagerNVSModel.from_preset("tiny", image_size=(32, 32), encoder_image_size=56)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny_pipeline")
    LagerNVSPipeline(model=tiny_model()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> tuple[list[str], str]:
    """Two 40x48 source images and their cameras file."""
    folder = tmp_path_factory.mktemp("sources")
    render = render_synthetic_scene(5, num_frames=4, height=40, width=48, trajectory="arc")
    paths = []
    for index in (0, 3):
        pixels = (render.images[index].permute(1, 2, 0) * 255).round().byte().numpy()
        paths.append(str(folder / f"view{index}.png"))
        Image.fromarray(pixels).save(paths[-1])
    cameras = Cameras(render.c2w[[0, 3]], render.fxfycxcy[[0, 3]], (40, 48))
    return paths, str(cameras.save(folder / "cameras.json"))


def run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def frames_of(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted((folder / "frames").iterdir())]


def one_line_error(code: int, err: str, message: str) -> None:
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("lagernvs render: error:"), err
    assert message in lines[0], lines[0]


def test_the_cli_knows_every_path_and_scene_format():
    assert set(PATH_KINDS) == set(PATHS)
    assert set(SCENE_FORMATS) == set(READER_FORMATS)


def test_cameras_json_fed_back_reproduces_the_frames(model_dir, sources, tmp_path, capsys):
    images, cameras = sources
    common = ["render", "--model", model_dir, "--images", *images, "--cameras", cameras]
    code, _, err = run([*common, "--num-frames", 9, "--output-dir", tmp_path / "a"], capsys)
    assert code == 0, err
    written = json.loads((tmp_path / "a" / "cameras.json").read_text())
    assert (
        written["convention"] == "opencv_c2w"
        and "world frame of the input cameras" in (written["frame"])
    )
    path = tmp_path / "a" / "cameras.json"
    code, _, err = run([*common, "--cameras-path", path, "--output-dir", tmp_path / "b"], capsys)
    assert code == 0, err
    first, again = frames_of(tmp_path / "a"), frames_of(tmp_path / "b")
    assert len(first) == len(again) == 9
    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))  # bit-identical
    rewritten = Cameras.load(tmp_path / "b" / "cameras.json")
    assert torch.equal(rewritten.c2w, Cameras.load(path).c2w)
    # Another frame count resamples the file as keyframes: same ends, a spline between.
    code, _, err = run(
        [*common, "--cameras-path", path, "--num-frames", 5, "--output-dir", tmp_path / "c"],
        capsys,
    )
    assert code == 0, err
    resampled = Cameras.load(tmp_path / "c" / "cameras.json")
    assert len(resampled) == 5
    torch.testing.assert_close(resampled.c2w[[0, -1]], rewritten.c2w[[0, -1]], rtol=0, atol=1e-9)
    assert np.array_equal(frames_of(tmp_path / "c")[0], first[0])


def test_the_encoder_runs_once_per_video(model_dir, sources, tmp_path, monkeypatch, capsys):
    calls = []
    encode = LagerNVSModel.encode
    monkeypatch.setattr(
        LagerNVSModel, "encode", lambda self, *a, **k: calls.append(1) or encode(self, *a, **k)
    )
    images, cameras = sources
    code, stdout, err = run(
        ["render", "--model", model_dir, "--images", *images, "--cameras", cameras,
         "--num-frames", 20, "--chunk-size", 3, "--output-dir", tmp_path / "out"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert len(calls) == 1 and "rendered 20 frames" in stdout


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("spline", []),
        ("spiral", ["--radius", 0.05]),
        ("lemniscate", []),
        ("dolly-zoom", ["--distance", -0.2]),
        ("zoom-in", ["--zoom", 1.5]),
        ("zoom-out", []),
        ("left", ["--distance", 0.1]),
        ("back", []),
        ("orbit", ["--degrees", 20]),
    ],
)
def test_path_presets_render(path, options, model_dir, sources, tmp_path, capsys):
    images, cameras = sources
    code, _, err = run(
        ["render", "--model", model_dir, "--images", *images, "--cameras", cameras,
         "--path", path, *options, "--num-frames", 4, "--output-dir", tmp_path / "out"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    rendered = Cameras.load(tmp_path / "out" / "cameras.json")
    assert len(rendered) == 4 and len(frames_of(tmp_path / "out")) == 4


def test_overwrite_replaces_old_results_and_keeps_other_files(model_dir, sources, tmp_path, capsys):
    images, cameras = sources
    out = tmp_path / "out"
    common = ["render", "--model", model_dir, "--images", *images, "--cameras", cameras]
    assert run([*common, "--num-frames", 7, "--output-dir", out], capsys)[0] == 0
    (out / "notes.txt").write_text("mine")
    code, _, err = run([*common, "--num-frames", 3, "--output-dir", out], capsys)
    one_line_error(code, err, "is not empty")
    assert len(frames_of(out)) == 7  # refused before touching anything
    code, _, err = run([*common, "--num-frames", 3, "--output-dir", out, "--overwrite"], capsys)
    assert code == 0, err
    assert len(frames_of(out)) == 3 and len(Cameras.load(out / "cameras.json")) == 3
    assert sorted(p.name for p in out.iterdir()) == [
        "cameras.json", "frames", "notes.txt", "video.mp4"
    ]  # fmt: skip


def _refuse_model_loading(monkeypatch):
    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the input checks")

    monkeypatch.setattr("lagernvs.pipeline.load_pipeline", load)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--fps", 0], "fps must be > 0"),
        (["--fps", -3], "fps must be > 0"),
        (["--fps", "nan"], "fps must be a positive number"),
        (["--path", "interpolate"], "follows the source cameras"),
        (["--path", "spline"], "follows the source cameras"),
        (["--radius", 0.1], "--radius does not apply to --path orbit"),
        (["--path", "left", "--zoom", 2], "--zoom does not apply to --path left"),
        (["--cameras-path", "{cameras}", "--path", "orbit"], "either --path or --cameras-path"),
        (["--cameras-path", "{tmp}"], "cameras path file {tmp} is a folder"),
        (["--cameras-path", "{tmp}/none.json"], "does not exist"),
        (["--cameras", "{tmp}"], "cameras file {tmp} is a folder"),
        (["--cameras", "{cameras}", "--vggt-weights", "{cameras}"], "either --cameras or --vggt"),
        (["--vggt-weights", "{tmp}"], "is a folder; give the checkpoint file"),
        (["--vggt-weights", "{tmp}/vggt.pt"], "VGGT weights {tmp}/vggt.pt do not exist"),
        (["--format", "colmap"], "select frames of a --scene"),
    ],
)
def test_bad_requests_fail_before_the_model_loads(
    options, message, sources, tmp_path, monkeypatch, capsys
):
    images, cameras = sources
    _refuse_model_loading(monkeypatch)
    options = [str(o).format(tmp=tmp_path, cameras=cameras) for o in options]
    out = tmp_path / "out"
    code, _, err = run(["render", "--images", *images, *options, "--output-dir", out], capsys)
    one_line_error(code, err, message.format(tmp=tmp_path))
    assert not out.exists()  # nothing created, nothing half-written


def test_an_unwritable_output_folder_fails_before_rendering(sources, tmp_path, monkeypatch, capsys):
    images, _ = sources
    _refuse_model_loading(monkeypatch)
    if os.geteuid() == 0:  # root writes anywhere a permission allows: use a read-only filesystem
        target = Path("/sys/lagernvs-render-test")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out"
    code, _, err = run(["render", "--images", *images, "--output-dir", target], capsys)
    one_line_error(code, err, f"cannot write to output folder {target}")
    (tmp_path / "file").write_text("x")
    code, _, err = run(["render", "--images", *images, "--output-dir", tmp_path / "file"], capsys)
    one_line_error(code, err, "is a file")


def test_size_above_native_warns_and_off_grid_sizes_fail(model_dir, sources, tmp_path, capsys):
    images, cameras = sources
    common = ["render", "--model", model_dir, "--images", *images, "--cameras", cameras]
    code, stdout, err = run(
        [*common, "--size", 48, 64, "--num-frames", 1, "--output-dir", tmp_path / "big"], capsys
    )
    assert code == 0, err
    warnings = [line for line in stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "above the model's native 32x32" in warnings[0]
    assert frames_of(tmp_path / "big")[0].shape == (48, 64, 3)
    code, _, err = run([*common, "--size", 30, 32, "--output-dir", tmp_path / "odd"], capsys)
    one_line_error(code, err, "multiples of the model's patch size 8")
    assert not (tmp_path / "odd").exists()


def _render_command(model_dir: Path, sources, out: Path, frames: int, *extra: str) -> list[str]:
    images, cameras = sources
    return [
        sys.executable, "-m", "lagernvs.cli", "render", "--model", str(model_dir),
        "--images", *images, "--cameras", cameras, "--num-frames", str(frames),
        "--chunk-size", "1", "--output-dir", str(out), *extra,
    ]  # fmt: skip


def _interrupt_while_rendering(command: list[str], out: Path) -> subprocess.CompletedProcess:
    """Run ``command``, send SIGINT once frames are being written, return how it ended."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob(".partial-*/frames/00003.png")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no frames were written"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_sigint_leaves_nothing_half_written_and_a_rerun_is_clean(
    model_dir, sources, tmp_path, capsys
):
    out = tmp_path / "out"
    ended = _interrupt_while_rendering(_render_command(model_dir, sources, out, 3000), out)
    assert ended.returncode == 130, ended.stderr
    assert ended.stderr.decode().strip().splitlines()[-1] == "lagernvs render: interrupted (SIGINT)"
    assert not out.exists() or list(out.iterdir()) == []  # no file under a final name
    assert main(_render_command(model_dir, sources, out, 5)[3:]) == 0  # the same, in process
    assert sorted(p.name for p in out.iterdir()) == ["cameras.json", "frames", "video.mp4"]
    assert len(frames_of(out)) == 5 and len(Cameras.load(out / "cameras.json")) == 5
    # An interrupted --overwrite keeps the earlier results whole.
    command = _render_command(model_dir, sources, out, 3000, "--overwrite")
    assert _interrupt_while_rendering(command, out).returncode == 130
    assert sorted(p.name for p in out.iterdir()) == ["cameras.json", "frames", "video.mp4"]
    assert len(frames_of(out)) == 5 and len(Cameras.load(out / "cameras.json")) == 5
