"""LagerNVSPipeline on tiny random models: reference semantics, I/O types, save/load, errors."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch

from lagernvs import (
    Cameras,
    EncodedScene,
    LagerNVSModel,
    LagerNVSPipeline,
    LagerNVSPipelineOutput,
    LagerNVSScene,
)
from lagernvs.data.model_inputs import camera_problem
from lagernvs.data.preprocess import preprocess_views
from lagernvs.data.synthetic import render_synthetic_scene

SIZE = (32, 32)


def tiny_model(seed: int = 0, **overrides) -> LagerNVSModel:
    """A tiny model whose weights are perturbed so that every input path changes the output."""
    config = {"image_size": SIZE, "encoder_image_size": 56, **overrides}
    model = LagerNVSModel.from_preset("tiny", **config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def pipe() -> LagerNVSPipeline:
    pipe = LagerNVSPipeline(model=tiny_model())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def scene():
    """5 views (40x56) of a synthetic scene: views 0 and 4 are sources, 1-3 targets."""
    render = render_synthetic_scene(7, num_frames=5, height=40, width=56, trajectory="arc")
    cameras = Cameras(render.c2w, render.fxfycxcy, (40, 56))
    return render.images, cameras


def reference_render(pipe, images, cameras, sources, targets, zero_cond_cameras=False):
    """The model's reference forward pass on preprocess_views inputs (the fixture contract)."""
    order = list(sources) + list(targets)
    sample = preprocess_views(
        list(images[order]),
        cameras.c2w[order],
        cameras.fxfycxcy[order],
        SIZE,
        num_cond_views=len(sources),
        zero_cond_cameras=zero_cond_cameras,
    )
    with torch.no_grad():
        out = pipe.model(
            sample["images"][None], sample["rays"][None], sample["cam_tokens"][None], len(sources)
        )
    return out[0, len(sources) :], sample


def test_posed_call_matches_the_reference_forward_pass(pipe, scene):
    images, cameras = scene
    expected, _ = reference_render(pipe, images, cameras, [0, 4], [1, 2, 3])
    out = pipe(images[[0, 4]], cameras[[0, 4]], target_cameras=cameras[[1, 2, 3]], output_type="pt")
    torch.testing.assert_close(out.images, expected, atol=1e-5, rtol=0)
    assert out.cameras.image_size == SIZE
    torch.testing.assert_close(out.cameras.c2w, cameras.c2w[[1, 2, 3]])


def test_unposed_call_matches_the_reference_with_zeroed_cameras(pipe, scene):
    images, cameras = scene
    expected, sample = reference_render(pipe, images, cameras, [0, 4], [1, 2], True)
    # Unposed targets live in the first source camera's frame at the normalised scale.
    targets = Cameras(sample["c2w"][2:], sample["fxfycxcy"][2:], SIZE)
    out = pipe(images[[0, 4]], target_cameras=targets, output_type="pt")
    torch.testing.assert_close(out.images, expected, atol=1e-5, rtol=0)
    posed = pipe(images[[0, 4]], cameras[[0, 4]], target_cameras=cameras[[1, 2]], output_type="pt")
    assert (posed.images - out.images).abs().max() > 1e-3  # camera information is used


def test_single_source_view_posed_and_unposed(pipe, scene):
    images, cameras = scene
    expected, _ = reference_render(pipe, images, cameras, [2], [1, 3])
    out = pipe(images[2], cameras[2], target_cameras=cameras[[1, 3]], output_type="pt")
    torch.testing.assert_close(out.images, expected, atol=1e-5, rtol=0)


