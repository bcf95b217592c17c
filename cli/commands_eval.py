"""`toyrlhf eval RUN_DIR [--sft]`: exact pass@k and maj@k (k = 1 .. 256) of a run's checkpoint against the SFT
model's, the run's objective against the exact KL-regularised optimum, and a figure."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:      # the annotation only: matplotlib is imported when a figure is drawn
    from matplotlib.figure import Figure


def eval_figure(res: dict, title: str) -> Figure:
    """pass@k (solid) and maj@k (dashed) against k (log2 axis), run and SFT model."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for name, r, color in (("run", res["run"], "C0"), ("SFT", res["sft"], "C7")):
        if r is None:
            continue
        ax.plot(r.ks, r.pass_at_k, "-o", color=color, ms=3, label=f"{name} pass@k")
        ax.plot(r.ks, r.maj_at_k, "--s", color=color, ms=3, label=f"{name} maj@k")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per prompt)")
    ax.set_ylabel("exact probability, mean over prompts")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def format_lines(res: dict) -> list[str]:
    """The eval table (k, pass@k, maj@k for the run and the SFT model) and the optimum rows, as lines."""
    run, sft = res["run"], res["sft"]
    head = f"{'k':>5} {'pass@k SFT':>11} {'maj@k SFT':>10}" + (f" {'pass@k run':>11} {'maj@k run':>10}" if run else "")
    lines = [head]
    for i, k in enumerate(sft.ks):
        row = f"{k:>5} {sft.pass_at_k[i]:>11.4f} {sft.maj_at_k[i]:>10.4f}"
        if run is not None:
            row += f" {run.pass_at_k[i]:>11.4f} {run.maj_at_k[i]:>10.4f}"
        lines.append(row)
    lines.append("maj@k: ties broken uniformly at random; completions without a final answer do not vote")
    o = res["optimum"]
    if o is not None:
        lines += ["", f"objective E[r] - beta KL(pi||ref), beta = {o['beta']:g} (training reward, the run's reference):",
                  f"  run      reward {o['reward']:.4f}  KL {o['kl']:.4f}  gold {o['gold']:.4f}  J {o['J']:.4f}",
                  f"  optimum  reward {o['opt_reward']:.4f}  KL {o['opt_kl']:.4f}  gold {o['opt_gold']:.4f}  "
                  f"J {o['opt_value']:.4f}  (pi* = pi_ref exp(r/beta)/Z)",
                  f"  TV(run, pi*) = {o['tv_to_opt']:.4f}  (mean over prompts)"]
        if "win_value" in o:
            lines += [f"  window   reward {o['win_reward']:.4f}  KL {o['win_kl']:.4f}  gold {o['win_gold']:.4f}  "
                      f"J {o['win_value']:.4f}  (the best policy of the last {o['win_context']} tokens: any TinyLM's "
                      f"class)", f"  TV(window optimum, pi*) = {o['tv_win_to_opt']:.4f}   TV(run, window optimum) = "
                      f"{o['tv_to_win']:.4f}"]
    return lines


@click.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--sft", "sft_only", is_flag=True, help="Only the SFT model the run started from.")
@click.option("--figure", type=click.Path(dir_okay=False), default=None,
              help="Where to draw pass@k / maj@k against k (default RUN_DIR/eval.png).")
def eval_cmd(run_dir, sft_only, figure):
    """Exact pass@k and maj@k (k = 1..256) of RUN_DIR's checkpoint and of the SFT model, and the run against the
    exact optimum of its KL-regularised objective (arith and length)."""
    from toyrlhf.plotting import save_figure
    from toyrlhf.rl.exact_eval import KS, evaluate_run
    res = evaluate_run(run_dir, KS, sft_only=sft_only)
    cfg = res["cfg"]
    for line in format_lines(res):
        click.echo(line)
    out = Path(figure) if figure else Path(run_dir) / "eval.png"
    title = f"{cfg.algo} on {cfg.task}, seed {cfg.seed}: exact pass@k and maj@k"
    save_figure(eval_figure(res, title), out)
    click.echo(f"figure: {out}")


def register(app):
    app.add_command(eval_cmd)
