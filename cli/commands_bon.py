"""`toyrlhf bon --n 1,2,4,...,256`: exact best-of-n on the SFT policy with the reward model as the scorer."""
from __future__ import annotations

import json

import click

from toyrlhf.errors import UserError
from toyrlhf.tasks import DEFAULT_TASK

from .commands_rl import resolve_config
from .common import set_option


@click.command("bon")
@click.option("--n", "ns", default="1,2,4,...,256", show_default=True,
              help="Comma-separated n; '...' continues the ratio of the two numbers before it.")
@click.option("--task", default=None, help=f"Task name (default {DEFAULT_TASK}).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of the upstream models (default 0).")
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def bon_cmd(ns, task, seed, overrides, as_json):
    """Best-of-n (inference time, no training): for each n, the exact gold and proxy (RM) reward of the best of n
    SFT samples by RM score, its exact KL(pi_bon || pi_sft) and the bound log n - (n-1)/n."""
    from toyrlhf import budget, stages
    from toyrlhf.rl.bon import best_of_n_report, parse_ns
    try:
        n_list = parse_ns(ns)
    except ValueError as e:
        raise UserError(str(e)) from None
    if n_list[-1] > 1_000_000:
        raise UserError(f"--n: at most 1000000, got {n_list[-1]}")
    cfg = resolve_config("grpo", task=task, seed=seed, overrides=overrides)
    budget.check_rl(cfg)
    stages.cache_dir()
    rows = best_of_n_report(cfg, n_list)
    if as_json:
        click.echo(json.dumps(rows))
        return
    click.echo(f"best-of-n on {cfg.task}, seed {cfg.seed}: SFT policy, reward-model scorer (exact, every completion)")
    click.echo(f"{'n':>6}  {'gold':>8}  {'proxy':>8}  {'KL exact':>9}  {'KL bound':>9}")
    for r in rows:
        click.echo(f"{r['n']:>6}  {r['gold_reward']:>8.4f}  {r['proxy_reward']:>8.4f}  {r['kl']:>9.4f}  "
                   f"{r['kl_bound']:>9.4f}")


def register(app) -> None:
    app.add_command(bon_cmd)
