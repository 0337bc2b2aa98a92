"""PSNR / SSIM parity with the reference metric fixture (``metrics.safetensors``, ``.json``).

A plain module so the reference-parity suite can call :func:`check_metric_fixture` on any
fixture folder (the shared one or a held-out one). Tolerances are the fixture README's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from lagernvs.quality import SSIM_SIGMA, SSIM_WINDOW, gaussian_window, psnr, ssim

PSNR_TOL_DB = 1e-4
SSIM_TOL = 1e-6


def check_metric_fixture(fixture_dir: Path) -> None:
    """Assert that our PSNR and SSIM equal the reference's on every pair of the fixture."""
    tensors_path = Path(fixture_dir) / "metrics.safetensors"
    meta_path = Path(fixture_dir) / "metrics.json"
    for path in (tensors_path, meta_path):
        assert path.is_file(), f"metric fixture file {path} is missing"
    tensors = load_file(tensors_path)
    results = json.loads(meta_path.read_text())["results"]
    img1, img2 = tensors["img1"], tensors["img2"]
    assert len(results) == img1.shape[0] > 0, "metrics.json results do not match img1 pairs"

    window_key = f"ssim_window_{SSIM_WINDOW}_sigma{SSIM_SIGMA}"
    if window_key in tensors:
        reference_window = tensors[window_key]
        ours = gaussian_window().expand_as(reference_window)
        assert torch.allclose(ours, reference_window, rtol=0, atol=1e-7), "SSIM window differs"

    batched_psnr, batched_ssim = psnr(img1, img2), ssim(img1, img2)
    for entry in results:
        i = int(entry["pair"])
        ref_psnr, ref_ssim = float(entry["psnr"]), float(entry["ssim"])
        assert abs(float(tensors["psnr"][i]) - ref_psnr) < 1e-9, "json/safetensors PSNR disagree"
        assert abs(float(tensors["ssim"][i]) - ref_ssim) < 1e-9, "json/safetensors SSIM disagree"
        # The reference scores unbatched (3, H, W) images; check that call and the batched one.
        for name, ours, ref, tol in (
            ("PSNR", psnr(img1[i], img2[i]), ref_psnr, PSNR_TOL_DB),
            ("PSNR (batched)", batched_psnr[i], ref_psnr, PSNR_TOL_DB),
            ("SSIM", ssim(img1[i], img2[i]), ref_ssim, SSIM_TOL),
            ("SSIM (batched)", batched_ssim[i], ref_ssim, SSIM_TOL),
        ):
            assert abs(float(ours) - ref) <= tol, f"pair {i}: {name} {float(ours)} != {ref}"
