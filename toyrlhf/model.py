"""TinyLM: a bigram table or a Bengio-style context-window MLP, with value and reward heads, and hand-written backprop.

Forward, for a context of k tokens: by default (align = "recent") the last k tokens, BOS-padded on the left
(Bengio et al. 2003's n-gram window); with align = "prefix" the whole prefix at absolute positions 0..k-1,
PAD-filled on the right (the reward model's reading of a whole sequence, like a transformer's last token):

    mlp:     E   = concat(emb[x_1], ..., emb[x_k])          (N, k*d)
             pre = E @ W1 + b1                              (N, h)
             H   = tanh(pre)                                (N, h)     the trunk's features
    bigram:  H   = onehot(x_k)                              (N, V)     no trunk parameters

    LM head:     logits = H @ W2 (+ b2)                     (N, V_out) over output ids EOS and task tokens
                 logp   = log_softmax(logits / T)[target]   (N,)       T = sampling temperature
    value head:  v      = H @ wv + bv                       (N,)       PPO critic, one value per state
    reward head: r      = mean_{completion windows}(H) @ wr + br    (B,)   reward_pool = "mean"
                 r      = H(window ending at the last token) @ wr + br  (B,)   reward_pool = "last"

Every head has `forward -> (out, cache)` and `backward(dout, cache) -> grads`; gradients are named d<name>
and returned in a flat vector laid out like the parameters (`get_flat` / `set_flat`), so gradient checks,
optimisers and the exact engine all work on one array.

Which window is a row? A row is named by (b, end): the window tokens[b, end-k+1 .. end] ("recent"), or
tokens[b, 0 .. end] followed by PAD up to k tokens ("prefix").
  * log-prob of token t and the value V(s_t) of the state before it use the window ending at t - 1;
  * the reward head pools the windows ending at each completion token ("mean"), or reads the one window ending
    at the last completion token ("last"; with a prefix window of k >= L it sees the whole sequence).

Two implementations of every head, the same mathematics:
  * the reference path (`trunk_forward` / `trunk_backward`, `_ref_*` methods): NumPy with named intermediates,
    the readable specification that the finite-difference gradient checks verify;
  * the fast path (default, `TinyLM.fast = True`): fused numba kernels (`model_fast.py` over toyrlhf/kernels/,
    whose forward.py explains the algebra), run once per distinct window of a batch, no BLAS call, bit-identical
    results for any NUMBA_NUM_THREADS / OPENBLAS_NUM_THREADS. tests/test_kernels.py checks fast == reference to
    1e-12 (relative to the largest entry).
The public methods dispatch on `self.fast`; their caches are private to the path that made them. The fast LM
head keeps the windows it computed at the current parameters and temperature (`model_memo.WindowMemo`): sampling
fills it, and the rollout's pi_old forward, a first minibatch and a frozen reference read it back, bit for bit.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import kernels
from .model_fast import FastPath, FastTrunk, int_rows
from .tokens import BOS, EOS, OUT_OFFSET, PAD

ARCHS = ("mlp", "bigram")
ALIGNS = ("recent", "prefix")
REWARD_POOLS = ("mean", "last")
RM_HEADS = ("sequence", "mean")
"""The reward model's shape (``RMConfig.head``): 'sequence' = one prefix window over prompt + completion read at the
last token (align='prefix', reward_pool='last'); 'mean' = the policy's recent windows, mean-pooled."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a TinyLM."""

    vocab_size: int
    """V: all token ids, specials included (the LM head predicts V - 2 of them: no PAD, no BOS)."""
    arch: str = "mlp"
    """'mlp' (context window -> tanh hidden layer) or 'bigram' (a V x V_out logit table)."""
    context: int = 4
    """k: tokens the MLP sees (the bigram always sees 1)."""
    embed: int = 16
    """d: embedding width per context token."""
    hidden: int = 128
    """h: width of the tanh layer (the trunk's feature width)."""
    align: str = "recent"
    """Which k tokens the MLP sees at a position: 'recent' (the last k, BOS-padded on the left) or 'prefix'
    (positions 0..k-1 of the sequence, PAD after the current token; sequences may not be longer than k)."""
    reward_pool: str = "mean"
    """How the reward head reads a completion: 'mean' of the features of the windows ending at each completion
    token, or 'last' (the window ending at the last completion token, EOS or the T-th token)."""

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose from {', '.join(ARCHS)}")
        if self.align not in ALIGNS:
            raise ValueError(f"unknown window alignment {self.align!r}; choose from {', '.join(ALIGNS)}")
        if self.reward_pool not in REWARD_POOLS:
            raise ValueError(f"unknown reward pooling {self.reward_pool!r}; choose from {', '.join(REWARD_POOLS)}")
        if self.align == "prefix" and self.arch != "mlp":
            raise ValueError("a prefix window needs the mlp architecture (the bigram sees one token)")
        for name in ("vocab_size", "context", "embed", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.vocab_size < 4:
            raise ValueError("vocab_size must include PAD, BOS, EOS and at least one task token")

    @property
    def n_out(self) -> int:
        return self.vocab_size - OUT_OFFSET

    @property
    def features(self) -> int:
        return self.hidden if self.arch == "mlp" else self.vocab_size

    @property
    def window(self) -> int:
        return self.context if self.arch == "mlp" else 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter, in flat-vector order. Heads: lm (W2, b2), value (wv, bv), reward (wr, br)."""
    F, Vo = cfg.features, cfg.n_out
    shapes: dict[str, tuple[int, ...]] = {}
    if cfg.arch == "mlp":
        shapes["emb"] = (cfg.vocab_size, cfg.embed)
        shapes["W1"] = (cfg.context * cfg.embed, cfg.hidden)
        shapes["b1"] = (cfg.hidden,)
    shapes["W2"] = (F, Vo)
    if cfg.arch == "mlp":
        shapes["b2"] = (Vo,)  # a bigram table needs no separate bias
    shapes["wv"] = (F,)
    shapes["bv"] = (1,)
    shapes["wr"] = (F,)
    shapes["br"] = (1,)
    return shapes


TRUNK = ("emb", "W1", "b1")
ROLE_PARAMS = {
    "policy": TRUNK + ("W2", "b2"),
    "value": TRUNK + ("wv", "bv"),
    "reward": TRUNK + ("wr", "br"),
}


def _is_fast(tcache) -> bool:
    """Was this trunk cache made by the fast path? (The reference cache is a tuple starting with the windows.)"""
    return isinstance(tcache, FastTrunk)


@functools.lru_cache(maxsize=64)
def _layout(items: tuple) -> tuple:
    """((name, start, stop, shape), ...) of the parameters in flat-vector order (items: the shapes' items)."""
    out, i = [], 0
    for name, shape in items:
        n = math.prod(shape)
        out.append((name, i, i + n, shape))
        i += n
    return tuple(out)


def _views(flat: np.ndarray, shapes: dict[str, tuple[int, ...]], layout: tuple | None = None) -> dict[str, np.ndarray]:
    """{name: view of flat} (layout: `_layout` of the shapes, when the caller keeps it)."""
    layout = _layout(tuple(shapes.items())) if layout is None else layout
    return {name: flat[a:b].reshape(shape) for name, a, b, shape in layout}


class TinyLM(FastPath):
    """A tiny autoregressive LM whose parameters live in one flat float64 vector (`self.flat`)."""

    fast: bool = True
    """Use the fused numba kernels (default); False selects the NumPy reference path (set per instance)."""

    def __init__(self, config: ModelConfig, seed: int | np.random.Generator = 0, init: str = "default"):
        self.config = config
        self.shapes = param_shapes(config)
        self.flat = np.zeros(sum(math.prod(s) for s in self.shapes.values()))
        self.params = _views(self.flat, self.shapes)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._init_params(rng, init)

    # ---------------------------------------------------------------- parameters
    def _init_params(self, rng: np.random.Generator, init: str) -> None:
        cfg, p = self.config, self.params
        if cfg.arch == "mlp":
            p["emb"][:] = rng.normal(0.0, 1.0, p["emb"].shape)
            p["W1"][:] = rng.normal(0.0, 1.0 / np.sqrt(cfg.context * cfg.embed), p["W1"].shape)
            p["W2"][:] = rng.normal(0.0, 0.1 / np.sqrt(cfg.hidden), p["W2"].shape)
        if init == "random":  # every parameter random and non-symmetric: for gradient checks
            for name, arr in p.items():
                arr[:] = rng.normal(0.0, 0.5, arr.shape)

    def get_flat(self) -> np.ndarray:
        return self.flat.copy()

    def set_flat(self, flat: np.ndarray) -> None:
        flat = np.asarray(flat, dtype=np.float64)
        if flat.shape != self.flat.shape:
            raise ValueError(f"expected {self.flat.shape[0]} parameters, got {flat.shape}")
        self.flat[:] = flat

    def copy(self) -> "TinyLM":
        other = TinyLM.__new__(TinyLM)
        other.config, other.shapes = self.config, self.shapes
        other.flat = self.flat.copy()
        other.params = _views(other.flat, other.shapes)
        return other

    def zeros_like_params(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        g = np.zeros(self.flat.shape[0])
        layout = getattr(self, "_param_layout", None)
        if layout is None:                 # kept: a backward makes one, 32 times a PPO step
            layout = self._param_layout = _layout(tuple(self.shapes.items()))
        return g, _views(g, self.shapes, layout)

    def num_params(self, role: str | None = None) -> int:
        """Parameters a model in `role` ('policy', 'value', 'reward') uses; all if role is None."""
        names = self.shapes if role is None else [n for n in ROLE_PARAMS[role] if n in self.shapes]
        return sum(math.prod(self.shapes[n]) for n in names)

    # ---------------------------------------------------------------- rows
    def _check_tokens(self, tokens: np.ndarray) -> np.ndarray:
        tokens = int_rows(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be (B, L), got shape {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})")
        return tokens

    def contexts(self, tokens: np.ndarray, rows: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Windows (N, k) of tokens[rows[n], ends[n]-k+1 .. ends[n]], BOS-padded on the left (align 'recent'),
        or of tokens[rows[n], 0 .. ends[n]], PAD-filled on the right (align 'prefix')."""
        return self._contexts(self._check_tokens(tokens), rows, ends)

    def _contexts(self, tokens: np.ndarray, rows: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """`contexts` of tokens already checked (`_check_tokens`)."""
        rows = np.ascontiguousarray(rows, np.int64)
        ends = np.ascontiguousarray(ends, np.int64)
        k = self.config.window
        prefix = self.config.align == "prefix"
        if prefix and ends.size and ends.max() >= k:
            raise ValueError(f"a prefix-window model of context {k} cannot read position {int(ends.max())}: "
                             f"sequences may hold at most {k} tokens")
        return kernels._gather_contexts(tokens, rows, ends, k, prefix, BOS, PAD)   # never sees past its end

    # ---------------------------------------------------------------- trunk
    def trunk_forward(self, X: np.ndarray):
        """X (N, k) context ids -> (H (N, F), cache)."""
        cfg, p = self.config, self.params
        if cfg.arch == "bigram":
            H = kernels._one_hot_last(X, cfg.vocab_size)       # (N, V)
            return H, (X, None, H)
        E = kernels._embed_concat(X, p["emb"])                 # (N, k*d)
        pre = E @ p["W1"] + p["b1"]                            # (N, h)
        H = np.tanh(pre)                                       # (N, h)
        return H, (X, E, H)

    def trunk_backward(self, dH: np.ndarray, cache, grads: dict[str, np.ndarray]) -> None:
        """Accumulate the trunk's parameter gradients from dH (N, F) into `grads`."""
        X, E, H = cache
        if self.config.arch == "bigram":
            return
        dpre = dH * (1.0 - H * H)                              # (N, h)   tanh' = 1 - tanh^2
        grads["W1"] += E.T @ dpre                              # (k*d, h)
        grads["b1"] += dpre.sum(axis=0)                        # (h,)
        dE = dpre @ self.params["W1"].T                        # (N, k*d)
        kernels._embed_backward(X, np.ascontiguousarray(dE), grads["emb"])

    def _logits(self, H: np.ndarray) -> np.ndarray:
        logits = H @ self.params["W2"]                         # (N, V_out)
        if "b2" in self.params:
            logits += self.params["b2"]
        return logits

    # ---------------------------------------------------------------- LM head
    def next_logprobs(self, X: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Log-probabilities (N, V_out) of the next token after each context window X (N, k)."""
        if self.fast:
            tc, logprobs, _ = self._fast_forward(X, 1.0 / temperature, lm=True)
            return logprobs[tc.of_row]
        H, _ = self.trunk_forward(X)
        return kernels._log_softmax(self._logits(H), 1.0 / temperature)

    def logp_forward(self, tokens: np.ndarray, mask: np.ndarray, temperature: float = 1.0):
        """Per-token log-probs of the tokens where mask is True.

        tokens (B, L) int, mask (B, L) bool (never True at t = 0) -> (logp (B, L), entropy (B, L), cache),
        logp[b, t] = log pi(tokens[b, t] | window ending at t-1) with logits / temperature; entropy[b, t] is the
        entropy of that next-token distribution. Both are 0 where mask is False.
        """
        tokens = self._check_tokens(tokens)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != tokens.shape:
            raise ValueError(f"mask shape {mask.shape} != tokens shape {tokens.shape}")
        if mask[:, 0].any():
            raise ValueError("the first position has no context: mask[:, 0] must be False")
        rows, cols = np.nonzero(mask)
        targets = tokens[rows, cols] - OUT_OFFSET
        if targets.size and targets.min() < 0:
            raise ValueError("PAD and BOS cannot be predicted: they are input-only tokens")
        X = self._contexts(tokens, rows, cols - 1)                     # (N, k)
        if self.fast:
            tcache, logprobs, _ = self._fast_forward(X, 1.0 / temperature, lm=True)   # distinct windows' rows
            H = None              # the features stay in tcache, gathered from the memo only if a backward asks
            lp = logprobs[tcache.of_row, targets]
            ent = tcache.ent[tcache.of_row]
        else:
            H, tcache = self.trunk_forward(X)                         # (N, F)
            logprobs = kernels._log_softmax(self._logits(H), 1.0 / temperature)   # (N, V_out)
            n = rows.shape[0]
            lp = logprobs[np.arange(n), targets]                      # (N,)
            ent = -(np.exp(logprobs) * logprobs).sum(axis=1)          # (N,)
        logp = np.zeros(tokens.shape)
        entropy = np.zeros(tokens.shape)
        logp[rows, cols] = lp
        entropy[rows, cols] = ent
        cache = (rows, cols, targets, logprobs, H, tcache, temperature)
        return logp, entropy, cache

    def logp_backward(self, dlogp: np.ndarray, cache, dentropy: np.ndarray | None = None) -> np.ndarray:
        """Gradient (flat) of sum(dlogp * logp + dentropy * entropy) with respect to the parameters."""
        rows, cols, targets, logprobs, H, tcache, temperature = cache
        dlp = np.ascontiguousarray(dlogp[rows, cols], dtype=np.float64)               # (N,)
        dent = (np.zeros_like(dlp) if dentropy is None
                else np.ascontiguousarray(dentropy[rows, cols], dtype=np.float64))
        g, grads = self.zeros_like_params()
        if _is_fast(tcache):
            self._fast_logp_backward(logprobs, targets, dlp, dent, 1.0 / temperature, tcache, grads)
            return g
        dlogits = kernels._dlogits(logprobs, targets, dlp, dent, 1.0 / temperature)    # (N, V_out)
        grads["W2"] += H.T @ dlogits                                                   # (F, V_out)
        if "b2" in grads:
            grads["b2"] += dlogits.sum(axis=0)
        dH = dlogits @ self.params["W2"].T                                             # (N, F)
        self.trunk_backward(dH, tcache, grads)
        return g

    # ---------------------------------------------------------------- scalar heads on windows
    def head_forward(self, X: np.ndarray, w: str) -> tuple[np.ndarray, "HeadCache"]:
        """A scalar head on prepared windows: s (N,) = H(X_n) . params[w] (no bias) for windows X (N, k) from
        `contexts` or `reward_windows` (w = 'wv' value, 'wr' reward), and the cache for `head_backward`. The fast
        path runs the trunk once per distinct window of X."""
        if self.fast:
            tcache, _, s = self._fast_forward(X, w=w)
            return s[tcache.of_row], HeadCache(w, None, tcache)
        H, tcache = self.trunk_forward(X)                                  # (N, F)
        return H @ self.params[w], HeadCache(w, H, tcache)                  # (N,)

    def head_backward(self, ds: np.ndarray, cache: "HeadCache", grads: dict[str, np.ndarray]) -> None:
        """Add the gradient of sum_n ds[n] s[n] for a `head_forward` into grads (the named views of
        `zeros_like_params`): the head's weight w and the trunk. The bias's gradient (sum ds) is the caller's."""
        ds = np.ascontiguousarray(ds, dtype=np.float64)
        w, H, tcache = cache
        if _is_fast(tcache):
            self._fast_scalar_head_backward(ds, tcache.H, tcache, w, grads)
            return
        grads[w] += H.T @ ds                                               # (F,)
        self.trunk_backward(np.outer(ds, self.params[w]), tcache, grads)

    # ---------------------------------------------------------------- value head
    def value_forward(self, tokens: np.ndarray, mask: np.ndarray):
        """V(s_t) for the state before each masked token t: (values (B, L), cache); 0 where mask is False."""
        tokens = self._check_tokens(tokens)
        rows, cols = np.nonzero(mask)
        s, hcache = self.head_forward(self._contexts(tokens, rows, cols - 1), "wv")
        values = np.zeros(tokens.shape)
        values[rows, cols] = s + self.params["bv"][0]
        return values, (rows, cols, hcache)

    def value_backward(self, dvalues: np.ndarray, cache) -> np.ndarray:
        rows, cols, hcache = cache
        dv = np.ascontiguousarray(dvalues[rows, cols], dtype=np.float64)   # (N,)
        g, grads = self.zeros_like_params()
        grads["bv"] += dv.sum()
        self.head_backward(dv, hcache, grads)
        return g

    # ---------------------------------------------------------------- reward head
    def reward_windows(self, tokens: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The windows the reward head reads and how it pools them: (X (N, k), rows (N,) the sequence of each
        window, counts (B,) windows per sequence). 'mean': the windows ending at each completion token; 'last': one
        per sequence, ending at its last completion token (rows = arange(B), counts = 1)."""
        tokens = self._check_tokens(tokens)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != tokens.shape:
            raise ValueError(f"mask shape {mask.shape} != tokens shape {tokens.shape}")
        rows, cols = np.nonzero(mask)
        B = tokens.shape[0]
        counts = np.bincount(rows, minlength=B).astype(np.float64)
        if (counts == 0).any():
            raise ValueError("every sequence needs at least one completion token for the reward head")
        if self.config.reward_pool == "last":
            cols = tokens.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)   # (B,) last completion position
            rows, counts = np.arange(B), np.ones(B)                        # one window per sequence
        return self._contexts(tokens, rows, cols), rows, counts            # windows ending AT each token

    def reward_forward(self, tokens: np.ndarray, mask: np.ndarray):
        """Scalar reward of each sequence from the windows ending AT its completion tokens:

            reward_pool 'mean':  r_b = (1/|o_b|) sum_{t in completion} H(window ending at t) @ wr + br
            reward_pool 'last':  r_b = H(window ending at the last completion token) @ wr + br
        """
        X, rows, counts = self.reward_windows(tokens, mask)
        s, hcache = self.head_forward(X, "wr")
        pooled = np.bincount(rows, weights=s, minlength=counts.shape[0]) / counts   # (B,)
        return pooled + self.params["br"][0], (rows, counts, hcache)

    def reward_backward(self, dr: np.ndarray, cache) -> np.ndarray:
        rows, counts, hcache = cache
        ds = (np.asarray(dr, dtype=np.float64) / counts)[rows]             # (N,) d r_b / d s_n = 1 / count_b
        g, grads = self.zeros_like_params()
        grads["br"] += float(np.sum(dr))
        self.head_backward(ds, hcache, grads)
        return g

    # ---------------------------------------------------------------- sampling
    def sample(self, prompts: np.ndarray, max_new_tokens: int, rng: np.random.Generator,
               temperature: float = 1.0) -> "Samples":
        """Autoregressive sampling of the whole batch one token step at a time.

        prompts (B, P) -> Samples(tokens (B, P+T), mask (B, P+T), logp (B, P+T)); a row stops at EOS (kept)
        and is PAD afterwards. logp is taken from the temperature-scaled distribution actually sampled from.
        One uniform per row per step is drawn whether or not the row is finished (until every row is), so
        the samples depend only on the parameters and the generator's state.
        """
        prompts = self._check_tokens(prompts)
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        B, P = prompts.shape
        T = int(max_new_tokens)
        tokens = np.full((B, P + T), PAD, dtype=np.int64)
        tokens[:, :P] = prompts
        mask = np.zeros((B, P + T), dtype=bool)
        logp = np.zeros((B, P + T))
        alive = np.ones(B, dtype=bool)
        rows = np.arange(B)
        if self.fast and self.config.arch == "mlp":
            self._fast_sample(tokens, mask, logp, alive, P, T, rng, temperature)
            return Samples(tokens, mask, logp)
        for t in range(T):
            X = self._contexts(tokens, rows, np.full(B, P + t - 1))
            lps = self.next_logprobs(X, temperature)                  # (B, V_out)
            pick = kernels._categorical(lps, rng.random(B))            # (B,)
            tokens[alive, P + t] = pick[alive] + OUT_OFFSET
            logp[alive, P + t] = lps[rows, pick][alive]
            mask[alive, P + t] = True
            alive &= (pick + OUT_OFFSET) != EOS
            if not alive.any():
                break
        return Samples(tokens, mask, logp)

    # ---------------------------------------------------------------- persistence
    def state(self) -> dict[str, np.ndarray]:
        return {"flat": self.flat.copy()}

    @classmethod
    def from_state(cls, config: ModelConfig, state: dict) -> "TinyLM":
        m = cls(config, seed=0)
        m.set_flat(state["flat"])
        return m


class HeadCache(NamedTuple):
    """`head_forward`'s cache: the head's weight name, the reference path's features (None on the fast path, whose
    trunk cache holds them per distinct window) and the trunk cache."""
    w: str
    H: np.ndarray | None
    tcache: object


@dataclass
class Samples:
    tokens: np.ndarray
    mask: np.ndarray
    logp: np.ndarray
