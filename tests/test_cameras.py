"""Properties of `lagernvs.cameras` and its input validation (reference parity: parity_cameras)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from parity_cameras import check_camera_fixture

from lagernvs import cameras

FAST = settings(max_examples=40, deadline=None)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def random_quaternions(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    q = torch.randn(*shape, 4, generator=generator, dtype=torch.float64)
    return q / q.norm(dim=-1, keepdim=True)


def random_c2w(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Random rigid OpenCV camera-to-world poses (float64)."""
    c2w = torch.eye(4, dtype=torch.float64).repeat(*shape, 1, 1)
    c2w[..., :3, :3] = cameras.quaternion_to_matrix(random_quaternions(shape, generator))
    c2w[..., :3, 3] = 3 * torch.randn(*shape, 3, generator=generator, dtype=torch.float64)
    return c2w


def random_intrinsics(shape, height, width, generator) -> torch.Tensor:
    focal = (0.5 + torch.rand(*shape, 2, generator=generator, dtype=torch.float64)) * width
    centre = torch.tensor([width, height], dtype=torch.float64) * (
        0.4 + 0.2 * torch.rand(*shape, 2, generator=generator, dtype=torch.float64)
    )
    return torch.cat([focal, centre], dim=-1)


def test_camera_fixture_missing_file_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cameras.safetensors"):
        check_camera_fixture(tmp_path)


@FAST
@given(seeds)
def test_quaternion_round_trip(seed: int) -> None:
    q = random_quaternions((8,), torch.Generator().manual_seed(seed))
    q_std = torch.where(q[:, 3:] < 0, -q, q)
    rotation = cameras.quaternion_to_matrix(q)
    eye = torch.eye(3, dtype=torch.float64).expand(8, 3, 3)
    torch.testing.assert_close(rotation.transpose(-1, -2) @ rotation, eye)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(8, dtype=torch.float64))
    back = cameras.matrix_to_quaternion(rotation)
    assert bool((back[:, 3] >= 0).all())
    torch.testing.assert_close(back, q_std)
    torch.testing.assert_close(cameras.quaternion_to_matrix(back), rotation)


@FAST
@given(seeds, st.floats(min_value=0.1, max_value=10.0))
def test_quaternion_to_matrix_ignores_scale(seed: int, scale: float) -> None:
    q = random_quaternions((4,), torch.Generator().manual_seed(seed))
    torch.testing.assert_close(
        cameras.quaternion_to_matrix(scale * q), cameras.quaternion_to_matrix(q)
    )


def test_quaternion_of_180_degree_rotations() -> None:
    rotations = torch.stack(
        [torch.diag(torch.tensor(d)) for d in ([1.0, -1, -1], [-1.0, 1, -1], [-1.0, -1, 1])]
    )
    q = cameras.matrix_to_quaternion(rotations)
    torch.testing.assert_close(q.abs(), torch.eye(3, 4))
    torch.testing.assert_close(cameras.quaternion_to_matrix(q), rotations)


@FAST
@given(seeds, st.integers(2, 7), st.integers(2, 7))
def test_rays_unit_directions_orthogonal_moments_and_reprojection(seed, height, width) -> None:
    generator = torch.Generator().manual_seed(seed)
    c2w = random_c2w((3,), generator)
    intrinsics = random_intrinsics((3,), height, width, generator)
    rays = cameras.plucker_rays(c2w, intrinsics, height, width)
    assert rays.shape == (3, 6, height, width)
    moments, dirs = rays[:, :3], rays[:, 3:]
    torch.testing.assert_close(dirs.norm(dim=1), torch.ones(3, height, width, dtype=rays.dtype))
    torch.testing.assert_close((moments * dirs).sum(1), torch.zeros(3, height, width).double())
    centres = c2w[:, :3, 3, None, None]
    torch.testing.assert_close(moments, torch.linalg.cross(centres.expand_as(dirs), dirs, dim=1))
    # A point along each ray projects back onto that pixel's centre.
    points = centres + 2.5 * dirs
    cam = torch.einsum("bji,bjhw->bihw", c2w[:, :3, :3], points - centres)
    fx, fy, cx, cy = (v[:, None, None] for v in intrinsics.unbind(-1))
    assert bool((cam[:, 2] > 0).all()), "rays must point in front of the camera (+z)"
    u = fx * cam[:, 0] / cam[:, 2] + cx
    v = fy * cam[:, 1] / cam[:, 2] + cy
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    torch.testing.assert_close(u, (cols + 0.5).double().expand_as(u))
    torch.testing.assert_close(v, (rows + 0.5).double().expand_as(v))


