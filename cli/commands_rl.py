"""`toyrlhf run ALGO | run --resume DIR | algos`: RL from the cached SFT (and reward) models."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from toyrlhf.locks import folder_lock
from toyrlhf.settings import from_dict, load_config_file, parse_set_options, to_dict, with_overrides
from toyrlhf.errors import UserError
from toyrlhf.rl.advantages import ADVANTAGE_ESTIMATORS
from toyrlhf.library_names import NAMES
from toyrlhf.rl.algorithms import ALGORITHMS, KNOB_COLUMNS, LIBRARY_PRESETS, METHODS, PARADIGM, PRESETS
from toyrlhf.rl.losses import AGGREGATIONS, KL_ESTIMATORS, ROLLOUT_CORRECTIONS
from toyrlhf.rl.surrogates import SURROGATES
from toyrlhf.runs import INITIAL_STEPS, final_window, prepare_run_dir, removed_on_failure
from toyrlhf.tasks import DEFAULT_TASK, TASKS

from .common import counted, echo_summary, progress_bar, set_option, whole_process

if TYPE_CHECKING:      # the annotations only: the config module is imported inside the commands (fast start)
    from toyrlhf.config import RLConfig


def train(cfg, run_dir, **kwargs) -> dict:
    """toyrlhf.rl.run.train, imported on the first call: the CLI imports heavy modules inside its commands so that
    `toyrlhf --help` starts without numba, scipy.stats or matplotlib."""
    from toyrlhf.rl.run import train as train_run
    return train_run(cfg, run_dir, **kwargs)


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config(algo: str | None, *, config_file=None, task=None, steps=None, seed=None, overrides=()) -> RLConfig:
    """Preset knobs < config file < explicit options < --set. One-line UserError for anything wrong."""
    from toyrlhf.config import RLConfig
    file_data = load_config_file(config_file) if config_file else {}
    algo = algo or file_data.get("algo")
    if algo is None:
        raise UserError("name an algorithm (toyrlhf algos lists them) or pass --config")
    if not isinstance(algo, str):
        raise UserError(f"algo: expected the name of an algorithm, got {algo!r:.60}")
    if algo not in ALGORITHMS and algo != "custom":
        raise UserError(f"unknown algorithm {algo!r}; choose from {', '.join(ALGORITHMS)}")
    data = {"algo": algo, **(ALGORITHMS[algo].knobs if algo in ALGORITHMS else {})}
    data = _deep_merge(data, file_data)
    data["algo"] = algo
    if file_data:   # the file must be valid on its own, even where options below override it
        try:
            from_dict(RLConfig, data)
        except UserError as e:
            raise UserError(f"{config_file}: {e}") from None
    for key, value in (("task", task), ("steps", steps), ("seed", seed)):
        if value is not None:
            data[key] = value
    if task is not None and task not in TASKS:
        raise UserError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    cfg = from_dict(RLConfig, data)
    sets = parse_set_options(overrides)
    for name, option in (("task", "--task"), ("seed", "--seed")):   # one task and seed for the whole pipeline
        if f"pretrain.{name}" in sets:
            raise UserError(f"pretrain.{name} follows the run's {name}; use {option} (or --set {name}=...)")
    cfg = with_overrides(cfg, sets)
    check_against_task(cfg)
    return cfg


def check_against_task(cfg: RLConfig) -> None:
    """Settings that are only wrong for the run's task, checked before anything is built or written."""
    if cfg.task not in TASKS:
        raise UserError(f"unknown task {cfg.task!r}; choose from {', '.join(TASKS)}")
    if cfg.seed < 0:
        raise UserError(f"seed must be >= 0, got {cfg.seed}")
    try:
        cfg.check_task()
    except ValueError as e:
        raise UserError(str(e).splitlines()[0]) from None


@click.command("run", context_settings={"ignore_unknown_options": False})
@click.argument("algo", required=False)
@click.option("--task", default=None, help=f"Task name (default {DEFAULT_TASK}; see `toyrlhf tasks`).")
@click.option("--steps", type=int, default=None, help="RL steps (default 500).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the run and of its upstream models (default 0).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder (default runs/<algo>-<task>-s<seed>-<time>).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML (or a run's config.json) with settings; options and --set override it.")
@set_option
@click.option("--exact", is_flag=True, help="Log exact_* metrics by enumerating every completion (small tasks).")
@click.option("--resume", type=click.Path(file_okay=False), default=None,
              help="Continue the interrupted run in this folder.")
