"""Up-front estimates of the time and memory a run or a stage needs, so that work that cannot finish in a sane
bound, or cannot fit in memory, is refused with one line (exit 2) before anything is built or written.

Both estimates are deliberately *lower bounds*: the time assumes a fast rate (``FLOPS_PER_S``, several times
what the numpy kernels measure on one core for these tiny matrices) and the memory counts only the parameters, the
optimizer state and the largest activation arrays. So a refusal is never a false alarm of the estimate: a refused
configuration needs at least what the message says.

    check_rl(cfg, runs=1, jobs=1)      an RL run (with its upstream stages), or `runs` of them on `jobs` processes
    check_stage(kind, cfg)             one supervised stage: kind 'pretrain' (PretrainConfig), 'sft' (Pipeline), 'rm'
                                       (RMConfig with its Pipeline as `pipe`)
Limits: ``MAX_SECONDS`` (24 h) and half of the physical memory (``memory_limit()``, from os.sysconf).
"""
from __future__ import annotations

import os

from .config import Pipeline
from .errors import UserError
from .model import ModelConfig, param_shapes
from .tasks import get_task

MAX_SECONDS = 24 * 3600.0
"""Refuse work whose lower-bound time estimate exceeds this."""
FLOPS_PER_S = 2e10
"""Optimistic arithmetic rate (float64 FLOP/s): measured steps run at 1e8-1e9 on one core, so this is a bound."""
BYTES = 8   # float64
STEP_OVERHEAD_S = {"rl": 2e-3, "stage": 2e-4}
"""The least time a step takes whatever its size (Python and numpy call overhead; measured steps of the tiniest
settings take 10-70 ms per RL step and ~1 ms per supervised step)."""
HELDOUT_SEQUENCES = 4000
"""Pretraining's held-out loss (stages.corpus_loss) runs 4,000 sequences through the model in one batch."""
RUN_OVERHEAD_S = 1.0
"""The least time one run costs beyond its steps (a compare worker's start-up, imports and curves.png)."""


def memory_limit() -> int:
    """Half of the physical memory (bytes), or 8 GiB where sysconf cannot tell."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):   # pragma: no cover - not POSIX
        return 8 << 30


def _n_params(mc: ModelConfig) -> int:
    n = 0
    for shape in param_shapes(mc).values():
        p = 1
        for d in shape:
            p *= int(d)
        n += p
    return n


def _token_flops(mc: ModelConfig) -> int:
    """Forward FLOPs of one token position (one multiply-add = 2): the trunk and the LM head."""
    trunk = 2 * mc.context * mc.embed * mc.hidden if mc.arch == "mlp" else 0
    return trunk + 2 * mc.features * mc.n_out


def _token_bytes(mc: ModelConfig) -> int:
    """Activations kept per token position: the window's embeddings, the features, the logits."""
    return BYTES * (mc.window * mc.embed + 2 * mc.features + 2 * mc.n_out)


def _fmt_time(s: float) -> str:
    if s < 3600 * 48:
        return f"{s / 3600:.3g} h"
    if s < 3.15e7 * 10:
        return f"{s / 86400:.3g} days"
    return f"{s / 3.15e7:.3g} years"


def _fmt_bytes(b: float) -> str:
    return f"{b / 2**30:.3g} GiB"


class Estimate:
    """Lower bounds of seconds and bytes, with a name for the message."""

    def __init__(self, what: str, seconds: float = 0.0, nbytes: float = 0.0):
        self.what, self.seconds, self.nbytes = what, float(seconds), float(nbytes)

    def check(self) -> "Estimate":
        limit = memory_limit()
        if self.nbytes > limit:
            raise UserError(f"{self.what} needs at least {_fmt_bytes(self.nbytes)} of memory, more than half of this "
                            f"machine's ({_fmt_bytes(limit)}); lower the sizes")
        if self.seconds > MAX_SECONDS:
            raise UserError(f"{self.what} would take at least {_fmt_time(self.seconds)} (estimated at "
                            f"{FLOPS_PER_S:.0e} FLOP/s), over the {MAX_SECONDS / 3600:.0f} h bound; lower the steps "
                            f"or sizes")
        return self


def _model_config(pretrain) -> ModelConfig:
    try:
        return pretrain.model_config()
    except ValueError as e:
        raise UserError(f"pretrain: {str(e).splitlines()[0]}") from None


def _task(name):
    return get_task(name)


