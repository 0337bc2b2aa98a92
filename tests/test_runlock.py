"""One process per run folder (`lagernvs.runlock`): a second `lagernvs train` / `eval` on a
locked folder is refused at once naming the holder's pid, a lock left by a killed process is
taken over, and the lock is released when a run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lagernvs import LagerNVSModel, LagerNVSPipeline
from lagernvs.cli import main
from lagernvs.runlock import LOCK_NAME, RunLock, RunLockedError, run_lock

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = REPO_ROOT / "configs" / "train" / "tiny.yaml"
TINY_EVAL = REPO_ROOT / "configs" / "eval" / "tiny_synthetic.yaml"
HOLD = (
    "import sys, time\nfrom lagernvs.runlock import RunLock\n"
    "with RunLock(sys.argv[1], 'lagernvs train'):\n"
    "    print('held', flush=True)\n    time.sleep(600)\n"
)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def _holder(folder: Path) -> dict:
    text = (folder / LOCK_NAME).read_text()
    return json.loads(text) if text else {}


def test_a_second_lagernvs_train_is_refused_at_once_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    with RunLock(run, "lagernvs train"):
        started = time.monotonic()
        result = subprocess.run(
            [str(Path(sys.executable).parent / "lagernvs"), "train", "--config", str(TINY_TRAIN),
             "--output-dir", str(run)],
            env=_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("lagernvs train: error: output folder")
    assert f"in use by lagernvs train (pid {os.getpid()} on" in lines[0]
    assert elapsed < 60 and not (run / "synthetic").exists()  # before any data generation
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]


def test_eval_on_a_locked_folder_is_refused_in_one_line(tmp_path, capsys):
    with RunLock(tmp_path, "lagernvs eval"):
        code = main(["eval", "--config", str(TINY_EVAL), "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "Traceback" not in err, err
    assert err.startswith("lagernvs eval: error:") and f"(pid {os.getpid()} on" in err


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], env=_env(), stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLockedError, match=f"pid {holder.pid} on"), RunLock(tmp_path, "second"):
        pass
    holder.send_signal(signal.SIGKILL)  # no cleanup runs: its record stays in the lock file
    holder.wait(timeout=30)
    assert _holder(tmp_path)["pid"] == holder.pid
    with RunLock(tmp_path, "lagernvs eval"):
        assert _holder(tmp_path)["pid"] == os.getpid()
        note = capsys.readouterr().err
        assert f"taking over the lock of {tmp_path}" in note and f"pid {holder.pid}" in note


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pipeline")
    model = LagerNVSModel.from_preset("tiny", image_size=(32, 32), encoder_image_size=56)
    LagerNVSPipeline(model=model.eval()).save_pretrained(folder)
    return folder


def test_the_lock_is_released_when_the_run_ends(tmp_path, tiny_pipeline, capsys):
    """A whole (tiny) `lagernvs eval`: afterwards the folder is free, its holder record gone."""
    code = main(
        ["eval", "--config", str(TINY_EVAL), "--output-dir", str(tmp_path / "eval"),
         "--set", f"model.pretrained={tiny_pipeline}",
         "--set", "dataset.synthetic.num_scenes=1", "--set", "num_grids=0"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err[-2000:]
    assert (tmp_path / "eval" / "summary.json").is_file() and _holder(tmp_path / "eval") == {}
    with RunLock(tmp_path / "eval", "again"):
        assert _holder(tmp_path / "eval")["command"] == "again"
    with pytest.raises(RunLockedError), RunLock(tmp_path, "first"), RunLock(tmp_path, "second"):
        pass
    with RunLock(tmp_path, "after an error"):  # released although the block raised
        pass


def test_only_rank_0_of_a_launch_takes_the_lock(tmp_path, monkeypatch):
    with RunLock(tmp_path, "rank 0 of another launch"):
        monkeypatch.setenv("RANK", "1")
        with run_lock(tmp_path, "rank 1"):  # shares the folder with its own rank 0
            pass
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunLockedError), run_lock(tmp_path, "rank 0"):
            pass