@click.option("--overwrite", is_flag=True, help="Replace the contents of a non-empty --out folder.")
def run_cmd(algo, task, steps, seed, out, config_file, overrides, exact, resume, overwrite):
    """Train a policy with an RL algorithm (ppo, grpo, dr_grpo, dapo, rloo, reinforce, gspo) or a method of the
    unified paradigm (sft, rft, online_rft, dpo, online_dpo; `toyrlhf algos`)."""

    if steps is not None and steps < 1:
        raise UserError(f"--steps must be a positive integer, got {steps}")
    with contextlib.ExitStack() as stack:
        cfg, run_dir, exact = _prepare(stack, algo, task, steps, seed, out, config_file, overrides, exact, resume,
                                       overwrite)
        helper = stack.enter_context(_curves_helper())   # ended before the folder's lock is released
        _train(cfg, run_dir, resume, exact, helper)


def _curves_helper():
    """A plotting.helper.CurvesHelper that imports matplotlib while the run trains, when `toyrlhf` is the whole
    process (it exits after the run, and nothing in it has drawn yet); else a null context: main(argv) called from
    Python (tests, notebooks) draws in its own process, where matplotlib may already be imported."""
    if not whole_process():
        return contextlib.nullcontext()
    from toyrlhf.plotting.helper import CurvesHelper
    return CurvesHelper()


def _echo_run_summary(cfg, run_dir, summary: dict) -> None:
    """The run's summary: models in memory, each figure's initial -> final means, wall time per step."""
    rows = [("models in memory", ", ".join(f"{k} {v:,}" for k, v in summary["models"].items()))]
    for key, label_ in (("reward", "reward (optimised)"), ("gold_reward", "gold reward"), ("kl", "KL to reference"),
                        ("response_length", "response length"), ("explained_variance", "explained variance"),
                        ("exact_gold_reward", "exact gold reward")):
        if f"final_{key}" in summary and summary[f"final_{key}"] is not None:
            rows.append((label_, f"{_num(summary.get(f'initial_{key}'))} -> {_num(summary[f'final_{key}'])}"))
    n = summary["steps"]
    rows.append(("(initial -> final)", f"means over steps 1-{min(INITIAL_STEPS, n)} -> over the last {final_window(n)} "
                                      f"steps"))
    rows.append(("wall time", f"{summary['wall_time_s']:.2f} s ({summary['step_time_ms']:.2f} ms/step)"))
    echo_summary(f"{cfg.algo} on {cfg.task}, {summary['steps']} steps, seed {cfg.seed} -> {run_dir}", rows)


def _prepare(stack, algo, task, steps, seed, out, config_file, overrides, exact, resume, overwrite):
    """The run's config and its locked run folder: every check (settings, time and memory bounds, a folder another
    process is using) before anything is written."""
    from toyrlhf import budget, stages
    from toyrlhf.rl.run import resume_config
    if resume:
        if algo or config_file or task or seed is not None or overrides or out or overwrite:
            raise UserError("--resume takes the run folder only (its config.json holds the settings; "
                            "--steps may extend the run)")
        run_dir = Path(resume)
        if not run_dir.is_dir():
            raise UserError(f"{run_dir}: no such run folder")
        stack.enter_context(folder_lock(run_dir))
        cfg = resume_config(run_dir)
        check_against_task(cfg)
        stages.cache_dir()
        if steps is not None and steps != cfg.steps:
            cfg = with_overrides(cfg, {"steps": steps})
        budget.check_rl(cfg)
    else:
        cfg = resolve_config(algo, config_file=config_file, task=task, steps=steps, seed=seed, overrides=overrides)
        if exact and cfg.exact_every == 0:
            cfg = with_overrides(cfg, {"exact_every": 10})
        budget.check_rl(cfg)   # work that cannot finish in 24 h or fit in memory: refused before anything is written
        stages.cache_dir()   # a stage cache we cannot write: one line, before the run folder is made
        created = out is None or not Path(out).exists()
        if out is not None:   # lock first, so that two runs with the same --out cannot both find it empty
            stack.enter_context(folder_lock(out))
        run_dir = prepare_run_dir(out, f"{cfg.algo}-{cfg.task}-s{cfg.seed}", overwrite=overwrite)
        stack.enter_context(removed_on_failure(run_dir, created))
        if out is None:
            stack.enter_context(folder_lock(run_dir))
    return cfg, run_dir, exact or (resume is not None and cfg.exact_every > 0)


def _train(cfg, run_dir, resume, exact, helper=None) -> dict:
    """The run under its progress bars. The summary is printed as soon as summary.json is written, the bars closed
    first, before curves.png is drawn (still under the folder's lock: no other toyrlhf process sees the run
    without it)."""
    with contextlib.ExitStack() as bars:
        build_bar = bars.enter_context(progress_bar(cfg.pretrain.steps + cfg.sft.steps + cfg.rm.steps,
                                                    "upstream models (cached after)", ("loss",)))
        bar = bars.enter_context(progress_bar(cfg.steps, f"{cfg.algo} on {cfg.task}",
                                              ("reward", "gold_reward", "kl")))

        def on_summary(summary: dict) -> None:
            bars.close()     # their last lines, then the summary
            _echo_run_summary(cfg, run_dir, summary)
        # Interrupted (exit 130) and NumericalError (exit 3) are reported by toyrlhf.cli.main
        return train(cfg, run_dir, progress=bar, resume=bool(resume), build_progress=counted(build_bar),
                     exact=exact, on_summary=on_summary, curves=helper.draw if helper is not None else None)


