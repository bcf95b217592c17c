"""The local backend: stages and runs in worker processes on this machine (concurrent.futures' process pool, spawn
start method: numba and fork do not mix), sharing the local stage cache."""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
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


class LocalBackend:
    def __init__(self, jobs: int | None = None):
        self.jobs = jobs or available_cpus()

    def describe(self) -> str:
        return f"{self.jobs} local process{'es' if self.jobs != 1 else ''}"

    _pool: cf.ProcessPoolExecutor | None = None

    def pool(self) -> cf.ProcessPoolExecutor:
        """One pool of spawned workers for the stages and the runs (a worker's start-up, numba's cache included,
        costs about a second)."""
        if self._pool is None:
            with worker_threads(max(1, available_cpus() // self.jobs)):
                self._pool = cf.ProcessPoolExecutor(max_workers=self.jobs,
                                                    mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def close(self) -> None:
        """Wait for the workers; on Ctrl-C, running runs stop at a step boundary with their checkpoint (resumable)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def build_stages(self, levels, cache: Path, echo: Callable[[str], None]) -> None:
        """Each level's stages in parallel processes, level after level (each stage is trained once)."""
        for level in levels:
            for path in self.pool().map(work.build_stage, level):
                echo(f"  built {Path(path).name}")

    def run(self, jobs, cache: Path, on_result: Callable) -> None:
        pool = self.pool()
        futures = {pool.submit(work.train_run, _config_dict(j), str(j.run_dir), j.resume): j for j in jobs}
        for fut in cf.as_completed(futures):
            try:
                result = fut.result()
            except Exception as e:  # noqa: BLE001 - e.g. BrokenProcessPool: a worker was killed
                result = {"error": work.error_text(e)}
            on_result(futures[fut], result)


def _config_dict(job) -> dict:
    return work.config_dict(job.point.config)
