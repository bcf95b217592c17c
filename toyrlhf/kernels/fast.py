"""The fused fast path: trunk, heads, their backward and the sampling step, with no BLAS call.

The fast path's algebra. The MLP's first layer reads one-hot tokens, so E @ W1 = sum_j emb[x_j] @ W1_j with
W1_j = W1[j*d:(j+1)*d]. The table P[j*V + v] = emb[v] @ W1_j (k*V rows of h) is computed once per call, and
        pre[n] = b1 + sum_j P[j*V + x_nj]                    (N, h)   k row additions instead of a (k*d, h) product
Backward, with S[j*V + v] = sum_{n: x_nj = v} dpre[n]  (the embedding scatter, k*V rows of h):
        dW1_j = emb^T S_j        demb[v] = sum_j S_j[v] @ W1_j^T        db1 = sum_n dpre[n]
The dense formulation costs N*k*d*h multiply-adds per product; this one k*V*d*h + N*k*h (V = 16 << N).

Threads and determinism: the fast kernels are `parallel=True`. A `prange` runs either over fixed blocks of
independent rows (a row's result never depends on another row, nor on which thread computes it), or over
fixed blocks of output columns, inside which every sum over rows runs serially in row order. No reduction is
ever split between threads, so results are bit-identical for any NUMBA_NUM_THREADS (tested in
tests/test_kernels.py). The only fastmath flag is 'contract' (a*b + c as one FMA):
never reassociation, which would break the exp range reduction and reorder the fixed sums. Block sizes being
fixed, a given row always goes through the same vector or scalar-remainder instructions, whatever the threads. No kernel calls `numba.get_num_threads()` (it makes a parallel function
uncachable): block sizes are fixed constants.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .jit import _helper, _kernel
from .vmath import _vexp, _vtanh

# Fixed block sizes (never derived from the thread count: results must not depend on it).
ROW_BLOCK = 16      # rows per parallel task of a row-wise kernel
COL_BLOCK = 32      # output columns per parallel task of a column-blocked reduction


@_kernel(parallel=True, contract=True)
def _mlp_table(emb, W1):
    """P[j*V + v] = emb[v] @ W1[j*d:(j+1)*d]  -> (k*V, h): every window slot's contribution of every token."""
    V, d = emb.shape
    kd, h = W1.shape
    k = kd // d
    P = np.zeros((k * V, h))
    for jv in prange(k * V):
        j = jv // V
        v = jv - j * V
        for c in range(d):
            e = emb[v, c]
            r = j * d + c
            for f in range(h):
                P[jv, f] += e * W1[r, f]
    return P

@_helper
def _hidden_block(X, P, b1, V, lo, m, Hb, fb, q):
    """Hb[i] = tanh(b1 + sum_j P[j*V + X[lo+i, j]]) for the m rows lo.. (Hb flat, m*h)."""
    k = X.shape[1]
    h = b1.shape[0]
    for i in range(m):
        row = Hb[i * h:(i + 1) * h]
        for f in range(h):
            row[f] = b1[f]
        for j in range(k):
            Pr = P[j * V + X[lo + i, j]]
            for f in range(h):
                row[f] += Pr[f]
    _vtanh(Hb, fb, q, m * h)

@_kernel(parallel=True, contract=True)
def _mlp_hidden(X, P, b1, V):
    """H = tanh(b1 + sum_j P[j*V + X[:, j]])  -> (N, h), the trunk's features."""
    N = X.shape[0]
    h = b1.shape[0]
    H = np.empty((N, h))
    Hf = H.reshape(N * h)
    nb = (N + ROW_BLOCK - 1) // ROW_BLOCK
    for b in prange(nb):
        lo = b * ROW_BLOCK
        m = min(N, lo + ROW_BLOCK) - lo
        fb = np.empty(m * h)
        q = np.empty(m * h)
        _hidden_block(X, P, b1, V, lo, m, Hf[lo * h:(lo + m) * h], fb, q)
    return H

