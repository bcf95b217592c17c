"""Autoregressive sampling of the MLP in one kernel call per chunk of rows, all token steps included."""
from __future__ import annotations

import numpy as np

from .forward import ROW_BLOCK, _find_or_add, _hash_table, _hidden_block, _lm_head_block
from .jit import _kernel, _part
from .reference import _fill_window


@_part
def _step_windows(tokens, rows, e, prefix, bos, pad, table, Xm, count, of_row, win):
    """The windows ending at position e of the sequences `rows`: of_row[i] = the index of row i's window among
    the chunk's windows so far, Xm[:count[0]], the new ones appended (table, win: `_find_or_add`'s)."""
    for i in range(rows.shape[0]):
        _fill_window(tokens, rows[i], e, prefix, bos, pad, win)
        of_row[i] = _find_or_add(table, Xm, count, win)


@_kernel(contract=True)
def _sample_rows(tokens, P0, T, U, P, b1, W2, b2, V, prefix, inv_temp, bos, pad, out_offset, eos, lo, hi,
                 logp, mask, alive):
    """Rows lo..hi of `TinyLM.sample`, for up to T token steps from position P0. At step t every live row b reads
    its window ending at P0+t-1 (the BOS-padded 'recent' window, or the PAD-filled 'prefix' window), the trunk
    and the LM head run once per window not met at an earlier step, and the row draws by inverse CDF with U[t, b]
    (as `reference._categorical`); tokens, logp, mask and alive are updated in place.

    Returns (steps, table, Xm, count, H, logprobs, ent): the number of steps at whose start a row of lo..hi was
    alive (the caller's generator consumed one uniform per row for each), and the chunk's distinct windows
    Xm[:count[0]] with their features, log-probs and entropies (a `model_memo.WindowMemo`'s arrays, with the
    `_find_or_add` hash table that indexes them)."""
    h, Vo = W2.shape
    k = P.shape[0] // V
    n = hi - lo
    R = ROW_BLOCK
    # room for twice the n*T windows the chunk can meet: the rollout's forward then finds them all in the memo
    # without growing it (its room check counts every window it brings as new: a copy of the memo per step)
    cap = max(1, 2 * n * T)
    rows = np.empty(cap, dtype=np.int64)          # [:n] used; cap long so that it sizes the hash table
    of_row = np.empty(n, dtype=np.int64)
    Xm = np.empty((cap, k), dtype=np.int64)
    Hm = np.empty((cap, h))
    lps = np.empty((cap, Vo))
    ent = np.empty(cap)
    table = _hash_table(rows)                    # int64, as _distinct_rows': one compiled signature
    win = np.empty(k, dtype=np.int64)
    count = np.zeros(1, dtype=np.int64)
    fb = np.empty(R * h)
    q = np.empty(R * h)
    Ht = np.empty((h, R))
    Zt = np.empty((Vo, R))
    E = np.empty((Vo, R))
    Hf = Hm.reshape(cap * h)
    steps = 0
    for t in range(T):
        na = 0
        for b in range(lo, hi):
            if alive[b]:
                rows[na] = b
                na += 1
        if na == 0:
            break
        steps = t + 1
        c0 = count[0]
        _step_windows(tokens, rows[:na], P0 + t - 1, prefix, bos, pad, table, Xm, count, of_row, win)
        c1 = count[0]
        for b0 in range(c0, c1, R):
            m = min(c1, b0 + R) - b0
            Hb = Hf[b0 * h:(b0 + m) * h]
            _hidden_block(Xm, P, b1, V, b0, m, Hb, fb, q)
            _lm_head_block(Hb, m, W2, b2, inv_temp, b0, lps, ent, Ht, Zt, E, fb, q)
        for i in range(na):
            b = rows[i]
            u = of_row[i]
            c = 0.0
            pick = Vo - 1  # round-off guard: cumsum may end a hair below 1
            for j in range(Vo):
                c += np.exp(lps[u, j])
                if U[t, b] < c:
                    pick = j
                    break
            tokens[b, P0 + t] = pick + out_offset
            logp[b, P0 + t] = lps[u, pick]
            mask[b, P0 + t] = True
            if pick + out_offset == eos:
                alive[b] = False
    return steps, table, Xm, count, Hm, lps, ent
