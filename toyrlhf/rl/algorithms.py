"""The presets: each algorithm is a setting of the orthogonal knobs of ``toyrlhf.config.RLConfig``.

Gradient coefficients are written in the notation of DeepSeekMath's unified paradigm (Shao et al. 2024, §5.2.1,
eq. 5 and Table 10):  grad J = E[(1/|o|) sum_t GC(q, o, t) grad log pi_theta(o_t | q, o_<t)]  (on-policy, before clipping).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    paper: str
    knobs: dict
    gradient_coefficient: str
    note: str


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("ppo", "Schulman et al. 2017; Ouyang et al. 2022 (InstructGPT)",
           dict(advantage="gae", kl="reward", kl_estimator="k1", beta=0.05, whiten=True, epochs=4, minibatches=4,
                aggregation="token-mean", eps_low=0.2, eps_high=0.2, lam=0.95, gamma=1.0, value_clip=0.2),
           "A_t (GAE on r_phi - beta*k1 per token)",
           "critic + GAE; KL to the reference folded into the per-token reward"),
    Preset("grpo", "Shao et al. 2024 (DeepSeekMath) eq. 3; Guo et al. 2025 (DeepSeek-R1)",
           dict(advantage="group", kl="loss", kl_estimator="k3", beta=0.04, whiten=False, epochs=1, minibatches=1,
                aggregation="seq-mean-token-mean", eps_low=0.2, eps_high=0.2),
           "(r_i - mean)/std + beta*(pi_ref/pi - 1)",
           "no critic: group-relative advantage; k3 KL inside the loss"),
    Preset("dr_grpo", "Liu et al. 2025 (Dr. GRPO) §3.2",
           dict(advantage="group_mean", kl="none", beta=0.0, whiten=False, epochs=1, minibatches=1,
                aggregation="seq-mean-token-sum-norm", eps_low=0.2, eps_high=0.2),
           "|o|/L_max * (r_i - mean)",
           "GRPO without the 1/|o_i| and the std: no length or difficulty bias"),
    Preset("dapo", "Yu et al. 2025 (DAPO) eq. 8-13",
           dict(advantage="group", kl="none", beta=0.0, whiten=False, epochs=1, minibatches=1,
                aggregation="token-mean", eps_low=0.2, eps_high=0.28, dynamic_sampling=True,
                overlong_penalty=True),
           "|o| * B/sum|o_j| * (r_i - mean)/std",
           "clip-higher, token-mean, dynamic sampling, soft overlong punishment, no KL"),
    Preset("rloo", "Ahmadian et al. 2024 (Back to Basics)",
           dict(advantage="rloo", kl="reward", kl_estimator="k1", beta=0.05, whiten=False, epochs=1,
                minibatches=1, aggregation="seq-mean-token-sum"),
           "|o| * (R_i - mean_{j!=i} R_j), R = r - beta*sum_t k1",
           "leave-one-out baseline, whole completion as one action"),
    Preset("reinforce", "Williams 1992, with a batch-mean baseline",
           dict(advantage="reinforce", kl="reward", kl_estimator="k1", beta=0.05, whiten=False, epochs=1,
                minibatches=1, aggregation="seq-mean-token-sum"),
           "|o| * (R_i - mean_batch R), R = r - beta*sum_t k1",
           "plain policy gradient, one baseline for the whole batch"),
    Preset("gspo", "Zheng et al. 2025 (GSPO) eq. 5-7",
           dict(advantage="group", kl="none", beta=0.0, whiten=False, epochs=1, minibatches=4,
                aggregation="seq-mean-token-mean", ratio="sequence", eps_low=3e-4, eps_high=4e-4),
           "s_i * (r_i - mean)/std  (one length-normalised ratio per sequence)",
           "sequence-level ratio and clipping; 4 minibatches so the ratio leaves 1"),
]}

KNOB_COLUMNS = ("advantage", "kl", "kl_estimator", "beta", "aggregation", "eps_low", "eps_high", "ratio",
                "epochs", "minibatches", "whiten", "dynamic_sampling")

