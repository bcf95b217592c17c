"""Monte-Carlo draws for `toyrlhf check`: per-token log-probs and gradients computed once per distinct
(window, token) pair of a sampled batch, and per-draw projections of an estimator's gradient on unit directions."""
from __future__ import annotations

import numpy as np

from ..model import TinyLM

__all__ = ["directional_logp", "TokenPairs", "Draws", "mean_se"]


def directional_logp(model: TinyLM, tokens: np.ndarray, mask: np.ndarray, u: np.ndarray, temperature: float = 1.0,
                     eps: float = 1e-3) -> np.ndarray:
    """d logp[b, t] / d theta . u for every token (B, L): the projection of each token's grad log pi on u.

    Fourth-order central differences of ``model.logp_forward`` along u (|u| = 1): truncation error ~eps^4 times
    the fifth derivative, ~1e-12 here, far below any Monte-Carlo error. Lets a whole sample of draws be projected
    with four forward passes instead of one backward pass per draw.
    """
    theta = model.get_flat()
    probe = model.copy()
    out = np.zeros(tokens.shape)
    for step, coef in ((2, -1.0), (1, 8.0), (-1, -8.0), (-2, 1.0)):
        probe.set_flat(theta + step * eps * u)
        out += coef * probe.logp_forward(tokens, mask, temperature)[0]
    return out / (12.0 * eps)


def _row_keys(M: np.ndarray, base: int) -> np.ndarray:
    keys = np.zeros(len(M), dtype=np.int64)
    for c in range(M.shape[1]):
        keys = keys * base + M[:, c]
    return keys


class TokenPairs:
    """The masked tokens of a sampled batch grouped by (context window, token): a token's log-prob and its
    gradient depend on nothing else, so per-token quantities are computed once per distinct pair and gathered,
    and a gradient sum_{b,t} dlogp[b,t] grad logp[b,t] is one backward over the distinct pairs (exactly the
    same sum, regrouped)."""

    def __init__(self, model: TinyLM, tokens: np.ndarray, mask: np.ndarray):
        self.shape = tokens.shape
        self.rows, self.cols = np.nonzero(mask)
        X = model.contexts(tokens, self.rows, self.cols - 1)
        full = np.concatenate([X, tokens[self.rows, self.cols][:, None]], axis=1)
        if (full.shape[1]) * np.log2(model.config.vocab_size) < 62:
            _, first, inv = np.unique(_row_keys(full, model.config.vocab_size), return_index=True,
                                      return_inverse=True)
        else:  # pragma: no cover - only for vocabularies far beyond the tasks'
            _, first, inv = np.unique(full, axis=0, return_index=True, return_inverse=True)
        self.inv = inv.ravel()
        self.tokens = np.ascontiguousarray(full[first])
        self.mask = np.zeros(self.tokens.shape, dtype=bool)
        self.mask[:, -1] = True

    def scatter(self, per_pair: np.ndarray) -> np.ndarray:
        out = np.zeros(self.shape)
        out[self.rows, self.cols] = per_pair[self.inv]
        return out

    def logp(self, model: TinyLM, temperature: float = 1.0) -> np.ndarray:
        """(B, L) per-token log-probs, equal to model.logp_forward(tokens, mask)[0]."""
        return self.scatter(model.logp_forward(self.tokens, self.mask, temperature)[0][:, -1])

    def directional(self, model: TinyLM, u: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """(B, L) d logp / d theta . u (``directional_logp`` on the distinct pairs)."""
        return self.scatter(directional_logp(model, self.tokens, self.mask, u, temperature)[:, -1])

    def grad(self, model: TinyLM, dlogp: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Flat gradient of sum dlogp * logp, as model.logp_backward(dlogp, cache of the whole batch) gives."""
        w = np.bincount(self.inv, weights=dlogp[self.rows, self.cols], minlength=len(self.tokens))
        _, _, cache = model.logp_forward(self.tokens, self.mask, temperature)
        d = np.zeros(self.tokens.shape)
        d[:, -1] = w
        return model.logp_backward(d, cache)


class Draws:
    """Per-draw projections and the mean gradient of an estimator whose draws are consecutive row blocks.

    A draw's gradient is sum over its rows of dlogp . grad logp; its projection on u is sum dlogp . J_u (J_u from
    ``directional_logp``); the mean gradient over draws goes through ``model.logp_backward``."""

    def __init__(self, model: TinyLM, pairs: TokenPairs, J: dict[str, np.ndarray], n_draws: int):
        self.model, self.pairs, self.J, self.n_draws = model, pairs, J, n_draws

    def add(self, dlogp: np.ndarray, sign: float = 1.0):
        per = {k: sign * (dlogp * J).sum(axis=1).reshape(self.n_draws, -1).sum(axis=1) for k, J in self.J.items()}
        mean = sign * self.pairs.grad(self.model, dlogp / self.n_draws)
        return per, mean


def mean_se(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))
