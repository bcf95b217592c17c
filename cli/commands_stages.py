"""`toyrlhf tasks | pretrain | sft | rm`: the supervised stages as commands, each writing a run folder.

The stages are short and do not resume: SIGINT / SIGTERM stop them at the end of the current step (exit 130),
a non-finite loss or parameter stops them with exit 3; either way the command removes the config.json it wrote
(and the folder, if it made it), so the folder is as it was and the same command can simply be run again.
Checkpoints, summaries and stage-cache files are written atomically, so no torn file is ever left behind."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click
import numpy as np

from toyrlhf import stages
from toyrlhf.settings import from_dict, parse_set_options, to_dict, with_overrides
from toyrlhf.errors import UserError
from toyrlhf.runs import (Interrupted, NumericalError, atomic_write_bytes, deferred_signals, prepare_run_dir,
                          signal_name, write_json)
from toyrlhf.tasks import DEFAULT_TASK, TASKS, get_task

from .common import echo_summary, progress_bar, set_option, timed


def _task_option(f):
    return click.option("--task", default=DEFAULT_TASK, show_default=True, help="Task name (see `toyrlhf tasks`).")(f)


def _steps_option(f):
    return click.option("--steps", type=int, default=None, help="Training steps (default: the stage's).")(f)


def _seed_option(f):
    return click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                        help="Random seed (>= 0).")(f)


def _out_option(f):
    f = click.option("--overwrite", is_flag=True, help="Replace the contents of a non-empty --out folder.")(f)
    return click.option("--out", type=click.Path(file_okay=False), default=None,
                        help="Run folder (default runs/<stage>-<task>-s<seed>-<time>).")(f)


def _check_task(name: str):
    try:
        return get_task(name)
    except ValueError as e:
        raise UserError(str(e)) from None


def check_model_shape(cfg: "stages.PretrainConfig") -> None:
    """The model shape settings (arch, context, embed, hidden) are validated by ModelConfig: check them before
    anything is built or written."""
    try:
        cfg.model_config()
    except ValueError as e:
        raise UserError(f"pretrain: {str(e).splitlines()[0]}") from None


def _check_steps(steps):
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be a positive integer, got {steps}")


@contextlib.contextmanager
def stage_guard(out, name: str, overwrite: bool):
    """Prepare the run folder and yield (run_dir, watch). `watch(bar, what)` wraps a progress callback so that
    after every step a deferred SIGINT / SIGTERM stops the stage (Interrupted) and a non-finite loss stops it
    (NumericalError). On these, on a UserError and on a second Ctrl-C, the config.json this command wrote is removed
    again (and the folder, if this command created it and it is empty)."""
    existed = out is not None and Path(out).exists()
    run_dir = prepare_run_dir(out, name, overwrite=overwrite)
    with deferred_signals() as flag:
        def watch(bar, what: str):
            def callback(step, metrics):
                bar(step, metrics)
                loss = metrics.get("loss")
                if loss is not None and not np.isfinite(loss):
                    raise NumericalError(f"non-finite training loss at step {step + 1} of {what}; nothing saved "
                                         f"(try a lower lr)")
                if flag["signal"] is not None:
                    raise Interrupted(f"{signal_name(flag['signal'])} during {what} (after step {step + 1}): "
                                      f"the supervised stages do not resume; nothing saved, run the command again")
            return callback

        try:
            with np.errstate(over="ignore", invalid="ignore"):   # a non-finite loss is reported by `watch`
                yield run_dir, watch
        except (Interrupted, NumericalError, UserError, KeyboardInterrupt):
            with contextlib.suppress(OSError):
                (run_dir / "config.json").unlink(missing_ok=True)
                if not existed and not any(run_dir.iterdir()):
                    run_dir.rmdir()
            raise


def _check_weights(model, what: str):
    if not np.all(np.isfinite(model.flat)):
        raise NumericalError(f"non-finite parameters after the last step of {what}; nothing saved (try a lower lr)")


@click.command("tasks")
def tasks_cmd():
    """List the tasks with a one-line description."""
    width = max(len(n) for n in TASKS)
    for name, task in TASKS.items():
        mark = " (default)" if name == DEFAULT_TASK else ""
        click.echo(f"{name:<{width}}  {task.description}{mark}")
        click.echo(f"{'':<{width}}  vocabulary {task.vocab_size} tokens, prompts {len(task.prompts())}, "
                   f"{task.max_new_tokens} new tokens, {'rule reward' if task.verifiable else 'hidden gold reward'}")


@click.command("pretrain")
@_task_option
@_steps_option
@_seed_option
@_out_option
@set_option
def pretrain_cmd(task, steps, seed, out, overwrite, overrides):
    """Pretrain a TinyLM on the task's synthetic corpus (next-token cross-entropy)."""
    _check_task(task)
    _check_steps(steps)
    settings = {"task": task, "seed": seed, **({"steps": steps} if steps else {})}
    cfg = with_overrides(from_dict(stages.PretrainConfig, settings), parse_set_options(overrides))
    _check_task(cfg.task)
    if cfg.seed < 0:
        raise UserError(f"seed must be >= 0, got {cfg.seed}")
    check_model_shape(cfg)
    with stage_guard(out, f"pretrain-{task}-s{seed}", overwrite) as (run_dir, watch):
        write_json(run_dir / "config.json", {"stage": "pretrain", "pretrain": to_dict(cfg)})
        with progress_bar(cfg.steps, f"pretrain {task}", ("loss",)) as bar:
            (model, summary), secs = timed(lambda: stages.pretrain(cfg, watch(bar, "pretraining")))
        _check_weights(model, "pretraining")
        stages.save_model(run_dir / "checkpoint.npz", model, kind="lm", task=task,
                          config={"pretrain": to_dict(cfg)})
        summary["wall_time_s"] = secs
        write_json(run_dir / "summary.json", summary)
    echo_summary(f"pretrained {cfg.arch} on {task} in {secs:.2f} s -> {run_dir}", [
        ("parameters", summary["parameters"]),
        ("held-out loss (nats/token)", f"{summary['heldout_loss']:.4f} ± {summary['heldout_loss_se']:.4f}"),
        ("corpus entropy (nats/token)", f"{summary['corpus_entropy_per_token']:.4f}"),
        ("excess over entropy", f"{summary['excess_nats_per_token']:.4f}"),
    ])


