"""Robustness: interrupt and resume without loss, numerical guards, the environment, determinism under threads.

Exactness of resume is checked two ways:
  * in-process, for every kind of trainer state (PPO's critic and its Adam, DAPO's dynamic sampling that draws extra
    rollouts from the run's RNG, an adaptive-beta (kl_target) run with reference resets): a run stopped at a random
    step by a real SIGINT to this process, or crashed between checkpoints (as by kill -9, with a torn last metrics
    line and a stale temporary file left behind), then resumed, writes the same metrics.jsonl (apart from time_s)
    and ends with the same checkpoint, array for array, as the run that was never stopped;
  * with real subprocesses (`python -m toyrlhf run grpo ...`) killed by SIGINT, SIGTERM and SIGKILL at random steps.
Subprocesses run from a temporary folder, never the repo root, so the installed package is what runs.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import invoke_cli
from toyrlhf.errors import UserError
from toyrlhf.config import preset_config
from toyrlhf.runs import Interrupted, load_npz

UPSTREAM = {"pretrain.steps": 50, "pretrain.corpus_size": 2000, "sft.steps": 20, "rm.steps": 20, "rm.pairs": 200,
            "rm.norm_samples": 256}
SMALL = {"prompts_per_step": 4, "group_size": 4}
SETS = [a for k, v in {**SMALL, **UPSTREAM}.items() for a in ("--set", f"{k}={v}")]
RUN_STEPS, CKPT_EVERY = 60, 5                      # subprocess runs
RUN_ARGS = ["run", "grpo", "--steps", RUN_STEPS, "--set", f"checkpoint_every={CKPT_EVERY}", *SETS]
TEST_SEED = int(os.environ.get("TOYRLHF_TEST_SEED", random.randrange(10**6)))


# ------------------------------------------------------------------------------------------------ helpers
def metrics_lines(run_dir) -> list[str]:
    """metrics.jsonl with time_s removed, one canonical JSON string per step (NaN compares equal as text)."""
    out = []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("time_s")
        out.append(json.dumps(rec, sort_keys=True))
    return out


def checkpoint_arrays(run_dir) -> dict:
    with np.load(Path(run_dir) / "checkpoint.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def assert_same_run(a, b, note=""):
    ma, mb = metrics_lines(a), metrics_lines(b)
    assert len(ma) == len(mb), f"{note}: {len(ma)} vs {len(mb)} metrics lines"
    for i, (x, y) in enumerate(zip(ma, mb)):
        assert x == y, f"{note}: step {i + 1} differs\n{x}\n{y}"
    ca, cb = checkpoint_arrays(a), checkpoint_arrays(b)
    assert sorted(ca) == sorted(cb), note
    for k in ca:
        assert np.array_equal(ca[k], cb[k]), f"{note}: checkpoint array {k!r} differs"


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def cli_env(cache, **extra):
    env = {**os.environ, "MPLBACKEND": "Agg", "TOYRLHF_CACHE_DIR": str(cache), "PYTHONWARNINGS": "ignore"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def popen(args, cwd, env):
    return subprocess.Popen([sys.executable, "-m", "toyrlhf", *map(str, args)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def last_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    assert lines, "nothing on stderr"
    assert "Traceback" not in err, err
    return lines[-1]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def cache_env(shared_cache_dir):
    """TOYRLHF_CACHE_DIR -> the session's shared stage cache, for in-process runs in this module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
        yield shared_cache_dir


@pytest.fixture(scope="module")
def no_plots():
    """In-process runs skip curves.png (matplotlib costs ~1 s a figure and is not what these tests check)."""
    import toyrlhf.rl.run
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(toyrlhf.rl.run, "plot_run_curves", lambda run_dir, out: out)
        yield


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("robustness")


# ------------------------------------------------------------------------------------------------ a process from the start
NO_CACHE_TEST = "test_kernels_compile_in_memory_when_no_numba_cache_location_is_writable"