@_helper
def _logits_block(Hb, W2p, b2p, m, Z):
    """Z[i*Vp:(i+1)*Vp] = Hb[i] @ W2p + b2p for i < m (W2p (h, Vp), padded to a multiple of 4 columns).

    Four rows at a time share each loaded row of W2p (measured 2x faster than one row at a time); every
    element is b2p[c] + sum_f in order, the same operations for grouped and remainder rows."""
    h, Vp = W2p.shape
    acc = np.empty((4, Vp))
    m4 = m - m % 4
    for i0 in range(0, m4, 4):
        for c in range(Vp):
            acc[0, c] = b2p[c]
            acc[1, c] = b2p[c]
            acc[2, c] = b2p[c]
            acc[3, c] = b2p[c]
        for f in range(h):
            a0 = Hb[i0 * h + f]
            a1 = Hb[(i0 + 1) * h + f]
            a2 = Hb[(i0 + 2) * h + f]
            a3 = Hb[(i0 + 3) * h + f]
            Wf = W2p[f]
            for c in range(Vp):
                w = Wf[c]
                acc[0, c] += a0 * w
                acc[1, c] += a1 * w
                acc[2, c] += a2 * w
                acc[3, c] += a3 * w
        for r in range(4):
            z = Z[(i0 + r) * Vp:(i0 + r + 1) * Vp]
            for c in range(Vp):
                z[c] = acc[r, c]
    for i in range(m4, m):
        z = Z[i * Vp:(i + 1) * Vp]
        Hi = Hb[i * h:(i + 1) * h]
        for c in range(Vp):
            z[c] = b2p[c]
        for f in range(h):
            a = Hi[f]
            Wf = W2p[f]
            for c in range(Vp):
                z[c] += a * Wf[c]

@_helper
def _log_softmax_block(Z, Vp, Vo, m, inv_temp, lo, targets, logprobs, lp, ent, Y, E, fb, q):
    """Rows lo..lo+m: logprobs = log_softmax(Z * inv_temp) (first Vo of Vp columns), lp = logprobs[target],
    ent = -sum p log p."""
    for i in range(m):
        mx = Z[i * Vp] * inv_temp
        for c in range(1, Vo):
            z = Z[i * Vp + c] * inv_temp
            if z > mx:
                mx = z
        for c in range(Vo):
            Y[i * Vo + c] = Z[i * Vp + c] * inv_temp - mx
    _vexp(Y, E, fb, q, m * Vo)
    for i in range(m):
        s = 0.0
        for c in range(Vo):
            s += E[i * Vo + c]
        ls = np.log(s)
        inv_s = 1.0 / s
        h = 0.0
        n = lo + i
        for c in range(Vo):
            lpc = Y[i * Vo + c] - ls
            logprobs[n, c] = lpc
            h -= (E[i * Vo + c] * inv_s) * lpc
        ent[n] = h
        if targets.shape[0] > 0:
            lp[n] = logprobs[n, targets[n]]

@_kernel(parallel=True, contract=True)
def _lm_forward(H, W2p, b2p, Vo, inv_temp, targets):
    """LM head: (logprobs (N, Vo), logp of targets (N,), entropy (N,)); targets may be empty (no logp)."""
    N, h = H.shape
    Vp = W2p.shape[1]
    logprobs = np.empty((N, Vo))
    lp = np.zeros(N)
    ent = np.empty(N)
    Hf = H.reshape(N * h)
    nb = (N + ROW_BLOCK - 1) // ROW_BLOCK
    for b in prange(nb):
        lo = b * ROW_BLOCK
        m = min(N, lo + ROW_BLOCK) - lo
        Z = np.empty(m * Vp)
        Y = np.empty(m * Vo)
        E = np.empty(m * Vo)
        fb = np.empty(m * Vo)
        q = np.empty(m * Vo)
        _logits_block(Hf[lo * h:(lo + m) * h], W2p, b2p, m, Z)
        _log_softmax_block(Z, Vp, Vo, m, inv_temp, lo, targets, logprobs, lp, ent, Y, E, fb, q)
    return logprobs, lp, ent

