"""The fast path's threads: a fixed list of chunks (row ranges, column ranges), claimed one at a time by whichever
thread is free first, the caller's own thread included.

Why not numba's parallel=True. Its OpenMP (or workqueue) regions hand each thread a fixed share and end at a
barrier, so one descheduled worker holds up the whole region: with a second CPU-bound process on 2 cores, the
parallel kernels ran 2-3x slower than on one thread (measured: LM head 317 -> 824 us, trunk backward 155 ->
817 us, at a load average of 2.4). Here the caller never waits for a worker that has not started: it claims
the next unclaimed chunk itself, and waits only for chunks a worker is already computing. Quiet, two threads
share the work; under contention the caller does it alone, at single-thread speed.

Determinism. A chunk is a range of independent rows, or of output columns inside which every sum runs over all
rows in row order: no reduction is split between chunks, so where the chunk boundaries fall (they depend on the
thread count) and which thread computes a chunk change no bit of the result (tests/test_kernels.py checks it
for any chunking, tests/test_thread_determinism.py for any NUMBA_NUM_THREADS).

Threads: NUMBA_NUM_THREADS (numba's default: the CPUs this process may use), read once. Workers start on first
use, are daemons, and are not inherited by a fork (the child starts its own).
"""
from __future__ import annotations

import contextlib
import os
import threading

from numba import config as _numba_config

MIN_ROWS = 128
"""Rows below which a row-wise kernel runs in one call (a hand-off to a worker costs ~15 us, measured)."""
ROW_ALIGN = 16
"""Row chunks start at multiples of this (the kernels' row block)."""
COL_ALIGN = 8
"""Column chunks start at multiples of this (whole AVX vectors)."""

_settings = {"threads": max(1, int(_numba_config.NUMBA_NUM_THREADS)), "min_rows": MIN_ROWS}


def threads() -> int:
    return _settings["threads"]


@contextlib.contextmanager
def configure(threads: int | None = None, min_rows: int | None = None):
    """Temporarily change the thread count or the smallest parallel batch (tests: every chunking gives the same
    bits)."""
    old = dict(_settings)
    if threads is not None:
        _settings["threads"] = max(1, int(threads))
    if min_rows is not None:
        _settings["min_rows"] = max(1, int(min_rows))
    try:
        yield
    finally:
        _settings.update(old)


def _split(n: int, parts: int, align: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    step = -(-step // align) * align
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def row_chunks(n_rows: int) -> list[tuple[int, int]]:
    """(lo, hi) row ranges: one when the batch is small or there is one thread, else two per thread (a late
    worker then leaves the caller at most one chunk to wait for)."""
    t = threads()
    if t == 1 or n_rows < _settings["min_rows"]:
        return [(0, n_rows)]
    return _split(n_rows, min(2 * t, -(-n_rows // ROW_ALIGN)), ROW_ALIGN)


def col_chunks(n_cols: int, n_rows: int) -> list[tuple[int, int]]:
    """(lo, hi) column ranges of a reduction over n_rows rows: as `row_chunks`, over whole vectors of columns."""
    t = threads()
    if t == 1 or n_rows < _settings["min_rows"]:
        return [(0, n_cols)]
    return _split(n_cols, min(t, -(-n_cols // COL_ALIGN)), COL_ALIGN)


class _Job:
    """fn(*head, lo, hi, *tail) for every (lo, hi) in chunks; chunks are claimed in order under a lock."""

    __slots__ = ("fn", "head", "tail", "chunks", "next", "left", "lock", "done", "error", "results")

    def __init__(self, fn, head, chunks, tail):
        self.fn, self.head, self.tail, self.chunks = fn, head, tail, chunks
        self.next, self.left = 0, len(chunks)
        self.lock, self.done = threading.Lock(), threading.Event()
        self.error = None
        self.results = [None] * len(chunks)

    def work(self) -> None:
        while True:
            with self.lock:
                i = self.next
                if i >= len(self.chunks):
                    return
                self.next = i + 1
            try:
                self.results[i] = self.fn(*self.head, *self.chunks[i], *self.tail)
            except BaseException as e:  # re-raised by the caller's thread
                self.error = self.error or e
            with self.lock:
                self.left -= 1
                if self.left == 0:
                    self.done.set()


class _Workers:
    def __init__(self, n: int):
        self.job: _Job | None = None
        self.wake = threading.Semaphore(0)
        for _ in range(n):
            threading.Thread(target=self._loop, daemon=True, name="toyrlhf-kernels").start()

    def _loop(self) -> None:
        while True:
            self.wake.acquire()
            job = self.job
            if job is not None:
                job.work()


_workers: _Workers | None = None
_workers_lock = threading.Lock()


def _forget_workers() -> None:
    global _workers, _workers_lock
    _workers, _workers_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def run(fn, head: tuple, chunks: list[tuple[int, int]], tail: tuple = ()) -> list:
    """[fn(*head, lo, hi, *tail) for (lo, hi) in chunks], the chunks shared between this thread and the workers."""
    global _workers
    if len(chunks) == 1:
        return [fn(*head, *chunks[0], *tail)]
    job = _Job(fn, head, chunks, tail)
    with _workers_lock:
        if _workers is None:
            _workers = _Workers(threads() - 1)
        workers = _workers
    workers.job = job
    for _ in range(min(threads() - 1, len(chunks) - 1)):
        workers.wake.release()
    job.work()
    job.done.wait()
    if job.error is not None:
        raise job.error
    return job.results