@pytest.fixture(scope="module", autouse=True)
def no_cache_run(request, shared_cache_dir, workdir):
    """(process, run folder, its log) of NO_CACHE_TEST's run, started before the module's first test when that test
    is selected (else None): with no numba cache location it compiles every kernel a run uses in memory, about 15 s
    of one core, which the tests before it leave to it on a 2-core machine. The upstream stages are built (or
    loaded) here first, in-process, so that it compiles what a run compiles, nothing for the stages."""
    if not any(item.module is request.module and item.originalname == NO_CACHE_TEST for item in request.session.items):
        yield None
        return
    from toyrlhf.rl.trainer import build_models
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
        build_models(case_config("grpo_kl_target"))        # RUN_ARGS's stages: pref, UPSTREAM
    blocker = workdir / "not-a-folder"
    blocker.write_text("")
    out, log = workdir / "nocache-run", workdir / "nocache-run.log"
    code = ("import toyrlhf.kernels as k\n"
            "from numba.core.dispatcher import Dispatcher\n"
            "caches = {type(v._cache).__name__ for v in vars(k).values() if isinstance(v, Dispatcher)}\n"
            "assert caches == {'NullCache'}, caches\n"
            "from toyrlhf.cli.main import main\n"
            f"main({[str(a) for a in ['run', 'grpo', '--steps', 6, '--out', out, *RUN_ARGS[4:]]]!r})\n")
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=workdir, stdout=f, stderr=subprocess.STDOUT,
                                env=cli_env(shared_cache_dir, NUMBA_CACHE_LOCATOR_CLASSES="UserProvidedCacheLocator",
                                            NUMBA_CACHE_DIR=blocker / "numba"))
    try:
        yield proc, out, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------------------ in-process resume
CASES = {
    # critic (value model) + GAE, its own Adam state; 4 epochs x 4 minibatches draw permutations from the RNG
    "ppo": ("ppo", "pref", {}),
    # dynamic sampling: zero-variance groups are replaced by extra rollouts drawn from the same RNG
    "dapo": ("dapo", "length", {}),
    # adaptive beta (Ziegler et al.'s controller state) and reference resets
    "grpo_kl_target": ("grpo", "pref", {"kl_target": 0.3, "kl_horizon": 50, "ref_reset_every": 5}),
}
IN_STEPS, IN_CKPT = 12, 4


def case_config(name):
    algo, task, extra = CASES[name]
    cfg = preset_config(algo, task=task, steps=IN_STEPS, checkpoint_every=IN_CKPT, **SMALL, **extra)
    for k, v in UPSTREAM.items():
        stage, field = k.split(".")
        setattr(getattr(cfg, stage), field, v)
    return cfg


class Crash(Exception):
    """Stands for kill -9: the process stops after a step's metrics line, before any checkpoint of that step."""


_baselines: dict[str, Path] = {}


def baseline(name, root: Path) -> Path:
    from toyrlhf.rl.run import train
    if name not in _baselines:
        d = root / f"baseline-{name}"
        d.mkdir()
        train(case_config(name), d)
        _baselines[name] = d
    return _baselines[name]


