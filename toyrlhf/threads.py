"""One place that decides how many threads BLAS may use while toyrlhf works: one.

Why. OpenBLAS's worker threads busy-wait between calls. On the tiny matrix products of this project that costs
more than it saves even on a quiet machine, and when a second CPU-bound process runs (a browser, a video call,
a test suite) the spinning threads steal the core the real work needs: measured on 2 cores, a GRPO step went
from 6.6 ms (one BLAS thread) to 114 ms (two). And dgemm's summation order depends on the thread count, so
results differed between OPENBLAS_NUM_THREADS=1 and 2.

The model's hot path (TinyLM's fast path, `toyrlhf/kernels/`) calls no BLAS at all. Whatever NumPy product remains
(the reference path, the exact engine, losses) runs under `blas_single_thread()`: entry points wrap their work
in it, so no figure depends on the BLAS thread count and nothing spins.

    with blas_single_thread():          # a context manager ...
        trainer.run()

    @blas_single_thread()               # ... or a decorator
    def train(...): ...

It is re-entrant and restores the previous limits on exit. The controller is rebuilt on each entry (≈ 1 ms), so
BLAS libraries loaded after toyrlhf was imported (SciPy ships its own OpenBLAS) are pinned too; enter it around
whole runs, not around single products.
"""
from __future__ import annotations

import contextlib
import functools


class blas_single_thread(contextlib.ContextDecorator):
    """Limit every loaded BLAS library (OpenBLAS, MKL, BLIS) to one thread for the duration (threadpoolctl)."""

    def __init__(self):
        self._limiters = []

    def __enter__(self):
        from threadpoolctl import threadpool_limits
        self._limiters.append(threadpool_limits(limits=1, user_api="blas"))
        return self

    def __exit__(self, *exc):
        self._limiters.pop().restore_original_limits()
        return False


def single_threaded_blas(fn):
    """Decorator form of `blas_single_thread()` for library entry points."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with blas_single_thread():
            return fn(*args, **kwargs)

    return wrapper
