"""The shared Accelerate training loop (deterministic model and diffusion fine-tuning).

`Trainer` owns one optimisation run: fused AdamW + schedule (`optim.py`), autocast, gradient
accumulation, clipping with skipped steps (`update.py`), optional EMA, atomic checkpoints with
rotation (`checkpoints.py`), resume, trackers (`tracking.py`), periodic evaluation, clean stops on
signals (`signals.py`) and a progress bar. It is generic: the caller passes a model, a
`compute_loss(model, batch) -> dict` callable (contract in `outputs.py`) and a resumable
:class:`~lagernvs.data.batch_streams.BatchStream`.

Step semantics: one step = one optimizer step = `global_batch_size` samples over all processes.
A step whose loss is non-finite on any process or whose gradient norm is non-finite or above
`skip_factor * grad_clip` is skipped (weights, optimizer moments and EMA untouched) and counted;
the step counter, the schedule and the data stream still advance, so a run always ends at
`max_steps` with the data it would otherwise have seen.

Device syncs: a training step reads nothing back from the device. The skip is decided on the
device; losses, PSNR, gradient norm and skip counts are read on the steps that are logged (every
`log_every` steps: one all-reduce, then one read), and at evaluations, image grids and
checkpoints. Logged losses, PSNR and gradient norm are those of the logged step; images/s and
skipped steps cover the steps since the previous log. Per step, the host only agrees on stopping
with the other processes, over a CPU process group (`signals.py`).

Checkpoints: `<output_dir>/checkpoints/checkpoint-<step>/` holds `accelerator.save_state` plus
`trainer_state.json`, one `stream_state_<rank>.json` per process and `ema.pt`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DistributedType, send_to_device
from torch import Tensor, nn
from tqdm.auto import tqdm

from lagernvs.data.batch_streams import BatchStream
from lagernvs.io import atomic_folder
from lagernvs.training.accelerator import build_accelerator
from lagernvs.training.checkpoints import (
    list_checkpoints,
    remove_stale_temporaries,
    save_atomically,
)
from lagernvs.training.config import LoopConfig, OptimConfig
from lagernvs.training.optim import build_ema, build_optimizer, build_scheduler, ema_weights
from lagernvs.training.outputs import LossFn, check_outputs, count_images, psnr_sum, scalars
from lagernvs.training.signals import StopRequest
from lagernvs.training.tracking import flat_hparams, log_image_grid, notice
from lagernvs.training.update import GuardedUpdate
from lagernvs.training.validation import evaluate_batches

__all__ = ["TrainState", "Trainer"]

logger = get_logger(__name__)


@dataclass
class TrainState:
    """Counters saved with every checkpoint, and how the last `train()` ended."""

    step: int = 0
    skipped_steps: int = 0
    stopped: bool = False  # the last `train()` ended early on a stop request
    stop_signal: int | None = None  # the signal that asked to stop (None: code, or no stop)
    already_finished: bool = False  # nothing to do: the run had finished before

    @property
    def exit_code(self) -> int:
        """0, or 128 + the signal that stopped the run (130 Ctrl-C, 143 SIGTERM)."""
        return 128 + self.stop_signal if self.stopped and self.stop_signal else 0

    def summary(self, saved_to: Path) -> str:
        """One line for the end of a run: resume hint when stopped, else where the result is."""
        if self.stopped:
            return f"stopped at step {self.step}; run the same command again to resume"
        if self.already_finished:
            return (
                f"already finished: {self.step} steps ({self.skipped_steps} skipped) were "
                f"trained before and saved to {saved_to}; nothing to do (raise loop.max_steps "
                "to train on, or use another --output-dir)"
            )
        return f"finished {self.step} steps ({self.skipped_steps} skipped); saved to {saved_to}"


@dataclass
class _Step:
    """What one optimizer step leaves for logging: host values and unread device tensors."""

    images: float
    lr: float
    outputs: dict[str, Tensor]
    grad_norm: Tensor
    losses: dict[str, Tensor]  # measured steps only
    psnr: Tensor  # [sum, count]; zeros unless measured


@dataclass
class _Window:
    """The steps since the last log: when they started and how many images they predicted."""

    started: float = field(default_factory=time.perf_counter)
    images: float = 0.0


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
        self.logging_dir = self.output_dir / "logs"
        self.accelerator = accelerator or build_accelerator(loop, self.output_dir)
        self.optim_config, self.loop_config = optim, loop
        self.accumulation = loop.gradient_accumulation_steps(self.accelerator.num_processes)
        self.compute_loss = compute_loss
        self.train_stream = train_stream
        self.val_batches = val_batches
        self.hparams = hparams or {}
        self.state = TrainState()
        self.stop = StopRequest(self.accelerator.num_processes)
        self._counted_to = 0  # skips of the steps up to here are in state.skipped_steps

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
        self.update = GuardedUpdate(self.accelerator, self.model, self.optimizer, self.ema, optim)

    @property
    def unwrapped_model(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def request_stop(self) -> None:
        """Finish the current step, save a checkpoint and return from `train()`."""
        self.stop.request()

    # ------------------------------------------------------------------ run
    def train(self) -> TrainState:
        """Resume from the latest checkpoint if any, then train until `max_steps` or a stop."""
        acc = self.accelerator
        remove_stale_temporaries(acc, self.checkpoint_dir)
        self.resume()
        if not acc.trackers:
            acc.init_trackers("train", config=flat_hparams(self.hparams))
        self.state.stopped = False
        self.stop.reset()
        progress = tqdm(
            total=self.loop_config.max_steps,
            initial=self.state.step,
            desc="train",
            dynamic_ncols=True,
            # Only other processes pass `disable`: tqdm's TQDM_* variables set what is not passed.
            **({} if acc.is_local_main_process else {"disable": True}),
        )
        try:
            with self.stop.catching_signals():
                self._run(progress)
        finally:
            progress.close()
        self.state.stop_signal = self.stop.signal if self.state.stopped else None
        self._count_skips()
        return self.state

    def _run(self, progress: tqdm) -> None:
        loop = self.loop_config
        iterator = iter(self.train_stream)
        window = _Window()
        while self.state.step < loop.max_steps:
            measure = loop.log_every > 0 and (self.state.step + 1) % loop.log_every == 0
            try:
                result = self._train_step(iterator, measure)
            except RuntimeError:
                if not self.stop.requested:
                    raise
                # A signal sent to the process group also stops DataLoader workers: keep the
                # last completed step rather than losing it.
                logger.warning("the data stream failed after a stop request; saving")
                self.state.stopped = True
                self.save_checkpoint()
                return
            self.state.step += 1
            step = self.state.step
            progress.update(1)
            window.images += result.images
            stop = self.stop.agreed()
            if measure:
                logs = self._read_logs(result, window)
                self.accelerator.log(logs, step=step)
                progress.set_postfix(loss=f"{logs['loss/total']:.4f}", lr=f"{result.lr:.2e}")
            if loop.image_every and step % loop.image_every == 0:
                log_image_grid(self.accelerator, self.logging_dir, "train", result.outputs, step)
            if self.val_batches is not None and loop.eval_every and step % loop.eval_every == 0:
                self.accelerator.log(self.evaluate(), step=step)
            self.state.stopped = stop and step < loop.max_steps
            if step % loop.checkpoint_every == 0 or step == loop.max_steps or stop:
                self.save_checkpoint()
            if stop:
                logger.info(f"stopped at step {step}; re-run to resume", main_process_only=True)
                return
            if measure:  # the next window starts after this step's periodic work
                window = _Window()

    def _train_step(self, iterator: Iterator[dict[str, Any]], measure: bool) -> _Step:
        """Accumulate gradients over the micro batches, then clip and step (or skip).

        Nothing is read back from the device; with `measure` the scalar losses and the PSNR are
        also summed (as device tensors) for the log.
        """
        acc = self.accelerator
        lr = self.scheduler.get_last_lr()[0]
        nonfinite = torch.zeros((), device=acc.device)
        psnr = torch.zeros(2, device=acc.device)
        losses: dict[str, Tensor] = {}
        images = 0.0
        outputs: dict[str, Tensor] = {}
        for index in range(self.accumulation):
            batch = _next_batch(iterator, acc.device)
            sync = index == self.accumulation - 1
            with contextlib.nullcontext() if sync else acc.no_sync(self.model):
                with acc.autocast():
                    outputs = self.compute_loss(self.model, batch)
                total = check_outputs(outputs)
                acc.backward(total / self.accumulation)
            nonfinite += ~torch.isfinite(total.detach())
            images += count_images(outputs, batch)
            if measure:
                for key, value in scalars(outputs).items():
                    losses[key] = losses.get(key, 0.0) + value / self.accumulation
                psnr += psnr_sum(outputs)
        grad_norm = self.update.step(nonfinite)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return _Step(images, lr, outputs, grad_norm, losses, psnr)

    def _read_logs(self, step: _Step, window: _Window) -> dict[str, float]:
        """The logged step's values over all processes: the one device read of a log window."""
        acc = self.accelerator
        keys = sorted(step.losses)
        local = [*(step.losses[k] for k in keys), *step.psnr, step.grad_norm.float()]
        packed = torch.stack([*local, torch.full((), window.images, device=acc.device)])
        reduced = acc.reduce(packed, reduction="sum").tolist()
        seconds = time.perf_counter() - window.started
        world = acc.num_processes
        logs = {f"loss/{k}": reduced[i] / world for i, k in enumerate(keys)}
        psnr_total, psnr_count, grad_norm, images_total = reduced[len(keys) :]
        logs.update(lr=step.lr, grad_norm=grad_norm / world)
        logs["images_per_s"] = images_total / max(seconds, 1e-9)
        if psnr_count > 0:
            logs["psnr"] = psnr_total / psnr_count
        self._count_skips()
        logs["skipped_steps"] = float(self.state.skipped_steps)
        return logs

    def _count_skips(self) -> None:
        """Add the device's skip counts to the state and say which steps were skipped."""
        counts = self.update.take_counts()
        if sum(counts):
            self.state.skipped_steps += sum(counts)
            reasons = ", ".join(
                f"{reason}: {n}" for reason, n in zip(self.update.reasons, counts, strict=True) if n
            )
            logger.warning(
                f"skipped {sum(counts)} of steps {self._counted_to + 1}-{self.state.step} "
                f"({reasons})",
                main_process_only=True,
            )
        self._counted_to = self.state.step

    # ------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Mean scalar losses and PSNR over `val_batches` on all processes (EMA weights if any)."""
        if self.val_batches is None:
            raise ValueError("no val_batches were given to the Trainer; nothing to evaluate")
        with ema_weights(self.ema, self.unwrapped_model):
            metrics, first = evaluate_batches(
                self.accelerator, self.model, self.compute_loss, self.val_batches
            )
        if self.loop_config.image_every:
            log_image_grid(self.accelerator, self.logging_dir, "val", first, self.state.step)
        return metrics

    # ----------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """Write `checkpoint-<step>` atomically (temporary folder, then rename) and rotate."""
        self._count_skips()
        return save_atomically(
            self.accelerator,
            self.checkpoint_dir,
            self.state.step,
            self._write_checkpoint,
            self.loop_config.checkpoints_total_limit,
        )

    def _write_checkpoint(self, folder: Path) -> None:
        acc = self.accelerator
        acc.save_state(str(folder))
        stream_state = json.dumps(self.train_stream.state_dict())
        (folder / f"stream_state_{acc.process_index}.json").write_text(stream_state)
        if acc.is_main_process:
            if self.ema is not None:
                torch.save(self.ema.state_dict(), folder / "ema.pt")
            state = {
                "step": self.state.step,
                "skipped_steps": self.state.skipped_steps,
                "stopped": self.state.stopped,
                "world_size": acc.num_processes,
            }
            (folder / "trainer_state.json").write_text(json.dumps(state, indent=1))

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
        self._counted_to = self.state.step
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
        notice(f"resumed from {latest.name} (step {self.state.step})")
        return latest

    # ---------------------------------------------------------------- export
    def save_model(self, path: str | Path) -> None:
        """`save_pretrained` of the trained model (EMA weights when EMA is on), main process.

        The folder is written atomically (:func:`lagernvs.io.atomic_folder`): `path` holds the
        previous model or the complete new one. Under FSDP the full state dict is gathered and
        saved through a fresh copy of the model built from its config (FSDP keeps only shards in
        the wrapped module).
        """
        model = self.unwrapped_model
        if not hasattr(model, "save_pretrained"):
            raise ValueError(f"{type(model).__name__} has no save_pretrained(); save it yourself")
        if self.accelerator.distributed_type == DistributedType.FSDP:
            state = self.accelerator.get_state_dict(self.model)
            if self.accelerator.is_main_process:
                full = type(model).from_config(model.config)
                full.load_state_dict(state)
                with atomic_folder(path) as folder:
                    full.save_pretrained(str(folder))
            self.accelerator.wait_for_everyone()
            return
        with ema_weights(self.ema, model):
            if self.accelerator.is_main_process:
                with atomic_folder(path) as folder:
                    model.save_pretrained(str(folder))
        self.accelerator.wait_for_everyone()

    def close(self) -> None:
        """Finish the trackers and the process group (call once, after saving)."""
        self.accelerator.end_training()


def _next_batch(iterator: Iterator[dict[str, Any]], device: torch.device) -> dict[str, Any]:
    try:
        return send_to_device(next(iterator), device, non_blocking=True)
    except StopIteration:
        raise ValueError(
            "the training stream ended; use an endless (resampled) stream or ResumableBatches"
        ) from None
