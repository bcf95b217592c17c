"""More critic-free advantage estimators, registered into ``advantages.ADVANTAGE_ESTIMATORS`` (pure NumPy, float64).

Batch whitening (REINFORCE++ and REINFORCE++-baseline, Hu et al. 2025; batch-std scaling, Liu et al. 2025 "Lite PPO"
and TRL ``scale_rewards="batch"``), a greedy-decode baseline (ReMax, Li et al. 2023), the alpha-rescaled group mean
(GPG, Chu et al. 2025), a length-weighted group baseline (OPO, Hao et al. 2025) and the pass@k advantage (Tang et al.
2025; verl ``grpo_passk``).

``toyrlhf/rl/__init__.py`` imports this module, so every user of the registry sees these entries (importing it
from ``advantages.py`` would make an import cycle). Conventions as in ``advantages.py``: rewards ``(B,)`` grouped
consecutively in groups of G; each function returns ``(B,)``. None of these is in the default ``toyrlhf check``
table (``in_default_check=False``); ``toyrlhf check --all-algos`` shows their rows.
"""
from __future__ import annotations

import numpy as np

from .advantages import ADVANTAGE_ESTIMATORS, GROUP_STDS, AdvantageSettings, _check_choice, _grouped, group_advantages

__all__ = ["reinforce_pp_advantages", "reinforce_pp_baseline_advantages", "batch_std_advantages",
           "remax_advantages", "gpg_advantages", "opo_advantages", "passk_advantages", "gpg_expected",
           "multi_reward_advantages", "REWARD_NORMS"]

REWARD_NORMS = ("sum", "gdpo")
"""The knob ``reward_norm``: 'sum' (weight and sum the reward components, then the run's advantage estimator) or
'gdpo' (normalise each component in its group, then the weighted sum; ``multi_reward_advantages``)."""


def _ddof(std: str) -> int:
    _check_choice("std", std, GROUP_STDS)
    return 0 if std == "population" else 1


def _token_whiten(values, lengths, eps: float, std: str) -> np.ndarray:
    """(v - mean) / (sd + eps) with mean and sd over the batch's *tokens*: sequence i counts |o_i| times (the
    statistics of a masked mean over every completion token of the batch, for a value constant along a sequence).
    A batch whose values are all equal gets exactly 0."""
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(lengths, dtype=np.float64)
    if w.shape != v.shape:
        raise ValueError(f"lengths {w.shape} must match the rewards {v.shape}")
    n = w.sum()
    if n <= 0 or v.max() == v.min():
        return np.zeros_like(v)
    mean = (w * v).sum() / n
    dof = n - _ddof(std)
    sd = np.sqrt((w * (v - mean) ** 2).sum() / dof) if dof > 0 else 0.0
    return (v - mean) / (sd + eps)


def reinforce_pp_advantages(rewards, lengths, *, eps: float = 1e-6, std: str = "population") -> np.ndarray:
    r"""REINFORCE++ (Hu et al. 2025, "REINFORCE++: An Efficient RLHF Algorithm with Robustness to Both Prompt and
    Reward Models", global advantage normalisation):

        A_i = R_i,     A^norm = (A - mean_batch(A)) / std_batch(A)

    with the mean and std over every completion token of the batch (sequence i counted |o_i| times), as the
    masked whitening of OpenRLHF does. R_i = r_i - beta sum_t k_t: here the KL penalty is summed over the whole
    sequence (the paper's token-level return-to-go sum_{t' >= t} applies it from t on).
    """
    return _token_whiten(rewards, lengths, eps, std)


def reinforce_pp_baseline_advantages(rewards, G: int, lengths, *, eps: float = 1e-6,
                                     std: str = "population") -> np.ndarray:
    r"""REINFORCE++-baseline (Hu et al. 2025, "REINFORCE++ w/ baseline"): subtract the group mean, then whiten the
    result over the batch's tokens:

        A_i = R_i - mean(R_group),     A^norm = (A - mean_batch(A)) / std_batch(A)
    """
    return _token_whiten(group_advantages(rewards, G, scale="none"), lengths, eps, std)


def batch_std_advantages(rewards, G: int, *, eps: float = 1e-6, std: str = "population") -> np.ndarray:
    r"""Group mean, batch std (Liu et al. 2025, "Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning",
    "Lite PPO"; TRL ``scale_rewards="batch"``):

        A_i = (r_i - mean(r_group)) / (std_batch(r) + eps)

    The std is over every reward of the batch, so easy and hard prompts are no longer up-weighted by their small
    group std (Dr. GRPO's difficulty bias); ``std="sample"`` is torch's (TRL's) ddof=1.
    """
    r = np.asarray(rewards, dtype=np.float64)
    centred = group_advantages(r, G, scale="none")
    if r.max() == r.min():
        return np.zeros_like(r)
    return centred / (r.std(ddof=_ddof(std)) + eps)


