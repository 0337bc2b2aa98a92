"""What every refusal in the bad-input suite must be, and `run_cli`, which runs `lagernvs`
in-process (as faithful as a subprocess for these checks, and ~3 s faster per case)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lagernvs.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN = REPO_ROOT / "configs" / "train" / "tiny.yaml"
TINY_EVAL = REPO_ROOT / "configs" / "eval" / "tiny_synthetic.yaml"


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


def fill(argv: list[str], inputs: dict, tmp: Path) -> list[str]:
    """``argv`` with ``{name}`` replaced by the input of that name and ``{tmp}`` by ``tmp``."""
    names = {"tmp": str(tmp), **{k: str(v) for k, v in inputs.items()}}
    return [re.sub(r"\{([^{}]+)\}", lambda m: names.get(m.group(1), m.group(0)), a) for a in argv]
