"""`toyrlhf plot RUN_DIR...` (learning curves with seed bands, or the reward-vs-KL frontier) and
`toyrlhf compare ALGO...` (every algorithm x seed in parallel processes, then a figure and a table)."""
from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import click

from toyrlhf.errors import UserError
from toyrlhf.locks import folder_lock

from .common import set_option, sigterm_as_interrupt


# ------------------------------------------------------------------------------------------ plot
@click.command("plot")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(), metavar="RUN_DIR...")
@click.option("--metric", "metrics", multiple=True, metavar="M",
              help="Metric to draw, one panel each (repeatable; default gold_reward, reward, kl, entropy, "
                   "response_length).")
@click.option("--smooth", type=int, default=1, show_default=True, metavar="K",
              help="Centred moving average over K steps, per seed, before averaging.")
@click.option("--frontier", is_flag=True,
              help="Training and gold reward against sqrt(KL) instead of curves against step (Gao et al. 2022).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file; .png, .svg or .pdf (default plot.png, or frontier.png with --frontier).")
def plot_cmd(run_dirs, metrics, smooth, frontier, out):
    """Plot runs against step, grouped by algorithm: the mean over seeds with a 95% bootstrap band."""
    from toyrlhf import plotting

    if smooth < 1:
        raise UserError(f"--smooth must be a positive integer, got {smooth}")
    if frontier and metrics:
        raise UserError("--frontier draws reward and gold_reward against sqrt(kl); drop --metric")
    out = Path(out or ("frontier.png" if frontier else "plot.png"))
    plotting.output_format(out)
    runs = [plotting.load_run(d) for d in run_dirs]
    plotting.plot_runs(runs, list(metrics), out, smooth=smooth, frontier=frontier)
    groups = plotting.group_runs(runs)
    shown = ("reward, gold_reward vs sqrt(kl)" if frontier else
             ", ".join(metrics) if metrics else
             ", ".join(m for m in plotting.DEFAULT_METRICS if m in plotting.available_metrics(runs)))
    click.echo(f"wrote {out}: {len(runs)} run{'s' if len(runs) != 1 else ''} in {len(groups)} "
               f"group{'s' if len(groups) != 1 else ''}")
    width = max(len(g) for g in groups)
    for name, group in groups.items():
        click.echo(f"  {name:<{width}}  {len(group)} seed{'s' if len(group) != 1 else ''}")
    click.echo(f"  metrics: {shown}")


# ------------------------------------------------------------------------------------------ compare
_STOP = None   # in a worker: the parent's stop event (set on Ctrl-C / SIGTERM)


def _init_worker(stop, parent_pid: int | None = None) -> None:
    """Worker start-up: remember the stop event; ignore SIGINT while idle (a run being trained defers it to the end
    of its step, then stops with its checkpoint written); die with the parent (even kill -9 of compare)."""
    import signal
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        _die_with_parent(parent_pid)


def _die_with_parent(parent_pid: int) -> None:
    """A worker must not outlive compare. On Linux the kernel sends SIGTERM when the parent dies
    (prctl PR_SET_PDEATHSIG; a run being trained defers it to the end of its step, keeping its checkpoint); everywhere
    a daemon thread also checks once a second that the parent is still our parent, and exits if not."""
    import signal
    import threading
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)   # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                os._exit(143)
            time.sleep(1.0)

    if os.getppid() != parent_pid:   # the parent died before prctl took effect
        os._exit(143)
    threading.Thread(target=watch, name="toyrlhf-parent-watch", daemon=True).start()


