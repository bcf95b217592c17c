"""Other libraries' option names for toyrlhf's knobs: the TRL GRPOConfig names `--set` accepts as aliases, and the
tables `toyrlhf algos --names LIBRARY` prints. Only option names and their meaning are taken from the libraries'
documentation (TRL 1.9 GRPOConfig / RLOOConfig, verl 0.7 ppo_trainer.yaml, OpenRLHF 0.11
train_ppo_ray.py flags); no code.
"""
from __future__ import annotations

from .errors import UserError

TRL_LOSS_TYPES = {"grpo": "seq-mean-token-mean", "bnpo": "token-mean", "dapo": "token-mean",
                  "dr_grpo": "seq-mean-token-sum-norm"}
"""TRL loss_type -> aggregation. bnpo and dapo differ only in how gradient-accumulation micro-batches share the
token count (local vs global); every toyrlhf minibatch is one optimizer step, so both are token-mean here."""
TRL_SCALE_REWARDS = {"group": "group", "true": "group", "batch": "batch_std", "none": "group_mean",
                     "false": "group_mean"}
"""TRL scale_rewards -> advantage (std of the group, of the batch, or none)."""

NAMES = {
    "trl": [  # (TRL GRPOConfig option, toyrlhf setting(s), how)
        ("num_generations", "group_size", "same"),
        ("epsilon", "eps_low (and eps_high unless epsilon_high is set)", "same"),
        ("epsilon_high", "eps_high", "same"),
        ("beta", "beta", "the same name (TRL's KL is kl=loss, kl_estimator=k3; beta = 0 is kl=none)"),
        ("loss_type", "aggregation", "grpo -> seq-mean-token-mean, bnpo/dapo -> token-mean, "
                                     "dr_grpo -> seq-mean-token-sum-norm"),
        ("scale_rewards", "advantage", "group -> group, batch -> batch_std, none -> group_mean"),
        ("num_iterations", "epochs", "same"),
        ("learning_rate", "lr", "same"),
        ("max_completion_length", "(the task's max_new_tokens)", "fixed by the task: an error if set"),
        ("use_bias_correction_kl", "kl_ratio_correction", "same"),
        ("normalize_advantages", "whiten", "RLOOConfig; same (batch mean 0, std 1)"),
        ("mask_truncated_completions", "mask_truncated", "same"),
        ("temperature", "temperature", "same"),
    ],
    "verl": [  # verl 0.7 ppo_trainer.yaml keys (actor = actor_rollout_ref.actor)
        ("algorithm.adv_estimator", "advantage", "gae -> gae, grpo -> group (group_mean when "
                                                  "norm_adv_by_std_in_grpo=False), rloo -> rloo, reinforce_plus_plus "
                                                  "-> reinforce_pp, reinforce_plus_plus_baseline -> "
                                                  "reinforce_pp_baseline, remax -> remax, opo -> opo, grpo_passk -> "
                                                  "passk, gpg -> gpg"),
        ("algorithm.norm_adv_by_std_in_grpo", "advantage", "true -> group, false -> group_mean"),
        ("algorithm.gamma / algorithm.lam", "gamma / lam", "same"),
        ("algorithm.use_kl_in_reward", "kl", "true -> kl=reward"),
        ("algorithm.kl_penalty", "kl_estimator", "kl/k1 -> k1, mse/k2 -> k2, low_var_kl/k3 -> k3"),
        ("algorithm.kl_ctrl.kl_coef", "beta", "with kl=reward"),
        ("algorithm.kl_ctrl.type / target_kl / horizon", "kl_target / kl_horizon", "adaptive -> kl_target set"),
        ("actor.use_kl_loss", "kl", "true -> kl=loss"),
        ("actor.kl_loss_coef", "beta", "with kl=loss"),
        ("actor.kl_loss_type", "kl_estimator", "low_var_kl -> k3, k3+ -> k3+, kl -> k1, mse -> k2"),
        ("actor.clip_ratio_low / clip_ratio_high", "eps_low / eps_high", "same"),
        ("actor.clip_ratio_c", "dual_clip_c", "with ratio=dual_clip (verl's vanilla loss always dual-clips)"),
        ("actor.policy_loss.loss_mode", "ratio", "vanilla -> dual_clip, gspo -> sequence, gpg -> token with "
                                                 "advantage=gpg, clip_cov -> token_mask=clip_cov, kl_cov -> "
                                                 "token_mask=kl_cov"),
        ("actor.policy_loss.clip_cov_ratio / clip_cov_lb / clip_cov_ub", "cov_ratio / clip_cov_lb / clip_cov_ub",
         "same"),
        ("actor.policy_loss.kl_cov_ratio / ppo_kl_coef", "cov_ratio / kl_cov_coef", "same"),
        ("actor.loss_agg_mode", "aggregation", "same names (token-mean, seq-mean-token-mean, seq-mean-token-sum, "
                                               "seq-mean-token-sum-norm)"),
        ("actor.ppo_epochs", "epochs", "same"),
        ("data.train_batch_size / actor.ppo_mini_batch_size", "minibatches", "their ratio"),
        ("data.train_batch_size", "prompts_per_step", "same (prompts per step)"),
        ("actor_rollout_ref.rollout.n", "group_size", "same"),
        ("actor_rollout_ref.rollout.temperature", "temperature", "same"),
        ("actor.entropy_coeff", "entropy_coef", "same"),
        ("actor.optim.lr / critic.optim.lr", "lr / critic_lr", "same"),
        ("actor.grad_clip", "max_grad_norm", "same"),
        ("critic.cliprange_value", "value_clip", "same"),
        ("algorithm.rollout_correction.rollout_is", "rollout_correction", "token -> token_tis, sequence -> "
                                                                          "seq_tis (cap: rollout_is_cap)"),
        ("algorithm.rollout_correction.rollout_rs", "rollout_correction", "token -> token_mask, sequence -> "
                                                                          "seq_mask, geometric -> geo_mask (bounds: "
                                                                          "rollout_mask_low / rollout_mask_high)"),
    ],
    "openrlhf": [  # OpenRLHF 0.11 openrlhf/cli/train_ppo_ray.py flags
        ("--algo.advantage.estimator", "advantage", "gae -> gae, reinforce -> reinforce_pp, rloo -> rloo, "
                                                    "reinforce_baseline -> reinforce_pp_baseline, group_norm -> "
                                                    "group, dr_grpo -> group_mean"),
        ("--algo.advantage.no_std_norm", "(advantage)", "whitening without the std: no counterpart"),
        ("--algo.advantage.gamma / --algo.advantage.lambd", "gamma / lam", "same"),
        ("--algo.kl.use_loss", "kl", "set -> kl=loss, else kl=reward"),
        ("--algo.kl.init_coef", "beta", "same"),
        ("--algo.kl.estimator", "kl_estimator", "same names (k1, k2, k3)"),
        ("--algo.kl.target / --algo.kl.horizon", "kl_target / kl_horizon", "same"),
        ("--actor.eps_clip / --actor.eps_clip_low_high", "eps_low / eps_high", "same"),
        ("--actor.dual_clip", "ratio=dual_clip, dual_clip_c", "same"),
        ("--actor.policy_loss_type", "ratio", "ppo -> token, gspo -> sequence"),
        ("--critic.value_clip", "value_clip", "same"),
        ("--train.max_epochs", "epochs", "same"),
        ("--rollout.batch_size", "prompts_per_step", "same"),
        ("--rollout.batch_size x n / --train.batch_size", "minibatches", "their ratio"),
        ("--rollout.n_samples_per_prompt", "group_size", "same"),
        ("--rollout.temperature", "temperature", "same"),
        ("--actor.entropy_coef", "entropy_coef", "same (None = 0)"),
        ("--actor.adam.lr / --critic.adam.lr", "lr / critic_lr", "same"),
        ("--actor.max_norm", "max_grad_norm", "same"),
        ("--algo.dynamic_filtering_enable", "dynamic_sampling", "same (range (0, 1) = drop all-equal groups)"),
        ("--algo.advantage.is_correction_type", "rollout_correction",
         "tis -> token_tis, icepop -> token_mask, seq-mask-tis -> geo_mask"),
        ("--algo.advantage.is_correction_threshold", "rollout_mask_low / rollout_mask_high (rollout_is_cap for "
                                                     "tis)", "OpenRLHF's default (0.5, 5); toyrlhf's (0.5, 2), cap 2"),
    ],
}
"""`toyrlhf algos --names LIBRARY`: each library option and the toyrlhf setting it maps to."""

