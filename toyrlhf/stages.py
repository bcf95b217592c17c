"""The supervised stages: pretraining (next-token prediction on the corpus) and SFT (loss on completion tokens
only), their checkpoints, and the stage cache that lets every RL run of a task and seed start from the same weights.

    pretraining:  L(theta) = -(1/N) sum_{b,t} log pi_theta(x_{b,t} | x_{b,<t})   over every predicted token
    SFT:          L(theta) = -(1/N) sum_{b,t in completion} log pi_theta(o_{b,t} | q_b, o_{b,<t})
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from . import tokens as tk
from .threads import single_threaded_blas
from .checkpoints import cache_dir, cached_model, check_finite, load_model, save_model
from . import budget
from .config import Pipeline, PretrainConfig, SFTConfig
from .model import TinyLM
from .optim import Adam, clip_grad_norm
from .plotting import plot_run_curves
from .errors import UserError
from .runs import NumericalError, stage_run, write_json
from .settings import to_dict
from .tasks import Task, get_task


# ------------------------------------------------------------------------------------------ training
def _lm_step(model: TinyLM, opt: Adam, tokens: np.ndarray, mask: np.ndarray, max_norm: float = 1.0) -> float:
    """One Adam step on the mean token cross-entropy over the masked positions. Returns the loss (nats/token)."""
    n = mask.sum()
    logp, _, cache = model.logp_forward(tokens, mask)
    loss = -logp.sum() / n
    grad = model.logp_backward(np.full(tokens.shape, -1.0 / n), cache)      # dL/dlogp = -1/N on the mask
    grad, _ = clip_grad_norm(grad, max_norm)
    opt.step(model.flat, grad)
    return float(loss)


def check_loss(loss: float, step: int, what: str) -> None:
    """The stages' divergence check after every step: a non-finite loss stops the stage at once (NumericalError)."""
    if not np.isfinite(loss):
        raise NumericalError(f"non-finite training loss at step {step + 1} of {what}; nothing saved (try a lower lr)")


def _train_lm(model: TinyLM, tok: np.ndarray, mask: np.ndarray, cfg, rng: np.random.Generator,
              progress: Callable | None, what: str) -> list[float]:
    """cfg.steps Adam steps on minibatches of cfg.batch_size rows drawn with replacement from (tok, mask).
    A non-finite loss, or non-finite weights at the end, raise NumericalError (overflow is not warned about)."""
    opt = Adam(model.flat.size, lr=cfg.lr)
    losses = []
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(cfg.steps):
            idx = rng.integers(0, tok.shape[0], cfg.batch_size)
            losses.append(_lm_step(model, opt, tok[idx], mask[idx]))
            check_loss(losses[-1], step, what)
            if progress:
                progress(step, {"loss": losses[-1]})
    check_finite(model, what)
    return losses


def predicted_mask(tok: np.ndarray) -> np.ndarray:
    """Positions a pretrained LM predicts: every non-PAD, non-BOS token (the BOS padding is context only)."""
    m = (tok != tk.PAD) & (tok != tk.BOS)
    m[:, 0] = False
    return m


def corpus_loss(model: TinyLM, task: Task, n: int, seed: int) -> tuple[float, float]:
    """Held-out cross-entropy per predicted token on n fresh corpus sequences: (mean, standard error).

    The per-sequence loss is the sampled quantity (tokens within a sequence are dependent), so the error
    is taken over sequences and divided by the mean token count (ratio estimator)."""
    prompts, comps = task.sample_corpus(n, np.random.default_rng(seed))
    tok, _ = tk.join(prompts, comps)
    mask = predicted_mask(tok)
    logp, _, _ = model.logp_forward(tok, mask)
    per_seq, counts = -logp.sum(axis=1), mask.sum(axis=1)
    mean = per_seq.sum() / counts.sum()
    resid = per_seq - mean * counts
    se = np.sqrt(resid.var(ddof=1) / n) / counts.mean()
    return float(mean), float(se)


@single_threaded_blas
def pretrain(cfg: PretrainConfig, progress: Callable | None = None) -> tuple[TinyLM, dict]:
    """Next-token cross-entropy on the task's corpus. Returns (model, summary)."""
    task = get_task(cfg.task)
    rng = np.random.default_rng([cfg.seed, 1])
    model = TinyLM(cfg.model_config(), seed=np.random.default_rng([cfg.seed, 2]))
    prompts, comps = task.sample_corpus(cfg.corpus_size, rng)
    tok, _ = tk.join(prompts, comps)
    mask = predicted_mask(tok)
    losses = _train_lm(model, tok, mask, cfg, rng, progress, "pretraining")
    heldout, se = corpus_loss(model, task, 4000, seed=cfg.seed + 10_000)
    entropy = task.corpus_entropy_per_token()
    summary = {"stage": "pretrain", "task": cfg.task, "seed": cfg.seed, "steps": cfg.steps,
               "final_train_loss": float(np.mean(losses[-50:])), "heldout_loss": heldout, "heldout_loss_se": se,
               "corpus_entropy_per_token": entropy, "excess_nats_per_token": heldout - entropy,
               "parameters": model.num_params("policy")}
    return model, summary


@single_threaded_blas
def sft(model: TinyLM, task: Task, cfg: SFTConfig, seed: int, progress: Callable | None = None) -> tuple[TinyLM, dict]:
    """Fine-tune a copy of `model` on demonstrations, loss on completion tokens only."""
    model = model.copy()
    rng = np.random.default_rng([seed, 3])
    prompts, comps = task.demonstrations(cfg.demos, rng)
    tok, mask = tk.join(prompts, comps)
    losses = _train_lm(model, tok, mask, cfg, rng, progress, "SFT")
    return model, {"stage": "sft", "steps": cfg.steps, "final_train_loss": float(np.mean(losses[-50:]))}


