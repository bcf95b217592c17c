"""Exact engine: enumerate every completion of every prompt, then compute expectations and gradients exactly.

The vocabularies and lengths of toyrlhf's tasks are tiny, so the set of completions of a prompt (each ended by EOS
or cut at ``max_new_tokens``) is small enough to list. Every quantity a Monte-Carlo estimator targets is then a
finite sum:

    E_pi[f]              = sum_y pi(y|q) f(y)
    grad E_pi[f]         = sum_y pi(y|q) f(y) grad log pi(y|q)                  (f not depending on theta)
    KL(pi || ref)        = sum_y pi(y) (log pi(y) - log ref(y))
    grad KL(pi || ref)   = sum_y pi(y) (log pi(y) - log ref(y)) grad log pi(y)  (the "+1" has expectation 0)
    grad KL(ref || pi)   = -sum_y ref(y) grad log pi(y)
    H(pi)                = -sum_y pi(y) log pi(y),    grad H = -sum_y pi(y) log pi(y) grad log pi(y)

and uniform averages over the task's prompts (the prompt distribution of every task).

Enumeration (``enumerate_completions``) walks the prefix tree level by level: level t holds every live prefix
(prompt + t tokens, no EOS yet) of every prompt, and one ``model.contexts`` call per level gives the window (last k
tokens) each of them is seen through. A prefix's EOS child is a finished completion, its other children are the
live prefixes of level t+1 (at the last level: truncated completions). The tree depends only on the prompts, T,
V_out and k, and is cached. Many prefixes (of different prompts, at different depths) end in the same window, so
the next-token distribution of each *distinct* window is evaluated once, by one batched ``model.next_logprobs``
call; every prefix's distribution is therefore evaluated at most once.
Gradients (``grad_token_weights``) of ``sum_{y,t} D[y,t] log pi(y_t | y_<t)`` (D held fixed) likewise sum the weights
of all tokens that share a (window, next token) pair, then run one ``model.logp_forward`` / ``model.logp_backward``
over those pairs: a few thousand rows instead of one per token of every completion.

Expected gradients of the policy-gradient estimators (``expected_pg_gradient``): the estimator's gradient is
(1/B) sum_i h(y_i) A_i grad log pi(y_i) (on-policy, ratio 1, before clipping), with h the token aggregation
(1/|y| for GRPO's seq-mean-token-mean, 1/L_max for Dr. GRPO's seq-mean-token-sum-norm, 1 for a token sum).
By exchangeability its expectation is sum_q w_q sum_y pi(y|q) h(y) a_q(y) grad log pi(y|q) with
a_q(y) = E[A_i | y_i = y]: for group advantages the G - 1 peers are i.i.d. from pi(.|q), so only the counts of
their *distinct reward values* matter; those counts are multinomial (binomial for a 0/1 reward) and are
enumerated, and the project's own advantage function (``rl/advantages.py``) is evaluated on every configuration.
With too many distinct reward values (a learned reward model) the linear advantages (rloo, group_mean,
reinforce) use their closed form E[A | y] = c (r(y) - baseline); GRPO's std-scaled advantage is then not
available exactly (ValueError). The token-mean aggregation (DAPO), whose weight depends on the whole batch's
lengths, is not supported.

Best-of-n (Beirami et al. 2024): with completions sorted by reward, F the CDF and F- the strict CDF,
pi_bon(y) = F(y)^n - F-(y)^n; ties between completions of equal reward are broken uniformly at random, so the mass
of a tie class is shared in proportion to pi.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Callable

import numpy as np
from scipy.special import gammaln

from . import tokens as tk
from .errors import UserError
from .model import TinyLM

__all__ = [
    "MAX_SEQUENCES",
    "Enumeration",
    "count_completions",
    "check_size",
    "enumerate_completions",
    "enumerate_task",
    "rescore",
    "per_prompt",
    "expectation",
    "grad_token_weights",
    "grad_expectation",
    "kl_divergences",
    "entropy",
    "grad_reverse_kl",
    "grad_forward_kl",
    "grad_entropy",
    "sequence_weights",
    "expected_advantage",
    "expected_sequence_coefficients",
    "expected_pg_gradient",
    "tilt_derivative",
    "expected_kl_loss_gradient",
    "expected_kl_reward_gradient",
    "expected_kl_value",
    "sequence_scale",
    "pass_at_k",
    "best_of_n",
    "best_of_n_kl",
    "best_of_n_kl_bound",
    "training_metrics",
    "directional_logp",
    "CheckRow",
    "CheckReport",
    "run_check",
]

MAX_SEQUENCES = 500_000
"""Largest number of completions (over all prompts) the engine enumerates; beyond it, a UserError.
(arith: 194,375; length: 149,296; pref: 335,916.)"""


# ====================================================================================================== enumeration
def count_completions(n_out: int, max_new_tokens: int) -> int:
    """Completions of one prompt: sum_{t<T} (V_out-1)^t ended by EOS at position t, plus (V_out-1)^T truncated."""
    w = n_out - 1
    return sum(w ** t for t in range(max_new_tokens)) + w ** max_new_tokens


def check_size(n_prompts: int, n_out: int, max_new_tokens: int, limit: int | None = None,
               what: str = "this task") -> int:
    """Total completions over all prompts; UserError (one line) if above `limit` (default MAX_SEQUENCES)."""
    limit = MAX_SEQUENCES if limit is None else limit
    n = n_prompts * count_completions(n_out, max_new_tokens)
    if n > limit:
        raise UserError(f"{what} has {n:,} completions ({n_prompts} prompts x {n // n_prompts:,}), more than the "
                        f"exact engine enumerates ({limit:,}); drop --exact or use a smaller task")
    return n


@dataclass
class Enumeration:
    """Every completion of every prompt, with its exact probability under one model, in the padded layout.

    Rows are sorted by prompt: prompt q owns rows ``offsets[q]:offsets[q+1]``. Padded arrays (N, P+T) follow
    ``toyrlhf/tokens.py``: ``tokens`` (prompt, completion, PAD), ``mask`` (True on completion tokens, EOS included),
    ``logp`` (log pi of each completion token, 0 elsewhere). ``seq_logp`` (N,) = log pi(y|q).

    Windows: the model sees a prefix only through its last k tokens, so prefixes (of any prompt, at any level)
    that end in the same window share one next-token distribution. ``win_X`` (U, k) holds the distinct windows,
    ``tok_win`` (N, T) the window before each completion token (-1 past the end) and ``win_logp`` (U, V_out) the
    model's next-token log-probabilities after each window.
    """

    prompts: np.ndarray
    max_new_tokens: int
    temperature: float
    tokens: np.ndarray
    mask: np.ndarray
    logp: np.ndarray
    seq_logp: np.ndarray
    prompt_index: np.ndarray
    offsets: np.ndarray
    win_X: np.ndarray
    tok_win: np.ndarray
    win_logp: np.ndarray

    # ------------------------------------------------------------------ shapes and views
    @property
    def n_prompts(self) -> int:
        return int(self.prompts.shape[0])

    @property
    def prompt_len(self) -> int:
        return int(self.prompts.shape[1])

    @property
    def window(self) -> int:
        return int(self.win_X.shape[1])

    @property
    def n(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def probs(self) -> np.ndarray:
        """(N,) pi(y|q)."""
        return np.exp(self.seq_logp)

    @property
    def completions(self) -> np.ndarray:
        """(N, T) completion tokens (PAD after EOS)."""
        return self.tokens[:, self.prompt_len:]

    @property
    def row_prompts(self) -> np.ndarray:
        """(N, P) the prompt of every row."""
        return self.tokens[:, :self.prompt_len]

    @property
    def lengths(self) -> np.ndarray:
        """(N,) |y|, EOS included."""
        return self.mask.sum(axis=1)

    @property
    def truncated(self) -> np.ndarray:
        return tk.is_truncated(self.completions)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(prompts (N, P), completions (N, T)) as the task's reward functions take them."""
        return self.row_prompts, self.completions

    def with_win_logp(self, win_logp: np.ndarray, temperature: float | None = None) -> "Enumeration":
        """The same completions under other next-token log-probs (another model): shares the tree arrays."""
        win_logp = np.asarray(win_logp, dtype=np.float64)
        logp, seq = _token_logp(self.tokens, self.mask, self.tok_win, win_logp, self.prompt_len)
        return Enumeration(self.prompts, self.max_new_tokens,
                           self.temperature if temperature is None else float(temperature), self.tokens, self.mask,
                           logp, seq, self.prompt_index, self.offsets, self.win_X, self.tok_win, win_logp)


