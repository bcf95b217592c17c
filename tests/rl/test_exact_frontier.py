"""toyrlhf.rl.exact_frontier and `toyrlhf plot --frontier`: the frontier drawn under the runs is the exact optimum
pi* = pi_ref exp(r/beta)/Z of the run's reference (the cached SFT model) and training reward, point for point
(issue 16 item 2)."""
from __future__ import annotations

import numpy as np
import pytest

from toyrlhf import exact, plotting
from toyrlhf.plotting.frontier import FRONTIER_LABEL, GOLD_LABEL
from toyrlhf.rl import exact_frontier
from toyrlhf.rl.trainer import Trainer, build_models
from toyrlhf.rl.trainer_state import config_from_run

from tiny import set_args


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_cache_dir):
    """Two 3-step grpo runs of seed 0 (one reference) and one of seed 1 (another), tiny upstream stages."""
    import os
    from toyrlhf.cli.main import main
    root = tmp_path_factory.mktemp("frontier-runs")
    old = os.environ.get("TOYRLHF_CACHE_DIR")
    os.environ["TOYRLHF_CACHE_DIR"] = str(shared_cache_dir)
    try:
        out = []
        for name, seed, algo in (("a", 0, "grpo"), ("b", 0, "rloo"), ("c", 1, "grpo")):
            main(["run", algo, "--steps", "3", "--seed", str(seed), *set_args(), "--out", str(root / name)])
            out.append(root / name)
    except SystemExit as e:
        assert e.code in (0, None)
    finally:
        if old is None:
            os.environ.pop("TOYRLHF_CACHE_DIR", None)
        else:
            os.environ["TOYRLHF_CACHE_DIR"] = old
    return out, shared_cache_dir


@pytest.fixture(scope="module")
def fronts(runs):
    import os
    dirs, cache = runs
    os.environ["TOYRLHF_CACHE_DIR"] = str(cache)
    try:
        return exact_frontier.run_frontiers(dirs)
    finally:
        os.environ.pop("TOYRLHF_CACHE_DIR", None)


def test_the_drawn_frontier_is_the_exact_optimum_point_for_point(runs, fronts, monkeypatch):
    dirs, cache = runs
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(cache))
    fronts = [f for f in fronts if dirs[0] in f["runs"]]
    cfg = config_from_run(dirs[0])
    trainer = Trainer(cfg, build_models(cfg))
    ref = exact.enumerate_task(trainer.models.reference, trainer.task, cfg.temperature)
    prompts, comps = ref.split()
    proxy = np.asarray(trainer.reward_fn(ref.tokens, ref.mask, prompts, comps), np.float64)
    gold = trainer.task.gold_reward(prompts, comps)
    stars = [exact.optimum(ref, proxy, b, gold) for b in sorted(exact_frontier.BETAS, reverse=True)]
    fig = plotting.frontier_figure([plotting.load_run(dirs[0])], exact=fronts)
    line = next(l for l in fig.axes[0].get_lines() if l.get_label() == FRONTIER_LABEL)
    np.testing.assert_allclose(line.get_xdata(), [np.sqrt(max(o.kl_mean, 0.0)) for o in stars], rtol=1e-12)
    np.testing.assert_allclose(line.get_ydata(), [o.reward_mean for o in stars], rtol=1e-12)
    gold_line = next(l for l in fig.axes[1].get_lines() if l.get_label() == GOLD_LABEL)
    np.testing.assert_allclose(gold_line.get_ydata(), [o.gold_mean for o in stars], rtol=1e-12)
    # an optimum: the trained policy (exact E[r] and KL from its checkpoint) is under every beta's value
    from toyrlhf.rl.exact_eval import load_run
    rcfg, rtr, _ = load_run(dirs[0])
    e = exact.enumerate_task(rtr.models.policy, rtr.task, rcfg.temperature)
    ep, ec = e.split()
    R = exact.expectation(e, np.asarray(rtr.reward_fn(e.tokens, e.mask, ep, ec), np.float64))[1]
    KL = exact.kl_divergences(e, exact.rescore(rtr.models.reference, e, rcfg.temperature))["reverse_mean"]
    assert KL > 0
    for o in stars:
        assert R - o.beta * KL <= o.value_mean + 1e-9


