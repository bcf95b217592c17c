"""Advantage estimators, written as the papers write them (pure NumPy, float64, no model code).

Batch conventions (see ``toyrlhf/tokens.py``): token-level arrays are padded ``(B, L)`` with a bool
``completion_mask`` (``mask``) that is True on completion tokens (EOS included); sequence-level arrays are ``(B,)``.
Group-based estimators assume rows are grouped consecutively: group ``g`` is rows ``g*G .. (g+1)*G - 1``
(the G completions sampled for one prompt).

Every token-level output is 0 outside the mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..registry import Registry

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AdvantageInputs",
    "AdvantageSettings",
    "compute_advantages",
    "gae",
    "group_advantages",
    "rloo_advantages",
    "reinforce_advantages",
    "batch_normalize",
    "process_advantages",
    "broadcast_to_tokens",
    "zero_std_groups",
]

_SCALES = ("std", "none")
GROUP_STDS = ("population", "sample")
"""Which std the group-relative estimators divide by: numpy's ddof=0 or torch's ddof=1 (the knob ``std``)."""


def _as_mask(mask, shape) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(shape):
        raise ValueError(f"mask has shape {mask.shape}, expected {tuple(shape)}")
    return mask


def _grouped(rewards, G: int, *, min_group: int = 2) -> np.ndarray:
    """Rewards (B,) -> (B // G, G), checking the group layout."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D (B,), got shape {rewards.shape}")
    G = int(G)
    if G < min_group:
        raise ValueError(f"group size G={G} must be >= {min_group}")
    if rewards.shape[0] % G:
        raise ValueError(f"batch size {rewards.shape[0]} is not a multiple of the group size G={G}")
    return rewards.reshape(-1, G)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name}={value!r}; expected one of {choices}")


# ----------------------------------------------------------------------------------------------------------------
# Critic-based: GAE
# ----------------------------------------------------------------------------------------------------------------

