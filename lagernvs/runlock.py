"""One process per run folder: `train`, `train-denoiser` and `eval` lock their output folder.

The lock is ``DIR/.lagernvs.lock``, held with ``fcntl.flock`` for as long as the run lasts; the
file names the holder (pid, host, command, start time). The kernel drops the lock when its
process ends, however it ends, so a lock left by a dead process is taken over with a one-line
note; a second live process is refused at once with a :class:`RunLockedError` naming the holder.

With several processes of one launch (``torchrun`` / ``accelerate launch``) only global rank 0
(the ``RANK`` the launchers set) takes the lock: the ranks of one run share the folder, and
when rank 0 is refused the launcher stops the others. Platforms without ``fcntl`` (Windows) and
filesystems without locks run unlocked, said in one line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError", "launch_rank", "run_lock"]

LOCK_NAME = ".lagernvs.lock"
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class RunLockedError(RuntimeError):
    """Another live process holds the run folder."""


def launch_rank() -> int:
    """This process's global rank in a torchrun / accelerate launch (0 when not launched)."""
    return int(os.environ.get("RANK", "0"))


def _read_holder(descriptor: int) -> dict[str, Any]:
    os.lseek(descriptor, 0, os.SEEK_SET)
    text = os.read(descriptor, 4096).decode("utf-8", errors="replace")
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if "pid" not in holder:
        return "another process"
    since = f", since {holder['started']}" if "started" in holder else ""
    command = holder.get("command", "a process")
    return f"{command} (pid {holder['pid']} on {holder.get('host', '?')}{since})"


class RunLock:
    """``with RunLock(folder, "lagernvs train"):`` hold the run folder (created if missing)."""

    def __init__(self, folder: str | os.PathLike, command: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunLockedError` (ValueError: folder not writable)."""
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"output folder {self.folder} is a file; choose a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise ValueError(
                f"cannot write to output folder {self.folder} ({reason}); choose a folder you "
                "can write to"
            ) from None
        if fcntl is None:
            os.close(descriptor)
            print(
                f"note: {self.folder} is not locked (no file locks on this platform)",
                file=sys.stderr,
            )
            return
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            if error.errno in _NO_LOCKS:
                print(f"note: {self.folder} is not locked (its filesystem has no file locks)",
                      file=sys.stderr)  # fmt: skip
                return
            raise RunLockedError(
                f"output folder {self.folder} is in use by {_describe(holder)}; wait for it to "
                "finish, or choose another output folder"
            ) from None
        previous = _read_holder(descriptor)
        if previous:
            print(
                f"note: taking over the lock of {self.folder} left by {_describe(previous)}, "
                "which is no longer running",
                file=sys.stderr,
            )
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(holder).encode("utf-8"), 0)
        self._descriptor = descriptor

    def release(self) -> None:
        """Clear the holder and drop the lock (nothing to do when not held)."""
        if self._descriptor is None:
            return
        descriptor, self._descriptor = self._descriptor, None
        try:
            os.ftruncate(descriptor, 0)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def run_lock(
    folder: str | os.PathLike, command: str
) -> RunLock | contextlib.AbstractContextManager[None]:
    """The lock of a run folder on launch rank 0; a no-op on the other ranks of the launch."""
    return RunLock(folder, command) if launch_rank() == 0 else contextlib.nullcontext()