def mean_gold_reward(model: TinyLM, task: Task, samples_per_prompt: int = 64, seed: int = 0,
                     temperature: float = 1.0) -> tuple[float, float]:
    """Monte-Carlo E[gold reward] under the model, uniform over prompts: (mean, standard error)."""
    prompts = np.repeat(task.prompts(), samples_per_prompt, axis=0)
    s = model.sample(prompts, task.max_new_tokens, np.random.default_rng(seed), temperature)
    r = task.gold_reward(*tk.split(s.tokens, task.prompt_len))
    return float(r.mean()), float(r.std(ddof=1) / np.sqrt(r.size))


# ------------------------------------------------------------------------------------------ stage cache
def cached_pretrained(cfg: PretrainConfig, progress=None) -> tuple[TinyLM, Path]:
    """The pretrained model for cfg from the stage cache (pretrain-<task>-s<seed>-<hash>.npz), trained on a miss."""
    model, _, path = cached_model("pretrain", {"pretrain": cfg}, lambda: (pretrain(cfg, progress)[0], {}),
                                  what="pretraining")
    return model, path


def cached_sft(pipe: Pipeline, progress=None) -> tuple[TinyLM, Path]:
    """The SFT model for pipe from the stage cache (sft-<task>-s<seed>-<hash>.npz), trained (pretrained model
    included) on a miss."""
    cfg = pipe.pretrain

    def build():
        base, _ = cached_pretrained(cfg, progress)
        return sft(base, get_task(cfg.task), pipe.sft, cfg.seed, progress)[0], {}

    model, _, path = cached_model("sft", {"pretrain": cfg, "sft": pipe.sft}, build, what="SFT")
    return model, path


# ------------------------------------------------------------------------------------------ run folders
def check_task(name: str) -> Task:
    try:
        return get_task(name)
    except ValueError as e:
        raise UserError(str(e)) from None


def init_model(init, kind: str, task: str):
    """(model, task name) of an --init checkpoint, or (None, task) to take the model from the stage cache."""
    if init is None:
        check_task(task)
        cache_dir()   # not writable: one line, before the run folder is made
        return None, task
    model, z = load_model(init, kind)
    return model, str(z["task"])


def run_pretrain(cfg: PretrainConfig, out=None, *, overwrite: bool = False, bars=None) -> tuple[Path, dict]:
    """Pretrain in a run folder (default runs/pretrain-<task>-s<seed>-<time>); returns (run folder, summary)."""
    check_task(cfg.task)
    try:
        cfg.model_config()   # the shape settings: checked before anything is built or written
    except ValueError as e:
        raise UserError(f"pretrain: {str(e).splitlines()[0]}") from None
    budget.check_stage("pretrain", cfg)          # refuse what cannot finish or fit, before anything is written
    config = {"pretrain": to_dict(cfg)}
    with stage_run(out, f"pretrain-{cfg.task}-s{cfg.seed}", overwrite, bars) as run:
        run.write("config.json", lambda p: write_json(p, {"stage": "pretrain", **config}))
        (model, summary), secs = run.train(cfg.steps, f"pretrain {cfg.task}", ("loss",), "pretraining",
                                           lambda progress: pretrain(cfg, progress))
        summary["wall_time_s"] = secs
        run.finish(lambda p: save_model(p, model, kind="lm", task=cfg.task, config=config), summary,
                   plot_run_curves)
    return run.dir, summary


def run_sft(cfg: SFTConfig, out=None, *, init=None, task: str = "pref", seed: int = 0, overwrite: bool = False,
            bars=None) -> tuple[Path, dict]:
    """SFT in a run folder from the --init checkpoint (its task wins) or the cached pretrained model."""
    base, task = init_model(init, "lm", task)
    t = check_task(task)
    budget.check_stage("sft", Pipeline(pretrain=PretrainConfig(task=task, seed=seed), sft=cfg))
    with stage_run(out, f"sft-{task}-s{seed}", overwrite, bars) as run:
        if base is None:
            pc = PretrainConfig(task=task, seed=seed)
            (base, init), _ = run.train(pc.steps, f"pretrain {task} (cached after)", ("loss",),
                                        "pretraining (for the stage cache)",
                                        lambda progress: cached_pretrained(pc, progress), log=False)
        run.write("config.json", lambda p: write_json(p, {"stage": "sft", "init": str(init), "task": task,
                                                          "seed": seed, "sft": to_dict(cfg)}))
        (model, summary), secs = run.train(cfg.steps, f"sft {task}", ("loss",), "SFT",
                                           lambda progress: sft(base, t, cfg, seed, progress))
        before = mean_gold_reward(base, t, seed=seed + 1)
        after = mean_gold_reward(model, t, seed=seed + 1)
        summary.update({"task": task, "seed": seed, "wall_time_s": secs, "gold_reward_before": before[0],
                        "gold_reward_after": after[0], "gold_reward_se": max(before[1], after[1]),
                        "gold_reward_before_se": before[1], "gold_reward_after_se": after[1]})
        run.finish(lambda p: save_model(p, model, kind="lm", task=task, config={"sft": to_dict(cfg)}),
                   summary, plot_run_curves)
    return run.dir, summary
