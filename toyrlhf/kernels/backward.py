"""The fast path's backward kernels, on the distinct windows of a batch (forward.py explains the algebra).

A head's gradient reaches the trunk only through the rows' windows, so the rows of one window are summed first:
G[u] = sum_{n: window(n) = u} dL/dlogits[n] (or dL/ds[n] for a scalar head), exact algebra that turns N rows into
U distinct ones. Then, on the U windows:
    rows:     dpre[u] = (G[u] @ W^T) * (1 - H[u]^2)                           `_head_rows_backward` (row chunks)
    columns:  dW^T = G^T H, db1 = sum_u dpre[u], the scatter S, dW1 = emb^T S    `_trunk_weight_cols` (column chunks)
    last:     demb[v] = sum_j S[j*V + v] @ W1_j^T                               `_emb_grad` (one call: V*k*h*d)
Every sum over rows runs in row order inside one column chunk, so the chunking changes no bit (pool.py).
"""
from __future__ import annotations

import numpy as np

from .jit import _kernel
from .vmath import _vexp


@_kernel(contract=True)
def _grouped_dlogits(of_row, targets, dlp, dent, logprobs, ent, inv_temp):
    """G (U, Vo): the gradient of sum_n dlp[n] log p_n(target_n) + dent[n] H(p_n) in the logits of the U distinct
    windows, rows n of window u = of_row[n] summed (p = exp(logprobs[u]), H = ent[u], T = 1/inv_temp):

        G[u, c] = (sum_n dlp[n] 1[c = target_n] - a_u p_c - e_u p_c (log p_c + H)) / T,
        a_u = sum_n dlp[n],   e_u = sum_n dent[n]
    """
    U, Vo = logprobs.shape
    G = np.zeros((U, Vo))
    a = np.zeros(U)
    e = np.zeros(U)
    for n in range(of_row.shape[0]):
        u = of_row[n]
        a[u] += dlp[n]
        e[u] += dent[n]
        G[u, targets[n]] += dlp[n]
    m = U * Vo
    p = np.empty(m)
    fb = np.empty(m)
    q = np.empty(m)
    _vexp(logprobs.reshape(m), p, fb, q, m)
    for u in range(U):
        for c in range(Vo):
            pc = p[u * Vo + c]
            G[u, c] = (G[u, c] - a[u] * pc - e[u] * pc * (logprobs[u, c] + ent[u])) * inv_temp
    return G


@_kernel(contract=True)
def _head_rows_backward(H, WT, G, lo, hi, dpre):
    """dpre[n] = (G[n] @ WT) * (1 - H[n]^2) for rows lo..hi: the LM head (G = dlogits (U, Vo), WT = W2^T (Vo, h))
    or a scalar head (G (U, 1), WT = w (1, h)). Four rows share each loaded row of WT, four columns of G per pass
    over them (1.3-1.6x, measured); every element sums over the columns of G in order, the same operations for
    grouped and remainder rows and columns."""
    h = H.shape[1]
    C = G.shape[1]
    C4 = C - C % 4
    m4 = hi - (hi - lo) % 4
    for n0 in range(lo, m4, 4):
        d0 = dpre[n0]
        d1 = dpre[n0 + 1]
        d2 = dpre[n0 + 2]
        d3 = dpre[n0 + 3]
        for f in range(h):
            d0[f] = 0.0
            d1[f] = 0.0
            d2[f] = 0.0
            d3[f] = 0.0
        for c in range(0, C4, 4):
            W0 = WT[c]
            W1 = WT[c + 1]
            W2 = WT[c + 2]
            W3 = WT[c + 3]
            a0, a1, a2, a3 = G[n0, c], G[n0, c + 1], G[n0, c + 2], G[n0, c + 3]
            b0, b1, b2, b3 = G[n0 + 1, c], G[n0 + 1, c + 1], G[n0 + 1, c + 2], G[n0 + 1, c + 3]
            e0, e1, e2, e3 = G[n0 + 2, c], G[n0 + 2, c + 1], G[n0 + 2, c + 2], G[n0 + 2, c + 3]
            g0, g1, g2, g3 = G[n0 + 3, c], G[n0 + 3, c + 1], G[n0 + 3, c + 2], G[n0 + 3, c + 3]
            for f in range(h):
                w0 = W0[f]
                w1 = W1[f]
                w2 = W2[f]
                w3 = W3[f]
                d0[f] = (((d0[f] + a0 * w0) + a1 * w1) + a2 * w2) + a3 * w3
                d1[f] = (((d1[f] + b0 * w0) + b1 * w1) + b2 * w2) + b3 * w3
                d2[f] = (((d2[f] + e0 * w0) + e1 * w1) + e2 * w2) + e3 * w3
                d3[f] = (((d3[f] + g0 * w0) + g1 * w1) + g2 * w2) + g3 * w3
        for c in range(C4, C):
            Wc = WT[c]
            a0 = G[n0, c]
            b0 = G[n0 + 1, c]
            e0 = G[n0 + 2, c]
            g0 = G[n0 + 3, c]
            for f in range(h):
                w = Wc[f]
                d0[f] += a0 * w
                d1[f] += b0 * w
                d2[f] += e0 * w
                d3[f] += g0 * w
    for n in range(m4, hi):
        dn = dpre[n]
        for f in range(h):
            dn[f] = 0.0
        for c in range(C):
            g = G[n, c]
            Wc = WT[c]
            for f in range(h):
                dn[f] += g * Wc[f]
    for n in range(lo, hi):
        dn = dpre[n]
        Hn = H[n]
        for f in range(h):
            dn[f] *= 1.0 - Hn[f] * Hn[f]


