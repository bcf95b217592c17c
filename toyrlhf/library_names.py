"""Other libraries' option names for toyrlhf's knobs: the TRL GRPOConfig names `--set` accepts as aliases, and the
tables `toyrlhf algos --names LIBRARY` prints. Only option names and their meaning are taken from the libraries'
documentation (TRL 1.9 GRPOConfig); no code.
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
    ],
}
"""`toyrlhf algos --names LIBRARY`: each library option and the toyrlhf setting it maps to."""

TRL_ALIASES = tuple(name for name, *_ in NAMES["trl"] if name != "beta")   # beta is toyrlhf's own name too


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
        elif key == "max_completion_length":
            raise UserError("max_completion_length: in toyrlhf the task fixes the completion length "
                            "(`toyrlhf tasks`); it cannot be set")
    return {**implied, **out}