KNOB_REGISTRIES = {"advantage": ADVANTAGE_ESTIMATORS, "ratio": SURROGATES, "aggregation": AGGREGATIONS,
                   "kl_estimator": KL_ESTIMATORS, "rollout_correction": ROLLOUT_CORRECTIONS}
"""The knobs whose values are registered functions: `toyrlhf algos` lists every entry with its equation and paper."""


@click.command("algos")
@click.option("--names", "library", type=click.Choice(sorted(NAMES)), default=None,
              help="Only the table of a library's option names -> toyrlhf settings (`--set` accepts TRL's; verl's "
                   "and OpenRLHF's are listed).")
def algos_cmd(library):
    """The presets as settings of orthogonal knobs, with DeepSeekMath's gradient coefficient (Table 10 notation)."""
    from toyrlhf.config import RLConfig
    if library is not None:
        rows = NAMES[library]
        w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
        click.echo(f"{library + ' option':<{w0}}  {'toyrlhf setting':<{w1}}  mapping")
        for a, b, how in rows:
            click.echo(f"{a:<{w0}}  {b:<{w1}}  {how}")
        return
    defaults = to_dict(RLConfig())
    header = ("preset",) + KNOB_COLUMNS
    table = []
    for name, p in {**PRESETS, **LIBRARY_PRESETS}.items():
        vals = {**defaults, **p.knobs}
        if vals["kl"] == "none":  # no KL term: its estimator and coefficient do not apply
            vals["kl_estimator"] = vals["beta"] = None
        table.append((name,) + tuple(_fmt(vals[c]) for c in KNOB_COLUMNS))
    widths = [max(len(str(r[i])) for r in [header] + table) for i in range(len(header))]
    line = lambda r: "  ".join(f"{str(v):<{w}}" for v, w in zip(r, widths)).rstrip()
    click.echo(line(header))
    click.echo(line(tuple("-" * w for w in widths)))
    for r in table:
        click.echo(line(r))
    click.echo("\nGradient coefficient GC(q, o, t) in  grad J = E[(1/|o|) sum_t GC * grad log pi(o_t)]"
               "  (Shao et al. 2024, eq. 5):")
    for name, p in PRESETS.items():
        click.echo(f"  {name:<10} {p.gradient_coefficient}")
    click.echo("\nSources and one-line differences:")
    for name, p in PRESETS.items():
        click.echo(f"  {name:<10} {p.note}  [{p.paper}]")
    click.echo("\nLibrary defaults (`toyrlhf run NAME`; `toyrlhf algos --names trl|verl|openrlhf`):")
    lw = max(len(n) for n in LIBRARY_PRESETS)
    for name, p in LIBRARY_PRESETS.items():
        click.echo(f"  {name:<{lw}} {p.note}  [{p.paper}]")
    for knob, registry in KNOB_REGISTRIES.items():
        click.echo(f"\n--set {knob}=NAME  ({registry.kind}):")
        width = max(len(n) for n in registry)
        for name, entry in registry.items():
            critic = "  [critic]" if entry.needs_critic else ""
            click.echo(f"  {name:<{width}}  {entry.equation}{critic}  [{entry.paper}]")
    _paradigm_table()


def _paradigm_table() -> None:
    """DeepSeekMath's Table 10 (Shao et al. 2024, §5.2.1): every method's data source, reward and coefficient."""
    click.echo("\nThe unified paradigm (Shao et al. 2024, §5.2.1, Table 10): `toyrlhf run METHOD` for every row")
    header = ("method", "data source", "reward function", "gradient coefficient GC(q, o, t)")
    rows = [(r.name, r.data, r.reward, r.coefficient) for r in PARADIGM]
    widths = [max(len(x[i]) for x in [header] + rows) for i in range(3)]
    for r in [header, tuple("-" * w for w in widths) + ("-" * len(header[3]),)] + rows:
        click.echo("  ".join(f"{v:<{w}}" for v, w in zip(r[:3], widths)) + "  " + r[3])
    click.echo("\nMethods (--set pref_loss=sigmoid|ipo|hinge, sft_coef=ALPHA, beta=BETA, rft_keep=correct|best):")
    for name, p in ALGORITHMS.items():
        if name in METHODS:
            click.echo(f"  {name:<10} {p.note}  [{p.paper}]")


def _num(v) -> str:
    """A summary figure to 3 decimals; "n/a" when it was not measured (e.g. no --exact step among the first 10)."""
    return "n/a" if v is None else f"{v:.3f}"


def _fmt(v):
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "-"
    return str(v)


def register(app):
    app.add_command(run_cmd)
    app.add_command(algos_cmd)
