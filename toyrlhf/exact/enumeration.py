"""Enumeration: every completion of every prompt, in the padded layout, with its exact log-probability.

The vocabularies and lengths of toyrlhf's tasks are tiny, so the set of completions of a prompt (each ended by EOS
or cut at ``max_new_tokens``) is small enough to list.

Enumeration (``enumerate_completions``) walks the prefix tree level by level: level t holds every live prefix
(prompt + t tokens, no EOS yet) of every prompt, and one ``model.contexts`` call per level gives the window (last k
tokens) each of them is seen through. A prefix's EOS child is a finished completion, its other children are the
live prefixes of level t+1 (at the last level: truncated completions). The tree depends only on the prompts, T,
V_out and k, and is cached. Many prefixes (of different prompts, at different depths) end in the same window, so
the next-token distribution of each *distinct* window is evaluated once, by one batched ``model.next_logprobs``
call; every prefix's distribution is therefore evaluated at most once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import tokens as tk
from ..errors import UserError
from ..model import TinyLM

__all__ = ["MAX_SEQUENCES", "Enumeration", "count_completions", "check_size", "enumerate_completions",
           "enumerate_task", "rescore"]

MAX_SEQUENCES = 500_000
"""Largest number of completions (over all prompts) the engine enumerates; beyond it, a UserError.
(arith: 194,375; length: 149,296; pref: 335,916.)"""


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
    win_X = _distinct_windows(np.concatenate(windows), tok_win, mask[:, P:])
    tree = _Tree(tokens=tokens, mask=mask, prompt_index=q, offsets=np.searchsorted(q, np.arange(n + 1)),
                 win_X=win_X, tok_win=tok_win)
    for a in (tree.tokens, tree.mask, tree.prompt_index, tree.offsets, tree.win_X, tree.tok_win):
        a.setflags(write=False)
    if len(_TREES) >= 8:
        _TREES.pop(next(iter(_TREES)))
    _TREES[key] = tree
    return tree


def _distinct_windows(X: np.ndarray, tok_win: np.ndarray, cm: np.ndarray) -> np.ndarray:
    """The distinct rows of the windows X (n_win, k); tok_win's ids into X (on the completion mask cm) are renumbered
    in place to ids into them. Prefixes ending in the same k tokens share their next-token distribution."""
    base = int(X.max()) + 1
    keys = np.zeros(len(X), dtype=np.int64)
    for c in range(X.shape[1]):
        keys = keys * base + X[:, c]
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    tok_win[cm] = inverse.ravel()[tok_win[cm]]
    return np.ascontiguousarray(X[first])


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

