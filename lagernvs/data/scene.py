"""The `Scene` record every reader returns, and the lens model it reports.

A `Scene` holds one capture: image files plus exact cameras (OpenCV camera-to-world, float64,
intrinsics in pixels of the images on disk). Lens distortion is never dropped: it is kept in
OpenCV's radial-tangential model so that callers can undistort or at least know the images are
not pinhole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["DISTORTION_PARAMS", "Scene", "distort_normalized", "project_points"]

DISTORTION_PARAMS = ("k1", "k2", "p1", "p2", "k3")
"""Order of the per-frame distortion parameters (OpenCV radial-tangential model)."""


@dataclass
class Scene:
    """One captured scene: N frames with images on disk and exact cameras.

    Attributes:
        scene_id: name of the scene (sequence name, ``<batch>/<hash>`` for DL3DV, folder name).
        frame_ids: N unique frame names (image file stem, sub-folders kept if stems collide).
        image_paths: N image files, ordered by file name.
        image_sizes: (N, 2) int64, (H, W) of the images on disk.
        c2w: (N, 4, 4) float64 OpenCV camera-to-world (x right, y down, z forward).
        fxfycxcy: (N, 4) float64 intrinsics in pixels of the images on disk; the image origin is
            the top-left corner of the top-left pixel (pixel centres at +0.5), as in COLMAP.
        distortion: None for pinhole cameras, else (N, 5) float64 OpenCV parameters
            ``DISTORTION_PARAMS`` (k1, k2, p1, p2, k3) acting on normalised camera coordinates.
        source_format: the reader that produced the scene (``re10k``, ``dl3dv``, ``nerf``,
            ``colmap``, ``llff``).
        distortion_model: the source's lens model name (e.g. COLMAP ``SIMPLE_RADIAL``) when
            ``distortion`` is set.
        bounds: optional (N, 2) float64 near/far depths (LLFF).
    """

    scene_id: str
    frame_ids: list[str]
    image_paths: list[Path]
    image_sizes: Tensor
    c2w: Tensor
    fxfycxcy: Tensor
    distortion: Tensor | None
    source_format: str
    distortion_model: str | None = None
    bounds: Tensor | None = field(default=None)

    def __post_init__(self) -> None:
        self.image_paths = [Path(p) for p in self.image_paths]
        self.image_sizes = torch.as_tensor(self.image_sizes, dtype=torch.int64)
        self.c2w = torch.as_tensor(self.c2w, dtype=torch.float64)
        self.fxfycxcy = torch.as_tensor(self.fxfycxcy, dtype=torch.float64)
        if self.distortion is not None:
            self.distortion = torch.as_tensor(self.distortion, dtype=torch.float64)
        if self.bounds is not None:
            self.bounds = torch.as_tensor(self.bounds, dtype=torch.float64)
        n = len(self.frame_ids)
        shapes = {
            "frame_ids": (len(self.frame_ids),),
            "image_paths": (len(self.image_paths),),
            "image_sizes": tuple(self.image_sizes.shape),
            "c2w": tuple(self.c2w.shape),
            "fxfycxcy": tuple(self.fxfycxcy.shape),
        }
        expected = {
            "frame_ids": (n,),
            "image_paths": (n,),
            "image_sizes": (n, 2),
            "c2w": (n, 4, 4),
            "fxfycxcy": (n, 4),
        }
        if self.distortion is not None:
            shapes["distortion"] = tuple(self.distortion.shape)
            expected["distortion"] = (n, len(DISTORTION_PARAMS))
        if self.bounds is not None:
            shapes["bounds"] = tuple(self.bounds.shape)
            expected["bounds"] = (n, 2)
        bad = [
            f"{k} {shapes[k]} (expected {expected[k]})" for k in shapes if shapes[k] != expected[k]
        ]
        if bad:
            raise ValueError(
                f"scene {self.scene_id!r}: inconsistent frame counts: "
                + ", ".join(bad)
                + "; every per-frame field needs one entry per frame"
            )
        if len(set(self.frame_ids)) != n:
            raise ValueError(f"scene {self.scene_id!r}: frame_ids are not unique; rename frames")

    @property
    def num_frames(self) -> int:
        return len(self.frame_ids)

    def select(self, indices: list[int] | Tensor) -> Scene:
        """A new Scene with the frames at ``indices`` (in that order; repeats allowed)."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if idx.numel() and (int(idx.min()) < -self.num_frames or int(idx.max()) >= self.num_frames):
            raise ValueError(
                f"scene {self.scene_id!r} has {self.num_frames} frames; indices {idx.tolist()} "
                "are out of range"
            )
        picks = idx.tolist()
        ids = [self.frame_ids[i] for i in picks]
        if len(set(ids)) != len(ids):  # repeated views: keep ids unique and traceable
            ids = [f"{fid}#{k}" for k, fid in enumerate(ids)]
        return Scene(
            scene_id=self.scene_id,
            frame_ids=ids,
            image_paths=[self.image_paths[i] for i in picks],
            image_sizes=self.image_sizes[idx],
            c2w=self.c2w[idx],
            fxfycxcy=self.fxfycxcy[idx],
            distortion=None if self.distortion is None else self.distortion[idx],
            source_format=self.source_format,
            distortion_model=self.distortion_model,
            bounds=None if self.bounds is None else self.bounds[idx],
        )

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        """JSON-serialisable cameras (float64 values survive a JSON round trip exactly).

        Image paths are written relative to ``relative_to`` when given (else as file names),
        which is what shards store next to the encoded frames.
        """

        def name(path: Path) -> str:
            return path.relative_to(relative_to).as_posix() if relative_to else path.name

        return {
            "scene_id": self.scene_id,
            "source_format": self.source_format,
            "frame_ids": list(self.frame_ids),
            "image_files": [name(p) for p in self.image_paths],
            "image_sizes": self.image_sizes.tolist(),
            "c2w": self.c2w.tolist(),
            "fxfycxcy": self.fxfycxcy.tolist(),
            "distortion": None if self.distortion is None else self.distortion.tolist(),
            "distortion_model": self.distortion_model,
            "bounds": None if self.bounds is None else self.bounds.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], image_root: Path | None = None) -> Scene:
        """Inverse of :meth:`to_dict`; image files are resolved against ``image_root``."""
        root = Path(image_root) if image_root is not None else Path()
        try:
            return cls(
                scene_id=data["scene_id"],
                frame_ids=list(data["frame_ids"]),
                image_paths=[root / f for f in data["image_files"]],
                image_sizes=torch.tensor(data["image_sizes"], dtype=torch.int64).reshape(-1, 2),
                c2w=torch.tensor(data["c2w"], dtype=torch.float64).reshape(-1, 4, 4),
                fxfycxcy=torch.tensor(data["fxfycxcy"], dtype=torch.float64).reshape(-1, 4),
                distortion=data.get("distortion"),
                source_format=data["source_format"],
                distortion_model=data.get("distortion_model"),
                bounds=data.get("bounds"),
            )
        except KeyError as error:
            raise ValueError(
                f"camera record lacks the field {error}; it was not written by Scene.to_dict"
            ) from error


