"""`toyrlhf check --all-algos`, preset section: every preset and library preset (``rl/algorithms.py``), and the
entropy-mask and GDPO variants of GRPO, through the trainer's own code on sampled batches, against the exact target.

For each row a draw is one training batch (the policy-gradient section's prompts x G completions of pi); its
ascent direction is -d loss / d theta of ``Trainer.advantages`` + ``Trainer.minibatch_dlogp`` (the first, on-policy
minibatch: ratio 1), with the reward the check's (1[correct] on verifiable tasks; the weighted rule components for
GDPO). The target is the preset's own objective, grad E[r] - beta grad KL(pi || pi_ref) (beta = 0 without a KL term).
Every row runs with the check's G, one epoch of one minibatch, no dynamic sampling (a fixed batch) and rewards
without the overlong penalty, so the rows compare the loss functions, not the batch schedules.

The exact expected gradient (``exact.expected_sequence_coefficients``: the registered estimator's E[A | y] times the
aggregation's per-sequence weight h, plus beta E[h sum_t k'_t grad log pi_t] for kl=loss) exists for a
sequence-level advantage without batch whitening, token masks or GDPO; a sequence-level surrogate's on-policy weight
is GSPO's 1/|y| (seq-mean-token-mean). token-mean divides by the batch's token count, which couples the batch: its
row uses the large-batch limit h(y) = |y| / E|y| and says so ("B->inf"). Partition invariance: the same batches
split into 2 micro-batches of prompt groups, each normalised by its own counts (TRL 'bnpo'; 'dapo', the global
counts, is invariant by construction), against the unsplit gradient: identical on every batch, or the mean change
along the target with its z-score.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from .. import tokens as tk
from ..config import preset_config
from ..exact import (enumerate_task, expectation, expected_sequence_coefficients, grad_expectation, grad_reverse_kl,
                     grad_token_weights, rescore, sequence_scale, sequence_weights)
from ..rl import advantages as adv_mod
from ..rl import losses, token_masks
from ..rl.algorithms import LIBRARY_PRESETS, PRESETS
from ..rl.rollout import Rollout
from ..rl.surrogates import SURROGATES
from ..rl.trainer import Models, Trainer, init_critic
from .draws import Draws, TokenPairs, mean_se
from .rows import Z_MAX, CheckRow, cos_text, cosine, gradient_verdict, unit

__all__ = ["PRESET_ROWS", "preset_section", "preset_steps", "exact_preset_gradient"]

PRESET_ROWS = [  # (label, preset, extra knobs)
    *((name, name, {}) for name in (*PRESETS, *LIBRARY_PRESETS)),
    ("grpo + entropy_top 0.2", "grpo", dict(token_mask="entropy_top", entropy_top_frac=0.2)),
    ("grpo + clip_cov", "grpo", dict(token_mask="clip_cov", cov_ratio=0.05)),
    ("grpo + kl_cov", "grpo", dict(token_mask="kl_cov", cov_ratio=0.05)),
    ("grpo + gdpo (rule components)", "grpo", dict(reward_norm="gdpo")),
]
"""The rows of the preset section."""

SECTION = "presets"
PARTITION_PARTS = 2


def preset_steps() -> int:
    """Progress ticks: the draws, then one per row."""
    return 1 + len(PRESET_ROWS)


def _config(ctx, name: str, extra: dict, G: int, K: int):
    return preset_config(name, **{**extra, "task": ctx.task.name, "reward": "gold", "group_size": G,
                                  "prompts_per_step": K, "epochs": 1, "minibatches": 1, "micro_batches": 1,
                                  "dynamic_sampling": False, "seed": 0})


def exact_preset_gradient(cfg, policy, sub, ref_sub, r_sub, beta: float, max_tokens: int
                          ) -> tuple[np.ndarray | None, str]:
    """(exact E[ascent direction] of `cfg`'s on-policy step on the prompts of `sub`, a note) or (None, why not).
    The note is "B->inf" when token-mean is taken in its large-batch limit (module docstring)."""
    est = adv_mod.ADVANTAGE_ESTIMATORS.lookup(cfg.advantage)
    why = ("token-level advantage" if est.level != "sequence" else "batch whitening" if cfg.whiten
           else f"token_mask={cfg.token_mask}" if cfg.token_mask != "none"
           else "GDPO batch normalisation" if cfg.reward_norm == "gdpo" else "")
    if why:
        return None, why
    agg = "seq-mean-token-mean" if SURROGATES[cfg.ratio].level == "sequence" else cfg.aggregation
    note = ""
    R = r_sub
    if cfg.kl == "reward" and beta > 0:
        R = r_sub + losses.kl_penalty_rewards(sub.logp, ref_sub.logp, sub.mask, beta, cfg.kl_estimator).sum(axis=1)
    if losses.AGGREGATIONS[agg].sequence_scale is None:      # token-mean: 1 / (B E|y|) per token as B -> inf
        mean_len = expectation(sub, sub.lengths.astype(np.float64))[1]
        h, agg_for, note = sub.lengths / mean_len, "seq-mean-token-sum", "B->inf"
    else:
        h, agg_for, mean_len = sequence_scale(sub, agg, max_tokens), agg, 1.0
    try:
        c = expected_sequence_coefficients(sub, R, cfg.advantage, cfg.group_size, agg_for, max_tokens=max_tokens,
                                           std=cfg.std, eps=cfg.adv_eps) / mean_len
    except ValueError as e:       # std-scaled advantages of a many-valued reward: no closed form
        return None, str(e).split(":")[0]
    E = sequence_weights(policy, sub, sub.probs * c / sub.n_prompts)
    if cfg.kl == "loss" and beta > 0:
        _, dk = losses.KL_ESTIMATORS.lookup(cfg.kl_estimator).fn(sub.logp, ref_sub.logp)
        w = sub.probs * h / sub.n_prompts
        E = E - beta * grad_token_weights(policy, sub, np.where(sub.mask, w[:, None] * dk, 0.0))
    return E, note


def _batch(ctx, chosen: np.ndarray, G: int, reward_of: Callable, rule_fn: Callable):
    """Every draw's sequences as one Rollout (draw d = rows d B .. (d + 1) B), its TokenPairs, and rule rewards."""
    policy, T, P = ctx.policy, ctx.task.max_new_tokens, ctx.task.prompt_len
    s = policy.sample(np.tile(np.repeat(ctx.prompts[chosen], G, axis=0), (ctx.samples, 1)), T, ctx.rng)
    pairs = TokenPairs(policy, s.tokens, s.mask)
    prompts, comps = tk.split(s.tokens, P)
    _, entropy, _ = policy.logp_forward(s.tokens, s.mask)
    ro = Rollout(tokens=s.tokens, mask=s.mask, old_logp=pairs.logp(policy), ref_logp=pairs.logp(ctx.reference),
                 entropy=entropy, reward=reward_of(prompts, comps), gold_reward=ctx.task.gold_reward(prompts, comps),
                 lengths=tk.completion_lengths(comps), truncated=tk.is_truncated(comps),
                 correct=ctx.task.is_correct(prompts, comps) if ctx.task.verifiable else None, group_size=G)
    return ro, pairs, rule_fn(s.tokens, s.mask, prompts, comps)


def _dlogp(trainer: Trainer, ro: Rollout, K: int, beta: float) -> np.ndarray:
    """d loss / d logp of every draw's batch, (samples B, L), through the trainer's code."""
    out = np.zeros(ro.tokens.shape)
    trainer.rng = np.random.default_rng(0)     # clip_cov's random tokens: the same for the split and unsplit batch
    B = K * ro.group_size
    rows = np.arange(B)
    for d in range(ro.tokens.shape[0] // B):
        part = ro.select_groups(np.arange(d * K, (d + 1) * K))
        tg = trainer.advantages(part, beta)
        keep = (token_masks.entropy_top_mask(part.entropy, tg.loss_mask, trainer.cfg.entropy_top_frac)
                if trainer.cfg.token_mask == "entropy_top" else None)
        out[d * B:(d + 1) * B] = trainer.minibatch_dlogp(part, tg, rows, beta, old_is_current=True, keep_ent=keep)[1]
    return out


def preset_section(ctx, G: int, chosen: np.ndarray, reward_of: Callable) -> list[CheckRow]:
    """One row per PRESET_ROWS entry (module docstring)."""
    policy, task = ctx.policy, ctx.task
    K, T = len(chosen), task.max_new_tokens
    rule_fn = (Trainer(_config(ctx, "grpo", {}, G, K), Models(policy, ctx.reference, None, None)).reward_fn
               if task.verifiable else (lambda tokens, mask, p, c: task.gold_reward(p, c)))
    sub = enumerate_task(policy, task, prompts=ctx.prompts[chosen])
    ref_sub = rescore(ctx.reference, sub)
    r_sub = reward_of(*sub.split())
    rule_sub = np.asarray(rule_fn(sub.tokens, sub.mask, *sub.split()), np.float64)
    dirs = {"r": grad_expectation(policy, sub, r_sub), "kl": grad_reverse_kl(policy, sub, ref_sub),
            "rule": grad_expectation(policy, sub, rule_sub)}
    ro, pairs, rule_r = _batch(ctx, chosen, G, reward_of, rule_fn)
    draws = Draws(policy, pairs, {k: pairs.directional(policy, unit(v)) for k, v in dirs.items()}, ctx.samples)
    norms = {k: float(np.linalg.norm(v)) for k, v in dirs.items()}
    ctx.tick()
    B = K * G
    consts = {"(G-1)/G": (G - 1) / G, "1/L_max": 1 / T, "(G-1)/G/L_max": (G - 1) / G / T,
              "(B-1)/B": (B - 1) / B}
    rows = []
    for label, name, extra in PRESET_ROWS:
        if extra.get("reward_norm") == "gdpo" and not task.verifiable:     # GDPO needs rule reward components
            ctx.tick()
            continue
        cfg = _config(ctx, name, extra, G, K)
        critic = init_critic(policy, None) if cfg.uses_critic else None
        trainer = Trainer(cfg, Models(policy, ctx.reference, critic, None))
        beta = cfg.beta if cfg.kl != "none" else 0.0
        gdpo = cfg.reward_norm == "gdpo"
        base = "rule" if gdpo else "r"
        target = dirs[base] - beta * dirs["kl"]
        tname = ("grad E[r_rule]" if gdpo else "grad E[r]") + (f" - {beta:g} grad KL" if beta else "")
        batch = replace(ro, reward=rule_r) if gdpo else ro
        dl = _dlogp(trainer, batch, K, beta)
        per, mean_vec = draws.add(dl, sign=-1.0)
        along = _along(per, norms, base, beta, target)
        E, note = exact_preset_gradient(cfg, policy, sub, ref_sub, rule_sub if gdpo else r_sub, beta, T)
        tn = float(np.linalg.norm(target))
        if E is None:
            row = CheckRow(SECTION, label, tname, tn, float("nan"), *mean_se(along), cos_mc=cosine(mean_vec, target))
            seen = "biased (detected)" if abs(row.z) > Z_MAX else "bias not detected"
            verdict = f"no exact E ({note}); MC: {seen}, cos(MC mean) {cos_text(row.cos_mc)}"
        else:
            row = CheckRow(SECTION, label, tname, tn, float(E @ target) / tn, *mean_se(along), cos=cosine(E, target),
                           ratio=float(np.linalg.norm(E)) / tn, cos_mc=cosine(mean_vec, target))
            verdict = (f"{note}: " if note else "") + gradient_verdict(row, None, consts)
        trainer.cfg = replace(cfg, micro_batches=PARTITION_PARTS, token_norm="local")
        diff = _dlogp(trainer, batch, K, beta) - dl
        row.verdict = verdict + "; " + _partition_verdict(diff, dl, draws, norms, base, beta, target)
        rows.append(row)
        ctx.tick()
    return rows


def _along(per: dict, norms: dict, base: str, beta: float, target: np.ndarray) -> np.ndarray:
    """Per-draw projections on unit(target) from the projections on unit(grad E[r]) and unit(grad KL)."""
    return (norms[base] * per[base] - beta * norms["kl"] * per["kl"]) / float(np.linalg.norm(target))


def _partition_verdict(diff, dl, draws, norms, base, beta, target) -> str:
    if np.abs(diff).max() <= 1e-12 * max(1.0, np.abs(dl).max()):
        return "micro-batches: invariant (every batch)"
    per, _ = draws.add(diff, sign=-1.0)
    m, se = mean_se(_along(per, norms, base, beta, target))
    z = m / se if se > 0 else float("nan")
    seen = f"shifts E[g] along the target (z {z:+.1f})" if abs(z) > Z_MAX else "E[g] shift not detected"
    return f"micro-batches (local norm): changes each batch, {seen}"
