"""Drive a Trainer inside a run folder: config.json, metrics.jsonl, checkpoints, summary.json, curves.png,
with Ctrl-C / SIGTERM handled between steps so that an interrupted run keeps everything and can be resumed."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..threads import single_threaded_blas
from ..config import RLConfig
from ..errors import UserError
from ..plotting import plot_run_curves
from ..checkpoints import METADATA_BYTES, RL_CRITIC_WEIGHTS, model_params, rl_checkpoint_layout
from ..runs import (INITIAL_STEPS, Interrupted, MetricsLog, final_window, NumericalError, deferred_signals, from_json_array,  # noqa: F401
                    load_npz, npz_members, read_json, read_metrics, remove_stale_temp_files, signal_name, write_json)
from ..run_logs import CompletionsLog, TensorBoardLog, completion_records
from ..settings import to_dict
from .exact_metrics import training_metrics
from .methods import make_trainer
from .trainer import Trainer, build_models
from .trainer_state import check_same_run, config_from_run

# Interrupted, NumericalError and deferred_signals live in toyrlhf.runs (the supervised stages use them too);
# they are re-exported here for `from toyrlhf.rl.run import Interrupted`.


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


@single_threaded_blas
def train(cfg: RLConfig, run_dir: Path, *, progress: Callable | None = None, resume: bool = False,
          build_progress: Callable | None = None, exact: bool = False,
          on_summary: Callable[[dict], None] | None = None, curves: Callable | None = None) -> dict:
    """Run (or resume) an RL run in `run_dir`. Returns the summary; raises Interrupted / NumericalError.
    `on_summary(summary)` is called once summary.json is written and before curves.png is drawn, which takes
    longer than everything else after the last step (the CLI prints its summary there). `curves(run_dir, out)`
    draws curves.png (default plot_run_curves; the CLI's plotting.helper.CurvesHelper.draw).

    Recovery contract:
      * config.json is written first; if the run then fails before its step-0 checkpoint for any reason but an
        interruption (an upstream stage diverges, a setting the trainer refuses), config.json is removed again;
      * metrics.jsonl gets one line per finished step, flushed as it is written;
      * checkpoint.npz (written atomically) holds every piece of state a step depends on: policy, reference,
        critic, both Adam states, the KL controller and the RNG. A fresh run writes it at step 0, then every
        `checkpoint_every` steps, at the last step and when a signal stops the run;
      * SIGINT / SIGTERM are deferred to the end of the current step (a second one stops at once);
      * resume loads the checkpoint, cuts metrics.jsonl back to its step and recomputes the rest, so a resumed
        run writes the same metrics (apart from time_s) and ends with the same weights as an uninterrupted one.
    """
    run_dir = Path(run_dir)
    t_start = time.perf_counter()
    if resume and (run_dir / "checkpoint.npz").exists():
        # a foreign or mismatched checkpoint: say so before building anything
        precheck_checkpoint(run_dir / "checkpoint.npz", cfg)
    with deferred_signals() as flag:
        trainer, log = (_resumed if resume else _started)(cfg, run_dir, flag, build_progress, exact)
        extra = _extra_logs(cfg, run_dir, trainer.step_count)
        try:
            _steps(trainer, cfg, run_dir, flag, log, extra, progress)
        finally:
            log.close()
            extra.close()
        # a signal during the last step, the summary or the plot: the run is complete, finish these few writes
        summary = summarize(run_dir, trainer, time.perf_counter() - t_start)
        write_json(run_dir / "summary.json", summary)
        try:
            if on_summary is not None:
                on_summary(summary)
        finally:   # a summary that cannot be shown (a closed stdout) still leaves a complete run folder
            (curves or plot_run_curves)(run_dir, run_dir / "curves.png")
    return summary


def _trainer(cfg: RLConfig, run_dir: Path, flag: dict, build_progress: Callable | None, exact: bool) -> Trainer:
    """The run's models (upstream stages from the stage cache, built on a miss) and its trainer, which stops a long
    step on the deferred signal."""
    def upstream_progress(step, metrics):
        if build_progress:
            build_progress(step, metrics)
        if flag["signal"] is not None:
            raise Interrupted(f"{signal_name(flag['signal'])} while building the upstream models (those finished "
                              f"are in the stage cache); continue with: toyrlhf run --resume {run_dir}")

    models = build_models(cfg, upstream_progress)
    trainer = make_trainer(cfg, models)   # cfg.method: the RL Trainer or a method's (rl/methods.py)
    trainer.should_stop = lambda: flag["signal"] is not None
    if exact:
        trainer.exact_fn = training_metrics(cfg)
    return trainer


def _started(cfg: RLConfig, run_dir: Path, flag: dict, build_progress, exact: bool) -> tuple[Trainer, MetricsLog]:
    """A new run: config.json first, so that a run stopped while its upstream models are built can be resumed; then
    the trainer and the step-0 checkpoint. Any other failure on the way removes config.json again, so the folder
    holds no run that never started and the same command can simply be run again."""
    config = run_dir / "config.json"
    write_json(config, to_dict(cfg))
    try:
        trainer = _trainer(cfg, run_dir, flag, build_progress, exact)
        trainer.save(run_dir / "checkpoint.npz")
    except Interrupted:
        raise
    except Exception:   # a second Ctrl-C (KeyboardInterrupt) is an interruption too: config.json stays
        config.unlink(missing_ok=True)
        raise
    return trainer, MetricsLog(run_dir / "metrics.jsonl")


def _resumed(cfg: RLConfig, run_dir: Path, flag: dict, build_progress, exact: bool) -> tuple[Trainer, MetricsLog]:
    """A resumed run at its checkpoint's step (step 0 without one), every check made before anything in the folder
    changes; then stale temporary files go, config.json takes the new steps, metrics.jsonl is cut back."""
    trainer = _trainer(cfg, run_dir, flag, build_progress, exact)
    ckpt, metrics = run_dir / "checkpoint.npz", run_dir / "metrics.jsonl"
    if ckpt.exists():
        trainer.load_state(ckpt)
    check_metrics_lines(metrics, MetricsLog.records_upto(metrics, trainer.step_count))
    if trainer.step_count > cfg.steps:
        raise UserError(f"{run_dir}: the checkpoint is at step {trainer.step_count}, past the run's "
                        f"{cfg.steps} steps")
    remove_stale_temp_files(run_dir)
    if to_dict(cfg) != read_json(run_dir / "config.json"):   # `--resume DIR --steps N` extends the run
        write_json(run_dir / "config.json", to_dict(cfg))
    return trainer, MetricsLog(metrics, truncate_to_step=trainer.step_count)


def _steps(trainer: Trainer, cfg: RLConfig, run_dir: Path, flag: dict, log: MetricsLog, extra: "_ExtraLogs",
           progress: Callable | None) -> None:
    """The steps up to cfg.steps, each logged as it ends and checkpointed every checkpoint_every steps, at the last
    step and when a deferred signal stops the run (Interrupted). A diverged step raises NumericalError and keeps
    the last good checkpoint; a signal inside a long step leaves its half-made state unsaved."""
    ckpt = run_dir / "checkpoint.npz"
    last_good = trainer.step_count
    while trainer.step_count < cfg.steps:
        if flag["signal"] is not None:   # arrived while loading: nothing new to save
            raise Interrupted(_stopped(flag, trainer, cfg, run_dir))
        try:
            # overflow / invalid operations are not warned about: _check_finite reports them as a NumericalError
            # naming the step and the quantity
            with np.errstate(over="ignore", invalid="ignore"):
                metrics = trainer.step()
        except NumericalError as e:
            raise NumericalError(f"{e}; run stopped, the last good checkpoint (step {last_good}) is kept in "
                                 f"{ckpt} (try a lower lr)") from None
        except Interrupted as e:
            raise Interrupted(f"{signal_name(flag['signal'])}: {e}; the checkpoint of step {last_good} is kept "
                              f"(later steps are recomputed on resume); continue with: toyrlhf run --resume "
                              f"{run_dir}") from None
        log.write(metrics)
        extra.write(trainer, metrics)
        if progress:
            progress(trainer.step_count, metrics)
        stop = flag["signal"] is not None
        if stop or trainer.step_count % cfg.checkpoint_every == 0 or trainer.step_count == cfg.steps:
            trainer.save(ckpt)
            last_good = trainer.step_count
        if stop and trainer.step_count < cfg.steps:
            raise Interrupted(_stopped(flag, trainer, cfg, run_dir))


class _ExtraLogs:
    """Optional logs beside metrics.jsonl: completions.jsonl (log_completions_every) and RUN_DIR/tb (tensorboard)."""

    def __init__(self, cfg: RLConfig, run_dir: Path, step: int):
        self.every = cfg.log_completions_every
        self.completions = CompletionsLog(run_dir / "completions.jsonl", truncate_to_step=step) if self.every else None
        self.tb = TensorBoardLog(run_dir / "tb") if cfg.tensorboard else None

    def write(self, trainer: Trainer, metrics: dict) -> None:
        if self.completions is not None and trainer.step_count % self.every == 0:
            self.completions.write(completion_records(trainer.step_count, trainer.last_rollout, trainer.task))
        if self.tb is not None:
            self.tb.write(metrics)

    def close(self) -> None:
        for log in (self.completions, self.tb):
            if log is not None:
                log.close()


_extra_logs = _ExtraLogs


def precheck_checkpoint(path: Path, cfg: RLConfig) -> None:
    """Cheap checks of an RL checkpoint against the run's configuration (kind, model shape, run, critic, the members
    and their sizes: checkpoints.rl_checkpoint_layout), so that a wrong file is a one-line UserError before the
    upstream models are built. Only the expected members are read. `Trainer.load_state` checks the values."""
    members = npz_members(path)
    z = load_npz(path, required=("kind", "model_config", "step", "config"), optional=("task",),
                 max_bytes=METADATA_BYTES)
    if str(z["kind"]) != "rl":
        raise UserError(f"{path}: holds a {z['kind']} model, not an RL run's checkpoint")
    try:
        shape = from_json_array(z["model_config"])
    except ValueError:
        raise UserError(f"{path}: corrupt checkpoint (model_config is not JSON)") from None
    try:
        mcfg = cfg.pretrain.model_config()
    except ValueError as e:
        raise UserError(f"{path}: {str(e).splitlines()[0]}") from None
    if shape != mcfg.to_dict():
        raise UserError(f"{path}: checkpoint of a different model ({shape}) than config.json describes "
                        f"({mcfg.to_dict()})")
    if z["step"].shape != () or z["step"].dtype.kind not in "iu":
        raise UserError(f"{path}: corrupt checkpoint (step is not an integer)")
    if int(z["step"]) > cfg.steps:
        raise UserError(f"{path}: the checkpoint is at step {int(z['step'])}, past the run's {cfg.steps} steps")
    try:
        check_same_run(z, cfg)
    except ValueError as e:
        raise UserError(f"{path}: checkpoint {str(e).splitlines()[0]}") from None
    critic = all(k in members for k in (*RL_CRITIC_WEIGHTS, "critic_opt_t"))
    if critic != cfg.uses_critic:
        raise UserError(f"{path}: checkpoint {'holds' if critic else 'lacks'} a value model (critic), but the run's "
                        f"algorithm {'uses none' if critic else 'needs one'}")
    # the critic's size is known once the reward model it starts from is built: load_state checks its members
    load_npz(path, **rl_checkpoint_layout(model_params(mcfg), entropy_coef=cfg.entropy_target is not None))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_metrics_lines(path: Path, lines: list[str]) -> None:
    """The kept metrics.jsonl records, checked up front on resume: each has an integer step (not a boolean) and a
    finite numeric time_s (summarize reads it when the run ends). UserError naming the first bad line."""
    for i, line in enumerate(lines, 1):
        try:
            r = json.loads(line)
        except (ValueError, RecursionError):
            raise UserError(f"{path}: line {i} is not a JSON record; cannot resume") from None
        if not isinstance(r, dict) or type(r.get("step")) is not int:
            raise UserError(f"{path}: line {i} has no integer step; cannot resume")
        t = r.get("time_s")
        if not (_is_number(t) and math.isfinite(t) and t >= 0):
            raise UserError(f"{path}: line {i} (step {r['step']}) has no numeric time_s; cannot resume")


def _stopped(flag, trainer: Trainer, cfg: RLConfig, run_dir: Path) -> str:
    return (f"{signal_name(flag['signal'])}: stopped after step {trainer.step_count} of {cfg.steps}; metrics and "
            f"checkpoint saved; continue with: toyrlhf run --resume {run_dir}")


def summarize(run_dir: Path, trainer: Trainer, wall: float) -> dict:
    rows = read_metrics(run_dir)
    first, last = rows[:INITIAL_STEPS], rows[-final_window(len(rows)):]

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
