"""Where each KL placement converges (issue 16, item 3): the fixed points of the expected update, exactly.

The policy is *tabular over prefixes*: every state s = (prompt, completion prefix) has its own softmax pi(.|s) over
the next token (the tree of an enumeration; a tabular sequence policy is the same family, pi(y|q) = prod_t
pi(y_t|s_t)). The expected on-policy update with an unbiased advantage (RLOO; any baseline independent of y) and a
token-sum aggregation (or any constant per-sequence weight) is, for the logits theta_{s,a},

    k1 in the reward (Ziegler et al. 2019): sum_y pi(y) [r(y) - beta log pi(y)/ref(y)] d log pi(y)
                                            = grad (E[r] - beta KL(pi||ref))
    k3 in the loss, sequence level:         sum_y pi(y) [r(y) d log pi(y) - beta (1 - ref(y)/pi(y)) d log pi(y)]
                                            = grad (E[r] - beta KL(ref||pi))        (the *forward* KL)
    k3 in the loss, per token (GRPO):       sum_y pi(y) [r(y) d log pi(y) - beta sum_t (1 - ref_t/pi_t) d log pi_t]
    k2 in the loss, per token:              the same with log(pi_t/ref_t) in place of 1 - ref_t/pi_t

("per token": the estimator is evaluated on each token's conditional log-probs pi_t = pi(y_t|s_t), ref_t, and
differentiated through log pi_t only, as ``rl.losses.kl_loss`` is; the terms through the future states are missing,
Tang & Munos 2025.) Their stationary points, solved exactly:

    k1 reward: pi* = ref exp(r/beta)/Z (``optimum.py``); here by the soft backward recursion
               pi(a|s) ∝ ref(a|s) exp(Q(s,a)/beta), V(s) = beta log sum_a ref(a|s) exp(Q(s,a)/beta), Q = r at a leaf
               (a different computation that must give the same pi*)
    k3 seq:    pi(y) (r(y) - E_pi r) = beta (pi(y) - ref(y))  =>  pi(y) = beta ref(y) / (lambda_q - r(y)),
               lambda_q > max r the root of sum_y beta ref(y) / (lambda_q - r(y)) = 1 (lambda_q = E_pi r + beta).
               It maximises the concave E[r] - beta KL(ref||pi): unique.
    k3 token:  at every state the same equation with Q(s,a) = E_pi[r | s, a] (no KL in Q): pi(a|s) = beta ref(a|s) /
               (lambda_s - Q(s,a)), solved from the leaves up (each state's condition involves only its subtree)
    k2 token:  pi(a|s) ∝ ref(a|s) exp(Q(s,a)/beta), Q = E_pi[r | s, a]: a myopic Gibbs tilt, no soft value

The k2 loss at sequence level has the gradient of KL(pi||ref), so its fixed point is pi*; the k1 loss has zero
expected gradient (no regularisation). ``tabular_gradient`` computes the expected update on the theta_{s,a} from the
enumeration's rows (independently of the solvers), so stationarity is checked as gradient = 0.

GRPO's std-scaled advantage and its 1/|o| aggregation change these points: for a 0/1 reward the std scaling
multiplies prompt q's policy-gradient term by w_q(p_q) (``exact.weights``), i.e. the effective beta becomes
beta / w_q; this module solves the unbiased, constant-weight case.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import special
from .enumeration import Enumeration
from .expectations import per_prompt

__all__ = ["PLACEMENTS", "Tree", "prefix_tree", "token_logp_from_sequences", "fixed_point", "tabular_gradient",
           "FixedPoint", "compare_placements"]

PLACEMENTS = ("k1_reward", "k3_loss_sequence", "k3_loss_token", "k2_loss_token")
"""The KL placements ``fixed_point`` solves."""


@dataclass
class Tree:
    """The prefix tree of an enumeration. ``state`` (N, T): the id of the state s_t (prompt + t tokens) before each
    completion token (-1 past the end); ``child`` (N, T): the id of the (state, token) pair; ``child_state`` (C,):
    each pair's state; ``child_row`` (C,): one row through it; ``child_depth`` (C,); ``child_next`` (C,): the state it
    leads to (-1 at a leaf: EOS or the last position)."""

    state: np.ndarray
    child: np.ndarray
    child_state: np.ndarray
    child_row: np.ndarray
    child_depth: np.ndarray
    child_next: np.ndarray
    n_states: int


def prefix_tree(enum: Enumeration) -> Tree:
    """Ids of every prefix state and (state, token) pair of the enumeration's rows (depth by depth)."""
    P, T, N = enum.prompt_len, enum.max_new_tokens, enum.n
    comp = enum.completions
    cm = enum.mask[:, P:]
    state = np.full((N, T), -1, dtype=np.int64)
    child = np.full((N, T), -1, dtype=np.int64)
    cur = enum.prompt_index.astype(np.int64)              # depth-0 states are the prompts
    n_states = enum.n_prompts
    c_state, c_row, c_depth = [], [], []
    n_child = 0
    V = int(comp.max()) + 1
    for t in range(T):
        alive = cm[:, t]
        state[alive, t] = cur[alive]
        key = cur * V + comp[:, t]
        ids, first, inv = np.unique(key[alive], return_index=True, return_inverse=True)
        rows = np.flatnonzero(alive)
        child[alive, t] = n_child + inv.ravel()
        c_state.append(cur[rows[first]])
        c_row.append(rows[first])
        c_depth.append(np.full(len(ids), t))
        n_child += len(ids)
        # the state after token t: one new state per non-leaf (state, token) pair
        cur = np.full(N, -1, dtype=np.int64)
        if t + 1 < T:
            nxt = cm[:, t + 1]
            _, inv2 = np.unique(key[nxt], return_inverse=True)
            cur[nxt] = n_states + inv2.ravel()
            n_states += int(inv2.max()) + 1 if nxt.any() else 0
    child_state = np.concatenate(c_state)
    child_row = np.concatenate(c_row)
    child_depth = np.concatenate(c_depth)
    child_next = np.full(n_child, -1, dtype=np.int64)
    nz = child_depth + 1 < T
    nr, nd = child_row[nz], child_depth[nz]
    child_next[nz] = np.where(cm[nr, np.minimum(nd + 1, T - 1)], state[nr, np.minimum(nd + 1, T - 1)], -1)
    return Tree(state, child, child_state, child_row, child_depth, child_next, n_states)


