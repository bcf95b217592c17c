"""Packaging: the CLI is `toyrlhf.cli` (no generic top-level `cli` module), `python -m toyrlhf` works."""
import subprocess
import sys

from conftest import run_cli


def test_no_top_level_cli_module_is_installed(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import cli"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'cli'" in r.stderr


def test_python_dash_m_toyrlhf_lists_the_tasks(tmp_path):
    r = run_cli(["tasks"], cwd=tmp_path)
    assert r.returncode == 0 and {"pref", "arith", "length"} <= {l.split()[0] for l in r.stdout.splitlines() if l[:1].strip()}


def test_no_arguments_prints_help_and_exits_0(tmp_path):
    r = run_cli([], cwd=tmp_path)
    assert r.returncode == 0 and "Usage" in r.stdout
