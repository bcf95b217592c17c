"""The supervised stages: pretraining (next-token prediction on the corpus) and SFT (loss on completion tokens
only), their checkpoints, and the stage cache that lets every RL run of a task and seed start from the same weights.

    pretraining:  L(theta) = -(1/N) sum_{b,t} log pi_theta(x_{b,t} | x_{b,<t})   over every predicted token
    SFT:          L(theta) = -(1/N) sum_{b,t in completion} log pi_theta(o_{b,t} | q_b, o_{b,<t})
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from . import tokens as tk
from .config import Pipeline, PretrainConfig, SFTConfig
from .settings import config_hash, to_dict
from .errors import UserError
from .model import ModelConfig, TinyLM
from .optim import Adam, clip_grad_norm
from .runs import from_json_array, json_array, load_npz, save_npz
from .tasks import Task, get_task


# ------------------------------------------------------------------------------------------ checkpoints
def save_model(path, model: TinyLM, *, kind: str, task: str, config: dict, extra: dict | None = None) -> None:
    """A model checkpoint: flat weights + the model shape + the producing stage's full config."""
    arrays = {"flat": model.flat, "model_config": json_array(model.config.to_dict()),
              "kind": np.array(kind), "task": np.array(task), "config": json_array(config)}
    for k, v in (extra or {}).items():
        arrays[k] = np.asarray(v)
    save_npz(path, arrays)


def load_model(path, kind: str | None = None) -> tuple[TinyLM, dict]:
    """Load a model checkpoint; returns (model, the raw arrays). Wrong kind / shape -> UserError."""
    z = load_npz(path, required=("flat", "model_config", "kind", "task"))
    if kind is not None and str(z["kind"]) != kind:
        raise UserError(f"{path}: holds a {z['kind']} model, expected a {kind} model")
    try:
        mcfg = ModelConfig(**from_json_array(z["model_config"]))
        model = TinyLM(mcfg, seed=0)
        model.set_flat(z["flat"])
    except (ValueError, TypeError) as e:
        raise UserError(f"{path}: corrupt checkpoint ({str(e).splitlines()[0]})") from None
    if not np.all(np.isfinite(model.flat)):
        raise UserError(f"{path}: checkpoint holds non-finite weights")
    return model, z


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


def _train_lm(model: TinyLM, tok: np.ndarray, mask: np.ndarray, cfg, rng: np.random.Generator,
              progress: Callable | None) -> list[float]:
    """cfg.steps Adam steps on minibatches of cfg.batch_size rows drawn with replacement from (tok, mask)."""
    opt = Adam(model.flat.size, lr=cfg.lr)
    losses = []
    for step in range(cfg.steps):
        idx = rng.integers(0, tok.shape[0], cfg.batch_size)
        losses.append(_lm_step(model, opt, tok[idx], mask[idx]))
        if progress:
            progress(step, {"loss": losses[-1]})
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


def pretrain(cfg: PretrainConfig, progress: Callable | None = None) -> tuple[TinyLM, dict]:
    """Next-token cross-entropy on the task's corpus. Returns (model, summary)."""
    task = get_task(cfg.task)
    rng = np.random.default_rng([cfg.seed, 1])
    model = TinyLM(cfg.model_config(), seed=np.random.default_rng([cfg.seed, 2]))
    prompts, comps = task.sample_corpus(cfg.corpus_size, rng)
    tok, _ = tk.join(prompts, comps)
    mask = predicted_mask(tok)
    losses = _train_lm(model, tok, mask, cfg, rng, progress)
    heldout, se = corpus_loss(model, task, 4000, seed=cfg.seed + 10_000)
    entropy = task.corpus_entropy_per_token()
    summary = {"stage": "pretrain", "task": cfg.task, "seed": cfg.seed, "steps": cfg.steps,
               "final_train_loss": float(np.mean(losses[-50:])), "heldout_loss": heldout, "heldout_loss_se": se,
               "corpus_entropy_per_token": entropy, "excess_nats_per_token": heldout - entropy,
               "parameters": model.num_params("policy")}
    return model, summary


def sft(model: TinyLM, task: Task, cfg: SFTConfig, seed: int, progress: Callable | None = None) -> tuple[TinyLM, dict]:
    """Fine-tune a copy of `model` on demonstrations, loss on completion tokens only."""
    model = model.copy()
    rng = np.random.default_rng([seed, 3])
    prompts, comps = task.demonstrations(cfg.demos, rng)
    tok, mask = tk.join(prompts, comps)
    losses = _train_lm(model, tok, mask, cfg, rng, progress)
    return model, {"stage": "sft", "steps": cfg.steps, "final_train_loss": float(np.mean(losses[-50:]))}


def mean_gold_reward(model: TinyLM, task: Task, samples_per_prompt: int = 64, seed: int = 0,
                     temperature: float = 1.0) -> tuple[float, float]:
    """Monte-Carlo E[gold reward] under the model, uniform over prompts: (mean, standard error)."""
    prompts = np.repeat(task.prompts(), samples_per_prompt, axis=0)
    s = model.sample(prompts, task.max_new_tokens, np.random.default_rng(seed), temperature)
    r = task.gold_reward(*tk.split(s.tokens, task.prompt_len))
    return float(r.mean()), float(r.std(ddof=1) / np.sqrt(r.size))


# ------------------------------------------------------------------------------------------ stage cache
def cache_dir() -> Path:
    """$TOYRLHF_CACHE_DIR, default ~/.cache/toyrlhf (created on first use)."""
    path = Path(os.environ.get("TOYRLHF_CACHE_DIR") or Path.home() / ".cache" / "toyrlhf")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # a probe with a unique name: a shared fixed name raced between concurrent processes (one unlinked the
        # other's probe, which then read the cache as "not writable")
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        raise UserError(f"stage cache {path} is not writable; set TOYRLHF_CACHE_DIR to a writable folder") from None
    return path


def cached_pretrained(cfg: PretrainConfig, progress=None) -> tuple[TinyLM, Path]:
    path = cache_dir() / f"pretrain-{cfg.task}-s{cfg.seed}-{config_hash(cfg)}.npz"
    if path.exists():
        return load_model(path, "lm")[0], path
    model, summary = pretrain(cfg, progress)
    save_model(path, model, kind="lm", task=cfg.task, config={"pretrain": to_dict(cfg)})
    return model, path


def cached_sft(pipe: Pipeline, progress=None) -> tuple[TinyLM, Path]:
    cfg = pipe.pretrain
    path = cache_dir() / f"sft-{cfg.task}-s{cfg.seed}-{config_hash(cfg, pipe.sft)}.npz"
    if path.exists():
        return load_model(path, "lm")[0], path
    base, _ = cached_pretrained(cfg, progress)
    model, _ = sft(base, get_task(cfg.task), pipe.sft, cfg.seed, progress)
    save_model(path, model, kind="lm", task=cfg.task,
               config={"pretrain": to_dict(cfg), "sft": to_dict(pipe.sft)})
    return model, path
