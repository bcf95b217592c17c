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


# --------------------------------------------------------------------------------------- every library preset
from toyrlhf.rl.algorithms import LIBRARY_PRESETS  # noqa: E402


def test_every_library_preset_cites_version_date_and_sources():
    for name, p in LIBRARY_PRESETS.items():
        lib = name.split("-")[0]
        assert lib in ("trl", "verl", "openrlhf")
        assert any(v in p.sources for v in ("v1.9.0", "v0.7.0", "v0.11.0")), name
        assert "20" in p.sources.split(")")[0], name        # the release date, e.g. (2026-01-05)


def test_library_preset_knobs_are_the_libraries_defaults():
    v = preset_config("verl-grpo")
    assert (v.advantage, v.kl, v.kl_estimator, v.beta, v.ratio, v.dual_clip_c, v.aggregation, v.minibatches,
            v.std, v.adv_eps) == ("group", "loss", "k3", 0.001, "dual_clip", 3.0, "token-mean", 4, "sample", 1e-6)
    p = preset_config("verl-ppo")
    assert (p.advantage, p.gamma, p.lam, p.kl, p.whiten, p.value_clip, p.ratio) == \
        ("gae", 1.0, 1.0, "none", True, 0.5, "dual_clip")
    r = preset_config("trl-rloo")
    assert (r.advantage, r.group_size, r.kl, r.kl_estimator, r.beta, r.whiten) == \
        ("rloo", 2, "reward", "k1", 0.05, False)
    o = preset_config("openrlhf-ppo")
    assert (o.advantage, o.lam, o.kl, o.kl_estimator, o.beta, o.value_clip, o.aggregation, o.minibatches) == \
        ("gae", 1.0, "reward", "k1", 0.01, 0.5, "token-mean", 8)
    b = preset_config("openrlhf-reinforce-baseline")
    assert (b.advantage, b.kl, b.beta, b.whiten) == ("reinforce_pp_baseline", "reward", 0.01, False)


@pytest.mark.parametrize("lib", ["trl", "verl", "openrlhf"])
def test_algos_names_prints_each_librarys_own_option_names(lib):
    out = CliRunner().invoke(algos_cmd, ["--names", lib]).output
    own = {"trl": ["num_generations", "normalize_advantages"],
           "verl": ["algorithm.adv_estimator", "actor.clip_ratio_c", "actor.loss_agg_mode", "actor.kl_loss_type"],
           "openrlhf": ["--algo.advantage.estimator", "--algo.kl.init_coef", "--critic.value_clip"]}[lib]
    for name in own:
        assert name in out


@pytest.mark.parametrize("name", sorted(LIBRARY_PRESETS))
def test_every_library_preset_runs(name, shared_cache_dir, tmp_path, monkeypatch):
    """`toyrlhf run NAME --task arith --steps 3` with tiny upstream stages (one shared cache), through the CLI."""
    from tiny import set_args
    from toyrlhf.cli.commands_rl import run_cmd
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
    sets = [a if a != "prompts_per_step=4" else "prompts_per_step=8" for a in set_args()]
    res = CliRunner().invoke(run_cmd, [name, "--task", "arith", "--steps", "3", "--out", str(tmp_path / "r"),
                                   *sets])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "summary.json").is_file()
