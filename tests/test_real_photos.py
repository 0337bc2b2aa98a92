"""Real photos as they come: EXIF orientation, aspect ratios, degenerate images, the real scenes
of ../shared/data/real through `lagernvs render`, two unposed 640x480 photos, and camera
estimation (a tiny VGGT-layout estimator) through the pipeline and the command line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_vggt import save_tiny_vggt, tiny_estimator

from lagernvs import Cameras, LagerNVSModel, LagerNVSPipeline, load_scene
from lagernvs.cli import main
from lagernvs.data.images import load_images, read_image, read_image_size
from lagernvs.data.model_inputs import crop_note, model_input_size
from lagernvs.models import preset_config

EXIF_ORIENTATION = 0x0112
DISPLAY = {3: 2, 6: -1, 8: 1}  # orientation tag -> np.rot90 turns (counter-clockwise) to show it


def run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tiny_pipeline(**overrides) -> LagerNVSPipeline:
    torch.manual_seed(0)
    model = LagerNVSModel.from_preset(
        "tiny", image_size=(32, 32), encoder_image_size=56, **overrides
    )
    pipe = LagerNVSPipeline(model=model.eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_data_dir) -> list[str]:
    """Two 640x480 JPEGs without cameras, cut from the real beer capture."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for index, name in enumerate(("0000", "0012")):
        with Image.open(shared_data_dir / "real" / "beer_llff" / "images" / f"{name}.jpg") as image:
            top = (image.height - 540) // 2
            photo = image.crop((0, top, 720, top + 540)).resize((640, 480))
        paths.append(str(folder / f"photo{index}.jpg"))
        photo.save(paths[-1], quality=92)
    return paths


# ----------------------------------------------------------------------------- EXIF orientation


def _jpeg(pixels: np.ndarray, orientation: int | None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_everywhere_an_image_is_read(orientation, tmp_path):
    rows, cols = np.mgrid[0:24, 0:40]
    pixels = np.stack([rows * 10, cols * 6, (rows + cols) * 3], -1).astype(np.uint8)
    stored = read_image(_write(tmp_path / "plain.jpg", _jpeg(pixels, None)))
    tagged = _write(tmp_path / "tagged.jpg", _jpeg(pixels, orientation))
    expected = torch.rot90(stored, DISPLAY[orientation], dims=(-2, -1))  # same JPEG pixels
    assert read_image_size(tagged) == tuple(expected.shape[-2:])
    with Image.open(tagged) as opened:
        for image in load_images([tagged, str(tagged), tagged.read_bytes(), opened]):
            assert torch.equal(image, expected)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_sideways_phone_photo_reaches_the_model_upright(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    tagged = _write(tmp_path / "phone.jpg", _jpeg(pixels, 6))
    upright = torch.rot90(read_image(_write(tmp_path / "raw.jpg", _jpeg(pixels, None))), -1, (1, 2))
    pipe = tiny_pipeline()
    assert torch.equal(pipe.encode([tagged]).source_images, pipe.encode([upright]).source_images)


# ----------------------------------------------------------------------------- sizes and aspects


def test_the_general_model_keeps_the_aspect_ratio_and_square_models_crop():
    general = {**preset_config("general_512"), "patch_size": 8}
    assert model_input_size(general, (480, 640)) == (384, 512)
    assert model_input_size(general, (1920, 1080)) == (512, 288)
    assert model_input_size(general, (512, 512)) == (512, 512)
    assert model_input_size(general, (100, 300)) == (256, 512)  # aspect 3 limited to 2
    assert crop_note(general, (480, 640)) is None and crop_note(general, (1920, 1080)) is None
    assert "limited to 2:1" in crop_note(general, (100, 300))
    square = {**preset_config("re10k_2v_256"), "patch_size": 8}
    assert model_input_size(square, (480, 640)) == (256, 256)
    assert "works on 256x256 images only" in crop_note(square, (480, 640))
    assert crop_note(square, (300, 300)) is None
    # Models saved without the flag (the demo, older folders) keep the square behaviour.
    assert not LagerNVSModel.from_preset("tiny").config.variable_aspect
    assert model_input_size({"image_size": (64, 64), "patch_size": 8}, (480, 640)) == (64, 64)


def test_a_variable_aspect_model_sees_and_renders_the_photos_shape(photos, tmp_path, capsys):
    pipe = tiny_pipeline(variable_aspect=True)
    assert pipe.encode(photos).source_images.shape == (2, 3, 24, 32)
    pipe.save_pretrained(tmp_path / "model")
    code, stdout, err = run(
        ["render", "--model", tmp_path / "model", "--images", *photos, "--num-frames", 2,
         "--output-dir", tmp_path / "out"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "centre-crops" not in stdout
    assert Cameras.load(tmp_path / "out" / "cameras.json").image_size == (24, 32)
    frame = Image.open(tmp_path / "out" / "frames" / "00000.png")
    assert frame.size == (32, 24)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 1), "image 0 is 1x1 pixels; source images need at least 16 pixels a side"),
        ((10, 4000), "image 0 is 10x4000 pixels, an aspect ratio of 400:1"),
        ((100, 500), "an aspect ratio of 5:1; the model takes at most 4:1"),
    ],
)
def test_degenerate_photos_get_one_line_errors(shape, message, tmp_path, capsys):
    pixels = np.full((*shape, 3), 128, dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "odd.png")
    with pytest.raises(ValueError, match=message) as info:
        tiny_pipeline().encode([tmp_path / "odd.png"])
    assert "\n" not in str(info.value)
    out = tmp_path / "out"
    code, _, err = run(["render", "--images", tmp_path / "odd.png", "--output-dir", out], capsys)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("lagernvs render: error: image 0")
    assert message in lines[0]
    assert not out.exists()