def token_logp_from_sequences(enum: Enumeration, tree: Tree, seq_logp: np.ndarray) -> np.ndarray:
    """(N, T) log pi(y_t | s_t) of the tabular policy with sequence log-probs `seq_logp` (N,): the ratio of the
    prefix masses P(s_t, y_t) / P(s_t) (0 past the end)."""
    p = np.exp(np.asarray(seq_logp, dtype=np.float64))
    cm = enum.mask[:, enum.prompt_len:]
    mass_child = np.bincount(tree.child[cm], weights=np.broadcast_to(p[:, None], cm.shape)[cm],
                             minlength=len(tree.child_state))
    mass_state = np.bincount(tree.child_state, weights=mass_child, minlength=tree.n_states)
    out = np.zeros(cm.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        lc = np.log(mass_child) - np.log(mass_state[tree.child_state])
    out[cm] = lc[tree.child[cm]]
    return out


def _group_sum(values, groups, n):
    return np.bincount(groups, weights=values, minlength=n)


def _gibbs(groups, n, logref, Q, beta):
    """pi ∝ ref exp(Q/beta) within each group; (log pi (C,), beta log sum ref exp(Q/beta) (n,))."""
    a = logref + Q / beta
    m = np.full(n, -np.inf)
    np.maximum.at(m, groups, a)
    lz = m + np.log(_group_sum(np.exp(a - m[groups]), groups, n))
    return a - lz[groups], beta * lz


def _forward_tilt(groups, n, logref, Q, beta, iters=200):
    """pi = beta ref / (lambda - Q) within each group, lambda the root above max Q (monotone Newton from below);
    returns (log pi (C,), lambda (n,))."""
    ref = np.exp(logref)
    qmax = np.full(n, -np.inf)
    np.maximum.at(qmax, groups, np.where(ref > 0, Q, -np.inf))
    # a lower bound of the root: the largest ref among the argmax children
    top = np.isclose(Q, qmax[groups], rtol=0.0, atol=0.0) & (ref > 0)
    rtop = np.zeros(n)
    np.maximum.at(rtop, groups, np.where(top, ref, 0.0))
    lam = qmax + beta * rtop
    for _ in range(iters):
        d = lam[groups] - Q
        f = _group_sum(beta * ref / d, groups, n) - 1.0
        fp = -_group_sum(beta * ref / d ** 2, groups, n)
        step = -f / fp
        lam = lam + np.maximum(step, 0.0)                   # convex decreasing f: the iterates stay below the root
        if np.all(np.abs(step) <= 1e-15 * np.maximum(1.0, np.abs(lam))):
            break
    logp = np.log(beta) + logref - np.log(lam[groups] - Q)
    logp = logp - np.log(_group_sum(np.exp(logp), groups, n))[groups]   # remove the root's last round-off
    return logp, lam


def fixed_point(ref: Enumeration, rewards: np.ndarray, beta: float, placement: str) -> np.ndarray:
    """log pi(y|q) (N,) at the fixed point of the expected update with the KL placement `placement` (one of
    ``PLACEMENTS``; see the module docstring) for the tabular prefix policy, the reference's probabilities from
    `ref` (its token log-probs ``ref.logp``)."""
    r = np.asarray(rewards, dtype=np.float64)
    beta = float(beta)
    if not beta > 0 or not np.isfinite(beta):
        raise ValueError(f"beta must be a finite number > 0, got {beta}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement {placement!r}; choose from {', '.join(PLACEMENTS)}")
    if placement == "k3_loss_sequence":
        logp, _ = _forward_tilt(ref.prompt_index, ref.n_prompts, ref.seq_logp, r, beta)
        return logp
    tree = prefix_tree(ref)
    P = ref.prompt_len
    C = len(tree.child_state)
    logref_c = ref.logp[tree.child_row, P + tree.child_depth]
    logpi_c = np.zeros(C)
    V = np.zeros(tree.n_states)
    for t in range(ref.max_new_tokens - 1, -1, -1):
        cs = np.flatnonzero(tree.child_depth == t)
        nxt = tree.child_next[cs]
        Q = np.where(nxt >= 0, V[np.maximum(nxt, 0)], r[tree.child_row[cs]])
        states, g = np.unique(tree.child_state[cs], return_inverse=True)
        g = g.ravel()
        if placement == "k1_reward":
            lp, v = _gibbs(g, len(states), logref_c[cs], Q, beta)
        elif placement == "k2_loss_token":
            lp, _ = _gibbs(g, len(states), logref_c[cs], Q, beta)
            v = _group_sum(np.exp(lp) * Q, g, len(states))
        else:                                               # k3_loss_token
            lp, _ = _forward_tilt(g, len(states), logref_c[cs], Q, beta)
            v = _group_sum(np.exp(lp) * Q, g, len(states))
        logpi_c[cs] = lp
        V[states] = v
    cm = ref.mask[:, P:]
    tok = np.zeros(cm.shape)
    tok[cm] = logpi_c[tree.child[cm]]
    return tok.sum(axis=1)


def tabular_gradient(ref: Enumeration, rewards: np.ndarray, beta: float, placement: str, seq_logp: np.ndarray,
                     tree: Tree | None = None) -> np.ndarray:
    """The expected update (C,) on the logits theta_{s,a} of the tabular prefix policy with sequence log-probs
    `seq_logp`, prompt-averaged, for the KL placement (module docstring): an ascent direction, 0 at a fixed point.
    Summed from the rows: grad_{s,a} = (1/n) sum_{y, t: s_t = s} pi(y) c_t(y) (1[y_t = a] - pi(a|s))."""
    r = np.asarray(rewards, dtype=np.float64)
    tree = prefix_tree(ref) if tree is None else tree
    P = ref.prompt_len
    cm = ref.mask[:, P:]
    lp = np.asarray(seq_logp, dtype=np.float64)
    tok = token_logp_from_sequences(ref, tree, lp)
    reft = ref.logp[:, P:]
    p = np.exp(lp)[:, None]
    if placement == "k1_reward":
        c = np.broadcast_to((r - beta * (lp - ref.seq_logp))[:, None], cm.shape)
    elif placement == "k3_loss_sequence":
        c = np.broadcast_to((r - beta * (1.0 - np.exp(ref.seq_logp - lp)))[:, None], cm.shape)
    elif placement == "k3_loss_token":
        c = r[:, None] - beta * (1.0 - np.exp(reft - tok))
    elif placement == "k2_loss_token":
        c = r[:, None] - beta * (tok - reft)
    else:
        raise ValueError(f"placement {placement!r}; choose from {', '.join(PLACEMENTS)}")
    w = (p * c)[cm] / ref.n_prompts
    ch = tree.child[cm]
    Wc = np.bincount(ch, weights=w, minlength=len(tree.child_state))
    Ws = np.bincount(tree.child_state, weights=Wc, minlength=tree.n_states)
    pic = np.exp(tok[tree.child_row, tree.child_depth])
    return Wc - pic * Ws[tree.child_state]


@dataclass
class FixedPoint:
    """One placement's fixed point and its figures (prompt-averaged)."""

    placement: str
    beta: float
    logp: np.ndarray
    reward: float
    kl: float
    forward_kl: float
    objective: float
    tv_to_optimum: float
    grad_norm: float


def compare_placements(ref: Enumeration, rewards: np.ndarray, beta: float, placements=PLACEMENTS
                       ) -> list[FixedPoint]:
    """Every placement's fixed point with E[r], KL(pi||ref), KL(ref||pi), the KL-regularised objective
    J = E[r] - beta KL(pi||ref) that pi* maximises, the total variation to pi* and the norm of the expected update
    there (0 up to round-off)."""
    r = np.asarray(rewards, dtype=np.float64)
    tree = prefix_tree(ref)
    lstar = ref.seq_logp + r / beta
    for q in range(ref.n_prompts):
        sl = slice(ref.offsets[q], ref.offsets[q + 1])
        lstar[sl] -= special.logsumexp(lstar[sl])
    out = []
    for pl in placements:
        lp = fixed_point(ref, r, beta, pl)
        p, pr = np.exp(lp), ref.probs
        reward = float(per_prompt(ref, p * r).mean())
        kl = float(per_prompt(ref, p * (lp - ref.seq_logp)).mean())
        fkl = float(per_prompt(ref, pr * (ref.seq_logp - lp)).mean())
        tv = float((0.5 * per_prompt(ref, np.abs(p - np.exp(lstar)))).mean())
        g = tabular_gradient(ref, r, beta, pl, lp, tree)
        out.append(FixedPoint(pl, float(beta), lp, reward, kl, fkl, reward - beta * kl, tv,
                              float(np.linalg.norm(g))))
    return out
