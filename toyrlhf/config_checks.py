"""The rules an RLConfig must satisfy, one named function each (ValueError with a one-line message).

`RLConfig.__post_init__` applies `RL_RULES` in order; the order is kept because a config that breaks several rules
reports the first one. Each rule reads its choice lists from the registry or module that uses them (the advantage,
surrogate, aggregation, KL and rollout-correction tables, the presets, the token masks); task-dependent checks are
`RLConfig.check_task`.
"""
from __future__ import annotations

import math

from .rl import losses
from .rl.advantages import ADVANTAGE_ESTIMATORS, GROUP_STDS
from .rl.advantages_baselines import REWARD_NORMS
from .rl.algorithms import ALGORITHMS, METHOD_NAMES
from .rl.preference_losses import PREFERENCE_LOSSES
from .rl.rollout import REWARD_SOURCES
from .rl.rollout_correction import ROLLOUT_CORRECTIONS
from .rl.surrogates import SURROGATES
from .rl.token_masks import TOKEN_MASKS

MAX_RESAMPLE = 1000
"""Upper bound of ``max_resample``: dynamic sampling draws at most this many extra rollouts in one step."""


def _choice(cfg, name, allowed) -> None:
    if getattr(cfg, name) not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(cfg, name)!r}")


def _at_least_one(cfg, *names) -> None:
    for name in names:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be a positive integer, got {getattr(cfg, name)}")


def method_rules(c) -> None:
    """The preset and method names; DPO needs a beta; the unified-paradigm methods take one step on their batch."""
    _choice(c, "algo", tuple(ALGORITHMS) + ("custom",))
    _choice(c, "method", METHOD_NAMES)
    _choice(c, "pref_loss", tuple(PREFERENCE_LOSSES))
    _choice(c, "rft_keep", ("auto", "correct", "best"))
    if c.method in ("dpo", "online_dpo") and not c.beta > 0:
        raise ValueError(f"method {c.method} needs beta > 0 (DPO's beta), got {c.beta}")
    if not c.sft_coef >= 0 or c.rft_samples < 1 or c.sft_demos < 1:
        raise ValueError("sft_coef must be >= 0; rft_samples and sft_demos positive integers")
    if c.method != "rl" and (c.update != "sample" or c.epochs != 1 or c.minibatches != 1):
        raise ValueError(f"method {c.method} takes one optimizer step per step on its own batch: update must "
                         f"be 'sample', epochs and minibatches 1")
    if c.method == "online_dpo" and c.group_size % 2:
        raise ValueError(f"online_dpo pairs the G completions of a prompt: group_size must be even, "
                         f"got {c.group_size}")


def registry_choices(c) -> None:
    """Estimator, KL, aggregation, surrogate, reward source and group std: names of their tables."""
    _choice(c, "advantage", ADVANTAGE_ESTIMATORS)
    _choice(c, "kl", losses.KL_PLACEMENTS)
    _choice(c, "kl_estimator", losses.KL_ESTIMATORS)
    _choice(c, "aggregation", losses.AGGREGATIONS)
    _choice(c, "ratio", SURROGATES)
    _choice(c, "reward", REWARD_SOURCES)
    _choice(c, "std", GROUP_STDS)


def batch_shape(c) -> None:
    """Positive counts; the estimator's smallest group; minibatches split by prompt group."""
    _at_least_one(c, "steps", "prompts_per_step", "group_size", "epochs", "minibatches", "checkpoint_every")
    min_group = ADVANTAGE_ESTIMATORS[c.advantage].min_group
    if c.group_size < min_group:
        raise ValueError(f"advantage {c.advantage!r} needs group_size >= {min_group}, got {c.group_size}")
    if c.minibatches > c.prompts_per_step:
        raise ValueError("minibatches cannot exceed prompts_per_step (minibatches split by prompt group)")


def optimisation_ranges(c) -> None:
    """beta >= 0, clip ranges in (0, 1), positive rates and temperature, gamma and lambda in [0, 1], seed >= 0."""
    if c.beta < 0:
        raise ValueError(f"beta must be >= 0, got {c.beta}")
    for name in ("eps_low", "eps_high"):
        if not 0 < getattr(c, name) < 1:
            raise ValueError(f"{name} must lie in (0, 1), got {getattr(c, name)}")
    for name in ("lr", "critic_lr", "temperature"):
        if not getattr(c, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(c, name)}")
    if not (0 <= c.gamma <= 1 and 0 <= c.lam <= 1):
        raise ValueError("gamma and lam must lie in [0, 1]")
    if c.seed < 0:
        raise ValueError(f"seed must be >= 0, got {c.seed}")


