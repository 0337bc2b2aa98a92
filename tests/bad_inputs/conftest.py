"""The bad-input suite's inputs: tiny models and broken variants of them, images, cameras and
config files, made once per session (the checks are in bad_input_helpers.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_input_helpers import REPO_ROOT, TINY_EVAL, TINY_TRAIN  # noqa: F401
from PIL import Image

from lagernvs import Cameras, LagerNVSModel, LagerNVSPipeline
from lagernvs.data.synthetic import render_synthetic_scene, write_synthetic_dataset

NAN_KEY = "renderer.tgt_norm.weight"


def tiny_model(seed: int = 0) -> LagerNVSModel:
    """A tiny random model (32x32 renders) with weights away from their initial values."""
    model = LagerNVSModel.from_preset("tiny", image_size=(32, 32), encoder_image_size=56)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def _edit_config(folder: Path, **changes: object) -> Path:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


def _models(root: Path) -> dict[str, Path]:
    """Model folders and checkpoint files, good and broken."""
    model = tiny_model()
    LagerNVSPipeline(model=model).save_pretrained(root / "pipeline")
    model.save_pretrained(root / "model")
    torch.save({"model": model.state_dict()}, root / "encoder_56.pt")
    preset = LagerNVSModel.from_preset("tiny")  # what `--preset tiny` builds
    torch.save({"model": preset.state_dict()}, root / "tiny.pt")
    shutil.copy(root / "tiny.pt", root / "dl3dv_tiny.pt")
    with torch.no_grad():
        preset.get_parameter(NAN_KEY)[0] = float("inf")
    torch.save({"model": preset.state_dict()}, root / "nan.pt")
    depth = model.config.renderer_depth
    for name, changes in {
        "fewer_blocks": {"renderer_depth": depth - 1},
        "more_blocks": {"renderer_depth": depth + 1},
        "other_attention": {"attention_type": "full_attention"},
        "unknown_key": {"colour": "red"},
    }.items():
        _edit_config(shutil.copytree(root / "model", root / name), **changes)
    (root / "pipeline_fewer_blocks").mkdir()
    shutil.copytree(root / "pipeline", root / "pipeline_fewer_blocks", dirs_exist_ok=True)
    _edit_config(root / "pipeline_fewer_blocks" / "model", renderer_depth=depth - 1)
    with torch.no_grad():
        model.get_parameter(NAN_KEY)[0] = float("nan")
    model.save_pretrained(root / "nan_model")
    LagerNVSPipeline(model=model).save_pretrained(root / "nan_pipeline")
    shutil.copytree(root / "model", root / "no_weights")
    for weights in (root / "no_weights").glob("diffusion_pytorch_model.*"):
        weights.unlink()
    shutil.copytree(root / "model", root / "bad_json")
    (root / "bad_json" / "config.json").write_text("{not json")
    (root / "garbage.pt").write_bytes(b"\x00garbage, not a checkpoint" * 8)
    torch.save({"weights": [1, 2, 3]}, root / "no_state_dict.pt")
    return {p.name: p for p in root.iterdir()}


def _images(root: Path) -> dict[str, Path]:
    """Two 40x48 source photos with their cameras, and broken images and cameras files."""
    render = render_synthetic_scene(5, num_frames=4, height=40, width=48, trajectory="arc")
    for index in (0, 3):
        pixels = (render.images[index].permute(1, 2, 0) * 255).round().byte().numpy()
        Image.fromarray(pixels).save(root / f"view{index}.png")
    cameras = Cameras(render.c2w[[0, 3]], render.fxfycxcy[[0, 3]], (40, 48))
    cameras.save(root / "cameras.json")
    cameras[:1].save(root / "one_camera.json")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "tiny.png")
    Image.fromarray(np.zeros((4000, 10, 3), np.uint8)).save(root / "thin.png")
    (root / "fake.png").write_text("a text file named .png")
    (root / "truncated.png").write_bytes((root / "view0.png").read_bytes()[:60])
    (root / "a_folder").mkdir()
    (root / "not_json.json").write_text("{cameras: oops")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / "square.png")
    record = cameras.to_dict()
    record["fxfycxcy"][0][0] = "wide"
    (root / "string_intrinsics.json").write_text(json.dumps(record))
    record = cameras.to_dict()
    record["c2w"][0][0][3] = float("nan")
    (root / "nan_pose.json").write_text(json.dumps(record))
    empty = {**cameras.to_dict(), "c2w": [], "fxfycxcy": [], "image_sizes": []}
    (root / "empty_cameras.json").write_text(json.dumps(empty))
    (root / "blender.json").write_text(json.dumps({**cameras.to_dict(), "convention": "blender"}))
    write_synthetic_dataset(root / "re10k", 1, split="test", num_frames=4, height=32, width=32)
    (scene,) = (root / "re10k" / "test" / "metadata").iterdir()
    return {p.name: p for p in root.iterdir()} | {"scene": scene}


def _configs(root: Path) -> dict[str, Path]:
    """Broken YAML files and a folder of unreadable shards."""
    (root / "invalid.yaml").write_text("model:\n  preset: tiny\n loop: [unclosed\n")
    (root / "a_list.yaml").write_text("- model\n- data\n")
    (root / "unknown_section.yaml").write_text("model: {preset: tiny}\nmodle: {preset: tiny}\n")
    (root / "bad_type.yaml").write_text(TINY_TRAIN.read_text() + "\n" + "seed_text: 1\n")
    (root / "shards").mkdir()
    for index in range(2):
        (root / "shards" / f"shard-{index:06d}.tar").write_bytes(b"not a tar archive" * 40)
    return {p.name: p for p in root.iterdir()}


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Every input file the suite refers to, by name (made once per session)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    found: dict[str, Path] = {}
    for name, make in (("models", _models), ("images", _images), ("configs", _configs)):
        (root / name).mkdir()
        found |= make(root / name)
    return found | {"root": root}
