"""The best policy a k-token context window can represent: the optimum of E[r] - beta KL(pi || pi_ref) over windowed
policies, and where it differs from pi*.

A TinyLM reads a prefix only through its last k tokens (``model.contexts``), so every TinyLM is a *windowed policy*:
pi(a | s) = p_{w(s)}(a), one next-token distribution per distinct window w (the enumeration's ``win_X``), shared by
every state (prompt, prefix, at any depth) that ends in that window. pi* = pi_ref exp(r/beta)/Z (``optimum.py``) is
the optimum over *all* policies; when two states with one window need different conditionals under pi*, no windowed
policy (and so no TinyLM, however wide) reaches it. This module maximises over the windowed class:

    J(p) = mean_q sum_y pi_p(y|q) [ r(y) - beta (log pi_p(y|q) - log pi_ref(y|q)) ],  pi_p(y|q) = prod_t p_{w(s_t)}(y_t)

with p_w = softmax(theta_w). Its exact gradient (the score-function identity, summed per (window, token)) is

    dJ/d theta_{w,a} = mean_q sum_y pi(y|q) c(y) sum_{t: w(s_t) = w} ([y_t = a] - p_w(a)),
    c(y) = r(y) - beta log(pi(y|q) / pi_ref(y|q)) - J_q          (J_q, a baseline, changes nothing in expectation)

and it vanishes iff, for every window w and token a,

    p_w(a) = pi_ref,w(a) exp(Qbar_w(a) / beta) / Z_w,
    Qbar_w(a) = sum_{(y, t): w(s_t) = w, y_t = a} pi(y) G+_t(y) / sum_{same (y, t)} pi(y),
    G+_t(y) = r(y) - beta sum_{t' > t} log(pi(y_t'|s_t') / pi_ref(y_t'|s_t'))

(the soft Q of the tokens after t, averaged over the states the window stands for, weighted by how often pi
visits them). The solver iterates this map (soft policy iteration with the states of a window aggregated; with no
shared window it is soft policy iteration itself, which reaches pi* in T sweeps), as a step in log space that is
shortened while it would lower J (shared windows can make the full step overshoot and cycle), until the map moves
no next-token probability by more than `tol`; where the gradient is then not yet ~0 it polishes with L-BFGS.

J is not concave in theta when windows are shared, so the result is a stationary point. The map starts from pi_ref
and from the occupancy projection of pi*, p_w(a) proportional to sum_{s: w(s) = w} d*(s) pi*(a|s) = the pi*-mass of
the (window, token) occurrences (pi* itself when no window is shared); the better end is kept. J(pi*) >= J(window
optimum) >= J(any TinyLM of this window) when the global optimum is found; the tests check it against a brute-force
search over a tiny case.

Imports only the enumeration, expectations and optimum modules of the exact engine (numpy and scipy otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import special
from .. import tokens as tk
from .enumeration import Enumeration
from .expectations import per_prompt
from .optimum import PromptMeans, optimal_policy

__all__ = ["WindowOptimum", "window_objective", "window_optimum"]


@dataclass
class WindowOptimum(PromptMeans):
    """The best windowed policy found for one beta: its next-token log-probs per window (U, V_out), log pi(y|q) per
    row (N,), per-prompt figures (n,), and the optimiser's end (its gradient norm and whether it converged)."""

    beta: float
    win_logp: np.ndarray
    logp: np.ndarray
    value: np.ndarray
    reward: np.ndarray
    kl: np.ndarray
    gold: np.ndarray | None
    grad_norm: float
    converged: bool
    start: str
    """Which start ended best: 'projection' (of pi*) or 'reference'."""


class _Occurrences:
    """The (window, token) pair of every completion token of an enumeration, as flat ids w * V_out + a."""

    def __init__(self, ref: Enumeration):
        if ref.win_logp is None:
            raise ValueError("the reference enumeration must carry its window log-probs (same window width)")
        P = ref.prompt_len
        cm = ref.mask[:, P:]
        self.U, self.V = ref.win_logp.shape
        self.rows = np.nonzero(cm)[0]
        self.ids = ref.tok_win[cm] * self.V + (ref.tokens[:, P:][cm] - tk.OUT_OFFSET)
        self.n = ref.n

    def seq_logp(self, win_logp: np.ndarray) -> np.ndarray:
        return np.bincount(self.rows, weights=win_logp.ravel()[self.ids], minlength=self.n)

    def sums(self, per_row: np.ndarray) -> np.ndarray:
        """(U, V) sum of per_row[y] over the occurrences of each (window, token)."""
        return np.bincount(self.ids, weights=per_row[self.rows], minlength=self.U * self.V).reshape(self.U, self.V)


def window_objective(ref: Enumeration, rewards: np.ndarray, beta: float, theta: np.ndarray,
                     occ: _Occurrences | None = None) -> tuple[float, np.ndarray, dict]:
    """(J, dJ/d theta (U, V_out), figures) of the windowed policy softmax(theta) (module docstring); `ref` is the
    reference's enumeration (its windows are the class's windows)."""
    occ = _Occurrences(ref) if occ is None else occ
    r = np.asarray(rewards, dtype=np.float64)
    lp = special.log_softmax(theta.reshape(occ.U, occ.V), axis=1)
    seq = occ.seq_logp(lp)
    p = np.exp(seq)
    d = seq - ref.seq_logp
    f = r - beta * d
    J_q = per_prompt(ref, p * f)
    c = p * (f - J_q[ref.prompt_index]) / ref.n_prompts
    S = occ.sums(c)
    grad = S - S.sum(axis=1, keepdims=True) * np.exp(lp)
    figures = {"win_logp": lp, "logp": seq, "value": J_q, "reward": per_prompt(ref, p * r),
               "kl": per_prompt(ref, p * d)}
    return float(J_q.mean()), grad, figures


