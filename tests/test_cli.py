"""The `lagernvs` command end to end on tiny models: render, convert, demo, errors, --help."""

from __future__ import annotations

import json
import subprocess
import sys

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

from lagernvs import Cameras, LagerNVSModel, LagerNVSPipeline, demo
from lagernvs.cli import main
from lagernvs.data.synthetic import render_synthetic_scene, write_synthetic_dataset
from lagernvs.pipeline import loading


def tiny_model(seed: int = 0, **overrides) -> LagerNVSModel:
    config = {"image_size": (32, 32), "encoder_image_size": 56, **overrides}
    model = LagerNVSModel.from_preset("tiny", **config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_pipeline")
    LagerNVSPipeline(model=tiny_model()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def posed_inputs(tmp_path_factory):
    """Two source images (40x48 PNGs) and their cameras file."""
    folder = tmp_path_factory.mktemp("inputs")
    render = render_synthetic_scene(3, num_frames=4, height=40, width=48, trajectory="arc")
    paths = []
    for index in (0, 3):
        pixels = (render.images[index].permute(1, 2, 0) * 255).round().byte().numpy()
        paths.append(folder / f"view{index}.png")
        Image.fromarray(pixels).save(paths[-1])
    cameras = Cameras(render.c2w[[0, 3]], render.fxfycxcy[[0, 3]], (40, 48))
    return [str(p) for p in paths], str(cameras.save(folder / "cameras.json"))


def run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_is_fast_and_imports_nothing_heavy():
    script = (
        "import sys, lagernvs.cli as c\n"
        "c.build_parser().format_help()\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for command in ("demo", "render", "convert", "shards"):
        script = (
            "import contextlib, io, sys, lagernvs.cli as c\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            f"    c.main([{command!r}, '--help'])\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'numpy') if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "[]", command
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0


def test_render_posed_images_along_an_interpolation(model_dir, posed_inputs, tmp_path, capsys):
    images, cameras = posed_inputs
    out = tmp_path / "out"
    code, stdout, _ = run(
        ["render", "--model", model_dir, "--images", *images, "--cameras", cameras,
         "--path", "interpolate", "--num-frames", 5, "--output-dir", out, "--upscale", 2],
        capsys,
    )  # fmt: skip
    assert code == 0 and "rendered 5 frames" in stdout
    assert sorted(p.name for p in (out / "frames").iterdir()) == [f"{i:05d}.png" for i in range(5)]
    frames = imageio.mimread(out / "video.mp4")
    assert len(frames) == 5 and frames[0].shape == (64, 64, 3)
    rendered = Cameras.load(out / "cameras.json")
    source = Cameras.load(cameras)
    assert len(rendered) == 5 and rendered.image_size == (32, 32)
    torch.testing.assert_close(rendered.c2w[[0, -1]], source.c2w, atol=1e-9, rtol=0)
    # The first frame is the first source view: the model renders it from its own camera.
    pipe = LagerNVSPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(images, source, target_cameras=rendered[0], output_type="np").images[0]
    written = np.asarray(Image.open(out / "frames" / "00000.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(written, expected, atol=1 / 255 + 1e-6)


def test_render_unposed_orbit_and_scene_folders(model_dir, posed_inputs, tmp_path, capsys):
    images, _ = posed_inputs
    code, _, _ = run(
        ["render", "--model", model_dir, "--images", *images, "--path", "orbit",
         "--num-frames", 3, "--size", 16, 24, "--output-dir", tmp_path / "orbit"],
        capsys,
    )  # fmt: skip
    assert code == 0
    assert Cameras.load(tmp_path / "orbit" / "cameras.json").image_size == (16, 24)
    (scene_id,) = write_synthetic_dataset(tmp_path / "data", 1, num_frames=4, height=32, width=32)
    scene = tmp_path / "data" / "train" / "images" / scene_id
    code, _, _ = run(
        ["render", "--model", model_dir, "--scene", scene, "--views", 0, 2, "--path",
         "extrapolate", "--num-frames", 4, "--output-dir", tmp_path / "scene"],
        capsys,
    )  # fmt: skip
    assert code == 0 and len(list((tmp_path / "scene" / "frames").iterdir())) == 4


def test_convert_an_official_checkpoint(tmp_path, capsys):
    model = tiny_model(seed=5, image_size=(64, 64), encoder_image_size=112)  # = preset "tiny"
    torch.save({"model": model.state_dict()}, tmp_path / "model.pt")
    out = tmp_path / "converted"
    code, stdout, _ = run(
        ["convert", tmp_path / "model.pt", "--preset", "tiny", "--output-dir", out], capsys
    )
    assert code == 0 and "converted" in stdout
    loaded = LagerNVSPipeline.from_pretrained(out)
    assert loaded.model.config.image_size == [64, 64]  # the preset's own configuration
    reference = LagerNVSModel.from_preset("tiny").state_dict()
    assert loaded.model.state_dict().keys() == reference.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_demo_end_to_end_on_a_tiny_model(model_dir, tmp_path, monkeypatch, capsys):
    ids = write_synthetic_dataset(
        tmp_path / "scenes", 2, split="test", num_frames=4, height=32, width=32
    )
    views = {scene: {"context": [0, 3], "target": [1, 2]} for scene in ids}
    (tmp_path / "scenes" / "views.json").write_text(json.dumps(views))
    monkeypatch.setattr(loading, "DEMO_MODEL_DIR", model_dir)
    monkeypatch.setattr(loading, "DEMO_DENOISER_DIR", tmp_path / "no_denoiser")
    monkeypatch.setattr(demo, "DEMO_SCENES_DIR", tmp_path / "scenes")
    code, stdout, _ = run(["demo", "--output-dir", tmp_path / "demo"], capsys)
    assert code == 0 and "nearest source view" in stdout
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["num_scenes"] == 2 and metrics["num_target_views"] == 4
    for method in ("deterministic", "baseline_nearest_view"):
        assert set(metrics[method]) == {"psnr", "ssim"}
        assert np.isfinite(metrics[method]["psnr"])
    assert (tmp_path / "demo" / "orbit.mp4").stat().st_size > 0
    assert all((tmp_path / "demo" / f"{scene}.png").is_file() for scene in ids)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["render", "--images", "{tmp}/missing.png", "--output-dir", "{tmp}/o"], "does not exist"),
        (["render", "--images", "{tmp}/bad.png", "--output-dir", "{tmp}/o"], "cannot decode"),
        (
            [
                "render",
                "--images",
                "{img}",
                "--cameras",
                "{tmp}/two.json",
                "--output-dir",
                "{tmp}/o",
            ],
            "2 cameras for 1 images",
        ),
        (
            ["render", "--images", "{img}", "--path", "interpolate", "--output-dir", "{tmp}/o"],
            "follows the source cameras",
        ),
        (
            ["render", "--model", "{tmp}", "--images", "{img}", "--output-dir", "{tmp}/o"],
            "not a saved pipeline",
        ),
        (
            [
                "render",
                "--images",
                "{img}",
                "--cameras",
                "{tmp}/nan.json",
                "--output-dir",
                "{tmp}/o",
            ],
            "NaN or infinite",
        ),
        (
            ["convert", "{tmp}/none.pt", "--preset", "tiny", "--output-dir", "{tmp}/c"],
            "does not exist",
        ),
        (
            ["convert", "{tmp}/bad.png", "--preset", "tiny", "--output-dir", "{tmp}/c"],
            "not a readable checkpoint",
        ),
        (
            ["render", "--images", "{img}", "--device", "bogus", "--output-dir", "{tmp}/o"],
            "unknown device 'bogus'",
        ),
        pytest.param(
            ["render", "--images", "{img}", "--device", "cuda", "--output-dir", "{tmp}/o"],
            "CUDA is not available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
        pytest.param(
            ["demo", "--device", "cuda", "--output-dir", "{tmp}/o"],
            "CUDA is not available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
        (
            ["render", "--model", "tiny", "--images", "{img}", "--output-dir", "{tmp}/o"],
            "spell random weights as 'preset:tiny'",
        ),
        (
            ["render", "--model", "preset:nope", "--images", "{img}", "--output-dir", "{tmp}/o"],
            "unknown preset 'nope'",
        ),
        (
            ["render", "--model", "{tmp}/bad.pt", "--images", "{img}", "--output-dir", "{tmp}/o"],
            "name its preset",
        ),
        (
            [
                "render",
                "--model",
                "demo",
                "--preset",
                "tiny",
                "--images",
                "{img}",
                "--output-dir",
                "{tmp}/o",
            ],
            "a preset only applies to an official checkpoint file",
        ),  # fmt: skip
    ],
)
def test_errors_are_one_line_and_a_non_zero_exit(
    argv, message, model_dir, posed_inputs, tmp_path, capsys
):
    images, cameras = posed_inputs
    (tmp_path / "bad.png").write_bytes(b"definitely not a png")
    (tmp_path / "bad.pt").write_bytes(b"not read: the preset is asked for first")
    two = Cameras.load(cameras)
    two.save(tmp_path / "two.json")
    record = two[:1].to_dict()
    record["c2w"][0][0][3] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(record))
    argv = [a.format(tmp=tmp_path, img=images[0]) for a in argv]
    if argv[0] == "render" and "--model" not in argv:
        argv += ["--model", str(model_dir)]
    code, _, err = run(argv, capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lagernvs {argv[0]}: error:"), err
    assert message in lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as `lagernvs train` leaves it: the trained model saved in RUN/model."""
    run = tmp_path_factory.mktemp("run")
    tiny_model(seed=7).save_pretrained(run / "model")
    return run


@pytest.mark.parametrize("spec", ["model_folder", "run_folder", "checkpoint", "preset"])
def test_render_loads_every_kind_of_model(spec, run_dir, posed_inputs, tmp_path, capsys):
    """`render --model` takes what `lagernvs train` writes (RUN/model, or the run folder), an
    official checkpoint with --preset, and 'preset:NAME': the same loader as every command."""
    images, cameras = posed_inputs
    trained = LagerNVSModel.from_pretrained(run_dir / "model")
    official = tiny_model(seed=5, image_size=(64, 64), encoder_image_size=112)  # = preset "tiny"
    torch.save({"model": official.state_dict()}, tmp_path / "model.pt")
    models = {
        "model_folder": [run_dir / "model"],
        "run_folder": [run_dir],
        "checkpoint": [tmp_path / "model.pt", "--preset", "tiny"],
        "preset": ["preset:tiny"],
    }
    out = tmp_path / "out"
    code, stdout, err = run(
        ["render", "--model", *models[spec], "--images", *images, "--cameras", cameras,
         "--path", "interpolate", "--num-frames", 2, "--output-dir", out],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "rendered 2 frames" in stdout
    assert len(list((out / "frames").iterdir())) == 2
    rendered = Cameras.load(out / "cameras.json")
    expected_size = (64, 64) if spec in ("checkpoint", "preset") else (32, 32)
    assert rendered.image_size == expected_size  # the preset's own size, or the saved config's
    if spec in ("model_folder", "run_folder"):
        # The frames are those of the trained weights (not of a fresh model).
        pipe = LagerNVSPipeline(model=trained.eval())
        pipe.set_progress_bar_config(disable=True)
        source = Cameras.load(cameras)
        expected = pipe(images, source, target_cameras=rendered[1], output_type="np").images[0]
        written = np.asarray(Image.open(out / "frames" / "00001.png"), dtype=np.float32) / 255
        np.testing.assert_allclose(written, expected, atol=1 / 255 + 1e-6)


def _without_video_extra(monkeypatch):
    """Make imageio and imageio-ffmpeg unimportable, as without the `video` extra."""
    for name in ("imageio", "imageio.v2", "imageio_ffmpeg"):
        monkeypatch.setitem(sys.modules, name, None)


def test_render_without_the_video_extra_writes_frames_and_says_how(
    model_dir, posed_inputs, tmp_path, monkeypatch, capsys
):
    images, _ = posed_inputs
    _without_video_extra(monkeypatch)
    out = tmp_path / "out"
    code, stdout, err = run(
        ["render", "--model", model_dir, "--images", *images, "--num-frames", 3,
         "--output-dir", out],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "pip install 'lagernvs[video]'" in stdout and "rendered 3 frames" in stdout
    assert len(list((out / "frames").iterdir())) == 3
    assert not (out / "video.mp4").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no partial file


def test_demo_without_the_video_extra_still_runs(model_dir, tmp_path, monkeypatch, capsys):
    (scene_id,) = write_synthetic_dataset(
        tmp_path / "scenes", 1, split="test", num_frames=4, height=32, width=32
    )
    views = {scene_id: {"context": [0, 3], "target": [1]}}
    (tmp_path / "scenes" / "views.json").write_text(json.dumps(views))
    monkeypatch.setattr(loading, "DEMO_MODEL_DIR", model_dir)
    monkeypatch.setattr(loading, "DEMO_DENOISER_DIR", tmp_path / "no_denoiser")
    monkeypatch.setattr(demo, "DEMO_SCENES_DIR", tmp_path / "scenes")
    _without_video_extra(monkeypatch)
    code, stdout, err = run(["demo", "--output-dir", tmp_path / "demo"], capsys)
    assert code == 0, err
    assert "no orbit.mp4" in stdout and "pip install 'lagernvs[video]'" in stdout
    assert (tmp_path / "demo" / "metrics.json").is_file()
    assert not (tmp_path / "demo" / "orbit.mp4").exists()
