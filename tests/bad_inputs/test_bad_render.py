"""Bad input to `lagernvs render`, `demo` and `convert`: each is refused with its exit code and
one line naming the problem, no traceback, and nothing written (see conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from bad_input_helpers import assert_nothing_written, assert_refused, fill, run_cli, snapshot

IMAGES = ["--images", "{view0.png}", "{view3.png}"]
POSED = [*IMAGES, "--cameras", "{cameras.json}"]

# (id, arguments after `render`, message, exit code); --model is the tiny pipeline unless given.
RENDER = [
    ("cuda-without-gpu", [*POSED, "--device", "cuda"], "CUDA is not available", 1),
    ("cuda-index", [*POSED, "--device", "cuda:3"], "CUDA is not available", 1),
    ("bogus-device", [*POSED, "--device", "bogus"], "unknown device 'bogus'", 1),
    ("mps-on-linux", [*POSED, "--device", "mps"], "MPS is not available", 1),
    ("missing-model", [*POSED, "--model", "{tmp}/nope"], "does not exist", 1),
    ("preset-name-as-model", [*POSED, "--model", "tiny"], "spell random weights", 1),
    ("unknown-preset", [*POSED, "--model", "preset:nope"], "unknown preset 'nope'", 1),
    ("fewer-blocks", [*POSED, "--model", "{fewer_blocks}"], "renderer_depth", 1),
    ("more-blocks", [*POSED, "--model", "{more_blocks}"], "missing keys", 1),
    ("config-vs-weights", [*POSED, "--model", "{other_attention}"], "does not match", 1),
    ("pipeline-fewer-blocks", [*POSED, "--model", "{pipeline_fewer_blocks}"], "renderer_depth", 1),
    ("unknown-config-key", [*POSED, "--model", "{unknown_key}"], "colour", 1),
    ("nan-model-folder", [*POSED, "--model", "{nan_model}"], "non-finite weights", 1),
    ("nan-pipeline", [*POSED, "--model", "{nan_pipeline}"], "non-finite weights", 1),
    ("nan-checkpoint", [*POSED, "--model", "{nan.pt}", "--preset", "tiny"], "non-finite", 1),
    ("folder-without-weights", [*POSED, "--model", "{no_weights}"], "no diffusion_pytorch", 1),
    ("config-not-json", [*POSED, "--model", "{bad_json}"], "not valid JSON", 1),
    ("garbage-checkpoint", [*POSED, "--model", "{garbage.pt}", "--preset", "tiny"],
     "not a readable checkpoint", 1),
    ("checkpoint-other-size", [*POSED, "--model", "{encoder_56.pt}", "--preset", "tiny"],
     "encoder_image_size: 56 in the checkpoint", 1),
    ("checkpoint-no-preset", [*POSED, "--model", "{tiny.pt}"], "name its preset", 1),
    ("checkpoint-wrong-preset", [*POSED, "--model", "{tiny.pt}", "--preset", "re10k_2v_256"],
     "configured for 'full_attention'", 1),
    ("preset-with-folder", [*POSED, "--preset", "tiny"], "a preset only applies", 1),
    ("missing-image", ["--images", "{tmp}/nope.png"], "does not exist", 1),
    ("folder-as-image", ["--images", "{a_folder}"], "is a folder", 1),
    ("text-as-image", ["--images", "{fake.png}"], "fake.png", 1),
    ("truncated-image", ["--images", "{truncated.png}"], "truncated.png", 1),
    ("1x1-image", ["--images", "{tiny.png}"], "1x1 pixels", 1),
    ("4000x10-image", ["--images", "{thin.png}"], "aspect ratio of 400:1", 1),
    ("cameras-not-json", [*IMAGES, "--cameras", "{not_json.json}"], "not valid JSON", 1),
    ("string-intrinsics", [*IMAGES, "--cameras", "{string_intrinsics.json}"], "'wide'", 1),
    ("cameras-count", [*IMAGES, "--cameras", "{one_camera.json}"], "holds 1 cameras for 2", 1),
    ("empty-cameras", [*IMAGES, "--cameras", "{empty_cameras.json}"], "holds no cameras", 1),
    ("folder-as-cameras", [*IMAGES, "--cameras", "{a_folder}"], "is a folder", 1),
    ("missing-vggt", [*IMAGES, "--vggt-weights", "{tmp}/vggt.pt"], "do not exist", 1),
    ("cameras-and-vggt", [*POSED, "--vggt-weights", "{tiny.pt}"], "not both", 1),
    ("no-sources", [], "give source images", 1),
    ("scene-and-images", [*IMAGES, "--scene", "{a_folder}"], "not both", 1),
    ("views-without-scene", [*IMAGES, "--views", "0", "1"], "--views and --format", 1),
    ("missing-scene", ["--scene", "{tmp}/no_scene"], "does not exist", 1),
    ("empty-scene-folder", ["--scene", "{a_folder}"], "a_folder", 1),
    ("scene-wrong-format", ["--scene", "{a_folder}", "--format", "llff"], "a_folder", 1),
    ("views-out-of-range", ["--scene", "{scene}", "--views", "0", "99"],
     "has 4 frames; indices [0, 99] are out of range", 1),
    ("negative-view", ["--scene", "{scene}", "--views", "-9"], "out of range", 1),
    ("scene-not-of-format", ["--scene", "{scene}", "--format", "colmap"], "no COLMAP model", 1),
    ("mixed-sizes-unposed", ["--images", "{view0.png}", "{square.png}"],
     "images of mixed sizes", 1),
    ("camera-of-another-size", ["--images", "{square.png}", "{view3.png}", "--cameras",
     "{cameras.json}"], "source camera 0 is for a 40x48 image but image 0 is 64x64", 1),
    ("nan-camera", [*IMAGES, "--cameras", "{nan_pose.json}"], "NaN or infinite", 1),
    ("unknown-convention", [*IMAGES, "--cameras", "{blender.json}"],
     "unknown camera convention 'blender'", 1),
    ("model-is-an-image", [*POSED, "--model", "{view0.png}"], "not a readable checkpoint", 1),
    ("empty-device", [*POSED, "--device", ""], "unknown device ''", 1),
    ("empty-output-dir", [*POSED, "--output-dir", ""], "empty string", 1),
    ("no-images-after-flag", ["--images"], "expected at least one argument", 2),
    ("size-off-grid", [*POSED, "--size", "33", "32"], "multiples of the model's patch size", 1),
    ("size-zero", [*POSED, "--size", "0", "32"], "multiples of the model's patch size", 1),
    ("size-too-big", [*POSED, "--size", "4096", "4096"], "native", 1),
    ("fps-zero", [*POSED, "--fps", "0"], "fps must be > 0", 1),
    ("fps-negative", [*POSED, "--fps", "-3"], "fps must be > 0", 1),
    ("fps-absurd", [*POSED, "--fps", "1e12"], "fps must be at most 1000", 1),
    ("upscale-too-big", [*POSED, "--upscale", "1000"], "lower --upscale", 1),
    ("fps-nan", [*POSED, "--fps", "nan"], "fps must be a positive number", 1),
    ("zero-frames", [*POSED, "--num-frames", "0"], "expected a positive integer", 2),
    ("frames-not-a-number", [*POSED, "--num-frames", "ten"], "expected a positive integer", 2),
    ("negative-chunk", [*POSED, "--chunk-size", "-1"], "expected a positive integer", 2),
    ("unknown-path", [*POSED, "--path", "loop"], "invalid choice: 'loop'", 2),
    ("unknown-option", [*POSED, "--colour", "red"], "unrecognized arguments", 2),
    ("unposed-spline", [*IMAGES, "--path", "spline"], "follows the source cameras", 1),
    ("option-of-another-path", [*POSED, "--path", "dolly", "--degrees", "10"],
     "--degrees does not apply", 1),
    ("zoom-below-one", [*POSED, "--path", "zoom-in", "--zoom", "0.5"], "zoom", 1),
    ("nan-distance", [*POSED, "--path", "dolly", "--distance", "nan"], "distance", 1),
    ("missing-cameras-path", [*POSED, "--cameras-path", "{tmp}/nope.json"], "does not exist", 1),
    ("cameras-path-and-path", [*POSED, "--cameras-path", "{cameras.json}", "--path", "orbit"],
     "either --path or --cameras-path", 1),
    ("output-is-a-file", [*POSED, "--output-dir", "{view0.png}"], "is a file", 1),
    ("output-under-a-file", [*POSED, "--output-dir", "{view0.png}/out"], "cannot write", 1),
]  # fmt: skip

# (id, arguments, message, exit code) of `demo` and `convert`.
OTHERS = [
    ("demo-cuda", ["demo", "--device", "cuda"], "CUDA is not available", 1),
    ("demo-bogus-device", ["demo", "--device", "gpu0"], "unknown device 'gpu0'", 1),
    ("demo-mode", ["demo", "--mode", "random"], "invalid choice: 'random'", 2),
    ("demo-output-under-a-file", ["demo", "--output-dir", "{view0.png}/demo"],
     "cannot write to output folder", 1),
    ("demo-output-is-a-file", ["demo", "--output-dir", "{view0.png}"], "is a file", 1),
    ("convert-missing", ["convert", "{tmp}/none.pt", "--preset", "tiny"], "does not exist", 1),
    ("convert-folder-as-file", ["convert", "{a_folder}", "--preset", "tiny"],
     "a preset only applies", 1),
    ("convert-garbage", ["convert", "{garbage.pt}", "--preset", "tiny"],
     "not a readable checkpoint", 1),
    ("convert-nan", ["convert", "{nan.pt}", "--preset", "tiny"], "non-finite weights", 1),
    ("convert-no-preset", ["convert", "{tiny.pt}"], "name its preset", 1),
    ("convert-unknown-preset", ["convert", "{tiny.pt}", "--preset", "huge"],
     "unknown preset 'huge'", 1),
    ("convert-wrong-preset", ["convert", "{tiny.pt}", "--preset", "general_512"],
     "does not match the model", 1),
    ("convert-not-a-state-dict", ["convert", "{no_state_dict.pt}", "--preset", "tiny"],
     "is not a state dict", 1),
    ("convert-preset-vs-file-name", ["convert", "{dl3dv_tiny.pt}", "--preset", "tiny"],
     "looks like a dl3dv_256 checkpoint", 1),
    ("convert-text-file", ["convert", "{not_json.json}", "--preset", "tiny"],
     "not a readable checkpoint", 1),
    ("convert-output-is-a-file", ["convert", "{tiny.pt}", "--preset", "tiny", "--output-dir",
     "{view0.png}"], "is a file", 1),
    ("convert-output-under-a-file", ["convert", "{tiny.pt}", "--preset", "tiny", "--output-dir",
     "{view0.png}/pipeline"], "cannot write to output folder", 1),
    ("convert-into-non-empty", ["convert", "{tiny.pt}", "--preset", "tiny", "--output-dir",
     "{a_folder}/.."], "not empty", 1),
]  # fmt: skip


@pytest.fixture(autouse=True)
def no_cuda(monkeypatch):
    """Behave as on a machine without CUDA, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def _check(argv: list[str], message: str, code: int, inputs: dict, tmp_path, capsys) -> None:
    """Run ``argv`` (default output folder ``tmp_path/out``); check the refusal and that
    nothing new appeared, neither in ``tmp_path`` nor among the inputs."""
    argv = fill(argv, inputs, tmp_path)
    if "--output-dir" not in argv:
        argv += ["--output-dir", str(tmp_path / "out")]
    watched = (tmp_path, inputs["root"])
    before = [snapshot(folder) for folder in watched]
    assert_refused(run_cli(argv, capsys), argv[0], message, code)
    for folder, paths in zip(watched, before, strict=True):
        assert_nothing_written(paths, folder)


