"""The protocol runner shared by ``lagernvs eval`` and ``lagernvs bench extrapolation``.

:class:`Evaluation` holds one protocol run in one output folder (model, device, precision,
metrics, storage):

* every process takes its share of the samples not yet done (Accelerate's
  ``split_between_processes``), so each sample is evaluated once whatever the number of GPUs;
* each finished sample is appended as one JSON line to ``DIR/records/rank<k>.jsonl``; a
  re-run in the same folder skips the samples found there (resume), after checking that the
  folder was written by the same protocol (``DIR/protocol.json``);
* the main process then aggregates every record (so on several machines ``DIR`` must be on a
  shared filesystem): per-target scores are averaged per sample, then over samples;
* every file is written atomically, so a half-written one never passes for a result.
"""

from __future__ import annotations

import functools
import json
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from lagernvs.evaluation.dataset import IndexedViews, build_dataset
from lagernvs.evaluation.metrics import LPIPSVGG, build_fid, build_kid, image_metrics
from lagernvs.evaluation.model import autocast_dtype, load_model, model_info
from lagernvs.evaluation.protocol import MetricsConfig, Protocol
from lagernvs.evaluation.records import Record, ResultStore, write_json, write_per_scene_csv
from lagernvs.io import atomic_path
from lagernvs.perceptual import INCEPTION_FID, VGG16_IMAGENET

__all__ = ["Evaluation", "batch_by_layout", "software_versions"]

_STACKED = ("images", "rays", "cam_tokens", "c2w", "fxfycxcy", "seen")


