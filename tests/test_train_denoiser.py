"""Denoiser fine-tuning: objective weighting, frozen encoder, configs, a tiny CPU run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lagernvs.data.preprocess import preprocess_views
from lagernvs.data.synthetic import render_synthetic_scene
from lagernvs.diffusion import DenoisingRenderer
from lagernvs.diffusion.objective import noise_scales
from lagernvs.models import LagerNVSModel
from lagernvs.training.diffusion_loss import DiffusionLoss, ObjectiveConfig
from lagernvs.training.train_denoiser import DenoiserBatchLoss, load_denoiser_config, main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "train"
HW = 32


class RecordingDenoiser(nn.Module):
    """Returns a fixed prediction and records what the loss fed it."""

    def __init__(self, prediction: torch.Tensor) -> None:
        super().__init__()
        self.prediction = prediction
        self.calls: list[dict] = []

    def forward(self, noisy, timesteps, rays, scene, drop_scene=None):
        self.calls.append({"noisy": noisy, "timesteps": timesteps, "drop": drop_scene})
        return self.prediction


def targets(batch: int = 3, views: int = 2) -> torch.Tensor:
    return torch.rand(batch, views, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def run_loss(config: ObjectiveConfig, images: torch.Tensor, prediction: torch.Tensor, train=False):
    stub = RecordingDenoiser(prediction)
    loss = DiffusionLoss(config).train(train)
    rays = torch.zeros(*images.shape[:2], 6, 8, 8)
    generator = torch.Generator().manual_seed(1)
    return loss(stub, torch.zeros(images.shape[0], 1, 4, 32), rays, images, generator), stub, loss


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon", "v_prediction", "flow"])
def test_loss_equals_the_objective_in_its_own_parameterisation(prediction_type: str) -> None:
    """x0-space weights reproduce each objective's own MSE: eps, v or flow velocity."""
    images = targets()
    x0 = images * 2 - 1
    prediction = torch.rand_like(x0) * 2 - 1
    config = ObjectiveConfig(prediction_type=prediction_type, loss_weighting="none")
    out, stub, loss = run_loss(config, images, prediction)
    noisy, timesteps = stub.calls[0]["noisy"], stub.calls[0]["timesteps"]
    alpha, sigma = (s[..., None, None, None] for s in noise_scales(loss.scheduler, timesteps))
    eps, eps_hat = (noisy - alpha * x0) / sigma, (noisy - alpha * prediction) / sigma
    own = {
        "sample": (prediction, x0),
        "epsilon": (eps_hat, eps),
        "v_prediction": (alpha * eps_hat - sigma * prediction, alpha * eps - sigma * x0),
        "flow": (eps_hat - prediction, eps - x0),
    }[prediction_type]
    expected = (own[0] - own[1]).square().mean()
    torch.testing.assert_close(out["diffusion"], expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out["x0_mse"], (prediction - x0).square().mean())
    torch.testing.assert_close(out["prediction"], (prediction + 1) / 2)
    assert stub.calls[0]["drop"] is None  # no scene dropout outside training


def test_min_snr_weights_are_capped_snr() -> None:
    images = targets()
    prediction = torch.zeros_like(images)
    config = ObjectiveConfig(loss_weighting="min_snr", min_snr_gamma=2.0)
    out, stub, loss = run_loss(config, images, prediction)
    alpha, sigma = noise_scales(loss.scheduler, stub.calls[0]["timesteps"])
    weights = (alpha.square() / sigma.square()).clamp(max=2.0)
    squared = (prediction - (images * 2 - 1)).square().flatten(2).mean(-1)
    torch.testing.assert_close(out["total"], (weights * squared).mean())


def test_scene_dropout_in_training_and_the_perceptual_term() -> None:
    images = torch.rand(4, 1, 3, 16, 16)
    config = ObjectiveConfig(
        cond_drop_prob=0.5, perceptual_weight=0.5, perceptual_random_features=True
    )
    out, stub, _ = run_loss(config, images, torch.zeros_like(images), train=True)
    drop = stub.calls[0]["drop"]
    assert drop.dtype == torch.bool and drop.shape == (4,)
    torch.testing.assert_close(out["total"], out["diffusion"] + 0.5 * out["perceptual"])