def remax_advantages(rewards, greedy_reward) -> np.ndarray:
    r"""ReMax (Li et al. 2023, "ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method for Aligning
    Large Language Models", eq. 5): the reward of the greedy completion of the same prompt as the baseline,

        A_i = r(x, y_i) - r(x, ybar),     ybar = greedy decode of pi_old(.|x)

    The baseline does not depend on the sampled y_i, so the estimate is unbiased for any G.
    ``greedy_reward`` (B,) holds r(x, ybar) for each row's prompt.
    """
    r = np.asarray(rewards, dtype=np.float64)
    b = np.asarray(greedy_reward, dtype=np.float64)
    if b.shape != r.shape:
        raise ValueError(f"greedy_reward {b.shape} must match the rewards {r.shape}")
    return r - b


def gpg_advantages(rewards, G: int) -> np.ndarray:
    r"""GPG (Chu et al. 2025, "GPG: A Simple and Strong Reinforcement Learning Baseline for Model Reasoning", the
    group-mean advantage with the gradient-estimation correction alpha):

        A_i = alpha (r_i - mean(r_group)),     alpha = B / (B - M)

    (F_norm = 1), with M the number of rows in groups whose rewards all tie (they contribute no gradient; alpha
    rescales the rest to the whole batch). A batch whose every group ties gets 0.
    """
    r = _grouped(rewards, G)
    tie = r.max(axis=1) == r.min(axis=1)
    B, M = r.size, int(tie.sum()) * r.shape[1]
    if M == B:
        return np.zeros(B)
    return B / (B - M) * group_advantages(rewards, G, scale="none")


def gpg_expected(r, mq, mu, G, *, p_tie, prompt_index):
    """E[A_i | y_i = y] of GPG for one batch of every prompt with G completions: (G-1)/G (r - mu_q) times
    E[B / (B - G K)], K the number of tied groups among the *other* prompts (independent Bernoulli(p_tie[q']);
    y's own tied group has A = 0 whatever alpha is)."""
    n = len(mu)
    B = n * G
    scale = np.empty(n)
    for q in range(n):
        dist = np.ones(1)
        for q2 in range(n):
            if q2 != q:
                dist = np.convolve(dist, [1.0 - p_tie[q2], p_tie[q2]])
        K = np.arange(len(dist))
        scale[q] = (dist * B / (B - G * K)).sum()
    return (G - 1) / G * (r - mq) * scale[prompt_index]


def opo_advantages(rewards, G: int, lengths) -> np.ndarray:
    r"""OPO's length-weighted baseline (Hao et al. 2025, "On-Policy RL with Optimal Reward Baseline"; verl ``opo``):

        b = sum_j |o_j| r_j / sum_j |o_j|   (over the group),     A_i = r_i - b

    the variance-minimising baseline when the squared norm of grad log pi(o) grows like |o| (a sum over tokens).
    The baseline contains r_i itself, so the estimate is slightly biased (as the group mean is).
    """
    r = _grouped(rewards, G)
    w = np.asarray(lengths, dtype=np.float64).reshape(r.shape)
    b = (w * r).sum(axis=1, keepdims=True) / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    out = r - b
    out[r.max(axis=1) == r.min(axis=1)] = 0.0
    return out.ravel()


def passk_advantages(rewards, G: int, *, eps: float = 1e-6, std: str = "population") -> np.ndarray:
    r"""The pass@k advantage of Tang et al. 2025 ("Optimizing Language Models for Inference Time Objectives using
    Reinforcement Learning", the leave-one-out estimator of max-reward's gradient), as verl's ``grpo_passk``:
    only the group's best completion gets a non-zero advantage,

        A_{i*} = (r_max - r_second) / (std(r_group) + eps),   i* = argmax_i r_i;   A_i = 0 otherwise

    (r_max - r_second = 0 on a tie, so the tie-break does not matter). Its target is grad E[max_i r_i], the
    pass@G objective for a 0/1 reward, not grad E[r]. ``std`` chooses ddof 0 or 1 (verl: torch.std, ddof=1).
    """
    r = _grouped(rewards, G)
    top = np.sort(r, axis=1)
    gap = top[:, -1] - top[:, -2]
    sd = r.std(axis=1, ddof=_ddof(std))
    out = np.zeros_like(r)
    rows = np.flatnonzero(gap > 0)
    out[rows, np.argmax(r[rows], axis=1)] = gap[rows] / (sd[rows] + eps)
    return out.ravel()