def _token_logp(tokens, mask, tok_win, win_logp, P):
    cm = mask[:, P:]
    logp = np.zeros(tokens.shape)
    logp[:, P:][cm] = win_logp[tok_win[cm], tokens[:, P:][cm] - tk.OUT_OFFSET]
    return logp, logp.sum(axis=1)


@dataclass
class _Tree:
    tokens: np.ndarray
    mask: np.ndarray
    prompt_index: np.ndarray
    offsets: np.ndarray
    win_X: np.ndarray
    tok_win: np.ndarray


_TREES: dict = {}


def _same_windows(model: TinyLM, enum: "Enumeration") -> bool:
    """Whether `model` reads a prefix through the enumeration's windows: the last k tokens, k = enum.window."""
    return model.config.align == "recent" and model.config.window == enum.window


def _tree(model: TinyLM, prompts: np.ndarray, T: int) -> _Tree:
    """The prefix tree of all completions (model-independent except for the window width k), cached."""
    if model.config.align != "recent":
        raise ValueError("the exact engine enumerates policies that read the last k tokens (align='recent')")
    V, k = model.config.n_out, model.config.window
    key = (prompts.tobytes(), prompts.shape, T, V, k)
    if key in _TREES:
        return _TREES[key]
    n, P = prompts.shape
    L = P + T
    eos_j = tk.EOS - tk.OUT_OFFSET
    cont = np.array([j for j in range(V) if j != eos_j])          # children that keep a prefix alive
    live_tok = np.full((n, L), tk.PAD, dtype=np.int64)
    live_tok[:, :P] = prompts
    live_q = np.arange(n)
    live_win = np.full((n, T), -1, dtype=np.int64)               # ids into the concatenated windows
    windows, fin_tok, fin_q, fin_win = [], [], [], []
    n_win = 0
    for t in range(T):
        nl = live_tok.shape[0]
        windows.append(model.contexts(live_tok, np.arange(nl), np.full(nl, P + t - 1)))   # (nl, k)
        live_win[:, t] = n_win + np.arange(nl)
        n_win += nl
        ends = range(V) if t == T - 1 else (eos_j,)               # EOS ends a completion; at T every token does
        for j in ends:
            tok = live_tok.copy()
            tok[:, P + t] = j + tk.OUT_OFFSET
            fin_tok.append(tok)
            fin_q.append(live_q)
            fin_win.append(live_win)
        if t == T - 1:
            break
        r = np.repeat(np.arange(nl), len(cont))
        live_tok = live_tok[r]
        live_tok[:, P + t] = np.tile(cont, nl) + tk.OUT_OFFSET
        live_win, live_q = live_win[r], live_q[r]
    q = np.concatenate(fin_q)
    order = np.argsort(q, kind="stable")
    tokens, q = np.concatenate(fin_tok)[order], q[order]
    tok_win = np.concatenate(fin_win)[order]
    mask = np.zeros(tokens.shape, dtype=bool)
    mask[:, P:] = tokens[:, P:] != tk.PAD
    tok_win[~mask[:, P:]] = -1
    # distinct windows: prefixes ending in the same k tokens share their next-token distribution
    X = np.concatenate(windows)
    base = int(X.max()) + 1
    keys = np.zeros(len(X), dtype=np.int64)
    for c in range(k):
        keys = keys * base + X[:, c]
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    cm = mask[:, P:]
    tok_win[cm] = inverse.ravel()[tok_win[cm]]
    tree = _Tree(tokens=tokens, mask=mask, prompt_index=q, offsets=np.searchsorted(q, np.arange(n + 1)),
                 win_X=np.ascontiguousarray(X[first]), tok_win=tok_win)
    for a in (tree.tokens, tree.mask, tree.prompt_index, tree.offsets, tree.win_X, tree.tok_win):
        a.setflags(write=False)
    if len(_TREES) >= 8:
        _TREES.pop(next(iter(_TREES)))
    _TREES[key] = tree
    return tree


