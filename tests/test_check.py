"""`toyrlhf check` (toyrlhf/check/): every row's Monte-Carlo mean agrees with the exact engine's E[estimator], the
verdicts name the known biases, and wrong input is a one-line error."""
from __future__ import annotations

import pytest

from conftest import invoke_cli
from toyrlhf import check, stages
from toyrlhf.cli.commands_exact import format_table

Z = 4.0


@pytest.mark.slow
def test_check_rows_agree_with_monte_carlo_and_name_the_known_biases(cache_dir):
    """run_check on tiny upstream stages: every row's MC mean matches the exact E[estimator] (|z| <= 4), and the
    verdicts (computed from cosines / ratios / z) name the textbook facts."""
    pipe = stages.Pipeline(pretrain=stages.PretrainConfig(task="arith", seed=0, steps=60, corpus_size=2000),
                           sft=stages.SFTConfig(steps=40))
    rep = check.run_check("arith", samples=400, seed=0, pipeline=pipe)
    for row in rep.rows:
        assert abs(row.z_expected) <= Z, (row.estimator, row.target, row.z_expected)
    v = {(r.estimator, r.target): r.verdict for r in rep.rows}
    assert v[("KL k1 (sum over tokens)", "KL(pi||ref)")].startswith("unbiased")
    assert v[("KL k3 (sum over tokens)", "KL(pi||ref)")].startswith("unbiased")
    assert v[("KL k2 (sum over tokens)", "KL(pi||ref)")].startswith("biased")
    assert v[("k1 as loss", "grad KL(pi||ref)")].startswith("zero expected gradient")
    assert v[("k3 as loss, per sequence", "grad KL(ref||pi)")].startswith("unbiased")
    assert v[("k3 as loss, per sequence", "grad KL(pi||ref)")].startswith("biased: follows grad KL(ref||pi)")
    assert v[("k2 as loss, per sequence", "grad KL(pi||ref)")].startswith("unbiased")
    assert v[("k1 in reward (REINFORCE)", "grad KL(pi||ref)")].startswith("unbiased")
    assert v[("RLOO", "grad E[r]")].startswith("unbiased")
    assert "(G-1)/G/L_max x true" in v[("Dr. GRPO (group mean, sum/L_max)", "grad E[r]")]
    assert "(B-1)/B x true" in v[("REINFORCE (batch mean)", "grad E[r]")]
    assert v[("GRPO (std, 1/|o|)", "grad E[r]")].startswith("not parallel")
    # the preference-label rows: the sampled ceiling and the BT sampler's agreement with r* are unbiased for the
    # exact ceiling of the enumerated pair population
    # these two rows have E[est] = exact by construction, so their verdict is fixed; only their z can fail
    pref_rows = [r for r in rep.rows if r.section == "preference labels"]
    assert len(pref_rows) == 2 and all(abs(r.z) <= Z for r in pref_rows)
    lines = format_table(rep)
    starts = ("KL ", "k", "REINFORCE", "RLOO", "Dr.", "GRPO", "sigma", "label")
    assert len([ln for ln in lines if ln.startswith(starts)]) == len(rep.rows)


@pytest.mark.parametrize("args,fragment", [(["--task", "nope"], "unknown task 'nope'"),
                                           (["--samples", "1"], "--samples must be at least 2"),
                                           (["--seed", "-1"], "-1 is not in the range x>=0")])
def test_check_wrong_input_is_one_line_exit_2(args, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(tmp_path))
    code, _, err = invoke_cli(["check", *args], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in err
