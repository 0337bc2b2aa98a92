"""`LagerNVSPipeline`: images (+ cameras) in, novel views out, as a diffusers pipeline.

The pipeline owns everything between user inputs and the model's tensors:

* source images of any type and size are centre-cropped and resized to the model's image size
  exactly as the reference data pipeline does (:mod:`lagernvs.data.preprocess`), and their
  intrinsics adjusted to match;
* posed input (``source_cameras`` given): all cameras are expressed relative to the first
  source camera and rescaled (:func:`lagernvs.cameras.normalize_scene`); unposed input
  (``source_cameras=None``): the sources' camera information is zeroed and target cameras are
  read as already living in the first source camera's frame at the normalised scale;
* :meth:`LagerNVSPipeline.encode` runs the encoder once per scene into a
  :class:`LagerNVSScene`; :meth:`LagerNVSPipeline.render` renders any number of target cameras
  from it in chunks (what an interactive viewer calls per frame); ``__call__`` is both.

Components: ``model`` (:class:`~lagernvs.models.LagerNVSModel`), and the optional ``denoiser`` and
``scheduler`` of the diffusion decoder used by ``mode="sampled"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from torch import Tensor

from lagernvs.camera_batch import Cameras
from lagernvs.cameras import (
    SCENE_SCALE_FACTOR,
    camera_tokens,
    normalize_scene,
    plucker_rays,
    zero_conditioning_cameras,
)
from lagernvs.data.images import image_to_tensor, read_image
from lagernvs.data.preprocess import crop_resize_images
from lagernvs.data.scene import Scene
from lagernvs.diffusion.denoiser import DenoisingRenderer  # noqa: F401 (diffusers loads it by name)
from lagernvs.models import LagerNVSModel

__all__ = ["LagerNVSPipeline", "LagerNVSPipelineOutput", "LagerNVSScene"]

ImageInput = PIL.Image.Image | np.ndarray | Tensor | str | os.PathLike
Images = ImageInput | Sequence[ImageInput]
OutputType = Literal["pil", "np", "pt"]
class SamplingOptions(NamedTuple):
    """Arguments of ``mode="sampled"`` (validated by :func:`~lagernvs.diffusion.sample_views`)."""

    num_inference_steps: int
    guidance_scale: float
    strength: float
    num_samples: int
    same_noise: bool


Mode = Literal["deterministic", "sampled"]
MODES = ("deterministic", "sampled")
OUTPUT_TYPES = ("pil", "np", "pt")
_MIN_RELATIVE_SPREAD = 1e-9
"""Posed sources closer than this (relative to their coordinates) count as one position."""


@dataclass
class LagerNVSPipelineOutput(BaseOutput):
    """Rendered views and the cameras they were rendered with.

    Attributes:
        images: T PIL images, a (T, H, W, 3) float32 array in [0, 1] or a (T, 3, H, W) tensor.
        cameras: the T target cameras actually rendered: the given poses, intrinsics adjusted
            to the rendered image size (H, W).
    """

    images: list[PIL.Image.Image] | np.ndarray | Tensor
    cameras: Cameras


@dataclass
class LagerNVSScene:
    """An encoded scene: what :meth:`LagerNVSPipeline.render` needs to render new views.

    Attributes:
        scene_tokens: (1, V, Np, W) encoder output.
        source_images: (V, 3, H, W) the source images as the model saw them (model image size).
        source_cameras: the source cameras after crop/resize to the model image size, in the
            user's world frame; None for unposed input.
        world_to_model: (4, 4) float64 transform from the user's world frame to the model's
            (the inverse of the first source pose; identity when unposed).
        scene_scale: divisor of camera centres in the model's frame (1 when unposed).
        prepared: the renderer's per-scene cache (e.g. cross-attention keys/values).
    """

    scene_tokens: Tensor
    source_images: Tensor
    source_cameras: Cameras | None
    world_to_model: Tensor
    scene_scale: float
    prepared: Any

    @property
    def posed(self) -> bool:
        return self.source_cameras is not None

    @property
    def num_views(self) -> int:
        return self.scene_tokens.shape[1]

    def model_frame(self, cameras: Cameras) -> Tensor:
        """c2w (T, 4, 4) float64 of ``cameras`` in the model's normalised frame."""
        c2w = self.world_to_model @ cameras.c2w.to(torch.float64).cpu()
        c2w[:, :3, 3] = c2w[:, :3, 3] / self.scene_scale
        return c2w