def _train_one(cfg_dict: dict, run_dir: str) -> dict:
    """Worker (a fresh process): one RL run into run_dir. Returns {'summary': ...} or {'error': one line}.
    When the parent sets the stop event, the run signals itself so that train() stops after the current step
    (metrics and checkpoint kept, resumable); a run not yet started is skipped."""
    import signal

    from toyrlhf.settings import from_dict
    from toyrlhf.config import RLConfig
    from toyrlhf.rl.run import train

    if _STOP is not None and _STOP.is_set():
        return {"error": "not started (compare was stopped)"}

    def progress(step, metrics):
        if _STOP is not None and _STOP.is_set():
            os.kill(os.getpid(), signal.SIGTERM)      # deferred by train(): it stops at this step boundary

    try:
        cfg = from_dict(RLConfig, cfg_dict)
        return {"summary": train(cfg, Path(run_dir), progress=progress)}
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - reported per run by the parent
        return {"error": f"{e.__class__.__name__}: {' '.join(str(e).split())}"}


def _default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def _worker_threads(n: int):
    """Child processes inherit the environment: cap BLAS threads so J processes do not oversubscribe the cores
    (a variable the user set is left alone)."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in names}
    for k in names:
        os.environ.setdefault(k, str(n))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v




def _build_upstream(configs_by_seed: dict[int, list]) -> None:
    """Build (or load) the pretrained, SFT and reward models of every seed serially, before any worker starts,
    so the workers only read the stage cache and never race to write it."""
    from toyrlhf.rl.trainer import build_models

    def stage_steps(cfg) -> int:
        return cfg.pretrain.steps + cfg.sft.steps + cfg.rm.steps

    per_seed = {s: max(stage_steps(c) for c in cfgs) for s, cfgs in configs_by_seed.items()}
    total = sum(per_seed.values())
    with click.progressbar(length=total, label="upstream models, per seed (cached after)", width=24,
                           file=sys.stderr, show_eta=True) as bar:
        done = 0
        for seed, cfgs in configs_by_seed.items():
            last = {"step": 0}

            def progress(step, _metrics=None):
                delta = step - last["step"] if step > last["step"] else step   # a new stage restarts at 1
                last["step"] = step
                bar.update(max(0, min(delta, done + per_seed[seed] - bar.pos)))

            for cfg in cfgs:     # the first config of a seed builds; the others only load from the cache
                build_models(cfg, progress)
            done += per_seed[seed]
            bar.update(done - bar.pos)


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
@set_option
def compare_cmd(algos, task, seeds, steps, jobs, out, overwrite, overrides):
    """Run every algorithm with seeds 0..K-1 in parallel, then write comparison.png (curves with seed bands),
    frontier.png (reward vs sqrt(KL)) and the table comparison.md / comparison.csv."""
    import concurrent.futures as cf
    import multiprocessing

    from toyrlhf import budget, plotting
    from toyrlhf.settings import to_dict
    from toyrlhf.rl.algorithms import ALGORITHMS
    from toyrlhf.runs import atomic_write_bytes, default_run_dir, prepare_run_dir
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
    n_runs = len(algos) * seeds
    jobs = min(jobs or _default_jobs(), n_runs)
    # the time and memory bound before the (algos x seeds) configs are built: one run of each algorithm, scaled
    first = _resolve_configs(algos, task, 1, steps, overrides)
    for cfg in first.values():
        budget.check_rl(cfg, runs=n_runs, jobs=jobs)
    configs = _resolve_configs(algos, task, seeds, steps, overrides)

    root = Path(out) if out else default_run_dir(f"compare-{task}")
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a folder")
    # one compare per folder at a time: held until the command's click context closes (however it ends)
    click.get_current_context().with_resource(folder_lock(root, "compare folder"))
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise UserError(f"{root}: folder is not empty (use --overwrite)")
    run_dirs = {key: prepare_run_dir(root / f"{key[0]}-s{key[1]}", "", overwrite=overwrite) for key in configs}
    for f in ("comparison.png", "comparison.md", "comparison.csv", "frontier.png"):
        (root / f).unlink(missing_ok=True)

    t0 = time.perf_counter()
    by_seed: dict[int, list] = {}
    for (algo, seed), cfg in configs.items():
        by_seed.setdefault(seed, []).append(cfg)
    _build_upstream(by_seed)

    results: dict[tuple[str, int], dict] = {}
    ctx = multiprocessing.get_context("spawn")      # numba + fork is unsafe; spawn starts clean interpreters
    state = {"text": ""}
    stop = ctx.Event()
    with sigterm_as_interrupt(), _worker_threads(max(1, _default_jobs() // jobs)), \
            cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                   initargs=(stop, os.getpid())) as pool, \
            click.progressbar(length=n_runs, label=f"{n_runs} runs on {jobs} process{'es' if jobs > 1 else ''}",
                              file=sys.stderr, width=24, show_eta=True, show_pos=True,
                              item_show_func=lambda _: state["text"]) as bar:
        futures = {pool.submit(_train_one, to_dict(cfg), str(run_dirs[key])): key for key, cfg in configs.items()}
        try:
            for fut in cf.as_completed(futures):
                key = futures[fut]
                try:
                    results[key] = fut.result()
                except Exception as e:  # noqa: BLE001 - e.g. BrokenProcessPool: a worker was killed
                    results[key] = {"error": f"{e.__class__.__name__}: {' '.join(str(e).split())}"}
                s = results[key].get("summary")
                gold = f" gold={s['final_gold_reward']:.3f}" if s and s.get("final_gold_reward") is not None else ""
                state["text"] = f"{key[0]}-s{key[1]} done{gold}" if s else f"{key[0]}-s{key[1]} FAILED"
                bar.update(1)
        except KeyboardInterrupt:
            # the workers see the stop event at their next step and stop there (checkpoint and metrics kept, each
            # run resumable); leaving the `with` waits for them
            stop.set()
            for f in futures:
                f.cancel()
            click.echo(f"\ntoyrlhf: compare stopped after {len(results)} of {n_runs} runs; an unfinished run keeps "
                       f"its metrics and checkpoint (toyrlhf run --resume {root}/ALGO-sSEED)", err=True)
            raise
    wall = time.perf_counter() - t0

    failed = {k: r["error"] for k, r in results.items() if "error" in r}
    done = [run_dirs[k] for k in configs if k in results and "error" not in results[k]]
    for (algo, seed), err in failed.items():
        click.echo(f"toyrlhf: run {algo}-s{seed} failed: {err}", err=True)
    if not done:
        raise click.exceptions.Exit(1)
    k = max(1, max(c.steps for c in configs.values()) // 25)
    plotting.plot_runs(done, list(plotting.COMPARE_METRICS), root / "comparison.png", smooth=k)
    plotting.plot_runs(done, None, root / "frontier.png", smooth=k, frontier=True)
    rows = plotting.comparison_table(done)
    md = plotting.table_markdown(rows)
    steps_txt = max(c.steps for c in configs.values())
    header = (f"# {', '.join(algos)} on {task}: {seeds} seed{'s' if seeds != 1 else ''} × {steps_txt} steps\n\n")
    atomic_write_bytes(root / "comparison.md", (header + md).encode())
    atomic_write_bytes(root / "comparison.csv", plotting.table_csv(rows).encode())
    click.echo(f"compared {', '.join(algos)} on {task}: {len(done)} of {n_runs} runs "
               f"({seeds} seed{'s' if seeds != 1 else ''} × {steps_txt} steps) in {wall:.1f} s on {jobs} "
               f"process{'es' if jobs > 1 else ''} -> {root}")
    click.echo("")
    click.echo(md.rstrip("\n"))
    click.echo("")
    click.echo(f"  figures  {root / 'comparison.png'}, {root / 'frontier.png'}")
    click.echo(f"  tables   {root / 'comparison.md'}, {root / 'comparison.csv'}")
    if failed:
        raise click.exceptions.Exit(1)


def register(app) -> None:
    app.add_command(plot_cmd)
    app.add_command(compare_cmd)
