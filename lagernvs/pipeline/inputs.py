"""The pipeline's input checks: everything a user hands to ``__call__``/``encode``/``render`` is
validated here once, with a one-line ValueError naming the problem and the fix.

Images are checked as they are converted (:func:`lagernvs.data.images.load_images`); cameras
when :class:`~lagernvs.cameras.Cameras` are built (shapes, finiteness, rotations) and here
against the images (count, sizes, the degenerate-camera rule of
:func:`lagernvs.data.model_inputs.camera_problem`); shapes of what reaches the model through
:mod:`lagernvs.models.inputs`. Nothing downstream checks again.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import Tensor

from lagernvs.cameras import Cameras
from lagernvs.data.model_inputs import camera_problem
from lagernvs.data.scene import Scene
from lagernvs.diffusion.denoiser import DenoisingRenderer
from lagernvs.diffusion.objective import is_flow_scheduler
from lagernvs.models.inputs import check_chunk_size, check_render_inputs
from lagernvs.models.renderer import RAY_CHANNELS
from lagernvs.pipeline.output import EncodedScene

__all__ = [
    "MODES",
    "OUTPUT_TYPES",
    "Generator",
    "Mode",
    "OutputType",
    "RenderOptions",
    "as_cameras",
    "check_encode_inputs",
    "callback_tensor_inputs",
    "check_render_options",
    "images_per_prompt",
]

Mode = Literal["deterministic", "sampled"]
OutputType = Literal["pil", "np", "pt"]
MODES = ("deterministic", "sampled")
OUTPUT_TYPES = ("pil", "np", "pt")
Generator = torch.Generator | list[torch.Generator] | None
StepCallback = (
    Callable[[Any, int, Tensor, dict[str, Tensor]], dict[str, Tensor] | None]
    | PipelineCallback
    | MultiPipelineCallbacks
)
CALLBACK_TENSOR_INPUTS = ("latents",)


@dataclass(frozen=True)
class RenderOptions:
    """How :meth:`~lagernvs.pipeline.LagerNVSPipeline.render` renders (see its arguments)."""

    mode: Mode = "deterministic"
    height: int | None = None
    width: int | None = None
    chunk_size: int | None = 8
    generator: Generator = None
    output_type: OutputType = "pt"
    num_inference_steps: int = 50
    timesteps: Sequence[int] | None = None
    guidance_scale: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    strength: float = 1.0
    num_images_per_prompt: int = 1
    same_noise: bool = False
    callback_on_step_end: StepCallback | None = None
    callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",)

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> RenderOptions:
        """The options among the arguments of a render call (the ``locals()`` of
        :meth:`~lagernvs.pipeline.LagerNVSPipeline.render` or ``__call__``, whose keyword
        arguments carry the fields' names), ``num_samples`` folded into
        ``num_images_per_prompt``."""
        values = {field.name: arguments[field.name] for field in fields(cls)}
        values["num_images_per_prompt"] = images_per_prompt(
            arguments["num_images_per_prompt"], arguments["num_samples"]
        )
        return cls(**values)

    def guided(self, step_index: int, num_steps: int) -> bool:
        """Whether step ``step_index`` of ``num_steps`` applies guidance: those whose span of
        the sampling (as fractions, the noisiest step first) lies in [guidance_start,
        guidance_end], the rule of diffusers' ``control_guidance_start`` / ``_end``."""
        if self.guidance_scale == 1:
            return False
        return (
            step_index / num_steps >= self.guidance_start
            and (step_index + 1) / num_steps <= self.guidance_end
        )

    def size(self, config: Mapping[str, Any]) -> tuple[int, int]:
        """The rendered (H, W): the given height/width, else the model's image size."""
        default_h, default_w = config["image_size"]
        height = default_h if self.height is None else self.height
        width = default_w if self.width is None else self.width
        return int(height), int(width)


def images_per_prompt(num_images_per_prompt: Any, num_samples: Any) -> Any:
    """The samples per target view: ``num_images_per_prompt``, or ``num_samples`` (its former
    name, still accepted); 1 when neither is given."""
    if num_samples is None:
        return 1 if num_images_per_prompt is None else num_images_per_prompt
    if num_images_per_prompt is not None and num_images_per_prompt != num_samples:
        raise ValueError(
            f"got num_images_per_prompt={num_images_per_prompt!r} and num_samples="
            f"{num_samples!r}; num_samples is its former name: pass only num_images_per_prompt"
        )
    return num_samples


def as_cameras(cameras: Cameras | Scene, name: str) -> Cameras:
    """``cameras`` as :class:`Cameras` (a data-layer :class:`Scene` is converted)."""
    if isinstance(cameras, Scene):
        return Cameras.from_scene(cameras)
    if not isinstance(cameras, Cameras):
        raise ValueError(
            f"{name} must be lagernvs.Cameras (or a Scene), got {type(cameras).__name__}; build "
            "them with Cameras(c2w, fxfycxcy, image_size) or Cameras.look_at(...)"
        )
    return cameras


def check_encode_inputs(frames: list[Tensor], source_cameras: Cameras | Scene | None) -> None:
    """Source images (converted) against their cameras, or among themselves when unposed."""
    if source_cameras is None:
        sizes = {tuple(frame.shape[-2:]) for frame in frames}
        if len(sizes) > 1:
            raise ValueError(
                f"images of mixed sizes {sorted(sizes)} need source_cameras (each camera "
                "describes its own image); resize them to one size or pass cameras"
            )
        return
    cameras = as_cameras(source_cameras, "source_cameras")
    if len(cameras) != len(frames):
        raise ValueError(
            f"got {len(cameras)} source cameras for {len(frames)} images; pass one camera per "
            "image, in the same order"
        )
    for index, frame in enumerate(frames):
        image_hw = tuple(frame.shape[-2:])
        camera_hw = tuple(cameras.image_sizes[index].tolist())
        if image_hw != camera_hw:
            raise ValueError(
                f"source camera {index} is for a {camera_hw[0]}x{camera_hw[1]} image but "
                f"image {index} is {image_hw[0]}x{image_hw[1]}; pass cameras with the images' "
                "sizes (Cameras.crop_resize adapts intrinsics to a cropped/resized image)"
            )
    problem = camera_problem(cameras.c2w.cpu(), len(cameras))
    if problem is not None:
        raise ValueError(problem)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_size(options: RenderOptions, config: Mapping[str, Any]) -> tuple[int, int]:
    for name in ("height", "width"):
        value = getattr(options, name)
        if value is not None and not _is_int(value):
            raise ValueError(f"{name} must be an int number of pixels, got {value!r}")
    height, width = options.size(config)
    patch = config["patch_size"]
    if height <= 0 or width <= 0 or height % patch or width % patch:
        raise ValueError(
            f"render size {height}x{width} must be positive multiples of the model's "
            f"patch size {patch}"
        )
    return height, width


def _check_components(denoiser: Any, scheduler: Any) -> None:
    """The diffusion decoder: present, of the right types, scheduler family matching."""
    components = {"denoiser": denoiser, "scheduler": scheduler}
    missing = next((name for name, part in components.items() if part is None), None)
    if missing is not None:
        raise ValueError(
            f"mode='sampled' needs the diffusion decoder, but this pipeline has no {missing}; "
            "load a pipeline saved with a denoiser and scheduler, or use mode='deterministic'"
        )
    if not isinstance(denoiser, DenoisingRenderer):
        raise ValueError(
            f"sampling needs a DenoisingRenderer, got {type(denoiser).__name__}; fine-tune one "
            "with `lagernvs train-denoiser` or build it with DenoisingRenderer.from_renderer"
        )
    if not isinstance(scheduler, SchedulerMixin):
        raise ValueError(f"scheduler must be a diffusers scheduler, got {type(scheduler).__name__}")
    flow_denoiser = denoiser.config.objective == "flow"
    if is_flow_scheduler(scheduler) != flow_denoiser:
        wanted = (
            "FlowMatchEulerDiscreteScheduler" if flow_denoiser else "DDPM, DDIM or DPM-Solver++"
        )
        raise ValueError(
            f"the denoiser was trained with objective {denoiser.config.objective!r} but got a "
            f"{type(scheduler).__name__}; use {wanted}"
        )


def callback_tensor_inputs(options: RenderOptions) -> Sequence[str]:
    """Names of the tensors the step callback receives (a diffusers ``PipelineCallback`` names
    its own)."""
    callback = options.callback_on_step_end
    if isinstance(callback, PipelineCallback | MultiPipelineCallbacks):
        return callback.tensor_inputs
    return options.callback_on_step_end_tensor_inputs


def _check_callback(options: RenderOptions) -> None:
    callback = options.callback_on_step_end
    if callback is not None and not callable(callback):
        raise ValueError(
            "callback_on_step_end must be callable as (pipe, step_index, timestep, "
            f"callback_kwargs) -> dict, got {type(callback).__name__}"
        )
    names = callback_tensor_inputs(options)
    unknown = [n for n in names if n not in CALLBACK_TENSOR_INPUTS]
    if isinstance(names, str) or unknown:
        raise ValueError(
            f"callback_on_step_end_tensor_inputs must be a list of {list(CALLBACK_TENSOR_INPUTS)}"
            f", got {names!r}"
        )


def _check_timesteps(timesteps: Any, scheduler: SchedulerMixin) -> None:
    """Custom timesteps: a scheduler that takes them, integers from the noisiest down."""
    name = type(scheduler).__name__
    if "timesteps" not in inspect.signature(scheduler.set_timesteps).parameters:
        raise ValueError(
            f"{name} takes no custom timesteps; pass num_inference_steps instead, or use a "
            "scheduler that does (DDPMScheduler, DPMSolverMultistepScheduler, LCMScheduler)"
        )
    steps = scheduler.config.num_train_timesteps
    values = list(timesteps) if isinstance(timesteps, Sequence) else None
    if (
        not values
        or not all(_is_int(t) and 0 <= t < steps for t in values)
        or any(a <= b for a, b in itertools.pairwise(values))
    ):
        raise ValueError(
            f"timesteps must be a non-empty list of decreasing integers in [0, {steps - 1}] "
            f"(the noisiest first), got {timesteps!r}"
        )


def _check_sampling(options: RenderOptions, denoiser: Any, scheduler: Any) -> None:
    _check_components(denoiser, scheduler)
    if not _is_int(options.num_inference_steps) or options.num_inference_steps < 1:
        raise ValueError(
            f"num_inference_steps must be an int >= 1, got {options.num_inference_steps!r}"
        )
    if options.timesteps is not None:
        _check_timesteps(options.timesteps, scheduler)
    if not _is_real(options.guidance_scale) or options.guidance_scale < 0:
        raise ValueError(
            "guidance_scale must be a finite number >= 0 (1 = no guidance), got "
            f"{options.guidance_scale!r}"
        )
    start, end = options.guidance_start, options.guidance_end
    if not (_is_real(start) and _is_real(end) and 0 <= start < end <= 1):
        raise ValueError(
            "guidance_start and guidance_end must satisfy 0 <= guidance_start < guidance_end "
            f"<= 1 (fractions of the sampling steps), got {start!r} and {end!r}"
        )
    if not _is_real(options.strength) or not 0 < options.strength <= 1:
        raise ValueError(
            f"strength must be in (0, 1] (1 = from pure noise), got {options.strength!r}"
        )
    count = options.num_images_per_prompt
    if not _is_int(count) or count < 1:
        raise ValueError(f"num_images_per_prompt (num_samples) must be an int >= 1, got {count!r}")
    if isinstance(options.generator, list) and len(options.generator) != count:
        raise ValueError(
            f"got {len(options.generator)} generators for {count} samples "
            "(num_images_per_prompt); pass one generator or a list of one per sample"
        )
    if not isinstance(options.same_noise, bool):
        raise ValueError(f"same_noise must be a bool, got {options.same_noise!r}")
    _check_callback(options)


def check_render_options(
    options: RenderOptions,
    target_cameras: Any,
    config: Mapping[str, Any],
    scene: EncodedScene | None = None,
    denoiser: Any = None,
    scheduler: Any = None,
) -> None:
    """Target cameras, render options, the pipeline's diffusion decoder (``denoiser`` and
    ``scheduler``, for ``mode="sampled"``) and (from ``render``) the encoded scene."""
    if options.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {options.mode!r}")
    if options.output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {options.output_type!r}")
    check_chunk_size(options.chunk_size)
    generators = options.generator if isinstance(options.generator, list) else [options.generator]
    if not all(g is None or isinstance(g, torch.Generator) for g in generators):
        raise ValueError(
            f"generator must be a torch.Generator or a list of them, got {options.generator!r}; "
            "seed with torch.Generator().manual_seed(123)"
        )
    height, width = _check_size(options, config)
    cameras = as_cameras(target_cameras, "target_cameras")
    if len(cameras) == 0:
        raise ValueError("target_cameras is empty; pass at least one camera")
    if options.mode == "sampled":
        _check_sampling(options, denoiser, scheduler)
    if scene is not None:
        if not isinstance(scene, EncodedScene):
            raise ValueError(f"scene must come from pipe.encode(...), got {type(scene).__name__}")
        rays = torch.empty(1, len(cameras), RAY_CHANNELS, height, width, device="meta")
        check_render_inputs(config, scene.scene_tokens, rays)
