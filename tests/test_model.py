"""LagerNVSModel behaviour: equivalences, shared scene keys/values, validation, diffusers API."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lagernvs.models import (
    ATTENTION_TYPES,
    LagerNVSModel,
    attention,
    attention_backend,
    set_attention_backend,
)
from lagernvs.models.inputs import check_encoder_inputs, check_forward_inputs, check_render_inputs

HEIGHT, WIDTH = 32, 48  # non-square, multiples of the renderer patch size 8
ATOL = 1e-5


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fixture-style init (as in the reference README) so that every weight affects the output.

    The training init zeroes the output layer, which would make every rendered pixel 0.5.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("weight") and param.dim() >= 2:
                param.copy_(noise / math.sqrt(param[0].numel()))
            elif name.endswith("weight"):
                param.copy_(1 + 0.1 * noise)
            else:
                param.copy_(0.1 * noise if name.endswith("bias") else 0.5 * noise)
    return model.eval()


def tiny(attention_type: str, seed: int = 0) -> LagerNVSModel:
    return randomize(LagerNVSModel.from_preset("tiny", attention_type=attention_type), seed)


def inputs(batch: int = 2, views: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "images": torch.rand(batch, views, 3, HEIGHT, WIDTH, generator=generator),
        "rays": torch.randn(batch, views, 6, HEIGHT, WIDTH, generator=generator),
        "cam_tokens": torch.randn(batch, views, 11, generator=generator),
    }


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_encode_render_matches_forward_and_chunking(attention_type: str) -> None:
    model, x = tiny(attention_type), inputs()
    with torch.no_grad():
        full = model(x["images"], x["rays"], x["cam_tokens"], num_cond_views=2)
        scene = model.encode(x["images"][:, :2], x["cam_tokens"][:, :2])
        rendered = model.render(scene, x["rays"][:, 2:])
        chunked = model.render(scene, x["rays"][:, 2:], chunk_size=1)
    assert full.shape == (2, 4, 3, HEIGHT, WIDTH)
    torch.testing.assert_close(full[:, :2], x["images"][:, :2], rtol=0, atol=0)
    torch.testing.assert_close(full[:, 2:], rendered, rtol=0, atol=ATOL)
    torch.testing.assert_close(chunked, rendered, rtol=0, atol=ATOL)
    assert rendered.std() > 0.05  # the weights really shape the image
    assert rendered.min() >= 0 and rendered.max() <= 1


def test_chunked_render_of_many_targets() -> None:
    model = tiny("full_attention")
    x = inputs(batch=1, views=6)
    with torch.no_grad():
        scene = model.encode(x["images"][:, :1], x["cam_tokens"][:, :1])
        whole = model.render(scene, x["rays"][:, 1:])
        in_twos = model.render(scene, x["rays"][:, 1:], chunk_size=2)
    torch.testing.assert_close(in_twos, whole, rtol=0, atol=ATOL)


@pytest.mark.parametrize("attention_type", ["cross_attention", "bidirectional_cross_attention"])
def test_shared_scene_keys_values_match_per_target_copies(attention_type: str) -> None:
    core = tiny(attention_type).renderer.renderer_core
    generator = torch.Generator().manual_seed(1)
    batch, targets, length, width = 2, 3, 10, 32
    x = torch.randn(batch, targets, length, width, generator=generator)
    scene = torch.randn(batch, 7, width, generator=generator)
    with torch.no_grad():
        shared = core(x, core.prepare_scene(scene))
        if attention_type == "cross_attention":
            # Reference semantics: every target view gets its own copy of the scene tokens.
            per_target = x.flatten(0, 1)[:, None]
            copies = scene.repeat_interleave(targets, dim=0)
            for block in core.renderer_blocks:
                per_target = block(per_target, *block.scene_kv(copies))
        else:
            per_target = torch.cat(
                [core(x[:, t : t + 1], core.prepare_scene(scene)) for t in range(targets)], dim=1
            )
    torch.testing.assert_close(
        shared, per_target.view(batch, targets, length, width), atol=ATOL, rtol=0
    )


def test_cross_attention_scene_keys_values_computed_once_per_scene() -> None:
    model, x = tiny("cross_attention"), inputs(batch=2, views=5)
    batches: list[int] = []
    for block in model.renderer.renderer_core.renderer_blocks:
        block.cross_attn.k_proj.register_forward_hook(lambda m, i, o: batches.append(i[0].shape[0]))
    with torch.no_grad():
        scene = model.encode(x["images"][:, :1], x["cam_tokens"][:, :1])
        model.render(scene, x["rays"][:, 1:], chunk_size=1)
    # One key projection per block for the whole render, on the 2 scenes (not 2 x 4 targets).
    assert batches == [2] * model.config.renderer_depth


def test_sdpa_matches_explicit_softmax() -> None:
    generator = torch.Generator().manual_seed(2)
    q = torch.randn(2, 3, 7, 16, generator=generator)
    k = torch.randn(2, 3, 11, 16, generator=generator)
    v = torch.randn(2, 3, 11, 16, generator=generator)
    with attention_backend("sdpa"):
        sdpa = attention(q, k, v)
    with attention_backend("math"):
        math_out = attention(q, k, v)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1) @ v
    torch.testing.assert_close(math_out, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(sdpa, expected, rtol=0, atol=1e-6)

    model, x = tiny("bidirectional_cross_attention"), inputs(batch=1)
    with torch.no_grad(), attention_backend("math"):
        by_math = model(x["images"], x["rays"], x["cam_tokens"], 2)
    with torch.no_grad(), attention_backend("sdpa"):
        by_sdpa = model(x["images"], x["rays"], x["cam_tokens"], 2)
    torch.testing.assert_close(by_math, by_sdpa, rtol=0, atol=ATOL)


def test_attention_backend_setting() -> None:
    with pytest.raises(ValueError, match="unknown attention backend 'flash'"):
        set_attention_backend("flash")
    q = torch.randn(1, 1, 2, 8)
    with attention_backend("xformers"), pytest.raises((ImportError, ValueError), match="xformers"):
        attention(q, q, q)


def test_gradient_checkpointing_the_diffusers_way() -> None:
    x = inputs(batch=1, views=3)

    def gradients(model: LagerNVSModel) -> dict[str, torch.Tensor]:
        model.train()
        model(x["images"], x["rays"], x["cam_tokens"], 2)[:, 2:].square().mean().backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    reference = gradients(tiny("bidirectional_cross_attention"))
    model = tiny("bidirectional_cross_attention")
    calls = []

    def checkpoint(module, *args):
        calls.append(type(module).__name__)
        return torch.utils.checkpoint.checkpoint(module, *args, use_reentrant=False)

    model.enable_gradient_checkpointing(gradient_checkpointing_func=checkpoint)
    assert model.is_gradient_checkpointing
    checkpointed = gradients(model)
    assert {"EncoderBlock", "BidirectionalCrossAttentionBlock", "CrossAttentionBlock"} <= set(calls)
    assert checkpointed.keys() == reference.keys()
    for name, grad in reference.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def _with(x: dict[str, torch.Tensor], **changes: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**x, **changes}


def _nan_at(tensor: torch.Tensor, index: tuple) -> torch.Tensor:
    tensor = tensor.clone()
    tensor[index] = float("nan")
    return tensor


BASE = inputs(batch=1, views=3)
BAD_FORWARD_INPUTS = {
    "images rank": (_with(BASE, images=BASE["images"][0]), 2, "images must be a 5-d tensor"),
    "images channels": (
        _with(BASE, images=BASE["images"].repeat(1, 1, 2, 1, 1)),
        2,
        r"images must be a 5-d tensor \(B, V, 3, H, W\)",
    ),
    "rays rank": (_with(BASE, rays=BASE["rays"][0]), 2, "rays must be a 5-d tensor"),
    "rays channels": (_with(BASE, rays=BASE["rays"][:, :, :5]), 2, r"\(B, V, 6, H, W\)"),
    "size not multiple of patch": (
        _with(BASE, images=BASE["images"][..., :28, :], rays=BASE["rays"][..., :28, :]),
        2,
        "multiples of the renderer patch size 8",
    ),
    "rays view count": (_with(BASE, rays=BASE["rays"][:, :2]), 1, "do not match images"),
    "token view count": (
        _with(BASE, cam_tokens=BASE["cam_tokens"][:, :2]),
        1,
        "pass one camera token per image",
    ),
    "token length": (_with(BASE, cam_tokens=BASE["cam_tokens"][..., :9]), 2, r"\(B, V, 11\)"),
    "no conditioning view": (BASE, 0, r"num_cond_views must be in \[1, 2\]"),
    "no target view": (BASE, 3, r"num_cond_views must be in \[1, 2\]"),
}


@pytest.fixture(scope="module")
def tiny_model() -> LagerNVSModel:
    return tiny("cross_attention")


@pytest.mark.parametrize("case", sorted(BAD_FORWARD_INPUTS))
def test_bad_forward_input_is_named(tiny_model: LagerNVSModel, case: str) -> None:
    x, num_cond, message = BAD_FORWARD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        check_forward_inputs(tiny_model.config, x["images"], x["rays"], x["cam_tokens"], num_cond)


def test_good_forward_input_passes_the_checks(tiny_model: LagerNVSModel) -> None:
    x = BASE
    check_forward_inputs(tiny_model.config, x["images"], x["rays"], x["cam_tokens"], 2)
    check_render_inputs(tiny_model.config, torch.zeros(1, 2, 5, 32), x["rays"], chunk_size=1)


def test_bad_encode_and_render_input_is_named(tiny_model: LagerNVSModel) -> None:
    x, config = BASE, tiny_model.config
    with pytest.raises(ValueError, match="one camera token per image"):
        check_encoder_inputs(config, x["images"], x["cam_tokens"].repeat(2, 1, 1))
    with pytest.raises(ValueError, match="too elongated for the encoder"):
        check_encoder_inputs(config, x["images"][..., :1, :], x["cam_tokens"])
    scene = torch.zeros(1, 2, 5, 32)
    with pytest.raises(ValueError, match=r"scene_tokens must be a 4-d tensor \(B, V, Np, 32\)"):
        check_render_inputs(config, scene[..., :16], x["rays"])
    with pytest.raises(ValueError, match="scene_tokens have batch size 2"):
        check_render_inputs(config, scene.repeat(2, 1, 1, 1), x["rays"])
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        check_render_inputs(config, scene, x["rays"], chunk_size=0)
    with pytest.raises(ValueError, match=r"target_rays hold no target view \(T = 0\)"):
        check_render_inputs(config, scene, x["rays"][:, :0])


def test_forward_only_computes(tiny_model: LagerNVSModel) -> None:
    """No value check in the model (it would synchronise with the device): NaN flows through."""
    x = BASE
    with torch.no_grad():
        out = tiny_model(x["images"], x["rays"], _nan_at(x["cam_tokens"], (0, 1, 4)), 2)
    assert out[:, 2:].isnan().all()
    assert not out[:, :2].isnan().any()


def test_presets() -> None:
    model = LagerNVSModel.from_preset("tiny")
    assert model.image_size == (64, 64)
    assert model.config.attention_type == "bidirectional_cross_attention"
    with pytest.raises(ValueError, match=r"unknown model preset 'huge'.*'general_512'"):
        LagerNVSModel.from_preset("huge")
    with pytest.raises(ValueError, match="unknown attention_type 'sparse'"):
        LagerNVSModel.from_preset("tiny", attention_type="sparse")


def test_training_init_renders_uniform_grey() -> None:
    model, x = LagerNVSModel.from_preset("tiny").eval(), inputs(batch=1, views=2)
    with torch.no_grad():
        out = model(x["images"], x["rays"], x["cam_tokens"], 1)
    torch.testing.assert_close(out[:, 1:], torch.full_like(out[:, 1:], 0.5))


def test_save_and_load_pretrained(tmp_path: Path) -> None:
    model, x = tiny("full_attention", seed=3), inputs(batch=1, views=3)
    model.save_pretrained(tmp_path)
    loaded = LagerNVSModel.from_pretrained(tmp_path).eval()
    assert loaded.image_size == model.image_size
    with torch.no_grad():
        expected = model(x["images"], x["rays"], x["cam_tokens"], 2)
        actual = loaded(x["images"], x["rays"], x["cam_tokens"], 2)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_bfloat16_autocast_runs_close_to_float32(attention_type: str) -> None:
    model, x = tiny(attention_type), inputs(batch=1, views=3)
    with torch.no_grad():
        reference = model(x["images"], x["rays"], x["cam_tokens"], 2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x["images"], x["rays"], x["cam_tokens"], 2)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, reference, rtol=0, atol=0.1)
