"""The fast path's forward kernels: distinct windows, the first-layer table, and the trunk with its heads.

The fast path's algebra. The MLP's first layer reads one-hot tokens, so E @ W1 = sum_j emb[x_j] @ W1_j with
W1_j = W1[j*d:(j+1)*d]. The table P[j*V + v] = emb[v] @ W1_j (k*V rows of h) is computed once per call, and
        pre[n] = b1 + sum_j P[j*V + x_nj]                    (N, h)   k row additions instead of a (k*d, h) product
Backward, with S[j*V + v] = sum_{n: x_nj = v} dpre[n]  (the embedding scatter, k*V rows of h):
        dW1_j = emb^T S_j        demb[v] = sum_j S_j[v] @ W1_j^T        db1 = sum_n dpre[n]
The dense formulation costs N*k*d*h multiply-adds per product; this one k*V*d*h + N*k*h (V = 16 << N).

Distinct windows. A row's features and next-token distribution depend on its window alone, and a batch repeats
windows: the G completions of a prompt share their first windows, and small vocabularies repeat the rest (a pref
rollout: 514 rows, 83 distinct policy windows, 96 distinct critic windows; the reference configuration of the
benchmark: 916 rows, 749 distinct). The fast path runs the trunk and the heads once per distinct window
(`_distinct_rows`) and the backward on the per-window sums of the rows' head gradients (backward.py): the same
mathematics, summed in another order than the reference path (equal to it to 1e-12).

Every row goes through the same operations wherever it sits in a block or a chunk (the LM head's loops across
the rows of a block do the same operations per row), so a window's numbers do not depend on which other windows
share its call.
"""
from __future__ import annotations

import numpy as np

from .jit import _helper, _kernel, _part
from .vmath import _vexp, _vtanh

ROW_BLOCK = 32
"""Rows processed together: the tanh and exp loops run over a whole block, the LM head across its rows."""


@_helper
def _find_or_add(table, Xu, count, win):
    """The index of window `win` among the distinct windows Xu[:count[0]], adding it as Xu[count[0]] (and counting
    it) when new: an open-addressing hash table (`_hash_table`). The count is an array, not an int argument:
    numba would compile this helper twice, for the literal 0 and for int64."""
    k = win.shape[0]
    hsh = 0
    for j in range(k):
        hsh = hsh * 1000003 + win[j]
    mask = table.shape[0] - 1
    slot = (hsh ^ (hsh >> 29)) & mask
    while True:
        u = table[slot]
        if u < 0:
            u = count[0]
            table[slot] = u
            for j in range(k):
                Xu[u, j] = win[j]
            count[0] = u + 1
            return u
        same = True
        for j in range(k):
            if Xu[u, j] != win[j]:
                same = False
                break
        if same:
            return u
        slot = (slot + 1) & mask


@_helper
def _hash_table(rows):
    """An empty table for the windows of `rows` (an array of that many entries): a power of two >= 2 len(rows),
    -1 for empty."""
    size = 16
    while size < 2 * rows.shape[0]:
        size *= 2
    return np.full(size, -1, dtype=np.int64)


@_kernel()
def _distinct_rows(X):
    """(Xu, of_row): the distinct rows of X (N, k) in order of first appearance, and of_row[n] = the index of row
    n's among them."""
    N, k = X.shape
    Xu = np.empty((N, k), dtype=np.int64)
    of_row = np.empty(N, dtype=np.int64)
    table = _hash_table(of_row)
    count = np.zeros(1, dtype=np.int64)
    for n in range(N):
        of_row[n] = _find_or_add(table, Xu, count, X[n])
    return Xu[:count[0]].copy(), of_row


@_kernel()
def _memo_index(table, Xm, count, Xu):
    """idx (U,): idx[u] = the index of window Xu[u] among the memo's windows Xm[:count[0]] (`_find_or_add`'s hash
    table `table`), appending the windows it lacks (count grows; Xm must have room for them)."""
    U = Xu.shape[0]
    idx = np.empty(U, dtype=np.int64)
    for u in range(U):
        idx[u] = _find_or_add(table, Xm, count, Xu[u])
    return idx


