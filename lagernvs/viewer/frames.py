"""The viewer's world frame and the browser camera, converted to and from the scene's `Cameras`.

The browser (viser) orbits around a look-at point about the world's +z axis, and reports its
camera as an OpenCV rotation (x right, y down, z forward, as a ``wxyz`` quaternion) and a position.
Scenes come in any world frame (COLMAP: y down; Re10k: anything), at any scale. The viewer
therefore shows the scene through a similarity transform, :class:`ViewerFrame`, which puts the
sources' "up" on +z, their centre of attention at the origin and their mean distance to it at one
unit, so that orbiting, zooming and the frustum sizes feel the same in every scene. Everything the
server renders or exports is converted back to the scene's own frame and units first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lagernvs import trajectories
from lagernvs.cameras import Cameras, matrix_to_quaternion, quaternion_to_matrix

__all__ = ["ViewPose", "ViewerFrame", "rotation_between", "viewport_camera"]

VIEWER_UP = np.array([0.0, 0.0, 1.0])


def rotation_between(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(3, 3) the smallest rotation taking the direction ``source`` onto ``target``."""
    a = np.asarray(source, dtype=np.float64) / np.linalg.norm(source)
    b = np.asarray(target, dtype=np.float64) / np.linalg.norm(target)
    axis, cosine = np.cross(a, b), float(a @ b)
    if cosine < -1.0 + 1e-12:  # opposite: half a turn about any axis perpendicular to a
        helper = np.eye(3)[int(np.argmin(np.abs(a)))]
        axis = np.cross(a, helper) / np.linalg.norm(np.cross(a, helper))
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    skew = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + skew + skew @ skew / (1.0 + cosine)


def _wxyz(rotations: np.ndarray) -> np.ndarray:
    """(N, 4) scalar-first quaternions of (N, 3, 3) rotations (lagernvs uses scalar-last)."""
    xyzw = matrix_to_quaternion(torch.from_numpy(rotations)).numpy()
    return np.concatenate([xyzw[..., 3:], xyzw[..., :3]], axis=-1)


def _matrix(wxyz: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations of scalar-first quaternions (normalised first)."""
    quat = np.asarray(wxyz, dtype=np.float64)
    quat = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
    xyzw = np.concatenate([quat[..., 1:], quat[..., :1]], axis=-1)
    return quaternion_to_matrix(torch.from_numpy(xyzw)).numpy()


@dataclass(frozen=True)
class ViewerFrame:
    """``x_viewer = scale * rotation @ (x_scene - center)``: the scene as the browser shows it.

    Attributes:
        rotation: (3, 3) scene axes -> viewer axes (the scene's up onto +z).
        center: (3,) the scene point shown at the viewer's origin.
        scale: viewer units per scene unit.
    """

    rotation: np.ndarray
    center: np.ndarray
    scale: float

    @classmethod
    def fit(cls, cameras: Cameras) -> ViewerFrame:
        """The frame that puts ``cameras``' up on +z, their centre of attention at the origin
        and their mean distance to it at one unit."""
        up = trajectories.up_direction(cameras).numpy()
        center = trajectories.center_of_attention(cameras).numpy()
        distance = float(np.linalg.norm(cameras.centers.double().numpy() - center, axis=-1).mean())
        scale = 1.0 / distance if distance > 1e-9 else 1.0
        return cls(rotation_between(up, VIEWER_UP), center, scale)

    def to_viewer(self, c2w: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """OpenCV camera-to-world (N, 4, 4) or (4, 4) in the scene -> viewer ``wxyz`` (N, 4)
        and ``position`` (N, 3)."""
        c2w = np.asarray(c2w, dtype=np.float64).reshape(-1, 4, 4)
        rotations = self.rotation @ c2w[:, :3, :3]
        return _wxyz(rotations), self.points_to_viewer(c2w[:, :3, 3])

    def from_viewer(self, wxyz: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Viewer ``wxyz`` (4,) and ``position`` (3,) -> the scene's OpenCV camera-to-world
        (4, 4) float64."""
        c2w = np.eye(4)
        c2w[:3, :3] = self.rotation.T @ _matrix(wxyz)
        c2w[:3, 3] = self.rotation.T @ np.asarray(position, dtype=np.float64) / self.scale
        c2w[:3, 3] += self.center
        return c2w

    def orbit_pose(self, c2w: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Viewer ``position`` and ``look_at`` point (3,) of the scene camera ``c2w`` (4, 4).

        The browser orbits about its look-at point; it is put on the camera's optical axis, as
        far ahead as the camera is from the viewer's origin (the scene centre). With +z up this
        gives the camera's orientation up to roll, which the browser camera does not have.
        """
        c2w = np.asarray(c2w, dtype=np.float64)
        position = self.points_to_viewer(c2w[None, :3, 3])[0]
        distance = max(float(np.linalg.norm(position)), 1e-3)
        return position, position + distance * (self.rotation @ c2w[:3, 2])

    def points_to_viewer(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) scene points -> viewer points."""
        return self.scale * (np.asarray(points, dtype=np.float64) - self.center) @ self.rotation.T


@dataclass(frozen=True)
class ViewPose:
    """What the browser shows: a camera pose in the scene frame and the canvas' optics.

    Attributes:
        c2w: (4, 4) float64 OpenCV camera-to-world in the scene's frame.
        fov_y: vertical field of view of the canvas, radians.
        aspect: canvas width / height.
    """

    c2w: np.ndarray
    fov_y: float
    aspect: float

    def same_view(self, other: ViewPose | None, tolerance: float = 1e-6) -> bool:
        """Whether ``other`` shows the same thing (a camera message that did not move)."""
        return (
            other is not None
            and np.allclose(self.c2w, other.c2w, atol=tolerance)
            and math.isclose(self.fov_y, other.fov_y, abs_tol=tolerance)
            and math.isclose(self.aspect, other.aspect, rel_tol=tolerance)
        )


def viewport_camera(pose: ViewPose, height: int, patch: int, max_aspect: float = 4.0) -> Cameras:
    """The camera that renders ``pose`` as an image ``height`` pixels high that fills the canvas.

    The width is the canvas aspect times the height, both rounded to multiples of the model's
    ``patch`` size (the aspect clamped to [1 / max_aspect, max_aspect]). The focal lengths are
    chosen so the image spans exactly the canvas' vertical and horizontal fields of view (the
    browser stretches the frame over the whole canvas), so the render lines up with the frustums
    drawn in the page.
    """
    aspect = min(max(pose.aspect, 1.0 / max_aspect), max_aspect)
    height = max(patch, round(height / patch) * patch)
    width = max(patch, round(height * aspect / patch) * patch)
    tan_y = math.tan(0.5 * pose.fov_y)
    intrinsics = [0.5 * width / (aspect * tan_y), 0.5 * height / tan_y, 0.5 * width, 0.5 * height]
    return Cameras(pose.c2w[None], torch.tensor(intrinsics, dtype=torch.float64), (height, width))