def adaptive_kl(c) -> None:
    """kl_target > 0 and a controller gain batch / kl_horizon <= 1."""
    if c.kl_target is None:
        return
    if not c.kl_target > 0:
        raise ValueError("kl_target must be > 0")
    # Ziegler et al. 2019 §2.2: beta <- beta (1 + K_beta e_t), e_t clipped to +-0.2, K_beta = 0.1. Here
    # K_beta = batch / kl_horizon (one update per step of batch sequences); K_beta <= 1 keeps every factor in
    # [0.8, 1.2], so beta stays positive. A larger gain flips its sign and grows it exponentially.
    if c.kl_horizon < 1:
        raise ValueError(f"kl_horizon must be a positive integer with kl_target, got {c.kl_horizon}")
    batch = c.prompts_per_step * c.group_size
    if batch > c.kl_horizon:
        raise ValueError(f"kl_horizon must be >= the batch (prompts_per_step x group_size = {batch}) so the "
                         f"adaptive KL gain batch/horizon is <= 1 (Ziegler et al. use 0.1); got "
                         f"{c.kl_horizon}")


def non_negative_knobs(c) -> None:
    """Clip norm, entropy bonus, periods and resampling counts are >= 0; a value clip is > 0 or none."""
    if c.max_grad_norm < 0 or c.entropy_coef < 0 or c.exact_every < 0 or c.ref_reset_every < 0:
        raise ValueError("max_grad_norm, entropy_coef, exact_every and ref_reset_every must be >= 0")
    if c.log_completions_every < 0:
        raise ValueError(f"log_completions_every must be >= 0, got {c.log_completions_every}")
    if c.value_clip is not None and not c.value_clip > 0:
        raise ValueError("value_clip must be > 0 or none")
    if c.max_resample < 0 or c.overlong_cache < 0:
        raise ValueError("max_resample and overlong_cache must be >= 0")


def surrogate_parameters(c) -> None:
    """Dual-clip c > 1, the ratio cap above the clip range, positive SAPO temperatures."""
    if not c.dual_clip_c > 1:
        raise ValueError(f"dual_clip_c must be > 1, got {c.dual_clip_c}")
    if not c.ratio_cap_delta > 1 + c.eps_high:
        raise ValueError(f"ratio_cap_delta must be > 1 + eps_high = {1 + c.eps_high:g}, got "
                         f"{c.ratio_cap_delta}")
    if not (c.sapo_tau_pos > 0 and c.sapo_tau_neg > 0):
        raise ValueError("sapo_tau_pos and sapo_tau_neg must be > 0")


def token_mask_rules(c) -> None:
    """A known mask, on a token-level surrogate with update=sample, with fractions in (0, 1] and sane bounds."""
    _choice(c, "token_mask", TOKEN_MASKS)
    if c.token_mask != "none" and SURROGATES[c.ratio].level != "token":
        raise ValueError(f"token_mask={c.token_mask} selects tokens; it needs a token-level surrogate, not "
                         f"ratio={c.ratio}")
    if c.token_mask != "none" and c.update == "exact":
        raise ValueError(f"token_mask={c.token_mask} needs update=sample (no exact expectation of a mask)")
    if not 0 < c.entropy_top_frac <= 1 or not 0 < c.cov_ratio <= 1:
        raise ValueError("entropy_top_frac and cov_ratio must lie in (0, 1]")
    if not c.clip_cov_lb < c.clip_cov_ub or not c.kl_cov_coef >= 0:
        raise ValueError("clip_cov_lb must be < clip_cov_ub and kl_cov_coef >= 0")


def entropy_control(c) -> None:
    """The adaptive entropy coefficient: a target >= 0, a positive step and bound, update=sample."""
    if c.entropy_target is None:
        return
    if not (c.entropy_target >= 0 and c.entropy_coef_step > 0 and c.entropy_coef_max > 0):
        raise ValueError("entropy_target must be >= 0, entropy_coef_step and entropy_coef_max > 0")
    if c.update == "exact":
        raise ValueError("entropy_target needs update=sample")


