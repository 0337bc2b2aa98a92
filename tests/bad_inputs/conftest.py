"""What the bad-input suite shares: tiny models and broken variants of them, inputs, and
`run_cli`, which runs `lagernvs` in-process and checks what every refusal must be."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lagernvs import Cameras, LagerNVSModel, LagerNVSPipeline
from lagernvs.cli import main
from lagernvs.data.synthetic import render_synthetic_scene

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN = REPO_ROOT / "configs" / "train" / "tiny.yaml"
TINY_EVAL = REPO_ROOT / "configs" / "eval" / "tiny_synthetic.yaml"
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


def _save_png(pixels: np.ndarray, path: Path) -> str:
    Image.fromarray(pixels).save(path)
    return str(path)


def _models(root: Path) -> dict[str, Path]:
    """Model folders and checkpoint files, good and broken."""
    model = tiny_model()
    LagerNVSPipeline(model=model).save_pretrained(root / "pipeline")
    model.save_pretrained(root / "model")
    torch.save({"model": model.state_dict()}, root / "tiny.pt")
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
    torch.save({"model": model.state_dict()}, root / "nan.pt")
    shutil.copytree(root / "model", root / "no_weights")
    for weights in (root / "no_weights").glob("diffusion_pytorch_model.*"):
        weights.unlink()
    shutil.copytree(root / "model", root / "bad_json")
    (root / "bad_json" / "config.json").write_text("{not json")
    (root / "garbage.pt").write_bytes(b"\x00garbage, not a checkpoint" * 8)
    torch.save({"weights": [1, 2, 3]}, root / "no_state_dict.pt")
    return {p.name: p for p in root.iterdir()}


def _images(root: Path) -> dict[str, Path | str]:
    """Two 40x48 source photos with their cameras, and broken images and cameras files."""
    render = render_synthetic_scene(5, num_frames=4, height=40, width=48, trajectory="arc")
    found: dict[str, Path | str] = {}
    for index in (0, 3):
        pixels = (render.images[index].permute(1, 2, 0) * 255).round().byte().numpy()
        found[f"view{index}"] = _save_png(pixels, root / f"view{index}.png")
    cameras = Cameras(render.c2w[[0, 3]], render.fxfycxcy[[0, 3]], (40, 48))
    found["cameras"] = str(cameras.save(root / "cameras.json"))
    cameras[:1].save(root / "one_camera.json")
    found["tiny_image"] = _save_png(np.zeros((1, 1, 3), np.uint8), root / "tiny.png")
    found["thin_image"] = _save_png(np.zeros((4000, 10, 3), np.uint8), root / "thin.png")
    (root / "fake.png").write_text("a text file named .png")
    (root / "truncated.png").write_bytes(Path(found["view0"]).read_bytes()[:60])
    (root / "a_folder").mkdir()
    (root / "not_json.json").write_text("{cameras: oops")
    record = cameras.to_dict()
    record["fxfycxcy"][0][0] = "wide"
    (root / "string_intrinsics.json").write_text(json.dumps(record))
    return found | {p.name: p for p in root.iterdir() if p.name not in found}


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
def inputs(tmp_path_factory) -> dict[str, Path | str]:
    """Every input file the suite refers to, by name (made once per session)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    found: dict[str, Path | str] = {}
    for name, make in (("models", _models), ("images", _images), ("configs", _configs)):
        (root / name).mkdir()
        found |= make(root / name)
    return found


@dataclass
class Result:
    code: int
    out: str
    err: str


def snapshot(folder: Path) -> set[Path]:
    """Every path under ``folder``."""
    return set(folder.rglob("*")) if folder.exists() else set()


def run_cli(argv: list[object], capsys) -> Result:
    """``lagernvs ARGV`` in-process: its exit code (argparse's SystemExit included) and output."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def assert_refused(result: Result, command: str, message: str, code: int = 1) -> None:
    """Exit ``code``, no traceback, and (exit 1) one stderr line ``lagernvs COMMAND: error:
    ...`` holding ``message``; argparse errors (exit 2) end with ``error: ...message``."""
    assert result.code == code, (result.code, result.err[-2000:])
    assert "Traceback" not in result.err + result.out, result.err[-2000:]
    lines = result.err.strip().splitlines()
    assert lines, "nothing on stderr"
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith(f"lagernvs {command}: error:"), lines
    assert message in lines[-1], lines[-1]


def assert_nothing_written(before: set[Path], folder: Path) -> None:
    """No new file or folder under ``folder`` (no partial output under any name)."""
    new = sorted(str(p.relative_to(folder)) for p in snapshot(folder) - before)
    assert not new, new
