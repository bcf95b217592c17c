"""`toyrlhf run` prints its summary even when a figure has no initial value (issue 16's known defect: with
`--exact --set exact_every=N` and N > 10 no exact metric falls in the first 10 steps, the initial exact figure is
None, and formatting it crashed with a TypeError, exit 1)."""
from __future__ import annotations

import json

import toyrlhf.rl.run

UPSTREAM = ["--set", "prompts_per_step=4", "--set", "group_size=4", "--set", "pretrain.steps=50",
            "--set", "pretrain.corpus_size=2000", "--set", "sft.steps=20"]


def test_summary_with_no_initial_exact_figure_prints_na(cache_dir, tmp_path, capsys, monkeypatch):
    """11 steps, exact metrics at step 11 only: initial_exact_* is None (not measured in the first 10 steps);
    the summary says "n/a -> x" and the command exits 0."""
    from toyrlhf.cli.main import main
    monkeypatch.setattr(toyrlhf.rl.run, "plot_run_curves", lambda run_dir, out: out)
    out = tmp_path / "run"
    try:
        main(["run", "grpo", "--task", "arith", "--steps", "11", "--exact", "--set", "exact_every=11", *UPSTREAM,
              "--out", str(out)])
        code = 0
    except SystemExit as e:
        code = e.code
    text = capsys.readouterr().out
    assert code in (0, None), text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["initial_exact_gold_reward"] is None and summary["final_exact_gold_reward"] is not None
    line = next(l for l in text.splitlines() if "exact gold reward" in l)
    assert "n/a ->" in line
    # the initial and final figures are means over windows of steps, and the summary says which
    assert "(initial -> final)  means over steps 1-10 -> over the last 2 steps" in text, text


def test_the_summary_is_printed_before_curves_png_is_drawn(cache_dir, tmp_path, capsys, monkeypatch):
    """Drawing curves.png is the longest thing after the last step: the summary is on stdout before it starts, and
    the figure is still drawn before the command returns."""
    from toyrlhf.cli.main import main
    printed = []
    monkeypatch.setattr(toyrlhf.rl.run, "plot_run_curves",
                        lambda run_dir, out: printed.append(capsys.readouterr().out) or out.write_bytes(b"png"))
    main(["run", "grpo", "--steps", "2", *UPSTREAM, "--out", str(tmp_path / "run")])
    assert len(printed) == 1 and "wall time" in printed[0], printed
    assert (tmp_path / "run" / "curves.png").read_bytes() == b"png"