def rollout_correction(c) -> None:
    """The mismatch knobs: a positive sampler temperature, sane cap and bounds, and a correction the run's
    surrogate and trainer can apply."""
    _choice(c, "rollout_correction", ROLLOUT_CORRECTIONS)
    if c.sampler_temperature is not None and not c.sampler_temperature > 0:
        raise ValueError(f"sampler_temperature must be > 0 (or none), got {c.sampler_temperature}")
    if not c.rollout_is_cap > 0:
        raise ValueError(f"rollout_is_cap must be > 0, got {c.rollout_is_cap}")
    if not 0 <= c.rollout_mask_low < 1 < c.rollout_mask_high:
        raise ValueError(f"need 0 <= rollout_mask_low < 1 < rollout_mask_high, got {c.rollout_mask_low} and "
                         f"{c.rollout_mask_high}")
    if c.sampler_temperature is None and c.rollout_correction == "none":
        return
    what = "sampler_temperature" if c.sampler_temperature is not None else "rollout_correction"
    if c.method != "rl" or c.update != "sample":
        raise ValueError(f"{what} needs the policy-gradient trainer with update=sample (method=rl), got "
                         f"method={c.method}, update={c.update}")
    if ROLLOUT_CORRECTIONS[c.rollout_correction].level == "token" and SURROGATES[c.ratio].level != "token":
        raise ValueError(f"rollout_correction={c.rollout_correction} weights each token; ratio={c.ratio} "
                         f"is a sequence-level surrogate (use seq_is, seq_tis or seq_mask)")


def micro_batching(c) -> None:
    """Reward normalisation and token-count names; micro-batches split the minibatch by prompt group."""
    _choice(c, "reward_norm", REWARD_NORMS)
    _choice(c, "token_norm", ("global", "local"))
    _at_least_one(c, "micro_batches")
    if c.micro_batches * c.minibatches > c.prompts_per_step:
        raise ValueError("minibatches x micro_batches cannot exceed prompts_per_step (both split by prompt group)")
    if c.micro_batches > 1 and c.update == "exact":
        raise ValueError("micro_batches > 1 needs update=sample")


def gdpo(c) -> None:
    """GDPO normalises each reward component in its group: advantage=group, rule rewards only, sampled updates."""
    if c.reward_norm != "gdpo":
        return
    if c.advantage != "group":
        raise ValueError(f"reward_norm=gdpo normalises each reward component in its group; it needs "
                         f"advantage=group, got {c.advantage}")
    if c.kl == "reward" or c.overlong_penalty or c.update == "exact":
        raise ValueError("reward_norm=gdpo needs kl != reward, no overlong_penalty and update=sample")


def update_and_rewards(c) -> None:
    """The ratio-corrected KL sits in the loss; update is sample or exact; bounded resampling; finite weights."""
    if c.kl_ratio_correction and c.kl != "loss":
        raise ValueError(f"kl_ratio_correction weights the KL loss term; it needs kl=loss, got kl={c.kl}")
    if c.update not in ("sample", "exact"):
        raise ValueError(f"update must be 'sample' or 'exact', got {c.update!r}")
    if c.max_resample > MAX_RESAMPLE:
        raise ValueError(f"max_resample must be <= {MAX_RESAMPLE} (extra rollouts per step), got {c.max_resample}")
    for name, w in parse_weights(c.reward_weights).items():
        if not math.isfinite(w):
            raise ValueError(f"reward_weights: the weight of {name!r} must be a finite number, got {w}")


CRITICS = ("learned", "exact")
"""RLConfig.critic: the value model, or the exact V^pi (rl/exact_critic.py)."""


def critic_choice(c) -> None:
    """critic=exact replaces the value model, so the advantage must read one (GAE), on the sampling trainer."""
    _choice(c, "critic", CRITICS)
    if c.critic == "exact" and not ADVANTAGE_ESTIMATORS[c.advantage].needs_critic:
        raise ValueError(f"critic=exact replaces the value model, but advantage={c.advantage} ({c.algo}) reads no "
                         f"values; use ppo or advantage=gae")
    if c.critic == "exact" and (c.method != "rl" or c.update != "sample"):
        raise ValueError(f"critic=exact needs the policy-gradient trainer with update=sample, got method={c.method}, "
                         f"update={c.update}")


RL_RULES = (method_rules, registry_choices, batch_shape, optimisation_ranges, adaptive_kl, non_negative_knobs,
            surrogate_parameters, token_mask_rules, entropy_control, rollout_correction, micro_batching, gdpo,
            update_and_rewards, critic_choice)
"""Every RLConfig rule, in the order they are checked."""


def parse_weights(text: str) -> dict[str, float]:
    """'accuracy=1,format=0.2' -> {'accuracy': 1.0, 'format': 0.2} (ValueError for a malformed part)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ValueError(f"reward_weights: expected name=weight, got {part!r}")
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ValueError(f"reward_weights: {v!r} is not a number") from None
    return out
