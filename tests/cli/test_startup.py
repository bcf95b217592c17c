"""`toyrlhf --help` starts fast: the CLI's import loads no numba, matplotlib or scipy.stats (issue 12 item 3)."""
from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("numba", "matplotlib", "scipy.stats")


def _loaded_after(code: str, tmp_path) -> list[str]:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    p = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
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