def test_rays_channel_order_and_pixel_centres() -> None:
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([1.0, 0.0, 0.0])
    rays = cameras.plucker_rays(c2w, torch.tensor([2.0, 2.0, 1.5, 0.5]), 1, 3)
    # The middle pixel centre (1.5, 0.5) is the principal point: direction +z.
    torch.testing.assert_close(rays[3:, 0, 1], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(rays[:3, 0, 1], torch.tensor([0.0, -1.0, 0.0]))  # x cross z


def test_batching_over_leading_dims_matches_per_item() -> None:
    generator = torch.Generator().manual_seed(0)
    c2w = random_c2w((2, 3, 4), generator).float()
    intrinsics = random_intrinsics((2, 3, 4), 4, 6, generator).float()
    rays = cameras.plucker_rays(c2w, intrinsics, 4, 6)
    encoding = cameras.pose_encoding(c2w, intrinsics, 4, 6)
    norm = cameras.normalize_scene(c2w, 2)
    rays_c, tokens_c = cameras.build_camera_conditioning(
        norm.c2w, intrinsics, 4, 6, norm.camera_scale, 2, zero_cond_cameras=True
    )
    for i in range(2):
        for j in range(3):
            for k in range(4):
                single = cameras.plucker_rays(c2w[i, j, k], intrinsics[i, j, k], 4, 6)
                torch.testing.assert_close(rays[i, j, k], single)
                single = cameras.pose_encoding(c2w[i, j, k], intrinsics[i, j, k], 4, 6)
                torch.testing.assert_close(encoding[i, j, k], single)
            item = cameras.normalize_scene(c2w[i, j], 2)
            torch.testing.assert_close(norm.c2w[i, j], item.c2w)
            torch.testing.assert_close(norm.camera_scale[i, j], item.camera_scale)
            torch.testing.assert_close(norm.scene_scale_ratio[i, j], item.scene_scale_ratio)
            item_rays, item_tokens = cameras.build_camera_conditioning(
                item.c2w, intrinsics[i, j], 4, 6, item.camera_scale, 2, zero_cond_cameras=True
            )
            torch.testing.assert_close(rays_c[i, j], item_rays)
            torch.testing.assert_close(tokens_c[i, j], item_tokens)


def test_intrinsics_broadcast_over_views() -> None:
    generator = torch.Generator().manual_seed(1)
    c2w = random_c2w((5,), generator)
    shared = random_intrinsics((), 4, 4, generator)
    torch.testing.assert_close(
        cameras.plucker_rays(c2w, shared, 4, 4),
        cameras.plucker_rays(c2w, shared.expand(5, 4), 4, 4),
    )


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_and_device_preserved(dtype: torch.dtype, device: str) -> None:
    c2w = random_c2w((2, 3), torch.Generator().manual_seed(2)).to(device, dtype)
    intrinsics = torch.tensor([4.0, 5.0, 2.0, 2.0]).expand(2, 3, 4).to(device, dtype)
    norm = cameras.normalize_scene(c2w, 2)
    rays, tokens = cameras.build_camera_conditioning(
        norm.c2w, intrinsics, 4, 4, norm.camera_scale, 2, zero_cond_cameras=True
    )
    outputs = [
        cameras.fxfycxcy_to_K(intrinsics),
        cameras.plucker_rays(c2w, intrinsics, 4, 4),
        cameras.pose_encoding(c2w, intrinsics, 4, 4),
        cameras.matrix_to_quaternion(c2w[..., :3, :3]),
        cameras.quaternion_to_matrix(c2w[..., 0, :]),
        *norm,
        rays,
        tokens,
        cameras.crop_resize_intrinsics(intrinsics, (6, 8), (4, 4)),
        cameras.opengl_to_opencv_c2w(c2w),
        cameras.w2c_to_c2w(c2w),
        cameras.c2w_to_w2c(c2w),
    ]
    for output in outputs:
        assert output.dtype == dtype and output.device.type == device


def test_half_precision_is_computed_accurately() -> None:
    c2w = random_c2w((4,), torch.Generator().manual_seed(3))
    intrinsics = torch.tensor([20.0, 20.0, 8.0, 8.0], dtype=torch.float64)
    reference = cameras.plucker_rays(c2w, intrinsics, 16, 16)
    half = cameras.plucker_rays(c2w.half(), intrinsics.half(), 16, 16)
    assert (half.double() - reference).abs().max() < 2e-2


def test_mixed_precision_promotes() -> None:
    c2w = random_c2w((2,), torch.Generator().manual_seed(4)).float()
    intrinsics = torch.tensor([4.0, 5.0, 2.0, 2.0], dtype=torch.float64)
    assert cameras.plucker_rays(c2w, intrinsics, 4, 4).dtype == torch.float64
    assert cameras.pose_encoding(c2w, intrinsics, 4, 4).dtype == torch.float64


def test_pose_encoding_layout() -> None:
    c2w = random_c2w((3,), torch.Generator().manual_seed(5))
    intrinsics = torch.tensor([[10.0, 20.0, 3.0, 4.0]], dtype=torch.float64)
    encoding = cameras.pose_encoding(c2w, intrinsics, 8, 12)
    torch.testing.assert_close(encoding[:, :3], c2w[:, :3, 3])
    torch.testing.assert_close(cameras.quaternion_to_matrix(encoding[:, 3:7]), c2w[:, :3, :3])
    fov = torch.tensor([2 * math.atan(8 / 40), 2 * math.atan(12 / 20)], dtype=torch.float64)
    torch.testing.assert_close(encoding[:, 7:], fov.expand(3, 2))


@FAST
@given(seeds)
def test_opengl_to_opencv_and_w2c_consistency(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    c2w_gl = random_c2w((4,), generator)
    c2w_cv = cameras.opengl_to_opencv_c2w(c2w_gl)
    # Same centre and right axis; OpenCV looks along OpenGL's -z with y pointing down.
    torch.testing.assert_close(c2w_cv[:, :, 3], c2w_gl[:, :, 3])
    torch.testing.assert_close(c2w_cv[:, :3, 0], c2w_gl[:, :3, 0])
    torch.testing.assert_close(c2w_cv[:, :3, 1], -c2w_gl[:, :3, 1])
    torch.testing.assert_close(c2w_cv[:, :3, 2], -c2w_gl[:, :3, 2])
    torch.testing.assert_close(cameras.opengl_to_opencv_c2w(c2w_cv), c2w_gl)
    # The principal ray of the converted camera is the OpenGL viewing direction.
    rays = cameras.plucker_rays(c2w_cv, torch.tensor([3.0, 3.0, 1.5, 1.5]).double(), 3, 3)
    torch.testing.assert_close(rays[:, 3:, 1, 1], -c2w_gl[:, :3, 2])

    w2c = cameras.c2w_to_w2c(c2w_cv)
    rotation, centre = c2w_cv[:, :3, :3], c2w_cv[:, :3, 3:]
    torch.testing.assert_close(w2c[:, :3, :3], rotation.transpose(-1, -2))
    torch.testing.assert_close(w2c[:, :3, 3:], -rotation.transpose(-1, -2) @ centre)
    torch.testing.assert_close(cameras.w2c_to_c2w(w2c), c2w_cv)


@FAST
@given(seeds, st.integers(2, 5), st.floats(min_value=0.01, max_value=100.0))
def test_normalisation_properties(seed: int, num_cond: int, world_scale: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    c2w = random_c2w((6,), generator)
    result = cameras.normalize_scene(c2w, num_cond)
    torch.testing.assert_close(result.c2w[0], torch.eye(4, dtype=torch.float64))
    distances = result.c2w[:, :3, 3].norm(dim=-1)
    expected = torch.tensor(1 / cameras.SCENE_SCALE_FACTOR, dtype=torch.float64)
    torch.testing.assert_close(distances[:num_cond].max(), expected)
    torch.testing.assert_close(result.camera_scale, expected)
    torch.testing.assert_close(result.scene_scale_ratio, distances.max())
    # Invariant to a rigid change of world frame and to the world's scale.
    world = random_c2w((), generator)
    moved = world @ c2w
    moved[:, :3, 3] *= world_scale
    other = cameras.normalize_scene(moved, num_cond)
    torch.testing.assert_close(other.c2w, result.c2w)
    torch.testing.assert_close(other.scene_scale, result.scene_scale * world_scale)


def test_single_view_normalisation_and_tokens() -> None:
    c2w = random_c2w((4,), torch.Generator().manual_seed(6))
    result = cameras.normalize_scene(c2w, 1)
    torch.testing.assert_close(result.scene_scale, torch.tensor(1.0, dtype=torch.float64))
    relative = torch.linalg.inv(c2w[0]) @ c2w
    torch.testing.assert_close(result.c2w, relative)
    assert float(result.camera_scale) < 1e-12
    intrinsics = torch.tensor([4.0, 4.0, 2.0, 2.0], dtype=torch.float64)
    test = cameras.camera_tokens(result.c2w, intrinsics, 4, 4, result.camera_scale, 1, "test")
    train = cameras.camera_tokens(result.c2w, intrinsics, 4, 4, 0.25, 1, "train")
    torch.testing.assert_close(test[:, 9:], torch.tensor([0.0, 1.0]).double().expand(4, 2))
    torch.testing.assert_close(train[:, 9:], torch.tensor([0.25, 0.0]).double().expand(4, 2))
    torch.testing.assert_close(test[:, :9], train[:, :9])
    two_views = cameras.camera_tokens(result.c2w, intrinsics, 4, 4, 0.5, 2, "test")
    torch.testing.assert_close(two_views[:, 9:], torch.tensor([0.5, 0.0]).double().expand(4, 2))


def test_zeroing_conditioning_cameras_per_sample() -> None:
    generator = torch.Generator().manual_seed(7)
    c2w = random_c2w((3, 4), generator)
    intrinsics = random_intrinsics((3, 4), 4, 4, generator)
    norm = cameras.normalize_scene(c2w, 2)
    args = (norm.c2w, intrinsics, 4, 4, norm.camera_scale, 2)
    rays, tokens = cameras.build_camera_conditioning(*args)
    mask = torch.tensor([True, False, True])
    rays_z, tokens_z = cameras.build_camera_conditioning(*args, zero_cond_cameras=mask)
    for b, zeroed in enumerate(mask.tolist()):
        if zeroed:
            assert bool((rays_z[b, :2] == 0).all()) and bool((tokens_z[b, :2, :9] == 0).all())
        else:
            torch.testing.assert_close(rays_z[b, :2], rays[b, :2])
            torch.testing.assert_close(tokens_z[b, :2], tokens[b, :2])
        torch.testing.assert_close(tokens_z[b, :2, 9:], tokens[b, :2, 9:])
        torch.testing.assert_close(rays_z[b, 2:], rays[b, 2:])
        torch.testing.assert_close(tokens_z[b, 2:], tokens[b, 2:])
    rays_all, tokens_all = cameras.zero_conditioning_cameras(rays, tokens, 2)
    assert bool((rays_all[:, :2] == 0).all()) and bool((tokens_all[:, :2, :9] == 0).all())
    torch.testing.assert_close(tokens_all[:, 2:], tokens[:, 2:])


@FAST
@given(st.integers(1, 2000), st.integers(1, 2000), st.integers(1, 600), st.integers(1, 600))
def test_center_crop_size_properties(src_h, src_w, dst_h, dst_w) -> None:
    crop_h, crop_w = cameras.center_crop_size((src_h, src_w), (dst_h, dst_w))
    assert 0 <= crop_h <= src_h and 0 <= crop_w <= src_w
    assert crop_h == src_h or crop_w == src_w
    # Truncation loses less than one pixel of the target aspect.
    assert abs(crop_h * dst_w - crop_w * dst_h) <= max(dst_h, dst_w)


def test_crop_resize_intrinsics_maps_pixels() -> None:
    intrinsics = torch.tensor([[500.0, 400.0, 320.0, 180.0]], dtype=torch.float64)
    torch.testing.assert_close(
        cameras.crop_resize_intrinsics(intrinsics, (360, 640), (360, 640)), intrinsics
    )
    # 360x640 -> 256x256: crop columns 140..500, then scale by 256/360.
    adjusted = cameras.crop_resize_intrinsics(intrinsics, (360, 640), (256, 256))
    scale = 256 / 360
    expected = torch.tensor([[500 * scale, 400 * scale, 180 * scale, 180 * scale]]).double()
    torch.testing.assert_close(adjusted, expected)


def test_validate_cameras_accepts_valid() -> None:
    generator = torch.Generator().manual_seed(8)
    intrinsics = random_intrinsics((3,), 4, 4, generator)
    cameras.validate_cameras(random_c2w((2, 3), generator), intrinsics)
    cameras.validate_cameras(torch.empty(0, 4, 4))


def _bad_c2w(kind: str) -> torch.Tensor:
    c2w = torch.eye(4).repeat(2, 1, 1)
    if kind == "nan":
        c2w[1, 0, 3] = float("nan")
    elif kind == "inf":
        c2w[0, 2, 2] = float("inf")
    elif kind == "singular":
        c2w[1, :3, 2] = 0.0
    elif kind == "reflection":
        c2w[1, 0, 0] = -1.0
    elif kind == "scaled":
        c2w[0, :3, :3] *= 2.0
    elif kind == "last_row":
        c2w[0, 3, 0] = 0.5
    return c2w


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("nan", "NaN or infinite"),
        ("inf", "NaN or infinite"),
        ("singular", "not invertible"),
        ("reflection", "reflection"),
        ("scaled", "not orthonormal"),
        ("last_row", "last row"),
    ],
)
def test_validate_cameras_rejects_bad_poses(kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cameras.validate_cameras(_bad_c2w(kind))


@pytest.mark.parametrize(
    ("c2w", "intrinsics", "message"),
    [
        (torch.eye(3), None, r"c2w must have shape \(\.\.\., 4, 4\)"),
        (torch.eye(4, dtype=torch.int64), None, "floating-point"),
        (torch.eye(4), torch.ones(3), r"fxfycxcy must have shape \(\.\.\., 4\)"),
        (torch.eye(4).repeat(3, 1, 1), torch.ones(2, 4), "do not broadcast"),
        (torch.eye(4), torch.tensor([1.0, 0.0, 1.0, 1.0]), "focal lengths must be positive"),
        (torch.eye(4), torch.tensor([1.0, float("nan"), 1.0, 1.0]), "fxfycxcy contains NaN"),
    ],
)
def test_validate_cameras_rejects_bad_shapes_and_intrinsics(c2w, intrinsics, message) -> None:
    with pytest.raises(ValueError, match=message):
        cameras.validate_cameras(c2w, intrinsics)


def test_functions_reject_bad_arguments() -> None:
    c2w = torch.eye(4).repeat(3, 1, 1)
    intrinsics = torch.tensor([4.0, 4.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="num_cond_views"):
        cameras.normalize_scene(c2w, 4)
    with pytest.raises(ValueError, match="num_cond_views"):
        cameras.camera_tokens(c2w, intrinsics, 4, 4, 1.0, 0)
    with pytest.raises(ValueError, match="split"):
        cameras.camera_tokens(c2w, intrinsics, 4, 4, 1.0, 1, split="val")
    with pytest.raises(ValueError, match="image size"):
        cameras.plucker_rays(c2w, intrinsics, 0, 4)
    with pytest.raises(ValueError, match="c2w must have shape"):
        cameras.plucker_rays(c2w[..., :3, :], intrinsics, 4, 4)
    with pytest.raises(ValueError, match="image sizes must be positive"):
        cameras.center_crop_size((0, 4), (4, 4))
    rays, tokens = cameras.build_camera_conditioning(c2w, intrinsics, 4, 4, 1.0, 2)
    with pytest.raises(ValueError, match="rays must have shape"):
        cameras.zero_conditioning_cameras(rays[:2], tokens, 2)
    with pytest.raises(ValueError, match="mask must be boolean"):
        cameras.zero_conditioning_cameras(rays, tokens, 2, mask=torch.tensor(1))
