"""`LagerNVSPipeline`: images (+ cameras) in, novel views out, as a diffusers pipeline.

The pipeline owns everything between user inputs and the model's tensors, through the same
model-input path as the data pipeline (:mod:`lagernvs.data.model_inputs`):

* source images of any type and size are centre-cropped and resized to the model's image size
  exactly as the reference data pipeline does, and their intrinsics adjusted to match;
* posed input (``source_cameras`` given): all cameras are expressed relative to the first
  source camera and rescaled by the reference's float32 scene normalisation; unposed input
  (``source_cameras=None``): the sources' camera information is zeroed and target cameras are
  read as already living in the first source camera's frame at the normalised scale;
* :meth:`LagerNVSPipeline.encode` runs the encoder once per scene into an
  :class:`~lagernvs.pipeline.output.EncodedScene`; :meth:`LagerNVSPipeline.render` renders any
  number of target cameras from it in chunks (what an interactive viewer calls per frame);
  ``__call__`` is both.

User input is checked once, at the top of each entry point (:meth:`LagerNVSPipeline.check_inputs`,
:mod:`lagernvs.pipeline.inputs`). Components: ``model``
(:class:`~lagernvs.models.LagerNVSModel`), and the optional ``denoiser`` and ``scheduler`` of the
diffusion decoder used by ``mode="sampled"``, whose sampling loop is
:meth:`LagerNVSPipeline._render_sampled` (diffusers conventions: ``num_images_per_prompt``,
``generator`` lists, ``callback_on_step_end``). The pipeline calls the denoiser only through
its ``forward`` (the entry point accelerate's hooks wrap), so ``enable_model_cpu_offload``
moves each component to the accelerator when it runs (``model_cpu_offload_seq``).
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Sequence
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from lagernvs.cameras import Cameras, plucker_rays
from lagernvs.data.images import Images, load_images
from lagernvs.data.model_inputs import (
    check_source_images,
    condition_cameras,
    crop_resize_views,
    model_input_size,
    unposed_camera_tokens,
)
from lagernvs.data.scene import Scene
from lagernvs.diffusion.denoiser import (  # noqa: F401 (diffusers loads DenoisingRenderer by name)
    DenoisingRenderer,
    PreparedScene,
)
from lagernvs.diffusion.objective import (
    sampling_timesteps,
    scheduler_add_noise,
    x0_to_model_output,
)
from lagernvs.models import LagerNVSModel, VGGTCameraEstimator
from lagernvs.models.checkpoints import local_folder
from lagernvs.pipeline.estimation import check_estimator, estimate_source_cameras, wants_estimate
from lagernvs.pipeline.inputs import (
    Generator,
    Mode,
    OutputType,
    RenderOptions,
    StepCallback,
    as_cameras,
    callback_tensor_inputs,
    check_encode_inputs,
    check_render_options,
)
from lagernvs.pipeline.output import EncodedScene, LagerNVSPipelineOutput, postprocess_images

__all__ = ["LagerNVSPipeline"]


class LagerNVSPipeline(DiffusionPipeline):
    """Feed-forward novel view synthesis with LagerNVS.

    Args:
        model: the deterministic encoder-renderer.
        denoiser: optional diffusion decoder (``mode="sampled"``).
        scheduler: optional diffusers scheduler for the denoiser.
        camera_estimator: optional VGGT camera estimator (``source_cameras="estimate"``).

    Example::

        pipe = LagerNVSPipeline.from_pretrained("path/to/model")
        targets = Cameras.look_at(eye=[[0.1, 0, 0]], target=[[0, 0, 1]], image_size=(256, 256))
        views = pipe([img0, img1], target_cameras=targets).images   # unposed input
    """

    model_cpu_offload_seq = "model->denoiser"
    _optional_components = ["denoiser", "scheduler", "camera_estimator"]

    def __init__(
        self,
        model: LagerNVSModel,
        denoiser: torch.nn.Module | None = None,
        scheduler: Any | None = None,
        camera_estimator: VGGTCameraEstimator | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(
            model=model, denoiser=denoiser, scheduler=scheduler, camera_estimator=camera_estimator
        )

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> LagerNVSPipeline:
        """Load a ``save_pretrained`` folder (diffusers' loader, ``torch_dtype`` / ``dtype``
        included). Local only: LagerNVS weights are not on the Hub, so a folder that does not
        exist is said to be missing at once instead of being looked up there."""
        local_folder(pretrained_model_name_or_path, "pipeline folder")
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def from_original_checkpoint(
        cls, path: str | os.PathLike, preset: str, **model_overrides: Any
    ) -> LagerNVSPipeline:
        """A pipeline around an official LagerNVS ``model.pt`` (see
        :meth:`LagerNVSModel.from_original_checkpoint`), e.g. preset ``"re10k_2v_256"``."""
        return cls(model=LagerNVSModel.from_original_checkpoint(path, preset, **model_overrides))

    # ------------------------------------------------------------------ checks

    def check_inputs(
        self,
        frames: list[Tensor] | None = None,
        source_cameras: Cameras | Scene | str | None = None,
        target_cameras: Any = None,
        options: RenderOptions | None = None,
        scene: EncodedScene | None = None,
    ) -> None:
        """Validate user input once, before any work: source images (converted by
        :func:`~lagernvs.data.images.load_images`, which checks each image) against their
        cameras when ``frames`` are given; target cameras, render options and the scene when
        ``options`` are given. Raises a one-line ValueError naming the problem and the fix."""
        if frames is not None:
            check_source_images(frames)
            if wants_estimate(source_cameras):
                check_estimator(self.camera_estimator)
            else:
                check_encode_inputs(frames, source_cameras)
        if options is not None:
            check_render_options(
                options, target_cameras, self.model.config, scene, self.denoiser, self.scheduler
            )

    # ------------------------------------------------------------------ encode

    @torch.no_grad()
    def encode(
        self, images: Images, source_cameras: Cameras | Scene | str | None = None
    ) -> EncodedScene:
        """Encode V source views once; render them any number of times with :meth:`render`.

        Args:
            images: V images (PIL, numpy (H, W, 3) uint8 or float in [0, 1], tensors (3, H, W)
                or a stacked (V, 3, H, W) tensor, file paths or encoded bytes). Any size: each is
                centre-cropped to the model's aspect ratio and resized to its image size. Without
                cameras all images must have one size.
            source_cameras: one camera per image, with the image's size (posed input), None
                (unposed input: camera information zeroed, targets in the first source frame),
                or ``"estimate"``: cameras estimated by the pipeline's ``camera_estimator`` and
                used as posed (first source camera at the origin, normalised scale).
        """
        frames = load_images(images)
        self.check_inputs(frames, source_cameras)
        if wants_estimate(source_cameras):
            frames, source_cameras = estimate_source_cameras(self.camera_estimator, frames)
        return self._encode(frames, source_cameras)

    def _encode(self, frames: list[Tensor], source_cameras: Cameras | Scene | None) -> EncodedScene:
        size = model_input_size(self.model.config, frames[0].shape[-2:])
        cameras, scale = None, 1.0
        if source_cameras is None:
            sources, _ = crop_resize_views(frames, size)
            tokens = unposed_camera_tokens(len(frames))
        else:
            given = as_cameras(source_cameras, "source_cameras").to("cpu")
            sources, intrinsics = crop_resize_views(frames, size, given.fxfycxcy)
            conditioning = condition_cameras(
                given.c2w, intrinsics, size, len(given), with_rays=False
            )
            tokens, scale = conditioning.tokens, float(conditioning.normalization.scene_scale)
            cameras = Cameras(given.c2w, intrinsics, size, validate=False)
        device, dtype = self._execution_device, self.model.dtype
        scene_tokens = self.model.encode(
            sources[None].to(device, dtype), tokens[None].to(device, dtype)
        )
        return EncodedScene(
            scene_tokens=scene_tokens,
            source_images=sources,
            source_cameras=cameras,
            scene_scale=scale,
            prepared=self.model.prepare_scene(scene_tokens),
        )

    # ------------------------------------------------------------------ render

    @torch.no_grad()
    def render(
        self,
        scene: EncodedScene,
        target_cameras: Cameras,
        mode: Mode = "deterministic",
        height: int | None = None,
        width: int | None = None,
        chunk_size: int | None = 8,
        generator: Generator = None,
        output_type: OutputType = "pt",
        return_dict: bool = True,
        num_inference_steps: int = 50,
        timesteps: Sequence[int] | None = None,
        guidance_scale: float = 1.0,
        guidance_start: float = 0.0,
        guidance_end: float = 1.0,
        strength: float = 1.0,
        num_images_per_prompt: int | None = None,
        same_noise: bool = False,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        num_samples: int | None = None,
    ) -> LagerNVSPipelineOutput | tuple[Any, Cameras]:
        """Render ``target_cameras`` from an encoded scene (default output: a (T, 3, H, W) tensor).

        Args:
            scene: from :meth:`encode`.
            target_cameras: T cameras. Posed scenes: in the sources' world frame. Unposed
                scenes: in the first source camera's frame at the normalised scale (the
                farthest source camera at distance 1/1.35 from the first).
            mode: ``"deterministic"`` (one forward pass) or ``"sampled"`` (diffusion decoder).
            height, width: rendered size (default the model's image size); multiples of the
                model's patch size. Target intrinsics are cropped/resized to it.
            chunk_size: target views (times samples) per forward pass (bounds memory; None: all).
            generator: for ``mode="sampled"``: one torch generator, or a list of
                ``num_images_per_prompt`` (one per sample, so that sample i does not depend on
                how many are drawn).
            output_type: ``"pt"``, ``"np"`` or ``"pil"``.
            return_dict: return a :class:`LagerNVSPipelineOutput` (else a tuple).
            num_inference_steps: scheduler steps of ``mode="sampled"`` (for strength 1).
            timesteps: custom timesteps of ``mode="sampled"``, from the noisiest down (for
                schedulers whose ``set_timesteps`` takes them: DDPM, DPM-Solver++, LCM, TCD);
                they replace ``num_inference_steps`` (diffusers' convention).
            guidance_scale: classifier-free guidance of ``mode="sampled"`` (1 = none, 0 = the
                unconditional branch only).
            guidance_start, guidance_end: the span of the sampling, as fractions of its steps
                from the noisiest, in which guidance applies (a guidance interval; the other
                steps skip the unconditional pass). Default: all steps.
            strength: in (0, 1]; below 1 sampling starts from the deterministic render noised
                to that level, so it only invents what the deterministic model could not see.
            num_images_per_prompt: samples per target view (default 1); the output holds each
                target's samples consecutively (T * num_images_per_prompt images), the encoder
                having run once for all of them.
            same_noise: give every target view the same initial noise (consistent videos
                with a deterministic scheduler, DDIM or DPM-Solver++; those that draw noise
                at every step, DDPM or LCM, draw it per view).
            callback_on_step_end: called after each sampling step as ``callback(pipe,
                step_index, timestep, callback_kwargs)`` (diffusers' convention, also a
                ``PipelineCallback``); ``callback_kwargs`` holds the tensors named in
                ``callback_on_step_end_tensor_inputs``, and a returned dict replaces them.
                ``"latents"``: the current samples (num_images_per_prompt, T, 3, H, W) in [-1, 1].
            callback_on_step_end_tensor_inputs: see ``callback_on_step_end``.
            num_samples: the former name of ``num_images_per_prompt``, still accepted.
        """
        options = RenderOptions.from_arguments(locals())
        self.check_inputs(target_cameras=target_cameras, options=options, scene=scene)
        output = self._render(scene, target_cameras, options, return_dict)
        self.maybe_free_model_hooks()
        return output

    def _render(
        self,
        scene: EncodedScene,
        target_cameras: Cameras,
        options: RenderOptions,
        return_dict: bool,
    ) -> LagerNVSPipelineOutput | tuple[Any, Cameras]:
        size = options.size(self.model.config)
        cameras = as_cameras(target_cameras, "target_cameras").crop_resize(size)
        device = self._execution_device
        c2w, fxfycxcy = scene.model_frame(cameras), cameras.fxfycxcy.float().cpu()
        rays = plucker_rays(c2w.to(device), fxfycxcy.to(device), *size)
        if options.mode == "sampled":
            images = self._render_sampled(scene, rays, options)
        else:
            images = self._render_deterministic(scene, rays, options.chunk_size)
        output = postprocess_images(images, options.output_type)
        if not return_dict:
            return output, cameras
        return LagerNVSPipelineOutput(images=output, cameras=cameras)

    def _render_deterministic(
        self, scene: EncodedScene, rays: Tensor, chunk_size: int | None
    ) -> Tensor:
        """(T, 3, H, W) renders of ray maps (T, 6, H, W), ``chunk_size`` views per forward."""
        step = chunk_size or rays.shape[0]
        starts = range(0, rays.shape[0], step)
        outputs = []
        for start in self.progress_bar(starts) if len(starts) > 1 else starts:
            chunk = rays[None, start : start + step].to(self.model.dtype)
            outputs.append(self.model.render_prepared(scene.prepared, chunk)[0].float())
        return torch.cat(outputs)

    def _render_sampled(self, scene: EncodedScene, rays: Tensor, options: RenderOptions) -> Tensor:
        """(T * num_images_per_prompt, 3, H, W) samples of the diffusion decoder.

        ``latents`` (S, T, 3, H, W) hold the S = ``num_images_per_prompt`` samples of the T
        targets in the diffusion range [-1, 1]. The denoiser sees the samples side by side with
        the targets, (1, S * T, ...) sample-major: targets never attend to each other, so one
        forward pass per step (per chunk) denoises them all.
        """
        device, generator = self._execution_device, options.generator
        count, strength = options.num_images_per_prompt, options.strength
        targets, _, height, width = rays.shape
        shape = (count, targets, 3, height, width)

        # 1. Timesteps: a copy of the scheduler is stepped (concurrent renders, as the viewer's,
        # keep their own state); strength < 1 keeps the last steps (diffusers' img2img rule).
        scheduler = copy.deepcopy(self.scheduler)
        timesteps = sampling_timesteps(
            scheduler, options.num_inference_steps, strength, device, options.timesteps
        )
        deterministic = None
        if strength < 1:
            deterministic = self._render_deterministic(scene, rays, options.chunk_size)
            if len(timesteps) == 0:  # no step left: the deterministic render itself
                return deterministic.repeat_interleave(count, dim=0)

        # 2. Initial latents: noise (shared by all targets with same_noise), or the
        # deterministic render noised to the first timestep.
        noise_shape = (count, 1 if options.same_noise else targets, 3, height, width)
        noise = randn_tensor(noise_shape, generator=generator, device=device, dtype=torch.float32)
        noise = noise.expand(shape)
        if deterministic is None:
            latents = noise * getattr(scheduler, "init_noise_sigma", 1.0)  # flow: none, sigma 1
        else:
            start = (deterministic * 2 - 1).expand(shape)
            latents = scheduler_add_noise(scheduler, start, noise, timesteps[:1].repeat(count))

        # 3. The scene (and the null scene for guidance), prepared once for every step.
        tokens = scene.scene_tokens.to(device, self.denoiser.dtype)
        conditional = self.denoiser.prepare_scene(tokens)
        unconditional = None
        if any(options.guided(i, len(timesteps)) for i in range(len(timesteps))):
            unconditional = self.denoiser.prepare_scene(tokens, drop_scene=True)
        rays = rays.to(self.denoiser.dtype).repeat(count, 1, 1, 1)[None]  # (1, S*T, 6, H, W)

        # 4. Denoising: predict x0 (conditional and unconditional), combine, step (the
        # generator goes to schedulers whose step draws noise, diffusers' extra_step_kwargs rule).
        step_kwargs = {}
        if "generator" in inspect.signature(scheduler.step).parameters:
            step_kwargs["generator"] = generator
        callback, callback_inputs = options.callback_on_step_end, callback_tensor_inputs(options)
        for step_index, timestep in enumerate(self.progress_bar(timesteps)):
            model_input = latents
            if hasattr(scheduler, "scale_model_input"):  # flow schedulers have none
                model_input = scheduler.scale_model_input(latents, timestep)
            x0 = self._predict_x0(conditional, model_input, timestep, rays, options.chunk_size)
            if options.guided(step_index, len(timesteps)):
                x0_null = self._predict_x0(
                    unconditional, model_input, timestep, rays, options.chunk_size
                )
                x0 = x0_null + options.guidance_scale * (x0 - x0_null)
            output = x0_to_model_output(scheduler, x0, model_input, timestep)
            latents = scheduler.step(output, timestep, latents, **step_kwargs).prev_sample
            if callback is not None:
                state = {"latents": latents}
                kwargs = {name: state[name] for name in callback_inputs}
                returned = callback(self, step_index, timestep, kwargs) or {}
                latents = returned.get("latents", latents)
        return ((latents + 1) / 2).clamp(0.0, 1.0).transpose(0, 1).flatten(0, 1)

    def _predict_x0(
        self,
        scene: PreparedScene,
        latents: Tensor,
        timestep: Tensor,
        rays: Tensor,
        chunk_size: int | None,
    ) -> Tensor:
        """The denoiser's clean images (S, T, 3, H, W) of ``latents`` (S, T, 3, H, W), with
        the samples folded into its target axis, ``chunk_size`` views per call."""
        noisy = latents.flatten(0, 1)[None].to(self.denoiser.dtype)  # (1, S*T, 3, H, W)
        size = chunk_size or noisy.shape[1]
        chunks = [
            self.denoiser(noisy[:, i : i + size], timestep, rays[:, i : i + size], scene)
            for i in range(0, noisy.shape[1], size)
        ]
        return torch.cat(chunks, dim=1)[0].float().view_as(latents)

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        images: Images,
        source_cameras: Cameras | Scene | str | None = None,
        *,
        target_cameras: Cameras,
        mode: Mode = "deterministic",
        height: int | None = None,
        width: int | None = None,
        chunk_size: int | None = 8,
        generator: Generator = None,
        output_type: OutputType = "pil",
        return_dict: bool = True,
        num_inference_steps: int = 50,
        timesteps: Sequence[int] | None = None,
        guidance_scale: float = 1.0,
        guidance_start: float = 0.0,
        guidance_end: float = 1.0,
        strength: float = 1.0,
        num_images_per_prompt: int | None = None,
        same_noise: bool = False,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        num_samples: int | None = None,
    ) -> LagerNVSPipelineOutput | tuple[Any, Cameras]:
        """Render ``target_cameras`` of the scene shown by ``images``: :meth:`encode` then
        :meth:`render` (see both for the arguments). Returns PIL images by default."""
        options = RenderOptions.from_arguments(locals())
        frames = load_images(images)
        self.check_inputs(frames, source_cameras, target_cameras, options)
        if wants_estimate(source_cameras):
            frames, source_cameras = estimate_source_cameras(self.camera_estimator, frames)
        scene = self._encode(frames, source_cameras)
        output = self._render(scene, target_cameras, options, return_dict)
        self.maybe_free_model_hooks()
        return output
