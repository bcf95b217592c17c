"""The library's entry point: train an RL run from Python and read a run folder back.

    import toyrlhf
    run = toyrlhf.train("grpo", task="pref", steps=100, seed=0, lr=2e-3, sft={"steps": 50})
    run.metrics[-1]["gold_reward"], run.summary["final_gold_reward"], run.policy
    again = toyrlhf.load_run(run.run_dir)         # config, metrics, summary, models from checkpoint.npz

Settings are the fields of ``RLConfig`` (`toyrlhf run --help`, the same keys as `--set`): a field as a keyword
(``lr=2e-3``), an upstream stage's fields as a dict (``rm={"steps": 200}``) or a dotted key in ``settings``.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import RLConfig
from .errors import UserError
from .rl.algorithms import ALGORITHMS
from .rl.run import resume_config
from .rl.run import train as _train_in_folder
from .rl.trainer import Models, Trainer, build_models
from .runs import read_json, read_metrics
from .settings import from_dict, with_overrides


@dataclass
class RunResult:
    """A run folder read back: its resolved config, per-step metrics, summary and the models of its checkpoint."""

    run_dir: Path
    config: RLConfig
    metrics: list[dict]
    """metrics.jsonl, one dict per step."""
    summary: dict | None
    """summary.json (None while the run is unfinished)."""
    models: Models
    """policy, reference, critic (None without one) and reward_model (None for rule rewards)."""
    trainer: Trainer
    """The trainer restored from the checkpoint (its task, reward function and RNG), e.g. to sample from."""

    @property
    def policy(self):
        return self.models.policy

    @property
    def reward_model(self):
        return self.models.reward_model

    @property
    def critic(self):
        return self.models.critic


def _flatten(settings: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in settings.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def make_config(algo: str = "grpo", *, task: str = "pref", steps: int = 500, seed: int = 0,
                settings: dict | None = None, **kw) -> RLConfig:
    """The resolved RLConfig of a preset with settings on top (UserError naming a bad key or value)."""
    if algo not in ALGORITHMS:
        raise UserError(f"unknown algorithm {algo!r}; choose from {', '.join(ALGORITHMS)}")
    base = from_dict(RLConfig, {**ALGORITHMS[algo].knobs, "algo": algo, "task": task, "seed": seed, "steps": steps})
    overrides = _flatten({**(settings or {}), **kw})
    for key in ("algo", "task", "seed"):
        if key in overrides:
            raise UserError(f"pass {key} as train()'s own argument, not as a setting")
    cfg = with_overrides(base, overrides)
    try:
        cfg.check_task()
    except ValueError as e:
        raise UserError(str(e).splitlines()[0]) from None
    return cfg


def train(algo: str = "grpo", *, task: str = "pref", steps: int = 500, seed: int = 0, out=None,
          resume: bool = False, progress: Callable | None = None, settings: dict | None = None,
          **kw) -> RunResult:
    """Train `algo` (a preset, `toyrlhf algos`) and return the run: config, metrics, summary and trained models.

    out: the run folder (created if missing; a non-empty one is refused unless resume=True, which continues the run
    it holds); None: a new temporary folder. The upstream models come from the stage cache ($TOYRLHF_CACHE_DIR),
    built on a miss. progress(step, metrics) is called after every step."""
    if resume:
        if out is None:
            raise UserError("resume=True needs out=, the run folder to continue")
        cfg = resume_config(out)
        run_dir = Path(out)
    else:
        cfg = make_config(algo, task=task, steps=steps, seed=seed, settings=settings, **kw)
        run_dir = Path(tempfile.mkdtemp(prefix=f"toyrlhf-{algo}-")) if out is None else Path(out)
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise UserError(f"{run_dir}: exists and is not an empty folder (pass resume=True to continue its run)")
        run_dir.mkdir(parents=True, exist_ok=True)
    _train_in_folder(cfg, run_dir, progress=progress, resume=resume)
    return load_run(run_dir)


def load_run(run_dir) -> RunResult:
    """An RL run folder: config.json, metrics.jsonl, summary.json (if finished) and the models of checkpoint.npz.
    The frozen reward model and the critic's shape come from the stage cache (rebuilt, deterministically, on a
    machine that lacks them)."""
    run_dir = Path(run_dir)
    cfg = resume_config(run_dir)
    ckpt = run_dir / "checkpoint.npz"
    if not ckpt.is_file():
        raise UserError(f"{run_dir}: no checkpoint.npz yet")
    models = build_models(cfg)
    trainer = Trainer(cfg, models)
    trainer.load_state(ckpt)
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else None
    return RunResult(run_dir=run_dir, config=cfg, metrics=read_metrics(run_dir), summary=summary, models=models,
                     trainer=trainer)
