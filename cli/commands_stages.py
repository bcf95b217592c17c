"""`toyrlhf tasks | pretrain | sft | rm`: the supervised stages as commands. Each parses its options, calls the
library (`stages.run_pretrain`, `stages.run_sft`, `reward_model.run_rm`: they write the run folder, and remove what
they wrote if the stage is interrupted, diverges or meets bad input) and prints the summary."""
from __future__ import annotations

import click

from toyrlhf.errors import UserError
from toyrlhf.settings import from_dict, parse_set_options, with_overrides
from toyrlhf.tasks import DEFAULT_TASK, TASKS

from .common import echo_summary, progress_bar, set_option


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


@click.command("tasks")
def tasks_cmd():
    """List the tasks with a one-line description."""
    width = max(len(n) for n in TASKS)
    for name, task in TASKS.items():
        mark = " (default)" if name == DEFAULT_TASK else ""
        click.echo(f"{name:<{width}}  {task.description}{mark}")
        click.echo(f"{'':<{width}}  vocabulary {task.vocab_size} tokens, prompts {len(task.prompts())}, "
                   f"{task.max_new_tokens} new tokens, {'rule reward' if task.verifiable else 'hidden gold reward'}")


def _check_steps(steps):
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be a positive integer, got {steps}")


def _config(cls, settings: dict, overrides):
    return with_overrides(from_dict(cls, {k: v for k, v in settings.items() if v is not None}),
                          parse_set_options(overrides))


@click.command("pretrain")
@_task_option
@_steps_option
@_seed_option
@_out_option
@set_option
def pretrain_cmd(task, steps, seed, out, overwrite, overrides):
    """Pretrain a TinyLM on the task's synthetic corpus (next-token cross-entropy)."""
    from toyrlhf import stages
    from toyrlhf.config import PretrainConfig
    _check_steps(steps)
    cfg = _config(PretrainConfig, {"task": task, "seed": seed, "steps": steps}, overrides)   # checks seed >= 0
    run_dir, s = stages.run_pretrain(cfg, out, overwrite=overwrite, bars=progress_bar)
    echo_summary(f"pretrained {cfg.arch} on {cfg.task} in {s['wall_time_s']:.2f} s -> {run_dir}", [
        ("parameters", s["parameters"]),
        ("held-out loss (nats/token)", f"{s['heldout_loss']:.4f} ± {s['heldout_loss_se']:.4f}"),
        ("corpus entropy (nats/token)", f"{s['corpus_entropy_per_token']:.4f}"),
        ("excess over entropy", f"{s['excess_nats_per_token']:.4f}"),
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
    from toyrlhf import stages
    from toyrlhf.config import SFTConfig
    _check_steps(steps)
    cfg = _config(SFTConfig, {"steps": steps}, overrides)
    run_dir, s = stages.run_sft(cfg, out, init=init, task=task, seed=seed, overwrite=overwrite,
                                    bars=progress_bar)
    echo_summary(f"fine-tuned on {cfg.demos} demonstrations of {s['task']} in {s['wall_time_s']:.2f} s -> {run_dir}", [
        ("final loss (nats/token)", s["final_train_loss"]),
        ("gold reward, pretrained", f"{s['gold_reward_before']:.3f} ± {s['gold_reward_before_se']:.3f}"),
        ("gold reward, SFT", f"{s['gold_reward_after']:.3f} ± {s['gold_reward_after_se']:.3f}"),
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
    from toyrlhf import reward_model
    from toyrlhf.config import RMConfig
    _check_steps(steps)
    if pairs is not None and pairs < 2:
        raise UserError(f"--pairs must be at least 2, got {pairs}")
    cfg = _config(RMConfig, {"steps": steps, "pairs": pairs}, overrides)
    run_dir, s = reward_model.run_rm(cfg, out, init=init, task=task, seed=seed, overwrite=overwrite, bars=progress_bar)
    exact = s.get("exact_heldout_bayes_accuracy") is not None
    echo_summary(f"reward model on {s['task']} in {s['wall_time_s']:.2f} s -> {run_dir}", [
        ("pairs (train / held-out)", f"{s['n_train_pairs']} / {s['n_heldout_pairs']}"),
        ("train accuracy", s["train_accuracy"]),
        ("held-out accuracy", f"{s['heldout_accuracy']:.4f} ± {s['heldout_accuracy_se']:.4f}"),
        ("Bayes ceiling (held-out)", s["bayes_accuracy"]),
    ] + ([("exact, all held-out pairs", f"{s['exact_heldout_expected_accuracy']:.4f} of a ceiling of "
                                         f"{s['exact_heldout_bayes_accuracy']:.4f}")] if exact else []) + [
        ("Spearman / Pearson vs gold", f"{s['spearman']:.3f} / {s['pearson']:.3f}"),
        ("the same within prompts", f"{s['spearman_within_prompt']:.3f} / {s['pearson_within_prompt']:.3f}"),
    ])