def gae(rewards, values, mask, gamma: float = 1.0, lam: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    r"""Generalized Advantage Estimation and the lambda-returns used as value targets.

    Schulman et al. 2015, "High-Dimensional Continuous Control Using Generalized Advantage Estimation",
    eq. 16 (with the TD residual of their §3), in the truncated form of Schulman et al. 2017 (PPO) eqs. 11-12:

        delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)
        A_t     = sum_{l >= 0} (gamma * lam)^l * delta_{t+l}      computed as  A_t = delta_t + gamma*lam*A_{t+1}
        R_t     = A_t + V(s_t)                                    (the lambda-return, the critic's target)

    Special cases: lam = 0 gives the one-step TD error delta_t; lam = 1 gives the discounted return-to-go minus V(s_t).

    Args:
        rewards: (B, L) per-token rewards on completion positions (e.g. the RM score on the last token plus
            per-token KL penalties, DeepSeekMath eq. 2). Entries outside ``mask`` are ignored.
        values: (B, L) ``values[b, t] = V(s_t)``, the critic's estimate for the state *before* token t is emitted.
            Entries outside ``mask`` are ignored.
        mask: (B, L) bool completion mask. Each row's completion must be one contiguous run (as ``tokens.join``
            builds it); the episode ends after the last masked token (EOS or truncation at max_new_tokens), so the
            bootstrap value V(s_{T}) after it is 0.
        gamma, lam: discount and GAE lambda.

    Returns:
        (advantages, returns), both (B, L) float64, 0 outside the mask.

    The recursion is a loop over the L time steps, vectorised over the B rows.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if rewards.shape != values.shape or rewards.ndim != 2:
        raise ValueError(f"rewards {rewards.shape} and values {values.shape} must both be (B, L)")
    mask = _as_mask(mask, rewards.shape)
    B, L = rewards.shape
    adv = np.zeros((B, L), dtype=np.float64)
    next_value = np.zeros(B, dtype=np.float64)  # V(s_{t+1}); 0 past the end of the episode
    next_adv = np.zeros(B, dtype=np.float64)    # A_{t+1};    0 past the end of the episode
    gl = gamma * lam
    for t in range(L - 1, -1, -1):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gl * next_adv
        adv[:, t] = np.where(m, a, 0.0)
        next_value = np.where(m, values[:, t], 0.0)
        next_adv = adv[:, t]
    returns = np.where(mask, adv + values, 0.0)
    return adv, returns


# ----------------------------------------------------------------------------------------------------------------
# Critic-free, sequence level: one scalar per completion
# ----------------------------------------------------------------------------------------------------------------

def group_advantages(rewards, G: int, *, scale: str = "std", std: str = "population",
                     eps: float = 1e-6) -> np.ndarray:
    r"""Group-relative advantages for G completions of the same prompt.

    scale="std"  (GRPO outcome supervision; Shao et al. 2024, DeepSeekMath §4.1.2, used in eq. 3):
        A_i = (r_i - mean(r_group)) / (std(r_group) + eps)
    scale="none" (Dr. GRPO; Liu et al. 2025 §3, "group_mean"):
        A_i = r_i - mean(r_group)

    ``std="population"`` divides the variance by G (``np.std``, ddof=0); ``std="sample"`` by G - 1 (``torch.std``'s
    default, ddof=1). For rewards [1, 0, 0, 0]: population gives [sqrt(3), -1/sqrt(3), ...] = [1.732, -0.577, ...],
    sample gives [1.5, -0.5, ...]. The ``eps`` is an implementation guard (the papers divide by std alone); a group
    whose rewards are all equal gets advantage 0 either way (see ``zero_std_groups``).

    Args:
        rewards: (B,) one scalar reward per completion, rows grouped consecutively (group g = rows g*G..(g+1)*G-1).
        G: group size (>= 2, divides B).

    Returns:
        (B,) float64 advantages (use ``broadcast_to_tokens`` to put them on every completion token).

    Raises:
        ValueError: if B % G != 0, G < 2, or an unknown ``scale``/``std``.
    """
    _check_choice("scale", scale, _SCALES)
    _check_choice("std", std, GROUP_STDS)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    r = _grouped(rewards, G)
    centred = r - r.mean(axis=1, keepdims=True)
    if scale == "std":
        sd = r.std(axis=1, ddof=0 if std == "population" else 1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):      # 0/0 of an all-equal group with eps = 0
            centred = centred / (sd + eps)
    # all-equal rewards: advantage exactly 0 (the mean's round-off would otherwise give ~1e-11, or 0/0 with eps = 0)
    equal = r.max(axis=1) == r.min(axis=1)
    centred[equal] = 0.0
    return centred.reshape(-1)


def rloo_advantages(rewards, G: int) -> np.ndarray:
    r"""REINFORCE Leave-One-Out advantages.

    Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
    Feedback in LLMs" (RLOO; leave-one-out baseline of Kool et al. 2019):

        A_i = r_i - (1 / (G - 1)) * sum_{j != i} r_j  =  G / (G - 1) * (r_i - mean(r_group))

    The second form is the identity of Liu et al. 2025 (Dr. GRPO) App. A: Dr. GRPO's advantage is RLOO's up to the
    constant G/(G-1). The baseline does not depend on y_i, so the policy-gradient estimate is unbiased.

    Args:
        rewards: (B,) rows grouped consecutively in groups of G (>= 2, divides B).

    Returns:
        (B,) float64.
    """
    r = _grouped(rewards, G)
    G = r.shape[1]
    loo_mean = (r.sum(axis=1, keepdims=True) - r) / (G - 1)
    return (r - loo_mean).reshape(-1)


def reinforce_advantages(rewards) -> np.ndarray:
    r"""REINFORCE with a batch-mean baseline: A_i = r_i - (1/B) sum_j r_j.

    Williams 1992 (REINFORCE with a constant baseline b, here the batch mean of the rewards). The baseline uses r_i
    itself, so the estimate carries an O(1/B) bias (use ``rloo_advantages`` for the unbiased leave-one-out version).

    Args:
        rewards: (B,).

    Returns:
        (B,) float64.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"rewards must be 1-D (B,), got shape {r.shape}")
    return r - r.mean()


