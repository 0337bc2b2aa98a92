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
diffusion decoder used by ``mode="sampled"``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from torch import Tensor

from lagernvs.cameras import Cameras, plucker_rays
from lagernvs.data.images import Images, load_images
from lagernvs.data.model_inputs import condition_cameras, crop_resize_views, unposed_camera_tokens
from lagernvs.data.scene import Scene
from lagernvs.diffusion.denoiser import DenoisingRenderer  # noqa: F401 (diffusers loads it by name)
from lagernvs.models import LagerNVSModel
from lagernvs.pipeline.inputs import (
    Generator,
    Mode,
    OutputType,
    RenderOptions,
    as_cameras,
    check_encode_inputs,
    check_render_options,
)
from lagernvs.pipeline.output import EncodedScene, LagerNVSPipelineOutput

__all__ = ["LagerNVSPipeline"]


class LagerNVSPipeline(DiffusionPipeline):
    """Feed-forward novel view synthesis with LagerNVS.

    Args:
        model: the deterministic encoder-renderer.
        denoiser: optional diffusion decoder (``mode="sampled"``).
        scheduler: optional diffusers scheduler for the denoiser.

    Example::

        pipe = LagerNVSPipeline.from_pretrained("path/to/model")
        targets = Cameras.look_at(eye=[[0.1, 0, 0]], target=[[0, 0, 1]], image_size=(256, 256))
        views = pipe([img0, img1], target_cameras=targets).images   # unposed input
    """

    model_cpu_offload_seq = "model"
    _optional_components = ["denoiser", "scheduler"]

    def __init__(
        self,
        model: LagerNVSModel,
        denoiser: torch.nn.Module | None = None,
        scheduler: Any | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(model=model, denoiser=denoiser, scheduler=scheduler)

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
        source_cameras: Cameras | Scene | None = None,
        target_cameras: Any = None,
        options: RenderOptions | None = None,
        scene: EncodedScene | None = None,
    ) -> None:
        """Validate user input once, before any work: source images (converted by
        :func:`~lagernvs.data.images.load_images`, which checks each image) against their
        cameras when ``frames`` are given; target cameras, render options and the scene when
        ``options`` are given. Raises a one-line ValueError naming the problem and the fix."""
        if frames is not None:
            check_encode_inputs(frames, source_cameras)
        if options is not None:
            missing = next((n for n in ("denoiser", "scheduler") if getattr(self, n) is None), None)
            check_render_options(options, target_cameras, self.model.config, scene, missing)

    # ------------------------------------------------------------------ encode

    @torch.no_grad()
    def encode(self, images: Images, source_cameras: Cameras | Scene | None = None) -> EncodedScene:
        """Encode V source views once; render them any number of times with :meth:`render`.

        Args:
            images: V images (PIL, numpy (H, W, 3) uint8 or float in [0, 1], tensors (3, H, W)
                or a stacked (V, 3, H, W) tensor, file paths or encoded bytes). Any size: each is
                centre-cropped to the model's aspect ratio and resized to its image size. Without
                cameras all images must have one size.
            source_cameras: one camera per image, with the image's size (posed input), or None
                (unposed input: camera information zeroed, targets in the first source frame).
        """
        frames = load_images(images)
        self.check_inputs(frames, source_cameras)
        return self._encode(frames, source_cameras)

    def _encode(self, frames: list[Tensor], source_cameras: Cameras | Scene | None) -> EncodedScene:
        size = self.model.image_size
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
            prepared=self.model.renderer.prepare_scene(scene_tokens),
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
        guidance_scale: float = 1.0,
        strength: float = 1.0,
        num_samples: int = 1,
        same_noise: bool = False,
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
            chunk_size: target views rendered per forward pass (bounds memory; None: all).
            generator: random generator(s) for ``mode="sampled"``.
            output_type: ``"pt"``, ``"np"`` or ``"pil"``.
            return_dict: return a :class:`LagerNVSPipelineOutput` (else a tuple).
            num_inference_steps: scheduler steps of ``mode="sampled"`` (for strength 1).
            guidance_scale: classifier-free guidance of ``mode="sampled"`` (1 = none).
            strength: in (0, 1]; below 1 sampling starts from the deterministic render noised
                to that level, so it only invents what the deterministic model could not see.
            num_samples: samples per target view; the output holds each target's samples
                consecutively (T * num_samples images, the diffusers ``num_images_per_prompt``
                layout), the encoder having run once for all of them.
            same_noise: give every target view the same initial noise (consistent videos).
        """
        options = RenderOptions(
            mode, height, width, chunk_size, generator, output_type,
            num_inference_steps, guidance_scale, strength, num_samples, same_noise,
        )  # fmt: skip
        self.check_inputs(target_cameras=target_cameras, options=options, scene=scene)
        return self._render(scene, target_cameras, options, return_dict)

    def _render(
        self,
        scene: EncodedScene,
        target_cameras: Cameras,
        options: RenderOptions,
        return_dict: bool,
    ) -> LagerNVSPipelineOutput | tuple[Any, Cameras]:
        size = options.size(self.model.config)
        cameras = as_cameras(target_cameras, "target_cameras").crop_resize(size)
        c2w = scene.model_frame(cameras)
        fxfycxcy = cameras.fxfycxcy.float().cpu()
        if options.mode == "sampled":
            images = self._render_sampled(scene, c2w, fxfycxcy, size, options)
        else:
            images = self._render_deterministic(scene, c2w, fxfycxcy, size, options.chunk_size)
        output = self._postprocess(images, options.output_type)
        if not return_dict:
            return output, cameras
        return LagerNVSPipelineOutput(images=output, cameras=cameras)

    def _render_deterministic(
        self,
        scene: EncodedScene,
        c2w: Tensor,
        fxfycxcy: Tensor,
        size: tuple[int, int],
        chunk_size: int | None,
    ) -> Tensor:
        """(T, 3, H, W) renders of model-frame cameras, ``chunk_size`` views per forward."""
        device, dtype = self._execution_device, self.model.dtype
        step = chunk_size or c2w.shape[0]
        starts = range(0, c2w.shape[0], step)
        outputs = []
        for start in self.progress_bar(starts) if len(starts) > 1 else starts:
            stop = start + step
            rays = plucker_rays(c2w[start:stop].to(device), fxfycxcy[start:stop].to(device), *size)
            views = self.model.renderer.render_views(scene.prepared, rays[None].to(dtype))[0]
            outputs.append(views.float())
        return torch.cat(outputs)

    def _render_sampled(
        self,
        scene: EncodedScene,
        c2w: Tensor,
        fxfycxcy: Tensor,
        size: tuple[int, int],
        options: RenderOptions,
    ) -> Tensor:
        """(T * num_samples, 3, H, W) samples of the diffusion decoder for model-frame cameras."""
        from lagernvs.diffusion.sampling import sample_views

        device = self._execution_device
        rays = plucker_rays(c2w.to(device), fxfycxcy.to(device), *size)[None]
        deterministic = None
        if options.strength < 1:
            deterministic = self._render_deterministic(
                scene, c2w, fxfycxcy, size, options.chunk_size
            )[None].to(device)
        samples = sample_views(
            self.denoiser,
            self.scheduler,
            scene.scene_tokens.to(device, self.denoiser.dtype),
            rays.to(self.denoiser.dtype),
            num_inference_steps=options.num_inference_steps,
            guidance_scale=options.guidance_scale,
            strength=options.strength,
            generator=options.generator,
            num_samples=options.num_samples,
            deterministic_render=deterministic,
            same_noise=options.same_noise,
            progress=self.progress_bar,
            chunk_size=options.chunk_size,
        )
        return samples[:, 0].transpose(0, 1).flatten(0, 1).float()

    @staticmethod
    def _postprocess(
        images: Tensor, output_type: str
    ) -> list[PIL.Image.Image] | np.ndarray | Tensor:
        images = images.clamp(0.0, 1.0)
        if output_type == "pt":
            return images
        array = VaeImageProcessor.pt_to_numpy(images)
        return array if output_type == "np" else VaeImageProcessor.numpy_to_pil(array)

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        images: Images,
        source_cameras: Cameras | Scene | None = None,
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
        guidance_scale: float = 1.0,
        strength: float = 1.0,
        num_samples: int = 1,
        same_noise: bool = False,
    ) -> LagerNVSPipelineOutput | tuple[Any, Cameras]:
        """Render ``target_cameras`` of the scene shown by ``images``: :meth:`encode` then
        :meth:`render` (see both for the arguments). Returns PIL images by default."""
        options = RenderOptions(
            mode, height, width, chunk_size, generator, output_type,
            num_inference_steps, guidance_scale, strength, num_samples, same_noise,
        )  # fmt: skip
        frames = load_images(images)
        self.check_inputs(frames, source_cameras, target_cameras, options)
        scene = self._encode(frames, source_cameras)
        return self._render(scene, target_cameras, options, return_dict)
