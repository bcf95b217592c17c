"""Drive a Trainer inside a run folder: config.json, metrics.jsonl, checkpoints, summary.json, curves.png,
with Ctrl-C / SIGTERM handled between steps so that an interrupted run keeps everything and can be resumed."""
from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import to_dict
from ..errors import UserError
from ..runs import MetricsLog, read_metrics, write_json
from .algorithms import RLConfig
from .trainer import NumericalError, Trainer, build_models, config_from_run


class Interrupted(Exception):
    """The run stopped on a signal after finishing a step; checkpoint and metrics are written."""

    def __init__(self, message: str, code: int = 130):
        super().__init__(message)
        self.code = code


@contextlib.contextmanager
def deferred_signals():
    """SIGINT / SIGTERM set a flag instead of raising mid-step; the loop checks it between steps."""
    flag = {"signal": None}

    def handler(signum, frame):
        flag["signal"] = signum

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not in the main thread (e.g. a worker): leave signals alone
            pass
    try:
        yield flag
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def models_summary(trainer: Trainer) -> list[tuple[str, int]]:
    """Models held in memory with their parameter counts (PPO: 4, GRPO with a learned RM: 3, with a rule: 2)."""
    m = trainer.models
    out = [("policy (trained)", m.policy.num_params("policy")), ("reference (frozen)", m.reference.num_params("policy"))]
    if m.reward_model is not None:
        out.append(("reward model (frozen)", m.reward_model.model.num_params("reward")))
    else:
        out.append(("reward: rule (no model)", 0))
    if m.critic is not None:
        out.append(("value model (trained)", m.critic.num_params("value")))
    return out


def train(cfg: RLConfig, run_dir: Path, *, progress: Callable | None = None, resume: bool = False,
          build_progress: Callable | None = None, exact: bool = False) -> dict:
    """Run (or resume) an RL run in `run_dir`. Returns the summary; raises Interrupted / NumericalError."""
    run_dir = Path(run_dir)
    t_start = time.perf_counter()
    models = build_models(cfg, build_progress)
    trainer = Trainer(cfg, models)
    if exact:
        from ..exact import training_metrics
        trainer.exact_fn = training_metrics(cfg)
    ckpt = run_dir / "checkpoint.npz"
    if resume:
        if ckpt.exists():
            trainer.load_state(ckpt)
        log = MetricsLog(run_dir / "metrics.jsonl", truncate_to_step=trainer.step_count)
    else:
        write_json(run_dir / "config.json", to_dict(cfg))
        log = MetricsLog(run_dir / "metrics.jsonl")
    last_good = trainer.step_count
    try:
        with deferred_signals() as flag:
            while trainer.step_count < cfg.steps:
                try:
                    metrics = trainer.step()
                except NumericalError as e:
                    raise NumericalError(f"{e}; checkpoint of step {last_good} kept in {run_dir}") from None
                log.write(metrics)
                if progress:
                    progress(trainer.step_count, metrics)
                if trainer.step_count % cfg.checkpoint_every == 0 or trainer.step_count == cfg.steps:
                    trainer.save(ckpt)
                    last_good = trainer.step_count
                if flag["signal"] is not None:
                    trainer.save(ckpt)
                    name = signal.Signals(flag["signal"]).name
                    raise Interrupted(f"{name} after step {trainer.step_count}: metrics and checkpoint saved; "
                                      f"continue with: toyrlhf run --resume {run_dir}")
    finally:
        log.close()
    summary = summarize(run_dir, trainer, time.perf_counter() - t_start)
    write_json(run_dir / "summary.json", summary)
    try:
        from ..plotting import plot_run_curves
        plot_run_curves(run_dir, run_dir / "curves.png")
    except ImportError:  # plotting module absent: the run itself is complete
        pass
    return summary


def summarize(run_dir: Path, trainer: Trainer, wall: float) -> dict:
    rows = read_metrics(run_dir)
    first, last = rows[:10], rows[-max(1, min(25, len(rows) // 5)):]

    def avg(rs, k):
        vals = [r[k] for r in rs if r.get(k) is not None]
        return float(np.mean(vals)) if vals else None

    keys = ("reward", "gold_reward", "kl", "entropy", "response_length", "explained_variance", "accuracy",
            "exact_gold_reward", "exact_reward", "exact_kl")
    out = {"algo": trainer.cfg.algo, "task": trainer.cfg.task, "seed": trainer.cfg.seed, "steps": trainer.step_count,
           "wall_time_s": wall, "models": {k: v for k, v in models_summary(trainer)}}
    for k in keys:
        if any(r.get(k) is not None for r in rows):
            out[f"initial_{k}"] = avg(first, k)
            out[f"final_{k}"] = avg(last, k)
    out["step_time_ms"] = 1000 * float(np.mean([r["time_s"] for r in rows])) if rows else None
    return out


def resume_config(run_dir) -> RLConfig:
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise UserError(f"{run_dir}: not a run folder (no config.json)")
    return config_from_run(run_dir)
