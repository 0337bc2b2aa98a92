"""DenoisingRenderer: identity at initialisation, new parameters, null scene, save/load."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lagernvs.diffusion import DenoisingRenderer
from lagernvs.models import ATTENTION_TYPES, LagerNVSModel

B, T, V, NP, HW = 2, 3, 2, 9, 16


def tiny_model(attention_type: str) -> LagerNVSModel:
    """A tiny model whose output layer is random (the training init renders uniform grey)."""
    torch.manual_seed(0)
    model = LagerNVSModel.from_preset("tiny", attention_type=attention_type).eval()
    torch.nn.init.normal_(model.renderer.final_layer.linear.weight, std=0.5)
    return model


def inputs(width: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    scene = torch.randn(B, V, NP, width, generator=generator)
    rays = torch.randn(B, T, 6, HW, HW, generator=generator)
    return scene, rays


def perturb(denoiser: DenoisingRenderer, std: float = 0.05) -> DenoisingRenderer:
    """Move the zero-initialised parameters away from zero, as training does."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in denoiser.named_parameters():
            if not name.startswith("renderer."):
                param.add_(torch.randn(param.shape, generator=generator) * std)
    return denoiser


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_identity_at_init(attention_type: str) -> None:
    model = tiny_model(attention_type)
    denoiser = DenoisingRenderer.from_renderer(model).eval()
    scene, rays = inputs(model.config.renderer_width)
    with torch.no_grad():
        render = model.render(scene, rays)
        assert render.std() > 0.05  # a non-trivial render
        for seed, timesteps in [(2, 999), (3, torch.tensor([0, 500])), (4, torch.rand(B, T) * 999)]:
            noisy = torch.randn(B, T, 3, HW, HW, generator=torch.Generator().manual_seed(seed))
            x0 = denoiser(noisy * 3, timesteps, rays, scene)
            torch.testing.assert_close((x0 + 1) / 2, render, atol=1e-6, rtol=0)


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_new_parameters_learn_from_the_first_step(attention_type: str) -> None:
    """Zero init must not block gradients: all new parameters get one, the copy of the
    pretrained renderer too; after a step the prediction depends on the noisy image."""
    model = tiny_model(attention_type)
    denoiser = DenoisingRenderer.from_renderer(model)
    scene, rays = inputs(model.config.renderer_width)
    noisy = torch.randn(B, T, 3, HW, HW)
    denoiser(noisy, 300, rays, scene).square().mean().backward()
    for name in (
        "noisy_embedder.proj.weight",
        "block_modulations.0.1.weight",
        "final_modulation.1.weight",
        "renderer.tgt_embedder.proj.weight",
    ):
        grad = denoiser.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    perturb(denoiser)
    with torch.no_grad():
        a = denoiser(noisy, 300, rays, scene)
        b = denoiser(torch.randn(B, T, 3, HW, HW), 300, rays, scene)
    assert (a - b).abs().mean() > 1e-3


def test_from_renderer_copies_weights_and_accepts_the_renderer_itself() -> None:
    model = tiny_model("cross_attention")
    denoiser = DenoisingRenderer.from_renderer(model.renderer, timestep_channels=32)
    assert denoiser.config.attention_type == "cross_attention"
    assert denoiser.config.width == model.config.renderer_width
    assert denoiser.config.depth == model.config.renderer_depth
    for name, value in model.renderer.state_dict().items():
        torch.testing.assert_close(denoiser.renderer.state_dict()[name], value, rtol=0, atol=0)
    model.renderer.tgt_norm.weight.data.fill_(3.0)  # a copy, not shared storage
    assert not torch.equal(denoiser.renderer.tgt_norm.weight, model.renderer.tgt_norm.weight)


def test_null_scene_replaces_dropped_samples_only() -> None:
    model = tiny_model("full_attention")
    denoiser = perturb(DenoisingRenderer.from_renderer(model)).eval()
    scene, rays = inputs(model.config.renderer_width)
    noisy = torch.randn(B, T, 3, HW, HW)
    with torch.no_grad():
        conditional = denoiser(noisy, 400, rays, scene)
        unconditional = denoiser(noisy, 400, rays, scene, drop_scene=True)
        mixed = denoiser(noisy, 400, rays, scene, drop_scene=torch.tensor([True, False]))
        other_scene = denoiser(noisy, 400, rays, torch.randn_like(scene), drop_scene=True)
    torch.testing.assert_close(mixed[0], unconditional[0])
    torch.testing.assert_close(mixed[1], conditional[1])
    torch.testing.assert_close(other_scene, unconditional)  # the scene is ignored when dropped
    assert (conditional - unconditional).abs().mean() > 1e-3


