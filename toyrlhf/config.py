"""Every run configuration as one typed dataclass, a docstring per field (CleanRL style): the supervised stages, the
reward model and the RL run. `toyrlhf/settings.py` reads them from dicts, TOML files and `--set key=value`.

Each choice list is defined once, beside the code that reads it (the advantage, surrogate, aggregation and KL
registries in ``rl/``, the model's shapes in ``model.py``); the dataclasses only validate against them, the RL run
through the named rules of `config_checks.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

from .config_checks import MAX_RESAMPLE, RL_RULES, parse_weights
from .model import RM_HEADS, ModelConfig
from .optim import LR_SCHEDULES
from .rl.surrogates import SurrogateSettings
from .rl.advantages import ADVANTAGE_ESTIMATORS, AdvantageSettings
from .rl.algorithms import ALGORITHMS
from .tasks import get_task

__all__ = ["MAX_RESAMPLE", "PretrainConfig", "SFTConfig", "Pipeline", "RMConfig", "RLConfig", "parse_weights",
           "preset_config"]


@dataclass
class PretrainConfig:
    """Pretraining: the model's shape and next-token training on the task's synthetic corpus."""

    task: str = "pref"
    """Task name (`toyrlhf tasks`)."""
    seed: int = 0
    """Seeds the corpus, the initial weights and the minibatch order."""
    steps: int = 1500
    """Adam steps."""
    batch_size: int = 64
    """Sequences per step."""
    lr: float = 3e-3
    """Adam learning rate."""
    corpus_size: int = 20_000
    """Sequences in the (fixed) training corpus."""
    arch: str = "mlp"
    """'mlp' or 'bigram'."""
    context: int = 4
    """Tokens the MLP sees."""
    embed: int = 16
    """Embedding width."""
    hidden: int = 128
    """Hidden (feature) width."""

    def __post_init__(self):
        _positive(self, "steps", "batch_size", "corpus_size")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def model_config(self) -> ModelConfig:
        """The policy's shape on this task (ValueError for a shape ModelConfig refuses)."""
        return ModelConfig(vocab_size=get_task(self.task).vocab_size, arch=self.arch, context=self.context,
                           embed=self.embed, hidden=self.hidden)


@dataclass
class SFTConfig:
    """Supervised fine-tuning on the task's demonstrations, loss on completion tokens only."""

    steps: int = 150
    """Adam steps."""
    batch_size: int = 32
    """Demonstrations per step."""
    lr: float = 1e-3
    """Adam learning rate."""
    demos: int = 64
    """Number of demonstrations (drawn once, seeded). Few on purpose: the SFT model should leave RL headroom
    (measured SFT gold reward, pref 0.67 / arith 0.92 of 1.2 / length 0.80; with 512 demonstrations arith
    reaches 1.16 and RL has little left to do)."""

    def __post_init__(self):
        _positive(self, "steps", "batch_size", "demos")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def _positive(cfg, *names):
    for n in names:
        if getattr(cfg, n) < 1:
            raise ValueError(f"{n} must be a positive integer, got {getattr(cfg, n)}")



@dataclass
class Pipeline:
    """The upstream stages an RL run (or `toyrlhf rm`) stands on, identified by their full configs."""

    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)


