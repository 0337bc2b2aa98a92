"""Cameras of LagerNVS: the :class:`Cameras` batch type and the camera maths, as functions.

The maths matches the reference implementation numerically (checked against its camera fixtures
by tests/test_cameras.py). Conventions: poses are OpenCV camera-to-world 4x4 matrices
(x right, y down, z forward), intrinsics are ``fxfycxcy`` in pixels of the image they belong to,
quaternions are scalar-last ``(x, y, z, w)`` with ``w >= 0``. Every function is batched over
arbitrary leading dimensions (broadcast between its tensor arguments), vectorised, keeps the
device and returns the promoted dtype of its inputs. Half-precision inputs are computed in
float32 and cast back, so rays and tokens stay accurate.

Modules: :mod:`~lagernvs.cameras.batch` (``Cameras``), :mod:`~lagernvs.cameras.rotations`
(quaternions), :mod:`~lagernvs.cameras.conventions` (intrinsics, converters, validation) and
:mod:`~lagernvs.cameras.conditioning` (rays, pose encodings, normalisation, camera tokens).
"""

from .batch import Cameras
from .conditioning import (
    SCENE_SCALE_FACTOR,
    SceneNormalization,
    build_camera_conditioning,
    camera_tokens,
    normalize_scene,
    plucker_rays,
    pose_encoding,
    zero_conditioning_cameras,
)
from .conventions import (
    c2w_to_w2c,
    center_crop_size,
    crop_resize_intrinsics,
    fxfycxcy_to_K,
    opengl_to_opencv_c2w,
    validate_cameras,
    w2c_to_c2w,
)
from .rotations import matrix_to_quaternion, quaternion_to_matrix

__all__ = [
    "SCENE_SCALE_FACTOR",
    "Cameras",
    "SceneNormalization",
    "build_camera_conditioning",
    "c2w_to_w2c",
    "camera_tokens",
    "center_crop_size",
    "crop_resize_intrinsics",
    "fxfycxcy_to_K",
    "matrix_to_quaternion",
    "normalize_scene",
    "opengl_to_opencv_c2w",
    "plucker_rays",
    "pose_encoding",
    "quaternion_to_matrix",
    "validate_cameras",
    "w2c_to_c2w",
    "zero_conditioning_cameras",
]
