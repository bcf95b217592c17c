"""`toyrlhf run METHOD` and `toyrlhf bon`: bad input is one line and exit 2 (nothing built), a method's run folder
resumes to the same metrics and weights as an uninterrupted run."""
import json

import numpy as np
import pytest

from tiny import set_args
from test_bad_input import invoke

BAD = [
    ["run", "dpo", "--set", "pref_loss=bogus"],
    ["run", "dpo", "--set", "beta=0"],
    ["run", "online_dpo", "--set", "group_size=3"],
    ["run", "rft", "--set", "rft_keep=correct"],               # pref has no rule
    ["run", "rft", "--set", "rft_keep=most"],
    ["run", "sft", "--set", "sft_demos=0"],
    ["run", "dpo", "--set", "sft_coef=-1"],
    ["run", "online_rft", "--set", "update=exact"],
    ["run", "dpo", "--set", "epochs=2"],
    ["run", "grpo", "--set", "method=bogus"],
    ["run", "dpoo"],
    ["bon", "--n", "0"],
    ["bon", "--n", "abc"],
    ["bon", "--n", "1,...,8"],
    ["bon", "--task", "nope"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a) for a in BAD])
def test_bad_method_input_is_one_line_exit_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke(argv, capsys)
    assert code == 2, (code, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("toyrlhf: error:"), err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()


def _metrics(d):
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("time_s")
    return rows


@pytest.mark.parametrize("method", ["dpo", "online_rft"])
def test_method_run_resumes_to_the_uninterrupted_run(method, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    args = set_args() + ["--set", "checkpoint_every=2"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert invoke(["run", method, "--steps", 4, "--out", full, *args], capsys)[0] == 0
    assert invoke(["run", method, "--steps", 2, "--out", part, *args], capsys)[0] == 0
    code, out, err = invoke(["run", "--resume", part, "--steps", 4], capsys)
    assert code == 0, err
    assert _metrics(full) == _metrics(part)
    with np.load(full / "checkpoint.npz") as a, np.load(part / "checkpoint.npz") as b:
        np.testing.assert_array_equal(a["policy"], b["policy"])
        np.testing.assert_array_equal(a["opt_v"], b["opt_v"])
    summary = json.loads((full / "summary.json").read_text())
    assert summary["algo"] == method and "final_gold_reward" in summary and (full / "curves.png").exists()
