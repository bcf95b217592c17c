"""`toyrlhf --help` starts fast: the CLI's import loads no numba, matplotlib or scipy.stats; `toyrlhf run` loads
numba but neither matplotlib (its helper process draws curves.png) nor scipy.stats (issue 12 item 3)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tiny import set_args

HEAVY = ("numba", "matplotlib", "scipy.stats")
RUN_NEVER = ("matplotlib", "PIL", "scipy.stats")
"""What a `toyrlhf run` process never imports itself when it is the whole process (its helper draws curves.png)."""
WARM_NEVER = ("scipy.special", "scipy.linalg", "numba.np.arraymath", "numba.np.npyimpl", "numba.typed.dictimpl")
"""What a warm `toyrlhf run` (stages and kernels cached) never imports: scipy.special is imported on first use
(toyrlhf/special.py), and loading a cached kernel skips numba's registry refresh, which imports numba's whole
implementation library and, for its BLAS check, scipy.linalg (toyrlhf/kernels/jit.py)."""
PNG = b"\x89PNG\r\n\x1a\n"


def _loaded_after(code: str, tmp_path, modules=HEAVY, env=None) -> list[str]:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {tuple(modules)!r} if m in sys.modules]))"
    p = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, **(env or {})})
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_numba_matplotlib_or_scipy_stats(tmp_path):
    assert _loaded_after("import toyrlhf.cli.main", tmp_path) == []


def test_help_loads_no_numba_matplotlib_or_scipy_stats(tmp_path):
    code = ("import sys\nfrom toyrlhf.cli.main import main\nsys.argv = ['toyrlhf', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nsys.stdout.flush()\nprint()")
    assert _loaded_after(code, tmp_path) == []


def test_a_command_s_help_loads_no_numba_either(tmp_path):
    code = ("import sys\nfrom toyrlhf.cli.main import main\n"
            "for cmd in ('run', 'compare', 'plot', 'check', 'settings'):\n"
            "    try:\n        main([cmd, '--help'])\n    except SystemExit:\n        pass\nprint()")
    assert _loaded_after(code, tmp_path) == []


def test_the_training_loop_imports_no_matplotlib_or_scipy_stats(tmp_path):
    """`toyrlhf run` needs numba, not matplotlib (loaded when curves.png is drawn) nor scipy.stats (RM summary)."""
    assert _loaded_after("import toyrlhf.rl.run", tmp_path) == ["numba"]


def _run_argv(tmp_path) -> list[str]:
    return ["run", "grpo", "--steps", "2", *set_args(), "--out", str(tmp_path / "run")]


def test_toyrlhf_run_imports_no_matplotlib_or_scipy_stats_and_leaves_a_complete_curves_png(tmp_path,
                                                                                         shared_cache_dir):
    """`toyrlhf run` as the whole process (main() reading sys.argv): numba and the run's own modules only; the
    helper process draws curves.png, which is complete when the command returns."""
    code = f"import sys\nsys.argv = ['toyrlhf', *{_run_argv(tmp_path)!r}]\nfrom toyrlhf.cli.main import main\nmain()"
    env = {"TOYRLHF_CACHE_DIR": str(shared_cache_dir), "TOYRLHF_PROGRESS": "off"}
    helper = "toyrlhf.plotting.helper"
    assert _loaded_after(code, tmp_path, ("numba", helper) + RUN_NEVER, env) == ["numba", helper]
    assert (tmp_path / "run" / "curves.png").read_bytes().startswith(PNG)


def test_a_warm_run_imports_neither_scipy_special_nor_numba_s_implementation_registries(tmp_path,
                                                                                     shared_cache_dir):
    """The first run may compile kernels (a compile loads numba's registries); the second, on the same caches,
    only loads them, and must train the same numbers without importing what it does not use."""
    env = {"TOYRLHF_CACHE_DIR": str(shared_cache_dir), "TOYRLHF_PROGRESS": "off"}
    runs = []
    for name in ("first", "second"):
        argv = [*_run_argv(tmp_path)[:-1], str(tmp_path / name)]
        code = f"import sys\nsys.argv = ['toyrlhf', *{argv!r}]\nfrom toyrlhf.cli.main import main\nmain()"
        runs.append(_loaded_after(code, tmp_path, WARM_NEVER, env))
    assert runs[1] == [], f"a warm run imported {runs[1]}"
    metrics = [[{k: v for k, v in json.loads(line).items() if k != "time_s"}
                for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()] for name in ("first", "second")]
    assert metrics[0] == metrics[1] and len(metrics[0]) == 2


def test_main_called_from_python_draws_curves_here_and_imports_matplotlib_only_for_them(tmp_path, shared_cache_dir):
    """main(argv) from Python starts no helper: curves.png is drawn in the process, and nothing heavy is imported
    before it is drawn."""
    code = ("import sys, toyrlhf.rl.run as rr\nplot, seen = rr.plot_run_curves, []\n"
            f"rr.plot_run_curves = lambda d, o: seen.extend(m for m in {RUN_NEVER!r} if m in sys.modules) or "
            "plot(d, o)\n"
            f"from toyrlhf.cli.main import main\nmain({_run_argv(tmp_path)!r})\nassert seen == [], seen")
    env = {"TOYRLHF_CACHE_DIR": str(shared_cache_dir), "TOYRLHF_PROGRESS": "off"}
    assert _loaded_after(code, tmp_path, ("matplotlib", "toyrlhf.plotting.helper"), env) == ["matplotlib"]
    assert (tmp_path / "run" / "curves.png").read_bytes().startswith(PNG)
