"""The fast path's threads: a fixed list of chunks (row ranges, column ranges), claimed one at a time by whichever
thread is free first, the caller's own thread included; used only where it was measured to pay.

Why not numba's parallel=True. Its OpenMP (or workqueue) regions hand each thread a fixed share and end at a
barrier, so one descheduled worker holds up the whole region: with a second CPU-bound process on 2 cores, the
parallel kernels ran 2-3x slower than on one thread (measured: LM head 317 -> 824 us, trunk backward 155 ->
817 us, at a load average of 2.4). Here the caller never waits for a worker that has not started: it claims
the next unclaimed chunk itself, and waits only for chunks a worker is already computing.

When to share. A hand-off costs ~15 us, and a second thread only helps when a core is free: on a machine shared
with other work, two threads were slower than one even for 650 rows (measured at a load average of 1.3: logp
forward 551 -> 720 us, backward 551 -> 763 us). So each kernel keeps the time per row of its recent calls done
alone and shared (moving averages) and runs the faster way, trying the other way on one call in 16 to follow a
changing load. Batches under MIN_ROWS rows always run alone.

Determinism. A chunk is a range of independent rows, or of output columns inside which every sum runs over all
rows in row order: no reduction is split between chunks, so where the chunk boundaries fall, whether a job is
shared and which thread computes a chunk change no bit of the result (tests/test_kernels.py checks it for any
chunking, tests/test_thread_determinism.py for any NUMBA_NUM_THREADS).

Threads: NUMBA_NUM_THREADS (numba's default: the CPUs this process may use), read once. The workers are a
concurrent.futures thread pool started on first use, and are not inherited by a fork (the child starts its own).
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from numba import config as _numba_config

MIN_ROWS = 256
"""Rows below which a kernel always runs alone (its work is then below a few hand-offs)."""
ROW_ALIGN = 16
"""Row chunks start at multiples of this."""
COL_ALIGN = 8
"""Column chunks start at multiples of this (whole AVX vectors)."""
EXPLORE = 16
"""One call in EXPLORE runs the way that is currently slower, to keep its time current."""

_settings = {"threads": max(1, int(_numba_config.NUMBA_NUM_THREADS)), "min_rows": MIN_ROWS, "adaptive": True}
_timings: dict = {}
"""kernel -> [calls, seconds per row alone, seconds per row shared] (moving averages; None until measured)."""


def threads() -> int:
    return _settings["threads"]


@contextlib.contextmanager
def configure(threads: int | None = None, min_rows: int | None = None, adaptive: bool | None = None):
    """Temporarily change the thread count, the smallest shared batch, or whether measured times choose between
    alone and shared (adaptive=False: always shared above min_rows; tests: every chunking gives the same bits)."""
    old = dict(_settings)
    for key, value in (("threads", threads), ("min_rows", min_rows), ("adaptive", adaptive)):
        if value is not None:
            _settings[key] = type(old[key])(value)
    try:
        yield
    finally:
        _settings.update(old)


def _split(n: int, parts: int, align: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    step = -(-step // align) * align
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def _alone(n_rows: int) -> bool:
    return _settings["threads"] == 1 or n_rows < _settings["min_rows"]


def _share(fn, n_rows: int) -> bool:
    if not _settings["adaptive"]:
        return True
    t = _timings.setdefault(fn, [0, None, None])
    t[0] += 1
    if t[1] is None or t[2] is None:
        return t[1] is not None              # measure alone first, then shared
    return (t[2] < t[1]) != (t[0] % EXPLORE == 0)


def _timed(fn, shared: bool, n_rows: int, call):
    t0 = time.perf_counter()
    out = call()
    if _settings["adaptive"]:
        per_row = (time.perf_counter() - t0) / n_rows
        t = _timings.setdefault(fn, [0, None, None])
        i = 2 if shared else 1
        t[i] = per_row if t[i] is None else 0.8 * t[i] + 0.2 * per_row
    return out


def rows(fn, head: tuple, n_rows: int, tail: tuple = ()) -> list:
    """[fn(*head, lo, hi, *tail)] over row ranges covering 0..n_rows: one call, or two chunks per thread shared
    with the workers (a late worker then leaves the caller at most one chunk to wait for)."""
    if _alone(n_rows):
        return [fn(*head, 0, n_rows, *tail)]
    shared = _share(fn, n_rows)
    chunks = ([(0, n_rows)] if not shared
              else _split(n_rows, min(2 * threads(), -(-n_rows // ROW_ALIGN)), ROW_ALIGN))
    return _timed(fn, shared, n_rows, lambda: _run(fn, head, chunks, tail))


def cols(fn, head: tuple, n_cols: int, n_rows: int, tail: tuple = ()) -> list:
    """As `rows`, over column ranges covering 0..n_cols of a reduction over n_rows rows (one chunk per thread)."""
    if _alone(n_rows):
        return [fn(*head, 0, n_cols, *tail)]
    shared = _share(fn, n_rows)
    chunks = ([(0, n_cols)] if not shared
              else _split(n_cols, min(threads(), -(-n_cols // COL_ALIGN)), COL_ALIGN))
    return _timed(fn, shared, n_rows, lambda: _run(fn, head, chunks, tail))


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


_workers: ThreadPoolExecutor | None = None
_workers_lock = threading.Lock()


def _forget_workers() -> None:
    """After a fork the child has none of the parent's threads: it starts a pool of its own on first use."""
    global _workers, _workers_lock
    _workers, _workers_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def _run(fn, head: tuple, chunks: list[tuple[int, int]], tail: tuple) -> list:
    global _workers
    if len(chunks) == 1:
        return [fn(*head, *chunks[0], *tail)]
    job = _Job(fn, head, chunks, tail)
    with _workers_lock:
        if _workers is None:
            _workers = ThreadPoolExecutor(max_workers=threads() - 1, thread_name_prefix="toyrlhf-kernels")
        workers = _workers
    for _ in range(min(threads() - 1, len(chunks) - 1)):
        workers.submit(job.work)     # a worker that starts late finds every chunk claimed and returns at once
    job.work()
    job.done.wait()
    if job.error is not None:
        raise job.error
    return job.results
