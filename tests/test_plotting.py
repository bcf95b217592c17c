"""Tests of toyrlhf.plotting on synthetic run folders (config.json + metrics.jsonl written here, no training)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from toyrlhf import plotting
from toyrlhf.errors import UserError

PNG = b"\x89PNG\r\n\x1a\n"


def make_run(root, algo="grpo", seed=0, steps=30, task="pref", critic=False, drift=0.01):
    """A run folder with plausible curves: reward rising with KL, some noise per seed."""
    rng = np.random.default_rng([seed, len(algo)])
    path = root / f"{algo}-s{seed}"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"algo": algo, "task": task, "seed": seed, "steps": steps}))
    with open(path / "metrics.jsonl", "w") as f:
        for t in range(1, steps + 1):
            kl = drift * t + abs(rng.normal(0, 0.01))
            row = {"step": t, "reward": 2 * math.sqrt(kl) + rng.normal(0, 0.1),
                   "gold_reward": math.sqrt(kl) - 0.5 * kl + rng.normal(0, 0.1), "kl": kl,
                   "entropy": 1.0 - 0.01 * t, "response_length": 5 + rng.normal(0, 0.3),
                   "clip_fraction": 0.1 * rng.random() if critic else 0.0,   # GRPO's one update: never clipped
                   "approx_kl": 1e-4, "grad_norm": 1.0, "time_s": 0.01}
            if critic:
                row.update(value_loss=1.0 / t, explained_variance=min(1.0, t / steps))
            f.write(json.dumps(row) + "\n")
    (path / "summary.json").write_text(json.dumps({"wall_time_s": 1.5 + seed}))
    return path


@pytest.fixture
def group(tmp_path):
    return [make_run(tmp_path, a, s, critic=(a == "ppo")) for a in ("grpo", "ppo") for s in range(3)]


def test_plot_run_curves_writes_png_titled_with_algo_task_and_steps(tmp_path):
    run = make_run(tmp_path, "ppo", critic=True)
    out = plotting.plot_run_curves(run, tmp_path / "curves.png")
    assert out.read_bytes().startswith(PNG)
    fig = plotting.run_curves_figure(plotting.load_run(run))
    title = fig._suptitle.get_text()
    assert "ppo" in title and "pref" in title and "30 steps" in title
    panels = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert "critic explained variance" in panels and "clip fraction" in panels and len(panels) == 7


def test_run_curves_omit_critic_panels_and_say_an_all_zero_clip_fraction_instead_of_drawing_it(tmp_path):
    fig = plotting.run_curves_figure(plotting.load_run(make_run(tmp_path, "grpo")))
    panels = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert "critic explained variance" not in panels and "clip fraction" not in panels and len(panels) == 5
    assert "clip fraction: 0 at every step (not drawn)" in fig._suptitle.get_text()


def test_a_flat_zero_fraction_is_drawn_on_0_to_1_not_around_0(tmp_path):
    runs = [make_run(tmp_path, "grpo", s) for s in range(2)]
    fig = plotting.runs_figure([plotting.load_run(r) for r in runs], ["clip_fraction"])
    lo, hi = fig.axes[0].get_ylim()
    assert lo > -0.05 and hi >= 1.0


def test_plot_runs_multi_seed_group_writes_png_svg_and_pdf(tmp_path, group):
    png = plotting.plot_runs(group, ["gold_reward", "kl"], tmp_path / "a.png", smooth=3)
    svg = plotting.plot_runs(group, ["gold_reward", "kl"], tmp_path / "a.svg")
    pdf = plotting.plot_runs(group, None, tmp_path / "sub" / "a.pdf")
    assert png.read_bytes().startswith(PNG)
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "gold reward" in text
    assert pdf.read_bytes().startswith(b"%PDF")


def test_plot_runs_is_deterministic(tmp_path, group):
    a = plotting.plot_runs(group, ["gold_reward"], tmp_path / "a.png").read_bytes()
    b = plotting.plot_runs(group, ["gold_reward"], tmp_path / "b.png").read_bytes()
    c = plotting.plot_runs(group, ["gold_reward"], tmp_path / "c.svg").read_bytes()
    d = plotting.plot_runs(group, ["gold_reward"], tmp_path / "d.svg").read_bytes()
    assert a == b and c == d


def test_runs_figure_groups_by_algo_with_units_and_readable_fonts(tmp_path, group):
    runs = [plotting.load_run(d) for d in group]
    fig = plotting.runs_figure(runs, ["gold_reward", "kl", "response_length"], smooth_k=1)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_ylabel() for ax in axes] == ["reward", "nats / sequence", "tokens"]
    assert all(ax.get_xlabel() == "step" for ax in axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["grpo (3 seeds)", "ppo (3 seeds)"]
    title = fig._suptitle.get_text()
    assert "pref" in title and "30 steps" in title and "3 seeds" in title
    texts = [ax.title for ax in axes] + [ax.xaxis.label for ax in axes] + [ax.yaxis.label for ax in axes]
    texts += [t for ax in axes for t in ax.get_xticklabels() + ax.get_yticklabels()] + fig.legends[0].get_texts()
    assert min(t.get_fontsize() for t in texts) >= 11


def test_frontier_view_plots_both_rewards_against_sqrt_kl(tmp_path, group):
    out = plotting.plot_runs(group, None, tmp_path / "f.png", frontier=True)
    assert out.read_bytes().startswith(PNG)
    fig = plotting.frontier_figure([plotting.load_run(d) for d in group])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2 and all("√KL" in ax.get_xlabel() for ax in axes)
    # one dot per step and seed; the line is the mean over seeds at each step (not zig-zag bins of the cloud)
    grpo = [ax.collections[0] for ax in axes]
    assert all(len(c.get_offsets()) == 3 * 30 for c in grpo)
    line = [l for l in axes[1].get_lines() if l.get_label().startswith("grpo")][0]
    runs = [plotting.load_run(d) for d in group if "grpo" in d.name]
    np.testing.assert_allclose(line.get_xdata(), np.mean([np.sqrt(r.series("kl")[1]) for r in runs], axis=0))
    np.testing.assert_allclose(line.get_ydata(), np.mean([r.series("gold_reward")[1] for r in runs], axis=0))
    x, y = plotting.frontier_points([plotting.load_run(d) for d in group[:3]], "gold_reward")
    assert line.get_xdata().mean() == pytest.approx(x.mean()) and line.get_ydata().mean() == pytest.approx(y.mean())


def test_binned_means_of_a_line_lie_on_the_line():
    x = np.linspace(0, 1, 100)
    bx, by = plotting.binned_means(x[::-1], 3 * x[::-1] + 1, 10)
    assert len(bx) == 10 and np.allclose(by, 3 * bx + 1)


# ------------------------------------------------------------------------------------------ bootstrap band
@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8).flatmap(lambda s: st.lists(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=3, max_size=3), min_size=s, max_size=s)))
def test_bootstrap_band_contains_the_mean(values):
    v = np.array(values)
    mean, lo, hi = plotting.bootstrap_band(v)
    tol = 1e-9 * (1 + np.abs(v).max())
    assert np.allclose(mean, v.mean(axis=0))
    assert np.all(lo <= mean + tol) and np.all(mean <= hi + tol)
    assert np.all(lo >= v.min(axis=0) - tol) and np.all(hi <= v.max(axis=0) + tol)


def test_bootstrap_band_is_absent_for_one_seed(tmp_path):
    mean, lo, hi = plotting.bootstrap_band(np.arange(5.0)[None, :])
    assert np.array_equal(mean, np.arange(5.0)) and np.isnan(lo).all() and np.isnan(hi).all()
    one = [plotting.load_run(make_run(tmp_path / "a", algo, 0)) for algo in ("grpo", "ppo")]
    fig = plotting.runs_figure(one, ["reward", "kl"])
    assert all(len(ax.collections) == 0 for ax in fig.axes)          # no fill_between band
    assert "1 seed each" in fig._suptitle.get_text()
    two = [plotting.load_run(make_run(tmp_path / "b", "grpo", s)) for s in (0, 1)]
    fig = plotting.runs_figure(two, ["reward", "kl"])
    assert all(len(ax.collections) == 1 for ax in fig.axes if ax.get_visible())


def test_bootstrap_band_only_where_two_seeds_have_a_value():
    v = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, np.nan, np.nan]])
    mean, lo, hi = plotting.bootstrap_band(v)
    assert np.allclose(mean, [2.0, 3.0, 3.0, 4.0])
    assert np.isfinite(lo[:2]).all() and np.isnan(lo[2:]).all() and np.isnan(hi[2:]).all()


def test_bootstrap_band_is_deterministic_and_narrows_with_more_seeds():
    rng = np.random.default_rng(1)
    few, many = rng.normal(size=(4, 1)), rng.normal(size=(64, 1))
    a, b = plotting.bootstrap_band(few), plotting.bootstrap_band(few)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    width = lambda band: float(band[2][0] - band[1][0])   # noqa: E731
    assert width(plotting.bootstrap_band(many)) < width(plotting.bootstrap_band(few))
    # about the normal-theory width 2 * 1.96 * sd / sqrt(n) for many seeds
    assert width(plotting.bootstrap_band(many)) == pytest.approx(2 * 1.96 * many.std() / 8, rel=0.15)


def test_smooth_is_a_trailing_nan_aware_moving_average_that_starts_at_the_first_value():
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert np.allclose(plotting.smooth(y, 3), [0.0, 0.5, 1.0, 2.0, 3.0])
    assert np.allclose(plotting.smooth(y, 1), y)
    assert np.allclose(plotting.smooth(np.full(7, 2.5), 4), 2.5)
    out = plotting.smooth(np.array([1.0, np.nan, 3.0, np.nan]), 3)
    assert np.allclose(out, [1.0, 1.0, 2.0, 3.0])
    # a curve that jumps after step 1 (PPO's gold reward: 0.60, then ~1.2) keeps its first value when smoothed
    jump = np.array([0.6] + [1.2] * 30)
    assert plotting.smooth(jump, 25)[0] == 0.6
    # causal: the smoothed value at t does not change when later steps do
    later = jump.copy()
    later[10:] = -5.0
    assert np.array_equal(plotting.smooth(jump, 25)[:10], plotting.smooth(later, 25)[:10])


# ------------------------------------------------------------------------------------------ bad input
def test_folder_without_metrics_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no metrics.jsonl"):
        plotting.plot_runs([tmp_path / "empty"], None, tmp_path / "x.png")
    with pytest.raises(UserError, match="no metrics.jsonl"):
        plotting.plot_run_curves(tmp_path / "empty", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_unknown_metric_is_named_with_the_available_ones(tmp_path, group):
    with pytest.raises(UserError) as e:
        plotting.plot_runs(group, ["gold_reward", "rewrd"], tmp_path / "x.png")
    msg = str(e.value)
    assert "'rewrd'" in msg and "gold_reward" in msg and "explained_variance" in msg and "\n" not in msg


def test_unsupported_output_extension_is_a_user_error(tmp_path, group):
    for name in ("x.jpg", "x"):
        with pytest.raises(UserError, match="unsupported output format"):
            plotting.plot_runs(group, None, tmp_path / name)
    assert list(tmp_path.glob("x*")) == []


# ------------------------------------------------------------------------------------------ table
def test_comparison_table_gives_a_t_interval_over_seeds(tmp_path, group):
    rows = plotting.comparison_table(group)
    assert [r["algo"] for r in rows] == ["grpo", "ppo"] and all(r["seeds"] == 3 for r in rows)
    finals = [plotting.final_value(plotting.load_run(d), "gold_reward") for d in group[:3]]
    half = stats.t.ppf(0.975, 2) * np.std(finals, ddof=1) / math.sqrt(3)
    assert rows[0]["final_gold_reward"] == pytest.approx(np.mean(finals))
    assert rows[0]["final_gold_reward_ci95"] == pytest.approx(half)
    assert rows[0]["wall_time_s"] == pytest.approx(2.5)            # mean of 1.5, 2.5, 3.5 from summary.json
    md = plotting.table_markdown(rows)
    assert md.count("\n| grpo | 3 |") == 1 and md.count("\n| ppo | 3 |") == 1 and "t interval" in md.replace("-", " ")
    lines = plotting.table_csv(rows).splitlines()
    assert lines[0].split(",")[:4] == ["algo", "seeds", "steps", "final_gold_reward"] and len(lines) == 3


def test_comparison_table_has_no_interval_for_one_seed(tmp_path):
    rows = plotting.comparison_table([make_run(tmp_path, "grpo")])
    row = [l for l in plotting.table_markdown(rows).splitlines() if l.startswith("| grpo")][0]
    assert math.isnan(rows[0]["final_gold_reward_ci95"]) and "±" not in row
    assert plotting.table_csv(rows).splitlines()[1].split(",")[4] == ""


def test_plotting_never_imports_pyplot(tmp_path):
    run = make_run(tmp_path)
    code = ("import sys; from toyrlhf import plotting; "
            f"plotting.plot_run_curves({str(run)!r}, {str(tmp_path / 'c.png')!r}); "
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------ issue 17: plot
def make_rm_run(root, name="rm", seed=0, steps=20):
    """A reward-model stage folder as `toyrlhf rm` writes it: minibatch loss/acc/lr, held-out every 5 steps."""
    path = root / name
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"stage": "rm", "task": "pref", "seed": seed, "init": "sft",
                                                  "rm": {"head": "sequence", "steps": steps}}))
    with open(path / "metrics.jsonl", "w") as f:
        for t in range(1, steps + 1):
            row = {"step": t, "loss": 0.7 - 0.01 * t, "acc": 0.5 + 0.01 * t, "lr": 0.002}
            if t % 5 == 0:
                row.update(heldout_loss=0.7 - 0.005 * t, heldout_expected_accuracy=0.55)
            f.write(json.dumps(row) + "\n")
    return path


def test_a_reward_model_folder_plots_bradley_terry_loss_and_accuracy_named_by_its_stage(tmp_path):
    runs = [plotting.load_run(make_rm_run(tmp_path))]
    assert plotting.default_metrics(runs) == ["loss", "heldout_loss", "acc", "heldout_expected_accuracy"]
    fig = plotting.runs_figure(runs, plotting.default_metrics(runs))
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[0].startswith("Bradley-Terry loss") and "policy" not in " ".join(titles)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["reward model, sequence head (1 seed)"]
    held_out = fig.axes[1].get_lines()[0]
    assert list(held_out.get_xdata()) == [5, 10, 15, 20]          # the sparse held-out points joined, not lost
    assert plotting.plot_runs(runs, ["loss"], tmp_path / "rm.png").read_bytes().startswith(PNG)


def test_runs_of_one_seed_are_one_seed_with_no_band(tmp_path):
    runs = [plotting.load_run(make_run(tmp_path / f"r{i}", "grpo", 0, drift=0.01 * (i + 1))) for i in range(6)]
    assert plotting.seed_count(runs) == 1 and plotting.runs_text(runs) == "6 runs, 1 seed"
    fig = plotting.runs_figure(runs, ["gold_reward"])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["grpo (6 runs, 1 seed)"]
    assert not fig.axes[0].collections                            # no bootstrap band over repeats of a seed
    assert "bootstrap" not in fig._suptitle.get_text()
    # two seeds, three runs each: the band is over the 2 seed means
    two = runs[:3] + [plotting.load_run(make_run(tmp_path / f"q{i}", "grpo", 1)) for i in range(3)]
    steps, vals = plotting.seed_values(two, "gold_reward")
    assert vals.shape == (2, 30)
    np.testing.assert_allclose(vals[0], np.mean([r.series("gold_reward")[1] for r in runs[:3]], axis=0))


def test_plot_of_runs_star_descends_into_a_compare_folder_and_skips_other_folders(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "grpo", 0)
    for s in range(2):
        make_run(runs / "compare-pref-1", "ppo", s)
    (runs / "compare-pref-1" / "comparison.md").write_text("table\n")
    (runs / "notes").mkdir()
    paths, descended, skipped = plotting.find_runs(sorted(runs.iterdir()))
    assert len(paths) == 3 and descended == {runs / "compare-pref-1": 2} and skipped == [runs / "notes"]
    with pytest.raises(UserError, match="no metrics.jsonl"):
        plotting.find_runs([runs / "notes"])
    proc = subprocess.run([sys.executable, "-m", "toyrlhf", "plot", *map(str, sorted(runs.iterdir())), "--out",
                           str(tmp_path / "p.png")], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**__import__("os").environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("toyrlhf: note: ")
    assert "ppo   2 seeds" in proc.stdout and "grpo  1 seed" in proc.stdout


def test_curve_styles_stay_distinct_past_the_palette_and_for_the_presets():
    names = [f"algo{i}" for i in range(40)]
    pairs = {(plotting.style_for(n, names)["color"], plotting.style_for(n, names)["ls"]) for n in names}
    assert len(pairs) == 40
    presets = ["ppo", "grpo", "dr_grpo", "dapo", "rloo", "reinforce", "gspo"]
    looks = {n: plotting.style_for(n, presets) for n in presets}
    assert len({l["color"] for l in looks.values()}) == 7 and len({l["marker"] for l in looks.values()}) == 7
    assert len({looks[n]["ls"] for n in ("grpo", "reinforce", "rloo")}) == 3


def test_check_figure_shows_one_minus_cos_on_a_log_axis_with_a_legend_for_its_colours():
    """GRPO's cos 0.9957 and RLOO's cos 1 - 1e-16 differ by decades on the 1 - cos axis, not by a pixel."""
    from toyrlhf.check.rows import CheckReport, CheckRow
    rows = [CheckRow("KL value", "KL k1 (sum)", "KL(pi||ref)", 0.13, 0.13, 0.131, 0.002),
            CheckRow("policy gradient", "RLOO", "grad E[r]", 0.7, 0.7, 0.7, 0.005, cos=1.0, ratio=1.0),
            CheckRow("policy gradient", "GRPO", "grad E[r]", 0.7, 0.49, 0.5, 0.004, cos=0.9957, ratio=0.70),
            CheckRow("KL gradient", "k1 as loss", "grad KL", 0.25, 0.0, 0.01, 0.005, cos=-0.2, ratio=1e-15)]
    fig = plotting.check_figure(CheckReport(rows, {"task": "arith", "samples": 10}))
    ax = fig.axes[1]
    x = ax.collections[-1].get_offsets()[:, 0]          # the markers, one per gradient row, log10(1 - cos)
    np.testing.assert_allclose(x, [-16.0, np.log10(1 - 0.9957), 0.0], atol=1e-6)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("parallel" in l for l in labels) and any("expected gradient 0" in l for l in labels)
    assert len(labels) == 3 and "1 − cos" in ax.get_xlabel()


def make_pretrain_run(root, steps=40):
    """A pretraining folder as `toyrlhf pretrain` writes it: the minibatch loss per step, the held-out loss and the
    corpus entropy in summary.json."""
    path = root / "pt"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"stage": "pretrain", "pretrain": {"task": "arith", "seed": 3}}))
    with open(path / "metrics.jsonl", "w") as f:
        for t in range(1, steps + 1):
            f.write(json.dumps({"step": t, "loss": 1.0 + 2.0 / t}) + "\n")
    (path / "summary.json").write_text(json.dumps({"heldout_loss": 1.08, "heldout_loss_se": 0.01,
                                                   "corpus_entropy_per_token": 1.02}))
    return path


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_stage_curves_draw_loss_against_the_held_out_loss_and_the_floor_of_each_stage(tmp_path):
    """curves.png of a supervised stage (issue 11 item 5): pretraining's loss with its end-of-run held-out loss
    and the corpus entropy below it; a reward model's loss and accuracy with their held-out points and the
    Bayes floor and ceiling; titled by the stage, task and seed."""
    pt = plotting.load_run(make_pretrain_run(tmp_path))
    fig = plotting.stage_curves_figure(pt, json.loads((pt.path / "summary.json").read_text()))
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert ax.get_title().startswith("cross-entropy loss") and ax.get_lines()[-1].get_ydata()[0] == 1.02
    assert set(_legend(ax)[1:]) == {"held-out, after training (± 1 s.e.)", "corpus entropy (the floor)"}
    assert fig._suptitle.get_text() == "pretraining on arith · seed 3 · 40 steps"
    rm = plotting.load_run(make_rm_run(tmp_path))
    fig = plotting.stage_curves_figure(rm, {"heldout_bayes_loss": 0.6, "bayes_accuracy": 0.67, "n_train_pairs": 9})
    loss, acc = [a for a in fig.axes if a.get_visible()]
    assert [ln.get_xdata()[0] for ln in acc.get_lines()[2:3]] == [5]          # held-out points every 5 steps
    assert _legend(loss)[-1] == "Bayes loss floor (held-out pairs)" and _legend(acc)[-1] == "Bayes ceiling (held-out pairs)"
    assert fig._suptitle.get_text() == "reward model, sequence head on pref · seed 0 · 20 steps · 9 training pairs"
    for run in (pt.path, rm.path):                        # plot_run_curves reads summary.json itself
        assert plotting.plot_run_curves(run, run / "curves.png").read_bytes().startswith(PNG)


# ------------------------------------------------------------------------------------------ issue 12: the helper
def _no_fallback(monkeypatch):
    """Make the helper's in-process fallback fail, so that a test passes only on what the helper process drew."""
    from toyrlhf.plotting import helper as helper_mod

    def fallback(*args):
        raise AssertionError("the helper process did not answer: this process drew")
    monkeypatch.setattr(helper_mod, "plot_run_curves", fallback)