def multi_reward_advantages(components: dict, weights: dict, G: int, *, mode: str = "gdpo", eps: float = 1e-6,
                            std: str = "population") -> np.ndarray:
    r"""Advantages from several reward components r^(k) with weights w_k (rows grouped in groups of G):

    mode="sum"  (sum then normalise; GRPO on the combined reward, as TRL's reward_weights do):
        r_i = sum_k w_k r^(k)_i,   A_i = (r_i - mean_group(r)) / (std_group(r) + eps)
    mode="gdpo" (normalise then sum; GDPO, Liu et al. 2026, "GDPO: Group reward-Decoupled Normalization Policy
    Optimization for Multi-reward RL Optimization", eqs. 4-6):
        A^(k)_i = (r^(k)_i - mean_group(r^(k))) / (std_group(r^(k)) + eps),
        A^sum_i = sum_k w_k A^(k)_i,   A_i = (A^sum_i - mean_batch(A^sum)) / (std_batch(A^sum) + eps)

    Summing first lets a component with a large spread swamp the others and maps distinct component patterns to
    the same advantage (e.g. (1, 0) and (0, 1) with equal weights); decoupling keeps each component's signal.
    """
    if mode not in REWARD_NORMS:
        raise ValueError(f"mode must be one of {', '.join(REWARD_NORMS)}; got {mode!r}")
    if not components or set(components) != set(weights):
        raise ValueError(f"components {sorted(components)} and weights {sorted(weights)} must name the same keys")
    if mode == "sum":
        r = sum(float(weights[k]) * np.asarray(components[k], np.float64) for k in components)
        return group_advantages(r, G, scale="std", std=std, eps=eps)
    total = sum(float(weights[k]) * group_advantages(np.asarray(components[k], np.float64), G, scale="std",
                                                     std=std, eps=eps) for k in components)
    if total.max() == total.min():
        return np.zeros_like(total)
    return (total - total.mean()) / (total.std(ddof=_ddof(std)) + eps)


# ----------------------------------------------------------------------------------------------------------------
# Registry entries
# ----------------------------------------------------------------------------------------------------------------

@ADVANTAGE_ESTIMATORS.register(
    "reinforce_pp", paper="Hu et al. 2025 (REINFORCE++), global advantage normalisation",
    equation="A_i = (R_i - mean_batch(R)) / std_batch(R)  (token-weighted batch statistics)",
    scope="batch", min_group=1, inputs=("lengths",), label="REINFORCE++ (batch whitening)",
    aggregation="token-mean", in_default_check=False)
def _reinforce_pp(rewards, G: int, hp: AdvantageSettings, *, lengths) -> np.ndarray:
    return reinforce_pp_advantages(rewards, lengths, eps=hp.eps, std=hp.std)


@ADVANTAGE_ESTIMATORS.register(
    "reinforce_pp_baseline", paper="Hu et al. 2025 (REINFORCE++ w/ baseline)",
    equation="A_i = whiten_batch(R_i - mean(R_group))  (token-weighted batch statistics)",
    scope="batch", inputs=("lengths",), label="REINFORCE++-baseline", aggregation="token-mean",
    in_default_check=False)
def _reinforce_pp_baseline(rewards, G: int, hp: AdvantageSettings, *, lengths) -> np.ndarray:
    return reinforce_pp_baseline_advantages(rewards, G, lengths, eps=hp.eps, std=hp.std)


@ADVANTAGE_ESTIMATORS.register(
    "batch_std", paper="Liu et al. 2025 (Tricks or Traps, Lite PPO); TRL scale_rewards='batch'",
    equation="A_i = (r_i - mean(r_group)) / (std_batch(r) + eps)", scope="batch",
    label="Lite PPO (group mean, batch std)", aggregation="token-mean", in_default_check=False)
def _batch_std(rewards, G: int, hp: AdvantageSettings) -> np.ndarray:
    return batch_std_advantages(rewards, G, eps=hp.eps, std=hp.std)


@ADVANTAGE_ESTIMATORS.register(
    "remax", paper="Li et al. 2023 (ReMax) eq. 5", equation="A_i = r(x, y_i) - r(x, greedy(x))",
    min_group=1, inputs=("greedy_reward",), label="ReMax (greedy baseline)", aggregation="seq-mean-token-sum",
    in_default_check=False)
def _remax(rewards, G: int, hp: AdvantageSettings, *, greedy_reward) -> np.ndarray:
    return remax_advantages(rewards, greedy_reward)


@ADVANTAGE_ESTIMATORS.register(
    "gpg", paper="Chu et al. 2025 (GPG), advantage with the alpha correction",
    equation="A_i = B/(B - M) * (r_i - mean(r_group)),  M = rows of all-tied groups", scope="batch",
    label="GPG (alpha x group mean, sum)", aggregation="seq-mean-token-sum", in_default_check=False,
    expected=gpg_expected, expected_kw=("p_tie", "prompt_index"))
def _gpg(rewards, G: int, hp: AdvantageSettings) -> np.ndarray:
    return gpg_advantages(rewards, G)


@ADVANTAGE_ESTIMATORS.register(
    "opo", paper="Hao et al. 2025 (OPO), optimal reward baseline; verl 'opo'",
    equation="A_i = r_i - sum_j |o_j| r_j / sum_j |o_j|  (over the group)", inputs=("lengths",),
    label="OPO (length-weighted baseline)", aggregation="seq-mean-token-sum", in_default_check=False)
def _opo(rewards, G: int, hp: AdvantageSettings, *, lengths) -> np.ndarray:
    return opo_advantages(rewards, G, lengths)


@ADVANTAGE_ESTIMATORS.register(
    "passk", paper="Tang et al. 2025 (Inference-time objectives), verl 'grpo_passk'",
    equation="A_best = (r_max - r_second) / (std(r_group) + eps), others 0", label="pass@k (best of group)",
    aggregation="seq-mean-token-mean", in_default_check=False)
def _passk(rewards, G: int, hp: AdvantageSettings) -> np.ndarray:
    return passk_advantages(rewards, G, eps=hp.eps, std=hp.std)
