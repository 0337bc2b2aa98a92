"""The one loader (`load_pipeline`): every kind of model spec, its one-line errors, and which
modules importing the lower layers pulls in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler

from lagernvs import Cameras, LagerNVSModel, LagerNVSPipeline, load_pipeline
from lagernvs.diffusion import DenoisingRenderer
from lagernvs.pipeline import resolve_device

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _model(seed: int) -> LagerNVSModel:
    torch.manual_seed(seed)
    return LagerNVSModel.from_preset("tiny").eval()


def _same_weights(pipe: LagerNVSPipeline, model: LagerNVSModel) -> bool:
    loaded = pipe.model.state_dict()
    return loaded.keys() == model.state_dict().keys() and all(
        torch.equal(loaded[key], value) for key, value in model.state_dict().items()
    )


@pytest.fixture(scope="module")
def model() -> LagerNVSModel:
    return _model(1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, model) -> dict[str, Path]:
    """What the commands write: a pipeline folder, a pipeline with a denoiser, a training run
    (RUN/model), a denoiser run (RUN/pipeline) and an official checkpoint."""
    root = tmp_path_factory.mktemp("specs")
    LagerNVSPipeline(model=model).save_pretrained(root / "pipeline")
    model.save_pretrained(root / "run" / "model")
    denoiser = DenoisingRenderer.from_renderer(model)
    scheduler = DDIMScheduler(num_train_timesteps=100)
    LagerNVSPipeline(model=model, denoiser=denoiser, scheduler=scheduler).save_pretrained(
        root / "denoiser_run" / "pipeline"
    )
    torch.save({"model": model.state_dict()}, root / "model.pt")
    (root / "empty").mkdir()
    (root / "other").mkdir()
    (root / "other" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    (root / "notes.txt").write_text("not a model")
    return {path.name: path for path in root.iterdir()} | {"root": root}


@pytest.mark.parametrize(
    "spec", ["pipeline", "run/model", "run", "denoiser_run", "denoiser_run/pipeline"]
)
def test_folders_load_the_saved_weights(spec, folders, model):
    pipe = load_pipeline(folders["root"] / spec)
    assert isinstance(pipe, LagerNVSPipeline) and _same_weights(pipe, model)
    assert not pipe.model.training and pipe.device == torch.device("cpu")
    assert (pipe.denoiser is not None) == spec.startswith("denoiser_run")


def test_denoiser_is_kept_required_or_dropped(folders):
    run = folders["denoiser_run"]
    assert type(load_pipeline(run, with_denoiser=True).denoiser) is DenoisingRenderer
    dropped = load_pipeline(run, with_denoiser=False)
    assert dropped.denoiser is None and dropped.scheduler is None
    with pytest.raises(ValueError, match="has no denoiser and scheduler"):
        load_pipeline(folders["run"], with_denoiser=True)


def test_official_checkpoint_with_its_preset(folders, model):
    pipe = load_pipeline(folders["model.pt"], preset="tiny")
    assert _same_weights(pipe, model)


def test_preset_spec_gives_random_weights_of_the_preset(model):
    pipe = load_pipeline("preset:tiny", device="auto")
    assert pipe.model.config.image_size == model.config.image_size
    assert pipe.device == resolve_device("auto")
    assert not _same_weights(pipe, model)


def test_demo_spec_is_the_bundled_model():
    deterministic = load_pipeline("demo", with_denoiser=False)
    assert deterministic.model.image_size == (64, 64) and deterministic.denoiser is None
    sampled = load_pipeline("demo", with_denoiser=True)
    assert type(sampled.denoiser) is DenoisingRenderer


@pytest.mark.parametrize(
    ("spec", "options", "error", "message"),
    [
        ("{root}/missing", {}, FileNotFoundError, "does not exist"),
        ("someone/some-hub-model", {}, FileNotFoundError, "does not exist"),  # no Hub lookup
        ("{root}/missing.pt", {"preset": "tiny"}, FileNotFoundError, "does not exist"),
        ("demo", {"preset": "tiny"}, ValueError, "a preset only applies"),
        ("{root}/pipeline", {"preset": "tiny"}, ValueError, "a preset only applies"),
        ("preset:tiny", {"preset": "tiny"}, ValueError, "a preset only applies"),
        ("{root}/model.pt", {}, ValueError, "name its preset"),
        ("{root}/model.pt", {"preset": "nope"}, ValueError, "unknown preset 'nope'"),
        ("{root}/notes.txt", {"preset": "tiny"}, ValueError, "not a readable checkpoint"),
        ("tiny", {}, ValueError, "spell random weights as 'preset:tiny'"),
        ("preset:nope", {}, ValueError, "unknown preset 'nope'"),
        ("{root}/empty", {}, FileNotFoundError, "not a saved pipeline or model"),
        ("{root}/other", {}, ValueError, "not a LagerNVSModel"),
        ("demo", {"device": "bogus"}, ValueError, "unknown device 'bogus'"),
        ("demo", {"device": "tpu"}, ValueError, "unknown device 'tpu'"),
        pytest.param(
            "demo", {"device": "cuda"}, ValueError, "CUDA is not available", marks=NO_CUDA
        ),
    ],
)
def test_bad_specs_are_refused_in_one_line(spec, options, error, message, folders):
    with pytest.raises(error, match=message) as info:
        load_pipeline(spec.format(root=folders["root"]), **options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("package", ["pipeline", "models", "cameras", "data"])
def test_lower_layers_import_no_upper_layer(package):
    """Importing a lower layer leaves training, evaluation, demo and cli out of sys.modules."""
    script = (
        f"import sys, lagernvs.{package}\n"
        "upper = ('training', 'evaluation', 'demo', 'cli')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
        "[['lagernvs', u] for u in upper]))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# ----------------------------------------------------------------------------- camera estimator


def _same_estimator(pipe: LagerNVSPipeline, estimator: torch.nn.Module) -> bool:
    loaded = pipe.camera_estimator.state_dict()
    return loaded.keys() == estimator.state_dict().keys() and all(
        torch.equal(loaded[key], value) for key, value in estimator.state_dict().items()
    )


def test_vggt_weights_attach_an_estimator_that_save_and_load_keep(folders, tmp_path, monkeypatch):
    from tiny_vggt import save_tiny_vggt

    from lagernvs.models import VGGTCameraEstimator

    estimator = save_tiny_vggt(tmp_path / "vggt.pt", monkeypatch)
    pipe = load_pipeline(folders["pipeline"], vggt_weights=tmp_path / "vggt.pt")
    assert isinstance(pipe.camera_estimator, VGGTCameraEstimator) and _same_estimator(
        pipe, estimator
    )
    assert load_pipeline(folders["pipeline"]).camera_estimator is None  # only when asked
    pipe.save_pretrained(tmp_path / "with_vggt")
    index = json.loads((tmp_path / "with_vggt" / "model_index.json").read_text())
    assert index["camera_estimator"] == ["lagernvs.models.camera_estimator", "VGGTCameraEstimator"]
    reloaded = load_pipeline(tmp_path / "with_vggt", with_denoiser=False)
    assert _same_estimator(reloaded, estimator) and _same_weights(reloaded, pipe.model)
    # Saving a pipeline without one keeps the folder loadable as before.
    load_pipeline(folders["pipeline"]).save_pretrained(tmp_path / "without")
    assert load_pipeline(tmp_path / "without").camera_estimator is None


@pytest.mark.parametrize(
    ("weights", "error", "message"),
    [
        ("{root}", IsADirectoryError, "is a folder; give the checkpoint file itself"),
        ("{root}/missing.pt", FileNotFoundError, "do not exist"),
    ],
)
def test_bad_vggt_weights_are_refused_before_the_model_loads(weights, error, message, folders):
    with pytest.raises(error, match=message) as info:
        load_pipeline(folders["root"] / "no-such-model", vggt_weights=weights.format(**folders))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("cameras", "message"),
    [
        ("estimate", "source_cameras='estimate' needs a camera estimator.*vggt_weights="),
        ("estimated", "source_cameras must be Cameras, a Scene, None .*or 'estimate'"),
    ],
)
def test_estimate_without_an_estimator_is_one_line(cameras, message, folders):
    pipe = load_pipeline(folders["pipeline"])
    images = torch.rand(2, 3, 32, 32)
    for call in (
        lambda: pipe.encode(images, cameras),
        lambda: pipe(
            images,
            cameras,
            target_cameras=Cameras.look_at([0, 0, 0], [0, 0, 1], image_size=(64, 64)),
        ),
    ):
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
