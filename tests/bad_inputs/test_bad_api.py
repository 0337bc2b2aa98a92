"""Bad input to the Python API (`Cameras`, `load_pipeline`, `LagerNVSPipeline`, `pipe(...)`,
`pipe.encode`, `pipe.render`, `from_pretrained`): each raises its exception type with one line
naming the problem, before any work, and nothing is looked up on the Hugging Face Hub."""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from lagernvs import Cameras, LagerNVSModel, LagerNVSPipeline, load_pipeline
from lagernvs.diffusion import DenoisingRenderer

EYE = torch.eye(4)
K = [30.0, 30.0, 16.0, 16.0]


@pytest.fixture(scope="module")
def api(inputs) -> SimpleNamespace:
    """The tiny pipeline, one with a denoiser, a source image, target cameras, a scene."""
    pipe = load_pipeline(inputs["pipeline"])
    model = pipe.model
    sampled = LagerNVSPipeline(
        model=model,
        denoiser=DenoisingRenderer.from_renderer(model),
        scheduler=DDIMScheduler(num_train_timesteps=20),
    )
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    targets = Cameras.look_at([[0.1, 0.0, -0.2]], [[0.0, 0.0, 1.0]], image_size=(32, 32))
    scene = pipe.encode([image, image.flip(-1)])
    return SimpleNamespace(pipe=pipe, sampled=sampled, image=image, targets=targets, scene=scene)


def _call(api, images=None, **options):
    images = [api.image] if images is None else images
    return api.pipe(images, None, **{"target_cameras": api.targets, **options})


def _sample(api, **options):
    return api.sampled([api.image], None, target_cameras=api.targets, mode="sampled", **options)


