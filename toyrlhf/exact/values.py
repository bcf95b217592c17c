"""The exact value function V^pi(s_t) of the token-level MDP that PPO's critic and GAE estimate.

The MDP (InstructGPT, Ouyang et al. 2022; the per-token reward of Shao et al. 2024, DeepSeekMath eq. 2):

    state   s_t = (q, y_<t), the prompt and the completion so far (t = 0 .. T-1), before token t is emitted
    action  a_t = y_t ~ pi(. | s_t)
    reward  r_t = -beta k(log pi(y_t|s_t), log pi_ref(y_t|s_t))   [kl = reward; 0 otherwise]
                  + r(q, y)   at the completion's last token (EOS, or token T when truncated)
    end     after the last token: V(s_T) = 0 (GAE's bootstrap after the episode)

    V^pi(s_t) = E_pi[ sum_{t' >= t} gamma^(t' - t) r_t' | q, y_<t ]

The policy pi is the one whose log-probs the enumeration holds; the KL term of r_t is itself a function of pi, and is
the value of the policy whose rewards it is (Ziegler et al. 2019's R = r - beta log(pi/pi_ref), detached per token
as ``rl.losses.kl_penalty_rewards`` computes it).

By enumeration: every completion y of q extending the prefix y_<t has conditional probability
pi(y_{>=t} | s_t) = exp(sum_{t' >= t} log pi(y_t' | s_t')), so

    V^pi(s_t) = sum_{y extends y_<t} pi(y_{>=t} | s_t) G_t(y),     G_t(y) = sum_{t' >= t} gamma^(t' - t) r_t'(y)

(no prefix probability is divided by, so tiny prefixes lose no precision). Each distinct (prompt, prefix) is one
entry of a ``StateValues`` table, which looks up V for any rows of those prompts, such as a training rollout.

Imports only the enumeration and ``tokens``.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from .. import tokens as tk
from .enumeration import Enumeration

__all__ = ["StateValues", "mdp_token_rewards", "returns_to_go", "state_values"]


def mdp_token_rewards(enum: Enumeration, rewards: np.ndarray, kl_penalty: np.ndarray | None = None) -> np.ndarray:
    """(N, P+T) the MDP's r_t (module docstring) on every enumerated completion: `kl_penalty` (N, P+T), e.g.
    ``rl.losses.kl_penalty_rewards``, or 0, plus the sequence reward `rewards` (N,) at each completion's last token
    (as ``rl.advantages``' GAE estimator places it)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != (enum.n,):
        raise ValueError(f"rewards must be ({enum.n},), got {r.shape}")
    out = np.zeros(enum.tokens.shape) if kl_penalty is None else np.where(enum.mask, kl_penalty, 0.0)
    last = enum.prompt_len + enum.lengths - 1
    out[np.arange(enum.n), last] += r
    return out


def returns_to_go(token_rewards: np.ndarray, mask: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """G_t = sum_{t' >= t} gamma^(t' - t) r_t' on the mask, 0 elsewhere (B, L)."""
    r = np.where(mask, np.asarray(token_rewards, dtype=np.float64), 0.0)
    out = np.zeros_like(r)
    acc = np.zeros(r.shape[0])
    for t in range(r.shape[1] - 1, -1, -1):
        acc = r[:, t] + gamma * acc
        out[:, t] = acc
    return np.where(mask, out, 0.0)


def _prefix_codes(completions: np.ndarray, n_out: int) -> np.ndarray:
    """(B, T) an integer naming the prefix y_<t before each position: digits y_t' - OUT_OFFSET + 1 in base
    n_out + 1. Every digit is >= 1, so prefixes of different lengths get different codes."""
    digits = np.asarray(completions, dtype=np.int64) - tk.OUT_OFFSET + 1
    codes = np.zeros(digits.shape, dtype=np.int64)
    for t in range(1, digits.shape[1]):
        codes[:, t] = codes[:, t - 1] * (n_out + 1) + digits[:, t - 1]
    return codes


@dataclass
class StateValues:
    """V^pi(s) for every state (prompt, prefix) of an enumeration: a sorted table of state keys and their values.
    Call it on rows (tokens (B, P+T), mask (B, P+T)) of the enumeration's prompts to get values (B, P+T), V(s_t) at
    each completion token t, 0 elsewhere: the layout ``rl.advantages.gae`` reads."""

    prompts: np.ndarray
    n_out: int
    max_new_tokens: int
    keys: np.ndarray
    values: np.ndarray
    on_enum: np.ndarray
    """(N, P+T) the values on the enumeration's own rows."""

    def _keys(self, tokens: np.ndarray) -> np.ndarray:
        P = self.prompts.shape[1]
        index = {row.tobytes(): q for q, row in enumerate(self.prompts)}
        try:
            q = np.array([index[row.tobytes()] for row in np.ascontiguousarray(tokens[:, :P], dtype=np.int64)])
        except KeyError:
            raise ValueError("a row's prompt is not among the enumeration's prompts") from None
        scale = (self.n_out + 1) ** self.max_new_tokens
        return q[:, None] * scale + _prefix_codes(tokens[:, P:], self.n_out)

    def __call__(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        tokens, mask = np.asarray(tokens), np.asarray(mask, dtype=bool)
        P = self.prompts.shape[1]
        cm = mask[:, P:]
        want = self._keys(tokens)[cm]
        at = np.minimum(np.searchsorted(self.keys, want), len(self.keys) - 1)
        if not np.array_equal(self.keys[at], want):
            raise ValueError("a row's prefix is not a state of the enumeration (another task or length)")
        out = np.zeros(tokens.shape)
        out[:, P:][cm] = self.values[at]
        return out


_STATES: dict = {}
"""id(tokens) -> (weak reference to the tree's tokens, unique state keys, the state of each completion token): the
states depend only on the enumeration's tree, which the engine caches, so a run's every step shares them."""


def _state_index(enum: Enumeration, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    hit = _STATES.get(id(enum.tokens))
    if hit is not None and hit[0]() is enum.tokens:
        return hit[1], hit[2]
    P, T = enum.prompt_len, enum.max_new_tokens
    if enum.n_prompts * float(n_out + 1) ** T >= 2.0 ** 62:
        raise ValueError("too many states to key in int64 (prompts x (V_out + 1)^T)")
    keys = enum.prompt_index[:, None].astype(np.int64) * (n_out + 1) ** T + _prefix_codes(enum.completions, n_out)
    uniq, inv = np.unique(keys[enum.mask[:, P:]], return_inverse=True)
    if len(_STATES) >= 8:
        _STATES.pop(next(iter(_STATES)))
    _STATES[id(enum.tokens)] = (weakref.ref(enum.tokens), uniq, inv.ravel())
    return uniq, inv.ravel()


def state_values(enum: Enumeration, token_rewards: np.ndarray, gamma: float = 1.0) -> StateValues:
    """The exact V^pi(s_t) of every state of `enum` (module docstring) for per-token rewards `token_rewards`
    (N, P+T) (``mdp_token_rewards``) and discount `gamma`; pi is the enumeration's policy."""
    P, T = enum.prompt_len, enum.max_new_tokens
    n_out = int(enum.win_logp.shape[1]) if enum.win_logp is not None else int(enum.tokens.max()) - tk.OUT_OFFSET + 1
    uniq, inv = _state_index(enum, n_out)
    cm = enum.mask[:, P:]
    G = returns_to_go(np.asarray(token_rewards, dtype=np.float64)[:, P:], cm, gamma)
    suffix = np.cumsum(np.where(cm, enum.logp[:, P:], 0.0)[:, ::-1], axis=1)[:, ::-1]   # log pi(y_>=t | s_t)
    w = np.exp(suffix)[cm]
    values = np.bincount(inv, weights=w * G[cm], minlength=len(uniq)) / np.bincount(inv, weights=w,
                                                                                       minlength=len(uniq))
    on_enum = np.zeros(enum.tokens.shape)
    on_enum[:, P:][cm] = values[inv]
    return StateValues(prompts=enum.prompts, n_out=n_out, max_new_tokens=T, keys=uniq, values=values,
                       on_enum=on_enum)
