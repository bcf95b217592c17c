"""TinyLM's fast path: the model-side half of the fused numba kernels (toyrlhf/kernels/), as a mixin of TinyLM.

Each method prepares what a kernel reads (the distinct windows, the first-layer table, the transposed W1, both
made once per parameter version), shares the kernel's row or column chunks between threads (kernels.pool) and
adds its output into the named gradients; `model.py` dispatches to these when `TinyLM.fast` is set. The LM head
reads and fills the model's window memo (model_memo.py).

The trunk and the heads run once per distinct window of a batch (kernels/forward.py says why that is the same
mathematics); a row's outputs are its window's, looked up through `FastTrunk.of_row`.
"""
from __future__ import annotations

import itertools
import numpy as np

from . import kernels
from .kernels import pool, warmup
from .model_memo import WindowMemo
from .tokens import BOS, EOS, OUT_OFFSET, PAD

_E1 = np.zeros(0)
_VERSIONS = itertools.count(1)
"""Parameter versions (`FastPath._params_version`), unique in the process."""
_CACHES = ("_snapshot", "_table_cache", "_memo")
_E2 = np.zeros((0, 0))


def int_rows(X) -> np.ndarray:
    """X as a C-contiguous, writeable int64 array: a read-only array is another type to numba, one more compile
    of every kernel it reaches (measured: 1 s on a first run)."""
    X = np.ascontiguousarray(X, dtype=np.int64)
    return X if X.flags.writeable else X.copy()


class FastTrunk:
    """The fast path's trunk cache: the rows' windows X (N, k), their distinct windows Xu (U, k) and
    of_row (N,) (row n's window is Xu[of_row[n]]), the features H (U, h) of Xu (None for the bigram: its
    features are the one-hot code of the last token, used as a row index), and the LM head's entropy (U,) when a
    forward computed it. Features read from a memo are gathered (H = source[H_idx]) only when a backward asks."""

    __slots__ = ("X", "Xu", "of_row", "_H", "_H_idx", "ent")

    def __init__(self, X, Xu, of_row, H, ent=None, H_idx=None):
        self.X, self.Xu, self.of_row, self.ent = X, Xu, of_row, ent
        self._H, self._H_idx = H, H_idx

    @property
    def H(self):
        if self._H_idx is not None:
            self._H, self._H_idx = self._H[self._H_idx], None
        return self._H


