"""DPO and online DPO (and IPO / SLiC / RPO through ``pref_loss`` and ``sft_coef``) as trainers of the unified
paradigm; the losses and their gradients are ``rl/preference_losses.py``.

    dpo         offline: the reward-model stage's *training* pairs (regenerated exactly: ``preferences.make_split``
                with the RM stage's settings and its data stream [seed, 4]), so DPO and the RM see the same labels;
                reference = the SFT model. Each step draws B/2 pairs with replacement (B = prompts_per_step x G
                completions, the RL presets' batch).
    online_dpo  online: the current policy's rollout (G completions per prompt, G even) is cut into the G/2 pairs
                (rows 2j, 2j+1) of each group, the higher reward wins (the RM on preference tasks, the rule on
                verifiable ones: ``reward``); ties get weight 0 but stay in the 1/n, so the batch loss is unbiased
                for E_{y1, y2 ~ pi}[[r1 != r2] l(winner, loser)] (Guo et al. 2024, online AI feedback).

GC (DeepSeekMath Table 10): sigma(beta log pi(o-)/pi_ref(o-) - beta log pi(o+)/pi_ref(o+)) on o+, its negative on
o-; the SFT regulariser adds alpha/|o+| on o+.
"""
from __future__ import annotations

import numpy as np

from .. import preferences as prefs
from ..errors import UserError
from .method_base import MethodTrainer
from .preference_losses import preference_loss
from .rollout import Rollout


def offline_pairs(cfg, task, sft_model) -> dict:
    """The RM stage's training comparisons as (winner, loser) token arrays: {'tok_w', 'mask_w', 'tok_l', 'mask_l',
    'prompt_ids'} (one entry per comparison; k > 2 groups give their C(k, 2) pairs)."""
    rm = cfg.rm
    train, _ = prefs.make_split(sft_model, task, rm.pairs, k=rm.k, tau=rm.tau, heldout_frac=rm.heldout_frac,
                                rng=np.random.default_rng([cfg.seed, 4]), temperature=rm.temperature)
    if train.n == 0:
        raise UserError("dpo: the SFT policy produced no pair of distinct completions")
    tokens, mask = train.joined()
    i, j = prefs.pair_index(train.k)
    base = (np.arange(train.n) * train.k)[:, None]
    wi, li = (base + i[None, :]).ravel(), (base + j[None, :]).ravel()
    return {"tok_w": tokens[wi], "mask_w": mask[wi], "tok_l": tokens[li], "mask_l": mask[li],
            "prompt_ids": np.repeat(train.prompt_ids, len(i))}


def pair_gradient(policy, tok_w, mask_w, ref_w, tok_l, mask_l, ref_l, cfg, weights=None):
    """(loss, dL/dlogp of the stacked [winners; losers] batch, its forward cache, stats) for one batch of pairs."""
    tokens, mask = np.concatenate([tok_w, tok_l]), np.concatenate([mask_w, mask_l])
    logp, _, cache = policy.logp_forward(tokens, mask, cfg.temperature)
    n = tok_w.shape[0]
    loss, dw, dl, stats = preference_loss(logp[:n], ref_w, mask_w, logp[n:], ref_l, mask_l, loss=cfg.pref_loss,
                                          beta=cfg.beta, sft_coef=cfg.sft_coef, weights=weights)
    return loss, np.concatenate([dw, dl]), cache, stats


class DPOTrainer(MethodTrainer):
    """Offline DPO on the RM stage's pairs; the reference log-probs of every pair are computed once."""

    online = False

    def __init__(self, cfg, models):
        super().__init__(cfg, models)
        self.pairs = offline_pairs(cfg, self.task, models.reference)
        ref = models.reference
        self.ref_w = ref.logp_forward(self.pairs["tok_w"], self.pairs["mask_w"], cfg.temperature)[0]
        self.ref_l = ref.logp_forward(self.pairs["tok_l"], self.pairs["mask_l"], cfg.temperature)[0]

    @property
    def n_pairs(self) -> int:
        return int(self.pairs["tok_w"].shape[0])

    def train_on(self, raw: Rollout) -> tuple[float, float, dict]:
        rows = self.rng.integers(0, self.n_pairs, max(1, self.batch_size // 2))
        p = self.pairs
        loss, dlogp, cache, stats = pair_gradient(self.models.policy, p["tok_w"][rows], p["mask_w"][rows],
                                                  self.ref_w[rows], p["tok_l"][rows], p["mask_l"][rows],
                                                  self.ref_l[rows], self.cfg)
        return loss, self.apply_gradient(loss, dlogp, cache), stats


def rollout_pairs(ro: Rollout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(winner rows, loser rows, weights): rows 2j and 2j+1 of each group form a pair, the higher reward wins,
    a tie gets weight 0 (its rows are still returned, in order)."""
    G = ro.group_size
    if G % 2:
        raise UserError(f"online_dpo pairs the G completions of a prompt: group_size must be even, got {G}")
    a = np.arange(0, ro.tokens.shape[0], 2)
    b = a + 1
    ra, rb = ro.reward[a], ro.reward[b]
    a_wins = ra >= rb
    return np.where(a_wins, a, b), np.where(a_wins, b, a), (ra != rb).astype(np.float64)


def online_dpo_loss(policy, ro: Rollout, cfg):
    """(loss, dL/dlogp over the rollout's rows, cache, stats) of online DPO on rollout `ro` (one forward pass)."""
    wi, li, w = rollout_pairs(ro)
    logp, _, cache = policy.logp_forward(ro.tokens, ro.mask, cfg.temperature)
    loss, dw, dl, stats = preference_loss(logp[wi], ro.ref_logp[wi], ro.mask[wi], logp[li], ro.ref_logp[li],
                                          ro.mask[li], loss=cfg.pref_loss, beta=cfg.beta, sft_coef=cfg.sft_coef,
                                          weights=w)
    dlogp = np.zeros_like(logp)
    dlogp[wi] += dw
    dlogp[li] += dl
    return loss, dlogp, cache, stats


class OnlineDPOTrainer(MethodTrainer):
    """Online DPO: pairs from the current policy's rollout (the monitoring batch), labelled by the run's reward."""

    def __init__(self, cfg, models):
        if cfg.group_size % 2:
            raise UserError(f"online_dpo pairs the G completions of a prompt: group_size must be even, "
                            f"got {cfg.group_size}")
        super().__init__(cfg, models)

    def train_on(self, raw: Rollout) -> tuple[float, float, dict]:
        loss, dlogp, cache, stats = online_dpo_loss(self.models.policy, raw, self.cfg)
        return loss, self.apply_gradient(loss, dlogp, cache), stats