@pytest.mark.parametrize("name", list(CASES))
def test_baselines_exercise_the_state_they_are_meant_to(cache_env, no_plots, workdir, name):
    rows = [json.loads(l) for l in (baseline(name, workdir) / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == IN_STEPS
    if name == "ppo":
        assert "critic" in checkpoint_arrays(baseline(name, workdir))
    if name == "dapo":      # some rollout had zero-variance groups, so dynamic sampling drew more
        assert any(r["frac_zero_std_groups"] > 0 for r in rows)
    if name == "grpo_kl_target":
        assert len({r["beta"] for r in rows}) > 2


@pytest.mark.parametrize("name", list(CASES))
@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(stop_at=st.integers(1, IN_STEPS - 1), how=st.sampled_from(["SIGINT", "SIGTERM", "crash"]))
def test_resume_reproduces_the_uninterrupted_run_exactly(cache_env, no_plots, workdir, name, stop_at, how):
    from toyrlhf.rl.run import train
    ref = baseline(name, workdir)
    cfg = case_config(name)
    d = Path(tempfile.mkdtemp(dir=workdir, prefix=f"{name}-{how}-{stop_at}-"))

    def on_step(step, metrics):
        if step == stop_at:
            if how == "crash":
                raise Crash
            os.kill(os.getpid(), getattr(signal, how))   # a real signal: the handler defers it to the step's end

    with pytest.raises(Crash if how == "crash" else Interrupted):
        train(cfg, d, progress=on_step)
    ckpt_step = int(checkpoint_arrays(d)["step"])
    if how == "crash":
        # the crash comes before step stop_at's own checkpoint: the last one is the periodic one before it
        assert ckpt_step == (stop_at - 1) // IN_CKPT * IN_CKPT
        assert count_lines(d / "metrics.jsonl") == stop_at       # metrics beyond it, to be recomputed
        with open(d / "metrics.jsonl", "a") as f:                # kill -9 in the middle of the next line
            f.write('{"approx_kl": 0.0, "beta": 0.0')
        (d / ".checkpoint.npz.abc123.tmp").write_bytes(b"half a checkpoint")
    else:
        assert ckpt_step == stop_at                               # checkpoint written at the interrupt
        assert count_lines(d / "metrics.jsonl") == stop_at
    train(cfg, d, resume=True)
    assert_same_run(ref, d, f"{name} stopped by {how} at step {stop_at}")
    assert not list(d.glob(".*.tmp"))


def test_resume_of_a_finished_run_changes_nothing_but_can_extend_it(cache_env, no_plots, workdir):
    from toyrlhf.settings import with_overrides
    from toyrlhf.rl.run import train
    ref = baseline("grpo_kl_target", workdir)
    d = workdir / "extend"
    shutil.copytree(ref, d)
    train(case_config("grpo_kl_target"), d, resume=True)
    assert_same_run(ref, d, "resume of a finished run")
    longer = with_overrides(case_config("grpo_kl_target"), {"steps": IN_STEPS + 3})
    train(longer, d, resume=True)
    assert count_lines(d / "metrics.jsonl") == IN_STEPS + 3
    assert metrics_lines(d)[:IN_STEPS] == metrics_lines(ref)
    assert json.loads((d / "config.json").read_text())["steps"] == IN_STEPS + 3   # later resumes know


# ------------------------------------------------------------------------------------------------ numerical guards
def test_log_softmax_and_sigmoid_are_stable_for_extreme_logits():
    from toyrlhf import kernels
    from toyrlhf.reward_model import bt_loss
    logits = np.array([[1e308, -1e308, 0.0, 1e308 / 2],
                       [800.0, 799.0, -800.0, 0.0],          # exp(800) overflows: needs the max shift
                       [-1e5, -1e5 - 1, -1e5 - 2, -1e5 - 3],
                       [1e-300, 0.0, -1e-300, 5e-324]])
    for inv_temp in (1.0, 0.5):
        lp = kernels._log_softmax(logits, inv_temp)
        assert not np.isnan(lp).any()
        assert np.all(lp <= 0)
        # rtol 1e-10: with logits of 1e5 the result z - (m + log s) carries ulp(1e5) ~ 1e-11 of absolute error
        np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-10)
        assert np.all(lp.max(axis=1) >= -np.log(lp.shape[1]) - 1e-12)   # the most likely token has p >= 1/V
    lp = kernels._log_softmax(logits[1:2], 1.0)
    np.testing.assert_allclose(lp[0, :2], [-np.log1p(np.exp(-1.0)), -1.0 - np.log1p(np.exp(-1.0))], atol=1e-12)
    # Bradley-Terry: -log sigma(d) and its gradient, finite for any finite d
    d = np.array([-1e308, -1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4, 1e308])
    loss, g_w, g_l = bt_loss(d, np.zeros_like(d))
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(g_w)) and np.all(np.isfinite(g_l))
    assert np.all(loss >= 0)
    np.testing.assert_allclose(loss[d == 0], np.log(2.0))
    np.testing.assert_allclose(loss[3], 30.0 + np.log1p(np.exp(-30.0)), rtol=1e-14)   # softplus(30), no cancellation
    assert loss[-1] == 0.0 and loss[0] == 1e308