# ----------------------------------------------------------------------------- real scenes


def _through_every_source(written: Cameras, sources: torch.Tensor) -> None:
    """Each source pose (world frame) is one of the written cameras, to 1e-6."""
    gaps = (sources[:, None] - written.c2w[None]).abs().amax(dim=(-2, -1)).min(dim=1).values
    assert float(gaps.max()) < 1e-6, gaps


@pytest.mark.parametrize(
    ("scene", "options"),
    [
        ("fox", ["--ignore-distortion", "--views", 0, 30, 60]),
        ("beer_llff", ["--ignore-distortion", "--views", 0, 35, 70]),  # COLMAP (detected)
        ("beer_llff", ["--format", "llff", "--views", 0, 35, 70]),
    ],
)
def test_real_scenes_render_a_spline_through_the_chosen_views(
    scene, options, shared_data_dir, tmp_path, capsys
):
    folder = shared_data_dir / "real" / scene
    out = tmp_path / "out"
    code, _, err = run(
        ["render", "--scene", folder, *options, "--num-frames", 10, "--output-dir", out], capsys
    )
    assert code == 0, err
    written = json.loads((out / "cameras.json").read_text())
    assert "world frame of the input cameras" in written["frame"]
    cameras = Cameras.load(out / "cameras.json")
    assert len(cameras) == 10 and len(list((out / "frames").iterdir())) == 10
    views = [int(v) for v in options[options.index("--views") + 1 :]]
    fmt = options[options.index("--format") + 1] if "--format" in options else None
    _through_every_source(cameras, load_scene(folder, fmt).select(views).c2w)


def test_a_capture_in_two_formats_names_the_option_it_needs(shared_data_dir, tmp_path, capsys):
    folder = shared_data_dir / "real" / "beer_llff"
    code, _, err = run(["render", "--scene", folder, "--output-dir", tmp_path / "o"], capsys)
    assert code == 1 and "--ignore-distortion" in err and len(err.strip().splitlines()) == 1


def test_two_photos_without_cameras_render_unposed(photos, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(
        ["render", "--images", *photos, "--num-frames", 6, "--output-dir", out], capsys
    )
    assert code == 0, err
    fallback = [line for line in stdout.splitlines() if "no --vggt-weights" in line]
    assert len(fallback) == 1 and "unposed" in fallback[0] and "--path orbit" in fallback[0]
    assert (out / "video.mp4").stat().st_size > 0
    written = json.loads((out / "cameras.json").read_text())
    assert "first photo's camera" in written["frame"] and len(written["c2w"]) == 6
    assert not (out / "source_cameras.json").exists()


# ----------------------------------------------------------------------------- estimation


def test_estimate_in_the_pipeline_is_the_estimators_cameras_used_as_posed(photos):
    estimator = tiny_estimator()
    pipe = tiny_pipeline()
    pipe.register_modules(camera_estimator=estimator)
    frames = load_images(photos)
    expected = estimator.estimate_cameras(torch.stack(frames))
    scene = pipe.encode(photos, source_cameras="estimate")
    posed = pipe.encode(photos, source_cameras=expected)
    assert torch.equal(scene.scene_tokens, posed.scene_tokens)
    torch.testing.assert_close(scene.source_cameras.c2w, expected.c2w, check_dtype=False)
    targets = expected[1:].crop_resize((32, 32))
    called = pipe(photos, "estimate", target_cameras=targets, output_type="pt").images
    assert torch.equal(called, pipe.render(posed, targets).images)


def test_two_photos_with_vggt_weights_follow_the_estimated_cameras(
    photos, tmp_path, monkeypatch, capsys
):
    estimator = save_tiny_vggt(tmp_path / "vggt.pt", monkeypatch)
    out = tmp_path / "out"
    code, stdout, err = run(
        ["render", "--images", *photos, "--vggt-weights", tmp_path / "vggt.pt",
         "--num-frames", 8, "--output-dir", out],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "no --vggt-weights" not in stdout and "rendered 8 frames" in stdout
    estimated = Cameras.load(out / "source_cameras.json")
    expected = estimator.estimate_cameras(torch.stack(load_images(photos)))
    assert estimated.image_size == (480, 640)
    torch.testing.assert_close(estimated.c2w, expected.c2w.double(), rtol=0, atol=1e-6)
    written = json.loads((out / "cameras.json").read_text())
    assert "VGGT estimated" in written["frame"]
    _through_every_source(Cameras.load(out / "cameras.json"), estimated.c2w)  # spline default
    assert (out / "video.mp4").stat().st_size > 0
    # The estimated cameras make the photos posed: rendering with them gives the same frames.
    code, _, err = run(
        ["render", "--images", *photos, "--cameras", out / "source_cameras.json",
         "--cameras-path", out / "cameras.json", "--output-dir", tmp_path / "again"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    for name in ("00000.png", "00005.png"):
        first = np.asarray(Image.open(out / "frames" / name))
        again = np.asarray(Image.open(tmp_path / "again" / "frames" / name))
        assert np.array_equal(first, again)
