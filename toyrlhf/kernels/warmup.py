"""A first run's compile, shared with a second process: it compiles the kernels a run needs last while this one
compiles what it needs now.

With an empty numba cache every kernel compiles on its first call, one after another (11.5 s for a first
`toyrlhf run grpo`, measured by benchmarks/bench_compile.py), while the machine's other cores idle. So when the
fast path is first used and some kernel of `PLAN` has no cache entry yet, `start()` launches
`python -m toyrlhf.kernels.warmup`, which calls those kernels once on tiny inputs of the types TinyLM passes,
last-needed first (sampling, the backward, Adam), so that numba writes them to the shared on-disk cache. This
process finds them there when it gets to them; if the helper is compiling that very kernel at that moment (its
marker file, jit.mark_compiling), it waits for it rather than compile it a second time (jit._wait_for_helper:
the sampler alone cost 1.2 s more when both compiled it); it compiles a kernel itself when the helper has not got
to it. Either way the same machine code and the same numbers, only sooner.

The helper process: started only when the load average leaves a core idle (on a busy machine it slowed the run it
was helping: 19.9 -> 22.8 s at a load average of 2.5, and still 20.9 -> 23.6 s niced, measured), niced, detached
from the terminal's signals and pipes, at most one at a time per cache folder (a lock file, stale after 5
minutes); nothing is started when numba has no cache location (caching disabled) or with
TOYRLHF_BACKGROUND_COMPILE=0.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from . import backward, forward, optim, reference, sample
from .jit import mark_compiling

_started = False


def _plan():
    """(kernel, arguments) in the order the helper process compiles them: a first run compiles the forward first
    (its first stage's first call: the hidden layer, then the LM head 2 s later), so the helper starts with the
    LM head's helper (numba loads a compiled helper from the cache when it compiles a kernel that calls it), then
    the backward, the sampler, the optimiser and the reward model's kernels, and ends with the forward in
    case this process has not got to it (measured by benchmarks/bench_compile.py). The
    arguments are tiny, but of the exact types TinyLM's fast path and the optimiser pass (C-contiguous writeable
    float64 / int64 / bool arrays, Python ints, floats and bools), or numba would compile another signature."""
    N, k, V, d, h, Vo, L = 4, 2, 5, 2, 3, 2, 4
    i8 = lambda *s: np.zeros(s, dtype=np.int64)            # noqa: E731
    f8 = lambda *s: np.zeros(s)                             # noqa: E731
    tokens, rows, ends = np.full((N, L), 1, dtype=np.int64), i8(N), i8(N)
    X, H, G = i8(N, k), f8(N, h), f8(N, Vo)
    return [
        (forward._lm_head_block, (f8(N * h), N, f8(h, Vo), f8(Vo), 1.0, 0, f8(N, Vo), f8(N), f8(h, N), f8(Vo, N),
                                  f8(Vo, N), f8(N), f8(N))),
        (forward._dot8, (f8(h), f8(h))),
        (backward._grouped_dlogits, (i8(N), i8(N), f8(N), f8(N), f8(N, Vo), f8(N), 1.0)),
        (backward._head_rows_backward, (H, f8(Vo, h), G, 0, N, f8(N, h))),
        (backward._trunk_weight_cols, (X, H, G, f8(N, h), f8(V, d), V, 0, h, f8(Vo, h), f8(k * V, h), f8(h),
                                       f8(k * d, h))),
        (backward._emb_grad, (f8(k * V, h), f8(k, h, d), V)),
        (sample._sample_rows, (tokens, 2, 1, f8(1, N), f8(k * V, h), f8(h), f8(h, Vo), f8(Vo), V, False, 1.0, 1, 0,
                               2, 2, 0, N, f8(N, L), np.zeros((N, L), dtype=bool), np.ones(N, dtype=bool))),
        (optim._sum_squares, (f8(N),)),
        (optim._adam_update, (f8(N), f8(N), f8(N), f8(N), 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001)),
        (forward._mlp_rows, (X, f8(k * V, h), f8(h), V, f8(h, Vo), f8(Vo), 1.0, f8(0), 0, N, f8(N, h), f8(N, Vo),
                             f8(N), f8(0))),
        (forward._mlp_table, (f8(V, d), f8(k * d, h))),
        (forward._distinct_rows, (X,)),
        (forward._memo_index, (np.full(16, -1, dtype=np.int64), i8(N, k), i8(1), X)),
        (reference._gather_contexts, (tokens, rows, ends, k, False, 1, 0)),
    ]


def _cached(kernel) -> bool | None:
    """Has `kernel` a fresh on-disk cache entry? None when it has no disk cache (or numba's internals moved)."""
    try:
        return bool(kernel._cache._cache_file._load_index())
    except (AttributeError, OSError, EOFError, ValueError):
        return None


def _lock_path(kernel) -> str | None:
    try:
        return os.path.join(kernel._cache._cache_file._cache_path, "toyrlhf-warmup.lock")
    except AttributeError:
        return None


def start() -> None:
    """Launch the helper process once per process, if some planned kernel is not compiled yet."""
    global _started
    if _started:
        return
    _started = True
    if os.environ.get("TOYRLHF_BACKGROUND_COMPILE", "1") == "0" or not _idle_core():
        return
    plan = _plan()
    if all(_cached(kernel) is not False for kernel, _ in plan):
        return
    lock = _lock_path(plan[0][0])
    if lock is None or not _take_lock(lock):
        return
    try:
        subprocess.Popen([sys.executable, "-m", "toyrlhf.kernels.warmup", lock], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         close_fds=True)
    except OSError:
        _release(lock)


def _idle_core() -> bool:
    """Does the last minute's load average leave a core free for the helper?"""
    try:
        return os.getloadavg()[0] < (os.cpu_count() or 1) - 0.5
    except (AttributeError, OSError):
        return True


def _take_lock(path: str) -> bool:
    try:
        if time.time() - os.path.getmtime(path) > 300:
            _release(path)
    except OSError:
        pass
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except OSError:
        return False


def _release(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def main(lock: str) -> None:
    try:
        os.nice(10)             # idle cores only: on a busy machine the run itself must not wait for its helper
    except (AttributeError, OSError):
        pass
    markers = set()
    try:
        for kernel, args in _plan():
            if _cached(kernel) is False:
                markers.add(mark_compiling(kernel))   # a run that needs this kernel now waits for it
                kernel(*args)
    finally:
        for marker in markers - {None}:
            _release(marker)
        _release(lock)


if __name__ == "__main__":
    main(sys.argv[1])
