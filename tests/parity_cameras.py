"""Parity of `lagernvs.cameras` with the reference camera fixtures (cameras.safetensors/.json).

Plain module (no pytest tests): `check_camera_fixture(fixture_dir)` runs every check and is
called from the parity tests. Tolerances are the fixture README's (1e-5 max abs, float32).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from lagernvs import cameras

ATOL = 1e-5
# Rows of `rot_mats` that are exact 180-degree rotations (w = 0): the quaternion sign is free.
W_ZERO_ATOL = 1e-6


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str, atol=ATOL) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    diff = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    assert diff <= atol, f"{name}: max abs diff {diff:.3g} > {atol:g}"


def _load(fixture_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensors_path = fixture_dir / "cameras.safetensors"
    meta_path = fixture_dir / "cameras.json"
    for path in (tensors_path, meta_path):
        if not path.is_file():
            raise FileNotFoundError(f"camera fixture {path} is missing")
    return load_file(tensors_path), json.loads(meta_path.read_text())


def _image_sizes(tensors: dict[str, torch.Tensor]) -> list[tuple[int, int]]:
    sizes = [key.removeprefix("plucker_") for key in tensors if key.startswith("plucker_")]
    assert sizes, "cameras.safetensors holds no plucker_<H>x<W> entries"
    return [tuple(int(v) for v in size.split("x")) for size in sizes]


def check_rays_k_pose(tensors: dict[str, torch.Tensor]) -> None:
    """K matrices, Plücker rays and pose encodings of `c2w_random` for every image size."""
    c2w = tensors["c2w_random"]
    for height, width in _image_sizes(tensors):
        tag = f"{height}x{width}"
        intrinsics = tensors[f"fxfycxcy_{tag}"]
        expected_k = tensors[f"K_{tag}"]
        k = cameras.fxfycxcy_to_K(intrinsics)
        assert k.dtype == expected_k.dtype, f"K_{tag}: dtype {k.dtype} != {expected_k.dtype}"
        _assert_close(k, expected_k, f"K_{tag}")
        rays = cameras.plucker_rays(c2w, intrinsics, height, width)
        _assert_close(rays, tensors[f"plucker_{tag}"], f"plucker_{tag}")
        encoding = cameras.pose_encoding(c2w, intrinsics, height, width)
        _assert_close(encoding, tensors[f"pose_enc_{tag}"], f"pose_enc_{tag}")
        # float64 inputs stay usable and agree with the float32 reference.
        rays64 = cameras.plucker_rays(c2w.double(), intrinsics.double(), height, width)
        assert rays64.dtype == torch.float64
        _assert_close(rays64, tensors[f"plucker_{tag}"], f"plucker_{tag} (float64)")
        encoding64 = cameras.pose_encoding(c2w.double(), intrinsics.double(), height, width)
        _assert_close(encoding64, tensors[f"pose_enc_{tag}"], f"pose_enc_{tag} (float64)")


def check_quaternions(tensors: dict[str, torch.Tensor]) -> None:
    """Matrix -> quaternion (sign free only where w = 0), and quaternion -> matrix."""
    rotations, expected = tensors["rot_mats"], tensors["mat_to_quat"]
    quats = cameras.matrix_to_quaternion(rotations)
    assert quats.shape == expected.shape, f"mat_to_quat: shape {quats.shape}"
    sign_free = expected[:, 3].abs() <= W_ZERO_ATOL
    aligned = torch.where(
        sign_free[:, None] & ((quats + expected).abs().amax(-1, keepdim=True) < ATOL), -quats, quats
    )
    _assert_close(aligned, expected, "mat_to_quat")
    assert bool((quats[:, 3] >= 0).all()), "mat_to_quat: w must be >= 0"
    _assert_close(
        cameras.quaternion_to_matrix(quats),
        tensors["quat_to_mat_of_mat_to_quat"],
        "quat_to_mat_of_mat_to_quat",
    )
    _assert_close(
        cameras.quaternion_to_matrix(tensors["quats_unnormalized"]),
        tensors["quat_to_mat"],
        "quat_to_mat",
    )


def _num_cond_from_key(key: str) -> int:
    return int(key.split(".")[1].removeprefix("n"))


def check_normalization(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """normalize_scene on `c2w_seq` for every stored number of conditioning views."""
    keys = sorted({key.rsplit(".", 1)[0] for key in tensors if key.startswith("norm.")})
    assert keys, "cameras.safetensors holds no norm.n<k>.* entries"
    for prefix in keys:
        num_cond = _num_cond_from_key(prefix)
        result = cameras.normalize_scene(tensors["c2w_seq"], num_cond)
        _assert_close(result.c2w, tensors[f"{prefix}.c2w"], f"{prefix}.c2w")
        _assert_close(result.camera_scale, tensors[f"{prefix}.camera_scale"], f"{prefix}.scale")
        _assert_close(
            result.scene_scale_ratio,
            tensors[f"{prefix}.scene_scale_ratio"],
            f"{prefix}.scene_scale_ratio",
        )
        scalars = meta["normalize_extrinsics"][prefix.split(".")[1]]
        _assert_close(result.camera_scale, torch.tensor(scalars["camera_scale"]), prefix)
        _assert_close(result.scene_scale_ratio, torch.tensor(scalars["scene_scale_ratio"]), prefix)


def check_conditioning(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Rays and 11-d tokens for every (num_cond, zero-out p, split) case of `cond.*`."""
    cases = meta["build_cam_cond"]
    assert cases, "cameras.json lists no build_cam_cond cases"
    stored = {key.rsplit(".", 1)[0] for key in tensors if key.startswith("cond.")}
    assert stored == set(cases), f"cond.* tensors {sorted(stored)} != json cases {sorted(cases)}"
    for case in cases:
        _, n_tag, p_tag, split = case.split(".")
        num_cond = int(n_tag.removeprefix("n"))
        expected_rays, expected_tokens = tensors[f"{case}.rays"], tensors[f"{case}.token"]
        height, width = expected_rays.shape[-2:]  # the size `fxfycxcy_seq` refers to
        rays, tokens = cameras.build_camera_conditioning(
            tensors[f"norm.{n_tag}.c2w"],
            tensors["fxfycxcy_seq"],
            height,
            width,
            tensors[f"norm.{n_tag}.camera_scale"],
            num_cond,
            split=split,
            zero_cond_cameras=p_tag == "p1",
        )
        assert str(tokens.dtype) == cases[case]["token_dtype"], f"{case}: token dtype"
        assert str(rays.dtype) == cases[case]["rays_dtype"], f"{case}: rays dtype"
        _assert_close(rays, expected_rays, f"{case}.rays")
        _assert_close(tokens, expected_tokens, f"{case}.token")


