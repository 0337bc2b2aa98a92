"""`lagernvs eval`: protocols end to end on tiny synthetic data, resume, dataset checks, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from lagernvs.data import Re10kEvalDataset
from lagernvs.data.synthetic import render_synthetic_scene, write_synthetic_dataset
from lagernvs.evaluation.dataset import IndexedViews, build_dataset, sample_ids
from lagernvs.evaluation.evaluate import evaluate, main
from lagernvs.evaluation.metrics import psnr
from lagernvs.evaluation.model import load_model
from lagernvs.evaluation.protocol import ModelConfig, load_protocol
from lagernvs.evaluation.records import summarize
from lagernvs.evaluation.runner import Evaluation
from lagernvs.models import LagerNVSModel
from lagernvs.pipeline import LagerNVSPipeline

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random pipeline saved with save_pretrained, rendering 32x32 views."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = LagerNVSModel.from_preset("tiny", image_size=(SIZE, SIZE))
    torch.nn.init.normal_(model.renderer.final_layer.linear.weight, std=0.02)  # not plain grey
    LagerNVSPipeline(model=model).save_pretrained(folder)
    return folder


def write_protocol(path: Path, model_dir: Path, **changes: object) -> Path:
    """A synthetic protocol (3 scenes, 2 context + 3 targets) with the tiny model."""
    protocol = {
        "name": "tiny_test",
        "dataset": {
            "format": "synthetic",
            "synthetic": {"num_scenes": 3, "num_frames": 8, "context": [1, 6], "target": [2, 4, 5]},
        },
        "model": {"pretrained": str(model_dir)},
        "metrics": {"lpips": False},
        "precision": "fp32",
        "batch_size": 2,
        "num_workers": 0,
        "num_grids": 2,
    }
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            protocol[section][name] = value
        else:
            protocol[section] = value
    path.write_text(yaml.safe_dump(protocol))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


def test_eval_end_to_end_writes_summary_csv_and_grids(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_protocol(tmp_path / "p.yaml", model_dir)
    out = tmp_path / "out"
    assert main(["--config", str(config), "--output-dir", str(out), "--set", "metrics.lpips=true",
                 "--set", "metrics.lpips_pretrained=false"]) == 0  # fmt: skip
    assert "tiny_test: lpips" in capsys.readouterr().out

    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["num_samples"] == summary["num_expected"] == 3
    assert summary["protocol"] == "tiny_test" and summary["image_size"] == [SIZE, SIZE]
    assert summary["precision"] == "float32" and summary["model"]["source"] == str(model_dir)
    assert set(summary["metrics"]) == {"psnr", "ssim", "lpips"}
    assert summary["images_per_second"] > 0 and summary["software"]["torch"] == torch.__version__
    assert summary["settings"]["metrics"]["lpips_pretrained"] is False

    rows = read_csv(out / "per_scene.csv")
    assert len(rows) == 3 and all(r["num_targets"] == "3" and r["is_valid"] == "1" for r in rows)
    for name in ("psnr", "ssim", "lpips"):  # equal targets per scene: mean of scene means
        mean = np.mean([float(r[name]) for r in rows])
        assert summary["metrics"][name] == pytest.approx(mean, abs=1e-5)
    assert len(list((out / "grids").glob("*.png"))) == 2

    # The scores are those of the model run on the reference-exact samples.
    dataset = IndexedViews(out / "synthetic", out / "synthetic" / "index.json", "synthetic",
                           (SIZE, SIZE))  # fmt: skip
    sample = dataset[1]
    model = LagerNVSModel.from_pretrained(model_dir / "model").eval()
    with torch.no_grad():
        tokens = model.encode(sample["images"][None, :2], sample["cam_tokens"][None, :2])
        pred = model.render(tokens, sample["rays"][None, 2:])[0]
    expected = psnr(pred, sample["images"][2:]).mean().item()
    row = next(r for r in rows if r["sample"] == sample["sample_id"])
    assert float(row["psnr"]) == pytest.approx(expected, abs=1e-4)


def test_resume_after_interruption_skips_done_samples(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_protocol(tmp_path / "p.yaml", model_dir, batch_size=1)
    out = tmp_path / "out"
    real_render = Evaluation.render
    calls: list[str] = []

    def interrupted(self: Evaluation, batch: dict) -> tuple[torch.Tensor, float]:
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(batch["sample_id"][0])
        return real_render(self, batch)

    monkeypatch.setattr(Evaluation, "render", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["--config", str(config), "--output-dir", str(out)])
    records = out / "records" / "rank0.jsonl"
    assert len(records.read_text().splitlines()) == 2 and not (out / "summary.json").exists()
    with records.open("a") as file:  # a record torn by the interruption is evaluated again
        file.write('{"sample": "synth')

    calls.clear()
    monkeypatch.setattr(Evaluation, "render", lambda self, batch: (calls.append(
        batch["sample_id"][0]), real_render(self, batch))[1])  # fmt: skip
    assert main(["--config", str(config), "--output-dir", str(out)]) == 0
    assert len(calls) == 1  # only the sample not done before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["num_samples"] == 3
    assert len(read_csv(out / "per_scene.csv")) == 3

    # Same results as an uninterrupted run.
    fresh = tmp_path / "fresh"
    main(["--config", str(config), "--output-dir", str(fresh)])
    again = json.loads((fresh / "summary.json").read_text())
    for name, value in summary["metrics"].items():
        assert again["metrics"][name] == pytest.approx(value, abs=1e-5)


def test_resume_refuses_a_different_protocol(tmp_path: Path, model_dir: Path) -> None:
    config = write_protocol(tmp_path / "p.yaml", model_dir)
    out = tmp_path / "out"
    main(["--config", str(config), "--output-dir", str(out), "--set", "dataset.max_samples=1"])
    assert json.loads((out / "summary.json").read_text())["num_samples"] == 1
    with pytest.raises(ValueError, match=r"different protocol \(differs in: dataset\.posed\)"):
        main(["--config", str(config), "--output-dir", str(out), "--set", "dataset.posed=false"])
    main(["--config", str(config), "--output-dir", str(out), "--set", "dataset.posed=false",
          "--set", "resume=false"])  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_samples"] == 3 and summary["settings"]["dataset"]["posed"] is False


def test_index_naming_missing_scenes_and_frames_is_listed(tmp_path: Path) -> None:
    ids = write_synthetic_dataset(tmp_path / "data", 2, split="test", num_frames=6, height=16,
                                  width=16)  # fmt: skip
    index = {s: {"context": [0, 5], "target": [2]} for s in ids}
    index.update({"nosuchscene1": {"context": [0, 1], "target": [2]},
                  "nosuchscene2": {"context": [0, 1], "target": [2]}})  # fmt: skip
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(FileNotFoundError, match="names 2 scenes .*nosuchscene1, nosuchscene2"):
        IndexedViews(tmp_path / "data", tmp_path / "index.json", "re10k", (16, 16))
    kept = IndexedViews(tmp_path / "data", tmp_path / "index.json", "re10k", (16, 16),
                        skip_missing=True)  # fmt: skip
    assert kept.ids == ids and kept.missing == ["nosuchscene1", "nosuchscene2"]

    index = {ids[0]: {"context": [0, 5], "target": [6]}, ids[1]: {"context": [0, 9], "target": [1]}}
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=rf"2 scenes .*{ids[0]} \(frame 6 of 6 frames\)"):
        IndexedViews(tmp_path / "data", tmp_path / "index.json", "re10k", (16, 16))

    index = {ids[0]: {"context": [0, 5], "target": [1]},
             ids[1]: {"context": [0, 3, 5], "target": [1]}}  # fmt: skip
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=f"another number of context views.*{ids[1]}"):
        IndexedViews(tmp_path / "data", tmp_path / "index.json", "re10k", (16, 16),
                     num_cond_views=2)  # fmt: skip


def test_model_protocol_resolution_mismatch(tmp_path: Path, model_dir: Path) -> None:
    config = write_protocol(tmp_path / "p.yaml", model_dir, dataset__image_size=[64, 64])
    with pytest.raises(ValueError, match="evaluates at 64x64 but the model .* made for 32x32"):
        main(["--config", str(config), "--output-dir", str(tmp_path / "out")])
    assert main(["--config", str(config), "--output-dir", str(tmp_path / "out"), "--set",
                 "model.allow_resolution_mismatch=true", "--set",
                 "dataset.synthetic.num_scenes=1"]) == 0  # fmt: skip


def test_missing_lpips_and_fid_weights_name_the_file(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lagernvs.perceptual.hub_checkpoint_dir", lambda: tmp_path / "hub")
    config = write_protocol(tmp_path / "p.yaml", model_dir, metrics={"lpips": True})
    with pytest.raises(FileNotFoundError, match=r"vgg16-397923af\.pth.*metrics\.lpips=false"):
        main(["--config", str(config), "--output-dir", str(tmp_path / "out")])
    config = write_protocol(tmp_path / "p.yaml", model_dir, metrics={"lpips": False, "fid": True})
    with pytest.raises(FileNotFoundError, match=r"weights-inception-2015-12-05-6726825d\.pth"):
        main(["--config", str(config), "--output-dir", str(tmp_path / "out")])
    config = write_protocol(tmp_path / "p.yaml", model_dir, metrics={"lpips": False, "fid": "auto"})
    main(["--config", str(config), "--output-dir", str(tmp_path / "out"), "--set",
          "dataset.max_samples=1"])  # fmt: skip
    note = json.loads((tmp_path / "out" / "summary.json").read_text())["fid_kid"]["note"]
    assert note.startswith("unavailable") and "inception" in note


def test_fid_kid_with_a_feature_module(tmp_path: Path, model_dir: Path) -> None:
    class MeanColour(torch.nn.Module):  # tiny stand-in for Inception features
        num_features = 3

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images.float().mean(dim=(-2, -1))

    config = write_protocol(tmp_path / "p.yaml", model_dir, metrics={"lpips": False, "fid": True})
    summary = evaluate(load_protocol(config), tmp_path / "out", fid_feature=MeanColour())
    scores = summary["fid_kid"]["deterministic"]
    assert scores["num_images"] == 9 and scores["fid"] >= 0 and np.isfinite(scores["kid"])


def test_dataset_matches_the_reference_re10k_dataset(fixture_dir: Path) -> None:
    root = fixture_dir / "re10k_pipeline" / "data"
    index = fixture_dir / "re10k_pipeline" / "view_indices_2v.json"
    ours = IndexedViews(root, index, "re10k", (256, 256), num_cond_views=2)
    reference = Re10kEvalDataset(root, index, image_size=(256, 256), num_cond_views=2)
    assert len(ours) == len(reference) == 2
    for i in range(2):
        a, b = ours[i], reference[i]
        for key in ("images", "rays", "cam_tokens", "is_valid", "c2w", "fxfycxcy"):
            assert torch.equal(a[key], b[key]), key
        assert a["image_ids"] == b["image_ids"] and a["sample_id"] == ours.entries[i].scene
    unposed = IndexedViews(root, index, "re10k", (256, 256), posed=False)[0]
    assert not unposed["cam_tokens"][:2, :7].any() and not unposed["rays"][:2].any()
    assert unposed["rays"][2:].abs().sum() > 0


def _write_dl3dv_scene(root: Path, scene_hash: str, seed: int) -> torch.Tensor:
    """A synthetic scene in the DL3DV layout (full-resolution intrinsics 4x the images)."""
    render = render_synthetic_scene(seed, num_frames=6, height=SIZE, width=SIZE)
    scene_dir = root / "1K" / scene_hash
    (scene_dir / "images_4").mkdir(parents=True)
    frames = []
    for i, image in enumerate(render.images):
        pixels = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(pixels).save(scene_dir / "images_4" / f"frame_{i:05d}.png")
        c2w_gl = render.c2w[i].numpy() @ np.diag([1.0, -1.0, -1.0, 1.0])
        name = f"images/frame_{i:05d}.png"
        frames.append({"file_path": name, "transform_matrix": c2w_gl.tolist()})
    fx, fy, cx, cy = (4 * render.fxfycxcy[0]).tolist()
    meta = {"w": 4 * SIZE, "h": 4 * SIZE, "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy}
    (scene_dir / "transforms.json").write_text(json.dumps({**meta, "frames": frames}))
    return render.images


def test_dl3dv_protocol_with_bare_hash_keys(tmp_path: Path, model_dir: Path) -> None:
    hashes = ["ab" * 32, "cd" * 32]
    for seed, scene_hash in enumerate(hashes):
        _write_dl3dv_scene(tmp_path / "dl3dv", scene_hash, seed)
    index = {h: {"context": [0, 3, 5], "target": [1, 2, 4]} for h in hashes}
    (tmp_path / "index.json").write_text(json.dumps(index))
    protocol = load_protocol(
        write_protocol(tmp_path / "p.yaml", model_dir),
        [f"dataset={{format: dl3dv, root: {tmp_path / 'dl3dv'}, index: {tmp_path / 'index.json'},"
         " num_cond_views: 3}"],
    )  # fmt: skip
    dataset = build_dataset(protocol.dataset, (SIZE, SIZE), tmp_path)
    sample = dataset[0]
    assert dataset.ids == hashes and sample["images"].shape == (6, 3, SIZE, SIZE)
    assert sample["image_ids"][0] == f"{hashes[0]}_frame_00000.png"
    summary = evaluate(protocol, tmp_path / "out")
    assert summary["num_samples"] == 2 and summary["metrics"]["psnr"] > 5
    assert {p.name for p in (tmp_path / "out" / "grids").iterdir()} == {f"{h}.png" for h in hashes}


def test_protocol_files_and_overrides(tmp_path: Path) -> None:
    files = sorted((REPO_ROOT / "configs" / "eval").glob("*.yaml"))
    names = {f.stem for f in files}
    assert {"re10k_2v", "dl3dv_2v", "dl3dv_4v", "dl3dv_6v", "re10k_extra_latentsplat",
            "dl3dv_mvsplat360", "tiny_synthetic", "extrapolation_synthetic"} <= names  # fmt: skip
    for path in files:
        protocol = load_protocol(path)
        assert protocol.name == path.stem
    re10k = load_protocol("re10k_2v", ["batch_size=4", "dataset.posed=false"])
    assert re10k.batch_size == 4 and not re10k.dataset.posed
    assert re10k.dataset.image_size == (256, 256) and re10k.model.preset == "re10k_2v_256"
    with pytest.raises(ValueError, match="unknown config key 'dataset.bogus'"):
        load_protocol("re10k_2v", ["dataset.bogus=1"])
    with pytest.raises(ValueError, match="model.pretrained .* model.checkpoint"):
        load_protocol("re10k_2v", ["model.pretrained=demo"])
    with pytest.raises(ValueError, match="model.preset.*only applies to model.checkpoint"):
        load_protocol("tiny_synthetic", ["model.preset=tiny"])
    with pytest.raises(FileNotFoundError, match="protocol file"):
        load_protocol(tmp_path / "missing.yaml")


def test_sample_ids_and_summary_aggregation() -> None:
    from lagernvs.data.views import IndexEntry

    entries = [IndexEntry((0, 1), (2,), "a"), IndexEntry((0, 1), (3,), "b"),
               IndexEntry((5, 6), (7,), "a")]  # fmt: skip
    assert sample_ids(entries) == ["a#0", "b", "a#1"]
    records = [
        {"scores": {"psnr": [10.0, 20.0], "seen/psnr": [float("nan"), 4.0]}},
        {"scores": {"psnr": [30.0], "seen/psnr": [float("nan")]}},
    ]
    assert summarize(records) == {"psnr": 22.5, "seen/psnr": 4.0}


def test_protocol_models_go_through_the_one_loader(tmp_path: Path, model_dir: Path) -> None:
    pipe, info = load_model(ModelConfig(pretrained="preset:tiny"))
    assert info["source"] == "preset:tiny (random weights)" and not info["denoiser"]
    assert info["num_parameters"] == sum(p.numel() for p in pipe.model.parameters())
    _, info = load_model(ModelConfig(pretrained=str(model_dir / "model")))  # a model folder
    assert info["source"] == str(model_dir / "model") and info["image_size"] == [SIZE, SIZE]
    with pytest.raises(ValueError, match="spell random weights as 'preset:tiny'"):
        load_model(ModelConfig(pretrained="tiny"))
    with pytest.raises(FileNotFoundError, match="model.checkpoint .* does not exist"):
        load_model(ModelConfig(checkpoint=str(tmp_path / "model.pt"), preset="re10k_2v_256"))
