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



# ------------------------------------------------------------------------------------------------ unified paradigm
METHOD_NAMES = ("rl", "sft", "rft", "online_rft", "dpo", "online_dpo")
"""The knob ``method``: 'rl' is the policy-gradient trainer (rl/trainer.py) every preset above uses; the others are
the supervised and direct-preference trainers of rl/rft.py and rl/dpo.py (registry: rl/methods.py)."""

METHODS: dict[str, Preset] = {p.name: p for p in [
    Preset("sft", "Ouyang et al. 2022 (InstructGPT) SFT; Shao et al. 2024 Table 10",
           dict(method="sft", kl="none", beta=0.0),
           "1", "continued SFT on fresh demonstrations of the task (the SFT stage's data source, more of it)"),
    Preset("rft", "Yuan et al. 2023 (RFT); Shao et al. 2024 §5.2.1",
           dict(method="rft", kl="none", beta=0.0),
           "I(o)  (1 on kept samples of pi_sft: correct / best of k)",
           "offline rejection sampling: k samples per prompt from the SFT model once, NLL on the kept ones"),
    Preset("online_rft", "Shao et al. 2024 §5.2.1 (Online RFT)",
           dict(method="online_rft", kl="none", beta=0.0),
           "I(o)  (1 on kept samples of pi_theta)",
           "rejection sampling from the current policy every step, NLL on the kept samples"),
    Preset("dpo", "Rafailov et al. 2023 (DPO); Azar et al. 2023 (IPO); Zhao et al. 2023 (SLiC); Pang et al. 2024",
           dict(method="dpo", kl="none", beta=0.1),
           "+-sigma(beta log pi(o-)/pi_ref(o-) - beta log pi(o+)/pi_ref(o+))  (o+: +, o-: -)",
           "offline: the reward-model stage's preference pairs, reference = SFT model"),
    Preset("online_dpo", "Guo et al. 2024 (online AI feedback); Xu et al. 2024",
           dict(method="online_dpo", kl="none", beta=0.1),
           "as DPO, on pairs of pi_theta's samples labelled by the reward",
           "pairs sampled from the current policy, labelled by the RM (or the rule on verifiable tasks)"),
]}

# ------------------------------------------------------------------------------------------------ library defaults
LIBRARY_PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("trl-grpo", "TRL 1.9 GRPOConfig defaults: loss_type='dapo', beta=0.0, scale_rewards='group', "
           "epsilon=0.2 (epsilon_high = epsilon), num_iterations=1; group std by torch.std (ddof 1) + 1e-4",
           dict(advantage="group", std="sample", adv_eps=1e-4, kl="none", beta=0.0, whiten=False, epochs=1,
                minibatches=1, aggregation="token-mean", eps_low=0.2, eps_high=0.2, ratio="token"),
           "|o| * B/sum|o_j| * (r_i - mean)/(std_ddof1 + 1e-4)",
           "what a TRL GRPOTrainer user gets by default (DAPO's token-mean loss, no KL); learning rate and lengths "
           "stay toyrlhf's (`toyrlhf algos --names trl`)"),
]}
"""Settings reproducing a library's defaults, named after the library (its version and option names in `paper`)."""

ALGORITHMS: dict[str, Preset] = {**PRESETS, **METHODS, **LIBRARY_PRESETS}
"""Every name `toyrlhf run` / `compare` / `toyrlhf.train` accept: the RL presets, then the methods."""


@dataclass(frozen=True)
class ParadigmRow:
    """One row of DeepSeekMath's Table 10 (Shao et al. 2024, §5.2.1): data source, reward function and gradient
    coefficient GC in  grad J = E_{(q, o) ~ D}[(1/|o|) sum_t GC(q, o, t, pi_rf) grad log pi_theta(o_t | q, o_<t)]."""
    name: str
    data: str
    reward: str
    coefficient: str


PARADIGM: tuple[ParadigmRow, ...] = (
    ParadigmRow("sft", "offline: q, o ~ P_sft(Q, O)", "-", "1"),
    ParadigmRow("rft", "offline: q ~ P_sft(Q), o ~ pi_sft(O|q)", "rule (verifiable) / model (best of k)", "I(o)"),
    ParadigmRow("online_rft", "online: q ~ P_sft(Q), o ~ pi_theta(O|q)", "rule / model (best of G)", "I(o)"),
    ParadigmRow("dpo", "offline: q ~ P_sft(Q), o+, o- ~ pi_sft(O|q)", "pairs (BT labels of the RM stage)",
                "sigma(beta log pi(o-)/pi_ref(o-) - beta log pi(o+)/pi_ref(o+)), sign -1 on o-"),
    ParadigmRow("online_dpo", "online: q ~ P_sft(Q), o+, o- ~ pi_theta(O|q)", "model (pref) / rule (verifiable)",
                "as DPO"),
    ParadigmRow("ppo", "online: q ~ P_sft(Q), o ~ pi_theta(O|q)", "model / rule", "A_t (GAE)"),
    ParadigmRow("grpo", "online: q ~ P_sft(Q), {o_i} ~ pi_theta(O|q)", "model / rule",
                "A_i,t + beta (pi_ref/pi_theta - 1)"),
    *(ParadigmRow(p.name, "online: q ~ P_sft(Q), {o_i} ~ pi_theta(O|q)", "model / rule", p.gradient_coefficient)
      for p in PRESETS.values() if p.name not in ("ppo", "grpo")),
)
"""SFT, RFT, online RFT, DPO, online DPO, PPO, GRPO (the rows of Table 10), then the other presets."""
