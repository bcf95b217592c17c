"""`toyrlhf plot RUN_DIR...` (learning curves with seed bands, or the reward-vs-KL frontier) and
`toyrlhf compare ALGO...` (every algorithm x seed in parallel processes, then a figure and a table)."""
from __future__ import annotations

import time
from pathlib import Path

import click

from toyrlhf.errors import UserError
from toyrlhf.locks import folder_lock

from .common import RUNS_FAILED, set_option, sigterm_as_interrupt


# ------------------------------------------------------------------------------------------ plot
@click.command("plot")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(), metavar="RUN_DIR...")
@click.option("--metric", "metrics", multiple=True, metavar="M",
              help="Metric to draw, one panel each (repeatable; default gold_reward, reward, kl, entropy, "
                   "response_length; a pretrain/sft/rm folder: loss and accuracy).")
@click.option("--smooth", type=int, default=1, show_default=True, metavar="K",
              help="Trailing moving average over the last K steps, per seed, before averaging.")
@click.option("--frontier", is_flag=True,
              help="Training and gold reward against sqrt(KL) instead of curves against step (Gao et al. 2022), "
                   "over the exact optimal frontier of the runs' task and reference policy.")
@click.option("--no-exact", "no_exact", is_flag=True,
              help="With --frontier: leave out the exact frontier (it enumerates every completion of the task).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file; .png, .svg or .pdf (default plot.png, or frontier.png with --frontier).")
def plot_cmd(run_dirs, metrics, smooth, frontier, no_exact, out):
    """Plot runs against step, grouped by algorithm: the mean over seeds with a 95% bootstrap band.

    A folder of run folders (a compare or sweep folder) stands for its runs, one level down, so `toyrlhf plot
    runs/*/` works once compare has written there; any other folder without metrics.jsonl is skipped with a note."""
    from toyrlhf import plotting

    if smooth < 1:
        raise UserError(f"--smooth must be a positive integer, got {smooth}")
    if frontier and metrics:
        raise UserError("--frontier draws reward and gold_reward against sqrt(kl); drop --metric")
    out = Path(out or ("frontier.png" if frontier else "plot.png"))
    plotting.output_format(out)
    paths, descended, skipped = plotting.find_runs(run_dirs)
    runs = [plotting.load_run(d) for d in paths]
    shown = plotting.check_metrics(runs, ["reward", "gold_reward", "kl"] if frontier else
                                   list(metrics) or plotting.default_metrics(runs))
    fronts = None
    if frontier and not no_exact:
        if any(r.stage for r in runs):
            raise UserError("--frontier draws RL runs; a pretrain/sft/rm folder has no KL to a reference")
        fronts = _exact_frontiers([r.path for r in runs])
    plotting.plot_runs(runs, None if frontier else shown, out, smooth=smooth, frontier=frontier,
                       exact_frontiers=fronts)
    notes = [f"{len(descended)} folder{'s' if len(descended) != 1 else ''} of runs plotted as their "
             f"{sum(descended.values())} runs ({', '.join(str(p) for p in list(descended)[:3])}"
             f"{', ...' if len(descended) > 3 else ''})"] if descended else []
    if skipped:
        notes.append(f"skipped {len(skipped)} folder{'s' if len(skipped) != 1 else ''} without runs "
                     f"({', '.join(str(p) for p in skipped[:3])}{', ...' if len(skipped) > 3 else ''})")
    if notes:
        click.echo(f"toyrlhf: note: {'; '.join(notes)}", err=True)
    groups = plotting.group_runs(runs)
    click.echo(f"wrote {out}: {len(runs)} run{'s' if len(runs) != 1 else ''} in {len(groups)} "
               f"group{'s' if len(groups) != 1 else ''}")
    width = max(len(g) for g in groups)
    for name, group in groups.items():
        click.echo(f"  {name:<{width}}  {plotting.runs_text(group)}")
    click.echo(f"  metrics: {'reward, gold_reward vs sqrt(kl)' if frontier else ', '.join(shown)}")
    if fronts:
        _echo_frontier_report(groups, fronts)


