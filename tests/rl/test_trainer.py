"""The one trainer loop: every preset runs and logs its metrics, determinism, ratio == 1 on a fresh rollout,
the models each algorithm holds, and configuration validation."""
import numpy as np
import pytest

from toyrlhf.errors import UserError
from toyrlhf.config import preset_config
from toyrlhf.rl.algorithms import PRESETS
from toyrlhf.rl import surrogates
from toyrlhf.rl import trainer as trainer_mod
from toyrlhf.rl.trainer import Trainer, build_models

SMALL = dict(prompts_per_step=4, group_size=4)


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    import os
    old = os.environ.get("TOYRLHF_CACHE_DIR")
    os.environ["TOYRLHF_CACHE_DIR"] = str(tmp_path_factory.mktemp("trainer-cache"))
    yield
    if old is None:
        del os.environ["TOYRLHF_CACHE_DIR"]
    else:
        os.environ["TOYRLHF_CACHE_DIR"] = old


def small_config(algo, task="pref", **kw):
    cfg = preset_config(algo, task=task, **{**SMALL, **kw})
    cfg.pretrain.steps, cfg.sft.steps, cfg.rm.steps, cfg.rm.pairs = 200, 50, 40, 400
    return cfg


def run_steps(cfg, n):
    tr = Trainer(cfg, build_models(cfg))
    return tr, [tr.step() for _ in range(n)]


BASE_KEYS = {"step", "reward", "gold_reward", "kl", "entropy", "response_length", "clip_fraction", "approx_kl",
             "grad_norm", "time_s", "frac_zero_std_groups"}


@pytest.mark.parametrize("algo", list(PRESETS))
def test_every_preset_runs_and_logs_finite_metrics(small_cache, algo):
    tr, ms = run_steps(small_config(algo), 3)
    for m in ms:
        assert BASE_KEYS <= set(m)
        assert all(v is None or np.isfinite(v) for v in m.values())
    if algo == "ppo":
        assert {"value_loss", "explained_variance"} <= set(ms[-1])
        assert tr.models.critic is not None
    else:
        assert tr.models.critic is None


def test_verifiable_task_logs_lengths_of_correct_and_incorrect_answers(small_cache):
    _, ms = run_steps(small_config("grpo", task="length"), 2)
    assert {"accuracy", "response_length_correct", "response_length_incorrect"} <= set(ms[-1])


def test_same_seed_gives_identical_metrics(small_cache):
    strip = lambda ms: [{k: v for k, v in m.items() if k != "time_s"} for m in ms]
    a = strip(run_steps(small_config("ppo"), 3)[1])
    b = strip(run_steps(small_config("ppo"), 3)[1])
    assert a == b


def test_ratio_is_exactly_one_on_the_first_minibatch_of_a_rollout(small_cache, monkeypatch):
    seen = []
    real = surrogates.policy_loss

    def spy(logp, old_logp, advantages, mask, **kw):
        seen.append(np.exp(logp - old_logp)[mask])
        return real(logp, old_logp, advantages, mask, **kw)

    monkeypatch.setattr(trainer_mod.surrogates, "policy_loss", spy)
    cfg = small_config("ppo")                        # 4 epochs x 4 minibatches: 16 updates per rollout
    tr = Trainer(cfg, build_models(cfg))
    tr.step()
    assert len(seen) == cfg.epochs * cfg.minibatches
    assert np.all(seen[0] == 1.0)                    # exactly, not approximately
    assert not np.all(seen[-1] == 1.0)               # later minibatches see a moved policy


def test_grpo_holds_no_value_model_and_ppo_holds_four_models(small_cache):
    from toyrlhf.rl.run import models_summary
    grpo = dict(models_summary(Trainer(small_config("grpo"), build_models(small_config("grpo")))))
    ppo = dict(models_summary(Trainer(small_config("ppo"), build_models(small_config("ppo")))))
    assert not any("value" in k for k in grpo)
    assert sum(v > 0 for v in ppo.values()) == 4