def test_encode_then_render_equals_call_and_chunking_does_not_matter(pipe, scene):
    images, cameras = scene
    targets = cameras[[1, 2, 3]]
    called = pipe(images[[0, 4]], cameras[[0, 4]], target_cameras=targets, output_type="pt")
    encoded = pipe.encode(images[[0, 4]], cameras[[0, 4]])
    assert encoded.posed and encoded.num_views == 2
    rendered = pipe.render(encoded, targets, chunk_size=1)
    torch.testing.assert_close(rendered.images, called.images, atol=1e-6, rtol=0)
    again = pipe.render(encoded, targets[1:2])  # per-frame rendering as a viewer does
    torch.testing.assert_close(again.images[0], called.images[1], atol=1e-6, rtol=0)


def test_output_is_deterministic(pipe, scene):
    images, cameras = scene
    first = pipe(images[[0, 4]], cameras[[0, 4]], target_cameras=cameras[1:4], output_type="pt")
    second = pipe(images[[0, 4]], cameras[[0, 4]], target_cameras=cameras[1:4], output_type="pt")
    assert torch.equal(first.images, second.images)


def test_output_types_and_return_dict(pipe, scene):
    images, cameras = scene
    kwargs = {"target_cameras": cameras[[1, 2]]}
    pt = pipe(images[[0, 4]], cameras[[0, 4]], output_type="pt", **kwargs).images
    arr = pipe(images[[0, 4]], cameras[[0, 4]], output_type="np", **kwargs).images
    pil = pipe(images[[0, 4]], cameras[[0, 4]], **kwargs).images
    assert pt.shape == (2, 3, *SIZE) and pt.dtype == torch.float32
    assert arr.shape == (2, *SIZE, 3) and arr.dtype == np.float32
    np.testing.assert_allclose(arr, pt.permute(0, 2, 3, 1).numpy())
    assert len(pil) == 2 and isinstance(pil[0], PIL.Image.Image) and pil[0].size == SIZE[::-1]
    np.testing.assert_array_equal(np.asarray(pil[1]), (arr[1] * 255).round().astype(np.uint8))
    images_out, cams_out = pipe(images[[0, 4]], cameras[[0, 4]], return_dict=False, **kwargs)
    assert isinstance(cams_out, Cameras) and len(images_out) == 2
    out = pipe(images[[0, 4]], cameras[[0, 4]], height=16, width=24, output_type="pt", **kwargs)
    assert isinstance(out, LagerNVSPipelineOutput) and out.images.shape == (2, 3, 16, 24)
    assert out.cameras.image_size == (16, 24)


