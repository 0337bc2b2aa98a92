"""Timings of a client's live preview, shown in its page and read by the benchmark."""

from __future__ import annotations

import collections

__all__ = ["FrameStats"]


class FrameStats:
    """Timings of the live preview: render time, latency from camera message to frame sent, FPS
    over the last second (the latencies of the last ``history`` frames are kept)."""

    def __init__(self, history: int = 1000) -> None:
        self.render_ms = 0.0
        self.latency_ms = 0.0
        self.size = (0, 0)
        self.frames = 0
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=history)
        self.render_times_ms: collections.deque[float] = collections.deque(maxlen=history)
        self._sent: collections.deque[float] = collections.deque()

    def record(self, render_s: float, latency_s: float, now: float, size: tuple[int, int]) -> None:
        """One frame sent at ``now`` (perf_counter), of ``size`` (H, W)."""
        self.render_ms, self.latency_ms = 1000.0 * render_s, 1000.0 * latency_s
        self.size = size
        self.latencies_ms.append(self.latency_ms)
        self.render_times_ms.append(self.render_ms)
        self.frames += 1
        self._sent.append(now)
        while self._sent and now - self._sent[0] > 1.0:
            self._sent.popleft()

    @property
    def fps(self) -> float:
        """Frames sent per second over the last second."""
        if len(self._sent) < 2:
            return 0.0
        return (len(self._sent) - 1) / max(self._sent[-1] - self._sent[0], 1e-9)

    def summary(self) -> str:
        return (
            f"render {self.render_ms:.0f} ms · latency {self.latency_ms:.0f} ms · "
            f"{self.fps:.1f} FPS · {self.size[1]}×{self.size[0]} px"
        )
