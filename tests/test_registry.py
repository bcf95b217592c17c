"""The registries: lookups, one-line errors, and that a newly registered estimator is picked up by config
validation and `toyrlhf algos` without other edits."""
import numpy as np
import pytest
from click.testing import CliRunner

from toyrlhf import check, stages
from toyrlhf.cli.commands_rl import KNOB_REGISTRIES, algos_cmd
from toyrlhf.config import preset_config
from toyrlhf.registry import Registry
from toyrlhf.rl.advantages import ADVANTAGE_ESTIMATORS


@pytest.fixture
def toy_estimator():
    """A toy sequence-level estimator, A_i = r_i - median(r_group), registered for one test."""
    @ADVANTAGE_ESTIMATORS.register("toy_median", paper="(a test's toy)", equation="A_i = r_i - median(r_group)",
                                   label="toy median", aggregation="seq-mean-token-sum")
    def toy_median(rewards, G, hp):
        r = rewards.reshape(-1, G)
        return (r - np.median(r, axis=1, keepdims=True)).ravel()

    yield "toy_median"
    ADVANTAGE_ESTIMATORS.remove("toy_median")


def test_lookup_of_an_unknown_name_is_a_one_line_error_naming_the_choices():
    with pytest.raises(ValueError, match=r"unknown advantage 'nope'; choose from gae, .*group") as e:
        ADVANTAGE_ESTIMATORS.lookup("nope")
    assert "\n" not in str(e.value)


def test_a_name_can_be_registered_once_and_facts_must_be_declared():
    reg = Registry("thing", defaults=dict(level="x"))
    reg.register("a", paper="p", equation="e")(lambda: 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a", paper="p", equation="e")(lambda: 2)
    with pytest.raises(TypeError, match="unknown fact"):
        reg.register("b", paper="p", equation="e", colour="red")
    assert reg["a"].level == "x" and reg["a"]() == 1


def test_every_knob_registry_entry_cites_a_paper_and_an_equation():
    for knob, reg in KNOB_REGISTRIES.items():
        for name, entry in reg.items():
            assert entry.paper and entry.equation, f"{knob}={name}"


def test_a_registered_estimator_is_accepted_by_the_config_and_listed_by_algos(toy_estimator):
    cfg = preset_config("grpo", advantage=toy_estimator)
    assert cfg.advantage == toy_estimator and not cfg.uses_critic
    out = CliRunner().invoke(algos_cmd).output
    assert "toy_median" in out and "A_i = r_i - median(r_group)" in out
    with pytest.raises(ValueError, match="advantage must be one of"):
        preset_config("grpo", advantage="toy_mode")


@pytest.mark.slow
def test_a_registered_estimator_gets_an_exact_check_row_that_agrees_with_monte_carlo(toy_estimator, cache_dir):
    """The README's "add an estimator" promise: one registered function, and `toyrlhf check` shows its exact
    expected gradient against Monte Carlo of the same function (|z(E)| <= 4) without other edits."""
    pipe = stages.Pipeline(pretrain=stages.PretrainConfig(task="arith", seed=0, steps=60, corpus_size=2000),
                           sft=stages.SFTConfig(steps=40))
    assert toy_estimator in [e.name for e in check.pg_estimators()]
    rep = check.run_check("arith", samples=400, seed=0, pipeline=pipe)
    row = next(r for r in rep.rows if r.estimator == "toy median")
    assert row.target == "grad E[r]" and abs(row.z_expected) <= 4.0
    assert 0 < row.cos <= 1.0 + 1e-12
