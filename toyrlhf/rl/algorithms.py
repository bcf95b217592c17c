"""The RL configuration (one typed dataclass) and the presets: each algorithm is a setting of orthogonal knobs.

Gradient coefficients are written in the notation of DeepSeekMath's unified paradigm (Shao et al. 2024, §5.2.1,
eq. 5 and Table 10):  grad J = E[(1/|o|) sum_t GC(q, o, t) grad log pi_theta(o_t | q, o_<t)]  (on-policy, before clipping).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

from ..reward_model import RMConfig
from ..stages import PretrainConfig, SFTConfig

ADVANTAGES = ("gae", "group", "group_mean", "rloo", "reinforce", "process")
KL_MODES = ("reward", "loss", "none")
KL_ESTIMATORS_ALLOWED = ("k1", "k2", "k3")
AGGREGATION_MODES = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm", "seq-mean-token-sum")
RATIOS = ("token", "sequence")
REWARD_SOURCES = ("auto", "rm", "gold")


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
    """k1 | k2 | k3 (Schulman 2020) for the KL term."""
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
    """Importance ratio per 'token' (PPO/GRPO) or per 'sequence' (GSPO's length-normalised)."""
    gamma: float = 1.0
    """Discount for GAE."""
    lam: float = 0.95
    """GAE lambda."""
    value_clip: Optional[float] = 0.2
    """Value-loss clipping range (None: no clipping)."""
    entropy_coef: float = 0.0
    """Entropy bonus coefficient."""
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
    exact_every: int = 0
    """With --exact: compute exact_* metrics by enumeration every N steps."""
    checkpoint_every: int = 50
    """Write checkpoint.npz every N steps (and at the end or on interrupt)."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    """Upstream: pretraining (its task and seed follow the run's)."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Upstream: supervised fine-tuning."""
    rm: RMConfig = field(default_factory=RMConfig)
    """Upstream: reward model."""

    def __post_init__(self):
        def choice(name, allowed):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")

        choice("algo", tuple(PRESETS) + ("custom",))
        choice("advantage", ADVANTAGES)
        choice("kl", KL_MODES)
        choice("kl_estimator", KL_ESTIMATORS_ALLOWED)
        choice("aggregation", AGGREGATION_MODES)
        choice("ratio", RATIOS)
        choice("reward", REWARD_SOURCES)
        choice("std", ("population", "sample"))
        for name in ("steps", "prompts_per_step", "group_size", "epochs", "minibatches", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.advantage in ("group", "group_mean", "rloo", "process") and self.group_size < 2:
            raise ValueError(f"advantage {self.advantage!r} needs group_size >= 2, got {self.group_size}")
        if self.minibatches > self.prompts_per_step:
            raise ValueError("minibatches cannot exceed prompts_per_step (minibatches split by prompt group)")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        for name in ("eps_low", "eps_high"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in (0, 1), got {getattr(self, name)}")
        for name in ("lr", "critic_lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError("gamma and lam must lie in [0, 1]")
        if self.kl_target is not None and not self.kl_target > 0:
            raise ValueError("kl_target must be > 0")
        if self.max_grad_norm < 0 or self.entropy_coef < 0 or self.exact_every < 0 or self.ref_reset_every < 0:
            raise ValueError("max_grad_norm, entropy_coef, exact_every and ref_reset_every must be >= 0")
        if self.value_clip is not None and not self.value_clip > 0:
            raise ValueError("value_clip must be > 0 or none")
        if self.max_resample < 0 or self.overlong_cache < 0:
            raise ValueError("max_resample and overlong_cache must be >= 0")
        parse_weights(self.reward_weights)
        # one task and one seed for the whole pipeline
        self.pretrain.task, self.pretrain.seed = self.task, self.seed

    @property
    def uses_critic(self) -> bool:
        return self.advantage == "gae"


def parse_weights(text: str) -> dict[str, float]:
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


def preset_config(algo: str, **overrides) -> RLConfig:
    """RLConfig of a preset with extra settings on top (raises ValueError for an unknown preset)."""
    if algo not in PRESETS:
        raise ValueError(f"unknown algorithm {algo!r}; choose from {', '.join(PRESETS)}")
    defaults = {f.name for f in fields(RLConfig)}
    knobs = {k: v for k, v in PRESETS[algo].knobs.items() if k in defaults}
    return RLConfig(algo=algo, **{**knobs, **overrides})