def _projection(ref: Enumeration, occ: _Occurrences, rewards, beta) -> np.ndarray:
    """log p_w proportional to the pi*-mass of window w's (window, token) occurrences (pi_ref's row where it has none)."""
    logp_star, _ = optimal_policy(ref, rewards, beta)
    S = occ.sums(np.exp(logp_star))
    tot = S.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(tot > 0, np.log(S / np.where(tot > 0, tot, 1.0)), ref.win_logp)
    return np.maximum(out, -700.0)            # a zero mass is a very negative logit, not -inf (L-BFGS needs numbers)


def _soft_map(ref: Enumeration, occ: _Occurrences, r: np.ndarray, beta: float, lp: np.ndarray) -> np.ndarray:
    """One step of the stationarity map of the module docstring: log(pi_ref,w exp(Qbar_w / beta) / Z_w)."""
    P = ref.prompt_len
    cm = ref.mask[:, P:]
    tok = np.zeros(cm.shape)
    tok[cm] = lp.ravel()[occ.ids] - ref.win_logp.ravel()[occ.ids]          # log p / pi_ref of every token
    seq = tok.sum(axis=1) + ref.seq_logp
    after = np.cumsum(tok[:, ::-1], axis=1)[:, ::-1] - tok                  # sum over t' > t
    G = np.where(cm, r[:, None] - beta * after, 0.0)
    pi = np.exp(seq)
    num = np.bincount(occ.ids, weights=pi[occ.rows] * G[cm], minlength=occ.U * occ.V).reshape(occ.U, occ.V)
    den = occ.sums(pi)
    Q = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return special.log_softmax(ref.win_logp + Q / beta, axis=1)


def _iterate(ref, occ, r, beta, lp, maxiter: int, tol: float) -> tuple[np.ndarray, bool]:
    """The map as a step in log space, lp <- log softmax((1 - alpha) lp + alpha map(lp)): alpha doubles after
    each step (up to 1) and halves until J does not fall (shared windows can make the full step overshoot and
    cycle). True once the map moves no probability by more than `tol` (a fixed point)."""
    J = window_objective(ref, r, beta, lp, occ)[0]
    alpha = 1.0
    for _ in range(maxiter):
        new = _soft_map(ref, occ, r, beta, lp)
        if float(np.max(np.abs(np.exp(new) - np.exp(lp)))) < tol:    # in probabilities: a log-prob of a
            return lp, True                                             # token pi never takes may still drift
        alpha = min(1.0, 2 * alpha)
        while True:
            cand = new if alpha == 1.0 else special.log_softmax((1 - alpha) * lp + alpha * new, axis=1)
            Jc = window_objective(ref, r, beta, cand, occ)[0]
            if Jc >= J - 1e-14 * max(1.0, abs(J)):        # no fall beyond round-off
                break
            alpha /= 2
            if alpha < 1e-6:
                return lp, False
        lp, J = cand, Jc
    return lp, False


def _polish(ref, occ, r, beta, lp, gtol: float) -> np.ndarray:
    from scipy.optimize import minimize   # here, not at the top: it costs every run 0.1 s to import, few need it

    def neg(x):
        J, g, _ = window_objective(ref, r, beta, x, occ)
        return -J, -g.ravel()

    res = minimize(neg, lp.ravel(), jac=True, method="L-BFGS-B",
                   options={"gtol": gtol, "ftol": 1e-16, "maxiter": 1000, "maxcor": 30})
    return special.log_softmax(res.x.reshape(occ.U, occ.V), axis=1)


def window_optimum(ref: Enumeration, rewards: np.ndarray, beta: float, gold: np.ndarray | None = None, *,
                   tol: float = 1e-12, maxiter: int = 300, gtol: float = 1e-8) -> WindowOptimum:
    """The best windowed policy for E[r] - beta KL(pi || pi_ref), beta > 0 (module docstring): the stationarity
    map iterated from pi_ref and from the projection of pi*, polished by L-BFGS where its gradient norm is above
    `gtol`; the end with the higher J is kept. (A gradient norm of ~1e-8 is where J's float64 round-off stops any
    line search: the decrease it promises, |g|^2 / curvature, is below J's last digit.)"""
    beta = float(beta)
    if not (beta > 0 and np.isfinite(beta)):
        raise ValueError(f"beta must be a positive finite number, got {beta}")
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != (ref.n,):
        raise ValueError(f"rewards must be ({ref.n},), got {r.shape}")
    occ = _Occurrences(ref)
    best = None
    for start, lp0 in (("reference", ref.win_logp), ("projection", _projection(ref, occ, r, beta))):
        lp, converged = _iterate(ref, occ, r, beta, special.log_softmax(lp0, axis=1), maxiter, tol)
        J, g, fig = window_objective(ref, r, beta, lp, occ)
        if np.linalg.norm(g) > gtol:
            lp = _polish(ref, occ, r, beta, lp, gtol)
            J, g, fig = window_objective(ref, r, beta, lp, occ)
        if best is None or J > best[0] + 1e-13:
            best = (J, g, fig, start, converged)
    J, g, fig, start, converged = best
    gd = None if gold is None else per_prompt(ref, np.exp(fig["logp"]) * np.asarray(gold, dtype=np.float64))
    gn = float(np.linalg.norm(g))
    return WindowOptimum(beta=beta, win_logp=fig["win_logp"], logp=fig["logp"], value=fig["value"],
                         reward=fig["reward"], kl=fig["kl"], gold=gd, grad_norm=gn,
                         converged=converged or gn <= gtol, start=start)