def test_save_and_load_roundtrip(tmp_path) -> None:
    model = tiny_model("bidirectional_cross_attention")
    denoiser = perturb(DenoisingRenderer.from_renderer(model, objective="v_prediction")).eval()
    denoiser.save_pretrained(tmp_path)
    loaded = DenoisingRenderer.from_pretrained(tmp_path).eval()
    assert loaded.config.objective == "v_prediction"
    scene, rays = inputs(model.config.renderer_width)
    noisy = torch.randn(B, T, 3, HW, HW)
    with torch.no_grad():
        torch.testing.assert_close(loaded(noisy, 10, rays, scene), denoiser(noisy, 10, rays, scene))


def test_copies_use_their_own_conditioning() -> None:
    """A deep copy shares no state with its original (EMA copies, pipeline copies)."""
    model = tiny_model("cross_attention")
    denoiser = perturb(DenoisingRenderer.from_renderer(model)).eval()
    twin = perturb(copy.deepcopy(denoiser))
    scene, rays = inputs(model.config.renderer_width)
    noisy = torch.randn(B, T, 3, HW, HW)
    with torch.no_grad():
        expected = denoiser(noisy, 10, rays, scene)
        twin(noisy, 700, rays, scene)
        again = denoiser(noisy, 10, rays, denoiser.prepare_scene(scene))
    torch.testing.assert_close(again, expected)


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_a_prepared_scene_gives_the_same_prediction(attention_type: str) -> None:
    model = tiny_model(attention_type)
    denoiser = perturb(DenoisingRenderer.from_renderer(model)).eval()
    scene, rays = inputs(model.config.renderer_width)
    noisy = torch.randn(B, T, 3, HW, HW)
    with torch.no_grad():
        prepared = denoiser.prepare_scene(scene)
        null = denoiser.prepare_scene(scene, drop_scene=True)
        torch.testing.assert_close(
            denoiser(noisy, 30, rays, prepared), denoiser(noisy, 30, rays, scene), atol=0, rtol=0
        )
        torch.testing.assert_close(
            denoiser(noisy, 30, rays, null),
            denoiser(noisy, 30, rays, scene, drop_scene=True),
            atol=0,
            rtol=0,
        )


def test_modulation_rows_follow_the_block_modules() -> None:
    """Each block's modulation covers its LayerNorms except the scene-side norm2_kv, in module
    order, then its attentions' and MLPs' outputs: the layout saved denoisers were trained with."""
    from lagernvs.models.layers import Mlp
    from lagernvs.models.renderer import RendererAttention

    for attention_type in ATTENTION_TYPES:
        denoiser = DenoisingRenderer.from_renderer(tiny_model(attention_type))
        blocks = denoiser.renderer.renderer_core.renderer_blocks
        for block, layer in zip(blocks, denoiser.block_modulations, strict=True):
            names = dict(block.named_modules())
            norms = [n for n, m in names.items() if isinstance(m, torch.nn.LayerNorm)]
            attentions = [n for n, m in names.items() if isinstance(m, RendererAttention)]
            mlps = [n for n, m in names.items() if isinstance(m, Mlp)]
            assert list(block.MODULATED_NORMS) == [n for n in norms if n != "norm2_kv"]
            assert list(block.GATED_BRANCHES) == attentions + mlps
            rows = 2 * len(block.MODULATED_NORMS) + len(block.GATED_BRANCHES)
            assert layer[1].out_features == rows * denoiser.config.width


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_gradient_checkpointing_gives_the_same_gradients(attention_type: str) -> None:
    model = tiny_model(attention_type)
    denoiser = perturb(DenoisingRenderer.from_renderer(model))
    scene, rays = inputs(model.config.renderer_width)
    noisy, timesteps = torch.randn(B, T, 3, HW, HW), torch.tensor([20, 800])

    def gradients() -> dict[str, torch.Tensor]:
        denoiser.zero_grad()
        denoiser(noisy, timesteps, rays, scene).square().mean().backward()
        return {n: p.grad.clone() for n, p in denoiser.named_parameters() if p.grad is not None}

    plain = gradients()
    denoiser.enable_gradient_checkpointing()
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_bad_inputs_raise_clear_errors() -> None:
    model = tiny_model("cross_attention")
    denoiser = DenoisingRenderer.from_renderer(model)
    scene, rays = inputs(model.config.renderer_width)
    noisy = torch.randn(B, T, 3, HW, HW)
    with pytest.raises(ValueError, match="noisy_images must be"):
        denoiser(noisy[:, :2], 5, rays, scene)
    with pytest.raises(ValueError, match="do not broadcast"):
        denoiser(noisy, torch.zeros(B, T + 1), rays, scene)
    with pytest.raises(ValueError, match="multiples of the patch size"):
        denoiser(noisy[..., :12], 5, rays[..., :12], scene)
    with pytest.raises(ValueError, match="scene_tokens must be"):
        denoiser(noisy, 5, rays, scene[..., :8])
    with pytest.raises(ValueError, match="Renderer or LagerNVSModel"):
        DenoisingRenderer.from_renderer(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="read from the renderer"):
        DenoisingRenderer.from_renderer(model, width=64)
    with pytest.raises(ValueError, match="unknown objective"):
        DenoisingRenderer.from_renderer(model, objective="score")