def batch_normalize(adv, mask=None, eps: float = 1e-8, *, shift_mean: bool = True,
                    std: str = "population") -> np.ndarray:
    r"""Global (whole-batch) advantage whitening.

        shift_mean=True:   A' = (A - mean(A)) / (std(A) + eps)
        shift_mean=False:  A' = A / (std(A) + eps)          (scale only; keeps e.g. a group baseline already applied)

    mean and std are taken over the masked entries (all entries if ``mask`` is None). This is PPO's per-batch
    advantage normalisation (Huang et al. 2022, "The 37 Implementation Details of Proximal Policy Optimization",
    normalisation of advantages) and REINFORCE++'s global normalisation (Hu et al. 2025, A^norm =
    (A - mean_batch(A)) / std_batch(A); "REINFORCE++ w/ baseline" subtracts the group mean first, then calls this with
    shift_mean=False or True). Note: TRL's ``whiten(shift_mean=False)`` adds the mean *back*; here shift_mean=False
    simply does not subtract it.

    Args:
        adv: any shape, e.g. (B,) sequence advantages or (B, L) token advantages.
        mask: optional bool array of the same shape; entries outside it are excluded from the statistics and
            returned as 0.
        std: "population" (ddof=0, the default: the result has population std ~1) or "sample" (ddof=1).

    Returns:
        float64 array of the same shape.
    """
    _check_choice("std", std, GROUP_STDS)
    a = np.asarray(adv, dtype=np.float64)
    m = np.ones(a.shape, dtype=bool) if mask is None else _as_mask(mask, a.shape)
    vals = a[m]
    if vals.size == 0:
        return np.zeros_like(a)
    ddof = 0 if std == "population" else 1
    mean = vals.mean()
    sd = vals.std(ddof=ddof) if vals.size > ddof else 0.0
    out = (a - mean) if shift_mean else a
    return np.where(m, out / (sd + eps), 0.0)


# ----------------------------------------------------------------------------------------------------------------
# Token level from step rewards (process supervision)
# ----------------------------------------------------------------------------------------------------------------

def process_advantages(step_rewards, step_end, G: int, *, scale: str = "std", std: str = "population",
                       eps: float = 1e-6, mask=None) -> np.ndarray:
    r"""GRPO with process supervision (Shao et al. 2024, DeepSeekMath §4.1.3).

    A process reward model scores each reasoning step; ``index(j)`` is the token index where step j ends. All step
    rewards of one group, R = {r_i^{index(j)} : i in group, j}, are normalised *together*:

        r~_i^{index(j)} = (r_i^{index(j)} - mean(R)) / (std(R) + eps)       (scale="none": r - mean(R))

    and the advantage of token t is the sum of the normalised rewards of the steps ending at or after t:

        A_{i,t} = sum_{index(j) >= t} r~_i^{index(j)}

    Args:
        step_rewards: (B, L) the step reward at each step-end position (other entries are ignored).
        step_end: (B, L) bool, True at the last token of each step.
        G: group size (rows grouped consecutively; >= 2, divides B).
        scale, std, eps: as in ``group_advantages`` (statistics over the group's step rewards, not its rows).
        mask: optional (B, L) completion mask; if given, the output is 0 outside it (without it, prompt positions
            before the completion carry the sum of all the row's normalised step rewards).

    Returns:
        (B, L) float64 token advantages (0 after a row's last step end).
    """
    _check_choice("scale", scale, _SCALES)
    _check_choice("std", std, GROUP_STDS)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    r = np.asarray(step_rewards, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"step_rewards must be (B, L), got shape {r.shape}")
    ends = _as_mask(step_end, r.shape)
    B, L = r.shape
    _grouped(np.zeros(B), G)  # validates G and B % G
    n_groups = B // G
    norm = _normalised_step_rewards(np.where(ends, r, 0.0).reshape(n_groups, G * L), ends.reshape(n_groups, G * L),
                                    scale, std, eps).reshape(B, L)
    # sum over step ends at or after t: reverse cumulative sum along time
    adv = np.cumsum(norm[:, ::-1], axis=1)[:, ::-1]
    if mask is not None:
        adv = np.where(_as_mask(mask, r.shape), adv, 0.0)
    return np.ascontiguousarray(adv)


def _normalised_step_rewards(rg, eg, scale: str, std: str, eps: float) -> np.ndarray:
    """(n_groups, G * L): each group's step rewards `rg` at its step ends `eg` minus their mean [divided by their
    std + eps], 0 elsewhere and in a group whose step rewards are all equal."""
    count = eg.sum(axis=1, keepdims=True).astype(np.float64)
    mean = rg.sum(axis=1, keepdims=True) / np.maximum(count, 1.0)
    centred = np.where(eg, rg - mean, 0.0)
    if scale == "std":
        ddof = 0 if std == "population" else 1
        dof = count - ddof
        var = np.where(dof > 0, (centred ** 2).sum(axis=1, keepdims=True) / np.maximum(dof, 1.0), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):      # 0/0 of equal step rewards with eps = 0
            centred = centred / (np.sqrt(var) + eps)
    # a group whose step rewards are all equal: advantage exactly 0 (no round-off of the mean, no 0/0)
    lo = np.where(eg, rg, np.inf).min(axis=1)
    hi = np.where(eg, rg, -np.inf).max(axis=1)
    centred[lo == hi] = 0.0
    return centred


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------