@_kernel(contract=True)
def _mlp_table(emb, W1):
    """P[j*V + v] = emb[v] @ W1[j*d:(j+1)*d]  -> (k*V, h): every window slot's contribution of every token."""
    V, d = emb.shape
    kd, h = W1.shape
    k = kd // d
    P = np.zeros((k * V, h))
    d4 = d - d % 4
    for jv in range(k * V):
        j = jv // V
        v = jv - j * V
        Pr = P[jv]
        for c in range(0, d4, 4):                  # four c per pass over Pr (the same order of additions)
            e0 = emb[v, c]
            e1 = emb[v, c + 1]
            e2 = emb[v, c + 2]
            e3 = emb[v, c + 3]
            W0 = W1[j * d + c]
            W1_ = W1[j * d + c + 1]
            W2 = W1[j * d + c + 2]
            W3 = W1[j * d + c + 3]
            for f in range(h):
                Pr[f] = (((Pr[f] + e0 * W0[f]) + e1 * W1_[f]) + e2 * W2[f]) + e3 * W3[f]
        for c in range(d4, d):
            e = emb[v, c]
            Wr = W1[j * d + c]
            for f in range(h):
                Pr[f] += e * Wr[f]
    return P


@_helper
def _hidden_block(X, P, b1, V, lo, m, Hb, fb, q):
    """Hb[i] = tanh(b1 + sum_j P[j*V + X[lo+i, j]]) for the m rows lo.. (Hb flat, m*h)."""
    k = X.shape[1]
    h = b1.shape[0]
    k4 = k - k % 4
    for i in range(m):
        row = Hb[i * h:(i + 1) * h]
        x = X[lo + i]
        for f in range(h):
            row[f] = b1[f]
        for j in range(0, k4, 4):                  # four slots per pass over the row (the same additions)
            P0 = P[j * V + x[j]]
            P1 = P[(j + 1) * V + x[j + 1]]
            P2 = P[(j + 2) * V + x[j + 2]]
            P3 = P[(j + 3) * V + x[j + 3]]
            for f in range(h):
                row[f] = (((row[f] + P0[f]) + P1[f]) + P2[f]) + P3[f]
        for j in range(k4, k):
            Pr = P[j * V + x[j]]
            for f in range(h):
                row[f] += Pr[f]
    _vtanh(Hb, fb, q, m * h)


@_helper
def _lm_head_block(Hb, m, W2, b2, inv_temp, lo, logprobs, ent, Ht, Zt, E, fb, q):
    """The LM head of the m rows lo.. (features Hb flat, m*h): logprobs[n] = log_softmax((Hb[i] @ W2 + b2) *
    inv_temp), ent[n] its entropy. Computed across rows: Ht (h, >= m) holds the features transposed and Zt, E
    (Vo, >= m) the logits and their exps, so every inner loop runs over the rows of the block, long enough to
    vectorise (V_out = 7 columns do not: 2.5x faster, measured). The numbers of a row-by-row loop."""
    h = W2.shape[0]
    for i in range(m):
        for f in range(h):
            Ht[f, i] = Hb[i * h + f]
    _logits_across_rows(Ht, m, W2, b2, inv_temp, Zt)
    _log_softmax_across_rows(Zt, m, W2.shape[1], lo, logprobs, ent, E, fb, q)


@_part
def _logits_across_rows(Ht, m, W2, b2, inv_temp, Zt):
    """Zt[c, i] = (b2[c] + sum_f Ht[f, i] W2[f, c]) * inv_temp for i < m, the sum over f in order, four f per pass
    over the rows (the same additions). Two columns per pass ran 1.2x faster but compiled 0.7 s longer (measured):
    not worth it on a first run."""
    h, Vo = W2.shape
    h4 = h - h % 4
    for c in range(Vo):
        z = Zt[c]
        bc = b2[c]
        for i in range(m):
            z[i] = bc
        for f in range(0, h4, 4):
            w0 = W2[f, c]
            w1 = W2[f + 1, c]
            w2 = W2[f + 2, c]
            w3 = W2[f + 3, c]
            g0 = Ht[f]
            g1 = Ht[f + 1]
            g2 = Ht[f + 2]
            g3 = Ht[f + 3]
            for i in range(m):
                z[i] = (((z[i] + g0[i] * w0) + g1[i] * w1) + g2[i] * w2) + g3[i] * w3
        for f in range(h4, h):
            w = W2[f, c]
            g = Ht[f]
            for i in range(m):
                z[i] += g[i] * w
        for i in range(m):
            z[i] *= inv_temp


