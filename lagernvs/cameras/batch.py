"""`Cameras`: a batch of N pinhole cameras, the type users hand to the pipeline and paths.

A batch holds OpenCV camera-to-world matrices ``c2w`` (N, 4, 4), intrinsics ``fxfycxcy`` (N, 4)
in pixels of each camera's image, and the image sizes ``image_sizes`` (N, 2) as (H, W). It
behaves like a 1-D tensor batch: ``len``, indexing with ints, slices, index lists or boolean
masks, iteration, ``torch.cat([a, b])`` and ``.to(device, dtype)``. Values are validated on
construction (shapes, finiteness, proper rotations, positive focal lengths), so a bad camera
fails where it enters, with a message naming the problem.

The camera maths lives in the sibling modules as plain functions; this module only wraps it in a
batch type. It imports nothing from the data layer: :meth:`Cameras.from_scene` reads any object
with the attributes of :class:`SceneLike`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from .conventions import (
    crop_resize_intrinsics,
    fxfycxcy_to_K,
    opengl_to_opencv_c2w,
    validate_cameras,
    w2c_to_c2w,
)

__all__ = ["Cameras", "SceneLike"]

ArrayLike = Tensor | np.ndarray | Sequence[Any]
SizeLike = tuple[int, int] | Sequence[int] | Tensor | np.ndarray | Sequence[Sequence[int]]


def _numeric_tensor(value: Any, name: str) -> Tensor:
    """`value` as a real-valued tensor, or a one-line ValueError naming what is not a number."""
    if isinstance(value, Tensor):
        return value
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        raise ValueError(
            f"{name} must be a rectangular array of numbers (rows of equal length), got {value!r}"
        ) from None
    if array.dtype.kind not in "biuf":
        flat = array.ravel().tolist() if array.dtype != object else [value]
        offender = next((v for v in flat if not isinstance(v, int | float)), value)
        raise ValueError(
            f"{name} must hold numbers (a tensor, array or nested list), got {offender!r}"
        )
    return torch.as_tensor(array)


def _float_tensor(value: ArrayLike, name: str) -> Tensor:
    """`value` as a floating-point tensor (float64 numpy stays float64, ints become float32)."""
    tensor = _numeric_tensor(value, name)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    return tensor


def _matrices(value: ArrayLike, name: str) -> Tensor:
    """`value` as a floating-point tensor of 4x4 matrices (N, 4, 4)."""
    tensor = _float_tensor(value, name)
    if tensor.shape[-2:] != (4, 4):
        raise ValueError(f"{name} must have shape (N, 4, 4), got {tuple(tensor.shape)}")
    return tensor


def _sizes(image_size: SizeLike, count: int) -> Tensor:
    """(H, W) or (N, 2) image sizes -> (N, 2) int64, checked positive and integral."""
    sizes = _numeric_tensor(image_size, "image_size")
    if sizes.shape == (2,):
        sizes = sizes.expand(count, 2)
    if sizes.shape != (count, 2):
        raise ValueError(
            f"image_size must be (H, W) or one (H, W) row per camera ({count}, 2), got shape "
            f"{tuple(sizes.shape)}"
        )
    if sizes.is_floating_point() and not torch.equal(sizes, sizes.round()):
        raise ValueError(f"image sizes must be whole pixel counts, got {sizes.tolist()}")
    sizes = sizes.to(torch.int64)
    if sizes.numel() and int(sizes.min()) <= 0:
        raise ValueError(f"image sizes must be positive, got {sizes.tolist()}")
    return sizes.contiguous()


class SceneLike(Protocol):
    """What :meth:`Cameras.from_scene` reads from a scene (e.g. the data layer's ``Scene``)."""

    scene_id: str
    c2w: Tensor
    fxfycxcy: Tensor
    image_sizes: Tensor
    distortion: Tensor | None
    distortion_model: str | None

    def select(self, indices: Any) -> SceneLike:
        """The scene restricted to frames ``indices``."""
        ...


class Cameras:
    """N pinhole cameras: OpenCV ``c2w`` (N, 4, 4), ``fxfycxcy`` (N, 4), ``image_sizes`` (N, 2).

    Args:
        c2w: camera-to-world matrices (N, 4, 4) or one (4, 4), OpenCV axes (x right, y down,
            z forward); tensor, numpy array or nested lists. A (N, 3, 4) input gets the
            homogeneous row appended.
        fxfycxcy: intrinsics (N, 4) or one (4,) shared by all cameras, in pixels of the image
            (pixel centres at +0.5).
        image_size: (H, W) shared by all cameras, or (N, 2).
        validate: check the values (see :func:`lagernvs.cameras.validate_cameras`).
    """

    def __init__(
        self,
        c2w: ArrayLike,
        fxfycxcy: ArrayLike,
        image_size: SizeLike,
        validate: bool = True,
    ) -> None:
        c2w = _float_tensor(c2w, "c2w")
        if c2w.numel() == 0 and c2w.dim() < 3:
            raise ValueError(
                "c2w holds no cameras; give at least one (4, 4) camera-to-world matrix"
            )
        if c2w.dim() == 2:
            c2w = c2w[None]
        if c2w.dim() == 3 and c2w.shape[-2:] == (3, 4):
            bottom = c2w.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(c2w.shape[0], 1, 4)
            c2w = torch.cat([c2w, bottom], dim=1)
        if c2w.dim() != 3 or c2w.shape[-2:] != (4, 4):
            raise ValueError(
                f"c2w must have shape (N, 4, 4) (or (4, 4) for one camera), got {tuple(c2w.shape)}"
            )
        count = c2w.shape[0]
        fxfycxcy = _float_tensor(fxfycxcy, "fxfycxcy").to(c2w.device)
        if fxfycxcy.shape == (4,):
            fxfycxcy = fxfycxcy.expand(count, 4)
        if fxfycxcy.shape != (count, 4):
            raise ValueError(
                f"fxfycxcy must have shape ({count}, 4) (one row per camera) or (4,), got "
                f"{tuple(fxfycxcy.shape)}"
            )
        dtype = torch.promote_types(c2w.dtype, fxfycxcy.dtype)
        self.c2w = c2w.to(dtype).contiguous()
        self.fxfycxcy = fxfycxcy.to(dtype).contiguous()
        self.image_sizes = _sizes(image_size, count).to(c2w.device)
        if validate:
            validate_cameras(self.c2w, self.fxfycxcy)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def look_at(
        cls,
        eye: ArrayLike,
        target: ArrayLike,
        up: ArrayLike | None = None,
        fov_deg: float | ArrayLike = 60.0,
        image_size: SizeLike = (256, 256),
    ) -> Cameras:
        """Cameras at ``eye`` (N, 3) or (3,) looking at ``target`` (broadcast against ``eye``).

        ``up`` is the world direction that appears upwards in the image; the default (0, -1, 0)
        is "up" in an OpenCV camera frame, which is the frame of unposed scenes (the first source
        camera's). ``fov_deg`` is the horizontal field of view (scalar or one per camera); square
        pixels and a centred principal point.
        """
        eye_t = _float_tensor(eye, "eye")
        target_t = _float_tensor(target, "target").to(eye_t)
        up_t = eye_t.new_tensor([0.0, -1.0, 0.0]) if up is None else _float_tensor(up, "up")
        try:
            eye_t, target_t, up_t = torch.broadcast_tensors(
                eye_t.reshape(-1, 3), target_t.reshape(-1, 3), up_t.to(eye_t).reshape(-1, 3)
            )
        except RuntimeError:
            raise ValueError(
                "eye, target and up must be (3,) or (N, 3) with the same N, got shapes "
                f"{tuple(eye_t.shape)}, {tuple(target_t.shape)}, {tuple(up_t.shape)}"
            ) from None
        forward = target_t - eye_t
        length = torch.linalg.vector_norm(forward, dim=-1, keepdim=True)
        if bool((length < 1e-12).any()):
            raise ValueError("look_at: eye and target coincide; pass a target away from the eye")
        forward = forward / length
        right = torch.linalg.cross(forward, up_t, dim=-1)
        right_norm = torch.linalg.vector_norm(right, dim=-1, keepdim=True)
        if bool((right_norm < 1e-8).any()):
            raise ValueError("look_at: the viewing direction is parallel to `up`; pass another up")
        right = right / right_norm
        down = torch.linalg.cross(forward, right, dim=-1)
        count = eye_t.shape[0]
        c2w = torch.eye(4, dtype=eye_t.dtype).repeat(count, 1, 1)
        c2w[:, :3, :3] = torch.stack([right, down, forward], dim=-1)
        c2w[:, :3, 3] = eye_t
        sizes = _sizes(image_size, count)
        fov = torch.as_tensor(fov_deg, dtype=eye_t.dtype).expand(count)
        if not bool(((fov > 0) & (fov < 180)).all()):
            raise ValueError(f"fov_deg must be in (0, 180) degrees, got {fov.tolist()}")
        height, width = sizes.to(eye_t.dtype).unbind(-1)
        focal = 0.5 * width / torch.tan(0.5 * torch.deg2rad(fov))
        fxfycxcy = torch.stack([focal, focal, width / 2, height / 2], dim=-1)
        return cls(c2w, fxfycxcy, sizes)

    @classmethod
    def from_scene(
        cls,
        scene: SceneLike,
        indices: Sequence[int] | Tensor | None = None,
        ignore_distortion: bool = False,
    ) -> Cameras:
        """The cameras of a scene (frames ``indices``, default all), e.g. a data-layer ``Scene``.

        Pinhole cameras cannot represent lens distortion: scenes with distortion are refused
        unless ``ignore_distortion`` (fine for mild distortion, e.g. phone captures).
        """
        if indices is not None:
            scene = scene.select(indices)
        if scene.distortion is not None and not ignore_distortion:
            raise ValueError(
                f"scene {scene.scene_id!r} has lens distortion ({scene.distortion_model}); "
                "undistort the images (e.g. colmap image_undistorter) or ignore the distortion "
                "(Cameras.from_scene(..., ignore_distortion=True), lagernvs render "
                "--ignore-distortion)"
            )
        return cls(scene.c2w, scene.fxfycxcy, scene.image_sizes)

    @classmethod
    def from_w2c(cls, w2c: ArrayLike, fxfycxcy: ArrayLike, image_size: SizeLike) -> Cameras:
        """Cameras from OpenCV world-to-camera matrices (N, 4, 4)."""
        return cls(w2c_to_c2w(_matrices(w2c, "w2c")), fxfycxcy, image_size)

    @classmethod
    def from_opengl(cls, c2w: ArrayLike, fxfycxcy: ArrayLike, image_size: SizeLike) -> Cameras:
        """Cameras from OpenGL / NeRF / Blender camera-to-world matrices (y up, z backwards)."""
        return cls(opengl_to_opencv_c2w(_matrices(c2w, "c2w")), fxfycxcy, image_size)

    # ------------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (float64 values survive the round trip exactly)."""
        return {
            "convention": "opencv_c2w",
            "c2w": self.c2w.double().tolist(),
            "fxfycxcy": self.fxfycxcy.double().tolist(),
            "image_sizes": self.image_sizes.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cameras:
        """Inverse of :meth:`to_dict`; also accepts a single ``image_size`` [H, W]."""
        if not isinstance(data, dict):
            raise ValueError(f"a cameras record must be a JSON object, got {type(data).__name__}")
        convention = data.get("convention", "opencv_c2w")
        if convention not in ("opencv_c2w", "opengl_c2w", "opencv_w2c"):
            raise ValueError(
                f"unknown camera convention {convention!r}; use opencv_c2w, opengl_c2w or "
                "opencv_w2c"
            )
        missing = [
            k for k in ("c2w" if convention != "opencv_w2c" else "w2c", "fxfycxcy") if k not in data
        ]
        size = data.get("image_sizes", data.get("image_size"))
        if size is None:
            missing.append("image_sizes")
        if missing:
            raise ValueError(
                f"cameras record lacks {', '.join(missing)}; expected keys c2w (N x 4 x 4), "
                "fxfycxcy (N x 4) and image_sizes (N x 2) or image_size [H, W]"
            )
        fxfycxcy = _float_tensor(data["fxfycxcy"], "fxfycxcy").to(torch.float64)
        if convention == "opencv_w2c":
            return cls.from_w2c(_float_tensor(data["w2c"], "w2c").to(torch.float64), fxfycxcy, size)
        c2w = _float_tensor(data["c2w"], "c2w").to(torch.float64)
        if convention == "opengl_c2w":
            return cls.from_opengl(c2w, fxfycxcy, size)
        return cls(c2w, fxfycxcy, size)

    def save(self, path: str | Path) -> Path:
        """Write the cameras as JSON (see :meth:`to_dict`)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Cameras:
        """Read cameras written by :meth:`save` (or any JSON in the :meth:`from_dict` layout)."""
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"cameras file {path} is a folder; give the JSON file itself")
        if not path.is_file():
            raise FileNotFoundError(f"cameras file {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"cameras file {path} is not valid JSON: {error}") from None
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ValueError(f"cameras file {path}: {error}") from None

    # ------------------------------------------------------------------ batch behaviour

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index: int | slice | Sequence[int] | Tensor) -> Cameras:
        """Cameras at ``index``; an int keeps the batch dimension (a batch of one camera)."""
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise IndexError(f"camera index {index} out of range for {len(self)} cameras")
            index = slice(index, index + 1 if index != -1 else None)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, device=self.c2w.device)
            if index.dtype != torch.bool:
                index = index.to(torch.int64).reshape(-1)
        return self._new(self.c2w[index], self.fxfycxcy[index], self.image_sizes[index])

    def __iter__(self) -> Iterator[Cameras]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        sizes = self.image_sizes.unique(dim=0).tolist()
        size = sizes[0] if len(sizes) == 1 else f"{len(sizes)} sizes"
        return (
            f"Cameras(n={len(self)}, image_size={size}, dtype={self.dtype}, device={self.device})"
        )

    @classmethod
    def cat(cls, cameras: Sequence[Cameras]) -> Cameras:
        """Concatenate batches (also reachable as ``torch.cat([a, b])``)."""
        cameras = list(cameras)
        if not cameras or not all(isinstance(c, Cameras) for c in cameras):
            raise ValueError("Cameras.cat needs a non-empty sequence of Cameras")
        dtype = cameras[0].dtype
        for camera in cameras[1:]:
            dtype = torch.promote_types(dtype, camera.dtype)
        device = cameras[0].device
        return cameras[0]._new(
            torch.cat([c.c2w.to(device, dtype) for c in cameras]),
            torch.cat([c.fxfycxcy.to(device, dtype) for c in cameras]),
            torch.cat([c.image_sizes.to(device) for c in cameras]),
        )

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        kwargs = kwargs or {}
        if func is torch.cat and kwargs.get("dim", 0) == 0 and (len(args) < 2 or args[1] == 0):
            return cls.cat(args[0] if args else kwargs["tensors"])
        raise TypeError(
            f"torch.{getattr(func, '__name__', func)} is not supported on Cameras; use indexing, "
            "torch.cat, or the .c2w / .fxfycxcy tensors"
        )

    def _new(self, c2w: Tensor, fxfycxcy: Tensor, image_sizes: Tensor) -> Cameras:
        """A batch from already validated parts (no re-validation)."""
        out = object.__new__(type(self))
        out.c2w, out.fxfycxcy, out.image_sizes = c2w, fxfycxcy, image_sizes
        return out

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Cameras:
        """Move / cast the float tensors (sizes stay int64)."""
        return self._new(
            self.c2w.to(device=device, dtype=dtype),
            self.fxfycxcy.to(device=device, dtype=dtype),
            self.image_sizes.to(device=device),
        )

    # ------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def dtype(self) -> torch.dtype:
        return self.c2w.dtype

    @property
    def image_size(self) -> tuple[int, int]:
        """The (H, W) shared by every camera; raises if the batch mixes image sizes."""
        sizes = self.image_sizes.unique(dim=0)
        if sizes.shape[0] != 1:
            raise ValueError(
                f"the cameras have {sizes.shape[0]} different image sizes {sizes.tolist()}; "
                "use .crop_resize((H, W)) to bring them to one size"
            )
        height, width = sizes[0].tolist()
        return int(height), int(width)

    @property
    def centers(self) -> Tensor:
        """Camera centres (N, 3) in world coordinates."""
        return self.c2w[:, :3, 3]

    @property
    def K(self) -> Tensor:  # noqa: N802 (K is the standard name)
        """Intrinsic matrices (N, 3, 3)."""
        return fxfycxcy_to_K(self.fxfycxcy)

    @property
    def fov_deg(self) -> Tensor:
        """(N, 2) vertical and horizontal fields of view in degrees."""
        half = self.image_sizes.to(self.dtype) / (2.0 * self.fxfycxcy[:, [1, 0]])
        return torch.rad2deg(2.0 * torch.atan(half))

    # ------------------------------------------------------------------ operations

    def crop_resize(self, image_size: tuple[int, int] | Sequence[int]) -> Cameras:
        """The cameras of the images after a centred crop to the aspect of ``image_size`` and a
        resize to it: the operation the pipeline applies to every input image."""
        height, width = (int(v) for v in image_size)
        if height <= 0 or width <= 0:
            raise ValueError(f"image_size must be positive (H, W), got {tuple(image_size)}")
        fxfycxcy = self.fxfycxcy.clone()
        sizes, inverse = self.image_sizes.unique(dim=0, return_inverse=True)
        for k, size in enumerate(sizes.tolist()):  # once per distinct source size
            index = inverse == k
            fxfycxcy[index] = crop_resize_intrinsics(
                self.fxfycxcy[index], (size[0], size[1]), (height, width)
            )
        new_sizes = torch.tensor([height, width], device=self.device).expand(len(self), 2)
        return self._new(self.c2w, fxfycxcy, new_sizes.contiguous())

    def distance_to(self, point: ArrayLike) -> Tensor:
        """(N,) distances of the camera centres to a world ``point`` (3,)."""
        point_t = _float_tensor(point, "point").to(self.c2w)
        return torch.linalg.vector_norm(self.centers - point_t, dim=-1)
