"""`toyrlhf check`: every estimator against the exact answer, on a task small enough to enumerate."""
from __future__ import annotations

import time

import click
import numpy as np

from toyrlhf.errors import UserError
from toyrlhf.tasks import TASKS

from .common import counted, echo_summary, progress_bar

DEFAULT_CHECK_TASK = "arith"   # 0/1 correctness reward: group advantages are exact by binomial counting


def _fmt(x, width=9) -> str:
    if x is None or not np.isfinite(x):
        return f"{'-':>{width}}"
    return f"{x:>{width}.4g}"


def format_table(report) -> list[str]:
    """The check table as lines (one row per estimator and target)."""
    head = (f"{'estimator':<33} {'target':<17} {'exact':>9} {'E[est]':>9} {'MC mean ± se':>21} {'z':>7} "
            f"{'z(E)':>6} {'cos':>8} {'|E|/|∇|':>8}  verdict")
    lines = []
    section = None
    for r in report.rows:
        if r.section != section:
            section = r.section
            if lines:
                lines.append("")
            note = {"KL value": "values, nats per sequence",
                    "KL gradient": "gradients of the penalty, projected on the unit target gradient",
                    "policy gradient": "ascent directions, projected on the unit grad E[r]",
                    "preference labels": "BT pairs of distinct pi completions, tau = 1; per-pair means",
                    "presets": "each preset's trainer loss on sampled batches, projected on its unit target"}[section]
            lines.append(f"-- {section} ({note})")
            lines.append(head)
        mc = f"{r.mc_mean:.4g} ± {r.mc_se:.2g}"
        z_e = f"{r.z_expected:>6.1f}" if np.isfinite(r.z_expected) else f"{'-':>6}"
        cos = "-" if r.cos is None else f"{r.cos:.6f}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.4g}"
        lines.append(f"{r.estimator:<33} {r.target:<17} {_fmt(r.exact)} {_fmt(r.expected)} {mc:>21} "
                     f"{r.z:>7.1f} {z_e} {cos:>8} {ratio:>8}  {r.verdict}")
    return lines


@click.command("check")
@click.option("--task", default=DEFAULT_CHECK_TASK, show_default=True,
              help="Task to enumerate (arith and length have 0/1 rewards; pref uses its gold reward).")
@click.option("--samples", type=int, default=2000, show_default=True,
              help="Monte-Carlo draws per estimator (KL: batches of 16 sequences; policy gradient: one group "
                   "of G=8 completions for each of 4 prompts).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the upstream models and of the draws.")
@click.option("--figure", type=click.Path(dir_okay=False), default=None,
              help="Also draw the table as a figure (.png, .svg or .pdf).")
@click.option("--all-algos", "all_algos", is_flag=True,
              help="Also every registered advantage estimator outside the classic four (REINFORCE++, ReMax, GPG, "
                   "OPO, pass@k, ...), the k3+ / ratio-corrected k3 KL rows, and one row per preset and library "
                   "preset (plus entropy masks and GDPO) with its partition-invariance verdict.")
def check_cmd(task, samples, seed, figure, all_algos):
    """Exact expectations and gradients vs Monte-Carlo estimates of the project's estimators (KL k1/k2/k3 as
    values, losses and rewards; REINFORCE, RLOO, Dr. GRPO, GRPO policy gradients; the Bayes ceiling of the
    reward model's preference pairs)."""
    if task not in TASKS:                          # refused before the exact engine is imported (1-2 s)
        raise UserError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if samples < 2:
        raise UserError(f"--samples must be at least 2, got {samples}")
    from toyrlhf import check, stages
    from toyrlhf.plotting import check_figure, output_format, save_figure
    if figure is not None:
        output_format(figure)                      # refuse a bad extension before the work
    t0 = time.perf_counter()
    pipe = stages.Pipeline(pretrain=stages.PretrainConfig(task=task, seed=seed))
    with progress_bar(pipe.pretrain.steps + pipe.sft.steps, f"pretrain + sft {task} (cached after)",
                      ("loss",)) as bar:
        stages.cached_sft(pipe, counted(bar))
    with progress_bar(check.check_steps(all_algos), f"check {task}") as bar:
        report = check.run_check(task, samples, seed, progress=bar, all_algos=all_algos)
    info = report.info
    click.echo(f"toyrlhf check: task {task}, pi = SFT model, pi_ref = SFT weights moved "
               f"{info['ref_mix']:g} of the way back to the pretrained weights")
    click.echo(f"  {info['n_completions']:,} completions enumerated over {info['n_prompts']} prompts; "
               f"exact KL(pi||ref) = {info['kl_reverse']:.4f}, KL(ref||pi) = {info['kl_forward']:.4f} nats")
    click.echo(f"  KL draws: {samples} x {info['kl_batch']} sequences on uniform prompts; policy-gradient draws: "
               f"{samples} x {len(info['pg_prompts'])} prompts x G={info['group_size']} "
               f"(B={info['pg_batch']}), reward {info['reward']}")
    click.echo(f"  preference draws: {info['pref_pairs']:,} labelled pairs of distinct completions on uniform "
               f"prompts; target: their exact Bayes ceiling E[sigma(|Delta r*|)] over every such pair")
    pp = ", ".join(f"[{p}] {q:.3f}" for p, q in zip(info["pg_prompts"], info["pg_p"]))
    click.echo(f"  policy-gradient prompts, exact P(correct): {pp}")
    click.echo("  z = (MC - exact)/se (estimator vs truth); z(E) = (MC - E[est])/se (real estimator code vs the "
               "exact engine); cos, |E|/|∇| of the exact E[estimator]")
    click.echo("")
    for line in format_table(report):
        click.echo(line)
    click.echo("")
    if figure is not None:
        info.setdefault("task", task)
        info.setdefault("samples", samples)
        save_figure(check_figure(report), figure)
    worst = max((abs(r.z_expected) for r in report.rows if np.isfinite(r.z_expected)), default=0.0)
    echo_summary(f"checked {len(report.rows)} estimator rows in {time.perf_counter() - t0:.1f} s", [
        ("max |z(E)|", f"{worst:.2f} ({'MC agrees with the exact engine' if worst <= check.Z_MAX else 'MISMATCH'})"),
        (f"{info['accuracy_label']} under pi (exact)", f"{info['accuracy']:.4f}"),
    ])


def register(app) -> None:
    app.add_command(check_cmd)
