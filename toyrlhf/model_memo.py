"""The LM head's outputs per context window at one parameter vector: computed once, looked up by later calls.

Why. One RL step evaluates the same windows at the same parameters several times: the sampler computes the
policy's next-token distribution of every window it extends, pi_old is then the same numbers again (the rollout's
forward), so is the first minibatch's forward when it starts from pi_old, and a frozen reference model sees the
same windows step after step. A window's features H, log-probs and entropy depend on the window, the parameters
and the temperature alone, and the fast kernels compute them with the same operations wherever the window sits
in a batch (kernels/forward.py), so the memo returns the numbers a fresh forward computes, bit for bit
(tests/test_model_memo.py). It is keyed by the model's parameter version (`FastPath._params_version`, which
compares the whole vector with a copy on every call: an in-place optimiser step, `set_flat` or a probe's
perturbation all make the memo stale) and by the temperature. Its hash table is built on the first lookup: the
memo of a forward between two optimiser steps is never read.

Size. At most CAP windows (a frozen reference accumulates the windows of many steps); a call that would pass it
starts a new memo from its own windows.
"""
from __future__ import annotations

import numpy as np

from . import kernels

CAP = 1 << 14
"""Windows a memo holds at most (features 16,384 x h floats: 16 MB at h = 128)."""


class WindowMemo:
    """Windows X[:count] with their features H, LM-head log-probs and entropies at parameter version `version`
    and inverse temperature `inv_temp`; `table` is the open-addressing hash table of `kernels._memo_index` over X
    (None until a lookup needs it)."""

    def __init__(self, version, inv_temp, table, X, count, H, logprobs, ent):
        self.version, self.inv_temp = version, float(inv_temp)
        self.table, self.X, self.count = table, X, count
        self.H, self.logprobs, self.ent = H, logprobs, ent

    @classmethod
    def of_windows(cls, version, inv_temp, Xu, H, logprobs, ent) -> "WindowMemo":
        """A memo of the distinct windows Xu (U, k) and their outputs (the arrays are kept, not copied)."""
        return cls(version, inv_temp, None, Xu, np.array([len(Xu)], dtype=np.int64), H, logprobs, ent)

    def valid_for(self, version, inv_temp) -> bool:
        return version == self.version and float(inv_temp) == self.inv_temp

    @staticmethod
    def fits(n: int) -> bool:
        return n <= CAP

    def room_for(self, n: int) -> bool:
        return int(self.count[0]) + n <= CAP

    def index(self, Xu: np.ndarray, compute) -> np.ndarray:
        """idx (U,) of the distinct windows Xu in the memo; the windows it lacks are appended and their outputs
        computed by compute(X_new, H_out, logprobs_out, ent_out) (views of the memo's arrays)."""
        c0 = int(self.count[0])
        if self.table is None or c0 + len(Xu) > len(self.X):
            self._grow(c0 + len(Xu))
        idx = kernels._memo_index(self.table, self.X, self.count, Xu)
        c1 = int(self.count[0])
        if c1 > c0:
            compute(self.X[c0:c1], self.H[c0:c1], self.logprobs[c0:c1], self.ent[c0:c1])
        return idx

    def merge(self, other: "WindowMemo") -> None:
        """Add the windows of `other` (the same parameters and temperature) that this memo lacks."""
        n = int(other.count[0])
        c0 = int(self.count[0])
        if self.table is None or c0 + n > len(self.X):
            self._grow(c0 + n)
        idx = kernels._memo_index(self.table, self.X, self.count, other.X[:n])
        new = idx >= c0
        for mine, theirs in ((self.H, other.H), (self.logprobs, other.logprobs), (self.ent, other.ent)):
            mine[idx[new]] = theirs[:n][new]

    def _grow(self, need: int) -> None:
        """Room for `need` windows and the hash table: new arrays (the old ones stay intact for the caches that
        read them)."""
        n = int(self.count[0])
        cap = max(need, 2 * len(self.X))
        grown = []
        for a in (self.X, self.H, self.logprobs, self.ent):
            b = np.empty((cap,) + a.shape[1:], dtype=a.dtype)
            b[:n] = a[:n]
            grown.append(b)
        X_old = grown[0][:n].copy()
        self.X, self.H, self.logprobs, self.ent = grown
        self.table = np.full(_table_size(cap), -1, dtype=np.int64)
        self.count[0] = 0
        kernels._memo_index(self.table, self.X, self.count, X_old)      # the same order: idx = 0..n-1


def _table_size(n: int) -> int:
    """The hash table's length for n windows: a power of two >= 2n (as kernels' `_hash_table`)."""
    size = 16
    while size < 2 * n:
        size *= 2
    return size