@_kernel(parallel=True, contract=True)
def _logits_forward(logits, inv_temp, targets):
    """`_lm_forward` from given logits (N, Vo) (the bigram: rows of its table)."""
    N, Vo = logits.shape
    logprobs = np.empty((N, Vo))
    lp = np.zeros(N)
    ent = np.empty(N)
    Lf = logits.reshape(N * Vo)
    nb = (N + ROW_BLOCK - 1) // ROW_BLOCK
    for b in prange(nb):
        lo = b * ROW_BLOCK
        m = min(N, lo + ROW_BLOCK) - lo
        Y = np.empty(m * Vo)
        E = np.empty(m * Vo)
        fb = np.empty(m * Vo)
        q = np.empty(m * Vo)
        _log_softmax_block(Lf[lo * Vo:(lo + m) * Vo], Vo, Vo, m, inv_temp, lo, targets, logprobs, lp, ent,
                           Y, E, fb, q)
    return logprobs, lp, ent

@_helper
def _dlogits_block(logprobs, targets, dlp, dent, inv_temp, lo, m, dlogits, P, fb, q):
    """Rows lo..lo+m of d(sum dlp*logp + dent*entropy)/dlogits (see `_dlogits`)."""
    Vo = logprobs.shape[1]
    Lb = logprobs.reshape(logprobs.shape[0] * Vo)[lo * Vo:(lo + m) * Vo]
    _vexp(Lb, P, fb, q, m * Vo)
    for i in range(m):
        n = lo + i
        ent = 0.0
        for c in range(Vo):
            ent -= P[i * Vo + c] * logprobs[n, c]
        a = dlp[n]
        e = dent[n]
        for c in range(Vo):
            p = P[i * Vo + c]
            dlogits[n, c] = (-p * a - e * p * (logprobs[n, c] + ent)) * inv_temp
        dlogits[n, targets[n]] += a * inv_temp

@_kernel(parallel=True, contract=True)
def _lm_backward_rows(H, W2T, logprobs, targets, dlp, dent, inv_temp):
    """Row-wise part of the LM head's backward: dlogits (N, Vo), and dpre = (dlogits @ W2^T) * (1 - H^2) (N, h)."""
    N, h = H.shape
    Vo = logprobs.shape[1]
    dlogits = np.empty((N, Vo))
    dpre = np.empty((N, h))
    nb = (N + ROW_BLOCK - 1) // ROW_BLOCK
    for b in prange(nb):
        lo = b * ROW_BLOCK
        m = min(N, lo + ROW_BLOCK) - lo
        P = np.empty(m * Vo)
        fb = np.empty(m * Vo)
        q = np.empty(m * Vo)
        _dlogits_block(logprobs, targets, dlp, dent, inv_temp, lo, m, dlogits, P, fb, q)
        m4 = lo + m - m % 4
        for n0 in range(lo, m4, 4):                # four rows share each loaded row of W2^T
            d0 = dpre[n0]
            d1 = dpre[n0 + 1]
            d2 = dpre[n0 + 2]
            d3 = dpre[n0 + 3]
            for f in range(h):
                d0[f] = 0.0
                d1[f] = 0.0
                d2[f] = 0.0
                d3[f] = 0.0
            for c in range(Vo):
                g0 = dlogits[n0, c]
                g1 = dlogits[n0 + 1, c]
                g2 = dlogits[n0 + 2, c]
                g3 = dlogits[n0 + 3, c]
                Wc = W2T[c]
                for f in range(h):
                    w = Wc[f]
                    d0[f] += g0 * w
                    d1[f] += g1 * w
                    d2[f] += g2 * w
                    d3[f] += g3 * w
        for n in range(m4, lo + m):
            dn = dpre[n]
            for f in range(h):
                dn[f] = 0.0
            for c in range(Vo):
                g = dlogits[n, c]
                Wc = W2T[c]
                for f in range(h):
                    dn[f] += g * Wc[f]
        for n in range(lo, lo + m):
            dn = dpre[n]
            Hn = H[n]
            for f in range(h):
                dn[f] *= 1.0 - Hn[f] * Hn[f]
    return dlogits, dpre

@_kernel(parallel=True, contract=True)
def _dlogits_rows(logprobs, targets, dlp, dent, inv_temp):
    """dlogits alone (the bigram's LM head), in parallel row blocks."""
    N, Vo = logprobs.shape
    dlogits = np.empty((N, Vo))
    nb = (N + ROW_BLOCK - 1) // ROW_BLOCK
    for b in prange(nb):
        lo = b * ROW_BLOCK
        m = min(N, lo + ROW_BLOCK) - lo
        P = np.empty(m * Vo)
        fb = np.empty(m * Vo)
        q = np.empty(m * Vo)
        _dlogits_block(logprobs, targets, dlp, dent, inv_temp, lo, m, dlogits, P, fb, q)
    return dlogits