@pytest.mark.skipif(os.name != "posix", reason="the helper process is POSIX only")
def test_the_curves_helper_draws_the_same_png_as_this_process(tmp_path, monkeypatch):
    """`toyrlhf run`'s helper process writes byte for byte the curves.png this process would."""
    from toyrlhf.plotting.helper import CurvesHelper
    run = make_run(tmp_path, "ppo", critic=True)
    with CurvesHelper() as helper, monkeypatch.context() as mp:
        _no_fallback(mp)
        assert helper.draw(run, tmp_path / "helper.png") == tmp_path / "helper.png"
    here = plotting.plot_run_curves(run, tmp_path / "here.png")
    assert (tmp_path / "helper.png").read_bytes() == here.read_bytes()


@pytest.mark.skipif(os.name != "posix", reason="the helper process is POSIX only")
def test_the_curves_helper_reports_an_unwritable_folder_as_the_same_user_error(tmp_path, monkeypatch):
    """The same one line, naming the paths as the run gave them (here relative to the working folder)."""
    from toyrlhf.plotting.helper import CurvesHelper
    monkeypatch.chdir(tmp_path)
    run = make_run(Path("."))
    (tmp_path / "file").write_text("")
    out = Path("file") / "curves.png"
    with pytest.raises(UserError) as here:
        plotting.plot_run_curves(run, out)
    with CurvesHelper() as helper, monkeypatch.context() as mp, pytest.raises(UserError) as there:
        _no_fallback(mp)
        helper.draw(run, out)
    assert str(there.value) == str(here.value)


def test_a_helper_that_died_leaves_the_drawing_to_this_process(tmp_path):
    from toyrlhf.plotting.helper import CurvesHelper
    run = make_run(tmp_path)
    with CurvesHelper() as helper:
        helper.proc.kill()
        helper.proc.wait()
        assert helper.draw(run, tmp_path / "c.png").read_bytes().startswith(PNG)