def _image_tensor(image: ImageInput, index: int) -> list[Tensor]:
    """One input (a single image, or a stacked batch of images) -> list of (3, H, W) float."""
    if isinstance(image, (str, os.PathLike)):
        return [read_image(Path(image))]
    if isinstance(image, PIL.Image.Image):
        return [image_to_tensor(image)]
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim not in (3, 4) or array.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"image {index}: numpy images must be (H, W), (H, W, C) or (V, H, W, C) with C "
                f"in 1, 3, 4, got shape {array.shape}"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array)).movedim(-1, -3)
    elif isinstance(image, Tensor):
        tensor = image
        if tensor.dim() not in (3, 4) or tensor.shape[-3] not in (1, 3, 4):
            raise ValueError(
                f"image {index}: tensors must be (3, H, W) or (V, 3, H, W), got shape "
                f"{tuple(tensor.shape)}; one scene per call"
            )
    else:
        raise ValueError(
            f"image {index} has unsupported type {type(image).__name__}; pass PIL images, numpy "
            "arrays (H, W, 3), tensors (3, H, W) in [0, 1] or image file paths"
        )
    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255.0
    elif tensor.is_floating_point():
        tensor = tensor.float()
    else:
        raise ValueError(f"image {index}: expected uint8 or float values, got {tensor.dtype}")
    channels = tensor.shape[-3]
    tensor = tensor.expand(*tensor.shape[:-3], 3, *tensor.shape[-2:]) if channels == 1 else tensor
    tensor = tensor[..., :3, :, :]
    return list(tensor) if tensor.dim() == 4 else [tensor]


