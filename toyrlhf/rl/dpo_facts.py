"""Exact facts of DPO, computed by the exact engine (docs/unified_paradigm.md quotes the numbers).

1. The optimum is the Gibbs tilt of the Bradley-Terry reward (Rafailov et al. 2023, §4). On one prompt's
   completions y with pi_ref(y) = p_y and pairs (a, b) ~ p x p labelled a > b with probability sigma(r_a - r_b),
   DPO's population loss in the tabular policy pi = pi_ref exp(theta) / Z is
       L(theta) = sum_{a,b} p_a p_b sigma(r_a - r_b) softplus(-beta (theta_a - theta_b)),
   stationary iff beta (theta_a - theta_b) = r_a - r_b: beta log(pi / pi_ref) = r + c(q), pi = pi_ref exp(r/beta)/Z.
   ``tabular_dpo`` minimises it (population, or n sampled labelled pairs) and ``within_prompt_correlation``
   reports the pi_ref-weighted correlation of beta log(pi/pi_ref) with r inside each prompt.
2. Mass on completions that never appear in the pairs (Xu et al. 2024): ``unseen_mass`` = sum of pi(y) over the
   completions of a prompt absent from the training pairs, exactly, for any two policies (DPO's, PPO's, pi_ref).
3. The chosen completion's log-probability can fall while the margin rises: one gradient step eta on a pair's DPO
   loss changes, to first order, log pi(y_w) by eta c (|g_w|^2 - g_w.g_l) and the margin by eta c |g_w - g_l|^2 >= 0
   (c = beta sigma(-beta u), g = grad log pi); the chosen side falls iff g_w.g_l > |g_w|^2, i.e. when the two
   completions share most of their gradient (Razin et al. 2024, likelihood displacement). ``displacement``.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import connected_components

from .. import exact
from .preference_losses import PREFERENCE_LOSSES


def _pair_weights(p, r):
    """W_ab = p_a p_b sigma(r_a - r_b): the population probability of the labelled pair (winner a, loser b)."""
    d = r[:, None] - r[None, :]
    return p[:, None] * p[None, :] * np.exp(-np.logaddexp(0.0, -d))


def _sampled_weights(p, r, n, rng):
    """The empirical W of n pairs a, b ~ p x p with Bradley-Terry labels (a/b order as labelled)."""
    a, b = rng.choice(len(p), n, p=p), rng.choice(len(p), n, p=p)
    a_wins = rng.random(n) < np.exp(-np.logaddexp(0.0, -(r[a] - r[b])))
    W = np.zeros((len(p), len(p)))
    np.add.at(W, (np.where(a_wins, a, b), np.where(a_wins, b, a)), 1.0 / n)
    return W


def tabular_dpo(p, r, beta: float, n_pairs: int | None = None, rng=None, iters: int = 100) -> np.ndarray:
    """theta = log(pi/pi_ref) + const minimising DPO's loss for one prompt: the population loss (n_pairs None) or
    that of n_pairs sampled labelled pairs (completions in no pair keep theta = 0). The loss is convex in theta:
    Newton's method (pseudo-inverse of the graph-Laplacian Hessian, step halving), float64.

    A finite sample of pairs often has no finite minimiser: when the directed comparison graph (winner -> loser) of
    a connected set of completions is not strongly connected (some completions only win, or only lose, against the
    rest; Zermelo 1929, Ford 1957) the loss keeps falling as theta runs off along that direction. Newton then
    follows it until the Hessian is too ill-conditioned for the SVD (or `iters` run out) and returns the last
    iterate (``has_finite_minimiser`` tells the two cases apart)."""
    p, r = np.asarray(p, np.float64), np.asarray(r, np.float64)
    W = _pair_weights(p, r) if n_pairs is None else _sampled_weights(p, r, n_pairs, rng)
    theta = np.zeros_like(p)
    loss = _loss(W, beta, theta)
    for _ in range(iters):
        h = beta * (theta[:, None] - theta[None, :])
        g = W * -beta * np.exp(-np.logaddexp(0.0, h))
        grad = g.sum(axis=1) - g.sum(axis=0)
        if np.abs(grad).max() < 1e-16:
            break
        S = (W + W.T) * beta ** 2 * np.exp(-np.logaddexp(0.0, h) - np.logaddexp(0.0, -h))
        H = np.diag(S.sum(axis=1)) - S
        try:
            step = np.linalg.lstsq(H, -grad, rcond=1e-13)[0]
        except np.linalg.LinAlgError:        # theta has run off to ~1e3 along a direction without a minimum
            break
        t = 1.0
        while t > 1e-8 and _loss(W, beta, theta + t * step) > loss:
            t /= 2
        theta, loss = theta + t * step, _loss(W, beta, theta + t * step)
    return theta


def has_finite_minimiser(W) -> bool:
    """True iff the pair loss of labelled-pair weights W (W[a, b] > 0: a beat b) has a finite minimiser: every
    connected set of compared completions is strongly connected in the winner -> loser graph."""
    A = np.asarray(W) > 0
    used = A.any(axis=0) | A.any(axis=1)
    A = A[np.ix_(used, used)]
    weak = connected_components(A, directed=True, connection="weak")[0]
    strong = connected_components(A, directed=True, connection="strong")[0]
    return bool(weak == strong)


def _loss(W, beta, theta) -> float:
    return float(np.sum(W * np.logaddexp(0.0, -beta * (theta[:, None] - theta[None, :]))))


def population_gradient(p, r, beta: float, theta) -> np.ndarray:
    """dL/dtheta of the population loss (zero at theta = r/beta + c, the Gibbs tilt)."""
    W = _pair_weights(np.asarray(p, float), np.asarray(r, float))
    h = beta * (theta[:, None] - theta[None, :])
    g = W * -beta * np.exp(-np.logaddexp(0.0, h))
    return g.sum(axis=1) - g.sum(axis=0)


def weighted_corr(x, y, w) -> float:
    w = np.asarray(w, float) / np.sum(w)
    xc, yc = x - w @ x, y - w @ y
    return float((w @ (xc * yc)) / np.sqrt((w @ xc ** 2) * (w @ yc ** 2)))


def within_prompt_correlation(enum, implicit, reward, weights=None) -> float:
    """Mean over prompts of the weighted (default pi_ref = enum's probs) correlation of implicit with reward."""
    w = enum.probs if weights is None else weights
    out = [weighted_corr(implicit[s], reward[s], w[s])
           for s in (slice(enum.offsets[q], enum.offsets[q + 1]) for q in range(enum.n_prompts))]
    return float(np.mean(out))


def top_support(p, m: int):
    """Indices of the m most likely completions (the support a finite pair set can reach), renormalised probs."""
    idx = np.argsort(-p)[:m]
    return idx, p[idx] / p[idx].sum()


def unseen_mass(enum, policy_logp, pair_completions: set) -> tuple[np.ndarray, float]:
    """Per prompt and mean: sum of pi(y) over enumerated completions whose (prompt, completion) tokens appear in no
    training pair. policy_logp (N,) = log pi(y|q) over the enumeration's rows (enum.seq_logp, or a rescore's)."""
    seen = np.array([tuple(row) in pair_completions for row in map(tuple, _keys(enum))])
    mass = exact.per_prompt(enum, np.where(seen, 0.0, np.exp(policy_logp)))
    return mass, float(mass.mean())


def _keys(enum):
    return np.where(enum.mask | (np.arange(enum.tokens.shape[1]) < enum.prompt_len), enum.tokens, 0)


def pair_keys(tokens, mask, prompt_len: int) -> set:
    """The set of (prompt + completion) token tuples of a pair side, PAD-normalised as ``unseen_mass`` reads them."""
    keep = mask | (np.arange(tokens.shape[1]) < prompt_len)
    return set(map(tuple, np.where(keep, tokens, 0)))


def displacement(policy, tok_w, mask_w, ref_w, tok_l, mask_l, ref_l, beta: float) -> dict:
    """First-order effect of one gradient step on each pair's own DPO loss (see 3. above): per pair the predicted
    change of log pi(y_w) and of the margin, per unit step; and the fraction where the chosen side falls."""
    n = tok_w.shape[0]
    dw, dm = np.zeros(n), np.zeros(n)
    for i in range(n):
        g = []
        for tok, mask in ((tok_w[i:i + 1], mask_w[i:i + 1]), (tok_l[i:i + 1], mask_l[i:i + 1])):
            _, _, cache = policy.logp_forward(tok, mask)
            g.append(policy.logp_backward(mask.astype(float), cache))
        lw, ll = policy.logp_forward(tok_w[i:i + 1], mask_w[i:i + 1])[0], policy.logp_forward(tok_l[i:i + 1], mask_l[i:i + 1])[0]
        u = (lw - ref_w[i:i + 1]).sum() - (ll - ref_l[i:i + 1]).sum()
        c = -PREFERENCE_LOSSES["sigmoid"].fn(np.array([u]), beta)[1][0]   # beta sigma(-beta u) > 0
        dw[i] = c * (g[0] @ g[0] - g[0] @ g[1])
        dm[i] = c * ((g[0] - g[1]) @ (g[0] - g[1]))
    return {"d_chosen": dw, "d_margin": dm, "chosen_falls_fraction": float(np.mean(dw < 0))}