def synthetic_batch(seeds=(3, 4), num_cond: int = 2) -> dict:
    """Two synthetic scenes: 2 context views, 2 targets (one beyond the context span)."""
    samples = []
    for seed in seeds:
        render = render_synthetic_scene(seed, num_frames=6, height=HW, width=HW)
        order = [1, 3, 2, 5]
        samples.append(
            preprocess_views(
                list(render.images[order]),
                render.c2w[order],
                render.fxfycxcy[order],
                (HW, HW),
                num_cond_views=num_cond,
            )
        )
    batch = {k: torch.stack([s[k] for s in samples]) for k in ("images", "rays", "cam_tokens")}
    return {**batch, "num_cond_views": num_cond}


def tiny_model() -> LagerNVSModel:
    torch.manual_seed(0)
    model = LagerNVSModel.from_preset("tiny", attention_type="cross_attention").eval()
    torch.nn.init.normal_(model.renderer.final_layer.linear.weight, std=0.1)
    return model


def test_encoder_is_frozen_and_scene_tokens_carry_no_gradient() -> None:
    model = tiny_model().requires_grad_(False)
    denoiser = DenoisingRenderer.from_renderer(model)
    compute = DenoiserBatchLoss(model, DiffusionLoss(ObjectiveConfig()))
    out = compute(denoiser.train(), synthetic_batch())
    out["total"].backward()
    assert all(p.grad is None for p in model.parameters())
    assert denoiser.noisy_embedder.proj.weight.grad.abs().sum() > 0
    with torch.no_grad():  # validation draws are the same at every evaluation
        first = compute(denoiser.eval(), synthetic_batch())["total"]
        torch.testing.assert_close(compute(denoiser, synthetic_batch())["total"], first)


@pytest.mark.parametrize(
    "name", ["denoiser_tiny", "denoiser_demo", "denoiser_demo_finetune", "denoiser_re10k"]
)
def test_shipped_configs_load(name: str) -> None:
    config = load_denoiser_config(CONFIGS / f"{name}.yaml")
    assert config.objective.prediction_type == "sample"
    if name == "denoiser_re10k":
        assert config.loop.max_steps == 60_000 and config.model.checkpoint is not None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("objective.prediction_type=score", "objective.prediction_type"),
        ("objective.cond_drop_prob=1.0", "objective.cond_drop_prob"),
        ("objective.min_snr_gamma=0", "objective.min_snr_gamma"),
        ("denoiser.timestep_channels=3", "denoiser.timestep_channels"),
        ("model.vggt_weights=vggt.pt", "model.vggt_weights"),
        ("objective.sigma=1", "objective.sigma"),
    ],
)
def test_bad_config_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_denoiser_config(CONFIGS / "denoiser_tiny.yaml", [override])


@pytest.mark.parametrize("prediction_type", ["sample", "flow"])
def test_timestep_sampling_follows_its_density(prediction_type: str) -> None:
    """uniform over the training steps, or diffusers' logit-normal density over the noise level
    (mean 1: most draws noisy, a few clean); the same generator, the same draws."""

    def draws(**options) -> torch.Tensor:
        config = ObjectiveConfig(prediction_type=prediction_type, **options)
        loss = DiffusionLoss(config)
        generator = torch.Generator().manual_seed(0)
        timesteps = loss.sample_timesteps((64, 64), torch.device("cpu"), generator)
        assert timesteps.shape == (64, 64)
        noise = noise_scales(loss.scheduler, timesteps)[1]  # sigma: the noise level
        return noise.flatten()

    uniform, skewed = draws(), draws(timestep_sampling="logit_normal", logit_mean=1.0)
    assert 0.45 < (uniform > uniform.median()).float().mean() <= 0.55
    # Uniform: a quarter of the draws in the noisiest quarter of the steps; logit-normal with
    # mean 1: P(sigmoid(N(1, 1)) > 0.75) = 0.43.
    quarter = uniform.quantile(0.75)
    assert 0.2 < (uniform > quarter).float().mean() < 0.3
    assert 0.38 < (skewed > quarter).float().mean() < 0.48
    torch.testing.assert_close(draws(timestep_sampling="logit_normal", logit_mean=1.0), skewed)