def batch_by_layout(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A DataLoader's samples -> one batch per layout (number of views, image size), with
    the tensors stacked and the other fields listed: samples of different layouts never share a
    forward pass."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for sample in samples:
        key = (sample["num_cond_views"], tuple(sample["images"].shape))
        groups.setdefault(key, []).append(sample)
    batches = []
    for group in groups.values():
        batch = {
            key: torch.stack([s[key] for s in group])
            if key in _STACKED
            else [s[key] for s in group]
            for key in group[0]
        }
        batch["num_cond_views"] = group[0]["num_cond_views"]
        batches.append(batch)
    return batches


def software_versions() -> dict[str, str]:
    """Versions of the packages that determine the numbers."""
    import accelerate
    import diffusers
    import lpips
    import torchmetrics

    import lagernvs

    return {
        "python": platform.python_version(),
        "lagernvs": lagernvs.__version__,
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "diffusers": diffusers.__version__,
        "accelerate": accelerate.__version__,
        "torchmetrics": torchmetrics.__version__,
        "lpips": getattr(lpips, "__version__", "unknown"),
    }


def _check_lpips_weights(config: MetricsConfig) -> None:
    if config.lpips and config.lpips_pretrained:
        VGG16_IMAGENET.require(
            "LPIPS-VGG",
            "To evaluate without LPIPS pass --set metrics.lpips=false (or "
            "metrics.lpips_pretrained=false for a random trunk in tests; not comparable).",
        )


def _lpips_net(config: MetricsConfig, device: torch.device) -> LPIPSVGG | None:
    return _shared_lpips(config.lpips_pretrained, str(device)) if config.lpips else None


@functools.lru_cache(maxsize=2)
def _shared_lpips(pretrained: bool, device: str) -> LPIPSVGG:
    """The (frozen) LPIPS network, built once per process. A random trunk (tests) is seeded so
    that every run, and every part of a resumed run, scores with the same network."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LPIPSVGG(pretrained=pretrained).to(device)


def _distribution_metrics(
    config: MetricsConfig, feature: int | torch.nn.Module
) -> tuple[bool, str | None]:
    """Whether to compute FID/KID, and why not when ``fid: auto`` finds them unavailable."""
    if config.fid is False:
        return False, "disabled (metrics.fid=false)"
    if not isinstance(feature, int):
        return True, None
    try:
        build_fid(feature)
    except (FileNotFoundError, ModuleNotFoundError) as error:
        if config.fid == "auto":
            return False, f"unavailable: {error}"
        if isinstance(error, FileNotFoundError):
            raise FileNotFoundError(
                f"{error} Or pass --set metrics.fid=false (or auto to skip FID/KID when missing)."
            ) from None
        raise
    return True, None


class Evaluation:
    """One protocol run in one output folder: model, device, precision, metrics, storage.

    Args:
        protocol: the protocol.
        output_dir: where records, grids and summaries go.
        pipe: a pipeline to evaluate instead of the one ``protocol.model`` names.
        accelerator: an ``accelerate.Accelerator`` (one is created when None).
        fid_feature: Inception layer (int) or a feature-extractor module for FID/KID.
    """

    def __init__(
        self,
        protocol: Protocol,
        output_dir: str | Path,
        pipe: Any = None,
        accelerator: Any = None,
        fid_feature: int | torch.nn.Module = 2048,
    ) -> None:
        from accelerate import Accelerator

        self.protocol = protocol
        self.output_dir = Path(output_dir)
        self.accelerator = accelerator or Accelerator()
        self.device = self.accelerator.device
        _check_lpips_weights(protocol.metrics)
        self.use_fid, self.fid_note = _distribution_metrics(protocol.metrics, fid_feature)
        self.fid_feature = fid_feature
        if pipe is None:
            pipe, self.model_info = load_model(protocol.model, self.device)
        else:
            self.model_info = model_info(pipe, "in-memory pipeline")
        self.pipe = pipe.to(self.device)
        self.model = pipe.model.eval()
        self.image_size = self._image_size()
        self.autocast = autocast_dtype(protocol.precision, self.device)
        self.lpips_net = _lpips_net(protocol.metrics, self.device)
        self.resumed = False

    def _image_size(self) -> tuple[int, int]:
        model_size = self.model.image_size
        wanted = self.protocol.dataset.image_size
        if wanted is None:
            return model_size
        wanted = (int(wanted[0]), int(wanted[1]))
        if wanted != model_size and not self.protocol.model.allow_resolution_mismatch:
            raise ValueError(
                f"protocol {self.protocol.name!r} evaluates at {wanted[0]}x{wanted[1]} but the "
                f"model ({self.model_info['source']}) was made for {model_size[0]}x"
                f"{model_size[1]}; use a model of the protocol's resolution, or --set "
                f"dataset.image_size=[{model_size[0]},{model_size[1]}], or "
                "model.allow_resolution_mismatch=true"
            )
        return wanted

    # ------------------------------------------------------------------ output folder

    def prepare_output(self) -> None:
        """Check (resume) or reset the output folder, then record the protocol in it."""
        path = self.output_dir / "protocol.json"
        identity = self.protocol.identity()
        if path.is_file() and self.protocol.resume:
            stored = json.loads(path.read_text())
            if stored != identity:
                changed = _differences(stored, identity)
                raise ValueError(
                    f"{self.output_dir} holds results of a different protocol (differs in: "
                    f"{', '.join(changed)}); use a new --output-dir, or --set resume=false to "
                    "discard them"
                )
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            if not self.protocol.resume:
                for name in ("records", "grids", "sweep", "synthetic"):
                    shutil.rmtree(self.output_dir / name, ignore_errors=True)
            with atomic_path(path) as temporary:
                temporary.write_text(json.dumps(identity, indent=1))
        self.accelerator.wait_for_everyone()

    def dataset(self) -> IndexedViews:
        with self.accelerator.main_process_first():
            return build_dataset(self.protocol.dataset, self.image_size, self.output_dir)

    def score_dataset(
        self,
        scorer: Callable[[dict[str, Any]], list[Record]],
        distribution: dict[str, tuple[Any, Any]],
        description: str,
    ) -> tuple[IndexedViews, list[Record] | None, dict[str, Any]]:
        """Prepare the output folder, score the protocol's dataset into ``DIR/records`` and
        compute the FID/KID of ``distribution``: the setup every benchmark shares.

        Returns the dataset, every record (None on processes other than the main one) and the
        FID/KID scores. Call on every process.
        """
        self.prepare_output()
        dataset = self.dataset()
        records = self.run(dataset, self.output_dir / "records", scorer, description)
        return dataset, records, self.compute_distribution_metrics(distribution)

    # ------------------------------------------------------------------ model and metrics

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def render(self, batch: dict[str, Any]) -> tuple[Tensor, float]:
        """Deterministic renders (B, T, 3, H, W) float32 of a batch, and the seconds taken."""
        count = batch["num_cond_views"]
        images = batch["images"][:, :count].to(self.device)
        tokens = batch["cam_tokens"][:, :count].to(self.device)
        rays = batch["rays"][:, count:].to(self.device)
        self.synchronize()
        start = time.perf_counter()
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type,
                dtype=self.autocast or torch.bfloat16,
                enabled=self.autocast is not None,
            ),
        ):
            scene = self.model.encode(images, tokens)
            pred = self.model.render(scene, rays, chunk_size=self.protocol.chunk_size)
        self.synchronize()
        return pred.float(), time.perf_counter() - start

    def scores(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """Per-image PSNR / SSIM (/ LPIPS) of (..., 3, H, W) images, on the CPU."""
        with torch.inference_mode():
            values = image_metrics(pred, target.to(pred.device), self.lpips_net, mask)
        return {key: value.float().cpu() for key, value in values.items()}

    def new_distribution_metrics(self, names: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        """Fresh FID and KID metrics per name (empty when FID/KID are off)."""
        if not self.use_fid:
            return {}
        return {
            name: (
                build_fid(self.fid_feature).to(self.device),
                build_kid(self.fid_feature).to(self.device),
            )
            for name in names
        }

    def compute_distribution_metrics(self, metrics: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
        """FID / KID per name; why not, when they were skipped (call on every process)."""
        if not self.use_fid:
            return {"note": self.fid_note}
        if self.resumed:
            return {
                "note": "not computed: the run resumed, and FID/KID need every image in one "
                "run; rerun with --set resume=false"
            }
        out: dict[str, Any] = {}
        for name, (fid, kid) in metrics.items():
            count = int(fid.fake_features_num_samples)
            if count < 2:
                out[name] = {"fid": None, "kid": None, "note": "fewer than 2 images"}
                continue
            kid.subset_size = min(kid.subset_size, count)
            kid_mean, kid_std = kid.compute()
            out[name] = {
                "fid": float(fid.compute()),
                "kid": float(kid_mean),
                "kid_std": float(kid_std),
                "num_images": count,
            }
        if isinstance(self.fid_feature, int):
            out["inception_weights"] = str(INCEPTION_FID.path)
        return out

    # ------------------------------------------------------------------ loop

    def base_record(self, batch: dict[str, Any], index: int, seconds: float) -> Record:
        return {
            "sample": batch["sample_id"][index],
            "scene": batch["scene"][index],
            "position": batch["position"][index],
            "context": batch["context"][index],
            "target": batch["target"][index],
            "is_valid": bool(batch["is_valid"][index].all()),
            "seconds": seconds,
            "scores": {},
        }

    def run(
        self,
        dataset: IndexedViews,
        records_dir: Path,
        scorer: Callable[[dict[str, Any]], list[Record]],
        description: str,
    ) -> list[Record] | None:
        """Score every sample not yet in ``records_dir``; all records in dataset order on the
        main process (None on the others)."""
        store = ResultStore(records_dir, self.accelerator.process_index)
        done = set(store.records())
        self.resumed = self.resumed or bool(done & set(dataset.ids))
        pending = [i for i, sample in enumerate(dataset.ids) if sample not in done]
        with self.accelerator.split_between_processes(pending) as mine:
            loader = DataLoader(
                Subset(dataset, mine),
                batch_size=self.protocol.batch_size,
                num_workers=self.protocol.num_workers,
                collate_fn=batch_by_layout,
            )
            bar = tqdm(
                total=len(mine),
                desc=description,
                unit="sample",
                # Only other processes pass `disable`: TQDM_* variables set what is not passed.
                **({} if self.accelerator.is_local_main_process else {"disable": True}),
            )
            for batches in loader:
                for batch in batches:
                    store.append(scorer(batch))
                    bar.update(len(batch["sample_id"]))
            bar.close()
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return None
        found = store.records()
        return [found[s] for s in dataset.ids if s in found]

    def wants_grid(self, position: int) -> bool:
        return position < self.protocol.num_grids

    def summary(
        self, dataset: IndexedViews, records: Sequence[Record], metrics: dict[str, Any]
    ) -> dict[str, Any]:
        """The summary fields every benchmark shares."""
        return {
            "protocol": self.protocol.name,
            "description": self.protocol.description,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "complete": len(records) == len(dataset),
            "num_samples": len(records),
            "num_expected": len(dataset),
            "num_invalid": sum(not r["is_valid"] for r in records),
            "missing_scenes": len(dataset.missing),
            "image_size": list(self.image_size),
            "precision": str(self.autocast or torch.float32).removeprefix("torch."),
            "metrics": metrics,
            "model": self.model_info,
            "settings": self.protocol.to_dict(),
            "software": software_versions(),
            "hardware": {
                "device": _device_name(self.device),
                "num_processes": self.accelerator.num_processes,
            },
        }

    def finish(
        self,
        dataset: IndexedViews,
        records: Sequence[Record],
        metrics: dict[str, Any],
        **fields: Any,
    ) -> dict[str, Any]:
        """The summary (shared fields, ``metrics`` and ``fields``), written with the records'
        ``per_scene.csv``; call on the main process."""
        summary = {**self.summary(dataset, records, metrics), **fields}
        write_json(self.output_dir / "summary.json", summary)
        write_per_scene_csv(self.output_dir / "per_scene.csv", records)
        return summary


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()})"


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]
