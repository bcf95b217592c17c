"""Library presets and option names: trl-grpo's settings, TRL GRPOConfig names as `--set` aliases, and
`toyrlhf algos --names trl`."""
import pytest
from click.testing import CliRunner

from toyrlhf.cli.commands_rl import algos_cmd
from toyrlhf.config import preset_config
from toyrlhf.errors import UserError
from toyrlhf.settings import with_overrides


def test_trl_grpo_preset_is_trls_defaults():
    c = preset_config("trl-grpo")
    assert (c.advantage, c.aggregation, c.kl, c.beta, c.eps_low, c.eps_high, c.epochs) == \
        ("group", "token-mean", "none", 0.0, 0.2, 0.2, 1)
    assert (c.std, c.adv_eps) == ("sample", 1e-4)


def test_trl_names_are_aliases_of_toyrlhf_settings():
    c = with_overrides(preset_config("grpo"), {"num_generations": "4", "epsilon": "0.1", "epsilon_high": "0.3",
                                               "loss_type": "dr_grpo", "scale_rewards": "batch",
                                               "num_iterations": "2", "learning_rate": "5e-4",
                                               "use_bias_correction_kl": "true"})
    assert (c.group_size, c.eps_low, c.eps_high, c.aggregation, c.advantage, c.epochs, c.lr) == \
        (4, 0.1, 0.3, "seq-mean-token-sum-norm", "batch_std", 2, 5e-4)
    assert c.kl_ratio_correction
    c = with_overrides(preset_config("grpo"), {"epsilon": "0.1", "loss_type": "bnpo", "scale_rewards": "none"})
    assert (c.eps_low, c.eps_high, c.aggregation, c.advantage) == (0.1, 0.1, "token-mean", "group_mean")
    # an explicit toyrlhf name wins over the alias that would set it
    assert with_overrides(preset_config("grpo"), {"num_generations": "4", "group_size": "2"}).group_size == 2


@pytest.mark.parametrize("bad, msg", [({"loss_type": "sum"}, "loss_type 'sum'"),
                                      ({"scale_rewards": "max"}, "scale_rewards 'max'"),
                                      ({"max_completion_length": "5"}, "task fixes the completion length")])
def test_trl_values_without_a_counterpart_are_one_line_errors(bad, msg):
    with pytest.raises(UserError, match=msg) as e:
        with_overrides(preset_config("grpo"), bad)
    assert "\n" not in str(e.value)


def test_algos_lists_library_presets_and_prints_a_librarys_names():
    out = CliRunner().invoke(algos_cmd).output
    assert "trl-grpo" in out and "TRL 1.9 GRPOConfig" in out
    names = CliRunner().invoke(algos_cmd, ["--names", "trl"]).output
    for name in ("num_generations", "epsilon", "epsilon_high", "beta", "loss_type", "scale_rewards",
                 "num_iterations", "learning_rate", "max_completion_length"):
        assert name in names
