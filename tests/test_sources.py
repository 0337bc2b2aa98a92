"""Scene readers: geometry on real captures, exactness on fabricated scenes, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

from lagernvs.cameras import center_crop_size, crop_resize_intrinsics, validate_cameras
from lagernvs.data import Scene, detect_format, list_scenes, load_scene
from lagernvs.data.readers.colmap_model import (
    ColmapCamera,
    ColmapImage,
    ColmapModel,
    read_colmap_model,
    write_colmap_text,
)
from lagernvs.data.scene import project_points


@pytest.fixture(scope="module")
def beer_dir(shared_data_dir: Path) -> Path:
    return shared_data_dir / "real" / "beer_llff"


@pytest.fixture(scope="module")
def beer_model(beer_dir: Path):
    return read_colmap_model(beer_dir / "sparse" / "0")


@pytest.fixture(scope="module")
def beer_colmap(beer_dir: Path) -> Scene:
    return load_scene(beer_dir, "colmap")


class Observations(NamedTuple):
    """Every COLMAP observation of the beer model, flattened: frame, 3D point, pixel, point row."""

    frame: torch.Tensor  # (M,) frame index into the Scene
    xyz: torch.Tensor  # (M, 3)
    pixel: torch.Tensor  # (M, 2) recorded keypoint position
    row: np.ndarray  # (M,) row of the point in the points arrays


@pytest.fixture(scope="module")
def beer_obs(beer_model, beer_colmap: Scene) -> Observations:
    pts = beer_model.points
    sorter = np.argsort(pts.ids)
    frame_of = {p.name: i for i, p in enumerate(beer_colmap.image_paths)}
    frames, rows, pixels = [], [], []
    for image in beer_model.images.values():
        seen = image.point3d_ids >= 0
        rows.append(sorter[np.searchsorted(pts.ids, image.point3d_ids[seen], sorter=sorter)])
        frames.append(np.full(int(seen.sum()), frame_of[image.name]))
        pixels.append(image.xys[seen])
    row = np.concatenate(rows)
    return Observations(
        torch.from_numpy(np.concatenate(frames)),
        torch.from_numpy(pts.xyz[row]),
        torch.from_numpy(np.concatenate(pixels)),
        row,
    )


def _project(scene: Scene, obs: Observations, intrinsics: torch.Tensor, distorted: bool = True):
    """Project every observation's point with its frame's camera: uv (M, 2), depth (M,)."""
    dist = scene.distortion[obs.frame] if distorted else None
    uv, depth = project_points(obs.xyz[:, None], scene.c2w[obs.frame], intrinsics[obs.frame], dist)
    return uv[:, 0], depth[:, 0]


# ----------------------------------------------------------------------------- COLMAP (beer)


def test_beer_colmap_reads_exact_model(beer_colmap: Scene, beer_model) -> None:
    scene = beer_colmap
    assert scene.source_format == "colmap" and scene.num_frames == 71
    assert [p.name for p in scene.image_paths] == sorted(p.name for p in scene.image_paths)
    assert scene.c2w.dtype == torch.float64 and scene.fxfycxcy.dtype == torch.float64
    assert scene.image_sizes.tolist() == [[1280, 720]] * 71
    validate_cameras(scene.c2w, scene.fxfycxcy, atol=1e-9)
    # SIMPLE_RADIAL: k1 reported (never dropped), the other OpenCV terms zero.
    assert scene.distortion_model == "SIMPLE_RADIAL"
    assert scene.distortion is not None and scene.distortion[:, 1:].abs().max() == 0
    cams = {im.name: beer_model.cameras[im.camera_id] for im in beer_model.images.values()}
    expected_k1 = torch.tensor([cams[p.name].params[3] for p in scene.image_paths])
    torch.testing.assert_close(scene.distortion[:, 0], expected_k1.double(), rtol=0, atol=0)
    assert torch.all(scene.fxfycxcy[:, 2:] == torch.tensor([360.0, 640.0], dtype=torch.float64))


def test_beer_points_reproject_onto_observations(beer_colmap: Scene, beer_model, beer_obs) -> None:
    """Per-point mean reprojection error with our cameras equals the error COLMAP stored.

    This pins the pose convention, intrinsics and distortion to COLMAP's own projection; dropping
    the distortion (pinhole projection) visibly breaks it.
    """
    scene, pts, obs = beer_colmap, beer_model.points, beer_obs
    uv, depth = _project(scene, obs, scene.fxfycxcy)
    uv_pinhole, _ = _project(scene, obs, scene.fxfycxcy, distorted=False)
    assert bool((depth > 0).all())
    count = np.bincount(obs.row, minlength=len(pts.ids))
    assert np.array_equal(count, np.diff(pts.track_offsets))
    mean_error = np.bincount(obs.row, (uv - obs.pixel).norm(dim=-1).numpy()) / count
    pinhole_error = np.bincount(obs.row, (uv_pinhole - obs.pixel).norm(dim=-1).numpy()) / count
    np.testing.assert_allclose(mean_error, pts.error, rtol=0, atol=1e-6)
    assert np.median(mean_error) < 1.0
    assert np.abs(pinhole_error - pts.error).max() > 0.5


@pytest.mark.parametrize("dst_hw", [(256, 256), (200, 150), (96, 200)])
def test_beer_points_reproject_after_crop_resize(beer_colmap: Scene, beer_obs, dst_hw) -> None:
    """After a centred crop + resize, observations mapped like the image land where the
    adjusted cameras project their points (the crop keeps only observations inside it)."""
    scene, obs = beer_colmap, beer_obs
    src_hw = (1280, 720)
    crop_h, crop_w = center_crop_size(src_hw, dst_hw)
    offset = torch.tensor(
        [(src_hw[1] - crop_w) // 2, (src_hw[0] - crop_h) // 2], dtype=torch.float64
    )
    scale = torch.tensor([dst_hw[1] / crop_w, dst_hw[0] / crop_h], dtype=torch.float64)
    intrinsics = crop_resize_intrinsics(scene.fxfycxcy, src_hw, dst_hw)
    moved = (obs.pixel - offset) * scale
    inside = ((moved >= 0) & (moved < torch.tensor(dst_hw[::-1]))).all(-1)
    uv, _ = _project(scene, obs, intrinsics)
    uv_full, _ = _project(scene, obs, scene.fxfycxcy)
    torch.testing.assert_close(uv, (uv_full - offset) * scale, rtol=0, atol=1e-9)
    errors = ((uv - moved) / scale).norm(dim=-1)[inside]  # in original pixels
    assert int(inside.sum()) > 1000
    assert float(errors.median()) < 1.0 and float(errors.quantile(0.99)) < 4.0


def test_colmap_text_reads_like_binary(
    tmp_path: Path, beer_dir: Path, beer_model, beer_colmap
) -> None:
    write_colmap_text(beer_model, tmp_path / "beer" / "sparse" / "0")
    (tmp_path / "beer" / "images").symlink_to(beer_dir / "images")
    text = load_scene(tmp_path / "beer")  # detected: COLMAP, text model
    assert text.source_format == "colmap" and text.frame_ids == beer_colmap.frame_ids
    for name in ("c2w", "fxfycxcy", "distortion", "image_sizes"):
        assert torch.equal(getattr(text, name), getattr(beer_colmap, name)), name
    back = read_colmap_model(tmp_path / "beer" / "sparse" / "0")
    assert np.array_equal(back.points.xyz, beer_model.points.xyz)
    assert np.array_equal(back.points.track, beer_model.points.track)


# ----------------------------------------------------------------------------- LLFF vs COLMAP


def _similarity(src: torch.Tensor, dst: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Least-squares s, R, t with dst ~ s R src + t (Umeyama)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = torch.linalg.svd(b.T @ a / len(src))
    d = torch.ones(3, dtype=src.dtype)
    d[2] = torch.sign(torch.det(u @ vt))
    rot = u @ torch.diag(d) @ vt
    s = float((sig * d).sum() / a.pow(2).sum(-1).mean())
    return s, rot, mu_d - s * rot @ mu_s


def test_beer_llff_agrees_with_colmap(beer_dir: Path, beer_colmap: Scene) -> None:
    """What is compared: LLFF's imgs2poses writes COLMAP's own world frame (no recentring or
    rescaling: loaders do that later), with c2w columns reordered to (down, right, back). The
    similarity LLFF implies is therefore the identity: fitting one between the camera centres
    gives s = 1, R = I, t = 0, and after our conversion every pose equals COLMAP's. Intrinsics:
    LLFF keeps one focal length (COLMAP's first camera) and puts the principal point at the image
    centre, so only frame 0's focal matches exactly; the others are within a few percent."""
    llff = load_scene(beer_dir, "llff")
    colmap = beer_colmap
    assert llff.frame_ids == colmap.frame_ids
    s, rot, t = _similarity(llff.c2w[:, :3, 3], colmap.c2w[:, :3, 3])
    assert abs(s - 1) < 1e-12
    torch.testing.assert_close(rot, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(t, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)
    aligned = rot @ llff.c2w[:, :3, :3]
    torch.testing.assert_close(aligned, colmap.c2w[:, :3, :3], rtol=0, atol=1e-12)
    torch.testing.assert_close(llff.c2w, colmap.c2w, rtol=0, atol=1e-12)
    assert llff.fxfycxcy[0, 0] == colmap.fxfycxcy[0, 0]
    torch.testing.assert_close(llff.fxfycxcy[:, 2:], colmap.fxfycxcy[:, 2:], rtol=0, atol=0)
    rel = (llff.fxfycxcy[:, :2] / colmap.fxfycxcy[:, :2] - 1).abs()
    assert float(rel.max()) < 0.05
    assert llff.distortion is None and llff.bounds is not None and llff.bounds.shape == (71, 2)
    assert bool((llff.bounds[:, 0] < llff.bounds[:, 1]).all())


def test_llff_incomplete_image_folder_is_reported(beer_dir: Path) -> None:
    with pytest.raises(
        ValueError, match="inconsistent frame counts: poses_bounds.npy has 71 poses"
    ):
        load_scene(beer_dir, "llff", image_dir="images_8")


# ----------------------------------------------------------------------------- NeRF (fox)


def test_fox_reads_with_sensible_cameras(shared_data_dir: Path) -> None:
    fox_dir = shared_data_dir / "real" / "fox"
    scene = load_scene(fox_dir)
    meta = json.loads((fox_dir / "transforms.json").read_text())
    assert scene.source_format == "nerf" and scene.num_frames == 67
    assert [p.name for p in scene.image_paths] == sorted(
        Path(f["file_path"]).name for f in meta["frames"]
    )
    assert scene.image_sizes.tolist() == [[1920, 1080]] * 67
    torch.testing.assert_close(
        scene.fxfycxcy[0], torch.tensor([1375.52, 1374.49, 554.558, 965.268], dtype=torch.float64)
    )
    expected = torch.tensor(
        [meta["k1"], meta["k2"], meta["p1"], meta["p2"], 0.0], dtype=torch.float64
    )
    assert scene.distortion is not None and torch.equal(scene.distortion[5], expected)
    validate_cameras(scene.c2w, scene.fxfycxcy, atol=1e-5)  # stored to ~1e-6
    # OpenCV: the optical axis is +z. All axes meet near the origin, in front of every camera.
    centres, axes = scene.c2w[:, :3, 3], scene.c2w[:, :3, 2]
    proj = torch.eye(3, dtype=torch.float64) - axes[:, :, None] * axes[:, None, :]
    meet = torch.linalg.solve(proj.sum(0), (proj @ centres[..., None]).sum(0))[:, 0]
    assert float(meet.norm()) < 0.5
    depth = ((meet - centres) * axes).sum(-1)
    assert float(depth.min()) > 3.0 and float(depth.max()) < 7.0
    up = -scene.c2w[:, :3, 1].mean(0)  # OpenCV y points down in the image
    assert float(up[2]) > 0.9
    by_name = {Path(f["file_path"]).name: f for f in meta["frames"]}
    gl = torch.tensor(by_name[scene.image_paths[3].name]["transform_matrix"], dtype=torch.float64)
    torch.testing.assert_close(
        scene.c2w[3], gl @ torch.diag(torch.tensor([1.0, -1, -1, 1], dtype=torch.float64))
    )


# ----------------------------------------------------------------------------- fabricated scenes


def _write_png(path: Path, hw: tuple[int, int], value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*hw, 3), value, dtype=np.uint8)).save(path)