def broadcast_to_tokens(seq_values, mask) -> np.ndarray:
    r"""Put one value per sequence on every completion token: out[b, t] = seq_values[b] if mask[b, t] else 0.

    This is how outcome-supervised GRPO assigns A_{i,t} = r~_i to all tokens of o_i (Shao et al. 2024 §4.1.2).

    Args:
        seq_values: (B,).
        mask: (B, L) bool.

    Returns:
        (B, L) float64.
    """
    v = np.asarray(seq_values, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if v.ndim != 1 or mask.ndim != 2 or mask.shape[0] != v.shape[0]:
        raise ValueError(f"seq_values {v.shape} must be (B,) and mask {mask.shape} (B, L)")
    return np.where(mask, v[:, None], 0.0)


def zero_std_groups(rewards, G: int) -> np.ndarray:
    r"""Which groups have all-equal rewards (hence zero group-relative advantage and zero policy gradient).

    These are the groups DAPO's dynamic sampling filters out (Yu et al. 2025, the constraint
    0 < |{o_i : is_equivalent(a, o_i)}| < G of eq. 8 / §3.2): every completion of the prompt right, or every one wrong.
    Equality is exact (``max == min``).

    Args:
        rewards: (B,) rows grouped consecutively in groups of G (>= 1, divides B).

    Returns:
        (B // G,) bool.
    """
    r = _grouped(rewards, G, min_group=1)
    return r.max(axis=1) == r.min(axis=1)


# ----------------------------------------------------------------------------------------------------------------
# The registry: one name -> estimator table for the trainer, config validation, `toyrlhf algos` and the exact engine
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AdvantageSettings:
    """The estimator hyperparameters a run sets (``RLConfig`` fields of the same meaning)."""

    std: str = "population"
    """'population' (ddof=0) or 'sample' (ddof=1) group std."""
    eps: float = 1e-6
    """epsilon in (r - mean) / (std + eps)."""
    gamma: float = 1.0
    """GAE discount."""
    lam: float = 0.95
    """GAE lambda."""


@dataclass
class AdvantageInputs:
    """What a rollout gives every estimator (B rows grouped consecutively in groups of G)."""

    reward: np.ndarray
    """(B,) the scalar reward (RM score or rule) of each completion."""
    kl_penalty: np.ndarray
    """(B, L) the per-token KL penalty -beta * k_t folded into the reward (zeros when the KL is elsewhere)."""
    mask: np.ndarray
    """(B, L) bool completion mask."""
    G: int
    """Group size."""
    values: np.ndarray | None = None
    """(B, L) the critic's V(s_t) (estimators with needs_critic)."""
    step_rewards: np.ndarray | None = None
    """(B, L) process rewards at step ends (estimators with needs_step_rewards)."""
    step_end: np.ndarray | None = None
    """(B, L) bool, True at the last token of each step."""
    lengths: np.ndarray | None = None
    """(B,) completion lengths |o_i| (sequence-level estimators whose ``inputs`` name them, e.g. OPO)."""
    greedy_reward: np.ndarray | None = None
    """(B,) the reward of the greedy completion of each row's prompt, decoded from pi_old at rollout time (ReMax)."""

    @property
    def sequence_reward(self) -> np.ndarray:
        """R_i = r_i - beta * sum_t k_t: the reward the sequence-level estimators see."""
        return self.reward + self.kl_penalty.sum(axis=1)


ADVANTAGE_ESTIMATORS = Registry("advantage", defaults=dict(
    level="sequence",            # 'sequence': fn(rewards (B,), G, hp) -> (B,); 'token': fn(x, hp) -> (adv, returns)
    scope="group",               # sequence level: A_i depends on its own group only ('group') or on the batch
    min_group=2,                 # smallest G the estimator is defined for
    needs_step_rewards=False,    # reads AdvantageInputs.step_rewards / step_end (process supervision)
    expected=None,               # closed form E[A_i | y_i = y](r, mu_q, mu, G) for the exact engine, or None
    label=None,                  # its row name in `toyrlhf check` (sequence level)
    aggregation=None,            # the token aggregation its paper pairs it with (the check's row uses it)
    inputs=(),                   # sequence level: extra (B,) AdvantageInputs fields passed as keywords, e.g.
                                 # ("lengths",) or ("greedy_reward",)
    expected_kw=(),              # batch scope: extra keywords the exact engine passes to `expected`
                                 # ("p_tie": per-prompt P(a group's G rewards all tie), "prompt_index")
    in_default_check=True,       # its row is in the default `toyrlhf check` table (else only with --all-algos)
))
"""Advantage estimators by the knob value ``advantage``."""


@ADVANTAGE_ESTIMATORS.register(
    "gae", paper="Schulman et al. 2016 (GAE) eq. 16; PPO, Schulman et al. 2017", needs_critic=True, level="token",
    equation="A_t = sum_l (gamma lam)^l delta_{t+l},  delta_t = r_t + gamma V(s_{t+1}) - V(s_t)")
def _gae_estimator(x: AdvantageInputs, hp: AdvantageSettings):
    """InstructGPT's per-token reward: the KL penalty on every token, r_phi added at the last one; then GAE."""
    token_rewards = x.kl_penalty.copy()
    last = np.argmax(np.cumsum(x.mask, axis=1), axis=1)                 # index of each completion's last token
    token_rewards[np.arange(len(last)), last] += x.reward               # r_phi arrives with the last token
    return gae(token_rewards, x.values, x.mask, hp.gamma, hp.lam)


@ADVANTAGE_ESTIMATORS.register(
    "reinforce", paper="Williams 1992, with a batch-mean baseline", equation="A_i = R_i - mean_batch(R)",
    scope="batch", min_group=1, label="REINFORCE (batch mean)", aggregation="seq-mean-token-sum",
    expected=lambda r, mq, mu, G: r - (r + (G - 1) * mq + G * (mu.sum() - mq)) / (len(mu) * G))
def _reinforce_estimator(rewards, G: int, hp: AdvantageSettings) -> np.ndarray:
    return reinforce_advantages(rewards)


@ADVANTAGE_ESTIMATORS.register(
    "rloo", paper="Ahmadian et al. 2024 (Back to Basics)", equation="A_i = R_i - mean_{j != i} R_j",
    label="RLOO", aggregation="seq-mean-token-sum", expected=lambda r, mq, mu, G: r - mq)
def _rloo_estimator(rewards, G: int, hp: AdvantageSettings) -> np.ndarray:
    return rloo_advantages(rewards, G)


@ADVANTAGE_ESTIMATORS.register(
    "group_mean", paper="Liu et al. 2025 (Dr. GRPO) §3.2", equation="A_i = r_i - mean(r_group)",
    label="Dr. GRPO (group mean, sum/L_max)", aggregation="seq-mean-token-sum-norm",
    expected=lambda r, mq, mu, G: (G - 1) / G * (r - mq))
def _group_mean_estimator(rewards, G: int, hp: AdvantageSettings) -> np.ndarray:
    return group_advantages(rewards, G, scale="none")


@ADVANTAGE_ESTIMATORS.register(
    "group", paper="Shao et al. 2024 (DeepSeekMath) §4.1.2, eq. 3",
    equation="A_i = (r_i - mean(r_group)) / (std(r_group) + eps)",
    label="GRPO (std, 1/|o|)", aggregation="seq-mean-token-mean")
def _group_estimator(rewards, G: int, hp: AdvantageSettings) -> np.ndarray:
    return group_advantages(rewards, G, scale="std", std=hp.std, eps=hp.eps)


@ADVANTAGE_ESTIMATORS.register(
    "process", paper="Shao et al. 2024 (DeepSeekMath) §4.1.3", level="token", needs_step_rewards=True,
    equation="A_{i,t} = sum_{index(j) >= t} (r_i^index(j) - mean(R)) / std(R)")
def _process_estimator(x: AdvantageInputs, hp: AdvantageSettings):
    return process_advantages(x.step_rewards, x.step_end, x.G, scale="std", std=hp.std, eps=hp.eps), None


def compute_advantages(name: str, x: AdvantageInputs, hp: AdvantageSettings):
    """Token advantages (B, L) and the value targets (critic estimators; else None) of the estimator `name`.

    Sequence-level estimators get R_i = r_i - beta * sum_t k_t and their advantage is put on every completion token
    (Shao et al. 2024 §4.1.2); token-level ones (GAE, process supervision) read the per-token quantities."""
    est = ADVANTAGE_ESTIMATORS.lookup(name)
    if est.level == "sequence":
        kw = {}
        for k in est.inputs:
            if getattr(x, k) is None:
                raise ValueError(f"advantage {name!r} needs AdvantageInputs.{k}")
            kw[k] = getattr(x, k)
        return broadcast_to_tokens(est.fn(x.sequence_reward, x.G, hp, **kw), x.mask), None
    return est.fn(x, hp)
