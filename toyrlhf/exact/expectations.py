"""Exact expectations, KL divergences and entropies over an enumeration, and their gradients; pass@k and best-of-n.

Every quantity a Monte-Carlo estimator targets is a finite sum over the enumerated completions:

    E_pi[f]              = sum_y pi(y|q) f(y)
    grad E_pi[f]         = sum_y pi(y|q) f(y) grad log pi(y|q)                  (f not depending on theta)
    KL(pi || ref)        = sum_y pi(y) (log pi(y) - log ref(y))
    grad KL(pi || ref)   = sum_y pi(y) (log pi(y) - log ref(y)) grad log pi(y)  (the "+1" has expectation 0)
    grad KL(ref || pi)   = -sum_y ref(y) grad log pi(y)
    H(pi)                = -sum_y pi(y) log pi(y),    grad H = -sum_y pi(y) log pi(y) grad log pi(y)

and uniform averages over the task's prompts (the prompt distribution of every task).

Gradients (``grad_token_weights``) of ``sum_{y,t} D[y,t] log pi(y_t | y_<t)`` (D held fixed) sum the weights of all
tokens that share a (window, next token) pair, then run one ``model.logp_forward`` / ``model.logp_backward`` over
those pairs: a few thousand rows instead of one per token of every completion.

Best-of-n (Beirami et al. 2024): with completions sorted by reward, F the CDF and F- the strict CDF,
pi_bon(y) = F(y)^n - F-(y)^n; ties between completions of equal reward are broken uniformly at random, so the mass
of a tie class is shared in proportion to pi.
"""
from __future__ import annotations

import numpy as np

from .. import tokens as tk
from ..model import TinyLM
from .enumeration import Enumeration, _same_windows

__all__ = ["per_prompt", "expectation", "grad_token_weights", "sequence_weights", "grad_expectation",
           "kl_divergences", "entropy", "grad_reverse_kl", "grad_forward_kl", "grad_entropy", "pass_at_k",
           "best_of_n", "best_of_n_kl", "best_of_n_kl_bound"]


def per_prompt(enum: Enumeration, values: np.ndarray) -> np.ndarray:
    """(n_prompts,) sum of `values` (N,) over each prompt's rows."""
    return np.bincount(enum.prompt_index, weights=np.asarray(values, dtype=np.float64), minlength=enum.n_prompts)


def expectation(enum: Enumeration, f: np.ndarray) -> tuple[np.ndarray, float]:
    """(E_pi[f | q] for every prompt, their uniform mean)."""
    per = per_prompt(enum, enum.probs * np.asarray(f, dtype=np.float64))
    return per, float(per.mean())


def _prompt_weights(enum: Enumeration, prompt_weights) -> np.ndarray:
    if prompt_weights is None:
        return np.full(enum.n_prompts, 1.0 / enum.n_prompts)
    w = np.asarray(prompt_weights, dtype=np.float64)
    if w.shape != (enum.n_prompts,):
        raise ValueError(f"prompt_weights must be ({enum.n_prompts},), got {w.shape}")
    return w


def _win_rows(enum: Enumeration) -> tuple[np.ndarray, np.ndarray]:
    """One row per (window, next token) for logp_forward: [window (k tokens), target], mask on the target."""
    U, k = enum.win_X.shape
    V = enum.win_logp.shape[1]
    tokens = np.empty((U * V, k + 1), dtype=np.int64)
    tokens[:, :k] = np.repeat(enum.win_X, V, axis=0)
    tokens[:, k] = np.tile(np.arange(V), U) + tk.OUT_OFFSET
    mask = np.zeros(tokens.shape, dtype=bool)
    mask[:, k] = True
    return tokens, mask



def grad_token_weights(model: TinyLM, enum: Enumeration, D: np.ndarray) -> np.ndarray:
    """Flat gradient of sum_{i,t} D[i, t] log pi(token t of row i | its prefix), with D (N, P+T) held fixed.

    Tokens that follow the same window with the same next token share one log-prob: their weights are summed,
    then one ``logp_forward`` / ``logp_backward`` over the (window, token) pairs. `model` is the model whose
    gradient is wanted (normally the one the enumeration came from; it must have the same window width).
    """
    D = np.asarray(D, dtype=np.float64)
    if D.shape != enum.tokens.shape:
        raise ValueError(f"D must be {enum.tokens.shape}, got {D.shape}")
    if not _same_windows(model, enum) or enum.win_logp is None:
        raise ValueError("the model must have the window width the enumeration was built with")
    P = enum.prompt_len
    V = enum.win_logp.shape[1]
    cm = enum.mask[:, P:]
    key = enum.tok_win[cm] * V + (enum.tokens[:, P:][cm] - tk.OUT_OFFSET)
    w = np.bincount(key, weights=D[:, P:][cm], minlength=enum.win_X.shape[0] * V)
    rows = np.flatnonzero(w)
    tokens, mask = _win_rows(enum)
    tokens, mask = tokens[rows], mask[rows]
    _, _, cache = model.logp_forward(tokens, mask, enum.temperature)
    dlogp = np.zeros(tokens.shape)
    dlogp[:, -1] = w[rows]
    return model.logp_backward(dlogp, cache)


def sequence_weights(model: TinyLM, enum: Enumeration, c: np.ndarray) -> np.ndarray:
    """Flat gradient of sum_i c[i] log pi(y_i | q_i) with c (N,) fixed: every token of row i gets weight c[i]."""
    c = np.asarray(c, dtype=np.float64)
    return grad_token_weights(model, enum, np.where(enum.mask, c[:, None], 0.0))