def enumerate_completions(model: TinyLM, prompts: np.ndarray, max_new_tokens: int, temperature: float = 1.0,
                          limit: int | None = None) -> Enumeration:
    """Every completion of every prompt with its exact log-probability under `model` (see the module docstring).

    prompts (n, P) int -> Enumeration with N = n * count_completions(V_out, T) rows. The prefix tree is walked
    level by level (``model.contexts`` on all live prefixes of all prompts); the next-token distribution of each
    distinct window is then evaluated once (``model.next_logprobs``). Probabilities of a prompt's completions sum
    to 1 up to float round-off.
    """
    prompts = np.ascontiguousarray(prompts, dtype=np.int64)
    if prompts.ndim != 2 or prompts.shape[0] == 0:
        raise ValueError(f"prompts must be (n, P) with n >= 1, got shape {prompts.shape}")
    if not temperature > 0:
        raise ValueError("temperature must be > 0")
    T = int(max_new_tokens)
    if T < 1:
        raise ValueError("max_new_tokens must be >= 1")
    check_size(len(prompts), model.config.n_out, T, limit,
               what=f"{len(prompts)} prompts x {T} new tokens over {model.config.n_out} outputs")
    tree = _tree(model, prompts, T)
    win_logp = model.next_logprobs(tree.win_X, temperature)                         # (U, V_out)
    logp, seq = _token_logp(tree.tokens, tree.mask, tree.tok_win, win_logp, prompts.shape[1])
    return Enumeration(prompts=prompts, max_new_tokens=T, temperature=float(temperature), tokens=tree.tokens,
                       mask=tree.mask, logp=logp, seq_logp=seq, prompt_index=tree.prompt_index,
                       offsets=tree.offsets, win_X=tree.win_X, tok_win=tree.tok_win, win_logp=win_logp)


def enumerate_task(model: TinyLM, task, temperature: float = 1.0, prompts: np.ndarray | None = None,
                   limit: int | None = None) -> Enumeration:
    """`enumerate_completions` over the task's prompts (all of them by default)."""
    prompts = task.prompts() if prompts is None else np.asarray(prompts, dtype=np.int64)
    check_size(len(prompts), task.n_out, task.max_new_tokens, limit, what=f"task {task.name!r}")
    return enumerate_completions(model, prompts, task.max_new_tokens, temperature, limit)


def rescore(model: TinyLM, enum: Enumeration, temperature: float | None = None) -> Enumeration:
    """The same completions with their log-probs under another model (e.g. the reference)."""
    temperature = enum.temperature if temperature is None else float(temperature)
    if _same_windows(model, enum):
        return enum.with_win_logp(model.next_logprobs(enum.win_X, temperature), temperature)
    # a model with another context width sees other windows: score the full sequences
    logp, _, _ = model.logp_forward(enum.tokens, enum.mask, temperature)
    out = enum.with_win_logp(enum.win_logp, temperature)
    out.logp, out.seq_logp = logp, logp.sum(axis=1)
    out.win_logp = None
    return out


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


# ====================================================================================================== expectations
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


# ====================================================================================================== estimators
AGG_SEQUENCE_SCALE = {
    "seq-mean-token-mean": "1/|y|  (GRPO)",
    "seq-mean-token-sum-norm": "1/max_tokens  (Dr. GRPO)",
    "seq-mean-token-sum": "1  (REINFORCE, RLOO)",
}


def sequence_scale(enum: Enumeration, aggregation: str, max_tokens: int | None = None) -> np.ndarray:
    """h(y) (N,): the weight every token of a sequence gets from the aggregation, times the number of sequences.

    "token-mean" (DAPO) divides by the whole batch's token count, which is not a function of one sequence: it has
    no per-sequence weight and is not supported by the exact expectations.
    """
    if aggregation == "seq-mean-token-mean":
        return 1.0 / enum.lengths
    if aggregation == "seq-mean-token-sum-norm":
        return np.full(enum.n, 1.0 / float(max_tokens or enum.max_new_tokens))
    if aggregation == "seq-mean-token-sum":
        return np.ones(enum.n)
    raise ValueError(f"aggregation {aggregation!r} has no per-sequence weight; exact expectations support "
                     f"{', '.join(AGG_SEQUENCE_SCALE)}")


def _compositions(total: int, parts: int) -> np.ndarray:
    """All count vectors (C, parts) of non-negative integers summing to `total` (stars and bars)."""
    from itertools import combinations
    if parts == 1:
        return np.array([[total]], dtype=np.int64)
    bars = np.array(list(combinations(range(total + parts - 1), parts - 1)), dtype=np.int64).reshape(-1, parts - 1)
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), total + parts - 1)], axis=1)
    return np.diff(edges, axis=1) - 1


def _group_fn(advantage: str, std: str, eps: float) -> Callable[[np.ndarray, int], np.ndarray]:
    from .rl import advantages as adv
    if advantage == "group":
        return lambda r, G: adv.group_advantages(r, G, scale="std", std=std, eps=eps)
    if advantage == "group_mean":
        return lambda r, G: adv.group_advantages(r, G, scale="none")
    if advantage == "rloo":
        return lambda r, G: adv.rloo_advantages(r, G)
    raise ValueError(f"advantage {advantage!r}: expected group, group_mean, rloo or reinforce")


