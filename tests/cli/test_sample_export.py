"""toyrlhf sample RUN_DIR --n N prints completions as text with their rewards; toyrlhf export RUN_DIR --csv."""
import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import run_cli  # noqa: E402
from tiny import set_args  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    env = {"TOYRLHF_CACHE_DIR": str(root / "cache")}
    p = run_cli(["run", "grpo", "--steps", "3", "--out", root / "r", *set_args()], cwd=root, env_extra=env,
                timeout=300)
    assert p.returncode == 0, p.stderr
    return root / "r", env


def test_sample_prints_text_with_gold_and_proxy_rewards(run_dir):
    d, env = run_dir
    p = run_cli(["sample", d, "--n", "5"], cwd=d.parent, env_extra=env, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "grpo on pref, step 3 of 3; reward = reward model" in lines[0]
    assert lines[1].split() == ["completion", "reward", "gold"]
    body = lines[2:7]
    assert len(body) == 5 and all(" -> " in l for l in body) and lines[7].split()[0] == "mean"
    again = run_cli(["sample", d, "--n", "5"], cwd=d.parent, env_extra=env, timeout=120)
    assert again.stdout == p.stdout                      # seeded
    bad = run_cli(["sample", d, "--n", "0"], cwd=d.parent, env_extra=env, timeout=60)
    assert bad.returncode == 2 and "--n must be" in bad.stderr


def test_export_csv(run_dir):
    d, env = run_dir
    p = run_cli(["export", d, "--csv"], cwd=d.parent, env_extra=env, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader((d / "metrics.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2", "3"] and "gold_reward" in rows[0]
    assert "3 steps" in p.stdout
