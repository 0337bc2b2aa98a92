"""The shared training loop on a toy image-to-image model (CPU, seconds).

Run as a script (`python tests/test_loop.py OUT ...`, optionally under torchrun) it trains the
same toy in a child process, which the SIGTERM and two-process tests use.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lagernvs.data.batch_streams import ResumableBatches
from lagernvs.training.checkpoints import list_checkpoints
from lagernvs.training.config import LoopConfig, OptimConfig
from lagernvs.training.optim import parameter_groups
from lagernvs.training.tracking import read_metrics
from lagernvs.training.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[1]


class ToyModel(nn.Module):
    """1x1-conv image model with a norm, dropout (RNG matters) and a learned token."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, 8, 1)
        self.norm = nn.GroupNorm(1, 8)
        self.scene_token = nn.Parameter(torch.zeros(8))
        self.dropout = nn.Dropout(0.1)
        self.conv_out = nn.Conv2d(8, 3, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = self.norm(self.conv_in(images)) + self.scene_token[:, None, None]
        return torch.sigmoid(self.conv_out(self.dropout(F.gelu(hidden))))


class ToyBatches:
    """Deterministic batches (seeded per batch index): learn a channel permutation."""

    def __init__(self, seed: int, micro_batch: int, num_batches: int = 64) -> None:
        self.seed, self.micro_batch, self.num_batches = seed, micro_batch, num_batches

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for index in range(self.num_batches):
            generator = torch.Generator().manual_seed(self.seed * 100_000 + index)
            images = torch.rand(self.micro_batch, 3, 8, 8, generator=generator)
            ids = self.seed * 100_000 + index * self.micro_batch + torch.arange(self.micro_batch)
            yield {"images": images, "target": images.flip(1), "id": ids}


class ToyLoss:
    """MSE with hooks: stop after a step, poison a step (NaN or huge loss), record ids seen."""

    def __init__(
        self,
        stop_after: int | None = None,
        poison_step: int | None = None,
        poison: str = "nan",
        sleep: float = 0.0,
    ) -> None:
        self.stop_after, self.poison_step, self.poison = stop_after, poison_step, poison
        self.sleep = sleep
        self.trainer: Trainer | None = None
        self.seen: list[int] = []
        self.before_poison: dict[str, dict] | None = None

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        step = self.trainer.state.step + 1
        if model.training:
            self.seen.extend(batch["id"].tolist())
        prediction = model(batch["images"])
        mse = F.mse_loss(prediction, batch["target"])
        total = mse
        if model.training and step == self.poison_step:
            if self.before_poison is None:
                self.before_poison = _snapshot(self.trainer)
            total = mse * float("nan") if self.poison == "nan" else mse * 1e6
        if model.training and step == self.stop_after:
            self.trainer.request_stop()
        time.sleep(self.sleep)
        return {
            "total": total,
            "mse": mse,
            "prediction": prediction[:, None],
            "target": batch["target"][:, None],
        }


def _snapshot(trainer: Trainer) -> dict[str, dict]:
    model = trainer.unwrapped_model
    optimizer_state = trainer.optimizer.state_dict()["state"]
    return {
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "moments": {
            i: {k: v.clone() for k, v in s.items() if torch.is_tensor(v)}
            for i, s in optimizer_state.items()
        },
        "ema": [p.clone() for p in trainer.ema.shadow_params] if trainer.ema else [],
    }


def toy_configs(
    ema_decay: float | None = 0.9, **loop_overrides: object
) -> tuple[OptimConfig, LoopConfig]:
    optim = OptimConfig(lr=3e-2, warmup_steps=2, grad_clip=1.0, ema_decay=ema_decay)
    values = dict(
        max_steps=6,
        global_batch_size=8,
        micro_batch_size=4,
        mixed_precision="no",
        gradient_checkpointing=False,
        checkpoint_every=100,
        log_every=1,
        eval_every=3,
        image_every=3,
        log_with="none",
    )
    values.update(loop_overrides)
    return optim, LoopConfig(**values)


def run_toy(
    output_dir: Path,
    loss: ToyLoss | None = None,
    init_seed: int = 0,
    ema_decay: float | None = 0.9,
    **loop_overrides: object,
) -> Trainer:
    """Build (or resume) and run one toy training; returns the trainer."""
    optim, loop = toy_configs(ema_decay, **loop_overrides)
    torch.manual_seed(init_seed)
    model = ToyModel()
    rank = int(os.environ.get("RANK", "0"))
    stream = ResumableBatches(ToyBatches(seed=1 + rank, micro_batch=loop.micro_batch_size))
    val = list(ToyBatches(seed=999, micro_batch=4, num_batches=2))
    loss = loss or ToyLoss()
    trainer = Trainer(model, loss, stream, optim, loop, output_dir, val_batches=val)
    loss.trainer = trainer
    torch.manual_seed(1234)  # the data-independent RNG stream (dropout) of an uninterrupted run
    trainer.train()
    return trainer


@pytest.fixture
def deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-7, msg=f"{name} differs")


