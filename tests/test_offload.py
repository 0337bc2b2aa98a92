"""The offload contract: the pipeline calls its components only through the entry points that
accelerate's hooks wrap (``forward``), so ``enable_model_cpu_offload`` works.

Checked on the CPU three ways: counting hooks (accelerate ``ModelHook`` subclasses attached with
``add_hook_to_module``) count the calls; ``enable_model_cpu_offload(device="cpu")`` runs and
gives the same images; and a stand-in for CpuOffload poisons an offloaded component's weights
(NaN), so any use of them outside its entry point shows in the images.
"""

from __future__ import annotations

from itertools import chain

import pytest
import torch
from accelerate.hooks import CpuOffload, ModelHook, add_hook_to_module, remove_hook_from_module
from diffusers import DDIMScheduler

from lagernvs import Cameras, LagerNVSModel, LagerNVSPipeline
from lagernvs.diffusion import DenoisingRenderer, NoiseSchedule, build_noise_scheduler

SIZE = (32, 32)
STEPS = 3


class CountingHook(ModelHook):
    """Counts the calls of the module's entry point."""

    def __init__(self) -> None:
        self.calls = 0

    def pre_forward(self, module, *args, **kwargs):
        self.calls += 1
        return args, kwargs


class PoisonOffload(ModelHook):
    """CpuOffload on a CPU-only machine: an offloaded module's weights are NaN.

    The module's entry point brings its weights back and poisons the previous module of the
    chain, as accelerate's CpuOffload onloads a module and offloads ``prev_module_hook``'s; any
    use of offloaded weights outside the entry point turns the images into NaN.
    """

    def __init__(self, previous: PoisonOffload | None = None) -> None:
        self.previous, self.tensors, self.saved = previous, {}, {}

    def init_hook(self, module):
        tensors = chain(module.named_parameters(), module.named_buffers())
        self.tensors = {name: t for name, t in tensors if t.is_floating_point()}
        self.saved = {name: t.detach().clone() for name, t in self.tensors.items()}
        self.offload()
        return module

    @torch.no_grad()
    def offload(self) -> None:
        for tensor in self.tensors.values():
            tensor.fill_(float("nan"))

    @torch.no_grad()
    def pre_forward(self, module, *args, **kwargs):
        if self.previous is not None:
            self.previous.offload()
        for name, tensor in self.tensors.items():
            tensor.copy_(self.saved[name])
        return args, kwargs