class FastPath:
    """The `_fast_*` methods of TinyLM (self is a TinyLM: config, params)."""

    def _fast_forward(self, X: np.ndarray, inv_temp: float = 1.0, lm: bool = False, w: str | None = None):
        """(FastTrunk, logprobs (U, V_out), s (U,)) of the distinct windows of X (N, k): the LM head when `lm`
        (else logprobs is None), the scalar head with weight `w` when given (else s is None)."""
        X = int_rows(X)
        p = self.params
        if not warmup._started:
            warmup.start()                                             # a first run: compile in two processes
        if self.config.arch == "bigram":                               # logits = W2[x_k], s = w[x_k]
            Xu, of_row = kernels._distinct_rows(X[:, -1:])
            tc, logprobs, s = FastTrunk(X, Xu, of_row, None), None, None
            if lm:
                logprobs, tc.ent = kernels._logits_forward(p["W2"][Xu[:, 0]], inv_temp)
            if w is not None:
                s = p[w][Xu[:, 0]]
            return tc, logprobs, s
        Xu, of_row = kernels._distinct_rows(X)
        if lm and w is None:
            return self._memo_forward(X, Xu, of_row, inv_temp)
        U = Xu.shape[0]
        H = np.empty((U, self.config.hidden))
        W2, b2, logprobs, ent = _E2, _E1, _E2, _E1
        if lm:
            W2, b2 = p["W2"], p["b2"]
            logprobs, ent = np.empty((U, self.config.n_out)), np.empty(U)
        wv, s = (_E1, _E1) if w is None else (p[w], np.empty(U))
        pool.rows(kernels._mlp_rows, (Xu, self._table(), p["b1"], self.config.vocab_size, W2, b2, inv_temp, wv), U,
                  (H, logprobs, ent, s))
        tc = FastTrunk(X, Xu, of_row, H, ent if lm else None)
        return tc, (logprobs if lm else None), (s if w is not None else None)

    def _memo_forward(self, X, Xu, of_row, inv_temp: float):
        """`_fast_forward`'s LM head through the model's WindowMemo (model_memo.py): the windows computed before at
        these parameters and temperature are looked up, the others computed and added."""
        version = self._params_version()
        memo = getattr(self, "_memo", None)
        if memo is not None and memo.valid_for(version, inv_temp) and memo.room_for(len(Xu)):
            idx = memo.index(Xu, lambda Xn, H, lp, ent: self._lm_rows(Xn, inv_temp, H, lp, ent, version))
            return FastTrunk(X, Xu, of_row, memo.H, memo.ent[idx], H_idx=idx), memo.logprobs[idx], None
        U = Xu.shape[0]
        H, logprobs, ent = np.empty((U, self.config.hidden)), np.empty((U, self.config.n_out)), np.empty(U)
        self._lm_rows(Xu, inv_temp, H, logprobs, ent, version)
        if WindowMemo.fits(U):
            self._memo = WindowMemo.of_windows(version, inv_temp, Xu, H, logprobs, ent)
        return FastTrunk(X, Xu, of_row, H, ent), logprobs, None

    def _lm_rows(self, X, inv_temp: float, H, logprobs, ent, version: int) -> None:
        """H, logprobs, ent of the (distinct) windows X, written in place: the trunk and the LM head (version: the
        current `_params_version`)."""
        p = self.params
        P = self._trunk_tables(version)[0]
        pool.rows(kernels._mlp_rows, (X, P, p["b1"], self.config.vocab_size, p["W2"], p["b2"], inv_temp,
                                      _E1), X.shape[0], (H, logprobs, ent, _E1))

    def __getstate__(self):
        """Pickled without the fast path's caches: a parameter version means something only in its process."""
        return {k: v for k, v in self.__dict__.items() if k not in _CACHES}

    def _params_version(self) -> int:
        """A number that changes whenever self.flat does (an optimiser step, set_flat, a probe's perturbation:
        all in place), for the caches of this path: one comparison with a copy of the vector, and a new copy and
        number only after a change. Numbers are unique across models (a copy starts with none)."""
        snap = getattr(self, "_snapshot", None)
        if snap is not None and np.array_equal(snap[1], self.flat):
            return snap[0]
        version = next(_VERSIONS)
        self._snapshot = (version, self.flat.copy())
        return version

    def _table(self) -> np.ndarray:
        """kernels._mlp_table (k*V, h) of the current emb and W1, reused while the parameters are unchanged (a
        frozen reference, or several forwards between two optimizer steps)."""
        return self._trunk_tables()[0]

    def _trunk_tables(self, version: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(the first-layer table `_mlp_table` (k*V, h), W1 with each slot's block transposed (k, h, d)) of the
        current parameters, made once per parameter version (`_params_version()`, unless the caller has it)."""
        version = self._params_version() if version is None else version
        cached = getattr(self, "_table_cache", None)
        if cached is not None and cached[0] == version:
            return cached[1]
        p, cfg = self.params, self.config
        P = kernels._mlp_table(p["emb"], p["W1"])                      # (k*V, h) window slot x token -> pre
        W1T = np.ascontiguousarray(p["W1"].reshape(cfg.context, cfg.embed, cfg.hidden).transpose(0, 2, 1))
        self._table_cache = (version, (P, W1T))
        return P, W1T

    def _fast_backward(self, G: np.ndarray, WT: np.ndarray, tc: FastTrunk, grads) -> np.ndarray:
        """Trunk gradients (into grads) from G (U, C) = dL/d(head outputs) of the distinct windows, with the
        head's weight transposed WT (C, h); returns the head weight's gradient transposed, dWT (C, h)."""
        H = tc.H
        U, h = H.shape
        cfg = self.config
        k, d, V = cfg.context, cfg.embed, cfg.vocab_size
        dpre = np.empty((U, h))
        pool.rows(kernels._head_rows_backward, (H, WT, G), U, (dpre,))
        dWT, S, db1, dW1 = np.zeros((G.shape[1], h)), np.zeros((k * V, h)), np.zeros(h), np.zeros((k * d, h))
        pool.cols(kernels._trunk_weight_cols, (tc.Xu, H, G, dpre, self.params["emb"], V), h, U, (dWT, S, db1, dW1))
        W1T = self._trunk_tables()[1]                                 # (k, h, d)
        grads["emb"] += kernels._emb_grad(S, W1T, V)
        grads["W1"] += dW1
        grads["b1"] += db1
        return dWT

    def _fast_logp_backward(self, logprobs, targets, dlp, dent, inv_temp, tc: FastTrunk, grads) -> None:
        """The LM head's backward: the rows' dlogits summed per distinct window (kernels._grouped_dlogits)."""
        G = kernels._grouped_dlogits(tc.of_row, targets, dlp, dent, logprobs, tc.ent, inv_temp)    # (U, V_out)
        if tc.H is None:                                               # bigram: G into W2's rows (distinct)
            grads["W2"][tc.Xu[:, 0]] += G
            return
        grads["W2"] += self._fast_backward(G, np.ascontiguousarray(self.params["W2"].T), tc, grads).T
        grads["b2"] += G.sum(axis=0)

    def _fast_scalar_head_backward(self, ds, H, tcache: FastTrunk, w: str, grads) -> None:
        """A scalar head s = H . w: ds (N,) per row, summed per distinct window, into grads[w] and the trunk."""
        ds = np.ascontiguousarray(ds, dtype=np.float64)
        if H is None:
            grads[w] += np.bincount(tcache.X[:, -1], weights=ds, minlength=self.config.vocab_size)
            return
        G = np.bincount(tcache.of_row, weights=ds, minlength=H.shape[0])[:, None]     # (U, 1), rows in order
        grads[w] += self._fast_backward(G, self.params[w][None, :], tcache, grads)[0]

    def _fast_sample(self, tokens, mask, logp, alive, P, T, rng, temperature) -> None:
        """`sample` for the MLP: every token step in one kernel call per chunk of rows, with the uniforms the
        reference loop draws (one per row per step while any row is alive): they are drawn for every step at once,
        then the generator is set to where the reference loop leaves it. Fills tokens, mask, logp in place."""
        cfg, p = self.config, self.params
        if not warmup._started:
            warmup.start()
        B = tokens.shape[0]
        prefix = cfg.align == "prefix"
        steps_ok = max(0, min(T, cfg.window - P + 1)) if prefix else T   # a prefix window ends at position k-1
        state = rng.bit_generator.state
        U = rng.random((steps_ok, B))
        version = self._params_version()
        head = (tokens, P, steps_ok, U, self._trunk_tables(version)[0], p["b1"], p["W2"], p["b2"], cfg.vocab_size,
                prefix, 1.0 / temperature, BOS, PAD, OUT_OFFSET, EOS)
        chunks = pool.rows(kernels._sample_rows, head, B, (logp, mask, alive))
        steps = max(c[0] for c in chunks)
        self._keep_sampled(chunks, version, 1.0 / temperature)
        rng.bit_generator.state = state
        rng.random(steps * B)                       # the same stream position as `steps` draws of B uniforms
        if steps_ok < T and alive.any():
            self.contexts(tokens, np.zeros(1, np.int64), np.full(1, P + steps_ok - 1))   # raises the ValueError

    def _keep_sampled(self, chunks, version: int, inv_temp: float) -> None:
        """Keep the windows the sampler's chunks computed at parameter version `version` as the model's WindowMemo
        (the rollout's forwards at these parameters then look them up), merged into the current memo when that is
        still valid."""
        memos = [WindowMemo(version, inv_temp, *c[1:]) for c in chunks]
        memo = getattr(self, "_memo", None)
        if memo is None or not memo.valid_for(version, inv_temp):
            if not WindowMemo.fits(int(memos[0].count[0])):
                return
            memo = self._memo = memos.pop(0)
        for m in memos:
            if not memo.room_for(int(m.count[0])):
                return
            memo.merge(m)