@_kernel(parallel=True, contract=True)
def _weighted_row_sums(G, H):
    """out[c, f] = sum_n G[n, c] H[n, f]  -> (C, h) (= (H^T G)^T), column-blocked over f, rows summed in order."""
    N, h = H.shape
    C = G.shape[1]
    out = np.zeros((C, h))
    nb = (h + COL_BLOCK - 1) // COL_BLOCK
    for b in prange(nb):
        lo = b * COL_BLOCK
        w = min(h, lo + COL_BLOCK) - lo
        N4 = N - N % 4
        for n in range(0, N4, 4):                  # four rows per pass over out (the same order of additions)
            H0 = H[n, lo:lo + w]
            H1 = H[n + 1, lo:lo + w]
            H2 = H[n + 2, lo:lo + w]
            H3 = H[n + 3, lo:lo + w]
            for c in range(C):
                g0 = G[n, c]
                g1 = G[n + 1, c]
                g2 = G[n + 2, c]
                g3 = G[n + 3, c]
                oc = out[c, lo:lo + w]
                for f in range(w):
                    oc[f] = (((oc[f] + g0 * H0[f]) + g1 * H1[f]) + g2 * H2[f]) + g3 * H3[f]
        for n in range(N4, N):
            Hn = H[n, lo:lo + w]
            for c in range(C):
                g = G[n, c]
                oc = out[c, lo:lo + w]
                for f in range(w):
                    oc[f] += g * Hn[f]
    return out

@_kernel(parallel=True, contract=True)
def _col_sums(G):
    """out[c] = sum_n G[n, c], rows in order (column-blocked)."""
    N, C = G.shape
    out = np.zeros(C)
    nb = (C + COL_BLOCK - 1) // COL_BLOCK
    for b in prange(nb):
        lo = b * COL_BLOCK
        w = min(C, lo + COL_BLOCK) - lo
        oc = out[lo:lo + w]
        for n in range(N):
            Gn = G[n, lo:lo + w]
            for c in range(w):
                oc[c] += Gn[c]
    return out

@_kernel(parallel=True, contract=True)
def _mlp_trunk_backward(X, dpre, emb, W1, W1T):
    """Trunk gradients from dpre (N, h) = dL/d(pre-activation): (demb (V, d), dW1 (k*d, h), db1 (h,)).
    W1T (k, h, d) is W1 with each slot's (d, h) block transposed (so demb's loop runs along d).

    S[j*V + v] = sum_{n: X[n, j] = v} dpre[n] (the embedding scatter; one task per slot j, rows in order), then
    dW1[j*d + c] = sum_v emb[v, c] S[j*V + v] and demb[v, c] = sum_j S[j*V + v] . W1[j*d + c].
    """
    N, h = dpre.shape
    V, d = emb.shape
    k = X.shape[1]
    S = np.zeros((k * V, h))
    db1 = np.zeros(h)
    for task in prange(k + 1):                     # task j < k scatters window slot j; task k sums db1
        if task == k:
            for n in range(N):
                dn = dpre[n]
                for f in range(h):
                    db1[f] += dn[f]
        else:
            for n in range(N):                     # rows in order: a fixed summation order per S row
                dn = dpre[n]
                Sr = S[task * V + X[n, task]]
                for f in range(h):
                    Sr[f] += dn[f]
    dW1 = np.zeros((k * d, h))
    for jc in prange(k * d):
        j = jc // d
        c = jc - j * d
        out = dW1[jc]
        for v in range(V):
            e = emb[v, c]
            Sr = S[j * V + v]
            for f in range(h):
                out[f] += e * Sr[f]
    demb = np.zeros((V, d))
    for v in prange(V):                            # demb[v, :] = sum_j sum_f S[j*V + v, f] W1T[j, f, :], in order
        out = demb[v]
        for j in range(k):
            Sr = S[j * V + v]
            for f in range(h):
                a = Sr[f]
                Wt = W1T[j, f]
                for c in range(d):
                    out[c] += a * Wt[c]
    return demb, dW1, db1