def test_the_inner_renderer_alone_is_the_deterministic_renderer() -> None:
    """No modulation, no noisy tokens: a trained denoiser's renderer renders deterministically
    (it holds no state from the denoiser's calls), exactly like the model it was copied from."""
    model = tiny_model("cross_attention")
    denoiser = perturb(DenoisingRenderer.from_renderer(model)).eval()
    scene, rays = inputs(model.config.renderer_width)
    with torch.no_grad():
        denoiser(torch.randn(B, T, 3, HW, HW), 500, rays, scene)
        torch.testing.assert_close(
            denoiser.renderer(scene, rays), model.render(scene, rays), atol=0, rtol=0
        )


def test_bad_scene_inputs_raise_clear_errors() -> None:
    model = tiny_model("cross_attention")
    denoiser = DenoisingRenderer.from_renderer(model)
    scene, rays = inputs(model.config.renderer_width)
    noisy = torch.randn(B, T, 3, HW, HW)
    with pytest.raises(ValueError, match="drop_scene applies to scene tokens"):
        denoiser(noisy, 5, rays, denoiser.prepare_scene(scene), drop_scene=True)
    with pytest.raises(ValueError, match="scene_tokens must be"):
        denoiser.prepare_scene(scene[0])


# Numerics of saved denoisers. tests/data/denoiser_reference.safetensors holds the outputs of
# the forward-hook implementation of the modulation (commit d702b10) for the weights and inputs
# below; weights are set by sorted parameter name, so they do not depend on initialisation order,
# and the strict state-dict load checks the parameter names a saved denoiser has.
REFERENCE = Path(__file__).parent / "data" / "denoiser_reference.safetensors"
REFERENCE_CASES = ("conditional", "mixed_drop")


def filled(module: torch.nn.Module, seed: int, std: float = 0.2) -> torch.nn.Module:
    """``module`` with every parameter drawn from N(0, std^2), in sorted-name order."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, parameter in sorted(module.named_parameters()):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return module


def reference_denoiser(attention_type: str) -> DenoisingRenderer:
    """A tiny denoiser with every parameter (modulation included) away from its init."""
    denoiser = DenoisingRenderer(
        attention_type=attention_type, width=32, depth=2, num_heads=2, patch_size=8,
        num_registers=4, timestep_channels=16,
    )  # fmt: skip
    state = filled(denoiser, seed=11).state_dict()
    loaded = DenoisingRenderer(**denoiser.config)
    loaded.load_state_dict(state, strict=True)
    return loaded.eval()


def reference_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(12)
    return {
        "scene": torch.randn(B, V, NP, 32, generator=generator),
        "rays": torch.randn(B, T, 6, HW, HW, generator=generator),
        "noisy": torch.randn(B, T, 3, HW, HW, generator=generator),
        "timesteps": torch.rand(B, T, generator=generator) * 999,
    }


def reference_outputs(attention_type: str) -> dict[str, torch.Tensor]:
    denoiser, x = reference_denoiser(attention_type), reference_inputs()
    args = (x["noisy"], x["timesteps"], x["rays"], x["scene"])
    with torch.no_grad():
        return {
            f"{attention_type}/conditional": denoiser(*args),
            f"{attention_type}/mixed_drop": denoiser(*args, drop_scene=torch.tensor([True, False])),
        }


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_saved_denoisers_keep_their_numerics(attention_type: str) -> None:
    expected = load_file(REFERENCE)
    outputs = reference_outputs(attention_type)
    for case in REFERENCE_CASES:
        key = f"{attention_type}/{case}"
        torch.testing.assert_close(outputs[key], expected[key], atol=1e-5, rtol=0, msg=key)