def test_one_frontier_per_reference_not_per_run(fronts):
    assert sorted(len(f["runs"]) for f in fronts) == [1, 2]          # seeds 0 (grpo, rloo) and 1
    assert {f["seed"] for f in fronts} == {0, 1}


def test_plot_frontier_command_draws_it_and_reports_the_gap(runs, monkeypatch, tmp_path, capsys):
    from toyrlhf.cli.main import main
    dirs, cache = runs
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(cache))
    out = tmp_path / "f.png"
    try:
        main(["plot", "--frontier", *map(str, dirs[:2]), "--out", str(out)])
    except SystemExit as e:
        assert e.code in (0, None)
    text = capsys.readouterr().out
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "exact frontier: 1 reference;" in text
    gaps = [l.split()[1:] for l in text.splitlines() if l.startswith("    ") and l.split()[0] in ("grpo", "rloo")]
    assert len(gaps) == 2 and all(len(g) == 3 and np.all(np.isfinite(np.array(g, float))) for g in gaps)
    assert all(0 < float(g[2]) < 1 for g in gaps)                      # TV(final policy, pi*)


def test_tv_to_optimum_is_half_the_l1_distance_to_pi_star_of_the_runs_own_objective(runs, monkeypatch):
    """pi* written out here as pi_ref exp(r/beta) / Z per prompt (the run's checkpoint reference, its beta)."""
    from scipy.special import logsumexp

    from toyrlhf.rl.exact_eval import load_run
    dirs, cache = runs
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(cache))
    cfg, tr, _ = load_run(dirs[0])
    e = exact.enumerate_task(tr.models.policy, tr.task, cfg.temperature)
    ref = exact.rescore(tr.models.reference, e, cfg.temperature)
    r = np.asarray(tr.reward_fn(e.tokens, e.mask, *e.split()), np.float64)
    tv = []
    for q in range(e.n_prompts):
        sl = slice(e.offsets[q], e.offsets[q + 1])
        a = ref.seq_logp[sl] + r[sl] / cfg.beta
        tv.append(0.5 * np.abs(np.exp(e.seq_logp[sl]) - np.exp(a - logsumexp(a))).sum())
    assert abs(exact_frontier.tv_to_optimum(dirs[0]) - np.mean(tv)) < 1e-12


def test_compare_draws_the_exact_frontier_plot_frontier_draws_and_not_with_no_exact(runs, fronts, monkeypatch,
                                                                                    tmp_path):
    from toyrlhf.cli import commands_plot
    dirs, cache = runs
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(cache))
    seen = {}
    real = plotting.plot_runs

    def spy(run_dirs, metrics=None, out="plot.png", **kw):
        seen[(out.name, len(seen))] = kw
        return real(run_dirs, metrics, out, **kw)

    monkeypatch.setattr(plotting, "plot_runs", spy)
    configs = {("grpo", 0): config_from_run(dirs[0]), ("rloo", 0): config_from_run(dirs[1])}
    _, drawn = commands_plot._write_comparison(dirs[:2], configs, ["grpo", "rloo"], "pref", 1, tmp_path / "a")
    (kw,) = [v for (name, _), v in seen.items() if name == "frontier.png"]
    assert kw["frontier"] and kw["exact_frontiers"] is drawn and len(drawn) == 1
    same = next(f for f in fronts if dirs[0] in f["runs"])
    for key in ("sqrt_kl", "reward", "gold"):
        np.testing.assert_array_equal(drawn[0][key], same[key])
    assert (tmp_path / "a" / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    seen.clear()
    _, none = commands_plot._write_comparison(dirs[:2], configs, ["grpo", "rloo"], "pref", 1, tmp_path / "b",
                                              exact=False)
    (kw,) = [v for (name, _), v in seen.items() if name == "frontier.png"]
    assert none is None and kw["exact_frontiers"] is None
