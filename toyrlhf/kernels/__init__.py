"""The only numba package: the loops that NumPy cannot vectorise without temporaries or Python overhead.

Every kernel is private (leading underscore) and called through the plain functions in `model.py` and
`model_fast.py`, which validate shapes and dtypes first (the stumpy pattern).

    jit.py        the decorator: serial njit, nogil, cache=True, error_model='numpy', optional FMA contraction
    reference.py  the serial kernels of the readable reference path (TinyLM's NumPy forward/backward)
    vmath.py      exp and tanh as loops LLVM vectorises (within a few ulp of libm)
    forward.py    the fast path: distinct windows, the first-layer table, the trunk and its heads (the algebra)
    sample.py     autoregressive sampling, every token step in one call
    backward.py   the fast path's backward on the distinct windows
    optim.py      Adam in one pass, a fixed-order sum of squares
    pool.py       the fast path's threads: fixed chunks claimed by whichever thread is free
    warmup.py     a first run's compile shared with a helper process

The fast path calls no BLAS at all, so the step never meets OpenBLAS's spinning worker threads, and its results do
not depend on OPENBLAS_NUM_THREADS; pool.py says why they do not depend on NUMBA_NUM_THREADS either. The only
fastmath flag is 'contract' (a*b + c as one FMA): never reassociation, which would break the exp range reduction
and reorder the fixed sums.

Caching: `cache=True` keeps the first-run compile cost to the first process (measured per kernel by
benchmarks/bench_compile.py). When no cache location is writable (read-only install, no writable user cache),
numba raises at decoration time; we fall back to compiling in memory for that process. NUMBA_CACHE_DIR is left to
the user. One flag set per function: numba's on-disk cache does not distinguish fastmath variants. Loading a cached
kernel skips numba's refresh of its implementation registries (jit.py `_load_without_refresh`: 0.3-0.4 s of a
warm run, scipy.linalg included); a compile still refreshes them.
"""
from __future__ import annotations

from .backward import _emb_grad, _grouped_dlogits, _head_rows_backward, _trunk_weight_cols  # noqa: F401
from .forward import (ROW_BLOCK, _distinct_rows, _logits_forward, _memo_index, _mlp_rows,  # noqa: F401
                      _mlp_table)
from .optim import _adam_update, _sum_squares  # noqa: F401
from .reference import (_categorical, _dlogits, _embed_backward, _embed_concat, _gather_contexts,  # noqa: F401
                        _log_softmax, _one_hot_last)
from .sample import _sample_rows  # noqa: F401
from .vmath import _vexp_array, _vtanh_array  # noqa: F401
from . import pool  # noqa: F401,E402