@dataclass
class RMConfig:
    """Reward-model training: preference data from the SFT policy, Bradley-Terry loss, Adam."""

    pairs: int = 64_000
    """Labelled comparison groups, train + held-out (with k = 2, preference pairs)."""
    head: str = "sequence"
    """'sequence': one window over the whole prompt + completion, read at the last token (the default);
    'mean': the SFT model's 4-token windows, mean-pooled over the completion (cannot represent pref's gold reward)."""
    k: int = 2
    """Completions ranked per prompt: 2 = Bradley-Terry pairs, > 2 = Plackett-Luce rankings (C(k,2) pairs each)."""
    tau: float = 1.0
    """Label noise: P(a > b) = sigma((r*(a) - r*(b)) / tau); 0 = the noiseless gold ordering."""
    heldout_frac: float = 0.2
    """Share of the task's prompts (and of the groups) held out for evaluation; split by prompt."""
    steps: int = 4000
    """Adam steps (no early stopping)."""
    batch_size: int = 128
    """Groups per step (each group is one batch element, all its C(k,2) pairs weighted 1/C(k,2))."""
    lr: float = 2e-3
    """Adam learning rate (the peak of the schedule)."""
    lr_schedule: str = "cosine"
    """'cosine' (anneal to 0 over the steps) or 'constant'."""
    margin: float = 0.0
    """m in -log sigma(r_w - r_l - m) (Llama 2's margin; 0 = plain Bradley-Terry)."""
    weight_decay: float = 0.3
    """Decoupled (AdamW) weight decay on the reward model's parameters (trunk + reward head), per unit lr:
    each step multiplies them by 1 - lr_t * weight_decay (lr_t the scheduled rate); 0 = none."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip per step (0 = no clipping)."""
    temperature: float = 1.0
    """Sampling temperature of the SFT policy when drawing the completions to compare."""
    norm_samples: int = 4096
    """Fresh SFT samples used to normalise the scores to mean 0, std 1."""
    eval_every: int = 200
    """Evaluate on the held-out pairs (BT loss, expected accuracy) every this many steps, for the learning curves;
    0 = only after training."""
    exact: bool = True
    """Also report the exact population figures (ceiling and expected accuracy over every pair of distinct
    completions) by enumerating each side's prompts: k = 2 and tasks the exact engine can list only."""

    def __post_init__(self):
        for name in ("pairs", "steps", "batch_size", "norm_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.pairs < 2:
            raise ValueError(f"pairs must be at least 2 (one train, one held-out), got {self.pairs}")
        if self.head not in RM_HEADS:
            raise ValueError(f"unknown reward-model head {self.head!r}; choose from {', '.join(RM_HEADS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose from {', '.join(LR_SCHEDULES)}")
        if self.k < 2:
            raise ValueError(f"k must be at least 2, got {self.k}")
        if not self.tau >= 0:
            raise ValueError(f"tau must be >= 0, got {self.tau}")
        if not 0.0 < self.heldout_frac < 1.0:
            raise ValueError(f"heldout_frac must lie strictly between 0 and 1, got {self.heldout_frac}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not self.max_grad_norm >= 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")
        if self.norm_samples < 2:
            raise ValueError(f"norm_samples must be at least 2, got {self.norm_samples}")


@dataclass
class RLConfig:
    """Everything a `toyrlhf run` does; config.json holds the resolved copy, `--set key=value` overrides any field."""

    algo: str = "grpo"
    """Preset the knobs below were taken from (`toyrlhf algos`)."""
    task: str = "pref"
    """Task name (`toyrlhf tasks`); the pretraining, SFT and reward-model stages use the same task."""
    seed: int = 0
    """Seeds the upstream stages and the run (rollouts, minibatch order)."""
    steps: int = 500
    """RL steps (one rollout each)."""
    prompts_per_step: int = 16
    """Prompts sampled per step."""
    group_size: int = 8
    """G: completions per prompt (GRPO's group; PPO also samples G per prompt so batches are comparable)."""
    temperature: float = 1.0
    """Sampling temperature; log-probs are taken from the same temperature-scaled logits."""
    sampler_temperature: Optional[float] = None
    """Rollout-training mismatch: the sampler draws from pi at this temperature (as a rollout engine with other
    numerics or sampling settings would) while the trainer's pi stays at `temperature`; none = no mismatch."""
    rollout_correction: str = "none"
    """How the trainer corrects for the sampler's mu != pi: a per-token weight c_t on the policy-gradient term
    (rl/rollout_correction.py ROLLOUT_CORRECTIONS): none, seq_is, token_tis, seq_tis, token_mask (IcePop),
    seq_mask (MIS), geo_mask."""
    rollout_is_cap: float = 2.0
    """C of the truncated corrections, min(w, C) (token_tis, seq_tis, geo_mask; verl rollout_is_threshold)."""
    rollout_mask_low: float = 0.5
    """lo of the masked corrections: a token / sequence is kept while lo <= ratio <= hi (token_mask, seq_mask,
    geo_mask)."""
    rollout_mask_high: float = 2.0
    """hi of the masked corrections."""
    lr: float = 1e-3
    """Policy Adam learning rate (2e-3 collapsed the entropy within 50 steps on pref; 1e-3 keeps the curves readable)."""
    critic_lr: float = 5e-3
    """Critic (value model) Adam learning rate (PPO)."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip (0 disables)."""
    epochs: int = 1
    """Passes over each rollout (PPO epochs; GRPO's mu)."""
    minibatches: int = 1
    """Optimizer steps per epoch; the rollout is split by prompt groups."""
    advantage: str = "group"
    """gae | group | group_mean | rloo | reinforce | process."""
    std: str = "population"
    """Group std for advantage=group/process: 'population' (numpy's ddof=0) or 'sample' (torch's ddof=1)."""
    adv_eps: float = 1e-6
    """epsilon in (r - mean) / (std + eps)."""
    whiten: bool = False
    """Whiten advantages over the batch (mean 0, std 1), as PPO implementations do."""
    kl: str = "loss"
    """Where the KL to the reference goes: 'reward' (per-token penalty), 'loss' (a term beta*KL), or 'none'."""
    kl_estimator: str = "k3"
    """k1 | k2 | k3 (Schulman 2020) | k3+ (verl: value k3, gradient k2) for the KL term."""
    kl_ratio_correction: bool = False
    """kl=loss: weight each token's KL by the (not detached) ratio pi/pi_old (DeepSeek-V3.2's unbiased KL; TRL
    use_bias_correction_kl)."""
    beta: float = 0.04
    """KL coefficient (initial value when kl_target is set)."""
    kl_target: Optional[float] = None
    """If set, Ziegler et al.'s adaptive controller steers beta toward this KL (nats per sequence)."""
    kl_horizon: int = 10_000
    """Adaptive controller horizon (K_beta = batch / horizon)."""
    aggregation: str = "seq-mean-token-mean"
    """How token losses are averaged: seq-mean-token-mean | token-mean | seq-mean-token-sum-norm | seq-mean-token-sum."""
    eps_low: float = 0.2
    """Clip range below 1."""
    eps_high: float = 0.2
    """Clip range above 1 (DAPO's clip-higher raises it)."""
    ratio: str = "token"
    """Policy surrogate (`toyrlhf algos`): 'token' (PPO/GRPO clip), 'sequence' (GSPO's length-normalised ratio),
    'dual_clip', 'ratio_cap', 'cispo', 'sapo', 'gmpo' (rl/surrogates.py)."""
    dual_clip_c: float = 3.0
    """ratio=dual_clip: the bound c A on a negative advantage's objective (Ye et al. 2019: c = 3; > 1)."""
    ratio_cap_delta: float = 4.0
    """ratio=ratio_cap: INTELLECT-2's cap delta on the ratio of negative-advantage tokens (> 1 + eps_high)."""
    sapo_tau_pos: float = 1.0
    """ratio=sapo: the soft gate's temperature for positive advantages (> 0)."""
    sapo_tau_neg: float = 1.05
    """ratio=sapo: the soft gate's temperature for negative advantages (> 0)."""
    gamma: float = 1.0
    """Discount for GAE."""
    lam: float = 0.95
    """GAE lambda."""
    value_clip: Optional[float] = 0.2
    """Value-loss clipping range (None: no clipping)."""
    entropy_coef: float = 0.0
    """Entropy bonus coefficient."""
    entropy_target: Optional[float] = None
    """If set, entropy_coef adapts toward this per-token entropy (nats) after each step: c <- clip(c + entropy_coef_step
    * sign(target - H), 0, entropy_coef_max) (He et al. 2025, Skywork-OR1 adaptive entropy control); entropy_coef is
    the starting value."""
    entropy_coef_step: float = 1e-3
    """entropy_target: the coefficient's change per step (> 0)."""
    entropy_coef_max: float = 0.1
    """entropy_target: upper bound of the adaptive coefficient (> 0)."""
    token_mask: str = "none"
    """Which tokens get policy-gradient loss (rl/token_masks.py): 'none' (all); 'entropy_top' (the top
    entropy_top_frac of the batch's tokens by pi_old's entropy; Wang et al. 2025, Beyond the 80/20 rule); 'clip_cov'
    (gradient removed from cov_ratio * N random tokens with clip_cov_lb < Cov(A, logp) < clip_cov_ub; Cui et al.
    2025); 'kl_cov' (kl_cov_coef |logp - logp_old| on the top cov_ratio * N tokens by Cov; Cui et al. 2025).
    Token-level surrogates only."""
    entropy_top_frac: float = 0.2
    """token_mask=entropy_top: rho, the fraction of highest-entropy tokens kept (Wang et al. 2025: 0.2)."""
    cov_ratio: float = 2e-4
    """token_mask=clip_cov / kl_cov: r, the fraction of tokens selected (at least one; verl clip_cov_ratio /
    kl_cov_ratio 2e-4)."""
    clip_cov_lb: float = 1.0
    """token_mask=clip_cov: omega_low, the covariance a token must exceed to be eligible (verl 1.0)."""
    clip_cov_ub: float = 5.0
    """token_mask=clip_cov: omega_high, the covariance bound above which tokens are not eligible (verl 5.0)."""
    kl_cov_coef: float = 0.1
    """token_mask=kl_cov: beta of the |logp - logp_old| penalty (verl ppo_kl_coef 0.1)."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal and sample more prompts to refill the batch."""
    max_resample: int = 4
    """Extra rollouts dynamic sampling may draw per step before it settles for fewer groups."""
    mask_truncated: bool = False
    """Give no loss to completions cut at max_new_tokens (overlong filtering)."""
    overlong_penalty: bool = False
    """DAPO's soft overlong punishment added to the reward."""
    overlong_cache: int = 2
    """L_cache of the soft overlong punishment (tokens before the limit where the penalty ramps)."""
    ref_reset_every: int = 0
    """Replace the reference by the current policy every N steps (R1: 400; 0: never)."""
    reward: str = "auto"
    """Reward source: 'rm' (the learned reward model), 'gold' (the task's rule / gold reward), 'auto' (rm for
    preference tasks, the rule for verifiable ones)."""
    reward_weights: str = ""
    """Weights of the task's reward components for rule rewards, e.g. 'accuracy=1,format=0.2' (default: the task's)."""
    reward_norm: str = "sum"
    """Several rule-reward components (reward_weights): 'sum' (weighted sum, then the advantage estimator) or 'gdpo'
    (each component group-normalised, then weighted and summed, then batch-normalised; Liu et al. 2026, GDPO).
    gdpo needs advantage=group, rule rewards, no KL in the reward and no overlong penalty."""
    micro_batches: int = 1
    """Gradient accumulation: each minibatch's gradient is the sum over this many micro-batches (split by prompt
    group), then one clip and Adam step."""
    token_norm: str = "global"
    """With micro_batches > 1, how token-mean / seq-mean counts are taken: 'global' (the whole minibatch's token and
    sequence counts: TRL loss_type='dapo', equal to the unsplit minibatch) or 'local' (each micro-batch's own
    counts, then the mean over micro-batches: TRL 'bnpo')."""
    exact_every: int = 0
    """With --exact: compute exact_* metrics by enumeration every N steps."""
    update: str = "sample"
    """'sample': each step's update is estimated from its rollouts; 'exact': its exact expectation over rollouts,
    the infinite-batch limit (on-policy settings, mu = 1, on tasks the exact engine enumerates; rl/exact_update.py)."""
    critic: str = "learned"
    """The values GAE reads (advantage=gae, PPO): 'learned' (the value model, trained on the lambda-returns) or
    'exact' (V^pi(s_t) of the sampling policy by enumeration, no value model: rl/exact_critic.py)."""
    method: str = "rl"
    """Trainer: 'rl' (policy gradient, the presets above) or a method of the unified paradigm (Shao et al. 2024
    §5.2.1; `toyrlhf algos`): 'sft', 'rft', 'online_rft' (rl/rft.py), 'dpo', 'online_dpo' (rl/dpo.py). The method
    names are also names of `algo` (rl/algorithms.py METHODS), so `toyrlhf run dpo` sets method=dpo."""
    pref_loss: str = "sigmoid"
    """dpo / online_dpo: the pair loss, 'sigmoid' (DPO), 'ipo' (IPO) or 'hinge' (SLiC); beta is its beta."""
    sft_coef: float = 0.0
    """dpo / online_dpo: alpha of the SFT regulariser alpha * NLL(y_w) / |y_w| (RPO, Pang et al. 2024); 0 = none."""
    rft_samples: int = 16
    """rft: groups of group_size completions sampled per prompt from the SFT model, once, before training; the
    keep rule (rft_keep) is applied to each group as online_rft applies it to its groups."""
    rft_keep: str = "auto"
    """rft / online_rft: which samples get the NLL loss: 'correct' (the rule's verdict), 'best' (the highest reward
    of each prompt's k, or G online; ties to the first), 'auto' (correct on verifiable tasks, best otherwise)."""
    sft_demos: int = 4096
    """sft: fresh demonstrations drawn (once, seeded) for continued supervised fine-tuning."""
    checkpoint_every: int = 50
    """Write checkpoint.npz every N steps (and at the end or on interrupt)."""
    log_completions_every: int = 0
    """Every N steps, append a few of the step's sampled completions (one per prompt, at most 8), decoded, with their
    reward and gold reward, to completions.jsonl in the run folder (TRL's log_completions); 0 = never."""
    tensorboard: bool = False
    """Also write each step's metrics as TensorBoard scalars to RUN_DIR/tb (pip install 'toyrlhf[tensorboard]')."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    """Upstream: pretraining (its task and seed follow the run's)."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Upstream: supervised fine-tuning."""
    rm: RMConfig = field(default_factory=RMConfig)
    """Upstream: reward model."""

    def __post_init__(self):
        for rule in RL_RULES:
            rule(self)
        # one task and one seed for the whole pipeline
        self.pretrain.task, self.pretrain.seed = self.task, self.seed

    @property
    def uses_critic(self) -> bool:
        """Whether the run trains a value model (critic=exact reads exact values instead)."""
        return ADVANTAGE_ESTIMATORS[self.advantage].needs_critic and self.critic == "learned"

    @property
    def advantage_settings(self) -> AdvantageSettings:
        return AdvantageSettings(std=self.std, eps=self.adv_eps, gamma=self.gamma, lam=self.lam)

    @property
    def surrogate_settings(self) -> SurrogateSettings:
        return SurrogateSettings(dual_clip_c=self.dual_clip_c, ratio_cap_delta=self.ratio_cap_delta,
                                 sapo_tau_pos=self.sapo_tau_pos, sapo_tau_neg=self.sapo_tau_neg)

    def check_task(self) -> None:
        """Settings that are only wrong for the run's task (ValueError), checked before anything is built."""
        task = get_task(self.task)
        unknown = sorted(set(parse_weights(self.reward_weights)) - set(task.reward_weights))
        if unknown:
            raise ValueError(f"reward_weights: task {task.name!r} has no component {unknown[0]!r}; "
                             f"it has {', '.join(task.reward_weights)}")
        if self.method in ("rft", "online_rft") and self.rft_keep == "correct" and not task.verifiable:
            raise ValueError(f"rft_keep=correct needs a verifiable task; {task.name!r} has no rule (use best)")
        if self.reward_norm == "gdpo" and (self.reward == "rm" or (self.reward == "auto" and not task.verifiable)):
            raise ValueError(f"reward_norm=gdpo needs rule reward components (reward=gold); task {task.name!r} "
                             f"uses the reward model here")
        if ADVANTAGE_ESTIMATORS[self.advantage].needs_step_rewards and not task.has_step_rewards:
            raise ValueError(f"task {task.name!r} gives no step rewards; advantage={self.advantage} needs them")
        try:
            self.pretrain.model_config()
        except ValueError as e:
            raise ValueError(f"pretrain: {str(e).splitlines()[0]}") from None


def preset_config(algo: str, **overrides) -> RLConfig:
    """RLConfig of a preset with extra settings on top (raises ValueError for an unknown preset)."""
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algo!r}; choose from {', '.join(ALGORITHMS)}")
    return RLConfig(algo=algo, **{**ALGORITHMS[algo].knobs, **overrides})


def _check_presets() -> None:
    """A preset may only set knobs RLConfig has: a misspelt knob would otherwise be silently dropped."""
    known = {f.name for f in fields(RLConfig)}
    for p in ALGORITHMS.values():
        unknown = sorted(set(p.knobs) - known)
        if unknown:
            raise TypeError(f"preset {p.name!r} sets unknown knob(s) {', '.join(unknown)}")


_check_presets()