# (id, call, exception type, message)
CASES = [
    ("string-in-fxfycxcy", lambda a, i: Cameras(EYE, [["a", 1, 2, 3]], (32, 32)), ValueError,
     "fxfycxcy must hold numbers"),
    ("string-as-c2w", lambda a, i: Cameras("identity", K, (32, 32)), ValueError,
     "c2w must hold numbers"),
    ("ragged-c2w", lambda a, i: Cameras([[1, 0], [0]], K, (32, 32)), ValueError,
     "rectangular array"),
    ("string-image-size", lambda a, i: Cameras(EYE, K, ("tall", "wide")), ValueError,
     "image_size must hold numbers"),
    ("negative-image-size", lambda a, i: Cameras(EYE, K, (-32, 32)), ValueError,
     "image sizes must be positive"),
    ("fractional-image-size", lambda a, i: Cameras(EYE, K, (31.5, 32)), ValueError,
     "whole pixel counts"),
    ("three-intrinsics", lambda a, i: Cameras(EYE, K[:3], (32, 32)), ValueError,
     "fxfycxcy must have shape"),
    ("nan-pose", lambda a, i: Cameras(EYE * float("nan"), K, (32, 32)), ValueError,
     "NaN or infinite"),
    ("negative-focal", lambda a, i: Cameras(EYE, [-30.0, 30.0, 16.0, 16.0], (32, 32)), ValueError,
     "focal lengths must be positive"),
    ("not-a-rotation", lambda a, i: Cameras(EYE * 2, K, (32, 32)), ValueError, "c2w"),
    ("look-at-itself", lambda a, i: Cameras.look_at([0, 0, 0], [0, 0, 0]), ValueError,
     "eye and target coincide"),
    ("zero-fov", lambda a, i: Cameras.look_at([0, 0, 0], [0, 0, 1], fov_deg=0), ValueError,
     "fov_deg must be in (0, 180)"),
    ("load-missing-cameras", lambda a, i: Cameras.load("/nope/cameras.json"), FileNotFoundError,
     "does not exist"),
    ("load-folder-as-cameras", lambda a, i: Cameras.load(i["a_folder"]), IsADirectoryError,
     "is a folder"),
    ("load-invalid-json", lambda a, i: Cameras.load(i["not_json.json"]), ValueError,
     "is not valid JSON"),
    ("load-string-intrinsics", lambda a, i: Cameras.load(i["string_intrinsics.json"]),
     ValueError, "'wide'"),
    ("load-pipeline-missing", lambda a, i: load_pipeline("nope"), FileNotFoundError,
     "model 'nope' does not exist"),
    ("load-pipeline-int", lambda a, i: load_pipeline(123), ValueError,
     "model must be a string or a path"),
    ("load-pipeline-bogus-device", lambda a, i: load_pipeline("demo", device="gpu"), ValueError,
     "unknown device 'gpu'"),
    ("load-pipeline-fewer-blocks", lambda a, i: load_pipeline(i["fewer_blocks"]), ValueError,
     "renderer_depth"),
    ("load-pipeline-nan", lambda a, i: load_pipeline(i["nan_pipeline"]), ValueError,
     "non-finite weights"),
    ("load-pipeline-wants-denoiser", lambda a, i: load_pipeline(i["pipeline"], with_denoiser=True),
     ValueError, "has no denoiser"),
    ("unknown-preset", lambda a, i: LagerNVSModel.from_preset("huge"), ValueError,
     "unknown model preset 'huge'"),
    ("original-nan", lambda a, i: LagerNVSPipeline.from_original_checkpoint(i["nan.pt"], "tiny"),
     ValueError, "non-finite weights"),
    ("generator-int", lambda a, i: _call(a, generator=123), ValueError,
     "generator must be a torch.Generator"),
    ("no-images", lambda a, i: _call(a, images=[]), ValueError, "no images given"),
    ("none-as-image", lambda a, i: _call(a, images=[None]), ValueError, "unsupported type"),
    ("1x1-image", lambda a, i: _call(a, images=[torch.rand(3, 1, 1)]), ValueError, "1x1 pixels"),
    ("4000x10-image", lambda a, i: _call(a, images=[np.zeros((4000, 10, 3), np.uint8)]),
     ValueError, "aspect ratio of 400:1"),
    ("nan-image", lambda a, i: _call(a, images=[torch.full((3, 32, 32), float("nan"))]),
     ValueError, "NaN or infinite"),
    ("8-bit-float-image", lambda a, i: _call(a, images=[a.image * 255]), ValueError,
     "must be in [0, 1]"),
    ("two-channel-image", lambda a, i: _call(a, images=[torch.rand(2, 32, 32)]), ValueError,
     "(3, H, W)"),
    ("missing-image-file", lambda a, i: _call(a, images=["/nope.png"]), FileNotFoundError,
     "does not exist"),
    ("folder-as-image", lambda a, i: _call(a, images=[str(i["a_folder"])]), IsADirectoryError,
     "is a folder"),
    ("targets-as-list", lambda a, i: _call(a, target_cameras=[EYE]), ValueError,
     "target_cameras must be lagernvs.Cameras"),
    ("height-off-grid", lambda a, i: _call(a, height=30), ValueError,
     "multiples of the model's patch size"),
    ("height-as-string", lambda a, i: _call(a, height="32"), ValueError, "height must be an int"),
    ("extreme-render-aspect", lambda a, i: _call(a, height=32 * 100, width=8), ValueError,
     "no centred crop"),
    ("unknown-output-type", lambda a, i: _call(a, output_type="jpg"), ValueError, "output_type"),
    ("unknown-mode", lambda a, i: _call(a, mode="magic"), ValueError, "mode must be one of"),
    ("sampled-without-denoiser", lambda a, i: _call(a, mode="sampled"), ValueError,
     "needs the diffusion decoder"),
    ("zero-chunk", lambda a, i: _call(a, chunk_size=0), ValueError, "chunk_size"),
    ("estimate-without-estimator", lambda a, i: a.pipe.encode([a.image], "estimate"),
     ValueError, "needs a camera estimator"),
    ("cameras-count", lambda a, i: a.pipe.encode([a.image, a.image], a.targets), ValueError,
     "got 1 source cameras for 2 images"),
    ("render-a-string", lambda a, i: a.pipe.render("scene", a.targets), ValueError,
     "scene must come from pipe.encode"),
    ("render-empty-targets", lambda a, i: a.pipe.render(a.scene, a.targets[:0]), ValueError,
     "target_cameras is empty"),
    ("zero-steps", lambda a, i: _sample(a, num_inference_steps=0), ValueError,
     "num_inference_steps must be an int >= 1"),
    ("negative-guidance", lambda a, i: _sample(a, guidance_scale=-1.0), ValueError,
     "guidance_scale"),
    ("zero-strength", lambda a, i: _sample(a, strength=0.0), ValueError, "strength must be in"),
    ("generator-count", lambda a, i: _sample(a, num_images_per_prompt=2,
     generator=[torch.Generator()]), ValueError, "got 1 generators for 2 samples"),
    ("both-sample-counts", lambda a, i: _sample(a, num_images_per_prompt=2, num_samples=3),
     ValueError, "num_samples is its former name"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_api_refuses(call, error, message, api, inputs):
    with pytest.raises(error) as info:
        call(api, inputs)
    text = str(info.value)
    assert message in text and "\n" not in text, text


@pytest.fixture
def no_network(monkeypatch) -> list[object]:
    """Record (and refuse) every attempt to resolve a host name."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("the test forbids network access")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.mark.parametrize("cls", [LagerNVSPipeline, LagerNVSModel])
def test_from_pretrained_of_a_missing_folder_says_so_without_the_hub(
    cls, no_network, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    with pytest.raises(FileNotFoundError, match="folder nope does not exist") as info:
        cls.from_pretrained("nope")
    assert time.monotonic() - started < 2 and not no_network, info.value
    assert "\n" not in str(info.value)