def test_dynamic_sampling_trains_on_groups_with_nonzero_reward_spread(small_cache):
    cfg = small_config("dapo", task="length")
    tr = Trainer(cfg, build_models(cfg))
    batch, raw = tr.collect()
    from toyrlhf.rl.advantages import zero_std_groups
    if batch is not raw:
        assert not zero_std_groups(batch.reward, cfg.group_size).any()


def test_reference_reset_copies_the_policy(small_cache):
    cfg = small_config("grpo", ref_reset_every=2)
    tr, _ = run_steps(cfg, 2)
    assert np.array_equal(tr.models.reference.flat, tr.models.policy.flat)


@pytest.mark.parametrize("bad", [dict(group_size=1), dict(beta=-0.1), dict(eps_low=0.0), dict(eps_high=1.5),
                                 dict(advantage="magic"), dict(aggregation="mean"), dict(minibatches=99)])
def test_invalid_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        preset_config("grpo", **bad)


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="unknown algorithm"):
        preset_config("sac")


def test_process_supervision_runs_on_a_task_with_step_rewards(small_cache):
    _, ms = run_steps(small_config("grpo", task="arith", advantage="process"), 2)
    assert np.isfinite(ms[-1]["grad_norm"])


def test_process_supervision_on_a_task_without_steps_is_a_user_error(small_cache):
    cfg = small_config("grpo", task="length", advantage="process")
    tr = Trainer(cfg, build_models(cfg))
    with pytest.raises(UserError):
        tr.step()


def test_critic_starts_as_the_reward_models_normalised_reading_of_the_text_so_far(small_cache):
    """InstructGPT initialises the value model from the RM. With the sequence RM the identity is exact: V(s_t), the
    value of the state before completion token t, equals the normalised RM score of the prefix that ends at t - 1."""
    from toyrlhf.rl.trainer import init_critic
    from toyrlhf.tasks import get_task
    cfg = small_config("ppo")
    models = build_models(cfg)
    rm = models.reward_model
    assert rm.model.config.align == "prefix" and rm.model.config.reward_pool == "last"
    critic = init_critic(models.policy, rm)
    task = get_task("pref")
    rng = np.random.default_rng(0)
    s = models.policy.sample(task.sample_prompts(32, rng), task.max_new_tokens, rng)
    values = critic.value_forward(s.tokens, s.mask)[0]
    P = task.prompt_len
    for t in range(P + 1, s.tokens.shape[1]):                  # states after at least one completion token
        rows = np.flatnonzero(s.mask[:, t])
        prefix_mask = s.mask[rows].copy()
        prefix_mask[:, t:] = False
        np.testing.assert_allclose(values[rows, t], rm.score(s.tokens[rows], prefix_mask), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("opt, quantity", [("opt", "parameters"), ("critic_opt", "value model parameters")])
def test_an_update_that_makes_a_parameter_non_finite_stops_the_step_it_happens_in(small_cache, opt, quantity):
    # Adam reports the updated parameters' finiteness (instead of the trainer scanning them again); an infinite
    # learning rate makes them non-finite at the first update, before any loss or gradient sees them
    from toyrlhf.runs import NumericalError
    cfg = small_config("ppo")
    tr = Trainer(cfg, build_models(cfg))
    tr.step()
    getattr(tr, opt).lr = np.inf
    with pytest.raises(NumericalError, match=f"^non-finite {quantity} at step 2$"):
        tr.step()


def test_minibatches_are_whole_groups_in_array_split_sizes(small_cache):
    # the rows of each epoch's permuted groups, cut as np.array_split cuts the groups (first n % k one larger)
    cfg = small_config("ppo", prompts_per_step=7, epochs=2, minibatches=3)
    tr = Trainer(cfg, build_models(cfg))
    ro, _ = tr.collect()
    G, rng = ro.group_size, np.random.default_rng(5)
    tr.rng = np.random.default_rng(5)
    got = tr.minibatches(ro)
    want = [(g[:, None] * G + np.arange(G)).ravel() for _ in range(2) for g in np.array_split(rng.permutation(7), 3)]
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))
    assert [len(r) // G for r in got] == [3, 2, 2, 3, 2, 2]
