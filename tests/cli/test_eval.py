"""`toyrlhf eval RUN_DIR`: exact pass@k / maj@k of a run's checkpoint and of the SFT model, the optimum rows, and the
figure; pass@k per prompt against its closed form 1 - (1 - p)^k and the SFT model's maj@1 = pass@1 = accuracy."""
from __future__ import annotations

import numpy as np
import pytest

import toyrlhf.rl.run
from toyrlhf import exact
from toyrlhf.rl import exact_eval
from toyrlhf.tasks import get_task

UPSTREAM = ["--set", "prompts_per_step=4", "--set", "group_size=4", "--set", "pretrain.steps=50",
            "--set", "pretrain.corpus_size=2000", "--set", "sft.steps=20"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from toyrlhf.cli.main import main
    root = tmp_path_factory.mktemp("eval")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOYRLHF_CACHE_DIR", str(root / "cache"))
        mp.setattr(toyrlhf.rl.run, "plot_run_curves", lambda run_dir, out: out)
        try:
            main(["run", "grpo", "--task", "length", "--steps", "2", *UPSTREAM, "--out", str(root / "run")])
        except SystemExit as e:
            assert e.code in (0, None)
        yield root / "run", root / "cache"


def test_eval_prints_pass_and_maj_at_k_and_writes_the_figure(run_dir, capsys, monkeypatch):
    from toyrlhf.cli.main import main
    run, cache = run_dir
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(cache))
    try:
        main(["eval", str(run)])
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    assert "pass@k SFT" in out and "maj@k run" in out and "TV(run, pi*)" in out
    assert "TV(window optimum, pi*)" in out and "TV(run, window optimum)" in out
    assert (run / "eval.png").stat().st_size > 1000
    rows = [l.split() for l in out.splitlines() if l.strip() and l.split()[0] in ("1", "256")]
    k1, k256 = [list(map(float, r[1:])) for r in rows[:2]]
    assert abs(k1[0] - k1[1]) < 1e-12 and abs(k1[2] - k1[3]) < 1e-12       # maj@1 = pass@1
    assert k256[0] >= k1[0] and k256[2] >= k1[2]


def test_eval_figures_match_closed_forms(run_dir, monkeypatch):
    run, cache = run_dir
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(cache))
    cfg, trainer, sft = exact_eval.load_run(run)
    task = get_task("length")
    res = exact_eval.evaluate_policy(sft, task, 1.0, ks=(1, 3, 256))
    enum = exact.enumerate_task(sft, task)
    p, acc = exact.expectation(enum, task.is_correct(*enum.split()).astype(float))
    np.testing.assert_allclose(res.pass_at_k, [np.mean(1 - (1 - p) ** k) for k in (1, 3, 256)], atol=1e-14)
    assert abs(res.accuracy - acc) < 1e-14 and abs(res.maj_at_k[0] - acc) < 1e-12
    answers, right, n = exact_eval.final_answers(task, *enum.split())
    assert np.array_equal((answers == right), task.is_correct(*enum.split()))   # right answer <=> accuracy 1