def distort_normalized(xy: Tensor, params: Tensor) -> Tensor:
    """Apply OpenCV radial-tangential distortion to normalised coordinates.

    ``xy`` (..., 2) are undistorted normalised camera coordinates (x/z, y/z); ``params``
    (..., 5) are (k1, k2, p1, p2, k3), broadcast against ``xy``'s batch dims.
    """
    x, y = xy.unbind(-1)
    k1, k2, p1, p2, k3 = params.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return torch.stack([xd, yd], dim=-1)


def project_points(
    points: Tensor, c2w: Tensor, fxfycxcy: Tensor, distortion: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Project world points into OpenCV cameras.

    Args:
        points: (..., P, 3) world points.
        c2w: (..., 4, 4) camera-to-world; fxfycxcy: (..., 4); distortion: optional (..., 5).

    Returns:
        (uv (..., P, 2) pixel coordinates with the top-left image corner at 0, depth (..., P)).
    """
    rotation = c2w[..., :3, :3]
    centre = c2w[..., None, :3, 3]
    cam = (points - centre) @ rotation  # R^T (X - C), row-vector form
    depth = cam[..., 2]
    xy = cam[..., :2] / depth[..., None]
    if distortion is not None:
        xy = distort_normalized(xy, distortion[..., None, :])
    uv = xy * fxfycxcy[..., None, :2] + fxfycxcy[..., None, 2:]
    return uv, depth
