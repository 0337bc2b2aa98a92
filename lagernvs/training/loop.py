"""The shared Accelerate training loop (deterministic model and diffusion fine-tuning).

`Trainer` owns one optimisation run: AdamW + schedule (`optim.py`), autocast, gradient
accumulation, clipping with skipped steps, optional EMA, atomic checkpoints with rotation,
resume, trackers, periodic evaluation and a progress bar. It is generic: the caller passes a
model, a `compute_loss(model, batch) -> dict` callable and a resumable batch stream.

Loss contract: `compute_loss` returns a dict with a scalar `total` (the loss to minimise); other
0-dim tensors are logged as `loss/<name>`; optional `prediction` and `target` tensors shaped
(..., 3, H, W) in [0, 1] drive PSNR, images/s and the image grids.

Step semantics: one step = one optimizer step = `global_batch_size` samples over all processes.
A step whose loss is non-finite on any process or whose gradient norm is non-finite or above
`skip_factor * grad_clip` is skipped (weights, optimizer moments and EMA untouched), logged and
counted; the step counter, the schedule and the data stream still advance, so a run always
ends at `max_steps` with the data it would otherwise have seen.

Checkpoints: `<output_dir>/checkpoints/checkpoint-<step>/` holds `accelerator.save_state` plus
`trainer_state.json`, one `stream_state_<rank>.json` per process and `ema.pt`. They are written
to a hidden temporary folder and renamed only when complete, so a crash while saving never
leaves a corrupt latest checkpoint; rotation lists the folder, so it survives resumes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.tracking import GeneralTracker
from accelerate.utils import DistributedType, ProjectConfiguration, is_tensorboard_available
from torch import Tensor, nn
from torchvision.utils import make_grid, save_image
from tqdm.auto import tqdm

from lagernvs.training.config import LoopConfig, OptimConfig
from lagernvs.training.optim import build_ema, build_optimizer, build_scheduler

logger = get_logger(__name__)

LossFn = Callable[[nn.Module, dict[str, Any]], dict[str, Tensor]]
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
GRID_IMAGES = 8


@runtime_checkable
class BatchStream(Protocol):
    """An endless iterable of batch dicts whose position can be saved and restored (JSON)."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ResumableBatches:
    """Make a deterministic iterable of batches an endless, resumable `BatchStream`.

    The iterable is repeated forever; the state is the number of batches handed out, and
    resuming replays and discards that many. This is exact when every pass over the iterable
    yields the same sequence (seeded sampling) and cheap when batches are cheap to produce;
    streams that can seek should implement `state_dict`/`load_state_dict` themselves.
    """

    def __init__(self, iterable: Iterable[dict[str, Any]]) -> None:
        self._iterable = iterable
        self._consumed = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        endless = itertools.chain.from_iterable(_repeat(self._iterable))
        for batch in itertools.islice(endless, self._consumed, None):
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"batches_consumed": self._consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._consumed = int(state["batches_consumed"])


def _repeat(iterable: Iterable[dict[str, Any]]) -> Iterator[Iterable[dict[str, Any]]]:
    while True:
        yield iterable


class JsonlTracker(GeneralTracker):
    """Accelerate tracker appending scalar logs to `<logging_dir>/metrics.jsonl` (no extra deps)."""

    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, logging_dir: str | Path) -> None:
        super().__init__()
        self.path = Path(logging_dir) / "metrics.jsonl"

    @property
    def tracker(self) -> Path:
        return self.path

    def store_init_configuration(self, values: dict) -> None:
        """Hyperparameters are written by the entry point next to the run; nothing to do."""

    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"step": step, **{k: _to_float(v) for k, v in values.items()}}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def _to_float(value: Any) -> Any:
    return value.item() if isinstance(value, Tensor) else value


