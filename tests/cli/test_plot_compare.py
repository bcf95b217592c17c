"""`toyrlhf plot` and `toyrlhf compare` from the command line: outputs, tables, and one-line errors (exit 2)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from toyrlhf.cli.main import app, main

PNG = b"\x89PNG\r\n\x1a\n"
# tiny upstream stages so that building the per-seed models costs about a second
SMALL = ["--set", "prompts_per_step=4", "--set", "group_size=4", "--set", "pretrain.steps=50",
         "--set", "pretrain.corpus_size=2000", "--set", "sft.steps=20", "--set", "rm.steps=20",
         "--set", "rm.pairs=100", "--set", "rm.norm_samples=256"]


def toyrlhf(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "toyrlhf", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for f in fragments:
        assert f in lines[0]
    return lines[0]


def fake_run(root, algo, seed, steps=6):
    path = root / f"{algo}-s{seed}"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"algo": algo, "task": "pref", "seed": seed, "steps": steps}))
    rows = [{"step": t, "reward": 0.1 * t + seed, "gold_reward": 0.05 * t, "kl": 0.01 * t, "entropy": 1.0,
             "response_length": 5.0, "clip_fraction": 0.0, "time_s": 0.01} for t in range(1, steps + 1)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------ plot
def test_plot_writes_the_image_and_a_summary(tmp_path):
    runs = [fake_run(tmp_path, a, s) for a in ("grpo", "ppo") for s in (0, 1)]
    proc = toyrlhf("plot", *runs, "--metric", "kl", "--metric", "gold_reward", "--smooth", "2",
                   "--out", tmp_path / "fig.svg")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fig.svg").read_text().lstrip().startswith("<?xml")
    assert "4 runs in 2 groups" in proc.stdout and "metrics: kl, gold_reward" in proc.stdout


def test_plot_folder_without_metrics_is_one_line_exit_2(tmp_path):
    (tmp_path / "notarun").mkdir()
    assert_one_line_error(toyrlhf("plot", tmp_path / "notarun", "--out", tmp_path / "x.png"),
                          "no metrics.jsonl", "notarun")
    assert not (tmp_path / "x.png").exists()


def test_plot_unknown_metric_is_one_line_exit_2_naming_it_and_the_available(tmp_path):
    run = fake_run(tmp_path, "grpo", 0)
    line = assert_one_line_error(toyrlhf("plot", run, "--metric", "rewrd", "--out", tmp_path / "x.png"),
                                 "'rewrd'", "available:")
    for m in ("gold_reward", "kl", "response_length"):
        assert m in line


@pytest.mark.parametrize("args, fragment", [
    (["--out", "x.jpg"], "unsupported output format"),
    (["--smooth", "0"], "--smooth"),
    (["--frontier", "--metric", "kl"], "--frontier"),
])
def test_plot_bad_options_are_one_line_exit_2(tmp_path, capsys, args, fragment):
    run = fake_run(tmp_path, "grpo", 0)
    with pytest.raises(SystemExit) as e:
        main(["plot", str(run), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.splitlines()) == 1 and fragment in err


# ------------------------------------------------------------------------------------------ compare
@pytest.mark.parametrize("args, fragment", [
    (["grpo", "ppq"], "unknown algorithm 'ppq'"),
    (["grpo", "--seeds", "0"], "--seeds"),
    (["grpo", "--steps", "0"], "--steps"),
    (["grpo", "--jobs", "0"], "--jobs"),
    (["grpo", "--task", "nope"], "unknown task"),
    (["grpo", "--set", "seed=3"], "--seeds"),
    (["grpo", "--set", "no_such_knob=1"], "unknown setting"),
])
def test_compare_bad_input_is_one_line_exit_2_before_any_work(tmp_path, capsys, monkeypatch, args, fragment):
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as e:
        main(["compare", *args, "--out", str(tmp_path / "cmp")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "cache").exists()


def test_compare_refuses_a_non_empty_out_folder(tmp_path, capsys):
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "keep.txt").write_text("x")
    with pytest.raises(SystemExit) as e:
        main(["compare", "grpo", "--out", str(tmp_path / "cmp")])
    assert e.value.code == 2 and "not empty" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_two_algorithms_two_seeds_writes_runs_figure_and_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", "grpo", "ppo", "--seeds", "2", "--steps", "3", "--jobs", "2",
                                      "--no-exact", "--out", str(out), *SMALL])   # exact frontier: test_exact_frontier
    assert result.exit_code == 0, result.output + repr(result.exception)
    for algo in ("grpo", "ppo"):
        for seed in (0, 1):
            run = out / f"{algo}-s{seed}"
            cfg = json.loads((run / "config.json").read_text())
            assert (cfg["algo"], cfg["seed"], cfg["steps"], cfg["group_size"]) == (algo, seed, 3, 4)
            assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert (out / "comparison.png").read_bytes().startswith(PNG)
    assert (out / "frontier.png").read_bytes().startswith(PNG)
    rows = list(csv.DictReader((out / "comparison.csv").read_text().splitlines()))
    assert [(r["algo"], r["seeds"], r["steps"]) for r in rows] == [("grpo", "2", "3"), ("ppo", "2", "3")]
    assert all(float(r["final_gold_reward_lo"]) <= float(r["final_gold_reward"]) <= float(r["final_gold_reward_hi"])
               for r in rows)
    md = (out / "comparison.md").read_text()
    assert md.count("\n| grpo | 2 | ") == 1 and md.count("\n| ppo | 2 | ") == 1
    assert "| grpo | 2 | " in result.output and "| ppo | 2 | " in result.output   # the table is printed
    # the upstream models were built once per seed (a level's stages in parallel workers), before any run started
    cached = sorted(p.name.split("-")[0] + "-" + p.name.split("-")[2] for p in (tmp_path / "cache").glob("*.npz"))
    assert cached == ["pretrain-s0", "pretrain-s1", "rm-s0", "rm-s1", "sft-s0", "sft-s1"]


class StopAfter:
    """Stand-in for the parent's stop event: set from the k-th look on (one look before the run, one per step)."""

    def __init__(self, k):
        self.k, self.looks = k, 0

    def is_set(self):
        self.looks += 1
        return self.looks > self.k


