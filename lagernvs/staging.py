"""The output folder of a command that writes several results (render: frames, video, cameras;
bench, convert).

Results are written into a hidden staging folder inside the output folder and moved onto their
final names only when every one of them is complete (:meth:`OutputFolder.commit`, with SIGINT
held back for the few renames), so an error or an interrupt never leaves a half-written file, or
a mix of two runs, under a final name. The folder is checked before any expensive work: it must
be creatable and writable, and empty unless ``overwrite`` (which replaces the command's own
results and leaves other files alone).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["STAGING_PREFIX", "OutputFolder", "pid_alive"]

STAGING_PREFIX = ".partial-"
"""Name prefix of staging folders (followed by the writing process's id)."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_staging(entry: Path) -> bool:
    """A staging folder left by a process that no longer runs (killed without cleanup)."""
    pid = entry.name[len(STAGING_PREFIX) :]
    return entry.name.startswith(STAGING_PREFIX) and pid.isdigit() and not pid_alive(int(pid))


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold SIGINT back while the block runs (it is delivered right after)."""
    blockable = hasattr(signal, "pthread_sigmask")
    if blockable:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if blockable:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class OutputFolder:
    """``with OutputFolder(path, results, overwrite) as out:`` write into ``out.staging``, then
    ``out.commit()``; leaving the block without committing discards everything written.

    Args:
        path: the output folder (created with its parents when missing).
        results: the names the command writes (files or folders); ``commit`` replaces exactly
            these, and removes those of an earlier run that this run did not write again.
            None: whatever the command staged (each replaces an earlier result of its name).
        overwrite: accept a non-empty folder.
    """

    def __init__(
        self, path: str | os.PathLike, results: Sequence[str] | None, overwrite: bool
    ) -> None:
        if not os.fspath(path).strip():
            raise ValueError("the output folder is an empty string; give a folder name")
        self.path = Path(path)
        self.results = None if results is None else tuple(results)
        self.overwrite = overwrite
        self.staging = self.path / f"{STAGING_PREFIX}{os.getpid()}"
        self._created = False

    def __enter__(self) -> OutputFolder:
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"output folder {self.path} is a file; choose a folder")
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for entry in self.path.iterdir():
                if _stale_staging(entry):
                    shutil.rmtree(entry, ignore_errors=True)
            self._check_empty()
            self.staging.mkdir()
        except OSError as error:
            self._discard()
            reason = error.strerror or type(error).__name__
            raise ValueError(
                f"cannot write to output folder {self.path} ({reason}); choose a folder you can "
                "write to"
            ) from None
        except BaseException:
            self._discard()
            raise
        return self

    @staticmethod
    def check_writable(path: str | os.PathLike) -> None:
        """Refuse, before any work, a folder that is a file or cannot be created or written
        (for commands that write their results themselves)."""
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"output folder {folder} is a file; choose a folder")
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            reason = "Not a directory" if not existing.is_dir() else "Permission denied"
            raise ValueError(
                f"cannot write to output folder {folder} ({reason}: {existing}); choose a folder "
                "you can write to"
            )

    def _check_empty(self) -> None:
        held = sorted(p.name for p in self.path.iterdir() if not p.name.startswith(STAGING_PREFIX))
        if held and not self.overwrite:
            shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
            raise ValueError(
                f"output folder {self.path} is not empty (it holds {shown}); pass --overwrite to "
                "replace the results of an earlier run, or choose an empty folder"
            )

    def commit(self) -> None:
        """Move the staged results onto their final names (old results of these names go)."""
        staged = sorted(entry.name for entry in self.staging.iterdir())
        with _sigint_held():
            for name in staged if self.results is None else self.results:
                _remove(self.path / name)
                staged = self.staging / name
                if staged.exists():
                    os.replace(staged, self.path / name)
            shutil.rmtree(self.staging, ignore_errors=True)

    def _discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if self._created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only when empty

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            shutil.rmtree(self.staging, ignore_errors=True)
        else:
            self._discard()