def _exact_frontiers(paths) -> list:
    """The exact frontiers under RL runs (toyrlhf.rl.exact_frontier.run_frontiers): `plot --frontier` and
    compare's frontier.png draw the same ones."""
    from toyrlhf.rl.exact_frontier import run_frontiers
    return run_frontiers(list(paths))


def _echo_frontier_report(groups: dict, fronts: list) -> None:
    width = max(len(g) for g in groups)
    click.echo(f"  exact frontier: {len(fronts)} reference{'s' if len(fronts) != 1 else ''}; at each run's final KL "
               f"(means of the last steps, as in summary.json), optimum - run; TV of the final policy to pi* of its "
               f"own objective E[r] - beta KL:")
    click.echo(f"    {'':<{width}}  training reward  gold reward (of the proxy's optimum)  TV(final, pi*)")
    for name, (gap, gold_gap, tv) in _frontier_gaps(groups, fronts).items():
        tv_text = "n/a (no KL term)" if tv is None else f"{tv:.3f}"
        click.echo(f"    {name:<{width}}  {gap:15.3f}  {gold_gap:11.3f}  {tv_text:>39}")


def _frontier_gaps(groups: dict, fronts: list) -> dict:
    """Per group, the means over its runs of frontier_reward_at(final KL) - final reward, of the gold reward of
    the proxy's optimum at that KL - final gold reward (how far below the exact optimum at its own KL an algorithm
    ends), and of the total variation of the final checkpoint to pi* at the run's beta (None without a KL term)."""
    import numpy as np

    from toyrlhf import plotting
    from toyrlhf.exact import frontier_reward_at
    from toyrlhf.rl.exact_frontier import tv_to_optimum

    of_run = {p: f for f in fronts for p in f["runs"]}
    out = {}
    for name, group in groups.items():
        gaps, tvs = [], []
        for r in group:
            kl, reward, gold = (plotting.final_value(r, k) for k in ("kl", "reward", "gold_reward"))
            if None not in (kl, reward, gold) and r.path in of_run:
                f = of_run[r.path]
                gaps.append((frontier_reward_at(f, kl) - reward, float(np.interp(kl, f["kl"], f["gold"])) - gold))
                tvs.append(tv_to_optimum(r.path))
        if gaps:
            tv = None if any(t is None for t in tvs) else float(np.mean(tvs))
            out[name] = (*(float(v) for v in np.mean(gaps, axis=0)), tv)
    return out


# ------------------------------------------------------------------------------------------ compare
def _resolve_configs(algos, task, seeds, steps, overrides) -> dict[tuple[str, int], object]:
    from toyrlhf.settings import from_dict, parse_set_options, with_overrides
    from toyrlhf.config import RLConfig
    from toyrlhf.rl.algorithms import ALGORITHMS

    from .commands_rl import check_against_task
    sets = parse_set_options(overrides)
    for key, option in (("algo", "the ALGO arguments"), ("seed", "--seeds"), ("task", "--task")):
        if key in sets:
            raise UserError(f"--set {key}=... is not allowed in compare; use {option}")
    out = {}
    for algo in algos:
        for seed in range(seeds):
            data = {**ALGORITHMS[algo].knobs, "algo": algo, "task": task, "seed": seed}
            if steps is not None:
                data["steps"] = steps
            cfg = with_overrides(from_dict(RLConfig, data), sets)
            check_against_task(cfg)        # the same up-front checks as `toyrlhf run`, before anything is built
            out[(algo, seed)] = cfg
    return out


def _check_compare_args(algos, task, seeds, steps, jobs) -> tuple[list[str], str]:
    from toyrlhf.rl.algorithms import ALGORITHMS
    from toyrlhf.tasks import DEFAULT_TASK, TASKS

    algos = list(dict.fromkeys(algos))
    for a in algos:
        if a not in ALGORITHMS:
            raise UserError(f"unknown algorithm {a!r}; choose from {', '.join(ALGORITHMS)}")
    task = DEFAULT_TASK if task is None else task      # an explicit --task '' is an unknown task, not the default
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    for name, value in (("--seeds", seeds), ("--steps", steps), ("--jobs", jobs)):
        if value is not None and value < 1:
            raise UserError(f"{name} must be a positive integer, got {value}")
    return algos, task


