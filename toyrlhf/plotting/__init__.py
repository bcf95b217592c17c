"""Learning curves, seed bands and algorithm comparisons, drawn from run folders (config.json + metrics.jsonl).

    plot_run_curves(run_dir, out)                  one run folder (RL or a stage), a panel per metric: its curves.png
    plot_runs(run_dirs, metrics, out, smooth=K)    runs grouped by algorithm: mean over seeds, 95% bootstrap band
    plot_runs(run_dirs, None, out, frontier=True)  training and gold reward against sqrt(KL) (Gao et al. 2022)
    comparison_table(run_dirs) -> rows             final gold reward (mean, 95% t-interval over seeds), KL, wall time
    table_markdown(rows), table_csv(rows)

One job per module: style (look, colours, saving), stats (smoothing, bootstrap, t-interval), run_data (run folders
as data), curves, frontier, tables, check_figure, helper (the process `toyrlhf run` has draw its curves.png).
Matplotlib is used through `Figure` objects and the Agg canvas only (no pyplot): nothing global is left behind, and
it works in worker processes without a display. The output format follows the file extension (.png, .svg, .pdf);
files are written atomically and deterministically (fixed bootstrap seed, no dates in SVG/PDF metadata).
"""
from __future__ import annotations

from .check_figure import check_figure
from .curves import (COMPARE_METRICS, DEFAULT_METRICS, RUN_CURVE_METRICS, STAGE_METRICS, default_metrics,
                     plot_run_curves, plot_runs, run_curves_figure, runs_figure, stage_curves_figure)
from .frontier import frontier_figure, frontier_points
from .run_data import (Run, aligned, available_metrics, check_metrics, final_value, find_runs, group_runs, load_run,
                       runs_text, seed_count, seed_values, wall_time)
from .stats import BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED, LEVEL, binned_means, bootstrap_band, smooth, t_interval
from .style import FORMATS, METRIC_LABELS, PALETTE, colour_for, metric_label, output_format, save_figure, style_for
from .tables import CSV_COLUMNS, comparison_table, table_csv, table_markdown

__all__ = ["BOOTSTRAP_SAMPLES", "BOOTSTRAP_SEED", "COMPARE_METRICS", "CSV_COLUMNS", "DEFAULT_METRICS", "FORMATS",
           "LEVEL", "METRIC_LABELS", "PALETTE", "RUN_CURVE_METRICS", "Run", "STAGE_METRICS", "aligned",
           "available_metrics", "binned_means", "bootstrap_band", "check_figure", "check_metrics", "colour_for",
           "comparison_table", "default_metrics", "final_value", "find_runs", "frontier_figure", "frontier_points",
           "group_runs", "load_run", "metric_label", "output_format", "plot_run_curves", "plot_runs",
           "run_curves_figure", "runs_figure", "runs_text", "save_figure", "seed_count", "seed_values",
           "smooth", "stage_curves_figure", "style_for", "t_interval", "table_csv", "table_markdown", "wall_time"]