@_part
def _log_softmax_across_rows(Zt, m, Vo, lo, logprobs, ent, E, fb, q):
    """Rows lo..lo+m: logprobs[lo+i] = the log-softmax of the logits Zt[:, i], ent its entropy; the max, the sum
    of exps and the entropy over c in order, as a row-by-row loop would (E, fb, q: scratch)."""
    mx = fb[:m]
    for i in range(m):
        mx[i] = Zt[0, i]
    for c in range(1, Vo):
        z = Zt[c]
        for i in range(m):
            if z[i] > mx[i]:
                mx[i] = z[i]
    for c in range(Vo):
        z = Zt[c]
        for i in range(m):
            z[i] = z[i] - mx[i]
    for c in range(Vo):
        _vexp(Zt[c], E[c], fb, q, m)
    s = q[:m]                                     # q is free again once the last exp is done
    for i in range(m):
        s[i] = 0.0
    for c in range(Vo):
        e = E[c]
        for i in range(m):
            s[i] += e[i]
    for i in range(m):
        ls = np.log(s[i])
        inv_s = 1.0 / s[i]
        hh = 0.0
        n = lo + i
        for c in range(Vo):
            lpc = Zt[c, i] - ls
            logprobs[n, c] = lpc
            hh -= (E[c, i] * inv_s) * lpc
        ent[n] = hh


@_helper
def _log_softmax_block(Z, Vp, Vo, m, inv_temp, lo, logprobs, ent, Y, E, fb, q):
    """Rows lo..lo+m: logprobs = log_softmax(Z * inv_temp) (the first Vo of Vp columns), ent = -sum p log p."""
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


@_helper
def _dot8(x, w):
    """x . w with eight partial sums in a fixed order (eight scalars: 2x faster than an array of eight)."""
    h = w.shape[0]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    h8 = h - h % 8
    for f in range(0, h8, 8):
        a0 += x[f] * w[f]
        a1 += x[f + 1] * w[f + 1]
        a2 += x[f + 2] * w[f + 2]
        a3 += x[f + 3] * w[f + 3]
        a4 += x[f + 4] * w[f + 4]
        a5 += x[f + 5] * w[f + 5]
        a6 += x[f + 6] * w[f + 6]
        a7 += x[f + 7] * w[f + 7]
    s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    for f in range(h8, h):
        s += x[f] * w[f]
    return s


@_kernel(contract=True)
def _mlp_rows(X, P, b1, V, W2, b2, inv_temp, w, lo, hi, H, logprobs, ent, s):
    """Rows lo..hi of the MLP: features H[n] = tanh(b1 + sum_j P[j*V + X[n, j]]), then the heads asked for:
    the LM head when logprobs (N, Vo) has columns (logprobs = log_softmax((H W2 + b2) * inv_temp), ent its
    entropy), the scalar head s = H . w when w is not empty. Writes into H, logprobs, ent, s."""
    h = b1.shape[0]
    Vo = logprobs.shape[1]
    R = ROW_BLOCK
    fb = np.empty(R * h)
    q = np.empty(R * h)
    Ht = np.empty((h, R))
    Zt = np.empty((Vo, R))
    E = np.empty((Vo, R))
    Hf = H.reshape(H.shape[0] * h)
    for b0 in range(lo, hi, R):
        m = min(hi, b0 + R) - b0
        Hb = Hf[b0 * h:(b0 + m) * h]
        _hidden_block(X, P, b1, V, b0, m, Hb, fb, q)
        if Vo > 0:
            _lm_head_block(Hb, m, W2, b2, inv_temp, b0, logprobs, ent, Ht, Zt, E, fb, q)
        if w.shape[0] > 0:
            for i in range(m):
                s[b0 + i] = _dot8(Hb[i * h:(i + 1) * h], w)


@_kernel(contract=True)
def _logits_forward(logits, inv_temp):
    """(logprobs (N, Vo), entropy (N,)) of given logits (the bigram: rows of its table)."""
    N, Vo = logits.shape
    logprobs = np.empty((N, Vo))
    ent = np.empty(N)
    R = ROW_BLOCK
    Y = np.empty(R * Vo)
    E = np.empty(R * Vo)
    fb = np.empty(R * Vo)
    q = np.empty(R * Vo)
    Lf = logits.reshape(N * Vo)
    for lo in range(0, N, R):
        m = min(N, lo + R) - lo
        _log_softmax_block(Lf[lo * Vo:(lo + m) * Vo], Vo, Vo, m, inv_temp, lo, logprobs, ent, Y, E, fb, q)
    return logprobs, ent