def _prepare_compare_folder(root: Path, configs: dict, overwrite: bool) -> dict:
    """root/<algo>-s<seed>/ for every run, the folder locked for the command's lifetime; old figures removed."""
    from toyrlhf.runs import prepare_run_dir

    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a folder")
    # one compare per folder at a time: held until the command's click context closes (however it ends)
    click.get_current_context().with_resource(folder_lock(root, "compare folder"))
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise UserError(f"{root}: folder is not empty (use --overwrite)")
    run_dirs = {key: prepare_run_dir(root / f"{key[0]}-s{key[1]}", "", overwrite=overwrite) for key in configs}
    for f in ("comparison.png", "comparison.md", "comparison.csv", "frontier.png"):
        (root / f).unlink(missing_ok=True)
    return run_dirs


def _run_compare(configs: dict, run_dirs: dict, jobs: int, root: Path) -> dict:
    """The missing upstream stages (each once, a level's stages in parallel), then every run, on `jobs` local
    processes (toyrlhf.sweep.local). Returns (algo, seed) -> {'summary': ...} or {'error': one line}."""
    from toyrlhf import stages
    from toyrlhf.sweep.driver import Job
    from toyrlhf.sweep.grid import Point, missing_stage_levels
    from toyrlhf.sweep.local import LocalBackend

    say = lambda text: click.echo(text, err=True)   # noqa: E731
    cache = stages.cache_dir()
    levels = missing_stage_levels(configs.values(), cache)
    n_runs = len(configs)
    results: dict = {}
    backend = LocalBackend(jobs)
    try:
        if levels:
            built = sum(len(lv) for lv in levels)
            say(f"upstream: {built} stage{'s' if built != 1 else ''} to build "
                f"({', '.join(f'{len(lv)} {lv[0].stage}' for lv in levels)}), each once, on {backend.describe()}")
            backend.build_stages(levels, cache, say)
        job_list = [Job(Point({"algo": a, "seed": s}, cfg, f"{a}-s{s}", a), run_dirs[(a, s)], False)
                    for (a, s), cfg in configs.items()]

        def on_result(job, result) -> None:
            results[(job.point.values["algo"], job.point.values["seed"])] = result
            s = result.get("summary")
            gold = s.get("final_gold_reward") if s else None
            say(f"[{len(results)}/{n_runs}] {job.point.name} "
                + ("FAILED" if s is None else "done" + (f", final gold reward {gold:.3f}" if gold is not None else "")))

        say(f"{n_runs} runs on {backend.describe()}")
        backend.run(job_list, cache, on_result)
    except KeyboardInterrupt:
        say(f"toyrlhf: compare stopped after {len(results)} of {n_runs} runs; an unfinished run keeps its metrics "
            f"and checkpoint (toyrlhf run --resume {root}/ALGO-sSEED)")
        raise
    finally:
        backend.close()      # waits for the workers: a stopped run writes its checkpoint first
    return results