def grad_expectation(model: TinyLM, enum: Enumeration, f: np.ndarray, prompt_weights=None) -> np.ndarray:
    """grad_theta sum_q w_q E_pi[f | q] = sum_q w_q sum_y pi(y) f(y) grad log pi(y)  (f fixed; w uniform by default)."""
    w = _prompt_weights(enum, prompt_weights)[enum.prompt_index]
    return sequence_weights(model, enum, w * enum.probs * np.asarray(f, dtype=np.float64))


def kl_divergences(enum: Enumeration, ref: Enumeration) -> dict[str, np.ndarray | float]:
    """Sequence-level KL(pi || ref) ("reverse", what RLHF penalises) and KL(ref || pi) ("forward"), per prompt and
    averaged uniformly over prompts."""
    d = enum.seq_logp - ref.seq_logp
    rev = per_prompt(enum, enum.probs * d)
    fwd = per_prompt(enum, ref.probs * -d)
    return {"reverse": rev, "forward": fwd, "reverse_mean": float(rev.mean()), "forward_mean": float(fwd.mean())}


def entropy(enum: Enumeration) -> tuple[np.ndarray, float]:
    """Sequence-level entropy H(pi(.|q)) per prompt (nats), and its uniform mean."""
    per = per_prompt(enum, -enum.probs * enum.seq_logp)
    return per, float(per.mean())


def grad_reverse_kl(model: TinyLM, enum: Enumeration, ref: Enumeration, prompt_weights=None) -> np.ndarray:
    """grad_theta of the prompt-averaged KL(pi_theta || ref) = sum_y pi (log pi - log ref) grad log pi."""
    return grad_expectation(model, enum, enum.seq_logp - ref.seq_logp, prompt_weights)


def grad_forward_kl(model: TinyLM, enum: Enumeration, ref: Enumeration, prompt_weights=None) -> np.ndarray:
    """grad_theta of the prompt-averaged KL(ref || pi_theta) = -sum_y ref(y) grad log pi(y)."""
    w = _prompt_weights(enum, prompt_weights)[enum.prompt_index]
    return sequence_weights(model, enum, -w * ref.probs)


def grad_entropy(model: TinyLM, enum: Enumeration, prompt_weights=None) -> np.ndarray:
    """grad_theta of the prompt-averaged sequence entropy = -sum_y pi log pi grad log pi."""
    return grad_expectation(model, enum, -enum.seq_logp, prompt_weights)



# ------------------------------------------------------------------------------------------- pass@k, best-of-n
def pass_at_k(enum: Enumeration, correct: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """pass@k = P(at least one of k independent completions is correct) = 1 - (1 - p_q)^k, per prompt and mean."""
    if k < 1:
        raise ValueError("k must be >= 1")
    p, _ = expectation(enum, np.asarray(correct, dtype=np.float64))
    per = 1.0 - (1.0 - np.clip(p, 0.0, 1.0)) ** k
    return per, float(per.mean())


def best_of_n(probs: np.ndarray, rewards: np.ndarray, n: int, ties: str = "random") -> np.ndarray:
    """Exact distribution of best-of-n sampling over one prompt's completions (Beirami et al. 2024).

    With completions sorted by reward, F the CDF and F- the strict CDF, pi_bon(y) = F(y)^n - F-(y)^n.
    ties="random": the best of the n draws is picked uniformly among equal rewards, so a tie class C gets
    F(C)^n - F-(C)^n, shared in proportion to pi. ties="index": ties go to the larger index (the per-completion
    formula, with the sort order breaking ties).
    """
    p = np.asarray(probs, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    if p.shape != r.shape or p.ndim != 1:
        raise ValueError("probs and rewards must be 1-D of the same length")
    if n < 1:
        raise ValueError("n must be >= 1")

    def mass(F, m):
        # F^n - (F - m)^n, accurate when m << F
        with np.errstate(divide="ignore", invalid="ignore"):
            out = F ** n * -np.expm1(n * np.log1p(-np.clip(m / F, 0.0, 1.0)))
        return np.where(F > 0, out, 0.0)

    if ties == "index":
        order = np.lexsort((np.arange(len(r)), r))
        F = np.cumsum(p[order])
        out = np.empty_like(p)
        out[order] = mass(F, p[order])
        return out
    if ties != "random":
        raise ValueError("ties must be 'random' or 'index'")
    values, inverse = np.unique(r, return_inverse=True)
    pc = np.bincount(inverse.ravel(), weights=p, minlength=len(values))
    Fc = np.cumsum(pc)
    mc = mass(Fc, pc)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(pc[inverse.ravel()] > 0, p / pc[inverse.ravel()], 0.0)
    return mc[inverse.ravel()] * share


def best_of_n_kl(probs: np.ndarray, rewards: np.ndarray, n: int, ties: str = "random") -> float:
    """KL(pi_bon || pi) in nats; never above log n - (n-1)/n (tight only without ties)."""
    p = np.asarray(probs, dtype=np.float64)
    b = best_of_n(p, rewards, n, ties)
    keep = b > 0
    return float(np.sum(b[keep] * (np.log(b[keep]) - np.log(p[keep]))))


def best_of_n_kl_bound(n: int) -> float:
    """The formula log n - (n-1)/n used by Stiennon et al. / Gao et al.: an upper bound (Beirami et al. 2024)."""
    return float(np.log(n) - (n - 1) / n)