@click.command("sft")
@click.option("--init", "init", type=click.Path(), default=None,
              help="Pretrained checkpoint (default: the cached pretrained model for --task/--seed).")
@_task_option
@_steps_option
@_seed_option
@_out_option
@set_option
def sft_cmd(init, task, steps, seed, out, overwrite, overrides):
    """Supervised fine-tuning on the task's demonstrations (loss on completion tokens only)."""
    _check_steps(steps)
    if init is not None:
        base, z = stages.load_model(init, "lm")
        task = str(z["task"])
    _task = _check_task(task)
    cfg = with_overrides(from_dict(stages.SFTConfig, {"steps": steps} if steps else {}), parse_set_options(overrides))
    if init is None:
        stages.cache_dir()   # not writable: one line, before the run folder is made
    with stage_guard(out, f"sft-{task}-s{seed}", overwrite) as (run_dir, watch):
        if init is None:
            with progress_bar(stages.PretrainConfig().steps, f"pretrain {task} (cached after)", ("loss",)) as bar:
                base, init = stages.cached_pretrained(from_dict(stages.PretrainConfig, {"task": task, "seed": seed}),
                                                      watch(bar, "pretraining (for the stage cache)"))
        write_json(run_dir / "config.json", {"stage": "sft", "init": str(init), "task": task, "seed": seed,
                                              "sft": to_dict(cfg)})
        with progress_bar(cfg.steps, f"sft {task}", ("loss",)) as bar:
            (model, summary), secs = timed(lambda: stages.sft(base, _task, cfg, seed, watch(bar, "SFT")))
        _check_weights(model, "SFT")
        before = stages.mean_gold_reward(base, _task, seed=seed + 1)
        after = stages.mean_gold_reward(model, _task, seed=seed + 1)
        summary.update({"task": task, "seed": seed, "wall_time_s": secs, "gold_reward_before": before[0],
                        "gold_reward_after": after[0], "gold_reward_se": max(before[1], after[1])})
        stages.save_model(run_dir / "checkpoint.npz", model, kind="lm", task=task, config={"sft": to_dict(cfg)})
        write_json(run_dir / "summary.json", summary)
    echo_summary(f"fine-tuned on {cfg.demos} demonstrations of {task} in {secs:.2f} s -> {run_dir}", [
        ("final loss (nats/token)", summary["final_train_loss"]),
        ("gold reward, pretrained", f"{before[0]:.3f} ± {before[1]:.3f}"),
        ("gold reward, SFT", f"{after[0]:.3f} ± {after[1]:.3f}"),
    ])


