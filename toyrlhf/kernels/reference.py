"""Serial kernels of the readable reference path (`TinyLM`'s NumPy forward/backward, `fast = False`)."""
from __future__ import annotations

import numpy as np

from .jit import _kernel, _part


@_part
def _fill_window(tokens, b, e, prefix, bos, pad, out):
    """out[:] = the window of sequence b ending at position e: tokens[b, e-k+1 .. e] with BOS before position 0
    (the 'recent' window), or with `prefix` tokens[b, 0 .. e] followed by PAD (k = len(out))."""
    k = out.shape[0]
    for j in range(k):
        if prefix:
            out[j] = tokens[b, j] if j <= e and j < tokens.shape[1] else pad
        else:
            p = e - k + 1 + j
            out[j] = bos if p < 0 else tokens[b, p]


@_kernel()
def _gather_contexts(tokens, rows, ends, k, prefix, bos, pad):
    """X[n] = the window of sequence rows[n] ending at ends[n] (`_fill_window`).  -> (N, k) int64"""
    n = rows.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        _fill_window(tokens, rows[i], ends[i], prefix, bos, pad, out[i])
    return out


@_kernel()
def _embed_concat(X, emb):
    """E[n, j*d:(j+1)*d] = emb[X[n, j]]  -> (N, k*d)"""
    n, k = X.shape
    d = emb.shape[1]
    out = np.empty((n, k * d), dtype=np.float64)
    for i in range(n):
        for j in range(k):
            t = X[i, j]
            for c in range(d):
                out[i, j * d + c] = emb[t, c]
    return out


@_kernel()
def _embed_backward(X, dE, demb):
    """demb[X[n, j]] += dE[n, j*d:(j+1)*d], serial in a fixed order (a scatter-add across rows)."""
    n, k = X.shape
    d = demb.shape[1]
    for i in range(n):
        for j in range(k):
            t = X[i, j]
            for c in range(d):
                demb[t, c] += dE[i, j * d + c]


@_kernel()
def _one_hot_last(X, V):
    """Bigram trunk: the one-hot code of the last context token.  -> (N, V)"""
    n, k = X.shape
    out = np.zeros((n, V), dtype=np.float64)
    for i in range(n):
        out[i, X[i, k - 1]] = 1.0
    return out


@_kernel()
def _log_softmax(logits, inv_temp):
    """Row-wise log-softmax of logits * inv_temp, shifted by the row max (stable for any finite logits)."""
    n, v = logits.shape
    out = np.empty((n, v), dtype=np.float64)
    for i in range(n):
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


@_kernel()
def _dlogits(logprobs, targets, dlogp, dentropy, inv_temp):
    """Backward of logp = logprobs[n, target] and entropy = -sum p log p through the tempered log-softmax.

    dlogp/dz_j   = (1[j == target] - p_j) / T
    dH/dz_j      = -p_j (log p_j + H) / T
    """
    n, v = logprobs.shape
    out = np.empty((n, v), dtype=np.float64)
    for i in range(n):
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


@_kernel()
def _categorical(logprobs, u):
    """Inverse-CDF draw per row: the first j with cumsum(p)[j] > u (u uniform in [0, 1))."""
    n, v = logprobs.shape
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        c = 0.0
        pick = v - 1  # round-off guard: cumsum may end a hair below 1
        for j in range(v):
            c += np.exp(logprobs[i, j])
            if u[i] < c:
                pick = j
                break
        out[i] = pick
    return out