@_kernel(parallel=True, contract=True)
def _rows_dot(H, w):
    """out[n] = H[n] . w  (N,), eight fixed partial sums per row (a fixed order)."""
    N, h = H.shape
    out = np.empty(N)
    h8 = h - h % 8
    for n in prange(N):
        acc = np.zeros(8)
        for f0 in range(0, h8, 8):
            for l in range(8):
                acc[l] += H[n, f0 + l] * w[f0 + l]
        s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
        for f in range(h8, h):
            s += H[n, f] * w[f]
        out[n] = s
    return out

@_kernel(parallel=True, contract=True)
def _scalar_head_backward(H, ds, w):
    """A scalar head s[n] = H[n] . w: (dw (h,) = sum_n ds[n] H[n] in row order, dpre = ds w (1 - H^2) (N, h))."""
    N, h = H.shape
    dpre = np.empty((N, h))
    for n in prange(N):
        a = ds[n]
        dn = dpre[n]
        Hn = H[n]
        for f in range(h):
            dn[f] = (a * w[f]) * (1.0 - Hn[f] * Hn[f])
    dw = np.zeros(h)
    for n in range(N):                             # serial, rows in order (N*h multiply-adds: cheap)
        a = ds[n]
        Hn = H[n]
        for f in range(h):
            dw[f] += a * Hn[f]
    return dw, dpre

@_helper
def _scatter_rows(idx, G, out):
    """out[idx[n]] += G[n], serially in row order (a bigram table's gradient)."""
    for n in range(idx.shape[0]):
        for c in range(G.shape[1]):
            out[idx[n], c] += G[n, c]

@_kernel(parallel=True, contract=True)
def _sample_step(tokens, pos, alive, u, P, b1, W2p, b2p, Vo, V, k, prefix, inv_temp, bos, pad, out_offset, eos,
                 logp, mask):
    """One autoregressive step of the MLP for every live row b: the window ending at pos-1 (BOS-padded 'recent'
    window, or the PAD-filled 'prefix' window), trunk, LM head, the inverse-CDF draw with u[b] (as
    `_categorical`), then tokens[b, pos], logp[b, pos], mask[b, pos] and alive[b] updated in place."""
    B = tokens.shape[0]
    h = b1.shape[0]
    Vp = W2p.shape[1]
    nb = (B + ROW_BLOCK - 1) // ROW_BLOCK
    empty = np.empty(0, dtype=np.int64)
    for blk in prange(nb):
        lo = blk * ROW_BLOCK
        m = min(B, lo + ROW_BLOCK) - lo
        Xb = np.empty((m, k), dtype=np.int64)
        for i in range(m):
            b = lo + i
            e = pos - 1
            for j in range(k):
                if prefix:
                    Xb[i, j] = tokens[b, j] if j <= e else pad
                else:
                    p = e - k + 1 + j
                    Xb[i, j] = bos if p < 0 else tokens[b, p]
        n_el = m * max(h, Vp)
        fb = np.empty(n_el)
        q = np.empty(n_el)
        Hb = np.empty(m * h)
        _hidden_block(Xb, P, b1, V, 0, m, Hb, fb, q)
        Z = np.empty(m * Vp)
        _logits_block(Hb, W2p, b2p, m, Z)
        lps = np.empty((m, Vo))
        lpt = np.empty(m)
        ent = np.empty(m)
        Y = np.empty(m * Vo)
        E = np.empty(m * Vo)
        _log_softmax_block(Z, Vp, Vo, m, inv_temp, 0, empty, lps, lpt, ent, Y, E, fb, q)
        for i in range(m):
            b = lo + i
            if not alive[b]:
                continue
            c = 0.0
            pick = Vo - 1  # round-off guard: cumsum may end a hair below 1
            for j in range(Vo):
                c += np.exp(lps[i, j])
                if u[b] < c:
                    pick = j
                    break
            tokens[b, pos] = pick + out_offset
            logp[b, pos] = lps[i, pick]
            mask[b, pos] = True
            if pick + out_offset == eos:
                alive[b] = False