@click.command("rm")
@click.option("--init", "init", type=click.Path(), default=None,
              help="SFT checkpoint the pairs are sampled from and the RM is initialised from (its embeddings; its whole "
                   "trunk with --set head=mean). Default: the cached SFT model.")
@_task_option
@click.option("--pairs", type=int, default=None, help="Preference pairs (train + held-out).")
@_steps_option
@_seed_option
@_out_option
@set_option
def rm_cmd(init, task, pairs, steps, seed, out, overwrite, overrides):
    """Train a Bradley-Terry reward model on preference pairs labelled by the hidden gold reward."""
    from toyrlhf import reward_model as rmod
    _check_steps(steps)
    if pairs is not None and pairs < 2:
        raise UserError(f"--pairs must be at least 2, got {pairs}")
    if init is not None:
        sft_model, z = stages.load_model(init, "lm")
        task = str(z["task"])
    _task = _check_task(task)
    settings = {k: v for k, v in {"steps": steps, "pairs": pairs}.items() if v is not None}
    cfg = with_overrides(from_dict(rmod.RMConfig, settings), parse_set_options(overrides))
    if init is None:
        stages.cache_dir()
    with stage_guard(out, f"rm-{task}-s{seed}", overwrite) as (run_dir, watch):
        if init is None:
            pipe = stages.Pipeline(pretrain=from_dict(stages.PretrainConfig, {"task": task, "seed": seed}))
            with progress_bar(pipe.pretrain.steps + pipe.sft.steps, f"pretrain + sft {task} (cached after)",
                              ("loss",)) as bar:
                sft_model, init = stages.cached_sft(pipe, watch(bar, "pretraining / SFT (for the stage cache)"))
        write_json(run_dir / "config.json", {"stage": "rm", "init": str(init), "task": task, "seed": seed,
                                              "rm": to_dict(cfg)})
        records = []

        def logged(callback):
            def log(step, figures):
                records.append({"step": step + 1, **figures})
                callback(step, figures)
            return log

        with progress_bar(cfg.steps, f"reward model {task}", ("loss", "acc")) as bar:
            (rm, summary), secs = timed(lambda: rmod.train_reward_model(
                sft_model, _task, cfg, seed, logged(watch(bar, "reward-model training"))))
        _check_weights(rm.model, "reward-model training")
        summary.update({"task": task, "seed": seed, "wall_time_s": secs})
        rmod.save_reward_model(run_dir / "checkpoint.npz", rm, task=task, config={"rm": to_dict(cfg)})
        # a supervised stage does not resume, so its curves are written once, with the results
        atomic_write_bytes(run_dir / "metrics.jsonl",
                           "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())
        write_json(run_dir / "summary.json", summary)
        from toyrlhf.plotting import rm_curves_figure, save_figure
        save_figure(rm_curves_figure(records, summary), run_dir / "curves.png")
    echo_summary(f"reward model on {task} in {secs:.2f} s -> {run_dir}", [
        ("pairs (train / held-out)", f"{summary['n_train_pairs']} / {summary['n_heldout_pairs']}"),
        ("train accuracy", summary["train_accuracy"]),
        ("held-out accuracy", f"{summary['heldout_accuracy']:.4f} ± {summary['heldout_accuracy_se']:.4f}"),
        ("Bayes ceiling (held-out)", summary["bayes_accuracy"]),
    ] + ([("exact, all held-out pairs", f"{summary['exact_heldout_expected_accuracy']:.4f} of a ceiling of "
                                         f"{summary['exact_heldout_bayes_accuracy']:.4f}")]
         if summary.get("exact_heldout_bayes_accuracy") is not None else []) + [
        ("Spearman / Pearson vs gold", f"{summary['spearman']:.3f} / {summary['pearson']:.3f}"),
        ("the same within prompts", f"{summary['spearman_within_prompt']:.3f} / "
                                    f"{summary['pearson_within_prompt']:.3f}"),
    ])
