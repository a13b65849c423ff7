"""Background work: the Celery worker in production, this process's own worker in the embedded default.

`enqueue(task, *args, countdown=0)` is the one way code schedules a Celery task:

- `BACKGROUND_RUNNER=celery` (the default with REDIS_URL): `task.apply_async`; the Celery worker runs it
  and `celery beat` runs the periodic schedule (settings.CELERY_BEAT_SCHEDULE).
- `thread` (the default without a broker, i.e. the embedded default): a worker thread of this process runs
  it on a small pool after `countdown` seconds, and runs the periodic schedule too, so `make run` behaves
  like a production deployment with no second process. It starts on first use (`start()`; the ASGI
  application calls it on its first request) and stops with `stop()`.
- `inline` (the test suite's default): a task without a countdown runs at once in the caller's thread; one
  with a countdown waits until a test calls `run_due()`, so retries and back-off are tested without sleeping.

Tasks schedule their own follow-ups with `enqueue(..., countdown=…)`, never Celery's `self.retry()` (which
would need a broker in the embedded default).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)

POOL_THREADS = 4


def runner() -> str:
    return settings.BACKGROUND_RUNNER


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    fn: Callable[..., Any] = field(compare=False)
    args: tuple = field(compare=False, default=())
    kwargs: dict = field(compare=False, default_factory=dict)
    every: float | None = field(compare=False, default=None)  # periodic: seconds between runs


def _run(job: _Job) -> None:
    close_old_connections()
    try:
        job.fn(*job.args, **job.kwargs)
    except Exception:
        log.exception("background task %s failed", getattr(job.fn, "__name__", job.fn))
    finally:
        close_old_connections()


class Worker:
    """A min-heap of due times served by one scheduler thread and a small pool of runner threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = False

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple = (),
        kwargs: dict | None = None,
        *,
        countdown: float = 0,
        every: float | None = None,
    ) -> None:
        with self._changed:
            heapq.heappush(
                self._heap, _Job(self.clock() + max(0.0, countdown), next(self._seq), fn, args, kwargs or {}, every)
            )
            self._changed.notify()

    def due(self, now: float) -> list[_Job]:
        """Pop the jobs due at `now` (periodic ones are put back for their next run)."""
        out = []
        with self._changed:
            while self._heap and self._heap[0].due <= now:
                job = heapq.heappop(self._heap)
                out.append(job)
                if job.every is not None:
                    heapq.heappush(
                        self._heap, _Job(now + job.every, next(self._seq), job.fn, job.args, job.kwargs, job.every)
                    )
        return out

    def pending(self) -> int:
        with self._changed:
            return sum(1 for job in self._heap if job.every is None)

    # -- the thread runner -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._changed:
            if self.running:
                return
            self._stopping = False
            self._pool = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="tollgate-task")
            self._thread = threading.Thread(target=self._loop, name="tollgate-background", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._changed:
                if self._stopping:
                    return
                wait = self._heap[0].due - self.clock() if self._heap else 1.0
                if wait > 0:
                    self._changed.wait(timeout=min(wait, 1.0))
                    continue
            for job in self.due(self.clock()):
                assert self._pool is not None
                self._pool.submit(_run, job)

    def stop(self, timeout: float = 10.0) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
            thread, pool = self._thread, self._pool
            self._thread = self._pool = None
        if thread is not None:
            thread.join(timeout=timeout)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def clear(self) -> None:
        with self._changed:
            self._heap.clear()


worker = Worker()
_periodic_started = False
_periodic_lock = threading.Lock()


def _task_fn(task) -> Callable[..., Any]:
    return getattr(task, "run", task)  # a Celery task's own function; plain callables run as they are


@functools.cache
def _registry():
    from config.celery import app

    app.loader.import_default_modules()  # every app's tasks module, as the worker loads them
    return app.tasks


def enqueue(task, *args: Any, countdown: float = 0, **kwargs: Any) -> None:
    """Run a Celery task in the background. `task` is the task or its registered name ("billing.tasks.x"): a
    service that schedules work names its task instead of importing the tasks module, which imports it."""
    if isinstance(task, str):
        task = _registry()[task]
    mode = runner()
    if mode == "celery":
        task.apply_async(args=args, kwargs=kwargs, countdown=countdown or None)
    elif mode == "inline" and countdown <= 0:
        _task_fn(task)(*args, **kwargs)
    else:
        worker.submit(_task_fn(task), args, kwargs, countdown=countdown)
        if mode == "thread":
            start()


def _schedule_periodic() -> None:
    """The beat schedule, run by the in-process worker (embedded default)."""
    global _periodic_started
    with _periodic_lock:
        if _periodic_started:
            return
        _periodic_started = True
    tasks = _registry()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        every = float(entry["schedule"])  # type: ignore[arg-type]  # seconds in settings.CELERY_BEAT_SCHEDULE
        worker.submit(_task_fn(tasks[entry["task"]]), countdown=every, every=every)


_server_loop: asyncio.AbstractEventLoop | None = None


def server_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop serving this process's requests (None outside a server, or once it stopped). Work running on
    the worker's threads hands loop-bound sends to it (the in-memory channel layer's queues live there)."""
    loop = _server_loop
    return loop if loop is not None and loop.is_running() else None


def start() -> None:
    """Start this process's worker (and its periodic schedule) when it is the runner; idempotent. Called from the
    server's event loop (lifespan start-up or the first request), which it remembers."""
    global _server_loop
    with contextlib.suppress(RuntimeError):  # not on a loop: a command, a test
        _server_loop = asyncio.get_running_loop()
    if runner() != "thread":
        return
    _schedule_periodic()
    worker.start()


def stop(timeout: float = 10.0) -> None:
    global _periodic_started
    worker.stop(timeout)
    worker.clear()
    with _periodic_lock:
        _periodic_started = False


def run_due(*, advance: float = 0.0) -> int:
    """Tests (inline runner): run what is due `advance` seconds from now, in this thread. Returns how many ran."""
    jobs = worker.due(worker.clock() + advance)
    for job in jobs:
        job.fn(*job.args, **job.kwargs)
    return len(jobs)
