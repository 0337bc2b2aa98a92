"""The per-client render loop: one worker thread, the latest view, a short queue of tasks.

Browsers send a camera message for every mouse move, far faster than a model renders on a CPU.
Each client therefore owns a :class:`RenderWorker`: camera moves go into a one-element slot that
keeps only the newest (a stale pose is dropped, never rendered), button presses ("sample this
view", "play path", "render video") into a short bounded queue. The worker thread takes tasks
first, then the newest view; so a client never has more than one render running, one view and
``max_tasks`` tasks waiting, and the server's UI thread never renders.

A handler that raises is reported through ``on_error`` and the loop carries on with the next
request; closing the worker wakes it, drops what is waiting and ends the thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Request", "RequestQueue", "RenderWorker"]

LOGGER = logging.getLogger("lagernvs.viewer")


@dataclass(frozen=True)
class Request:
    """One unit of work: ``kind`` names the handler, ``payload`` its input; ``created`` is the
    ``time.perf_counter()`` of its arrival (the start of the latency a client sees)."""

    kind: str
    payload: Any = None
    created: float = field(default_factory=time.perf_counter)


class RequestQueue:
    """The newest view request (older ones are dropped) plus a bounded FIFO of tasks."""

    def __init__(self, max_tasks: int = 4) -> None:
        self._condition = threading.Condition()
        self._view: Request | None = None
        self._tasks: collections.deque[Request] = collections.deque()
        self._max_tasks = max_tasks
        self._closed = False
        self.dropped_views = 0
        self.arrivals = 0

    def put_view(self, request: Request) -> None:
        """Make ``request`` the view to render next, dropping a view still waiting."""
        with self._condition:
            if self._closed:
                return
            if self._view is not None:
                self.dropped_views += 1
            self._view = request
            self.arrivals += 1
            self._condition.notify()

    def put_task(self, request: Request) -> bool:
        """Queue a task; False (nothing queued) when ``max_tasks`` are already waiting."""
        with self._condition:
            if self._closed or len(self._tasks) >= self._max_tasks:
                return False
            self._tasks.append(request)
            self.arrivals += 1
            self._condition.notify()
            return True

    def take(self) -> Request | None:
        """The next request (the oldest task, else the newest view), waiting for one; None once
        the queue is closed."""
        with self._condition:
            while not self._closed and self._view is None and not self._tasks:
                self._condition.wait()
            if self._closed:
                return None
            if self._tasks:
                return self._tasks.popleft()
            request, self._view = self._view, None
            return request

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Drop everything waiting and wake the worker so it ends."""
        with self._condition:
            self._closed = True
            self._view = None
            self._tasks.clear()
            self._condition.notify_all()


class RenderWorker:
    """A daemon thread that runs ``handle(request)`` for each request of its queue.

    Args:
        handle: does the work of one request (runs on the worker thread).
        on_error: called with the request and the exception when ``handle`` raises; the loop
            continues with the next request either way.
        name: thread name (for logs).
        max_tasks: bound of the task queue.
    """

    def __init__(
        self,
        handle: Callable[[Request], None],
        on_error: Callable[[Request, Exception], None],
        name: str = "lagernvs-viewer-worker",
        max_tasks: int = 4,
    ) -> None:
        self.queue = RequestQueue(max_tasks)
        self._handle = handle
        self._on_error = on_error
        self.handled = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit_view(self, request: Request) -> None:
        self.queue.put_view(request)

    def submit_task(self, request: Request) -> bool:
        return self.queue.put_task(request)

    @property
    def arrivals(self) -> int:
        """How many requests have been submitted so far."""
        return self.queue.arrivals

    def interrupted(self, since: int) -> bool:
        """Whether the worker is closing or a request arrived after ``since`` (an earlier value
        of :attr:`arrivals`): long tasks (path playback) then stop and yield to the user."""
        return self.queue.closed or self.queue.arrivals > since

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop taking requests and wait up to ``timeout`` s for the running one to finish;
        True when the thread has ended."""
        self.queue.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while (request := self.queue.take()) is not None:
            try:
                self._handle(request)
                self.handled += 1
            except Exception as error:  # a failed render must never end the loop
                self.failed += 1
                try:
                    self._on_error(request, error)
                except Exception:
                    LOGGER.exception("reporting a failed %s request failed too", request.kind)