def test_parameter_groups_exempt_norms_biases_and_tokens():
    model = ToyModel()
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = parameter_groups(model, OptimConfig(weight_decay=0.05))
    assert sorted(names[id(p)] for p in decay["params"]) == ["conv_in.weight", "conv_out.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "conv_in.bias",
        "conv_out.bias",
        "norm.bias",
        "norm.weight",
        "scene_token",
    ]
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_resume_after_stop_matches_uninterrupted_run(tmp_path, deterministic):
    reference = run_toy(tmp_path / "straight")
    assert reference.state.step == 6 and not reference.state.stopped

    stopped = run_toy(tmp_path / "resumed", loss=ToyLoss(stop_after=3))
    assert stopped.state.stopped and stopped.state.step == 3
    assert [p.name for p in list_checkpoints(tmp_path / "resumed/checkpoints")] == ["checkpoint-3"]

    # A different initialisation proves the weights come from the checkpoint.
    resumed = run_toy(tmp_path / "resumed", init_seed=7)
    assert resumed.state.step == 6 and not resumed.state.stopped
    _assert_same_weights(reference.unwrapped_model, resumed.unwrapped_model)
    for x, y in zip(reference.ema.shadow_params, resumed.ema.shadow_params, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-7)
    assert (
        reference.scheduler.state_dict()["last_epoch"]
        == resumed.scheduler.state_dict()["last_epoch"]
    )
    assert reference.train_stream.state_dict() == resumed.train_stream.state_dict()
    initial = ToyModel().parameters()
    trained = reference.unwrapped_model.parameters()
    assert any(not torch.equal(a, b) for a, b in zip(initial, trained, strict=True))

    # Re-running a finished run changes nothing and keeps the final checkpoint.
    again = run_toy(tmp_path / "resumed")
    assert again.state.step == 6
    _assert_same_weights(reference.unwrapped_model, again.unwrapped_model)


@pytest.mark.parametrize("poison", ["nan", "explode"])
def test_bad_step_is_skipped_and_counted(tmp_path, poison):
    loss = ToyLoss(poison_step=3, poison=poison)
    trainer = run_toy(tmp_path, loss=loss, max_steps=3)
    assert trainer.state.step == 3 and trainer.state.skipped_steps == 1
    after = _snapshot(trainer)
    before = loss.before_poison
    for name, value in before["weights"].items():
        assert torch.equal(value, after["weights"][name]), name
    for index, moments in before["moments"].items():
        for key, value in moments.items():
            assert torch.equal(value, after["moments"][index][key]), (index, key)
    for x, y in zip(before["ema"], after["ema"], strict=True):
        assert torch.equal(x, y)
    records = {r["step"]: r for r in read_metrics(tmp_path / "logs") if "skipped_steps" in r}
    assert [records[s]["skipped_steps"] for s in (1, 2, 3)] == [0.0, 0.0, 1.0]
    assert records[3]["lr"] > 0 and "psnr" in records[3] and "images_per_s" in records[3]


def test_rotation_survives_resume_and_crash_during_save(tmp_path, monkeypatch):
    run_toy(tmp_path, loss=ToyLoss(stop_after=3), checkpoint_every=1, checkpoints_total_limit=2)
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["checkpoint-2", "checkpoint-3"]

    # The process dies inside save_state at step 4: checkpoint-3 stays the latest, intact.
    original = Trainer.save_checkpoint

    def crash_at_four(self: Trainer) -> Path:
        if self.state.step == 4:
            (self.checkpoint_dir / ".tmp-checkpoint-4").mkdir()
            (self.checkpoint_dir / ".tmp-checkpoint-4" / "model.safetensors").write_text("torn")
            raise RuntimeError("simulated crash while saving")
        return original(self)

    monkeypatch.setattr(Trainer, "save_checkpoint", crash_at_four)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_toy(tmp_path, checkpoint_every=1, checkpoints_total_limit=2)
    assert list_checkpoints(tmp_path / "checkpoints")[-1].name == "checkpoint-3"
    monkeypatch.setattr(Trainer, "save_checkpoint", original)

    trainer = run_toy(tmp_path, checkpoint_every=1, checkpoints_total_limit=2)
    assert trainer.state.step == 6
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["checkpoint-5", "checkpoint-6"]


def test_eval_and_image_grid_are_written(tmp_path):
    run_toy(tmp_path, max_steps=3)
    records = read_metrics(tmp_path / "logs")
    val = [r for r in records if "val/psnr" in r]
    assert [r["step"] for r in val] == [3] and "val/mse" in val[0]
    assert (tmp_path / "logs/images/train-00000003.png").is_file()
    assert (tmp_path / "logs/images/val-00000003.png").is_file()