def read_metrics(logging_dir: str | Path) -> list[dict[str, Any]]:
    """Records of `JsonlTracker`, the last one kept per (step, keys) after resumes."""
    path = Path(logging_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records: dict[tuple, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        records[(record["step"], tuple(sorted(record)))] = record
    return sorted(records.values(), key=lambda r: r["step"])


def resolve_mixed_precision(setting: str) -> str:
    """`auto` -> bf16 on a CUDA device that supports it, else full fp32."""
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def build_accelerator(loop: LoopConfig, output_dir: str | Path) -> Accelerator:
    """Accelerator for `loop` writing logs under `<output_dir>/logs`.

    The schedule is stepped once per optimizer step by the loop itself, hence
    `step_scheduler_with_optimizer=False`. TensorBoard is used when requested or, with `auto`,
    when installed; scalar logs always go to `logs/metrics.jsonl` too.
    """
    logging_dir = Path(output_dir) / "logs"
    trackers: list[Any] = [JsonlTracker(logging_dir)]
    if loop.log_with == "tensorboard" and not is_tensorboard_available():
        raise ValueError(
            "config key 'loop.log_with': tensorboard is not installed; `pip install tensorboard` "
            "or set loop.log_with=auto"
        )
    if loop.log_with == "tensorboard" or (loop.log_with == "auto" and is_tensorboard_available()):
        trackers.append("tensorboard")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    accelerator = Accelerator(
        # Without CUDA, Accelerate only joins a torchrun/`accelerate launch` group when told
        # to run on CPU (gloo); otherwise every process would silently train alone.
        cpu=world_size > 1 and not torch.cuda.is_available(),
        mixed_precision=resolve_mixed_precision(loop.mixed_precision),
        log_with=trackers,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(logging_dir)
        ),
        step_scheduler_with_optimizer=False,
    )
    if accelerator.num_processes != world_size:
        raise ValueError(
            f"WORLD_SIZE is {world_size} but Accelerate joined {accelerator.num_processes} "
            "process(es); launch with `accelerate launch` or `torchrun` on a supported backend"
        )
    return accelerator


def list_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """Complete checkpoints `checkpoint-<step>` under `checkpoint_dir`, oldest first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))
    ]
    return [path for _, path in sorted(found)]


@dataclass
class TrainState:
    """Counters saved with every checkpoint."""

    step: int = 0
    skipped_steps: int = 0
    stopped: bool = False  # the last `train()` ended early on a stop request

    def summary(self, saved_to: Path) -> str:
        """One line for the end of a run: resume hint when stopped, else where the result is."""
        if self.stopped:
            return f"stopped at step {self.step}; run the same command again to resume"
        return f"finished {self.step} steps ({self.skipped_steps} skipped); saved to {saved_to}"


class Trainer:
    """One training run of `model` on `train_stream` minimising `compute_loss`.

    `val_batches` is re-iterated from the start at every evaluation; under several processes
    each process evaluates its own part, and every process must yield the same number of
    batches (the forward pass of a distributed model is collective).
    """

    def __init__(
        self,
        model: nn.Module,
        compute_loss: LossFn,
        train_stream: BatchStream,
        optim: OptimConfig,
        loop: LoopConfig,
        output_dir: str | Path,
        accelerator: Accelerator | None = None,
        val_batches: Iterable[dict[str, Any]] | None = None,
        hparams: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(train_stream, BatchStream):
            raise ValueError(
                "train_stream must have state_dict()/load_state_dict() to resume; wrap a "
                "deterministic iterable in ResumableBatches"
            )
        self.output_dir = Path(output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.accelerator = accelerator or build_accelerator(loop, self.output_dir)
        self.optim_config, self.loop_config = optim, loop
        self.accumulation = loop.gradient_accumulation_steps(self.accelerator.num_processes)
        self.compute_loss = compute_loss
        self.train_stream = train_stream
        self.val_batches = val_batches
        self.hparams = hparams or {}
        self.state = TrainState()
        self._stop_requested = False

        if loop.gradient_checkpointing:
            if not hasattr(model, "enable_gradient_checkpointing"):
                raise ValueError(
                    f"loop.gradient_checkpointing is true but {type(model).__name__} has no "
                    "enable_gradient_checkpointing(); set loop.gradient_checkpointing=false"
                )
            model.enable_gradient_checkpointing()
        model.train()
        optimizer = build_optimizer(model, optim)
        scheduler = build_scheduler(optimizer, optim, loop.max_steps)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(
            model, optimizer, scheduler
        )
        if (
            optim.ema_decay is not None
            and self.accelerator.distributed_type == DistributedType.FSDP
        ):
            raise ValueError(
                "config key 'optim.ema_decay': EMA of FSDP-sharded parameters is not supported; "
                "set optim.ema_decay=null or train with DDP"
            )
        self.ema = build_ema(self.unwrapped_model, optim)
        if self.ema is not None:
            self.ema.to(self.accelerator.device)

    @property
    def unwrapped_model(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def request_stop(self) -> None:
        """Finish the current step, save a checkpoint and return from `train()`."""
        self._stop_requested = True

    # ------------------------------------------------------------------ run
    def train(self) -> TrainState:
        """Resume from the latest checkpoint if any, then train until `max_steps` or a stop."""
        acc, loop = self.accelerator, self.loop_config
        self._remove_stale_temporaries()
        self.resume()
        if not acc.trackers:
            acc.init_trackers("train", config=_flat_hparams(self.hparams))
        self.state.stopped = self._stop_requested = False
        previous_handlers = self._install_signal_handlers()
        progress = tqdm(
            total=loop.max_steps,
            initial=self.state.step,
            desc="train",
            disable=not acc.is_local_main_process,
            dynamic_ncols=True,
        )
        window = {"images": 0.0, "seconds": 0.0}
        try:
            iterator = iter(self.train_stream)
            while self.state.step < loop.max_steps:
                started = time.perf_counter()
                try:
                    logs, images, stop, last_outputs = self._train_step(iterator)
                except RuntimeError:
                    if not self._stop_requested:
                        raise
                    # A signal sent to the process group also stops DataLoader workers: keep
                    # the last completed step rather than losing it.
                    logger.warning("the data stream failed after a stop request; saving")
                    self.state.stopped = True
                    self.save_checkpoint()
                    break
                self.state.step += 1
                step = self.state.step
                window["images"] += images
                window["seconds"] += time.perf_counter() - started
                progress.update(1)
                progress.set_postfix(loss=f"{logs['loss/total']:.4f}", lr=f"{logs['lr']:.2e}")
                if loop.log_every and step % loop.log_every == 0:
                    logs["images_per_s"] = window["images"] / max(window["seconds"], 1e-9)
                    window = {"images": 0.0, "seconds": 0.0}
                    acc.log(logs, step=step)
                if loop.image_every and step % loop.image_every == 0:
                    self._log_grid("train", last_outputs, step)
                if self.val_batches is not None and loop.eval_every and step % loop.eval_every == 0:
                    acc.log(self.evaluate(), step=step)
                self.state.stopped = stop and step < loop.max_steps
                if step % loop.checkpoint_every == 0 or step == loop.max_steps or stop:
                    self.save_checkpoint()
                if stop:
                    logger.info(f"stopped at step {step}; re-run to resume", main_process_only=True)
                    break
        finally:
            progress.close()
            self._restore_signal_handlers(previous_handlers)
        return self.state

    def _train_step(
        self, iterator: Iterator[dict[str, Any]]
    ) -> tuple[dict[str, float], float, bool, dict[str, Tensor]]:
        """Accumulate gradients over the micro batches, then clip and step (or skip)."""
        acc, optim = self.accelerator, self.optim_config
        sums: dict[str, Tensor] = {}
        nonfinite = torch.zeros((), device=acc.device)
        images = torch.zeros((), device=acc.device)
        psnr = torch.zeros(2, device=acc.device)
        outputs: dict[str, Tensor] = {}
        for index in range(self.accumulation):
            batch = _next_batch(iterator, acc.device)
            sync = index == self.accumulation - 1
            with contextlib.nullcontext() if sync else acc.no_sync(self.model):
                with acc.autocast():
                    outputs = self.compute_loss(self.model, batch)
                total = _check_outputs(outputs)
                acc.backward(total / self.accumulation)
            nonfinite += (~torch.isfinite(total.detach())).float()
            for key, value in _scalars(outputs).items():
                sums[key] = sums.get(key, torch.zeros((), device=acc.device)) + value
            images += _count_images(outputs, batch)
            psnr += _psnr_sum(outputs)
        keys = sorted(sums)
        stop_flag = torch.tensor(float(self._stop_requested), device=acc.device)
        packed = torch.stack(
            [*(sums[k] / self.accumulation for k in keys), nonfinite, images, *psnr, stop_flag]
        )
        reduced = acc.reduce(packed, reduction="sum")
        world = acc.num_processes
        logs = {f"loss/{k}": (reduced[i] / world).item() for i, k in enumerate(keys)}
        nonfinite_total, images_total, psnr_sum, psnr_count, stop_total = reduced[
            len(keys) :
        ].tolist()

        max_norm = optim.grad_clip if optim.grad_clip is not None else float("inf")
        grad_norm = float(acc.clip_grad_norm_(self.model.parameters(), max_norm))
        reason = None
        if nonfinite_total > 0:
            reason = "non-finite loss"
        elif not math.isfinite(grad_norm):
            reason = "non-finite gradient norm"
        elif optim.grad_clip is not None and grad_norm > optim.skip_factor * optim.grad_clip:
            reason = f"gradient norm {grad_norm:.3g} > {optim.skip_factor} x clip {optim.grad_clip}"
        if reason is None:
            self.optimizer.step()
            if self.ema is not None:
                self.ema.step(self.unwrapped_model.parameters())
        else:
            self.state.skipped_steps += 1
            logger.warning(f"step {self.state.step + 1} skipped: {reason}", main_process_only=True)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

        logs.update(lr=lr, grad_norm=grad_norm, skipped_steps=float(self.state.skipped_steps))
        if psnr_count > 0:
            logs["psnr"] = psnr_sum / psnr_count
        return logs, images_total, stop_total > 0, outputs

    # ------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean scalar losses and PSNR over `val_batches` on all processes (EMA weights if any)."""
        if self.val_batches is None:
            raise ValueError("no val_batches were given to the Trainer; nothing to evaluate")
        acc = self.accelerator
        params = list(self.unwrapped_model.parameters())
        if self.ema is not None:
            self.ema.store(params)
            self.ema.copy_to(params)
        self.model.eval()
        sums: dict[str, Tensor] = {}
        psnr = torch.zeros(2, device=acc.device)
        count = 0
        first_outputs: dict[str, Tensor] | None = None
        try:
            for raw in self.val_batches:
                batch = _to_device(raw, acc.device)
                with acc.autocast():
                    outputs = self.compute_loss(self.model, batch)
                _check_outputs(outputs)
                first_outputs = first_outputs or outputs
                for key, value in _scalars(outputs).items():
                    sums[key] = sums.get(key, torch.zeros((), device=acc.device)) + value
                psnr += _psnr_sum(outputs)
                count += 1
        finally:
            self.model.train()
            if self.ema is not None:
                self.ema.restore(params)
        if count == 0:
            raise ValueError("val_batches yielded no batch on this process; give each one a batch")
        keys = sorted(sums)
        packed = torch.stack(
            [*(sums[k] for k in keys), torch.tensor(float(count), device=acc.device), *psnr]
        )
        reduced = acc.reduce(packed, reduction="sum").tolist()
        total_count = reduced[len(keys)]
        metrics = {f"val/{k}": reduced[i] / total_count for i, k in enumerate(keys)}
        if reduced[-1] > 0:
            metrics["val/psnr"] = reduced[-2] / reduced[-1]
        if first_outputs is not None and self.loop_config.image_every:
            self._log_grid("val", first_outputs, self.state.step)
        return metrics

    def _log_grid(self, tag: str, outputs: dict[str, Tensor], step: int) -> None:
        """Targets (top row) and predictions (bottom row) of the first images, main process."""
        if "prediction" not in outputs or "target" not in outputs:
            return
        if not self.accelerator.is_main_process:
            return
        pred = outputs["prediction"].detach().float().flatten(0, -4)[:GRID_IMAGES].clamp(0, 1)
        target = outputs["target"].detach().float().flatten(0, -4)[: len(pred)].clamp(0, 1)
        grid = make_grid(torch.cat([target, pred]).cpu(), nrow=len(pred), padding=2)
        image_trackers = [t for t in self.accelerator.trackers if hasattr(t, "log_images")]
        for tracker in image_trackers:
            tracker.log_images({f"{tag}/grid": grid[None]}, step=step)
        if not image_trackers:
            folder = self.output_dir / "logs" / "images"
            folder.mkdir(parents=True, exist_ok=True)
            save_image(grid, folder / f"{tag}-{step:08d}.png")

    # ----------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """Write `checkpoint-<step>` atomically (temporary folder, then rename) and rotate."""
        acc = self.accelerator
        final = self.checkpoint_dir / f"checkpoint-{self.state.step}"
        if final.exists():
            return final
        temporary = self.checkpoint_dir / f".tmp-checkpoint-{self.state.step}"
        if acc.is_main_process:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(temporary))
        stream_state = json.dumps(self.train_stream.state_dict())
        (temporary / f"stream_state_{acc.process_index}.json").write_text(stream_state)
        if acc.is_main_process:
            if self.ema is not None:
                torch.save(self.ema.state_dict(), temporary / "ema.pt")
            state = {**asdict(self.state), "world_size": acc.num_processes}
            (temporary / "trainer_state.json").write_text(json.dumps(state, indent=1))
        acc.wait_for_everyone()
        if acc.is_main_process:
            _fsync_tree(temporary)
            os.rename(temporary, final)
            _fsync_dir(self.checkpoint_dir)
            self._rotate()
        acc.wait_for_everyone()
        return final

    def _rotate(self) -> None:
        limit = self.loop_config.checkpoints_total_limit
        if limit is None:
            return
        for old in list_checkpoints(self.checkpoint_dir)[:-limit]:
            doomed = old.with_name(f".tmp-delete-{old.name}")
            os.rename(old, doomed)
            shutil.rmtree(doomed)

    def _remove_stale_temporaries(self) -> None:
        if self.accelerator.is_main_process and self.checkpoint_dir.is_dir():
            for stale in self.checkpoint_dir.glob(".tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def resume(self) -> Path | None:
        """Load the latest checkpoint (weights, optimizer, schedule, RNGs, stream, EMA)."""
        checkpoints = list_checkpoints(self.checkpoint_dir)
        if not checkpoints:
            return None
        latest = checkpoints[-1]
        acc = self.accelerator
        acc.load_state(str(latest))
        saved = json.loads((latest / "trainer_state.json").read_text())
        self.state = TrainState(step=int(saved["step"]), skipped_steps=int(saved["skipped_steps"]))
        stream_file = latest / f"stream_state_{acc.process_index}.json"
        if stream_file.is_file():
            self.train_stream.load_state_dict(json.loads(stream_file.read_text()))
        else:
            logger.warning(
                f"{stream_file.name} missing (saved with {saved.get('world_size')} processes); "
                "this process starts its data stream from the beginning"
            )
        if self.ema is not None:
            ema_file = latest / "ema.pt"
            if not ema_file.is_file():
                raise FileNotFoundError(
                    f"{ema_file} is missing but optim.ema_decay is set; the checkpoint was saved "
                    "without EMA: set optim.ema_decay=null or start a new output directory"
                )
            self.ema.load_state_dict(torch.load(ema_file, map_location="cpu", weights_only=True))
            self.ema.to(acc.device)
        logger.info(f"resumed from {latest} at step {self.state.step}", main_process_only=True)
        return latest

    # ---------------------------------------------------------------- export
    def save_model(self, path: str | Path) -> None:
        """`save_pretrained` of the trained model (EMA weights when EMA is on), main process.

        Under FSDP the full state dict is gathered and saved through a fresh copy of the model
        built from its config (FSDP keeps only shards in the wrapped module).
        """
        model = self.unwrapped_model
        if not hasattr(model, "save_pretrained"):
            raise ValueError(f"{type(model).__name__} has no save_pretrained(); save it yourself")
        if self.accelerator.distributed_type == DistributedType.FSDP:
            state = self.accelerator.get_state_dict(self.model)
            if self.accelerator.is_main_process:
                full = type(model).from_config(model.config)
                full.load_state_dict(state)
                full.save_pretrained(str(path))
            self.accelerator.wait_for_everyone()
            return
        params = list(model.parameters())
        if self.ema is not None:
            self.ema.store(params)
            self.ema.copy_to(params)
        if self.accelerator.is_main_process:
            model.save_pretrained(str(path))
        if self.ema is not None:
            self.ema.restore(params)
        self.accelerator.wait_for_everyone()

    def close(self) -> None:
        """Finish the trackers and the process group (call once, after saving)."""
        self.accelerator.end_training()

    # --------------------------------------------------------------- signals
    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self._stop_requested:
            raise KeyboardInterrupt  # a second Ctrl-C aborts without saving
        self._stop_requested = True

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _next_batch(iterator: Iterator[dict[str, Any]], device: torch.device) -> dict[str, Any]:
    try:
        return _to_device(next(iterator), device)
    except StopIteration:
        raise ValueError(
            "the training stream ended; use an endless (resampled) stream or ResumableBatches"
        ) from None


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


def _check_outputs(outputs: dict[str, Tensor]) -> Tensor:
    total = outputs.get("total") if isinstance(outputs, dict) else None
    if not isinstance(total, Tensor) or total.ndim != 0:
        raise ValueError("compute_loss must return a dict with a scalar tensor under 'total'")
    return total


def _scalars(outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    return {
        k: v.detach().float() for k, v in outputs.items() if isinstance(v, Tensor) and v.ndim == 0
    }


def _psnr_sum(outputs: dict[str, Tensor]) -> Tensor:
    """[sum of per-image PSNR, image count] of `prediction` vs `target` (zeros if absent)."""
    if "prediction" not in outputs or "target" not in outputs:
        return torch.zeros(2, device=outputs["total"].device)
    pred = outputs["prediction"].detach().float()
    mse = (pred - outputs["target"].detach().float()).square().flatten(-3).mean(-1)
    psnr = -10.0 * torch.log10(mse.clamp_min(1e-10))
    return torch.stack([psnr.sum(), torch.tensor(float(psnr.numel()), device=psnr.device)])


def _count_images(outputs: dict[str, Tensor], batch: dict[str, Any]) -> float:
    """Predicted images in this micro batch (else the batch's leading size)."""
    if "prediction" in outputs:
        return float(outputs["prediction"].shape[:-3].numel())
    first = next((v for v in batch.values() if isinstance(v, Tensor) and v.ndim > 0), None)
    return float(first.shape[0]) if first is not None else 0.0


def _flat_hparams(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested hyperparameters to scalar `a.b` entries (what trackers accept)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flat_hparams(value, name))
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
