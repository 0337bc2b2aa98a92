"""Stopping a run cleanly: SIGTERM or Ctrl-C ask the trainer to finish its step, save and return.

A stop request is a host flag, set by a signal handler or by code (`Trainer.request_stop`). With
several processes all of them must stop after the same step, so :meth:`StopRequest.agreed`
combines the flags with an all-reduce over a CPU (gloo) process group once per step: a host-side
collective that never waits for the accelerator. The signal that asked is shared the same way
(:attr:`StopRequest.signal`: every process exits 128 + signal, 130 for Ctrl-C, 143 for SIGTERM).
A second Ctrl-C aborts at once, without saving.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["StopRequest"]


class StopRequest:
    """The stop flag of one run on `num_processes` processes (create it on all of them)."""

    def __init__(self, num_processes: int) -> None:
        self.requested = False
        self.signal: int | None = None  # the signal that asked to stop (None: code or nobody)
        self._distributed = num_processes > 1
        self._group = None
        if self._distributed and dist.get_backend() != "gloo":
            self._group = dist.new_group(backend="gloo")

    def request(self) -> None:
        self.requested = True

    def reset(self) -> None:
        self.requested, self.signal = False, None

    def agreed(self) -> bool:
        """Whether any process asked to stop (a collective: every process calls it each step).

        Also makes :attr:`signal` the (highest) signal any process received.
        """
        if not self._distributed:
            return self.requested
        # 0: go on; 0.5: asked by code; a signal number (>= 1): asked by that signal.
        code = float(self.signal) if self.signal else 0.5 if self.requested else 0.0
        flag = torch.tensor([code])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        if flag.item() >= 1:
            self.signal = int(flag.item())
        return flag.item() > 0

    @contextlib.contextmanager
    def catching_signals(self) -> Iterator[None]:
        """Turn SIGTERM and SIGINT into stop requests while inside (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt  # a second Ctrl-C aborts without saving
        self.requested = True
        self.signal = signum
