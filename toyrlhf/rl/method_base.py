"""What the supervised and direct-preference trainers (rl/rft.py, rl/dpo.py) share with the RL Trainer.

A method trainer *is* a ``Trainer`` (same models, optimizer, RNG, checkpoint format, ``state_arrays`` / ``save`` /
``load_state``, so rl/run.py drives it and `--resume` works unchanged); only ``step()`` differs. Each step:

    1. monitor:  an on-policy rollout of prompts_per_step x group_size from the current policy, scored as RL scores
                 it (the RM on preference tasks, the rule on verifiable ones; gold alongside). Online methods train on
                 this very batch; offline methods only read their metrics off it, so every method logs reward,
                 gold_reward, kl, entropy, response_length (and accuracy) of samples of the policy being trained,
                 on the same footing as PPO / GRPO.
    2. loss:     the method's loss and dL/dlogp on its batch (rl/preference_losses.py)
    3. update:   logp_backward -> global-norm clip -> Adam, as ``Trainer.policy_update`` does.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import UserError
from ..optim import clip_grad_norm
from .rollout import Rollout, rollout
from .trainer import Models, Trainer, _check_finite, _mean


class MethodTrainer(Trainer):
    """Base of the method trainers: subclasses implement ``train_on(raw) -> (loss, grad_norm, stats)``."""

    online = True
    """True: train on the monitoring rollout (samples of the current policy); False: on the method's fixed data."""

    def __init__(self, cfg, models: Models):
        if cfg.update != "sample":
            raise UserError(f"update={cfg.update} applies to the RL presets only, not to method {cfg.method}")
        if cfg.epochs != 1 or cfg.minibatches != 1:
            raise UserError(f"method {cfg.method} takes one optimizer step per step: epochs and minibatches must be 1")
        super().__init__(cfg, models)

    @property
    def batch_size(self) -> int:
        """Completions per update: prompts_per_step x group_size, the RL presets' rollout size (a matched budget)."""
        return self.cfg.prompts_per_step * self.cfg.group_size

    def monitor(self) -> Rollout:
        cfg, m = self.cfg, self.models
        return rollout(m.policy, m.reference, self.task, self.reward_fn, cfg.prompts_per_step, cfg.group_size,
                       self.rng, cfg.temperature)

    def apply_gradient(self, loss: float, dlogp: np.ndarray, cache) -> float:
        """logp_backward, clip, Adam step; returns the pre-clip gradient norm (NumericalError if non-finite)."""
        policy = self.models.policy
        grad, gnorm = clip_grad_norm(policy.logp_backward(dlogp, cache), self.cfg.max_grad_norm)
        _check_finite(self.step_count + 1, loss=loss, gradient=gnorm)
        self.opt.step(policy.flat, grad)
        _check_finite(self.step_count + 1, parameters=policy.flat)
        return float(gnorm)

    def train_on(self, raw: Rollout) -> tuple[float, float, dict]:
        raise NotImplementedError

    def step(self) -> dict:
        t0 = time.perf_counter()
        raw = self.monitor()
        loss, gnorm, stats = self.train_on(raw)
        self.step_count += 1
        metrics = self.method_metrics(raw, loss, gnorm, stats)
        metrics["time_s"] = time.perf_counter() - t0
        return metrics

    def method_metrics(self, raw: Rollout, loss: float, gnorm: float, stats: dict) -> dict:
        """The RL metrics read off the monitoring rollout (``Trainer.metrics``' names), then the method's own."""
        out = {
            "step": self.step_count,
            "reward": float(raw.reward.mean()),
            "gold_reward": float(raw.gold_reward.mean()),
            "kl": float(((raw.old_logp - raw.ref_logp) * raw.mask).sum(axis=1).mean()),
            "entropy": float(raw.entropy[raw.mask].mean()),
            "response_length": float(raw.lengths.mean()),
            "truncated_fraction": float(raw.truncated.mean()),
            "grad_norm": gnorm,
            "loss": loss,
            "beta": float(self.cfg.beta),
        }
        if raw.correct is not None:
            out["accuracy"] = float(raw.correct.mean())
            out["response_length_correct"] = _mean(raw.lengths[raw.correct])
            out["response_length_incorrect"] = _mean(raw.lengths[~raw.correct])
        out.update(stats)
        if self.exact_fn is not None and self.cfg.exact_every and self.step_count % self.cfg.exact_every == 0:
            out.update(self.exact_fn(self))
        return out


def keep_weights(reward: np.ndarray, correct: np.ndarray | None, group_size: int, rule: str) -> np.ndarray:
    """(B,) 1.0 on the samples rejection sampling keeps, 0.0 elsewhere; rows grouped by prompt in groups of G.

    'correct': the rule's verdict I(o) (verifiable tasks); 'best': the highest reward of each group (the first of
    equal ones: with i.i.d. draws that is the best-of-G distribution with ties broken at random)."""
    if rule == "correct":
        if correct is None:
            raise UserError("rft_keep=correct needs a verifiable task (its rule says which answers are correct)")
        return np.asarray(correct, dtype=np.float64)
    r = np.asarray(reward, dtype=np.float64).reshape(-1, group_size)
    w = np.zeros_like(r)
    w[np.arange(r.shape[0]), np.argmax(r, axis=1)] = 1.0
    return w.ravel()


def resolve_keep(cfg, task) -> str:
    if cfg.rft_keep == "auto":
        return "correct" if task.verifiable else "best"
    return cfg.rft_keep