def test_a_stopped_compare_worker_ends_its_run_at_a_step_boundary_with_a_checkpoint(tmp_path, monkeypatch):
    import numpy as np

    from toyrlhf.settings import from_dict, to_dict, with_overrides
    from toyrlhf.sweep import local
    from toyrlhf.settings import parse_set_options
    from toyrlhf.config import RLConfig
    from toyrlhf.rl.algorithms import PRESETS

    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(tmp_path / "cache"))
    cfg = from_dict(RLConfig, {**PRESETS["grpo"].knobs, "algo": "grpo", "steps": 50})
    cfg = with_overrides(cfg, parse_set_options([s for s in SMALL if s != "--set"]))
    monkeypatch.setattr(local, "_STOP", StopAfter(3))
    (tmp_path / "run").mkdir()
    out = local.train_stoppable(to_dict(cfg), str(tmp_path / "run"))
    assert out["error"].startswith("Interrupted")
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3
    with np.load(tmp_path / "run" / "checkpoint.npz") as z:
        assert int(z["step"]) == 3
    monkeypatch.setattr(local, "_STOP", StopAfter(0))
    assert "not started" in local.train_stoppable(to_dict(cfg), str(tmp_path / "other"))["error"]


def test_compare_whose_runs_diverge_exits_4_naming_each_failed_run(tmp_path):
    """Issue 13 item 5: failed runs are not exit 0 (nor 1, which means a bug); each is named on stderr."""
    p = subprocess.run([sys.executable, "-m", "toyrlhf", "compare", "grpo", "--seeds", "1", "--steps", "3",
                        "--out", str(tmp_path / "c"), "--set", "lr=1e308", *SMALL], capture_output=True, text=True,
                       cwd=tmp_path, env={**os.environ, "TOYRLHF_CACHE_DIR": str(tmp_path / "cache"),
                                          "MPLBACKEND": "Agg"}, timeout=300)
    assert p.returncode == 4, p.stderr[-2000:]
    assert "toyrlhf: run grpo-s0 failed: NumericalError" in p.stderr
    assert "Traceback" not in p.stderr
