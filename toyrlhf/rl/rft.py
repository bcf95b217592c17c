"""SFT, RFT and online RFT as trainers of the unified paradigm (Shao et al. 2024, DeepSeekMath §5.2.1, Table 10).

All three minimise the same length-normalised NLL (``preference_losses.nll_loss``), gradient coefficient GC = 1 on
the samples they train on; they differ only in where those samples come from:

    sft         offline  fresh demonstrations of the task (q, o ~ P_sft(Q, O)),  GC = 1
    rft         offline  rft_samples groups of G completions per prompt from pi_sft, drawn once (Yuan et al. 2023);
                         the kept ones (rft_keep: correct, or the best of each group) are the dataset,  GC = I(o)
    online_rft  online   G completions per prompt from the current pi_theta each step, kept by the same rule,
                         L = -(1/B) sum_i I(o_i) (1/|o_i|) sum_t log pi(o_i,t),  GC = I(o)

Offline steps draw B = prompts_per_step x G rows of their dataset with replacement (the RL presets' batch).
"""
from __future__ import annotations

import numpy as np

from .. import tokens as tk
from ..errors import UserError
from .method_base import MethodTrainer, keep_weights, resolve_keep
from .preference_losses import nll_loss
from .rollout import Rollout


class SupervisedTrainer(MethodTrainer):
    """Offline NLL on a fixed dataset (tokens, mask) built by ``build_data``; `sft` uses the task's demonstrations."""

    online = False

    def __init__(self, cfg, models):
        super().__init__(cfg, models)
        self.data_tokens, self.data_mask, self.data_info = self.build_data()

    def build_data(self) -> tuple[np.ndarray, np.ndarray, dict]:
        prompts, comps = self.task.demonstrations(self.cfg.sft_demos, np.random.default_rng([self.cfg.seed, 21]))
        tokens, mask = tk.join(prompts, comps)
        return tokens, mask, {"data_size": float(tokens.shape[0])}

    def train_on(self, raw: Rollout) -> tuple[float, float, dict]:
        rows = self.rng.integers(0, self.data_tokens.shape[0], self.batch_size)
        tok, mask = self.data_tokens[rows], self.data_mask[rows]
        logp, _, cache = self.models.policy.logp_forward(tok, mask, self.cfg.temperature)
        loss, dlogp = nll_loss(logp, mask)
        return loss, self.apply_gradient(loss, dlogp, cache), dict(self.data_info)


class RFTTrainer(SupervisedTrainer):
    """Offline rejection-sampling fine-tuning: the dataset is pi_sft's kept samples, drawn once at the start."""

    def build_data(self) -> tuple[np.ndarray, np.ndarray, dict]:
        cfg, task, ref = self.cfg, self.task, self.models.reference
        G, k = cfg.group_size, cfg.rft_samples
        prompts = np.repeat(np.tile(task.prompts(), (k, 1)), G, axis=0)      # k groups of G per prompt
        s = ref.sample(prompts, task.max_new_tokens, np.random.default_rng([cfg.seed, 22]), cfg.temperature)
        _, comps = tk.split(s.tokens, task.prompt_len)
        reward = self.reward_fn(s.tokens, s.mask, prompts, comps)
        correct = task.is_correct(prompts, comps) if task.verifiable else None
        keep = keep_weights(reward, correct, G, resolve_keep(cfg, task)) > 0
        if not keep.any():
            raise UserError(f"rft: none of the SFT model's {keep.size} samples was kept ({resolve_keep(cfg, task)}); "
                            f"raise rft_samples or use rft_keep=best")
        gold = task.gold_reward(prompts, comps)
        info = {"data_size": float(keep.sum()), "data_kept_fraction": float(keep.mean()),
                "data_gold_reward": float(gold[keep].mean())}
        return s.tokens[keep], s.mask[keep], info


class OnlineRFTTrainer(MethodTrainer):
    """Online RFT: NLL on the kept samples of the current policy's rollout (the monitoring batch itself)."""

    def train_on(self, raw: Rollout) -> tuple[float, float, dict]:
        loss, dlogp, cache, stats = online_rft_loss(self.models.policy, raw, resolve_keep(self.cfg, self.task),
                                                    self.cfg.temperature)
        return loss, self.apply_gradient(loss, dlogp, cache), stats


def online_rft_loss(policy, ro: Rollout, rule: str, temperature: float = 1.0):
    """(loss, dL/dlogp, cache, stats) of online RFT on rollout `ro`: -(1/B) sum_i I(o_i) (1/|o_i|) sum_t log pi.
    Its expectation over rollouts is the exact E_q E_{o ~ pi}[I(o) (1/|o|) grad log pi(o)] (tests/rl/test_methods)."""
    w = keep_weights(ro.reward, ro.correct, ro.group_size, rule)
    logp, _, cache = policy.logp_forward(ro.tokens, ro.mask, temperature)
    loss, dlogp = nll_loss(logp, ro.mask, w)
    return loss, dlogp, cache, {"kept_fraction": float(w.mean())}