def test_pil_numpy_tensor_and_file_inputs_agree(pipe, scene, tmp_path):
    images, cameras = scene
    pixels = (images[[0, 4]].permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    quantised = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    paths = []
    for index, array in enumerate(pixels):
        paths.append(tmp_path / f"{index}.png")
        PIL.Image.fromarray(array).save(paths[-1])
    inputs = [
        quantised,
        list(pixels),
        pixels,
        [PIL.Image.fromarray(a) for a in pixels],
        paths,
        [str(p) for p in paths],
        torch.from_numpy(pixels).permute(0, 3, 1, 2),
        [p.read_bytes() for p in paths],
    ]
    outputs = [
        pipe(x, cameras[[0, 4]], target_cameras=cameras[2], output_type="pt").images for x in inputs
    ]
    for output in outputs[1:]:
        torch.testing.assert_close(output, outputs[0], atol=1e-6, rtol=0)


def test_save_pretrained_round_trip_renders_identical_images(pipe, scene, tmp_path):
    images, cameras = scene
    pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["_class_name"] == "LagerNVSPipeline"
    assert index["model"][1] == "LagerNVSModel" and index["denoiser"] == [None, None]
    assert (tmp_path / "saved" / "model" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = LagerNVSPipeline.from_pretrained(tmp_path / "saved", local_files_only=True)
    loaded.set_progress_bar_config(disable=True)
    for key, value in pipe.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    kwargs = {"target_cameras": cameras[1:4], "output_type": "pt"}
    before = pipe(images[[0, 4]], cameras[[0, 4]], **kwargs).images
    after = loaded(images[[0, 4]], cameras[[0, 4]], **kwargs).images
    assert torch.equal(before, after)
    for name in ("dtype", "torch_dtype"):  # diffusers accepts both spellings
        half = LagerNVSPipeline.from_pretrained(tmp_path / "saved", **{name: torch.bfloat16})
        assert half.model.dtype == torch.bfloat16


def test_from_original_checkpoint_loads_the_official_layout(pipe, scene, tmp_path):
    images, cameras = scene
    model = tiny_model(seed=3, attention_type="cross_attention")
    state = {key: value.clone() for key, value in model.state_dict().items()}
    state["renderer.per_view_register_tokens"] = state["renderer.per_view_register_tokens"].to(
        torch.bfloat16
    )  # stored in bfloat16 by the reference
    torch.save({"model": state}, tmp_path / "model.pt")
    loaded = LagerNVSPipeline.from_original_checkpoint(
        tmp_path / "model.pt",
        "tiny",
        image_size=SIZE,
        encoder_image_size=56,
        attention_type="cross_attention",
    )
    loaded.set_progress_bar_config(disable=True)
    reference = LagerNVSPipeline(model=model)
    reference.model.renderer.per_view_register_tokens.data = state[
        "renderer.per_view_register_tokens"
    ].float()
    kwargs = {"target_cameras": cameras[1:3], "output_type": "pt"}
    torch.testing.assert_close(
        loaded(images[[0, 4]], cameras[[0, 4]], **kwargs).images,
        reference(images[[0, 4]], cameras[[0, 4]], **kwargs).images,
        atol=1e-6,
        rtol=0,
    )


def test_progress_bar_follows_set_progress_bar_config(scene, capsys):
    images, cameras = scene
    quiet = LagerNVSPipeline(model=tiny_model())
    quiet.set_progress_bar_config(disable=True)
    quiet(images[[0, 4]], cameras[[0, 4]], target_cameras=cameras[:4], chunk_size=2)
    assert "it/s" not in capsys.readouterr().err
    loud = LagerNVSPipeline(model=tiny_model())
    loud.set_progress_bar_config(desc="frames")
    loud(images[[0, 4]], cameras[[0, 4]], target_cameras=cameras[:4], chunk_size=2)
    assert "frames" in capsys.readouterr().err


def test_clear_errors_for_bad_inputs(pipe, scene, tmp_path):
    images, cameras = scene
    target = {"target_cameras": cameras[1]}
    with pytest.raises(ValueError, match="mixed sizes"):
        pipe([images[0], images[1, :, :32, :32]], **target)
    with pytest.raises(ValueError, match="got 3 source cameras for 2 images"):
        pipe(images[[0, 4]], cameras[:3], **target)
    with pytest.raises(ValueError, match="is for a 40x56 image but image 1 is 32x32"):
        pipe([images[0], images[1, :, :32, :32]], cameras[:2], **target)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot decode image"):
        pipe([tmp_path / "broken.png"], **target)
    with pytest.raises(FileNotFoundError):
        pipe([tmp_path / "missing.png"], **target)
    bad_pose = cameras.c2w[[0, 4]].clone()
    bad_pose[1, 0, 3] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        Cameras(bad_pose, cameras.fxfycxcy[[0, 4]], (40, 56))
    nan_images = images[[0, 4]].clone()
    nan_images[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        pipe(nan_images, **target)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        pipe(images[[0, 4]] * 255, **target)
    with pytest.raises(ValueError, match="same position"):
        pipe(images[[0, 4]], cameras[[0, 0]], **target)
    with pytest.raises(ValueError, match="mode='sampled' needs the diffusion decoder"):
        pipe(images[[0, 4]], mode="sampled", **target)
    with pytest.raises(ValueError, match="output_type"):
        pipe(images[[0, 4]], output_type="jpg", **target)
    with pytest.raises(ValueError, match="multiples of the model's patch size"):
        pipe(images[[0, 4]], height=20, **target)
    with pytest.raises(ValueError, match="target_cameras must be lagernvs.Cameras"):
        pipe(images[[0, 4]], target_cameras=cameras.c2w)
    with pytest.raises(ValueError, match="one scene per call"):
        pipe(images[None], **target)
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        pipe(images[[0, 4]], generator=123, **target)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        pipe(images[[0, 4]], chunk_size=0, **target)
    with pytest.raises(ValueError, match="height must be an int"):
        pipe(images[[0, 4]], height="32", **target)
    with pytest.raises(ValueError, match="mode must be one of"):
        pipe(images[[0, 4]], mode="fast", **target)
    with pytest.raises(ValueError, match="scene must come from pipe.encode"):
        pipe.render(images, cameras[1])
    other = LagerNVSPipeline(model=tiny_model(renderer_width=48, renderer_heads=4))
    with pytest.raises(ValueError, match="scene_tokens must be a 4-d tensor"):
        pipe.render(other.encode(images[[0, 4]]), cameras[1])


def test_every_entry_point_checks_its_inputs_once(pipe, scene, monkeypatch):
    images, cameras = scene
    calls = []
    check = LagerNVSPipeline.check_inputs
    monkeypatch.setattr(
        pipe, "check_inputs", lambda *a, **k: calls.append(1) or check(pipe, *a, **k)
    )
    pipe(images[[0, 4]], cameras[[0, 4]], target_cameras=cameras[1:3])
    assert len(calls) == 1
    encoded = pipe.encode(images[[0, 4]], cameras[[0, 4]])
    pipe.render(encoded, cameras[1:3])
    assert len(calls) == 3


def test_encoded_scene_lives_in_the_data_pipelines_model_frame(pipe, scene):
    """The pipeline and preprocess_views share one path: the same normalised target poses."""
    images, cameras = scene
    encoded = pipe.encode(images[[0, 4]], cameras[[0, 4]])
    assert isinstance(encoded, EncodedScene) and LagerNVSScene is EncodedScene
    _, sample = reference_render(pipe, images, cameras, [0, 4], [1, 2, 3])
    model_frame = encoded.model_frame(cameras[[1, 2, 3]])
    assert model_frame.dtype == torch.float32
    torch.testing.assert_close(model_frame, sample["c2w"][2:], atol=1e-6, rtol=0)
    assert encoded.scene_scale == pytest.approx(float(sample["scene_scale"]), rel=1e-6)
    torch.testing.assert_close(encoded.source_images, sample["images"][:2], atol=0, rtol=0)
    torch.testing.assert_close(encoded.source_cameras.fxfycxcy, sample["fxfycxcy"][:2])


def test_one_degenerate_camera_rule_for_pipeline_and_data(pipe, scene):
    """Sources at (nearly) one position: the data pipeline marks the sample invalid and the
    pipeline refuses it, with the same message."""
    images, cameras = scene
    c2w = cameras.c2w[[0, 4, 2]].clone()
    c2w[1, :3, 3] = c2w[0, :3, 3] + 1e-9  # below float32 resolution of the coordinates
    near = Cameras(c2w, cameras.fxfycxcy[[0, 4, 2]], (40, 56))
    message = camera_problem(near.c2w[:2], 2)
    assert message is not None and "same position" in message
    sample = preprocess_views(list(images[[0, 4, 2]]), near.c2w, near.fxfycxcy, SIZE, 2)
    assert not bool(sample["is_valid"])
    with pytest.raises(ValueError) as info:
        pipe(images[[0, 4]], near[:2], target_cameras=near[2])
    assert str(info.value) == message
    apart = preprocess_views(list(images[[0, 4, 2]]), cameras.c2w[[0, 4, 2]],
                             cameras.fxfycxcy[[0, 4, 2]], SIZE, 2)  # fmt: skip
    assert bool(apart["is_valid"]) and camera_problem(cameras.c2w[[0, 4]], 2) is None
