"""TinyLM's fast path: the model-side half of the fused numba kernels (toyrlhf/kernels/), as a mixin of TinyLM.

Each method prepares what a kernel reads (the first-layer table, the zero-padded LM head, the transposed W1),
calls it and adds its output into the named gradients; `model.py` dispatches to these when `TinyLM.fast` is set.
"""
from __future__ import annotations

import numpy as np

from . import kernels
from .tokens import BOS, EOS, OUT_OFFSET, PAD


class FastPath:
    """The `_fast_*` methods of TinyLM (self is a TinyLM: config, params)."""

    def _fast_trunk(self, X: np.ndarray):
        """Features H (N, h) of the windows X through the fused kernels (None for the bigram: its features are
        the one-hot code of X[:, -1], used as a row index instead), and the fast path's trunk cache."""
        if self.config.arch == "bigram":
            return None, ("fast", np.ascontiguousarray(X[:, -1]), None)
        p = self.params
        H = kernels._mlp_hidden(X, self._table(), p["b1"], self.config.vocab_size)   # (N, h)
        return H, ("fast", X, H)

    def _table(self) -> np.ndarray:
        """kernels._mlp_table (k*V, h) of the current emb and W1, reused while they are unchanged (a frozen
        reference, or several forwards between two optimizer steps): comparing them costs less than rebuilding."""
        p = self.params
        cached = getattr(self, "_table_cache", None)
        if cached is not None and np.array_equal(cached[0], p["emb"]) and np.array_equal(cached[1], p["W1"]):
            return cached[2]
        P = kernels._mlp_table(p["emb"], p["W1"])                      # (k*V, h) window slot x token -> pre
        self._table_cache = (p["emb"].copy(), p["W1"].copy(), P)
        return P

    def _padded_head(self):
        """W2 (h, V_out) and b2 zero-padded to a multiple of 4 columns (whole AVX2 vectors in the kernels)."""
        W2 = self.params["W2"]
        Vo = W2.shape[1]
        Vp = -(-Vo // 4) * 4
        W2p = np.zeros((W2.shape[0], Vp))
        W2p[:, :Vo] = W2
        b2p = np.zeros(Vp)
        b2p[:Vo] = self.params["b2"]
        return W2p, b2p

    def _fast_logprobs(self, X, H, inv_temp, targets):
        """(logprobs (N, V_out), logp of targets (N,), entropy (N,)) of the LM head."""
        if H is None:                                                  # bigram: logits = W2[x_k]
            return kernels._logits_forward(self.params["W2"][X[:, -1]], inv_temp, targets)
        W2p, b2p = self._padded_head()
        return kernels._lm_forward(H, W2p, b2p, self.config.n_out, inv_temp, targets)

    def _fast_trunk_backward(self, dpre, tcache, grads) -> None:
        _, X, _ = tcache
        W1, k, d = self.params["W1"], self.config.context, self.config.embed
        W1T = np.ascontiguousarray(W1.reshape(k, d, -1).transpose(0, 2, 1))      # (k, h, d)
        demb, dW1, db1 = kernels._mlp_trunk_backward(X, dpre, self.params["emb"], W1, W1T)
        grads["emb"] += demb
        grads["W1"] += dW1
        grads["b1"] += db1

    def _fast_logp_backward(self, logprobs, targets, dlp, dent, inv_temp, H, tcache, grads) -> None:
        if H is None:                                                  # bigram: scatter dlogits into W2's rows
            dlogits = kernels._dlogits_rows(logprobs, targets, dlp, dent, inv_temp)
            kernels._scatter_rows(tcache[1], dlogits, grads["W2"])
            return
        W2T = np.ascontiguousarray(self.params["W2"].T)                # (V_out, h)
        dlogits, dpre = kernels._lm_backward_rows(H, W2T, logprobs, targets, dlp, dent, inv_temp)
        grads["W2"] += kernels._weighted_row_sums(dlogits, H).T        # (h, V_out)
        grads["b2"] += kernels._col_sums(dlogits)
        self._fast_trunk_backward(dpre, tcache, grads)

    def _fast_scalar_head(self, X, H, w: str) -> np.ndarray:
        if H is None:                                                  # bigram: w[x_k]
            return self.params[w][X[:, -1]]
        return kernels._rows_dot(H, self.params[w])

    def _fast_scalar_head_backward(self, ds, H, tcache, w: str, grads) -> None:
        if H is None:
            grads[w] += np.bincount(tcache[1], weights=ds, minlength=self.config.vocab_size)
            return
        dw, dpre = kernels._scalar_head_backward(H, ds, self.params[w])
        grads[w] += dw
        self._fast_trunk_backward(dpre, tcache, grads)

    def _fast_sample(self, tokens, mask, logp, alive, P, T, rng, temperature) -> None:
        """`sample` for the MLP: one fused kernel per token step (window, trunk, head, draw, bookkeeping), the
        same uniforms from `rng` as the reference loop; fills tokens, mask and logp in place."""
        cfg, p = self.config, self.params
        B = tokens.shape[0]
        table = self._table()
        W2p, b2p = self._padded_head()
        prefix = cfg.align == "prefix"
        for t in range(T):
            if prefix and P + t - 1 >= cfg.window:
                self.contexts(tokens, np.zeros(1, np.int64), np.full(1, P + t - 1))   # raises the ValueError
            u = rng.random(B)
            kernels._sample_step(tokens, P + t, alive, u, table, p["b1"], W2p, b2p, cfg.n_out, cfg.vocab_size,
                                 cfg.window, prefix, 1.0 / temperature, BOS, PAD, OUT_OFFSET, EOS, logp, mask)
            if not alive.any():
                break