def _one_error_line(capsys, argv, code):
    got, _, err = invoke_cli(argv, capsys)
    assert got == code, (got, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_divergence_stops_with_step_quantity_and_exit_3_keeping_a_finite_checkpoint(cache_env, no_plots, workdir,
                                                                                   capsys, algo):
    """lr = 1e308: Adam's normalised step is ~lr per weight, so the weights overflow to inf within a few updates
    (lr = 1e12 or 1e300 does NOT diverge: the saturated softmax gives zero gradients and the weights stay finite)."""
    from toyrlhf.rl.trainer import Trainer, build_models
    from toyrlhf.rl.trainer_state import config_from_run
    out = workdir / f"diverge-{algo}"
    line = _one_error_line(capsys, ["run", algo, "--steps", 20, "--out", out, "--set", "lr=1e308",
                                    "--set", "checkpoint_every=1", *SETS], 3)
    assert line.startswith("toyrlhf: error: non-finite ")
    assert "at step " in line and "last good checkpoint" in line and "checkpoint.npz" in line
    step = int(line.split("at step ")[1].split(";")[0])
    quantity = line.split("non-finite ")[1].split(" at step")[0]
    assert quantity in ("loss", "gradient", "parameters", "value loss", "value gradient", "value model parameters")
    z = load_npz(out / "checkpoint.npz")
    assert int(z["step"]) == step - 1 and f"(step {step - 1})" in line        # the last good one, checkpoint_every=1
    assert all(np.all(np.isfinite(z[k])) for k in ("policy", "reference", "opt_m", "opt_v"))
    cfg = config_from_run(out)
    tr = Trainer(cfg, build_models(cfg))
    tr.load_state(out / "checkpoint.npz")                                    # loads (validates finiteness too)
    assert tr.step_count == step - 1
    assert count_lines(out / "metrics.jsonl") == step - 1
    assert not (out / "summary.json").exists()


def test_supervised_stage_divergence_is_exit_3_and_leaves_nothing(workdir, capsys):
    out = workdir / "pretrain-diverge"
    line = _one_error_line(capsys, ["pretrain", "--steps", 50, "--set", "lr=1e308", "--set", "corpus_size=200",
                                    "--out", out], 3)
    assert "non-finite training loss at step" in line and "pretraining" in line
    assert not out.exists()


def test_a_corrupt_checkpoint_with_non_finite_weights_is_refused(cache_env, no_plots, workdir):
    from toyrlhf.rl.trainer import Trainer, build_models
    ref = baseline("grpo_kl_target", workdir)
    arrays = checkpoint_arrays(ref)
    arrays["policy"] = arrays["policy"].copy()
    arrays["policy"][3] = np.nan
    bad = workdir / "nan-checkpoint.npz"
    np.savez(bad, **arrays)
    cfg = case_config("grpo_kl_target")
    tr = Trainer(cfg, build_models(cfg))
    before = tr.models.policy.flat.copy()
    with pytest.raises(UserError, match="non-finite"):
        tr.load_state(bad)
    assert np.array_equal(tr.models.policy.flat, before)      # nothing half-loaded


# ------------------------------------------------------------------------------------------------ supervised stages
@pytest.mark.parametrize("stage", ["sft", "rm"])
def test_supervised_stages_stop_cleanly_on_sigint(cache_env, workdir, capsys, monkeypatch, stage):
    """sft and rm from a cached checkpoint (--init); SIGINT at the 3rd Adam step: exit 130, one line saying the stage
    does not resume, and the --out folder is left as it was (here: not created)."""
    from toyrlhf import optim
    cache = Path(cache_env)
    kind = "pretrain" if stage == "sft" else "sft"
    inits = sorted(cache.glob(f"{kind}-pref-*.npz"))
    if not inits:
        from toyrlhf.rl.trainer import build_models
        build_models(case_config("ppo"))
        inits = sorted(cache.glob(f"{kind}-pref-*.npz"))
    calls = {"n": 0}
    real_step = optim.Adam.step

    def step(self, params, grad):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, params, grad)

    monkeypatch.setattr(optim.Adam, "step", step)
    out = workdir / f"{stage}-interrupted"
    extra = ["--set", "pairs=100", "--set", "norm_samples=64"] if stage == "rm" else []
    line = _one_error_line(capsys, [stage, "--init", inits[0], "--steps", 1000, "--out", out, *extra], 130)
    assert line.startswith("toyrlhf: SIGINT during ") and "do not resume" in line
    assert not out.exists()
    before = sorted(p.name for p in cache.iterdir())
    assert not [n for n in before if n.endswith(".tmp")]


def test_pretrain_subprocess_on_sigint_exits_130_with_one_line_and_no_files(workdir):
    out = workdir / "pretrain-sigint"
    keep = workdir / "pretrain-sigint-existing"
    keep.mkdir()
    proc = popen(["pretrain", "--steps", 10**6, "--set", "corpus_size=500", "--out", out], workdir,
                 cli_env(workdir / "unused-cache"))
    t0 = time.time()
    while not (out / "config.json").exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.01)
    time.sleep(0.3)                                 # well inside the training loop
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130, err
    assert len(err.strip().splitlines()) == 1, err
    assert "SIGINT during pretraining" in err and "do not resume" in err
    assert not out.exists()                         # the command made the folder, and took it away again


# ------------------------------------------------------------------------------------------------ real subprocesses
@pytest.fixture(scope="module")
def grpo_reference(shared_cache_dir, workdir):
    """The uninterrupted subprocess run (2 numba and 2 BLAS threads); it also fills the shared stage cache."""
    out = workdir / "ref"
    code, _, err = finish(popen([*RUN_ARGS, "--out", out], workdir,
                                cli_env(shared_cache_dir, NUMBA_NUM_THREADS=2, OPENBLAS_NUM_THREADS=2)))
    assert code == 0, err
    return out


