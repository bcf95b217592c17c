"""`toyrlhf sample RUN_DIR` (what the trained policy writes, as text, with its rewards) and `toyrlhf export RUN_DIR
--csv` (metrics.jsonl as a CSV file)."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from toyrlhf import tokens as tk
from toyrlhf.errors import UserError
from toyrlhf.run_logs import metrics_csv
from toyrlhf.runs import atomic_write_bytes


@click.command("sample")
@click.argument("run_dir", type=click.Path(), metavar="RUN_DIR")
@click.option("--n", "n", type=int, default=8, show_default=True, help="Completions to sample (one prompt each).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the prompts and the sampling.")
@click.option("--temperature", type=float, default=None, help="Sampling temperature (default: the run's).")
def sample_cmd(run_dir, n, seed, temperature):
    """Sample completions from the run's checkpointed policy and print them as text, with the reward the run
    optimises (the reward model's normalised score, or the rule) and the task's gold reward."""
    from toyrlhf.api import load_run
    if not 1 <= n <= 10_000:
        raise UserError(f"--n must be between 1 and 10000, got {n}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    run = load_run(run_dir)
    temp = run.config.temperature if temperature is None else temperature
    if not temp > 0:
        raise UserError(f"--temperature must be > 0, got {temp}")
    task, rng = run.trainer.task, np.random.default_rng([seed, 17])
    prompts = task.sample_prompts(n, rng)
    s = run.policy.sample(prompts, task.max_new_tokens, rng, temp)
    prompt_rows, completions = tk.split(s.tokens, task.prompt_len)
    gold = task.gold_reward(prompt_rows, completions)
    proxy = run.trainer.reward_fn(s.tokens, s.mask, prompt_rows, completions)
    source = "reward model (normalised score)" if run.trainer.reward_fn.source == "rm" else "rule"
    click.echo(f"{run_dir}: {run.config.algo} on {task.name}, step {run.trainer.step_count} of {run.config.steps}; "
               f"reward = {source}; temperature {temp:g}")
    texts = [task.describe(p, c) for p, c in zip(prompt_rows, completions)]
    width = max(len(t) for t in texts)
    click.echo(f"  {'completion':<{width}}  {'reward':>7}  {'gold':>7}")
    for t, r, g in zip(texts, proxy, gold):
        click.echo(f"  {t:<{width}}  {r:+7.3f}  {g:+7.3f}")
    click.echo(f"  {'mean':<{width}}  {float(np.mean(proxy)):+7.3f}  {float(np.mean(gold)):+7.3f}")


@click.command("export")
@click.argument("run_dir", type=click.Path(), metavar="RUN_DIR")
@click.option("--csv", "as_csv", is_flag=True, required=True, help="Write metrics.jsonl as CSV (the only format).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Output file (default RUN_DIR/metrics.csv).")
def export_cmd(run_dir, as_csv, out):
    """Export a run's metrics.jsonl as CSV: one row per step, one column per metric."""
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir}: no such run folder")
    text = metrics_csv(run_dir)
    out = Path(out) if out else Path(run_dir) / "metrics.csv"
    atomic_write_bytes(out, text.encode())
    lines = text.splitlines()
    click.echo(f"wrote {out}: {len(lines) - 1} steps x {len(lines[0].split(','))} columns")


def register(app) -> None:
    app.add_command(sample_cmd)
    app.add_command(export_cmd)