def expected_advantage(enum: Enumeration, rewards: np.ndarray, advantage: str, G: int, *, std: str = "population",
                       eps: float = 1e-6, max_configs: int = 200_000) -> np.ndarray:
    """a(y) = E[A_i | y_i = y] (N,) for one batch made of every prompt of `enum` with G completions each.

    group / group_mean / rloo: the G-1 peers of y are i.i.d. from pi(.|q); only how many of them take each distinct
    reward value matters, and those counts are multinomial (binomial for a 0/1 reward). Every count configuration
    is enumerated and the project's advantage function (``rl.advantages``) is applied to the group [r(y), peers].
    If a prompt has more configurations than `max_configs` (many distinct rewards, e.g. a learned RM), rloo and
    group_mean use their closed forms (r - mu_q and (G-1)/G (r - mu_q)); group (std-scaled) raises ValueError.
    reinforce: A_i = r_i - mean of the whole batch (B = n_prompts * G): E[A_i | y] = r - (r + (G-1) mu_q
    + G sum_{q' != q} mu_q') / B.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != (enum.n,):
        raise ValueError(f"rewards must be ({enum.n},), got {r.shape}")
    G = int(G)
    if G < 1 or (advantage != "reinforce" and G < 2):
        raise ValueError(f"group size G={G} too small for advantage {advantage!r}")
    probs = enum.probs
    mu = per_prompt(enum, probs * r) / per_prompt(enum, probs)                     # (n,) E[r | q]
    if advantage == "reinforce":
        B = enum.n_prompts * G
        mq = mu[enum.prompt_index]
        return r - (r + (G - 1) * mq + G * (mu.sum() - mq)) / B
    fn = _group_fn(advantage, std, eps)
    out = np.empty(enum.n)
    for q in range(enum.n_prompts):
        sl = slice(enum.offsets[q], enum.offsets[q + 1])
        values, inverse = np.unique(r[sl], return_inverse=True)
        m = len(values)
        if comb(G - 1 + m - 1, m - 1) > max_configs:
            if advantage == "rloo":
                out[sl] = r[sl] - mu[q]
            elif advantage == "group_mean":
                out[sl] = (G - 1) / G * (r[sl] - mu[q])
            else:
                raise ValueError(f"prompt {q} has {m} distinct rewards: too many group configurations to take the "
                                 f"expectation of the std-scaled advantage exactly (G={G})")
            continue
        pv = np.bincount(inverse.ravel(), weights=probs[sl], minlength=m)
        pv = pv / pv.sum()
        counts = _compositions(G - 1, m)                                               # (C, m)
        with np.errstate(divide="ignore"):
            logpv = np.log(pv)
        logw = (gammaln(G) - gammaln(counts + 1.0).sum(axis=1)
                + np.where(counts > 0, counts * logpv[None, :], 0.0).sum(axis=1))
        w = np.exp(logw)                                                               # (C,) multinomial probs
        peers = np.repeat(np.tile(values, len(counts)), counts.ravel()).reshape(len(counts), G - 1)
        groups = np.concatenate([np.repeat(values, len(counts))[:, None], np.tile(peers, (m, 1))], axis=1)
        a = fn(groups.ravel(), G).reshape(m * len(counts), G)[:, 0].reshape(m, len(counts))
        out[sl] = (a @ w)[inverse.ravel()]
    return out


def expected_sequence_coefficients(enum: Enumeration, rewards: np.ndarray, advantage: str, G: int, aggregation: str,
                                   *, max_tokens: int | None = None, std: str = "population", eps: float = 1e-6,
                                   max_configs: int = 200_000) -> np.ndarray:
    """c(y) = h(y) a_q(y) (N,): the expected weight of grad log pi(y) in the policy-gradient estimator, so that
    E[g] = (1/n) sum_q sum_y pi(y|q) c(y) grad log pi(y|q) (see ``expected_pg_gradient``)."""
    h = sequence_scale(enum, aggregation, max_tokens)
    return h * expected_advantage(enum, rewards, advantage, G, std=std, eps=eps, max_configs=max_configs)


def expected_pg_gradient(model: TinyLM, enum: Enumeration, rewards: np.ndarray, advantage: str, G: int,
                         aggregation: str, *, max_tokens: int | None = None, std: str = "population",
                         eps: float = 1e-6, max_configs: int = 200_000) -> np.ndarray:
    """Exact E[g] of the on-policy policy-gradient estimator g = -d loss / d theta (an ascent direction) of
    ``rl.losses.policy_loss`` (ratio 1, no clipping active) with advantages ``advantage`` and the given token
    aggregation, for one batch made of every prompt of `enum` with G completions each:

        E[g] = (1/n) sum_q sum_y pi(y|q) h(y) a_q(y) grad log pi(y|q)

    with h from ``sequence_scale`` and a_q from ``expected_advantage``. Compare with grad E[r]
    (``grad_expectation(model, enum, rewards)``).
    """
    c = expected_sequence_coefficients(enum, rewards, advantage, G, aggregation, max_tokens=max_tokens, std=std,
                                       eps=eps, max_configs=max_configs)
    return sequence_weights(model, enum, enum.probs * c / enum.n_prompts)


def tilt_derivative(enum: Enumeration, c: np.ndarray, f: np.ndarray, where: np.ndarray | None = None
                    ) -> tuple[np.ndarray, float]:
    """d/de E[f | q, where] at e = 0 when every log pi(y|q) moves by e * c(y) (then renormalised):
    Cov_{pi(.|q, where)}(f, c), per prompt and averaged uniformly.

    This is the expected update seen sequence by sequence (a tabular sequence policy under the natural gradient,
    where the coefficient c(y) of grad log pi(y) is the change of log pi(y)): the view of Liu et al. 2025's
    length-bias argument. Prompts with no row in `where` contribute 0.
    """
    p = enum.probs * (np.ones(enum.n) if where is None else np.asarray(where, dtype=np.float64))
    c, f = np.asarray(c, dtype=np.float64), np.asarray(f, dtype=np.float64)
    Z = per_prompt(enum, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        Ef = per_prompt(enum, p * f) / Z
        Ec = per_prompt(enum, p * c) / Z
        cov = per_prompt(enum, p * (f - Ef[enum.prompt_index]) * (c - Ec[enum.prompt_index])) / Z
    cov = np.where(Z > 0, cov, 0.0)
    return cov, float(cov.mean())


def _kl_derivative(estimator: str):
    from .rl import losses
    try:
        return losses.KL_ESTIMATORS[estimator]
    except KeyError:
        raise ValueError(f"KL estimator {estimator!r}; expected one of k1, k2, k3") from None


def expected_kl_loss_gradient(model: TinyLM, enum: Enumeration, ref: Enumeration, estimator: str,
                              level: str = "token") -> np.ndarray:
    """Exact E[grad of the KL estimator used as a loss] (prompt-averaged), on-policy.

    level="token": the estimator on every token (``rl.losses.kl_loss``, GRPO), summed over the completion:
        E[sum_t k'(logp_t, ref_t) grad logp_t]
    level="sequence": the estimator on the sequence log-probs (DeepSeek-R1's sequence notation):
        E[k'(log pi(y), log ref(y)) grad log pi(y)]
    k' is the estimator's derivative in logp from ``rl.losses``: k1' = 1 (expected gradient 0), k2' = log pi/ref
    (sequence level: grad KL(pi||ref)), k3' = 1 - ref/pi (sequence level: grad KL(ref||pi), the forward KL).
    At token level the k2/k3 gradients miss the terms through the future states (Tang & Munos 2025).
    """
    fn = _kl_derivative(estimator)
    w = enum.probs / enum.n_prompts
    if level == "token":
        _, dk = fn(enum.logp, ref.logp)
        return grad_token_weights(model, enum, np.where(enum.mask, w[:, None] * dk, 0.0))
    if level == "sequence":
        _, dk = fn(enum.seq_logp, ref.seq_logp)
        return sequence_weights(model, enum, w * dk)
    raise ValueError(f"level {level!r}: expected 'token' or 'sequence'")


def expected_kl_reward_gradient(model: TinyLM, enum: Enumeration, ref: Enumeration, estimator: str = "k1"
                                ) -> np.ndarray:
    """Exact E[(sum_t k_t) grad log pi(y)]: the penalty sum_t k_t folded into the sequence reward (detached),
    as the gradient of the penalty (to be descended). k1: exactly grad KL(pi||ref)."""
    fn = _kl_derivative(estimator)
    k, _ = fn(enum.logp, ref.logp)
    return sequence_weights(model, enum, enum.probs / enum.n_prompts * np.where(enum.mask, k, 0.0).sum(axis=1))


def expected_kl_value(enum: Enumeration, ref: Enumeration, estimator: str) -> tuple[np.ndarray, float]:
    """Exact E[sum_t k(logp_t, ref_t)] per prompt and averaged (k1, k3: = KL(pi||ref); k2: biased)."""
    k, _ = _kl_derivative(estimator)(enum.logp, ref.logp)
    return expectation(enum, np.where(enum.mask, k, 0.0).sum(axis=1))


# ====================================================================================================== pass@k, BoN
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


# ====================================================================================================== training hook
def training_metrics(cfg) -> Callable:
    """The `toyrlhf run --exact` hook: fn(trainer) -> {exact_reward, exact_gold_reward, exact_kl, exact_entropy,
    exact_response_length[, exact_accuracy]}, exact under the current policy (at the run's temperature) against
    trainer.models.reference, uniform over the task's prompts; the proxy reward is trainer.reward_fn.

    Raises UserError at once if the task has more than MAX_SEQUENCES completions. The completions and their
    rewards do not change during a run (the reward model is frozen), so they are scored once.
    """
    from .tasks import get_task
    task = get_task(cfg.task)
    check_size(len(task.prompts()), task.n_out, task.max_new_tokens, what=f"task {cfg.task!r} (--exact)")
    temperature = float(cfg.temperature)
    cache: dict = {}

    def fn(trainer) -> dict:
        m = trainer.models
        enum = enumerate_task(m.policy, task, temperature)
        key = id(trainer.reward_fn)
        if cache.get("key") != key:
            prompts, comps = enum.split()
            cache.update(key=key, gold=task.gold_reward(prompts, comps),
                         proxy=np.asarray(trainer.reward_fn(enum.tokens, enum.mask, prompts, comps), np.float64),
                         correct=task.is_correct(prompts, comps).astype(np.float64) if task.verifiable else None)
        ref = rescore(m.reference, enum, temperature)
        out = {
            "exact_reward": expectation(enum, cache["proxy"])[1],
            "exact_gold_reward": expectation(enum, cache["gold"])[1],
            "exact_kl": kl_divergences(enum, ref)["reverse_mean"],
            "exact_entropy": entropy(enum)[1],
            "exact_response_length": expectation(enum, enum.lengths)[1],
        }
        if cache["correct"] is not None:
            out["exact_accuracy"] = expectation(enum, cache["correct"])[1]
        return out

    return fn


# ====================================================================================================== toyrlhf check
@dataclass
class CheckRow:
    """One estimator against one exact target. Value rows: `exact` is the target's value, `expected` the exact
    E[estimator], `mc_mean`/`mc_se` the Monte-Carlo mean of the estimator over the draws. Gradient rows: the same
    numbers projected on u = grad target / |grad target| (so `exact` = |grad target|), plus `cos` and `ratio`
    (|E[g]| / |grad target|) of the exact expected gradient E[g]."""

    section: str
    estimator: str
    target: str
    exact: float
    expected: float
    mc_mean: float
    mc_se: float
    cos: float | None = None
    ratio: float | None = None
    cos_mc: float | None = None
    verdict: str = ""

    @property
    def z(self) -> float:
        """(MC mean - exact target) / standard error: is the estimator unbiased for the target, at this N?"""
        return (self.mc_mean - self.exact) / self.mc_se if self.mc_se > 0 else float("nan")

    @property
    def z_expected(self) -> float:
        """(MC mean - exact E[estimator]) / standard error: does the real estimator code match the exact engine?"""
        return (self.mc_mean - self.expected) / self.mc_se if self.mc_se > 0 else float("nan")


@dataclass
class CheckReport:
    rows: list
    info: dict


Z_MAX = 4.0
"""|z| above this counts as a detected difference (two-sided p ~ 6e-5 per row)."""


def _cos(a, b) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def _cos_text(c: float) -> str:
    return f"1-{1 - c:.1e}" if c > 0.9995 else f"{c:.3f}"


def _mc_note(row: CheckRow) -> str:
    return "" if abs(row.z_expected) <= Z_MAX else f"; MC differs from exact E (z {row.z_expected:+.1f})"


def value_verdict(row: CheckRow) -> str:
    """Words from the exact bias and the z-score (no hard-coded outcomes)."""
    bias = row.expected - row.exact
    if abs(bias) <= 1e-9 * max(1.0, abs(row.exact)):
        word = "unbiased" if abs(row.z) <= Z_MAX else f"unbiased, but MC z {row.z:+.1f}"
    else:
        rel = bias / abs(row.exact) if row.exact else float("inf")
        seen = "detected" if abs(row.z) > Z_MAX else "not detected at this N"
        word = f"biased {rel:+.0%} ({seen})"
    return word + _mc_note(row)


def gradient_verdict(row: CheckRow, other: tuple[str, float, float] | None = None,
                     constants: dict[str, float] | None = None) -> str:
    """Words from the exact cosine / norm ratio (and the z-score for detectability).

    other = (name, cos, ratio) of the same estimator against another target (KL rows: the other direction);
    constants = named factors to recognise in a norm ratio of a parallel gradient."""
    cos, ratio = row.cos, row.ratio

    def matches(c, r):
        return c > 1 - 1e-9 and abs(r - 1) < 1e-6

    if ratio < 1e-8:
        word = "zero expected gradient"
    elif matches(cos, ratio):
        word = "unbiased"
    elif other is not None and matches(other[1], other[2]):
        word = f"biased: follows {other[0]}"
    elif cos > 1 - 1e-9:
        name = next((k for k, c in (constants or {}).items() if abs(ratio / c - 1) < 1e-6), None)
        word = f"parallel, {name} x true" if name else f"parallel, x{ratio:.4g}"
        if abs(row.z) <= Z_MAX:
            word += " (scale not detected at this N)"
    else:
        word = f"not parallel (cos {_cos_text(cos)})"
        if other is not None and other[1] > cos:
            word += f", closer to {other[0]} (cos {_cos_text(other[1])})"
    return word + _mc_note(row)


def _unit(v):
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


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


class _TokenPairs:
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


class _Draws:
    """Per-draw projections and the mean gradient of an estimator whose draws are consecutive row blocks.

    A draw's gradient is sum over its rows of dlogp . grad logp; its projection on u is sum dlogp . J_u (J_u from
    ``directional_logp``); the mean gradient over draws goes through ``model.logp_backward``."""

    def __init__(self, model: TinyLM, pairs: _TokenPairs, J: dict[str, np.ndarray], n_draws: int):
        self.model, self.pairs, self.J, self.n_draws = model, pairs, J, n_draws

    def add(self, dlogp: np.ndarray, sign: float = 1.0):
        per = {k: sign * (dlogp * J).sum(axis=1).reshape(self.n_draws, -1).sum(axis=1) for k, J in self.J.items()}
        mean = sign * self.pairs.grad(self.model, dlogp / self.n_draws)
        return per, mean


def _mean_se(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def run_check(task: str = "arith", samples: int = 2000, seed: int = 0, *, group_size: int = 8, pg_prompts: int = 4,
              kl_batch: int = 16, ref_mix: float = 0.5, pipeline=None, progress: Callable | None = None,
              build_progress: Callable | None = None) -> CheckReport:
    """Exact values and gradients against Monte-Carlo estimates built from the project's own estimator code.

    pi = the task's SFT model (stage cache); pi_ref = the SFT weights moved `ref_mix` of the way back to the
    pretrained weights (so KL(pi||ref) is moderate and non-trivial); `pipeline` overrides the upstream stages'
    configs (default: the stages' defaults for the task and seed). `samples` draws per row group:
      * KL rows: a draw is `kl_batch` sequences from pi (``model.sample``) on uniform prompts; the per-token
        estimators are ``rl.losses.kl_k1/k2/k3`` summed over the completion (values), ``rl.losses.kl_loss``
        at token level (GRPO) or on the sequence log-probs (sequence level) as losses, and "k1 in reward" is
        ``rl.losses.kl_penalty_rewards`` summed into the sequence reward, through ``policy_loss``.
      * policy-gradient rows: a draw is `pg_prompts` prompts of different difficulty (evenly spaced in pi's
        exact accuracy) x G completions; rewards are the task's 0/1 correctness (verifiable tasks; the gold
        reward otherwise), advantages from ``rl.advantages`` and the preset's aggregation in ``rl.losses.policy_loss``
        (the batch counts passed as ``n_seqs``, so each draw is normalised as a training batch is).
    Per-draw gradients are reduced to their projections on the unit target gradients (``directional_logp``); the
    mean gradient over draws goes through ``model.logp_backward``. Log-probs and gradients of the sampled tokens
    are computed once per distinct (window, token) pair (``_TokenPairs``): the same numbers, regrouped.
    """
    import time
    from . import stages
    from .rl import advantages as adv_mod
    from .rl import losses
    from .rl.algorithms import preset_config
    from .tasks import get_task

    t_start = time.perf_counter()
    if samples < 2:
        raise UserError(f"--samples must be at least 2, got {samples}")
    try:
        tsk = get_task(task)
    except ValueError as e:
        raise UserError(str(e)) from None
    check_size(len(tsk.prompts()), tsk.n_out, tsk.max_new_tokens, what=f"task {task!r}")
    pipe = pipeline or stages.Pipeline(pretrain=stages.PretrainConfig(task=task, seed=seed))
    if pipe.pretrain.task != task or pipe.pretrain.seed != seed:
        raise ValueError("pipeline.pretrain must have the check's task and seed")
    policy, sft_path = stages.cached_sft(pipe, build_progress)
    base, _ = stages.cached_pretrained(pipe.pretrain, build_progress)
    ref_model = policy.copy()
    ref_model.set_flat(policy.flat + ref_mix * (base.flat - policy.flat))
    T, P = tsk.max_new_tokens, tsk.prompt_len
    rng = np.random.default_rng([seed, 7, 7])
    steps = [0]

    def tick():
        steps[0] += 1
        if progress:
            progress(steps[0], {})

    # ------------------------------------------------------------------ exact KL quantities
    enum = enumerate_task(policy, tsk)
    ref = rescore(ref_model, enum)
    kls = kl_divergences(enum, ref)
    g_rev = grad_reverse_kl(policy, enum, ref)
    g_fwd = grad_forward_kl(policy, enum, ref)
    u = {"rev": _unit(g_rev), "fwd": _unit(g_fwd)}
    targets = {"rev": ("grad KL(pi||ref)", g_rev), "fwd": ("grad KL(ref||pi)", g_fwd)}
    kl_variants = [  # (label, estimator, level, kind)
        ("k1 as loss", "k1", "token", "loss"),
        ("k2 as loss, per token", "k2", "token", "loss"),
        ("k2 as loss, per sequence", "k2", "sequence", "loss"),
        ("k3 as loss, per token (GRPO)", "k3", "token", "loss"),
        ("k3 as loss, per sequence", "k3", "sequence", "loss"),
        ("k1 in reward (REINFORCE)", "k1", "sequence", "reward"),
    ]
    expected = {label: (expected_kl_reward_gradient(policy, enum, ref, est) if kind == "reward"
                        else expected_kl_loss_gradient(policy, enum, ref, est, level))
                for label, est, level, kind in kl_variants}
    tick()

    # ------------------------------------------------------------------ MC: KL values and gradients
    all_prompts = tsk.prompts()
    B = int(kl_batch)
    prompts = all_prompts[rng.integers(len(all_prompts), size=samples * B)]
    s = policy.sample(prompts, T, rng)
    pairs = _TokenPairs(policy, s.tokens, s.mask)
    logp, ref_logp = pairs.logp(policy), pairs.logp(ref_model)
    draws = _Draws(policy, pairs, {k: pairs.directional(policy, v) for k, v in u.items()}, samples)
    tick()
    values = {}
    for k in ("k1", "k2", "k3"):
        kv, _ = losses.KL_ESTIMATORS[k](logp, ref_logp)
        values[k] = np.where(s.mask, kv, 0.0).sum(axis=1).reshape(samples, B).mean(axis=1)
    seq, seq_ref = logp.sum(axis=1)[:, None], ref_logp.sum(axis=1)[:, None]
    ones = np.ones((len(seq), 1), dtype=bool)
    mc = {}
    for label, est, level, kind in kl_variants:
        if kind == "reward":
            shaped = losses.kl_penalty_rewards(logp, ref_logp, s.mask, 1.0, est)
            adv = adv_mod.broadcast_to_tokens(shaped.sum(axis=1), s.mask)
            _, dlogp, _ = losses.policy_loss(logp, logp, adv, s.mask, aggregation="seq-mean-token-sum", n_seqs=B)
        elif level == "token":
            _, dlogp = losses.kl_loss(logp, ref_logp, s.mask, estimator=est, aggregation="seq-mean-token-sum",
                                      n_seqs=B)
        else:
            _, dseq = losses.kl_loss(seq, seq_ref, ones, estimator=est, aggregation="seq-mean-token-sum", n_seqs=B)
            dlogp = adv_mod.broadcast_to_tokens(dseq[:, 0], s.mask)
        mc[label] = draws.add(dlogp)
        tick()

    rows = []
    names = {"rev": "KL(pi||ref)", "fwd": "KL(ref||pi)"}
    for k in ("k1", "k2", "k3"):
        row = CheckRow("KL value", f"KL {k} (sum over tokens)", "KL(pi||ref)", kls["reverse_mean"],
                       expected_kl_value(enum, ref, k)[1], *_mean_se(values[k]))
        row.verdict = value_verdict(row)
        rows.append(row)
    for label, *_ in kl_variants:
        E = expected[label]
        per, mean_vec = mc[label]
        for key in ("rev", "fwd"):
            tname, tg = targets[key]
            other = "fwd" if key == "rev" else "rev"
            row = CheckRow("KL gradient", label, tname, float(np.linalg.norm(tg)), float(E @ u[key]),
                           *_mean_se(per[key]), cos=_cos(E, tg), ratio=float(np.linalg.norm(E) / np.linalg.norm(tg)),
                           cos_mc=_cos(mean_vec, tg))
            og = targets[other][1]
            row.verdict = gradient_verdict(row, (f"grad {names[other]}", _cos(E, og),
                                                 float(np.linalg.norm(E) / np.linalg.norm(og))))
            rows.append(row)

    # ------------------------------------------------------------------ policy gradients
    binary = bool(tsk.verifiable)

    def reward_of(prompts, comps):
        return (tsk.is_correct(prompts, comps).astype(np.float64) if binary
                else tsk.gold_reward(prompts, comps))

    r_all = reward_of(*enum.split())
    p_all, _ = expectation(enum, r_all)
    order = np.argsort(p_all, kind="stable")
    K = min(int(pg_prompts), enum.n_prompts)
    chosen = order[np.unique(np.round(np.linspace(0, len(order) - 1, K)).astype(int))]
    sub = enumerate_task(policy, tsk, prompts=all_prompts[chosen])
    r_sub = reward_of(*sub.split())
    g_true = grad_expectation(policy, sub, r_sub)
    u_true = _unit(g_true)
    G = int(group_size)
    Bpg = len(chosen) * G
    algos = ["reinforce", "rloo", "dr_grpo", "grpo"]
    cfgs = {a: preset_config(a, task=task) for a in algos}
    E_pg, why = {}, {}
    for a in algos:
        try:
            E_pg[a] = expected_pg_gradient(policy, sub, r_sub, cfgs[a].advantage, G, cfgs[a].aggregation,
                                           max_tokens=T, std=cfgs[a].std, eps=cfgs[a].adv_eps)
        except ValueError as e:       # std-scaled advantages with a many-valued reward: no exact expectation
            E_pg[a], why[a] = None, str(e).split(":")[0]
    tick()
    s = policy.sample(np.tile(np.repeat(all_prompts[chosen], G, axis=0), (samples, 1)), T, rng)
    pairs = _TokenPairs(policy, s.tokens, s.mask)
    logp = pairs.logp(policy)
    r = reward_of(*tk.split(s.tokens, P))
    draws = _Draws(policy, pairs, {"true": pairs.directional(policy, u_true)}, samples)
    tick()
    mc = {}
    for a in algos:
        c = cfgs[a]
        if c.advantage == "reinforce":   # the batch baseline is the mean of each draw's own batch
            A = np.concatenate([adv_mod.reinforce_advantages(x) for x in r.reshape(samples, Bpg)])
        else:
            A = adv_mod.sequence_advantages(r, G, c.advantage, std=c.std, eps=c.adv_eps)
        _, dlogp, _ = losses.policy_loss(logp, logp, adv_mod.broadcast_to_tokens(A, s.mask), s.mask,
                                         aggregation=c.aggregation, max_tokens=T, n_seqs=Bpg)
        mc[a] = draws.add(dlogp, sign=-1.0)          # ascent direction: -d loss / d theta
        tick()
    consts = {"(G-1)/G": (G - 1) / G, "(B-1)/B": (Bpg - 1) / Bpg, "1/L_max": 1 / T,
              "(G-1)/G/L_max": (G - 1) / G / T, "(B-1)/B/L_max": (Bpg - 1) / Bpg / T}
    labels = {"reinforce": "REINFORCE (batch mean)", "rloo": "RLOO", "dr_grpo": "Dr. GRPO (group mean, sum/L_max)",
              "grpo": "GRPO (std, 1/|o|)"}
    for a in algos:
        E = E_pg[a]
        per, mean_vec = mc[a]
        if E is None:
            row = CheckRow("policy gradient", labels[a], "grad E[r]", float(np.linalg.norm(g_true)), float("nan"),
                           *_mean_se(per["true"]), cos_mc=_cos(mean_vec, g_true))
            seen = "biased (detected)" if abs(row.z) > Z_MAX else "bias not detected"
            row.verdict = f"no exact E[est] ({why[a]}); MC: {seen}, cos(MC mean) {_cos_text(row.cos_mc)}"
        else:
            row = CheckRow("policy gradient", labels[a], "grad E[r]", float(np.linalg.norm(g_true)),
                           float(E @ u_true), *_mean_se(per["true"]), cos=_cos(E, g_true),
                           ratio=float(np.linalg.norm(E) / np.linalg.norm(g_true)), cos_mc=_cos(mean_vec, g_true))
            row.verdict = gradient_verdict(row, None, consts)
        rows.append(row)

    # ------------------------------------------------------------------ preference labels (the RM's data)
    # pairs of distinct pi completions on uniform prompts, labelled by the project's Bradley-Terry sampler (tau = 1);
    # the exact population ceiling comes from the enumeration, the gold reward scoring itself
    from . import preferences as prefs
    gold_all = tsk.gold_reward(*enum.split())
    ceiling = prefs.exact_pair_expectations(enum.probs, gold_all, gold_all, enum.offsets, 1.0)["bayes_accuracy"]
    n_pairs = 16 * samples
    pairs = prefs.make_preferences(policy, tsk, rng.integers(len(all_prompts), size=n_pairs), tau=1.0, rng=rng)
    dgold = pairs.delta_gold()                                  # r*(label winner) - r*(label loser)
    for label, per_pair in (("sigma(|Delta*|) (sampled ceiling)", prefs.pref_prob(np.abs(dgold), 1.0)),
                            ("label agrees with r* (BT sampler)", (dgold > 0) + 0.5 * (dgold == 0))):
        row = CheckRow("preference labels", label, "Bayes ceiling", ceiling, ceiling, *_mean_se(per_pair))
        row.verdict = value_verdict(row)
        rows.append(row)
    tick()

    info = {
        "task": task, "seed": seed, "samples": samples, "sft": str(sft_path), "ref_mix": ref_mix,
        "pref_pairs": pairs.n_pairs,
        "n_completions": enum.n, "n_prompts": enum.n_prompts,
        "kl_reverse": kls["reverse_mean"], "kl_forward": kls["forward_mean"],
        "kl_batch": B, "group_size": G, "pg_batch": Bpg,
        "pg_prompts": [tsk.describe(all_prompts[q], np.zeros(0, np.int64)).replace(" ->", "").strip()
                       for q in chosen],
        "pg_p": [float(p_all[q]) for q in chosen], "reward": "1[correct]" if binary else "gold reward",
        "accuracy": float(p_all.mean()), "accuracy_label": "P(correct)" if binary else "E[gold reward]",
        "time_s": time.perf_counter() - t_start,
    }
    return CheckReport(rows, info)


CHECK_STEPS = 4 + 6 + 4 + 1
"""Progress ticks of run_check."""