def check_crop_and_resize(meta: dict) -> None:
    """Crop size and adjusted float64 intrinsics for every (original, target) size pair."""
    cases = meta["crop_and_resize"]
    assert cases, "cameras.json lists no crop_and_resize cases"
    for case in cases:
        src, dst = tuple(case["orig_hw"]), tuple(case["tgt_hw"])
        crop = cameras.center_crop_size(src, dst)
        assert list(crop) == case["crop_hw_in_orig"], f"crop {src}->{dst}: {crop}"
        adjusted = cameras.crop_resize_intrinsics(
            torch.tensor(case["fxfycxcy_orig"], dtype=torch.float64), src, dst
        )
        assert adjusted.dtype == torch.float64
        expected = torch.tensor(case["fxfycxcy_adjusted"], dtype=torch.float64)
        _assert_close(adjusted, expected, f"crop_resize_intrinsics {src}->{dst}", atol=1e-9)


def check_camera_fixture(fixture_dir: Path) -> None:
    """Run every camera parity check on `fixture_dir`; a missing fixture file raises."""
    tensors, meta = _load(Path(fixture_dir))
    check_rays_k_pose(tensors)
    check_quaternions(tensors)
    check_normalization(tensors, meta)
    check_conditioning(tensors, meta)
    check_crop_and_resize(meta)