TRL_ALIASES = tuple(name for name, *_ in NAMES["trl"] if name not in ("beta", "temperature"))   # toyrlhf names too


def resolve_aliases(overrides: dict) -> dict:
    """`overrides` with TRL option names replaced by toyrlhf settings (a toyrlhf name is kept as given; an explicit
    toyrlhf setting wins over the alias that would set it). One-line UserError for a value with no counterpart."""
    out = {k: v for k, v in overrides.items() if k not in TRL_ALIASES}
    implied: dict = {}

    def low(v):
        return str(v).strip().lower()

    for key, v in overrides.items():
        if key == "num_generations":
            implied["group_size"] = v
        elif key == "epsilon":
            implied["eps_low"] = v
            if "epsilon_high" not in overrides:
                implied["eps_high"] = v
        elif key == "epsilon_high":
            implied["eps_high"] = v
        elif key == "loss_type":
            if low(v) not in TRL_LOSS_TYPES:
                raise UserError(f"loss_type {v!r}: toyrlhf maps {', '.join(TRL_LOSS_TYPES)}")
            implied["aggregation"] = TRL_LOSS_TYPES[low(v)]
        elif key == "scale_rewards":
            if low(v) not in TRL_SCALE_REWARDS:
                raise UserError(f"scale_rewards {v!r}: expected group, batch or none")
            implied["advantage"] = TRL_SCALE_REWARDS[low(v)]
        elif key == "num_iterations":
            implied["epochs"] = v
        elif key == "learning_rate":
            implied["lr"] = v
        elif key == "use_bias_correction_kl":
            implied["kl_ratio_correction"] = v
        elif key == "normalize_advantages":
            implied["whiten"] = v
        elif key == "mask_truncated_completions":
            implied["mask_truncated"] = v
        elif key == "max_completion_length":
            raise UserError("max_completion_length: in toyrlhf the task fixes the completion length "
                            "(`toyrlhf tasks`); it cannot be set")
    return {**implied, **out}
