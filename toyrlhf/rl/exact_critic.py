"""PPO with the exact critic (`--set critic=exact`), and how far a learned critic's advantages are from it.

With critic=exact the value model is not built or trained: GAE (Schulman et al. 2016, eq. 16) reads the exact value
function of the current policy, so the run isolates the algorithm from critic error. The values are those of the
token-level MDP the GAE estimator's per-token rewards define (``toyrlhf.exact.values``):

    V^pi(s_t) = E_pi[ sum_{t' >= t} gamma^(t' - t) r_t' | q, y_<t ],
    r_t = -beta k(log pi(y_t|s_t), log pi_ref(y_t|s_t)) [kl = reward, beta > 0]  +  r(q, y) at the last token

with pi = pi_old, the policy that sampled the step's rollout (at the run's temperature), beta this step's KL
coefficient, k the run's kl_estimator, r the run's training reward (RM or rule, with its overlong penalty) and gamma
the run's gamma; V(s_T) = 0 after the last token. With exact values the GAE advantage is unbiased for
Q^pi(s_t, a_t) - V^pi(s_t) for every lambda (E[delta_{t+l} | s_t, a_t] = 0 for l >= 1), so the expected policy
gradient is grad E_pi[sum_t r_t] (rewards detached) whatever lambda is.

With a learned critic and `--exact`, every exact_every steps the trainer logs, over the rollout's completion tokens,
the learned critic's GAE advantages A against those of the same estimator on the exact values A*:

    adv_err_rms    sqrt(mean (A - A*)^2)          adv_corr      Pearson correlation of A and A*
    value_err_rms  sqrt(mean (V - V^pi)^2)        adv_exact_rms sqrt(mean A*^2)   (the scale adv_err_rms compares to)

all before whitening, on the step's rollout, for the values the step's update used (before the critic's update).
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from .. import exact
from . import advantages as adv_mod
from . import losses
from .exact_update import enumerated_rewards

__all__ = ["check_config", "ExactCritic", "critic_error"]


def check_config(task) -> None:
    """UserError (one line) when the task has too many completions to enumerate every step."""
    exact.check_size(len(task.prompts()), task.n_out, task.max_new_tokens, what=f"task {task.name!r} (critic=exact)")


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


class ExactCritic:
    """V^pi (module docstring) of a trainer's current policy, recomputed only when the policy, the reference (if
    the KL is in the reward) or beta changed since the last call."""

    def __init__(self):
        self._key = None
        self._table: exact.StateValues | None = None

    def table(self, trainer, beta: float) -> exact.StateValues:
        cfg, m = trainer.cfg, trainer.models
        kl_in_reward = cfg.kl == "reward" and beta > 0
        key = (_digest(m.policy.flat), id(trainer.reward_fn),
               (_digest(m.reference.flat), float(beta)) if kl_in_reward else None)
        if key != self._key:
            enum = exact.enumerate_task(m.policy, trainer.task, cfg.temperature)
            proxy, _ = enumerated_rewards(trainer, enum)
            penalty = None
            if kl_in_reward:
                ref = exact.rescore(m.reference, enum, cfg.temperature)
                penalty = losses.kl_penalty_rewards(enum.logp, ref.logp, enum.mask, beta, cfg.kl_estimator)
            self._table = exact.state_values(enum, exact.mdp_token_rewards(enum, proxy, penalty), cfg.gamma)
            self._key = key
        return self._table

    def values(self, trainer, ro, beta: float) -> np.ndarray:
        """(B, L) V^pi(s_t) at each completion token of the rollout `ro`, 0 elsewhere (the layout GAE reads)."""
        return self.table(trainer, beta)(ro.tokens, ro.mask)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else float("nan")


def critic_error(trainer, ro, inputs: adv_mod.AdvantageInputs, beta: float, oracle: ExactCritic) -> dict:
    """{adv_err_rms, adv_corr, value_err_rms, adv_exact_rms} (module docstring) of the learned values in `inputs`
    (the step's ``AdvantageInputs``) against the exact V^pi of the policy that sampled `ro`."""
    cfg = trainer.cfg
    v_star = oracle.values(trainer, ro, beta)
    hp = cfg.advantage_settings
    a, _ = adv_mod.compute_advantages(cfg.advantage, inputs, hp)
    a_star, _ = adv_mod.compute_advantages(cfg.advantage, dataclasses.replace(inputs, values=v_star), hp)
    m = ro.mask
    a, a_star = a[m], a_star[m]
    corr = float(np.corrcoef(a, a_star)[0, 1]) if a.size > 1 and a.std() > 0 and a_star.std() > 0 else None
    return {"adv_err_rms": _rms(a - a_star), "adv_corr": corr, "value_err_rms": _rms(inputs.values[m] - v_star[m]),
            "adv_exact_rms": _rms(a_star)}
