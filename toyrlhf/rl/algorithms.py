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
    sources: str = ""
    """Library presets: where each default was read (the library's version, date and config file)."""


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
           "stay toyrlhf's (`toyrlhf algos --names trl`)",
           "TRL v1.9.0 (2026-07-21) trl/trainer/grpo_config.py: loss_type 'dapo', beta 0.0, scale_rewards 'group', "
           "epsilon 0.2, epsilon_high None (= epsilon), num_iterations 1, num_generations 8 (= toyrlhf's group_size), "
           "use_bias_correction_kl False, mask_truncated_completions False; trl/trainer/grpo_trainer.py: "
           "advantages / (std_rewards + 1e-4)."),
    Preset("trl-rloo", "TRL 1.9 RLOOConfig defaults: num_generations=2, beta=0.05 (k1 summed over the completion, "
           "subtracted from the reward), normalize_advantages=False, epsilon=0.2, num_iterations=1",
           dict(advantage="rloo", group_size=2, kl="reward", kl_estimator="k1", beta=0.05, whiten=False, epochs=1,
                minibatches=1, aggregation="seq-mean-token-sum", eps_low=0.2, eps_high=0.2, ratio="token"),
           "|o| * (R_i - R_other), R = r - 0.05 sum_t k1  (G = 2)",
           "what a TRL RLOOTrainer user gets: leave-one-out over 2 samples, sequence-level k1 in the reward",
           "TRL v1.9.0 (2026-07-21) trl/trainer/rloo_config.py: num_generations 2, beta 0.05, num_iterations 1, "
           "epsilon 0.2, epsilon_high None (= epsilon), normalize_advantages False; trl/trainer/rloo_trainer.py: "
           "rewards - beta * sum_t (old_logp - ref_logp), baseline = mean of the other samples, loss = mean over "
           "sequences of the clipped sequence term (log-probs summed over the completion -> seq-mean-token-sum). "
           "TRL clips exp(sum_t log ratio) per sequence; with num_iterations 1 and one optimizer step per generation "
           "batch the ratio is exactly 1, so the token clip here gives the same update."),
    Preset("verl-grpo", "verl 0.7 GRPO (docs/algo/grpo.md: adv_estimator=grpo, use_kl_loss=True) on the "
           "ppo_trainer.yaml defaults: kl_loss_coef=0.001, kl_loss_type=low_var_kl, loss_agg_mode=token-mean, "
           "clip_ratio=0.2, clip_ratio_c=3 (dual clip), ppo_epochs=1, train_batch_size/ppo_mini_batch_size=1024/256",
           dict(advantage="group", std="sample", adv_eps=1e-6, kl="loss", kl_estimator="k3", beta=0.001,
                whiten=False, epochs=1, minibatches=4, aggregation="token-mean", eps_low=0.2, eps_high=0.2,
                ratio="dual_clip", dual_clip_c=3.0, entropy_coef=0.0),
           "|o| * B/sum|o_j| * (r_i - mean)/(std_ddof1 + 1e-6) + 0.001 (pi_ref/pi - 1)",
           "what a verl user following its GRPO page gets: token-mean, k3 KL loss 1e-3, dual clip c = 3, "
           "4 mini-batches per rollout",
           "verl v0.7.0 (2026-01-05) verl/trainer/config/_generated_ppo_trainer.yaml: algorithm.adv_estimator gae "
           "(docs/algo/grpo.md: 'set it to grpo'), algorithm.norm_adv_by_std_in_grpo true, "
           "actor.use_kl_loss false (grpo.md: 'set it to True for GRPO'), actor.kl_loss_coef 0.001, "
           "actor.kl_loss_type low_var_kl (k3), actor.loss_agg_mode token-mean, actor.clip_ratio_low/high 0.2, "
           "actor.clip_ratio_c 3.0 with policy_loss.loss_mode vanilla (dual-clip PPO), actor.ppo_epochs 1, "
           "data.train_batch_size 1024 / actor.ppo_mini_batch_size 256 = 4 mini-batches, actor.entropy_coeff 0; "
           "verl/trainer/ppo/core_algos.py compute_grpo_outcome_advantage: torch.std (ddof 1), epsilon 1e-6. "
           "rollout.n defaults to 1 (grpo.md: set it > 1); toyrlhf's group_size is kept."),
    Preset("verl-ppo", "verl 0.7 ppo_trainer.yaml defaults: adv_estimator=gae, gamma=1, lam=1, use_kl_in_reward="
           "False, use_kl_loss=False, clip_ratio=0.2, clip_ratio_c=3, critic.cliprange_value=0.5, loss_agg_mode="
           "token-mean, ppo_epochs=1, 1024/256 mini-batches",
           dict(advantage="gae", gamma=1.0, lam=1.0, whiten=True, kl="none", beta=0.0, epochs=1, minibatches=4,
                aggregation="token-mean", eps_low=0.2, eps_high=0.2, ratio="dual_clip", dual_clip_c=3.0,
                value_clip=0.5, entropy_coef=0.0),
           "whiten(A_t), A_t = GAE(gamma = 1, lambda = 1) = r - V(s_t)",
           "what a verl PPO user gets by default: no KL at all, lambda = 1, whitened GAE, dual clip c = 3",
           "verl v0.7.0 (2026-01-05) verl/trainer/config/_generated_ppo_trainer.yaml: algorithm.adv_estimator gae, "
           "algorithm.gamma 1.0, algorithm.lam 1.0, algorithm.use_kl_in_reward false (kl_ctrl.kl_coef 0.001 unused), "
           "actor.use_kl_loss false, actor.clip_ratio_low/high 0.2, actor.clip_ratio_c 3.0 (loss_mode vanilla), "
           "critic.cliprange_value 0.5, actor.loss_agg_mode token-mean, actor.ppo_epochs 1, "
           "train_batch_size 1024 / ppo_mini_batch_size 256, entropy_coeff 0; core_algos.py "
           "compute_gae_advantage_return whitens the advantages over the batch's tokens (masked_whiten). "
           "rollout.n defaults to 1; toyrlhf's group_size is kept so batches are comparable."),
    Preset("openrlhf-reinforce-baseline", "OpenRLHF 0.11 train_ppo_ray: --algo.advantage.estimator "
           "reinforce_baseline, --algo.kl.init_coef 0.01, --algo.kl.estimator k1 (in the reward), "
           "--actor.eps_clip 0.2, --train.max_epochs 1, token-level loss, rollout/train batch 1024/128",
           dict(advantage="reinforce_pp_baseline", std="population", kl="reward", kl_estimator="k1", beta=0.01,
                whiten=False, epochs=1, minibatches=8, aggregation="token-mean", eps_low=0.2, eps_high=0.2,
                ratio="token", gamma=1.0),
           "|o| * B/sum|o_j| * whiten_tokens(R_i - mean_group R), R = r - 0.01 sum_t k1",
           "what an OpenRLHF --algo.advantage.estimator reinforce_baseline user gets (REINFORCE++-baseline)",
           "OpenRLHF v0.11.0 (2026-08-13) openrlhf/cli/train_ppo_ray.py: --algo.kl.init_coef 0.01, "
           "--algo.kl.estimator k1, --algo.kl.use_loss False (KL goes into the reward), --actor.eps_clip 0.2 "
           "(eps_clip_low_high = both), --actor.dual_clip None, --train.max_epochs 1, --rollout.batch_size 1024, "
           "--train.batch_size 128 (-> 8 optimizer steps per rollout at n_samples_per_prompt 1; toyrlhf caps "
           "minibatches at prompts_per_step), --algo.advantage.gamma 1; openrlhf/trainer/ppo_utils/"
           "experience_maker.py: rewards minus the group mean, then the returns whitened over all action tokens "
           "(population variance); openrlhf/models/loss.py: token_level_loss True (token-mean). "
           "n_samples_per_prompt defaults to 1, which reinforce_baseline refuses; toyrlhf's group_size is kept."),
    Preset("openrlhf-ppo", "OpenRLHF 0.11 train_ppo_ray defaults: --algo.advantage.estimator gae, gamma=1, "
           "lambd=1, --algo.kl.init_coef 0.01 (k1 in the reward), --actor.eps_clip 0.2, --critic.value_clip 0.5, "
           "token-level loss, advantages whitened, rollout/train batch 1024/128",
           dict(advantage="gae", gamma=1.0, lam=1.0, whiten=True, kl="reward", kl_estimator="k1", beta=0.01,
                epochs=1, minibatches=8, aggregation="token-mean", eps_low=0.2, eps_high=0.2, ratio="token",
                value_clip=0.5),
           "whiten(A_t), A_t = GAE(1, 1) on r_phi - 0.01 k1 per token",
           "what an OpenRLHF PPO user gets by default: lambda = 1, k1 KL 0.01 in the reward, whitened advantages",
           "OpenRLHF v0.11.0 (2026-08-13) openrlhf/cli/train_ppo_ray.py: --algo.advantage.estimator gae, "
           "--algo.advantage.gamma 1, --algo.advantage.lambd 1, --algo.kl.init_coef 0.01, --algo.kl.estimator k1, "
           "--algo.kl.use_loss False, --actor.eps_clip 0.2, --actor.dual_clip None, --critic.value_clip 0.5, "
           "--train.max_epochs 1, --rollout.batch_size 1024 / --train.batch_size 128 (8 steps), "
           "--actor.entropy_coef None; experience_maker.py whitens gae advantages over all action tokens; "
           "models/loss.py token_level_loss True. n_samples_per_prompt defaults to 1; toyrlhf's group_size is kept."),
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
