"""Shared fixtures. Tests import the *installed* package (CI runs `pytest`, not `python -m pytest`, so the
source tree is not on sys.path and `toyrlhf.cli`, mapped from cli/ at install time, resolves)."""
import os
import subprocess
import sys
import traceback

import numpy as np
import pytest

# The suite's stderr checks are about the one-line errors, and captured stderr is not a terminal, where the bars
# print plain lines: bars off, here and in the CLI subprocesses (tests/cli/test_progress.py turns them on).
os.environ.setdefault("TOYRLHF_PROGRESS", "off")


def rel_err(a, b):
    """max |a - b| relative to the larger of max|a|, max|b| (the gradient-check criterion)."""
    return np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12)


def fd_grad(model, f, eps=1e-5):
    """Central finite differences (float64) of the scalar f() over every parameter of `model`."""
    theta = model.get_flat()
    g = np.zeros_like(theta)
    for i in range(theta.size):
        for sign in (+1, -1):
            t = theta.copy()
            t[i] += sign * eps
            model.set_flat(t)
            g[i] += sign * f()
        g[i] /= 2 * eps
    model.set_flat(theta)
    return g


@pytest.fixture
def cache_dir(tmp_path_factory, monkeypatch):
    """A private, initially empty stage cache for one test."""
    path = tmp_path_factory.mktemp("stage-cache")
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="module")
def module_cache_dir(tmp_path_factory):
    """A private stage cache for one test module: its upstream models are built once, by its first test."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("module-stage-cache")
        mp.setenv("TOYRLHF_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory):
    """One stage cache shared by the end-to-end tests, so upstream models are built once per session."""
    return tmp_path_factory.mktemp("shared-stage-cache")


def run_cli(args, *, cwd, env_extra=None, timeout=600, input=None):
    """`python -m toyrlhf ARGS` in a subprocess, from `cwd` (never the repo root: there the source tree
    would shadow the installed package). Returns CompletedProcess with text stdout/stderr."""
    env = {**os.environ, "MPLBACKEND": "Agg", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "toyrlhf", *map(str, args)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, input=input)


def invoke_cli(argv, capsys) -> tuple[int, str, str]:
    """`toyrlhf ARGV` in this process through `toyrlhf.cli.main.main`: (exit code, stdout, stderr). An exception that
    would reach `python -m toyrlhf` (a traceback, exit 1) fails the test. Cheaper than run_cli by the interpreter's
    start and imports (1-2 s a call); the process exit code itself is tested on real subprocesses elsewhere."""
    from toyrlhf.cli.main import main
    argv = [str(a) for a in argv]
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - a traceback, exit 1, from `python -m toyrlhf`
        capsys.readouterr()
        pytest.fail(f"internal error for toyrlhf {' '.join(argv)!r}:\n{traceback.format_exc()}")
    out, err = capsys.readouterr()
    return code, out, err