def _random_rotation(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unit quaternion (w, x, y, z) with w > 0 and its rotation matrix (textbook formula)."""
    q = rng.normal(size=4)
    q = q / np.linalg.norm(q) * np.sign(q[0])
    w, x, y, z = q
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    return q, rot


def test_colmap_text_model_matches_ground_truth(tmp_path: Path) -> None:
    """Hand-written COLMAP text model (shared + per-image cameras, several lens models, an image
    without observations) reads to the ground-truth cameras within 1e-12."""
    rng = np.random.default_rng(0)
    names = ["b.png", "a.png", "c.png", "d.png"]
    cams = [
        "1 PINHOLE 40 30 35.5 36.25 19.75 15.5",
        "2 SIMPLE_PINHOLE 40 30 33.0 20.5 14.5",
        "3 OPENCV 40 30 31.0 32.0 20.0 15.0 0.01 -0.002 0.0003 0.0004",
        "4 RADIAL 40 30 30.0 20.0 15.0 0.02 0.003",
    ]
    camera_of = [1, 2, 3, 1]  # images b and d share camera 1
    expected_k = {
        1: [35.5, 36.25, 19.75, 15.5],
        2: [33.0, 33.0, 20.5, 14.5],
        3: [31.0, 32.0, 20.0, 15.0],
    }
    expected_d = {1: [0] * 5, 2: [0] * 5, 3: [0.01, -0.002, 0.0003, 0.0004, 0]}
    lines, truth = [], {}
    for i, (name, cam) in enumerate(zip(names, camera_of, strict=True)):
        q, rot = _random_rotation(rng)
        t = rng.normal(size=3) * 3
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = rot.T, -rot.T @ t
        truth[name] = (c2w, expected_k[cam], expected_d[cam])
        lines.append(f"{i + 1} {' '.join(repr(float(v)) for v in (*q, *t))} {cam} {name}")
        lines.append("" if i == 2 else "1.5 2.5 -1 3.25 4.5 -1")
    model = tmp_path / "scene" / "sparse" / "0"
    model.mkdir(parents=True)
    (model / "cameras.txt").write_text("# cams\n" + "\n".join(cams) + "\n")
    (model / "images.txt").write_text("# images\n# two lines each\n" + "\n".join(lines) + "\n")
    for name in names:
        _write_png(tmp_path / "scene" / "images" / name, (30, 40))
    scene = load_scene(tmp_path / "scene")
    assert scene.source_format == "colmap" and [p.name for p in scene.image_paths] == sorted(names)
    assert scene.frame_ids == ["a", "b", "c", "d"]
    assert scene.distortion_model == "OPENCV, PINHOLE, SIMPLE_PINHOLE"
    for i, path in enumerate(scene.image_paths):
        c2w, k, d = truth[path.name]
        np.testing.assert_allclose(scene.c2w[i].numpy(), c2w, rtol=0, atol=1e-12)
        np.testing.assert_allclose(scene.fxfycxcy[i].numpy(), k, rtol=0, atol=0)
        np.testing.assert_allclose(scene.distortion[i].numpy(), d, rtol=0, atol=0)
    assert scene.image_sizes.tolist() == [[30, 40]] * 4


def test_colmap_downscaled_images_scale_intrinsics_and_unsupported_models(tmp_path: Path) -> None:
    model = tmp_path / "sparse"
    camera = ColmapCamera(1, "PINHOLE", 40, 30, np.array([35.0, 36.0, 20.0, 15.0]))
    image = ColmapImage(
        1,
        np.array([1.0, 0, 0, 0]),
        np.zeros(3),
        1,
        "x.png",
        np.zeros((0, 2)),
        np.zeros(0, np.int64),
    )
    write_colmap_text(ColmapModel({1: camera}, {1: image}, None), model)
    _write_png(tmp_path / "images_2" / "x.png", (15, 20))
    scene = load_scene(tmp_path, "colmap", image_dir="images_2")
    assert scene.fxfycxcy[0].tolist() == [17.5, 18.0, 10.0, 7.5]
    cams_only = load_scene(tmp_path, "colmap", require_images=False)
    assert cams_only.image_sizes.tolist() == [[30, 40]] and cams_only.fxfycxcy[0, 0] == 35.0
    with pytest.raises(FileNotFoundError, match="missing.*require_images=False"):
        load_scene(tmp_path, "colmap", require_images=True)
    with pytest.warns(UserWarning, match="missing.*reading the cameras alone"):
        default = load_scene(tmp_path, "colmap")
    assert torch.equal(default.fxfycxcy, cams_only.fxfycxcy)
    assert torch.equal(default.image_sizes, cams_only.image_sizes)
    fisheye = ColmapCamera(1, "OPENCV_FISHEYE", 40, 30, np.ones(8))
    write_colmap_text(ColmapModel({1: fisheye}, {1: image}, None), model)
    with pytest.raises(ValueError, match="OPENCV_FISHEYE is not supported.*undistort"):
        load_scene(tmp_path, "colmap", require_images=False)


def _nerf_frames(rng: np.random.Generator, names: list[str]) -> tuple[list[dict], dict]:
    frames, truth = [], {}
    for name in names:
        _, rot = _random_rotation(rng)
        c2w_cv = np.eye(4)
        c2w_cv[:3, :3], c2w_cv[:3, 3] = rot, rng.normal(size=3)
        c2w_gl = c2w_cv @ np.diag([1.0, -1.0, -1.0, 1.0])
        frames.append({"file_path": name, "transform_matrix": c2w_gl.tolist()})
        truth[Path(name).name] = c2w_cv
    return frames, truth


def test_nerf_transforms_match_ground_truth(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    names = ["./train/r_2", "./train/r_0", "./train/r_1"]  # Blender: no extension
    frames, truth = _nerf_frames(rng, names)
    frames[1]["fl_x"] = 50.0  # per-frame override
    data = {"camera_angle_x": 0.8, "frames": frames}
    (tmp_path / "transforms_train.json").write_text(json.dumps(data))
    for name in names:
        _write_png(tmp_path / f"{name}.png", (24, 32))
    scene = load_scene(tmp_path, split="train")
    assert scene.source_format == "nerf" and scene.frame_ids == ["r_0", "r_1", "r_2"]
    focal = 0.5 * 32 / np.tan(0.4)
    for i, fid in enumerate(scene.frame_ids):
        np.testing.assert_allclose(scene.c2w[i].numpy(), truth[fid], rtol=0, atol=1e-12)
        fx = 50.0 if fid == "r_0" else focal
        np.testing.assert_allclose(
            scene.fxfycxcy[i].numpy(), [fx, fx, 16.0, 12.0], rtol=0, atol=1e-12
        )
    assert scene.distortion is None

    data = {
        "fl_x": 30.0,
        "fl_y": 31.0,
        "cx": 15.0,
        "cy": 11.0,
        "w": 32,
        "h": 24,
        "k1": 0.1,
        "frames": frames,
    }
    (tmp_path / "transforms.json").write_text(json.dumps(data))
    scene = load_scene(tmp_path / "transforms.json")
    np.testing.assert_allclose(scene.fxfycxcy[0].numpy(), [50.0, 31.0, 15.0, 11.0], rtol=0, atol=0)
    assert scene.distortion is not None and scene.distortion[:, 0].tolist() == [0.1] * 3
    (tmp_path / "transforms.json").write_text(json.dumps({**data, "is_fisheye": True}))
    with pytest.raises(ValueError, match="fisheye"):
        load_scene(tmp_path / "transforms.json")


def test_dl3dv_scales_full_resolution_intrinsics(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    key = "1K/" + "ab" * 32
    scene_dir = tmp_path / key
    names = [f"images/frame_{i:05d}.png" for i in (3, 1, 2)]
    frames, truth = _nerf_frames(rng, names)
    meta = {"w": 64, "h": 48, "fl_x": 60.0, "fl_y": 61.0, "cx": 31.0, "cy": 23.0, "k1": -0.01}
    scene_dir.mkdir(parents=True)
    (scene_dir / "transforms.json").write_text(json.dumps({**meta, "frames": frames}))
    for name in names:
        _write_png(scene_dir / name.replace("images/", "images_4/"), (12, 16))
    assert detect_format(scene_dir) == "dl3dv"
    assert list_scenes(tmp_path, "dl3dv") == [key]
    by_hash = load_scene(tmp_path, "dl3dv", scene_id="ab" * 32)
    scene = load_scene(scene_dir)
    assert scene.scene_id == by_hash.scene_id == key and torch.equal(scene.c2w, by_hash.c2w)
    assert scene.frame_ids == ["frame_00001", "frame_00002", "frame_00003"]
    assert scene.image_sizes.tolist() == [[12, 16]] * 3
    assert scene.fxfycxcy[0].tolist() == [15.0, 15.25, 7.75, 5.75]
    for i, fid in enumerate(scene.frame_ids):
        np.testing.assert_allclose(scene.c2w[i].numpy(), truth[f"{fid}.png"], rtol=0, atol=1e-12)
    _write_png(scene_dir / "images_4" / "frame_00001.png", (16, 16))
    with pytest.raises(ValueError, match="different aspect ratio"):
        load_scene(scene_dir)


# ----------------------------------------------------------------------------- Re10k


def test_re10k_addressing_and_cameras(fixture_dir: Path) -> None:
    root = fixture_dir / "re10k_pipeline" / "data"
    seq = "fake0000aaaa1111"
    by_images = load_scene(root / "re10k" / "test" / "images" / seq)
    by_json = load_scene(root / "re10k" / "test" / "metadata" / f"{seq}.json")
    by_id = load_scene(root, "re10k", scene_id=seq, split="test")
    by_split_root = load_scene(root / "re10k", "re10k", scene_id=seq, split="test")
    for other in (by_json, by_id, by_split_root):
        assert other.frame_ids == by_images.frame_ids and torch.equal(other.c2w, by_images.c2w)
    assert list_scenes(root, "re10k", split="test") == ["fake0000aaaa1111", "fake0000bbbb2222"]
    frames = json.loads((root / "re10k" / "test" / "metadata" / f"{seq}.json").read_text())[
        "frames"
    ]
    w2c = torch.tensor([f["w2c"] for f in frames], dtype=torch.float64)
    torch.testing.assert_close(by_id.c2w @ w2c, torch.eye(4, dtype=torch.float64).expand(12, 4, 4))
    assert by_id.fxfycxcy[0].tolist() == frames[0]["fxfycxcy"]
    assert by_id.image_sizes.tolist() == [[360, 640]] * 12 and by_id.distortion is None


def test_re10k_errors(tmp_path: Path, fixture_dir: Path) -> None:
    src = fixture_dir / "re10k_pipeline" / "data" / "re10k"
    shutil.copytree(src, tmp_path / "re10k")
    split = tmp_path / "re10k" / "test"
    seq = "fake0000aaaa1111"
    with pytest.raises(FileNotFoundError, match="metadata"):
        load_scene(tmp_path, "re10k", scene_id="nope", split="test")
    with pytest.raises(FileNotFoundError, match="no Re10k split 'train'"):
        load_scene(tmp_path, "re10k", scene_id=seq, split="train")
    (split / "images" / seq / "00004.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot decode image .*00004.png"):
        load_scene(split / "images" / seq)
    (split / "images" / seq / "00004.png").unlink()
    with pytest.raises(ValueError, match="inconsistent frame counts: .* 12 frames .* 11 images"):
        load_scene(split / "images" / seq)


# ----------------------------------------------------------------------------- generic errors


def test_unknown_and_undetectable_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown scene format 'blender'"):
        load_scene(tmp_path, "blender")
    with pytest.raises(ValueError, match="cannot detect the scene format"):
        load_scene(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_scene(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no transforms.json"):
        load_scene(tmp_path, "nerf")
    with pytest.raises(FileNotFoundError, match="no COLMAP model"):
        load_scene(tmp_path, "colmap")
    (tmp_path / "bad.json").write_text(json.dumps({"frames": [{"x": 1}]}))
    with pytest.raises(ValueError, match="neither 'w2c' nor 'transform_matrix'"):
        detect_format(tmp_path / "bad.json")


def test_scene_record_round_trip_and_validation(beer_colmap: Scene) -> None:
    record = json.loads(json.dumps(beer_colmap.to_dict()))
    back = Scene.from_dict(record, image_root=beer_colmap.image_paths[0].parent)
    assert back.image_paths == beer_colmap.image_paths and back.frame_ids == beer_colmap.frame_ids
    for name in ("c2w", "fxfycxcy", "distortion", "image_sizes"):
        assert torch.equal(getattr(back, name), getattr(beer_colmap, name)), name
    sub = beer_colmap.select([3, 1, 3])
    assert sub.num_frames == 3 and torch.equal(sub.c2w[0], beer_colmap.c2w[3])
    with pytest.raises(ValueError, match="out of range"):
        beer_colmap.select([71])
    with pytest.raises(ValueError, match="inconsistent frame counts: c2w"):
        Scene(
            "s", ["a"], [Path("a.png")], [[1, 1]], torch.zeros(2, 4, 4), torch.ones(1, 4), None, "x"
        )


def test_list_scenes_of_single_scene_formats(shared_data_dir: Path, beer_colmap: Scene) -> None:
    real = shared_data_dir / "real"
    assert list_scenes(real, "nerf") == ["fox"]
    assert list_scenes(real, "colmap") == ["beer_llff"]  # COLMAP preferred over its LLFF export
    assert list_scenes(real / "fox", "nerf") == ["."]
    by_id = load_scene(real, "colmap", scene_id="beer_llff")
    assert by_id.scene_id == "beer_llff" and torch.equal(by_id.c2w, beer_colmap.c2w)
    with pytest.raises(ValueError, match="needs format="):
        load_scene(real, scene_id="fox")


def test_folder_with_colmap_and_llff_reads_and_lists_both(
    shared_data_dir: Path, beer_dir: Path
) -> None:
    """beer_llff holds a COLMAP model and its LLFF export: detection picks COLMAP, an explicit
    format reads and lists the LLFF one."""
    real = shared_data_dir / "real"
    assert detect_format(beer_dir) == "colmap"
    assert list_scenes(real, "llff") == ["beer_llff"]
    assert list_scenes(beer_dir, "llff") == list_scenes(beer_dir, "colmap") == ["."]
    by_id = load_scene(real, "llff", scene_id="beer_llff")
    assert by_id.source_format == "llff" and by_id.bounds is not None
    assert torch.equal(by_id.c2w, load_scene(beer_dir, "llff").c2w)
    with pytest.raises(ValueError, match="--format on the command line"):
        load_scene(real, scene_id="beer_llff")
    with pytest.raises(ValueError, match="--format on the command line"):
        load_scene(beer_dir / "images")