def test_unusable_settings_fail_at_construction(tmp_path):
    optim, loop = toy_configs(gradient_checkpointing=True)
    stream = ResumableBatches(ToyBatches(seed=1, micro_batch=4))
    with pytest.raises(ValueError, match="loop.gradient_checkpointing is true but ToyModel"):
        Trainer(ToyModel(), ToyLoss(), stream, optim, loop, tmp_path)
    optim, loop = toy_configs()
    with pytest.raises(ValueError, match="wrap a deterministic iterable in ResumableBatches"):
        Trainer(ToyModel(), ToyLoss(), ToyBatches(seed=1, micro_batch=4), optim, loop, tmp_path)


HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


class QuietLoss:
    """MSE of the toy model that reads nothing back itself (for counting the loop's reads)."""

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        prediction = model(batch["images"])
        mse = F.mse_loss(prediction, batch["target"])
        return {"total": mse, "mse": mse, "prediction": prediction, "target": batch["target"]}


def test_only_logged_steps_read_values_back_from_the_device(tmp_path, monkeypatch):
    """A read of a tensor value (a device sync on an accelerator) happens on logged steps only."""
    optim, loop = toy_configs(max_steps=8, log_every=4, eval_every=0, image_every=0)
    stream = ResumableBatches(ToyBatches(seed=1, micro_batch=4))
    trainer = Trainer(ToyModel(), QuietLoss(), stream, optim, loop, tmp_path)
    reads: list[tuple[int, str]] = []

    def recording(name: str):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            reads.append((trainer.state.step, name))
            return original(self, *args, **kwargs)

        return read

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, recording(name))
    trainer.train()
    monkeypatch.undo()
    assert trainer.state.step == 8 and trainer.state.skipped_steps == 0
    steps = {step for step, _ in reads}
    assert 4 in steps, reads  # the log of step 4 is read: the recording works
    assert steps <= {0, 4, 8}, sorted(reads)
    assert [r["step"] for r in read_metrics(tmp_path / "logs")] == [4, 8]


def test_without_tensorboard_the_loop_says_so_once_and_logs_jsonl(tmp_path, monkeypatch, capsys):
    from lagernvs.training import tracking

    monkeypatch.setattr(tracking, "is_tensorboard_available", lambda: False)
    run_toy(tmp_path, max_steps=2, log_with="auto")
    lines = [line for line in capsys.readouterr().out.splitlines() if "TensorBoard" in line]
    assert len(lines) == 1 and "TensorBoard logging is off" in lines[0], lines
    assert [r["step"] for r in read_metrics(tmp_path / "logs") if "loss/total" in r] == [1, 2]
    with pytest.raises(ValueError, match="'loop.log_with': tensorboard is not installed"):
        run_toy(tmp_path / "required", log_with="tensorboard")


def _child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def test_sigterm_saves_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, str(Path(__file__)), str(out), "--max-steps", "12", "--sleep", "0.1"]
    child = subprocess.Popen(command, env=_child_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(r["step"] >= 2 for r in read_metrics(out / "logs")):
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.1)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 143, stderr  # 128 + SIGTERM: `train && eval` stops here
    stopped_at = int(list_checkpoints(out / "checkpoints")[-1].name.split("-")[1])
    assert 2 <= stopped_at < 12
    assert not (out / "final_rank0.pt").exists()

    result = subprocess.run(command, env=_child_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    resumed = torch.load(out / "final_rank0.pt", weights_only=True)

    reference = run_toy(tmp_path / "straight", max_steps=12, ema_decay=None)
    for name, value in reference.unwrapped_model.state_dict().items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)


def test_two_cpu_processes_train_one_model(tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(Path(__file__)), str(out), "--max-steps", "3", "--global-batch-size", "16",
    ]  # fmt: skip
    result = subprocess.run(command, env=_child_env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    weights = [torch.load(out / f"final_rank{r}.pt", weights_only=True) for r in (0, 1)]
    seen = [set(json.loads((out / f"seen_rank{r}.json").read_text())) for r in (0, 1)]
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    # global 16 = micro 4 x 2 processes x 2 accumulated micro batches (no_sync path).
    state = json.loads((out / "checkpoints/checkpoint-3/trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 3
    assert all(len(s) == 3 * 2 * 4 for s in seen)


def _main() -> None:
    parser = argparse.ArgumentParser(description="toy training run used by tests/test_loop.py")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--global-batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    loss = ToyLoss(sleep=args.sleep)
    # No EMA here: importing diffusers.training_utils costs seconds per child process.
    trainer = run_toy(
        args.output_dir,
        loss=loss,
        ema_decay=None,
        max_steps=args.max_steps,
        global_batch_size=args.global_batch_size,
    )
    rank = trainer.accelerator.process_index
    (args.output_dir / f"seen_rank{rank}.json").write_text(json.dumps(sorted(set(loss.seen))))
    if not trainer.state.stopped:
        weights = {k: v.detach().cpu() for k, v in trainer.unwrapped_model.state_dict().items()}
        torch.save(weights, args.output_dir / f"final_rank{rank}.pt")
    trainer.close()
    sys.exit(trainer.state.exit_code)


if __name__ == "__main__":
    _main()