def load_images(images: Images) -> list[Tensor]:
    """User images -> list of (3, H, W) float32 tensors in [0, 1] (sizes may differ)."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images is empty; pass at least one source image")
        frames = [t for i, image in enumerate(images) for t in _image_tensor(image, i)]
    else:
        frames = _image_tensor(images, 0)
    for index, frame in enumerate(frames):
        if frame.shape[-1] == 0 or frame.shape[-2] == 0:
            raise ValueError(f"image {index} is empty ({tuple(frame.shape)})")
        if not bool(torch.isfinite(frame).all()):
            raise ValueError(f"image {index} contains NaN or infinite values")
        low, high = float(frame.min()), float(frame.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"image {index} has values in [{low:.3g}, {high:.3g}]; float images must be in "
                "[0, 1] (divide 8-bit values by 255)"
            )
    return frames


def _crop_resize_all(frames: list[Tensor], size: tuple[int, int]) -> Tensor:
    """(V, 3, H, W) frames cropped/resized to ``size``, one vectorised pass per input size."""
    out = torch.empty(len(frames), 3, *size)
    shapes = [tuple(f.shape[-2:]) for f in frames]
    for shape in set(shapes):
        index = [i for i, s in enumerate(shapes) if s == shape]
        out[index] = crop_resize_images(torch.stack([frames[i] for i in index]), size)
    return out


def _as_cameras(cameras: Cameras | Scene, name: str) -> Cameras:
    if isinstance(cameras, Scene):
        return Cameras.from_scene(cameras)
    if not isinstance(cameras, Cameras):
        raise ValueError(
            f"{name} must be lagernvs.Cameras (or a Scene), got {type(cameras).__name__}; build "
            "them with Cameras(c2w, fxfycxcy, image_size) or Cameras.look_at(...)"
        )
    return cameras


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

    # ------------------------------------------------------------------ encode

    @torch.no_grad()
    def encode(
        self, images: Images, source_cameras: Cameras | Scene | None = None
    ) -> LagerNVSScene:
        """Encode V source views once; render them any number of times with :meth:`render`.

        Args:
            images: V images (PIL, numpy (H, W, 3) uint8 or float in [0, 1], tensors (3, H, W)
                or a stacked (V, 3, H, W) tensor, or file paths). Any size: each is centre-cropped
                to the model's aspect ratio and resized to its image size. Without cameras all
                images must have one size.
            source_cameras: one camera per image, with the image's size (posed input), or None
                (unposed input: camera information zeroed, targets in the first source frame).
        """
        frames = load_images(images)
        size = self.model.image_size
        device, dtype = self._execution_device, self.model.dtype
        if source_cameras is None:
            sizes = {tuple(f.shape[-2:]) for f in frames}
            if len(sizes) > 1:
                raise ValueError(
                    f"images of mixed sizes {sorted(sizes)} need source_cameras (each camera "
                    "describes its own image); resize them to one size or pass cameras"
                )
            sources = _crop_resize_all(frames, size)
            tokens = self._unposed_tokens(len(frames))
            cameras, world_to_model, scale = None, torch.eye(4, dtype=torch.float64), 1.0
        else:
            cameras = _as_cameras(source_cameras, "source_cameras")
            self._check_source_cameras(frames, cameras)
            sources = _crop_resize_all(frames, size)
            cameras = cameras.crop_resize(size)
            tokens, world_to_model, scale = self._posed_tokens(cameras)
        scene_tokens = self.model.encode(
            sources[None].to(device, dtype), tokens[None].to(device, dtype)
        )
        return LagerNVSScene(
            scene_tokens=scene_tokens,
            source_images=sources,
            source_cameras=cameras,
            world_to_model=world_to_model,
            scene_scale=scale,
            prepared=self.model.renderer.prepare_scene(scene_tokens),
        )

    @staticmethod
    def _check_source_cameras(frames: list[Tensor], cameras: Cameras) -> None:
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

    def _posed_tokens(self, cameras: Cameras) -> tuple[Tensor, Tensor, float]:
        """Camera tokens (V, 11), world->model transform and scene scale of posed sources."""
        height, width = self.model.image_size
        count = len(cameras)
        c2w = cameras.c2w.to(torch.float64).cpu()
        centres = c2w[:, :3, 3]
        spread = float(torch.linalg.vector_norm(centres - centres[:1], dim=-1).max())
        if count >= 2 and spread <= _MIN_RELATIVE_SPREAD * (1.0 + float(centres.abs().max())):
            raise ValueError(
                "the source cameras all sit at the same position, so the scene scale is "
                "undefined; pass cameras at distinct positions, or source_cameras=None"
            )
        norm = normalize_scene(c2w, count)
        tokens = camera_tokens(
            norm.c2w,
            cameras.fxfycxcy.to(torch.float64).cpu(),
            height,
            width,
            norm.camera_scale,
            count,
        )
        world_to_model = torch.linalg.inv(c2w[0])
        return tokens.float(), world_to_model, float(norm.scene_scale)

    def _unposed_tokens(self, count: int) -> Tensor:
        """Camera tokens (V, 11) of unposed sources: pose entries zero, scale entries as the
        reference computes them for any normalised scene (1/1.35 with >= 2 views)."""
        height, width = self.model.image_size
        c2w = torch.eye(4).expand(count, 4, 4)
        intrinsics = torch.tensor([width, width, width / 2, height / 2], dtype=torch.float32)
        tokens = camera_tokens(
            c2w, intrinsics.expand(count, 4), height, width, 1.0 / SCENE_SCALE_FACTOR, count
        )
        rays = tokens.new_zeros(count, 6, 1, 1)
        return zero_conditioning_cameras(rays, tokens, count)[1]

    # ------------------------------------------------------------------ render

    @torch.no_grad()
    def render(
        self,
        scene: LagerNVSScene,
        target_cameras: Cameras,
        mode: Mode = "deterministic",
        height: int | None = None,
        width: int | None = None,
        chunk_size: int = 8,
        generator: torch.Generator | list[torch.Generator] | None = None,
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
            chunk_size: target views rendered per forward pass (bounds memory).
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
        self._check_call_options(mode, output_type, chunk_size)
        if not isinstance(scene, LagerNVSScene):
            raise ValueError(f"scene must come from pipe.encode(...), got {type(scene).__name__}")
        cameras = _as_cameras(target_cameras, "target_cameras")
        if len(cameras) == 0:
            raise ValueError("target_cameras is empty; pass at least one camera")
        size = self._render_size(height, width)
        cameras = cameras.crop_resize(size)
        c2w = scene.model_frame(cameras).float()
        fxfycxcy = cameras.fxfycxcy.float().cpu()
        if mode == "sampled":
            sampling = SamplingOptions(
                num_inference_steps, guidance_scale, strength, num_samples, same_noise
            )
            images = self._render_sampled(
                scene, c2w, fxfycxcy, size, chunk_size, generator, sampling
            )
        else:
            images = self._render_deterministic(scene, c2w, fxfycxcy, size, chunk_size)
        output = self._postprocess(images, output_type)
        if not return_dict:
            return output, cameras
        return LagerNVSPipelineOutput(images=output, cameras=cameras)

    def _render_deterministic(
        self,
        scene: LagerNVSScene,
        c2w: Tensor,
        fxfycxcy: Tensor,
        size: tuple[int, int],
        chunk_size: int,
    ) -> Tensor:
        """(T, 3, H, W) renders of model-frame cameras, ``chunk_size`` views per forward."""
        device, dtype = self._execution_device, self.model.dtype
        starts = range(0, c2w.shape[0], chunk_size)
        outputs = []
        for start in self.progress_bar(starts) if len(starts) > 1 else starts:
            stop = start + chunk_size
            rays = plucker_rays(c2w[start:stop].to(device), fxfycxcy[start:stop].to(device), *size)
            views = self.model.renderer.render_views(scene.prepared, rays[None].to(dtype))[0]
            outputs.append(views.float())
        return torch.cat(outputs)

    def _render_sampled(
        self,
        scene: LagerNVSScene,
        c2w: Tensor,
        fxfycxcy: Tensor,
        size: tuple[int, int],
        chunk_size: int,
        generator: torch.Generator | list[torch.Generator] | None,
        sampling: SamplingOptions,
    ) -> Tensor:
        """(T * num_samples, 3, H, W) samples of the diffusion decoder for model-frame cameras."""
        if self.denoiser is None or self.scheduler is None:
            raise ValueError(
                "mode='sampled' needs the diffusion decoder, but this pipeline has no "
                f"{'denoiser' if self.denoiser is None else 'scheduler'}; load a pipeline saved "
                "with a denoiser and scheduler, or use mode='deterministic'"
            )
        from lagernvs.diffusion.sampling import sample_views

        device = self._execution_device
        rays = plucker_rays(c2w.to(device), fxfycxcy.to(device), *size)[None]
        deterministic = None
        if isinstance(sampling.strength, (int, float)) and sampling.strength < 1:
            deterministic = self._render_deterministic(scene, c2w, fxfycxcy, size, chunk_size)
            deterministic = deterministic[None].to(device)
        samples = sample_views(
            self.denoiser,
            self.scheduler,
            scene.scene_tokens.to(device, self.denoiser.dtype),
            rays.to(self.denoiser.dtype),
            num_inference_steps=sampling.num_inference_steps,
            guidance_scale=sampling.guidance_scale,
            strength=sampling.strength,
            generator=generator,
            num_samples=sampling.num_samples,
            deterministic_render=deterministic,
            same_noise=sampling.same_noise,
            progress=self.progress_bar,
            chunk_size=chunk_size,
        )
        return samples[:, 0].transpose(0, 1).flatten(0, 1).float()

    def _render_size(self, height: int | None, width: int | None) -> tuple[int, int]:
        default_h, default_w = self.model.image_size
        size = (int(height or default_h), int(width or default_w))
        patch = self.model.config.patch_size
        if size[0] <= 0 or size[1] <= 0 or size[0] % patch or size[1] % patch:
            raise ValueError(
                f"render size {size[0]}x{size[1]} must be positive multiples of the model's "
                f"patch size {patch}"
            )
        return size

    @staticmethod
    def _check_call_options(mode: str, output_type: str, chunk_size: int) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")

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
        chunk_size: int = 8,
        generator: torch.Generator | list[torch.Generator] | None = None,
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
        self._check_call_options(mode, output_type, chunk_size)
        scene = self.encode(images, source_cameras)
        return self.render(
            scene,
            target_cameras,
            mode=mode,
            height=height,
            width=width,
            chunk_size=chunk_size,
            generator=generator,
            output_type=output_type,
            return_dict=return_dict,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            strength=strength,
            num_samples=num_samples,
            same_noise=same_noise,
        )