def test_real_sigint_sigterm_and_sigkill_then_resume_equal_the_uninterrupted_run(shared_cache_dir, workdir,
                                                                                  grpo_reference):
    rnd = random.Random(TEST_SEED)
    env = cli_env(shared_cache_dir)
    procs = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        out = workdir / f"killed-{sig.name}"
        procs[sig] = (out, rnd.randint(1, 25), popen([*RUN_ARGS, "--out", out], workdir, env))
    pending = dict(procs)
    t0 = time.time()
    while pending and time.time() - t0 < 240:       # signal each run once it has written n metrics lines
        for sig, (out, n, proc) in list(pending.items()):
            if count_lines(out / "metrics.jsonl") >= n or proc.poll() is not None:
                proc.send_signal(sig)
                del pending[sig]
        time.sleep(0.001)
    note = f"(TOYRLHF_TEST_SEED={TEST_SEED})"
    for sig, (out, n, proc) in procs.items():
        code, _, err = finish(proc)
        ckpt = load_npz(out / "checkpoint.npz", required=("step", "policy", "opt_m", "rng"))   # loadable: old or new
        step = int(ckpt["step"])
        lines = count_lines(out / "metrics.jsonl")
        assert all(np.all(np.isfinite(ckpt[k])) for k in ("policy", "opt_m"))
        if sig == signal.SIGKILL:
            assert code == -signal.SIGKILL, (code, err, note)
            assert step % CKPT_EVERY == 0 and step <= lines, (step, lines, note)
        else:
            assert code == 130, (code, err, note)
            line = last_line(err)
            assert line.startswith(f"toyrlhf: {sig.name}: stopped after step {step} of {RUN_STEPS}"), (line, note)
            assert f"toyrlhf run --resume {out}" in line
            assert step == lines >= n, (step, lines, n, note)
    resumed = {sig: popen(["run", "--resume", out], workdir, env) for sig, (out, _, _) in procs.items()}
    for sig, proc in resumed.items():
        code, _, err = finish(proc)
        assert code == 0, (sig.name, err)
        assert_same_run(grpo_reference, procs[sig][0], f"{sig.name} at line {procs[sig][1]} {note}")
        assert not list(procs[sig][0].glob(".*.tmp"))


def test_same_command_twice_and_thread_counts_give_identical_metrics(shared_cache_dir, workdir, grpo_reference):
    runs = {"again (2 threads)": dict(NUMBA_NUM_THREADS=2, OPENBLAS_NUM_THREADS=2),
            "1 thread": dict(NUMBA_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1)}
    procs = {k: popen([*RUN_ARGS, "--out", workdir / f"threads-{i}"], workdir, cli_env(shared_cache_dir, **env))
             for i, (k, env) in enumerate(runs.items())}
    for i, (k, proc) in enumerate(procs.items()):
        code, _, err = finish(proc)
        assert code == 0, err
        assert_same_run(grpo_reference, workdir / f"threads-{i}", k)


# ------------------------------------------------------------------------------------------------ environment
def test_kernels_compile_in_memory_when_no_numba_cache_location_is_writable(no_cache_run, grpo_reference):
    """Simulates a read-only install with no writable cache: numba may only use NUMBA_CACHE_DIR (via
    NUMBA_CACHE_LOCATOR_CLASSES), and NUMBA_CACHE_DIR lies below a regular file, so no locator can be created
    (even for root, which chmod cannot stop). Every kernel falls back to an uncached compile; a run still gives
    the same numbers. Not covered: an actually read-only site-packages. The process started with the module
    (no_cache_run)."""
    proc, out, log = no_cache_run
    code = proc.wait(timeout=300)
    assert code == 0, log.read_text()
    assert metrics_lines(out) == metrics_lines(grpo_reference)[:6]


def test_unwritable_stage_cache_is_one_line_naming_the_variable(workdir, capsys, monkeypatch):
    blocker = workdir / "cache-blocker"
    blocker.write_text("")
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(blocker / "cache"))     # below a regular file: cannot be made
    out = workdir / "never-made"
    for argv in (["run", "grpo", "--out", out, *SETS], ["sft", "--out", out], ["rm", "--out", out]):
        line = _one_error_line(capsys, argv, 2)
        assert "TOYRLHF_CACHE_DIR" in line and str(blocker / "cache") in line
        assert not out.exists()
    if os.geteuid() != 0:                                               # permissions only bind non-root users
        ro = workdir / "read-only-cache"
        ro.mkdir(mode=0o500)
        monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(ro))
        assert "TOYRLHF_CACHE_DIR" in _one_error_line(capsys, ["run", "grpo", "--out", out], 2)