def _write_comparison(done: list, configs: dict, algos: list, task: str, seeds: int, root: Path,
                      exact: bool = True) -> tuple[str, list | None]:
    """comparison.png (curves with seed bands), frontier.png (over the runs' exact frontiers unless `exact` is
    false), comparison.md and .csv; returns the Markdown table and the frontiers drawn."""
    from toyrlhf import plotting
    from toyrlhf.runs import atomic_write_bytes

    steps = max(c.steps for c in configs.values())
    k = max(1, steps // 25)
    plotting.plot_runs(done, list(plotting.COMPARE_METRICS), root / "comparison.png", smooth=k)
    fronts = None
    if exact:
        try:
            fronts = _exact_frontiers(done)
        except UserError as e:         # the runs are done: draw them without the frontier rather than fail
            click.echo(f"toyrlhf: note: frontier.png without the exact frontier ({e})", err=True)
    plotting.plot_runs(done, None, root / "frontier.png", smooth=k, frontier=True, exact_frontiers=fronts)
    rows = plotting.comparison_table(done)
    md = plotting.table_markdown(rows)
    header = f"# {', '.join(algos)} on {task}: {seeds} seed{'s' if seeds != 1 else ''} × {steps} steps\n\n"
    atomic_write_bytes(root / "comparison.md", (header + md).encode())
    atomic_write_bytes(root / "comparison.csv", plotting.table_csv(rows).encode())
    return md, fronts


@click.command("compare")
@click.argument("algos", nargs=-1, required=True, metavar="ALGO...")
@click.option("--task", default=None, help="Task name (default pref; see `toyrlhf tasks`).")
@click.option("--seeds", type=int, default=3, show_default=True, metavar="K", help="Seeds 0..K-1 per algorithm.")
@click.option("--steps", type=int, default=None, metavar="N", help="RL steps per run (default 500).")
@click.option("--jobs", type=int, default=None, metavar="J",
              help="Parallel processes (default: the CPUs this process may use).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the runs (<algo>-s<seed>/) and the comparison (default runs/compare-<task>-<time>).")
@click.option("--overwrite", is_flag=True, help="Replace runs already in a non-empty --out folder.")
@click.option("--no-exact", "no_exact", is_flag=True,
              help="Leave the exact optimal frontier out of frontier.png (it enumerates every completion of the task).")
@set_option
def compare_cmd(algos, task, seeds, steps, jobs, out, overwrite, no_exact, overrides):
    """Run every algorithm with seeds 0..K-1 in parallel, then write comparison.png (curves with seed bands),
    frontier.png (reward vs sqrt(KL), over the exact optimal frontier as `plot --frontier` draws it) and the table
    comparison.md / comparison.csv."""
    from toyrlhf import budget
    from toyrlhf.runs import default_run_dir
    from toyrlhf.sweep.local import available_cpus

    algos, task = _check_compare_args(algos, task, seeds, steps, jobs)
    n_runs = len(algos) * seeds
    jobs = min(jobs or available_cpus(), n_runs)
    # the time and memory bound before the (algos x seeds) configs are built: one run of each algorithm, scaled
    for cfg in _resolve_configs(algos, task, 1, steps, overrides).values():
        budget.check_rl(cfg, runs=n_runs, jobs=jobs)
    configs = _resolve_configs(algos, task, seeds, steps, overrides)
    root = Path(out) if out else default_run_dir(f"compare-{task}")
    run_dirs = _prepare_compare_folder(root, configs, overwrite)

    t0 = time.perf_counter()
    with sigterm_as_interrupt():
        results = _run_compare(configs, run_dirs, jobs, root)
    wall = time.perf_counter() - t0
    failed = {k: r["error"] for k, r in results.items() if "error" in r}
    done = [run_dirs[k] for k in configs if k in results and "error" not in results[k]]
    for (algo, seed), err in failed.items():
        click.echo(f"toyrlhf: run {algo}-s{seed} failed: {err}", err=True)
    if not done:
        raise click.exceptions.Exit(RUNS_FAILED)
    md, fronts = _write_comparison(done, configs, algos, task, seeds, root, exact=not no_exact)
    steps_txt = max(c.steps for c in configs.values())
    click.echo(f"compared {', '.join(algos)} on {task}: {len(done)} of {n_runs} runs "
               f"({seeds} seed{'s' if seeds != 1 else ''} × {steps_txt} steps) in {wall:.1f} s on {jobs} "
               f"process{'es' if jobs > 1 else ''} -> {root}")
    click.echo("")
    click.echo(md.rstrip("\n"))
    click.echo("")
    click.echo(f"  figures  {root / 'comparison.png'}, {root / 'frontier.png'}")
    click.echo(f"  tables   {root / 'comparison.md'}, {root / 'comparison.csv'}")
    if fronts:
        from toyrlhf import plotting
        _echo_frontier_report(plotting.group_runs([plotting.load_run(d) for d in done]), fronts)
    if failed:
        raise click.exceptions.Exit(RUNS_FAILED)


def register(app) -> None:
    app.add_command(plot_cmd)
    app.add_command(compare_cmd)