def pretrain_estimate(cfg) -> Estimate:
    """PretrainConfig: steps x batch sequences forward and backward (3x forward), and the corpus in memory."""
    mc, task = _model_config(cfg), _task(cfg.task)
    L = task.prompt_len + task.max_new_tokens + 1
    tokens = cfg.batch_size * L
    seconds = cfg.steps * (3 * tokens * _token_flops(mc) / FLOPS_PER_S + STEP_OVERHEAD_S["stage"])
    heldout = HELDOUT_SEQUENCES * L * 2 * mc.features * BYTES   # stages.corpus_loss: one batch of 4,000 sequences
    nbytes = 4 * _n_params(mc) * BYTES + max(tokens * _token_bytes(mc), heldout) + cfg.corpus_size * L * BYTES
    return Estimate("pretraining", seconds, nbytes)


def sft_estimate(pipe) -> Estimate:
    """Pipeline: the SFT steps on the pretrained shape."""
    mc, task = _model_config(pipe.pretrain), _task(pipe.pretrain.task)
    L = task.prompt_len + task.max_new_tokens + 1
    tokens = pipe.sft.batch_size * L
    seconds = pipe.sft.steps * (3 * tokens * _token_flops(mc) / FLOPS_PER_S + STEP_OVERHEAD_S["stage"])
    nbytes = 4 * _n_params(mc) * BYTES + tokens * _token_bytes(mc) + pipe.sft.demos * L * BYTES
    return Estimate("SFT", seconds, nbytes)


def rm_estimate(rm, pipe) -> Estimate:
    """RMConfig: sampling the preference pairs (k completions each) and the Bradley-Terry steps."""
    mc, task = _model_config(pipe.pretrain), _task(pipe.pretrain.task)
    L = task.prompt_len + task.max_new_tokens + 1
    sample_tokens = rm.pairs * rm.k * L
    step_tokens = rm.batch_size * 2 * L
    seconds = ((sample_tokens * _token_flops(mc) + rm.steps * 3 * step_tokens * _token_flops(mc)) / FLOPS_PER_S
               + rm.steps * STEP_OVERHEAD_S["stage"])
    nbytes = 4 * _n_params(mc) * BYTES + step_tokens * _token_bytes(mc) + sample_tokens * BYTES
    return Estimate("the reward model", seconds, nbytes)


def rl_estimate(cfg) -> Estimate:
    """RLConfig: per step, a rollout of prompts_per_step x group_size sequences (policy and reference, token by
    token), then epochs x (forward + backward) of the policy (and critic); the upstream stages first."""
    mc, task = _model_config(cfg.pretrain), _task(cfg.task)
    B = cfg.prompts_per_step * cfg.group_size
    L = task.prompt_len + task.max_new_tokens
    f = _token_flops(mc)
    n_models = 2 + (1 if cfg.uses_critic else 0)
    rollout = B * task.max_new_tokens * 2 * f
    update = cfg.epochs * 3 * B * L * f * (2 if cfg.uses_critic else 1)
    seconds = cfg.steps * ((rollout + update) / FLOPS_PER_S + STEP_OVERHEAD_S["rl"])
    nbytes = (n_models + 3) * _n_params(mc) * BYTES + B * L * _token_bytes(mc)
    up = [pretrain_estimate(cfg.pretrain), sft_estimate(_pipeline(cfg))]
    if cfg.reward == "rm" or (cfg.reward == "auto" and not task.verifiable):   # trainer.resolve_reward_source
        up.append(rm_estimate(cfg.rm, _pipeline(cfg)))
    return Estimate(f"{cfg.algo} on {cfg.task} ({cfg.steps:,} steps)", seconds + sum(e.seconds for e in up),
                    max([nbytes] + [e.nbytes for e in up]))


def _pipeline(cfg):
    return Pipeline(pretrain=cfg.pretrain, sft=cfg.sft)


def check_rl(cfg, runs: int = 1, jobs: int = 1) -> Estimate:
    """Refuse (UserError) an RL run, or `runs` runs on `jobs` processes, that cannot finish or fit."""
    e = rl_estimate(cfg)
    if runs > 1:
        jobs = max(1, min(jobs, runs))
        e = Estimate(f"{runs:,} runs of {e.what} on {jobs} process{'es' if jobs > 1 else ''}",
                     (e.seconds + RUN_OVERHEAD_S) * -(-runs // jobs), e.nbytes * jobs)
    return e.check()


def check_stage(kind: str, cfg, pipe=None) -> Estimate:
    """Refuse (UserError) a supervised stage that cannot finish or fit: kind 'pretrain' (cfg a PretrainConfig),
    'sft' (cfg a Pipeline) or 'rm' (cfg an RMConfig, pipe its Pipeline)."""
    if kind == "pretrain":
        return pretrain_estimate(cfg).check()
    if kind == "sft":
        return sft_estimate(cfg).check()
    if kind == "rm":
        return rm_estimate(cfg, pipe).check()
    raise ValueError(f"unknown stage kind {kind!r}")