def test_fine_tuning_continues_a_saved_denoiser(tmp_path: Path) -> None:
    """``denoiser.checkpoint``: the run starts from a saved denoiser, which must fit the
    model's renderer and the objective; a missing folder fails before the run."""
    from lagernvs.training.train_denoiser import build_denoiser, run_denoiser_training

    model = tiny_model()
    saved = DenoisingRenderer.from_renderer(model, timestep_channels=16)
    torch.nn.init.normal_(saved.noisy_embedder.proj.weight)
    saved.save_pretrained(tmp_path / "denoiser")
    config = load_denoiser_config(
        CONFIGS / "denoiser_tiny.yaml", [f"denoiser.checkpoint={tmp_path / 'denoiser'}"]
    )
    started = build_denoiser(config, model)
    assert started.training and started.config.timestep_channels == 16
    for name, value in saved.state_dict().items():
        torch.testing.assert_close(started.state_dict()[name], value, rtol=0, atol=0)
    epsilon = load_denoiser_config(
        CONFIGS / "denoiser_tiny.yaml",
        [f"denoiser.checkpoint={tmp_path / 'denoiser'}", "objective.prediction_type=epsilon"],
    )
    with pytest.raises(ValueError, match="denoiser.checkpoint.*predicting 'sample'"):
        build_denoiser(epsilon, model)
    wider = LagerNVSModel.from_preset("tiny", attention_type="cross_attention", renderer_width=64)
    with pytest.raises(ValueError, match="fine-tune a denoiser of this model"):
        build_denoiser(config, wider)
    missing = load_denoiser_config(
        CONFIGS / "denoiser_tiny.yaml", [f"denoiser.checkpoint={tmp_path / 'nothing'}"]
    )
    with pytest.raises(FileNotFoundError, match="config key 'denoiser.checkpoint'"):
        run_denoiser_training(missing, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_training_loss_falls_on_a_tiny_cpu_run(tmp_path: Path) -> None:
    """Fine-tune from a save_pretrained folder; the frozen model is kept as it was, the
    pipeline folder loads, and the loss on fixed draws falls well below the initial one."""
    from lagernvs.pipeline import LagerNVSPipeline

    model = tiny_model()
    model.save_pretrained(tmp_path / "model")
    overrides = [
        f"model.checkpoint={tmp_path / 'model'}",
        "data.synthetic={train_scenes: 6, val_scenes: 2, num_frames: 8, image_size: 32}",
        "loop.max_steps=60",
        "loop.eval_every=0",
        "loop.image_every=0",
        "loop.checkpoint_every=60",
        "optim.lr=3e-3",
    ]
    config_file = tmp_path / "config.yaml"  # 32x32 views (a list entry: not a --set key)
    text = (CONFIGS / "denoiser_tiny.yaml").read_text().replace("long_side: 64", "long_side: 32")
    config_file.write_text(text)
    run_dir = tmp_path / "run"
    arguments = ["--config", str(config_file), "--output-dir", str(run_dir)]
    assert main([*arguments, *(f"--set={o}" for o in overrides)]) == 0

    pipe = LagerNVSPipeline.from_pretrained(run_dir / "pipeline")
    for name, value in model.state_dict().items():
        torch.testing.assert_close(pipe.model.state_dict()[name], value, rtol=0, atol=0)
    compute = DenoiserBatchLoss(model, DiffusionLoss(ObjectiveConfig()))
    batches = [synthetic_batch(seeds) for seeds in ((11, 12), (13, 14), (15, 16))]
    with torch.no_grad():
        before = DenoisingRenderer.from_renderer(model).eval()
        initial = sum(compute(before, b)["x0_mse"] for b in batches)
        final = sum(compute(pipe.denoiser.eval(), b)["x0_mse"] for b in batches)
    assert final < 0.7 * initial, (initial, final)
