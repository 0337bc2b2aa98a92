"""The renderer's fast path renders what the plain renderer renders (CPU; CUDA graphs emulated)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch
from torch import nn

from lagernvs.models import ATTENTION_TYPES, LagerNVSModel
from lagernvs.models import fast as fast_module
from lagernvs.models.fast import (
    BF16_TOLERANCE,
    MAX_GRAPHS,
    FastOptions,
    FastRenderer,
    bf16_copy,
    capture_cuda_graph,
    fast_renderer,
)


def renderer(attention_type: str) -> nn.Module:
    """A tiny random renderer whose images vary (the output layer is not zero as at init)."""
    torch.manual_seed(0)
    model = LagerNVSModel.from_preset("tiny", attention_type=attention_type).eval()
    nn.init.normal_(model.renderer.final_layer.linear.weight, std=0.5)
    return model.renderer


def scene_and_rays(views: int = 3, targets: int = 3, size: int = 32, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    scene = torch.randn(2, views, 16, 32, generator=generator)
    rays = torch.randn(2, targets, 6, size, size, generator=generator)
    return scene, rays


def plain(module: nn.Module, scene: torch.Tensor, rays: torch.Tensor, bf16: bool = False):
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        return module.render_views(module.prepare_scene(scene), rays)


def fast(module: nn.Module, options: FastOptions, scene: torch.Tensor, rays: torch.Tensor):
    path = FastRenderer(module, options)
    return path.render_views(path.prepare_scene(scene), rays)


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_float32_options_render_the_plain_images_bit_for_bit(attention_type: str) -> None:
    module = renderer(attention_type)
    scene, rays = scene_and_rays()
    expected = plain(module, scene, rays)
    for options in (
        FastOptions(),
        FastOptions(batch_targets=False),
        FastOptions(attention="sdpa"),
        FastOptions(compile="default", compile_backend="eager"),
    ):
        assert torch.equal(fast(module, options, scene, rays), expected), options.describe()
    with torch.no_grad():
        by_math = fast(module, FastOptions(attention="math"), scene, rays)
        by_sdpa_math = fast(module, FastOptions(sdpa_kernels=("math",)), scene, rays)
    torch.testing.assert_close(by_math, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(by_sdpa_math, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_bf16_weights_render_the_bf16_autocast_images_bit_for_bit(attention_type: str) -> None:
    module = renderer(attention_type)
    scene, rays = scene_and_rays()
    images = fast(module, FastOptions(bf16=True), scene, rays)
    assert images.dtype == torch.bfloat16
    assert torch.equal(images, plain(module, scene, rays, bf16=True))
    difference = (images.float() - plain(module, scene, rays)).abs().max().item()
    assert 0 < difference < BF16_TOLERANCE
    assert images.float().std() > 0.05  # the images are not a flat grey


def test_bf16_copy_keeps_norms_and_tokens_in_float32() -> None:
    module = renderer("bidirectional_cross_attention")
    copy = bf16_copy(module)
    dtypes = {name: p.dtype for name, p in copy.named_parameters()}
    assert dtypes["tgt_embedder.proj.weight"] == torch.bfloat16
    assert dtypes["final_layer.linear.weight"] == torch.bfloat16
    assert dtypes["renderer_core.renderer_blocks.0.self_attn.q_proj.weight"] == torch.bfloat16
    assert dtypes["renderer_core.renderer_blocks.0.self_attn.q_norm.weight"] == torch.float32
    assert dtypes["renderer_core.renderer_blocks.0.norm1_x.weight"] == torch.float32
    assert dtypes["per_view_register_tokens"] == torch.float32
    assert all(p.dtype == torch.float32 for p in module.parameters())  # the source is untouched
    assert not any(p.requires_grad for p in copy.parameters())


def test_weight_changes_are_followed() -> None:
    module = renderer("cross_attention")
    scene, rays = scene_and_rays()
    path = FastRenderer(module, FastOptions(bf16=True))
    with torch.inference_mode():  # e.g. an evaluation loop
        first = path.render_views(path.prepare_scene(scene), rays)
    copy = path._module
    with torch.no_grad():
        module.final_layer.linear.weight.mul_(-1)  # e.g. an optimizer step
    changed = path.render_views(path.prepare_scene(scene), rays)
    assert path._module is copy  # updated in place, so captured graphs stay valid
    assert torch.equal(changed, plain(module, scene, rays, bf16=True))
    assert not torch.equal(changed, first)


class CaptureCounter:
    """Stands in for CUDA graph capture on CPU: 'replay' reruns the call on the static buffers,
    which is what a CUDA graph does, so the buffer handling is tested without a GPU."""

    def __init__(self) -> None:
        self.captures = 0

    def __call__(self, fn: Callable[[], torch.Tensor], device: torch.device, warmup: int = 2):
        self.captures += 1
        fn()
        return fn


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_graph_buffers_take_new_rays_and_scenes(
    attention_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CaptureCounter()
    monkeypatch.setattr(fast_module, "capture_cuda_graph", counter)
    module = renderer(attention_type)
    path = FastRenderer(module, FastOptions(cuda_graphs=True))
    scene, rays = scene_and_rays()
    other_scene, other_rays = scene_and_rays(seed=2)
    prepared, other_prepared = path.prepare_scene(scene), path.prepare_scene(other_scene)

    first = path.render_views(prepared, rays)
    assert torch.equal(first, plain(module, scene, rays))
    first.zero_()  # the caller owns its output: the next frame must not be affected
    assert torch.equal(path.render_views(prepared, other_rays), plain(module, scene, other_rays))
    assert torch.equal(path.render_views(other_prepared, rays), plain(module, other_scene, rays))
    assert counter.captures == 1  # same shapes: one capture, new inputs copied into its buffers

    for size in (8, 16, 24, 40, 48):  # new shapes are captured, the oldest dropped
        _, small = scene_and_rays(size=size)
        assert torch.equal(path.render_views(prepared, small), plain(module, scene, small))
    assert counter.captures == 6 and len(path._graphs) == MAX_GRAPHS


def test_graphs_need_cuda_tensors() -> None:
    with pytest.raises(ValueError, match="need CUDA tensors, got cpu; turn cuda_graphs off"):
        capture_cuda_graph(lambda: torch.zeros(1), torch.device("cpu"))
    module = renderer("cross_attention")
    scene, rays = scene_and_rays()
    path = FastRenderer(module, FastOptions(cuda_graphs=True))
    with pytest.raises(ValueError, match="CUDA graphs need CUDA tensors"):
        path.render_views(path.prepare_scene(scene), rays)


def test_fast_renderer_is_cached_and_plain_on_cpu() -> None:
    module = renderer("full_attention")
    path = fast_renderer(module)
    assert path is fast_renderer(module) and path.options == FastOptions()
    assert fast_renderer(module, FastOptions(bf16=True)) is not path
    assert FastOptions.fastest("cuda") == FastOptions(bf16=True, cuda_graphs=True)
    assert FastOptions.fastest("cuda:1").describe() == "bf16+graphs"
    assert FastOptions().describe() == "plain"
    label = FastOptions(attention="math", sdpa_kernels=["flash"], batch_targets=False).describe()
    assert label == "math+sdpa:flash+per-target"
    with pytest.raises(ValueError, match="renderer of this FastRenderer was deleted"):
        orphan = FastRenderer(renderer("full_attention"))
        orphan.render_views(None, torch.zeros(1, 1, 6, 8, 8))


def test_option_errors() -> None:
    with pytest.raises(ValueError, match="unknown attention backend 'flash'"):
        FastOptions(attention="flash")
    with pytest.raises(ValueError, match=r"unknown SDPA kernels \['fast'\]"):
        FastOptions(sdpa_kernels=("fast",))


def test_inductor_compile_matches_eager_at_tiny_size() -> None:
    """One real torch.compile (inductor, C++ on CPU) of the tiny renderer; its time is printed."""
    module = renderer("bidirectional_cross_attention")
    scene, rays = scene_and_rays(views=2, targets=1, size=16)
    started = time.perf_counter()
    compiled = fast(module, FastOptions(compile="default"), scene, rays)
    print(f"inductor compile + first call: {time.perf_counter() - started:.1f} s")
    torch.testing.assert_close(compiled, plain(module, scene, rays), rtol=0, atol=1e-5)


def test_the_pipeline_renders_through_the_fastest_path_of_its_device(monkeypatch) -> None:
    """pipe.render (and so the viewer) takes FastOptions.fastest(device): on CUDA bf16 + graphs;
    here a CPU stand-in (bf16) shows that its choice reaches the images."""
    from lagernvs import Cameras, LagerNVSPipeline

    torch.manual_seed(0)
    model = LagerNVSModel.from_preset("tiny", image_size=(32, 32), encoder_image_size=56).eval()
    nn.init.normal_(model.renderer.final_layer.linear.weight, std=0.5)
    pipe = LagerNVSPipeline(model=model)
    pipe.set_progress_bar_config(disable=True)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    sources = Cameras.look_at(
        [[0, 0, -1], [0.3, 0, -1]], [[0, 0, 1]] * 2, fov_deg=60, image_size=(32, 32)
    )
    targets = Cameras.look_at([[0.1, 0, -1]], [[0, 0, 1]], fov_deg=60, image_size=(32, 32))
    plain_images = pipe(images, sources, target_cameras=targets, output_type="pt").images
    expected = plain(model.renderer, *_pipeline_scene(pipe, images, sources, targets), bf16=True)

    chosen = []

    def fastest(device: torch.device | str) -> FastOptions:
        chosen.append(torch.device(device).type)
        return FastOptions(bf16=True)

    monkeypatch.setattr(FastOptions, "fastest", staticmethod(fastest))
    fast_images = pipe(images, sources, target_cameras=targets, output_type="pt").images
    assert chosen and set(chosen) == {"cpu"}
    assert not torch.equal(fast_images, plain_images)  # the bf16 path was taken
    torch.testing.assert_close(fast_images, expected[0].float(), atol=0, rtol=0)
    assert (fast_images - plain_images).abs().max() <= BF16_TOLERANCE


def _pipeline_scene(pipe, images, sources, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """The scene tokens and target rays the pipeline renders (for the bf16 reference)."""
    from lagernvs.cameras import plucker_rays

    encoded = pipe.encode(images, sources)
    cameras = targets.crop_resize((32, 32))
    rays = plucker_rays(encoded.model_frame(cameras), cameras.fxfycxcy.float(), 32, 32)
    return encoded.scene_tokens, rays[None]
