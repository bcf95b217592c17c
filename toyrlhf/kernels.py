"""The only numba module: the loops that NumPy cannot vectorise without temporaries or Python overhead.

Every kernel is private (leading underscore) and called through the plain functions in `model.py`,
which validate shapes and dtypes first (the stumpy pattern).

Threads: the kernels are compiled serial (parallel=False, so `prange` is a plain range). Measured here
(2 cores): with parallel=True, numba's worker threads competed with OpenBLAS's spinning threads from the
surrounding matrix products and each tiny kernel call took ~5 ms instead of ~0.05 ms (pretraining: 22 ms/step
vs 1.4 ms/step). The loops stay written over independent rows so that turning parallelism on stays correct.

Determinism: `prange` runs only over independent output rows (a row's result never depends on another
row, nor on how rows are split between threads); reductions across rows (the embedding gradient) run
serially in a fixed order. Results are therefore bit-identical for any NUMBA_NUM_THREADS.
The dense matrix products are left to BLAS through NumPy in `model.py`: numba's own loops reach a
fraction of dgemm's speed on these shapes (benchmarks/bench_step.py measures the step).

Caching: `cache=True` keeps the first-run compile cost (measured in the README) to the first process.
When no cache location is writable (read-only install, no writable user cache), numba raises at
decoration time; we fall back to compiling in memory for that process. NUMBA_CACHE_DIR is left to the user.
One flag set per function: numba's on-disk cache does not distinguish fastmath/parallel variants.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


def _kernel(parallel: bool = False):
    """njit with cache=True, falling back to an uncached compile when no cache locator is writable."""

    def deco(fn):
        opts = dict(parallel=parallel, error_model="numpy", nogil=True)
        try:
            return njit(cache=True, **opts)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(cache=False, **opts)(fn)

    return deco


@_kernel(parallel=False)
def _gather_contexts(tokens, rows, ends, k, bos):
    """X[n] = tokens[rows[n], ends[n]-k+1 .. ends[n]], positions before 0 read as BOS.  -> (N, k) int64"""
    n = rows.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    for i in prange(n):
        b = rows[i]
        e = ends[i]
        for j in range(k):
            pos = e - k + 1 + j
            if pos < 0:
                out[i, j] = bos
            else:
                out[i, j] = tokens[b, pos]
    return out


@_kernel(parallel=False)
def _embed_concat(X, emb):
    """E[n, j*d:(j+1)*d] = emb[X[n, j]]  -> (N, k*d)"""
    n, k = X.shape
    d = emb.shape[1]
    out = np.empty((n, k * d), dtype=np.float64)
    for i in prange(n):
        for j in range(k):
            t = X[i, j]
            for c in range(d):
                out[i, j * d + c] = emb[t, c]
    return out


@_kernel(parallel=False)
def _embed_backward(X, dE, demb):
    """demb[X[n, j]] += dE[n, j*d:(j+1)*d], serial in a fixed order (a scatter-add across rows)."""
    n, k = X.shape
    d = demb.shape[1]
    for i in range(n):
        for j in range(k):
            t = X[i, j]
            for c in range(d):
                demb[t, c] += dE[i, j * d + c]


@_kernel(parallel=False)
def _one_hot_last(X, V):
    """Bigram trunk: the one-hot code of the last context token.  -> (N, V)"""
    n, k = X.shape
    out = np.zeros((n, V), dtype=np.float64)
    for i in prange(n):
        out[i, X[i, k - 1]] = 1.0
    return out


@_kernel(parallel=False)
def _log_softmax(logits, inv_temp):
    """Row-wise log-softmax of logits * inv_temp, shifted by the row max (stable for any finite logits)."""
    n, v = logits.shape
    out = np.empty((n, v), dtype=np.float64)
    for i in prange(n):
        m = logits[i, 0] * inv_temp
        for j in range(1, v):
            z = logits[i, j] * inv_temp
            if z > m:
                m = z
        s = 0.0
        for j in range(v):
            s += np.exp(logits[i, j] * inv_temp - m)
        lse = m + np.log(s)
        for j in range(v):
            out[i, j] = logits[i, j] * inv_temp - lse
    return out


@_kernel(parallel=False)
def _dlogits(logprobs, targets, dlogp, dentropy, inv_temp):
    """Backward of logp = logprobs[n, target] and entropy = -sum p log p through the tempered log-softmax.

    dlogp/dz_j   = (1[j == target] - p_j) / T
    dH/dz_j      = -p_j (log p_j + H) / T
    """
    n, v = logprobs.shape
    out = np.empty((n, v), dtype=np.float64)
    for i in prange(n):
        ent = 0.0
        for j in range(v):
            ent -= np.exp(logprobs[i, j]) * logprobs[i, j]
        for j in range(v):
            p = np.exp(logprobs[i, j])
            g = -p * dlogp[i] - dentropy[i] * p * (logprobs[i, j] + ent)
            if j == targets[i]:
                g += dlogp[i]
            out[i, j] = g * inv_temp
    return out


@_kernel(parallel=False)
def _categorical(logprobs, u):
    """Inverse-CDF draw per row: the first j with cumsum(p)[j] > u (u uniform in [0, 1))."""
    n, v = logprobs.shape
    out = np.empty(n, dtype=np.int64)
    for i in prange(n):
        c = 0.0
        pick = v - 1  # round-off guard: cumsum may end a hair below 1
        for j in range(v):
            c += np.exp(logprobs[i, j])
            if u[i] < c:
                pick = j
                break
        out[i] = pick
    return out


@_kernel(parallel=False)
def _adam_update(params, grad, m, v, lr, beta1, beta2, eps, bc1, bc2):
    """One bias-corrected Adam step in place, element by element, in the operation order of the NumPy form
    (so the result is bit-identical to it): one pass over memory instead of ten array temporaries.

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g;  p -= lr (m / bc1) / (sqrt(v / bc2) + eps)
    """
    c1 = 1.0 - beta1
    c2 = 1.0 - beta2
    for i in range(params.shape[0]):
        g = grad[i]
        mi = m[i] * beta1 + c1 * g
        vi = v[i] * beta2 + c2 * g * g
        m[i] = mi
        v[i] = vi
        params[i] -= lr * (mi / bc1) / (np.sqrt(vi / bc2) + eps)
