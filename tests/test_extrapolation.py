"""`lagernvs bench extrapolation` on the synthetic protocol: deterministic only, and with a
stand-in for the diffusion decoder's sampled mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image

from lagernvs.evaluation.bench import main as bench_main
from lagernvs.evaluation.extrapolation import (
    camera_offsets,
    pairwise_lpips,
    run_extrapolation,
    sample_generator,
    sample_spread,
    samples_by_target,
    target_distances,
    unseen_crops,
)
from lagernvs.evaluation.metrics import LPIPSVGG
from lagernvs.evaluation.protocol import load_protocol
from lagernvs.models import LagerNVSModel
from lagernvs.pipeline import LagerNVSPipeline, LagerNVSPipelineOutput

SIZE = 16


class StubDenoiser(ModelMixin, ConfigMixin):
    """Stands in for the denoiser component (the sampling below does not use it)."""

    @register_to_config
    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))


class NoisySampler(LagerNVSPipeline):
    """Test double for the diffusion decoder: sampled mode = deterministic render + seeded noise,
    returned in the diffusers layout (each target's samples consecutive). Build it with
    :func:`noisy_sampler`; ``calls`` records the sampled calls."""

    calls: list[dict[str, Any]]

    def __call__(self, images: Any, source_cameras: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("mode") != "sampled":
            return super().__call__(images, source_cameras, **kwargs)
        count, generator = kwargs.pop("num_samples"), kwargs.pop("generator")
        self.calls.append({"posed": source_cameras is not None, "extra": kwargs.pop("strength")})
        kwargs["mode"] = "deterministic"
        output = super().__call__(images, source_cameras, **kwargs)
        base = output.images.repeat_interleave(count, dim=0)
        noise = 0.1 * torch.randn(base.shape, generator=generator)
        return LagerNVSPipelineOutput(images=(base + noise).clamp(0, 1), cameras=output.cameras)


def noisy_sampler(model: LagerNVSModel) -> NoisySampler:
    pipe = NoisySampler(model=model, denoiser=StubDenoiser())
    pipe.calls = []
    return pipe


@pytest.fixture(scope="module")
def model() -> LagerNVSModel:
    torch.manual_seed(0)
    model = LagerNVSModel.from_preset("tiny", image_size=(SIZE, SIZE)).eval()
    torch.nn.init.normal_(model.renderer.final_layer.linear.weight, std=0.02)
    return model


def protocol_file(path: Path, model_dir: str, **extrapolation: Any) -> Path:
    protocol = {
        "name": "extra_test",
        "dataset": {
            "format": "synthetic",
            "synthetic": {"num_scenes": 2, "num_frames": 8, "context": [3, 5], "target": [0, 7]},
        },
        "model": {"pretrained": model_dir},
        "metrics": {"lpips": False},
        "precision": "fp32",
        "batch_size": 2,
        "num_workers": 0,
        "num_grids": 1,
        "extrapolation": {
            "num_samples": 3,
            "distance_sweep": {
                "num_scenes": 2,
                "num_frames": 9,
                "context": [3, 5],
                "max_distance": 3,
            },  # fmt: skip
            **extrapolation,
        },
    }
    path.write_text(yaml.safe_dump(protocol))
    return path


def test_deterministic_only_without_denoiser(
    tmp_path: Path, model: LagerNVSModel, capsys: pytest.CaptureFixture[str]
) -> None:
    LagerNVSPipeline(model=model).save_pretrained(tmp_path / "model")
    config = protocol_file(tmp_path / "p.yaml", str(tmp_path / "model"))
    out = tmp_path / "out"
    assert bench_main(["extrapolation", "--config", str(config), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| metric | deterministic |" in printed and "no denoiser" in printed

    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and not summary["sampled"] and summary["num_samples"] == 2
    metrics = summary["metrics"]
    assert set(metrics) == {"deterministic", "visibility"}
    assert set(metrics["deterministic"]) == {
        f"{region}{name}" for region in ("", "seen/", "unseen/") for name in ("psnr", "ssim")
    }
    unseen = metrics["visibility"]["unseen_fraction"]
    assert 0 < unseen < 1  # targets outside the span see new content
    assert summary["seconds_per_frame"]["deterministic"] > 0
    assert summary["seconds_per_frame"]["sampled"] is None
    assert (out / "table.md").read_text().startswith("| metric | deterministic |")
    assert len(list((out / "grids").glob("*.png"))) == 1

    rows = summary["distance_sweep"]
    assert [r["distance"] for r in rows] == [0, 1, 2, 3]
    assert [r["num_targets"] for r in rows] == [2, 4, 4, 4]  # 2 scenes: frame 4; 2, 6; 1, 7; ...
    offsets = [r["camera_offset"] for r in rows]
    assert offsets == sorted(offsets) and offsets[0] < 1.0  # further out in camera distance too
    fractions = [r["visibility/unseen_fraction"] for r in rows]
    assert fractions[-1] > fractions[0]
    csv_lines = (out / "distance_sweep.csv").read_text().splitlines()
    assert csv_lines[0].startswith("distance,num_targets,camera_offset") and len(csv_lines) == 5

    with pytest.raises(ValueError, match="has no diffusion decoder"):
        bench_main(["extrapolation", "--config", str(config), "--output-dir", str(out),
                    "--set", "extrapolation.sampled=true"])  # fmt: skip


def test_sampled_half_through_the_pipeline_sampled_mode(
    tmp_path: Path, model: LagerNVSModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = protocol_file(
        tmp_path / "p.yaml", "unused", sampler={"strength": 0.5}, distance_sweep=None
    )
    overrides = ["metrics.lpips=true", "metrics.lpips_pretrained=false"]
    protocol = load_protocol(config, overrides)
    pipe = noisy_sampler(model)
    summary = run_extrapolation(protocol, tmp_path / "out", pipe=pipe)
    assert summary["sampled"] and summary["num_samples_per_target"] == 3
    assert len(pipe.calls) == 2 and pipe.calls[0] == {"posed": True, "extra": 0.5}
    metrics = summary["metrics"]
    mean, best = metrics["sampled_mean"], metrics["sampled_best"]
    for region in ("", "seen/", "unseen/"):
        assert best[f"{region}psnr"] >= mean[f"{region}psnr"]
        assert best[f"{region}ssim"] >= mean[f"{region}ssim"]
        assert best[f"{region}lpips"] <= mean[f"{region}lpips"]
    # Noise of std 0.1 clamped to [0, 1]: the spread is close to (at most) 0.1 everywhere.
    for key in ("spread", "seen/spread", "unseen/spread"):
        assert 0.03 < metrics["diversity"][key] <= 0.1
    assert metrics["diversity"]["lpips"] > 0
    # The noisy samples are worse than the render they were made from.
    assert mean["psnr"] < metrics["deterministic"]["psnr"]
    assert summary["seconds_per_frame"]["sampled"] > 0
    table = (tmp_path / "out" / "table.md").read_text()
    assert "sampled (mean of 3)" in table and "diversity lpips" in table
    grid = next((tmp_path / "out" / "grids").glob("*.png"))
    assert Image.open(grid).size[1] == 6 * (SIZE + 2) + 2  # context, GT, render, 3 samples

    # Same seeds -> same samples: a second run reproduces the scores; unposed runs use no cameras.
    first = json.loads((tmp_path / "out" / "records" / "rank0.jsonl").read_text().splitlines()[0])
    one = load_protocol(config, [*overrides, "dataset.max_samples=1"])
    run_extrapolation(one, tmp_path / "again", pipe=pipe)
    again = json.loads((tmp_path / "again" / "records" / "rank0.jsonl").read_text())
    assert again["scores"].keys() == first["scores"].keys()
    for key, values in first["scores"].items():  # equal up to batch-size float noise
        assert again["scores"][key] == pytest.approx(values, rel=1e-4, abs=1e-6), key
    unposed = load_protocol(config, ["dataset.posed=false", "dataset.max_samples=1"])
    run_extrapolation(unposed, tmp_path / "unposed", pipe=pipe)
    assert not pipe.calls[-1]["posed"]


def test_fid_kid_side_by_side(tmp_path: Path, model: LagerNVSModel) -> None:
    class MeanColour(torch.nn.Module):
        num_features = 3

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images.float().mean(dim=(-2, -1))

    config = protocol_file(tmp_path / "p.yaml", "unused", distance_sweep=None)
    protocol = load_protocol(config, ["metrics.fid=true", "extrapolation.sampler={strength: 1}"])
    summary = run_extrapolation(
        protocol, tmp_path / "out", pipe=noisy_sampler(model), fid_feature=MeanColour()
    )
    scores = summary["fid_kid"]
    assert scores["deterministic"]["num_images"] == scores["sampled"]["num_images"] == 4
    assert scores["deterministic"]["fid"] >= 0 and scores["sampled"]["fid"] >= 0


def test_sample_helpers() -> None:
    images = torch.rand(6, 3, 4, 4)
    by_target = samples_by_target(images, 2, 3)
    assert torch.equal(by_target[1, 0], images[3])
    assert samples_by_target(by_target, 2, 3) is by_target
    with pytest.raises(ValueError, match=r"expected \(2 targets x 2 samples"):
        samples_by_target(images, 2, 2)

    a = sample_generator(0, 5)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=sample_generator(0, 5)))
    assert not torch.equal(
        torch.rand(3, generator=sample_generator(0, 5)),
        torch.rand(3, generator=sample_generator(0, 6)),
    )

    samples = torch.zeros(2, 2, 3, 4, 4)
    samples[:, 1, :, :, :2] = 1.0  # the two samples differ by 1 on the left half
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :, :2] = True
    assert torch.allclose(sample_spread(samples), torch.full((2,), 0.25))
    assert torch.allclose(sample_spread(samples, mask), torch.full((2,), 0.5))
    assert torch.allclose(sample_spread(samples, ~mask), torch.zeros(2))

    net = LPIPSVGG(pretrained=False)
    same = torch.rand(2, 1, 3, 16, 16).expand(2, 3, 3, 16, 16)  # K identical samples
    assert torch.allclose(pairwise_lpips(net, same), torch.zeros(2), atol=1e-6)
    assert pairwise_lpips(net, torch.rand(2, 3, 3, 16, 16)).gt(0).all()
    assert pairwise_lpips(net, torch.rand(2, 1, 3, 16, 16)).isnan().all()

    assert target_distances([3, 5], [0, 4, 5, 7]) == [3, 0, 0, 2]
    c2w = torch.eye(4).repeat(4, 1, 1)
    c2w[1, 0, 3], c2w[2, 0, 3], c2w[3, 0, 3] = 2.0, 1.0, 5.0
    assert camera_offsets(c2w, 2).tolist() == [0.5, 1.5]
    assert camera_offsets(c2w, 1).isnan().all()


def test_modes_family_scores_unseen_pixels_against_the_alternatives(
    tmp_path: Path, model: LagerNVSModel
) -> None:
    class MeanColour(torch.nn.Module):
        num_features = 3

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images.float().mean(dim=(-2, -1))

    config = protocol_file(tmp_path / "p.yaml", "unused", distance_sweep=None)
    overrides = [
        "dataset.synthetic.family=modes",
        "metrics.fid=true",
        "extrapolation.sampler={strength: 1}",
    ]
    protocol = load_protocol(config, overrides)
    summary = run_extrapolation(
        protocol, tmp_path / "out", pipe=noisy_sampler(model), fid_feature=MeanColour()
    )
    stored = sorted((tmp_path / "out" / "synthetic" / "test" / "modes").glob("*.npz"))
    assert len(stored) == 2
    modes = summary["metrics"]["modes"]
    assert set(modes) == {
        "mode_error_deterministic", "mode_error_sampled", "mode_coverage", "spread_seen",
        "spread_unseen", "psnr_seen", "psnr_seen_deterministic",
    }  # fmt: skip
    assert 0 < modes["mode_error_deterministic"] < 1 and 0 < modes["mode_error_sampled"] < 1
    assert 1 / 3 <= modes["mode_coverage"] <= 1
    assert modes["psnr_seen_deterministic"] == summary["metrics"]["deterministic"]["seen/psnr"]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "distance to nearest alternative" in table and "alternatives covered" in table
    scores = summary["fid_kid"]
    for name in ("deterministic_unseen", "sampled_unseen"):
        assert 1 <= scores[name]["num_images"] <= 4  # one crop per target at most
    plain = run_extrapolation(
        load_protocol(config, overrides[2:]), tmp_path / "plain", pipe=noisy_sampler(model)
    )
    assert "modes" not in plain["metrics"]


def test_unseen_crops_follow_the_unseen_pixels() -> None:
    views, truth = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    unseen = torch.zeros(3, 8, 8, dtype=torch.bool)
    unseen[0, 4:, 4:] = True  # the bottom-right quarter
    unseen[1, :2, :2] = True  # too little of any window
    unseen[2] = True
    crops, truths = unseen_crops(views, truth, unseen)
    assert crops.shape == (2, 3, 4, 4)
    assert torch.equal(crops[0], views[0, :, 4:, 4:])
    assert torch.equal(truths[0], truth[0, :, 4:, 4:])
    none, _ = unseen_crops(views, truth, torch.zeros(3, 8, 8, dtype=torch.bool))
    assert none.shape == (0, 3, 4, 4)