@_kernel(contract=True)
def _trunk_weight_cols(X, H, G, dpre, emb, V, lo, hi, dWT, S, db1, dW1):
    """Columns lo..hi (of h) of the weight gradients, every sum over the rows n in row order:
        dWT[c, f] += sum_n G[n, c] H[n, f]     (the head's weight, transposed: W2^T or w)
        db1[f] += sum_n dpre[n, f]
        S[j*V + X[n, j], f] += dpre[n, f]      (the embedding scatter, k*V rows)
        dW1[j*d + c, f] += sum_v emb[v, c] S[j*V + v, f]
    dWT, S, db1 and dW1 start at zero."""
    N = H.shape[0]
    C = G.shape[1]
    k = X.shape[1]
    d = emb.shape[1]
    w = hi - lo
    N4 = N - N % 4
    # column slices with 0-based loops: LLVM vectorises these, not range(lo, hi) over whole rows (4x, measured)
    for n in range(0, N4, 4):                      # four rows per pass over dWT (the same order of additions)
        H0 = H[n, lo:hi]
        H1 = H[n + 1, lo:hi]
        H2 = H[n + 2, lo:hi]
        H3 = H[n + 3, lo:hi]
        for c in range(C):
            g0 = G[n, c]
            g1 = G[n + 1, c]
            g2 = G[n + 2, c]
            g3 = G[n + 3, c]
            oc = dWT[c, lo:hi]
            for f in range(w):
                oc[f] = (((oc[f] + g0 * H0[f]) + g1 * H1[f]) + g2 * H2[f]) + g3 * H3[f]
    for n in range(N4, N):
        Hn = H[n, lo:hi]
        for c in range(C):
            g = G[n, c]
            oc = dWT[c, lo:hi]
            for f in range(w):
                oc[f] += g * Hn[f]
    b1 = db1[lo:hi]
    for n in range(N):
        dn = dpre[n, lo:hi]
        for f in range(w):
            b1[f] += dn[f]
        for j in range(k):
            Sr = S[j * V + X[n, j], lo:hi]
            for f in range(w):
                Sr[f] += dn[f]
    V4 = V - V % 4
    for jc in range(k * d):
        j = jc // d
        c = jc - j * d
        out = dW1[jc, lo:hi]
        for v in range(0, V4, 4):                  # four tokens per pass over out (the same additions)
            e0 = emb[v, c]
            e1 = emb[v + 1, c]
            e2 = emb[v + 2, c]
            e3 = emb[v + 3, c]
            S0 = S[j * V + v, lo:hi]
            S1 = S[j * V + v + 1, lo:hi]
            S2 = S[j * V + v + 2, lo:hi]
            S3 = S[j * V + v + 3, lo:hi]
            for f in range(w):
                out[f] = (((out[f] + e0 * S0[f]) + e1 * S1[f]) + e2 * S2[f]) + e3 * S3[f]
        for v in range(V4, V):
            e = emb[v, c]
            Sr = S[j * V + v, lo:hi]
            for f in range(w):
                out[f] += e * Sr[f]


@_kernel(contract=True)
def _emb_grad(S, W1T, V):
    """demb (V, d): demb[v, :] = sum_j sum_f S[j*V + v, f] W1T[j, f, :], in that order (W1T (k, h, d) is W1 with each
    slot's block transposed, so the inner loop runs along d)."""
    k, h, d = W1T.shape
    demb = np.zeros((V, d))
    h4 = h - h % 4
    for v in range(V):
        out = demb[v]
        for j in range(k):
            Sr = S[j * V + v]
            for f in range(0, h4, 4):              # four f per pass over out (the same additions: 2x, measured)
                a0 = Sr[f]
                a1 = Sr[f + 1]
                a2 = Sr[f + 2]
                a3 = Sr[f + 3]
                W0 = W1T[j, f]
                W1 = W1T[j, f + 1]
                W2 = W1T[j, f + 2]
                W3 = W1T[j, f + 3]
                for c in range(d):
                    out[c] = (((out[c] + a0 * W0[c]) + a1 * W1[c]) + a2 * W2[c]) + a3 * W3[c]
            for f in range(h4, h):
                a = Sr[f]
                Wt = W1T[j, f]
                for c in range(d):
                    out[c] += a * Wt[c]
    return demb