@pytest.mark.parametrize(
    ("argv", "message", "code"), [c[1:] for c in RENDER], ids=[c[0] for c in RENDER]
)
def test_render_refuses(argv, message, code, inputs, tmp_path, capsys):
    argv = ["render", *argv]
    if "--model" not in argv:
        argv += ["--model", "{pipeline}"]
    _check(argv, message, code, inputs, tmp_path, capsys)


@pytest.mark.parametrize(
    ("argv", "message", "code"), [c[1:] for c in OTHERS], ids=[c[0] for c in OTHERS]
)
def test_demo_and_convert_refuse(argv, message, code, inputs, tmp_path, capsys):
    _check(argv, message, code, inputs, tmp_path, capsys)


def test_convert_replaces_a_pipeline_only_when_told_and_only_when_complete(
    inputs, tmp_path, capsys, monkeypatch
):
    """A refused or interrupted `convert --overwrite` leaves the earlier pipeline as it was."""
    from lagernvs import LagerNVSPipeline

    out = tmp_path / "pipeline"
    convert = ["convert", inputs["tiny.pt"], "--preset", "tiny", "--output-dir", out]
    assert run_cli(convert, capsys).code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    nan = ["convert", inputs["nan.pt"], "--preset", "tiny", "--output-dir", out, "--overwrite"]
    assert_refused(run_cli(nan, capsys), "convert", "non-finite weights")

    def interrupted(self, folder, **kwargs):
        (Path(folder) / "model_index.json").write_text("{half")
        raise KeyboardInterrupt

    monkeypatch.setattr(LagerNVSPipeline, "save_pretrained", interrupted)
    result = run_cli([*convert, "--overwrite"], capsys)
    assert result.code == 130 and "interrupted (SIGINT)" in result.err
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and not list(out.glob(".partial-*"))
