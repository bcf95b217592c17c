"""The local backend: stages and runs in worker processes on this machine (concurrent.futures' process pool, spawn
start method: numba and fork do not mix), sharing the local stage cache. `sweep` and `compare` both run on it.

Workers never outlive the driver (even kill -9 of it), and Ctrl-C / SIGTERM of the driver sets a stop event that each
running run sees at its next step boundary: it stops there with its checkpoint and metrics written (resumable)."""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from . import work

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def worker_threads(n: int):
    """Cap the BLAS threads the spawned workers inherit, so that J processes do not oversubscribe the cores (a
    variable the user set is left alone)."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    for k in THREAD_VARIABLES:
        os.environ.setdefault(k, str(n))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_STOP = None   # in a worker: the driver's stop event


def init_worker(stop, parent_pid: int | None = None) -> None:
    """Worker start-up: remember the stop event; ignore SIGINT while idle (a run being trained defers it to the end
    of its step, then stops with its checkpoint written); die with the parent (even kill -9 of the driver)."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        _die_with_parent(parent_pid)


def _die_with_parent(parent_pid: int) -> None:
    """A worker must not outlive its driver. On Linux the kernel sends SIGTERM when the parent dies
    (prctl PR_SET_PDEATHSIG; a run being trained defers it to the end of its step, keeping its checkpoint); everywhere
    a daemon thread also checks once a second that the parent is still our parent, and exits if not."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)   # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                os._exit(143)
            time.sleep(1.0)

    if os.getppid() != parent_pid:   # the parent died before prctl took effect
        os._exit(143)
    threading.Thread(target=watch, name="toyrlhf-parent-watch", daemon=True).start()


def train_stoppable(cfg_dict: dict, run_dir: str, resume: bool = False) -> dict:
    """Worker: work.train_run, stopped at a step boundary once the driver sets the stop event (the run signals
    itself; train() defers the signal to the end of the step, keeping checkpoint and metrics); a run not yet started
    when the event is set is skipped."""
    if _STOP is not None and _STOP.is_set():
        return {"error": "not started (the sweep was stopped)"}

    def progress(step, metrics):
        if _STOP is not None and _STOP.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    return work.train_run(cfg_dict, run_dir, resume, progress=progress)


class LocalBackend:
    def __init__(self, jobs: int | None = None):
        self.jobs = jobs or available_cpus()
        self._stop = None   # the workers' stop event, made with the pool

    def describe(self) -> str:
        return f"{self.jobs} local process{'es' if self.jobs != 1 else ''}"

    _pool: cf.ProcessPoolExecutor | None = None

    def pool(self) -> cf.ProcessPoolExecutor:
        """One pool of spawned workers for the stages and the runs (a worker's start-up, numba's cache included,
        costs about a second)."""
        if self._pool is None:
            self._stop = multiprocessing.get_context("spawn").Event()
            with worker_threads(max(1, available_cpus() // self.jobs)):
                self._pool = cf.ProcessPoolExecutor(max_workers=self.jobs,
                                                    mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=init_worker, initargs=(self._stop, os.getpid()))
        return self._pool

    def close(self) -> None:
        """Wait for the workers; on Ctrl-C, running runs stop at a step boundary with their checkpoint (resumable)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = self._stop = None

    def build_stages(self, levels, cache: Path, echo: Callable[[str], None]) -> None:
        """Each level's stages in parallel processes, level after level (each stage is trained once)."""
        for level in levels:
            for path in self.pool().map(work.build_stage, level):
                echo(f"  built {Path(path).name}")

    def run(self, jobs, cache: Path, on_result: Callable) -> None:
        """Every job's run; `on_result(job, result)` as each finishes. On Ctrl-C the running runs are told to stop at
        their next step (checkpoint kept), the queued ones are cancelled, and KeyboardInterrupt propagates."""
        pool = self.pool()
        futures = {pool.submit(train_stoppable, _config_dict(j), str(j.run_dir), j.resume): j for j in jobs}
        try:
            for fut in cf.as_completed(futures):
                try:
                    result = fut.result()
                except Exception as e:  # noqa: BLE001 - e.g. BrokenProcessPool: a worker was killed
                    result = {"error": work.error_text(e)}
                on_result(futures[fut], result)
        except KeyboardInterrupt:
            self._stop.set()
            for f in futures:
                f.cancel()
            raise


def _config_dict(job) -> dict:
    return work.config_dict(job.point.config)
