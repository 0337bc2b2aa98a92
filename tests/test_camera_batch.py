"""`lagernvs.Cameras`: construction, validation, batch behaviour, files, crop/resize."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import lagernvs.cameras
from lagernvs import Cameras
from lagernvs.cameras import crop_resize_intrinsics, opengl_to_opencv_c2w
from lagernvs.data.synthetic import look_at as numpy_look_at


def make_cameras(count: int = 4, size: tuple[int, int] = (48, 64)) -> Cameras:
    angles = torch.linspace(0.0, 1.0, count, dtype=torch.float64)
    eyes = torch.stack([3 * angles.cos(), 3 * angles.sin(), torch.full_like(angles, 1.0)], -1)
    return Cameras.look_at(eyes, [0.0, 0.0, 0.5], up=[0.0, 0.0, 1.0], image_size=size)


def test_look_at_matches_the_reference_convention_and_projects_the_target_to_the_centre():
    eyes = torch.tensor([[2.0, 1.0, 1.5], [-1.0, 2.0, 0.5]], dtype=torch.float64)
    target = torch.tensor([0.2, -0.1, 0.7], dtype=torch.float64)
    cams = Cameras.look_at(eyes, target, up=[0, 0, 1], fov_deg=90.0, image_size=(32, 48))
    for i in range(2):
        expected = numpy_look_at(eyes[i].numpy(), target.numpy(), np.array([0.0, 0.0, 1.0]))
        torch.testing.assert_close(cams.c2w[i], torch.from_numpy(expected))
    # The target sits on the optical axis, so it projects onto the principal point (W/2, H/2).
    w2c = torch.linalg.inv(cams.c2w)
    point = w2c[:, :3, :3] @ target + w2c[:, :3, 3]
    uv = (cams.K @ point[..., None])[..., 0]
    torch.testing.assert_close(uv[:, :2] / uv[:, 2:], torch.tensor([[24.0, 16.0]] * 2).double())
    assert torch.allclose(cams.fxfycxcy[:, 0], torch.full((2,), 24.0).double())  # 90 deg: f = W/2
    assert cams.image_size == (32, 48)


def test_look_at_default_up_is_opencv_up_and_broadcasts_eyes():
    cams = Cameras.look_at([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], [0.0, 0.0, 1.0])
    # Looking along +z with "up" = -y reproduces the identity rotation of an OpenCV camera.
    torch.testing.assert_close(cams.c2w[0], torch.eye(4, dtype=torch.float64))
    assert len(cams) == 2 and cams.image_size == (256, 256)


def test_invalid_cameras_raise_clear_errors():
    c2w = torch.eye(4).repeat(2, 1, 1)
    bad = c2w.clone()
    bad[1, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        Cameras(bad, [50.0, 50.0, 32.0, 32.0], (64, 64))
    with pytest.raises(ValueError, match="focal lengths must be positive"):
        Cameras(c2w, [-5.0, 50.0, 32.0, 32.0], (64, 64))
    with pytest.raises(ValueError, match=r"fxfycxcy must have shape \(2, 4\)"):
        Cameras(c2w, torch.ones(3, 4), (64, 64))
    with pytest.raises(ValueError, match="image_size"):
        Cameras(c2w, [50.0, 50.0, 32.0, 32.0], [[64, 64]] * 3)
    with pytest.raises(ValueError, match="positive"):
        Cameras(c2w, [50.0, 50.0, 32.0, 32.0], (0, 64))
    with pytest.raises(ValueError, match=r"shape \(N, 4, 4\)"):
        Cameras(torch.eye(3), [50.0, 50.0, 32.0, 32.0], (64, 64))
    with pytest.raises(ValueError, match="parallel"):
        Cameras.look_at([0, 0, 0], [0, 0, 1], up=[0, 0, 1])
    with pytest.raises(ValueError, match="coincide"):
        Cameras.look_at([0, 0, 1], [0, 0, 1])


def test_accepts_numpy_lists_and_3x4_poses():
    pose = np.eye(4)[:3]
    cams = Cameras(pose, [[40.0, 40.0, 16.0, 16.0]], [32, 32])
    assert cams.c2w.shape == (1, 4, 4) and cams.dtype == torch.float64
    torch.testing.assert_close(cams.c2w[0], torch.eye(4, dtype=torch.float64))


def test_indexing_and_concatenation_behave_like_a_tensor_batch():
    cams = make_cameras(5)
    assert len(cams[1:4]) == 3
    torch.testing.assert_close(cams[2].c2w, cams.c2w[2:3])
    torch.testing.assert_close(cams[-1].c2w, cams.c2w[4:5])
    torch.testing.assert_close(cams[[4, 0]].fxfycxcy, cams.fxfycxcy[[4, 0]])
    mask = torch.tensor([True, False, True, False, False])
    torch.testing.assert_close(cams[mask].c2w, cams.c2w[mask])
    joined = torch.cat([cams[:2], cams[2:]])
    torch.testing.assert_close(joined.c2w, cams.c2w)
    torch.testing.assert_close(joined.image_sizes, cams.image_sizes)
    assert [len(c) for c in cams] == [1] * 5
    with pytest.raises(IndexError):
        cams[5]
    with pytest.raises(TypeError, match="not supported on Cameras"):
        torch.stack([cams, cams])


def test_mixed_sizes_need_crop_resize_which_matches_the_intrinsics_rule():
    cams = Cameras.cat([make_cameras(2, (48, 64)), make_cameras(1, (360, 640))])
    with pytest.raises(ValueError, match="different image sizes"):
        _ = cams.image_size
    resized = cams.crop_resize((32, 32))
    assert resized.image_size == (32, 32)
    expected = crop_resize_intrinsics(cams.fxfycxcy[2], (360, 640), (32, 32))
    torch.testing.assert_close(resized.fxfycxcy[2], expected)
    torch.testing.assert_close(resized.c2w, cams.c2w)


def test_json_round_trip_and_other_conventions(tmp_path):
    cams = make_cameras(3)
    path = cams.save(tmp_path / "cams.json")
    loaded = Cameras.load(path)
    torch.testing.assert_close(loaded.c2w, cams.c2w, rtol=0, atol=0)
    torch.testing.assert_close(loaded.fxfycxcy, cams.fxfycxcy, rtol=0, atol=0)
    # The same cameras written as OpenGL c2w and as OpenCV w2c load back to the same poses.
    gl = opengl_to_opencv_c2w(cams.c2w)  # the flip is its own inverse
    record = {
        "convention": "opengl_c2w",
        "c2w": gl.tolist(),
        "fxfycxcy": cams.fxfycxcy.tolist(),
        "image_size": [48, 64],
    }
    torch.testing.assert_close(Cameras.from_dict(record).c2w, cams.c2w)
    w2c = torch.linalg.inv(cams.c2w)
    record = {
        "convention": "opencv_w2c",
        "w2c": w2c.tolist(),
        "fxfycxcy": cams.fxfycxcy.tolist(),
        "image_sizes": cams.image_sizes.tolist(),
    }
    torch.testing.assert_close(Cameras.from_dict(record).c2w, cams.c2w)


def test_unreadable_camera_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError):
        Cameras.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Cameras.load(tmp_path / "broken.json")
    (tmp_path / "partial.json").write_text(json.dumps({"c2w": [np.eye(4).tolist()]}))
    with pytest.raises(ValueError, match="lacks fxfycxcy, image_sizes"):
        Cameras.load(tmp_path / "partial.json")


def test_from_scene_reads_a_synthetic_re10k_scene(tmp_path):
    from lagernvs.data import load_scene
    from lagernvs.data.synthetic import render_synthetic_scene, write_synthetic_dataset

    (scene_id,) = write_synthetic_dataset(tmp_path, 1, num_frames=3, height=24, width=32)
    scene = load_scene(tmp_path / "train" / "images" / scene_id)
    cams = Cameras.from_scene(scene, [2, 0])
    seed = int(scene_id.removeprefix("synth"))
    truth = render_synthetic_scene(seed, 3, 24, 32)
    torch.testing.assert_close(cams.c2w, truth.c2w[[2, 0]])
    assert cams.image_size == (24, 32)


def test_fov_and_distance_helpers():
    cams = Cameras.look_at([[0.0, 0.0, -2.0]], [0.0, 0.0, 0.0], fov_deg=60.0, image_size=(64, 64))
    assert math.isclose(float(cams.fov_deg[0, 1]), 60.0, rel_tol=1e-6)
    assert math.isclose(float(cams.distance_to([0.0, 0.0, 0.0])[0]), 2.0)
    assert cams.to(dtype=torch.float32).dtype == torch.float32


def test_from_scene_refuses_lens_distortion_unless_ignored():
    from lagernvs.data import Scene

    scene = Scene(
        scene_id="lens",
        frame_ids=["a"],
        image_paths=["a.png"],
        image_sizes=[[24, 32]],
        c2w=torch.eye(4)[None],
        fxfycxcy=[[30.0, 30.0, 16.0, 12.0]],
        distortion=[[0.1, 0.0, 0.0, 0.0, 0.0]],
        source_format="colmap",
        distortion_model="SIMPLE_RADIAL",
    )
    with pytest.raises(ValueError, match="lens distortion"):
        Cameras.from_scene(scene)
    assert Cameras.from_scene(scene, ignore_distortion=True).image_size == (24, 32)


def test_one_home_for_cameras_without_the_data_layer():
    assert Cameras is lagernvs.cameras.Cameras
    code = (
        "import sys; import lagernvs.cameras; "
        "print(sorted(m for m in sys.modules if m.startswith('lagernvs.data')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_from_scene_reads_any_object_with_scene_attributes():
    def scene(indices):
        c2w = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
        c2w[:, 0, 3] = torch.arange(3.0)
        return SimpleNamespace(
            scene_id="duck",
            c2w=c2w[indices],
            fxfycxcy=torch.tensor([[20.0, 20.0, 16.0, 12.0]] * 3)[indices],
            image_sizes=torch.tensor([[24, 32]] * 3)[indices],
            distortion=None,
            distortion_model=None,
            select=scene,
        )

    cams = Cameras.from_scene(scene([0, 1, 2]), [2, 0])
    assert cams.centers[:, 0].tolist() == [2.0, 0.0]
    assert cams.image_size == (24, 32)
