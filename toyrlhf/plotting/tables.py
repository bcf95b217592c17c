"""The comparison table (`compare`, `sweep`): per algorithm, the final gold reward with a 95% t-interval over
seeds, final reward, KL, length and wall time; as Markdown and CSV."""
from __future__ import annotations

import csv
import io
import math

import numpy as np

from .run_data import Run, final_value, group_runs, load_run, wall_time
from .stats import t_interval

def comparison_table(run_dirs) -> list[dict]:
    """Per algorithm: seeds, final gold reward (mean and 95% Student-t interval over seeds), final training reward,
    KL and response length (means over seeds), wall time per run (mean) — one dict per algorithm."""
    runs = [r if isinstance(r, Run) else load_run(r) for r in run_dirs]
    out = []
    for name, group in group_runs(runs).items():
        gold, half = t_interval([final_value(r, "gold_reward") for r in group])

        def mean_of(key):
            vals = [v for v in (final_value(r, key) for r in group) if v is not None]
            return float(np.mean(vals)) if vals else math.nan

        out.append({"algo": name, "seeds": len(group), "steps": max(r.steps for r in group),
                    "final_gold_reward": gold, "final_gold_reward_ci95": half,
                    "final_gold_reward_lo": gold - half, "final_gold_reward_hi": gold + half,
                    "final_reward": mean_of("reward"), "final_kl": mean_of("kl"),
                    "final_response_length": mean_of("response_length"),
                    "wall_time_s": float(np.mean([wall_time(r) for r in group]))})
    return out


def _fmt(x, digits=3) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def table_markdown(rows: list[dict]) -> str:
    head = ("| algorithm | seeds | final gold reward (95% CI) | final training reward | final KL (nats / sequence) | "
            "response length (tokens) | wall time per run (s) |\n|---|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['algo']} | {r['seeds']} | {_fmt(r['final_gold_reward'])}"
        f"{' ± ' + _fmt(r['final_gold_reward_ci95']) if math.isfinite(r['final_gold_reward_ci95']) else ''} | "
        f"{_fmt(r['final_reward'])} | {_fmt(r['final_kl'])} | {_fmt(r['final_response_length'], 2)} | "
        f"{_fmt(r['wall_time_s'], 1)} |\n" for r in rows)
    note = ("\nfinal = mean over each run's last max(1, min(25, steps // 5)) steps; ± is the half-width of a 95% "
            "Student-t interval over seeds (scipy.stats.t, n − 1 degrees of freedom; none for one seed); "
            "other columns are means over seeds.\n")
    return head + body + note


CSV_COLUMNS = ("algo", "seeds", "steps", "final_gold_reward", "final_gold_reward_ci95", "final_gold_reward_lo",
               "final_gold_reward_hi", "final_reward", "final_kl", "final_response_length", "wall_time_s")


def table_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow(["" if isinstance(r[c], float) and not math.isfinite(r[c]) else
                    (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in CSV_COLUMNS])
    return buf.getvalue()