def make_pipe() -> LagerNVSPipeline:
    torch.manual_seed(0)
    model = LagerNVSModel.from_preset("tiny", image_size=SIZE, encoder_image_size=56).eval()
    torch.nn.init.normal_(model.renderer.final_layer.linear.weight, std=0.5)
    denoiser = DenoisingRenderer.from_renderer(model).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in denoiser.named_parameters():
            if not name.startswith("renderer."):
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    scheduler = DDIMScheduler.from_config(build_noise_scheduler(NoiseSchedule()).config)
    pipe = LagerNVSPipeline(model=model, denoiser=denoiser, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def inputs() -> tuple[torch.Tensor, Cameras, Cameras]:
    images = torch.rand(2, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    sources = Cameras.look_at(
        [[0, 0, -1], [0.3, 0, -1]], [[0, 0, 1]] * 2, fov_deg=60, image_size=SIZE
    )
    targets = Cameras.look_at(
        [[0.1, 0, -1], [0.6, 0, -1]], [[0, 0, 1]] * 2, fov_deg=60, image_size=SIZE
    )
    return images, sources, targets


SAMPLED = {
    "mode": "sampled",
    "num_inference_steps": STEPS,
    "guidance_scale": 2.0,
    "num_images_per_prompt": 2,
    "chunk_size": None,
}


def render(pipe: LagerNVSPipeline, **options) -> torch.Tensor:
    images, sources, targets = inputs()
    generator = torch.Generator().manual_seed(3)
    return pipe(
        images, sources, target_cameras=targets, output_type="pt", generator=generator, **options
    ).images


@pytest.fixture
def counted() -> tuple[LagerNVSPipeline, CountingHook, CountingHook]:
    pipe = make_pipe()
    model_hook, denoiser_hook = CountingHook(), CountingHook()
    add_hook_to_module(pipe.model, model_hook)
    add_hook_to_module(pipe.denoiser, denoiser_hook)
    yield pipe, model_hook, denoiser_hook
    remove_hook_from_module(pipe.model)
    remove_hook_from_module(pipe.denoiser)


def test_the_offload_sequence_covers_model_and_denoiser() -> None:
    assert LagerNVSPipeline.model_cpu_offload_seq.split("->")[:2] == ["model", "denoiser"]


def test_a_deterministic_render_never_touches_the_denoiser(counted) -> None:
    pipe, _, denoiser_hook = counted
    render(pipe)
    images, sources, targets = inputs()
    pipe.render(pipe.encode(images, sources), targets)
    assert denoiser_hook.calls == 0


def test_a_sampled_render_calls_model_and_denoiser_through_their_hooks(counted) -> None:
    pipe, model_hook, denoiser_hook = counted
    render(pipe, **SAMPLED)
    assert model_hook.calls == 2  # encode, prepare_scene
    # The scene and the null scene prepared once, then conditional + unconditional per step.
    assert denoiser_hook.calls == 2 + 2 * STEPS


def test_a_deterministic_render_calls_the_model_through_its_hook(counted) -> None:
    pipe, model_hook, _ = counted
    render(pipe, chunk_size=1)
    assert model_hook.calls == 2 + 2  # encode, prepare_scene, then one call per target


def test_offloaded_components_are_only_used_through_their_entry_points() -> None:
    """Each component's entry point poisons the other one, as a two-module offload chain does."""
    pipe = make_pipe()
    expected = {"deterministic": render(pipe), "sampled": render(pipe, **SAMPLED)}
    model_hook = PoisonOffload()
    add_hook_to_module(pipe.model, model_hook)
    add_hook_to_module(pipe.denoiser, PoisonOffload(previous=model_hook))
    model_hook.previous = pipe.denoiser._hf_hook
    assert next(pipe.model.parameters()).isnan().all()
    torch.testing.assert_close(render(pipe), expected["deterministic"])
    torch.testing.assert_close(render(pipe, **SAMPLED), expected["sampled"])


def test_model_cpu_offload_on_the_cpu_gives_the_same_images() -> None:
    pipe = make_pipe()
    expected = {"deterministic": render(pipe), "sampled": render(pipe, **SAMPLED)}
    pipe.enable_model_cpu_offload(device="cpu")
    assert isinstance(pipe.model._hf_hook, CpuOffload)
    assert isinstance(pipe.denoiser._hf_hook, CpuOffload)
    assert pipe.denoiser._hf_hook.prev_module_hook is not None  # chained after the model
    torch.testing.assert_close(render(pipe), expected["deterministic"], atol=0, rtol=0)
    torch.testing.assert_close(render(pipe, **SAMPLED), expected["sampled"], atol=0, rtol=0)
    assert len(pipe._all_hooks) == 2  # re-armed after every call (maybe_free_model_hooks)


def test_an_offloaded_denoiser_is_only_used_through_its_entry_point() -> None:
    pipe = make_pipe()
    images, sources, targets = inputs()
    scene = pipe.encode(images, sources)
    options = {**SAMPLED, "generator": torch.Generator().manual_seed(3)}
    expected = pipe.render(scene, targets, **options).images
    add_hook_to_module(pipe.denoiser, PoisonOffload())
    assert next(pipe.denoiser.parameters()).isnan().all()
    options["generator"] = torch.Generator().manual_seed(3)
    torch.testing.assert_close(pipe.render(scene, targets, **options).images, expected)
