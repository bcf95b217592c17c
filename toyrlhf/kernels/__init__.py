"""The only numba package: the loops that NumPy cannot vectorise without temporaries or Python overhead.

Every kernel is private (leading underscore) and called through the plain functions in `model.py`,
which validate shapes and dtypes first (the stumpy pattern).

Two families:
  * the serial kernels of the readable reference path (`_gather_contexts`, `_embed_concat`, `_embed_backward`,
    `_one_hot_last`, `_log_softmax`, `_dlogits`, `_categorical`), used by `TinyLM`'s NumPy forward/backward;
  * the fused fast path (`_mlp_table` ... `_sample_step`), selected by default: no BLAS call at all, so the
    step never meets OpenBLAS's spinning worker threads, and its results do not depend on OPENBLAS_NUM_THREADS.

The fast path's algebra, threads and determinism: see `fast.py`.

exp and tanh: see `vmath.py` (branch-free loops that LLVM vectorises, within a few ulp of libm).

Caching: `cache=True` keeps the first-run compile cost to the first process. When no cache location is
writable (read-only install, no writable user cache), numba raises at decoration time; we fall back to
compiling in memory for that process. NUMBA_CACHE_DIR is left to the user. One flag set per function:
numba's on-disk cache does not distinguish fastmath/parallel variants.
"""
from __future__ import annotations

from .fast import (COL_BLOCK, ROW_BLOCK, _col_sums, _dlogits_rows, _lm_backward_rows, _lm_forward,  # noqa: F401
                   _logits_forward, _mlp_hidden, _mlp_table, _mlp_trunk_backward, _rows_dot, _sample_step,
                   _scalar_head_backward, _scatter_rows, _weighted_row_sums)
from .optim import _adam_update, _sum_squares  # noqa: F401
from .reference import (_categorical, _dlogits, _embed_backward, _embed_concat, _gather_contexts,  # noqa: F401
                        _log_softmax, _one_hot_last)
from .vmath import _vexp_array, _vtanh_array  # noqa: F401
