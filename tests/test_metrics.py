"""Evaluation metrics: reference parity, masks, per-scene aggregation, LPIPS, FID/KID errors."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from parity_metrics import check_metric_fixture
from torch import nn

import lagernvs.evaluation.metrics as metrics
from lagernvs.evaluation.metrics import (
    LPIPSVGG,
    NovelViewMetrics,
    SceneMean,
    build_fid,
    build_kid,
    psnr,
    ssim,
)
from lagernvs.quality import ssim_map


@pytest.fixture(scope="module")
def lpips_net() -> LPIPSVGG:
    torch.manual_seed(0)
    return LPIPSVGG(pretrained=False)


def _pair(*shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.rand(*shape)
    return (target + 0.1 * torch.randn(*shape)).clamp(0, 1), target


def test_metric_fixture_missing_file_fails(fixture_dir: Path, tmp_path: Path) -> None:
    shutil.copy(fixture_dir / "metrics.json", tmp_path / "metrics.json")
    with pytest.raises(AssertionError, match="metrics.safetensors"):
        check_metric_fixture(tmp_path)


def test_ssim_map_keeps_borders() -> None:
    pred, target = _pair(2, 3, 20, 24)
    assert ssim_map(pred, target).shape == pred.shape
    assert torch.allclose(ssim_map(target, target.clone()), torch.ones_like(target), atol=1e-6)
    # Zero padding pulls the local means down near the border, so a brightness shift of a flat
    # image scores differently there than in the interior (cropping would drop those pixels).
    flat = torch.full((3, 20, 20), 0.5)
    shifted = ssim_map(flat, flat + 0.1)
    interior = shifted[:, 5:-5, 5:-5]
    assert torch.allclose(interior, interior[:, :1, :1].expand_as(interior), atol=1e-6)
    assert (shifted[:, 0, 0] - shifted[:, 10, 10]).abs().min() > 1e-3


def test_leading_dims_are_per_image() -> None:
    pred, target = _pair(2, 3, 3, 16, 16)
    for fn in (psnr, ssim):
        batched = fn(pred, target)
        assert batched.shape == (2, 3)
        pairs = zip(pred.flatten(0, 1), target.flatten(0, 1), strict=True)
        looped = torch.stack([fn(p, t) for p, t in pairs])
        assert torch.allclose(batched.flatten(), looped, atol=1e-6)


@pytest.mark.parametrize("mask_shape", [(4, 16, 16), (4, 1, 16, 16), (4, 3, 16, 16)])
def test_full_mask_equals_unmasked(mask_shape: tuple[int, ...]) -> None:
    pred, target = _pair(4, 3, 16, 16)
    mask = torch.ones(mask_shape, dtype=torch.bool)
    assert torch.allclose(psnr(pred, target, mask), psnr(pred, target), atol=1e-4)
    assert torch.allclose(ssim(pred, target, mask), ssim(pred, target), atol=1e-6)


def test_masked_metrics_restrict_to_region() -> None:
    pred, target = _pair(2, 3, 16, 20)
    mask = torch.zeros(2, 16, 20, dtype=torch.bool)
    mask[:, 3:11, 5:17] = True
    crop = (..., slice(3, 11), slice(5, 17))
    assert torch.allclose(psnr(pred, target, mask), psnr(pred[crop], target[crop]), atol=1e-4)
    expected_ssim = ssim_map(pred, target)[crop].mean(dim=(-3, -2, -1))
    assert torch.allclose(ssim(pred, target, mask), expected_ssim, atol=1e-6)
    # The complement is scored on the other pixels only.
    assert not torch.allclose(psnr(pred, target, ~mask), psnr(pred, target, mask))


def test_empty_mask_gives_nan_and_bad_mask_fails() -> None:
    pred, target = _pair(2, 3, 8, 8)
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[0] = True
    values = psnr(pred, target, mask)
    assert values[0].isfinite() and values[1].isnan()
    with pytest.raises(ValueError, match="mask shape"):
        psnr(pred, target, torch.ones(2, 7, 8))
    with pytest.raises(ValueError, match="same shape"):
        ssim(pred, target[..., :4])


def test_scene_mean_averages_targets_then_scenes() -> None:
    metric = SceneMean()
    metric.update(torch.tensor([10.0, 20.0, 30.0]))  # one scene, 3 targets: mean 20
    metric.update(torch.tensor([[40.0], [float("nan")]]))  # scene of 40; all-NaN scene skipped
    metric.update(torch.tensor([[1.0, float("nan")]]))  # NaN target skipped: scene mean 1
    assert metric.compute().item() == pytest.approx((20.0 + 40.0 + 1.0) / 3)
    metric.reset()
    metric.update(torch.tensor([[2.0, 4.0], [6.0, 8.0]]))
    assert metric.compute().item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="per-target values"):
        metric.update(torch.zeros(2, 2, 2))


def test_novel_view_metrics_aggregate(lpips_net: LPIPSVGG) -> None:
    metric = NovelViewMetrics(lpips_net)
    pred_a, target_a = _pair(2, 2, 3, 16, 16)
    pred_b, target_b = _pair(2, 3, 16, 16)  # one scene with two targets, unbatched
    per_image = metric(pred_a, target_a)
    assert set(per_image) == {"psnr", "ssim", "lpips"}
    assert all(v.shape == (2, 2) for v in per_image.values())
    metric.update(pred_b, target_b)
    summary = metric.compute()
    for name, values in per_image.items():
        scene_b = metrics.image_metrics(pred_b, target_b, lpips_net)[name].mean()
        expected = (values.double().mean(dim=1).sum() + scene_b.double()) / 3
        assert summary[name].item() == pytest.approx(expected.item(), rel=1e-5)
    metric.reset()
    metric.update(pred_b, target_b)
    assert metric.compute()["psnr"].item() == pytest.approx(psnr(pred_b, target_b).mean().item())


def test_lpips_random_backbone(lpips_net: LPIPSVGG) -> None:
    pred, target = _pair(1, 2, 3, 16, 16)
    assert torch.equal(lpips_net(target, target.clone()), torch.zeros(1, 2))
    distance = lpips_net(pred, target)
    assert distance.shape == (1, 2) and (distance > 0).all()
    full = torch.ones(1, 2, 16, 16)
    assert torch.allclose(lpips_net(pred, target, full), distance, atol=1e-6)
    half = full.clone()
    half[..., 8:] = 0
    assert not torch.allclose(lpips_net(pred, target, half), distance)
    assert not lpips_net.train().training
    assert not any(p.requires_grad for p in lpips_net.parameters())
    pred.requires_grad_(True)
    lpips_net(pred, target).sum().backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_lpips_missing_weights_names_file(empty_torch_home: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(empty_torch_home / "vgg16-397923af.pth")):
        LPIPSVGG(pretrained=True)


def test_lpips_loads_cached_vgg16_without_download(
    lpips_net: LPIPSVGG, empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trunk = {
        f"features.{key.split('.', 1)[1]}": value + 0.01 * torch.randn_like(value)
        for key, value in lpips_net.net.net.state_dict().items()
    }
    empty_torch_home.mkdir(parents=True)
    torch.save(trunk, empty_torch_home / "vgg16-397923af.pth")

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("LPIPS tried torch.hub.load_state_dict_from_url")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", no_download)
    net = LPIPSVGG(pretrained=True)
    for key, value in net.net.net.state_dict().items():
        assert torch.equal(value, trunk[f"features.{key.split('.', 1)[1]}"])


class _PooledColour(nn.Module):
    """A tiny stand-in feature extractor (the Inception weights are not available here)."""

    num_features = 12

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(images.float(), 2).flatten(1)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_fid_kid_with_custom_features() -> None:
    real = torch.rand(32, 3, 16, 16)
    fid_same, fid_other = build_fid(_PooledColour()), build_fid(_PooledColour())
    for metric, fake in ((fid_same, real), (fid_other, real * 0.5)):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    same, other = fid_same.compute().item(), fid_other.compute().item()
    assert abs(same) < 1e-3 and other > 100 * max(abs(same), 1e-4)
    kid = build_kid(_PooledColour(), subsets=3, subset_size=8)
    kid.update(real, real=True)
    kid.update(real * 0.5, real=False)
    kid_mean, _ = kid.compute()
    assert kid_mean.item() > 0


@pytest.mark.parametrize("builder", [build_fid, build_kid])
def test_fid_kid_missing_weights_names_file(builder, empty_torch_home: Path) -> None:
    expected = empty_torch_home / "weights-inception-2015-12-05-6726825d.pth"
    with pytest.raises(FileNotFoundError, match=str(expected)):
        builder()


@pytest.mark.parametrize("builder", [build_fid, build_kid])
def test_fid_kid_need_torch_fidelity(
    builder, empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_torch_home.mkdir(parents=True)
    (empty_torch_home / "weights-inception-2015-12-05-6726825d.pth").write_bytes(b"")
    monkeypatch.setattr(metrics, "_TORCH_FIDELITY_AVAILABLE", False)
    with pytest.raises(ModuleNotFoundError, match="torch-fidelity"):
        builder()


def test_psnr_of_known_error() -> None:
    target = torch.zeros(1, 3, 4, 4)
    assert psnr(target + 0.1, target).item() == pytest.approx(20.0, abs=1e-4)
    mask = torch.zeros(1, 4, 4)
    mask[0, 0, 0] = 1
    pred = target.clone()
    pred[..., 0, 0] = 0.01
    assert psnr(pred, target, mask).item() == pytest.approx(-10 * math.log10(1e-4), abs=1e-3)
