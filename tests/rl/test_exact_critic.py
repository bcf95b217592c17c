"""PPO with the exact critic (`--set critic=exact`, rl/exact_critic.py): GAE reads V^pi of the sampling policy (no
value model is built), the mean of sampled PPO update gradients on exact values is the exact policy gradient of
E[r - beta sum_t k1] for lambda = 1 and 0.5 (|z| <= 4; an untrained critic's bias is detected), the learned critic's advantage error is logged with --exact and is 0
for exact values, and critic=exact with an algorithm without a critic is a one-line error (exit 2)."""
from __future__ import annotations

import numpy as np
import pytest

from toyrlhf import exact
from toyrlhf.config import preset_config
from toyrlhf.rl import losses
from toyrlhf.rl.advantages import gae
from toyrlhf.rl.exact_metrics import training_metrics
from toyrlhf.rl.trainer import Trainer, build_models

Z = 4.0


def small(**kw):
    cfg = preset_config("ppo", task="arith", **{"prompts_per_step": 16, "group_size": 4, **kw})
    cfg.pretrain.steps, cfg.pretrain.corpus_size, cfg.sft.steps = 60, 2000, 40
    return cfg


def _nudged(cfg, seed=0):
    """Models whose policy is away from the reference, so the KL term of the per-token reward is not 0."""
    models = build_models(cfg)
    rng = np.random.default_rng(seed)
    models.policy.set_flat(models.policy.flat + 0.05 * rng.normal(size=models.policy.flat.size))
    return models


def _enumerated(tr, beta):
    """(enumeration of pi, per-token MDP rewards r_t on it): the run's reward plus -beta k1 per token."""
    cfg = tr.cfg
    e = exact.enumerate_task(tr.models.policy, tr.task, cfg.temperature)
    ref = exact.rescore(tr.models.reference, e, cfg.temperature)
    prompts, comps = e.split()
    r = np.asarray(tr.reward_fn(e.tokens, e.mask, prompts, comps), np.float64)
    pen = losses.kl_penalty_rewards(e.logp, ref.logp, e.mask, beta, cfg.kl_estimator)
    return e, ref, r, exact.mdp_token_rewards(e, r, pen)


def test_the_exact_critic_builds_no_value_model_and_gae_reads_v_pi_of_the_sampling_policy(module_cache_dir):
    cfg = small(critic="exact")
    tr = Trainer(cfg, _nudged(cfg))
    assert tr.models.critic is None and "critic" not in tr.state_arrays() and not cfg.uses_critic
    beta = tr.kl_ctl.beta
    ro, _ = tr.collect()
    tg = tr.advantages(ro, beta)
    e, ref, r, rt = _enumerated(tr, beta)
    # V(s_0) = E_pi[r | q] - beta KL(pi || ref | q) (k1, gamma = 1), read at each row's first completion token
    v0 = exact.expectation(e, r)[0] - beta * exact.kl_divergences(e, ref)["reverse"]
    rows = {row.tobytes(): q for q, row in enumerate(e.prompts)}
    q = np.array([rows[p.tobytes()] for p in ro.tokens[:, :tr.task.prompt_len]])
    np.testing.assert_allclose(tg.old_values[:, tr.task.prompt_len], v0[q], atol=1e-10)
    np.testing.assert_allclose(tg.old_values, exact.state_values(e, rt)(ro.tokens, ro.mask), atol=1e-12)
    m = tr.step()
    assert "value_loss" not in m and "adv_err_rms" not in m and np.isfinite(m["reward"])


def _update_z_scores(critic: str, lam: float, steps: int = 200) -> list[float]:
    """z of the mean of `steps` sampled PPO update gradients at a fixed policy (Adam captured, the critic frozen)
    against -(1/n) sum_q grad E_pi[r - beta sum_t k1_t | q] (rewards detached), on the exact direction and two
    random unit directions. gamma = 1, no whitening, one epoch and minibatch (ratio 1), a token sum per sequence:
    the gradient is -(1/B) sum_i sum_t A_it grad log pi_it."""
    cfg = small(critic=critic, lam=lam, whiten=False, epochs=1, minibatches=1, aggregation="seq-mean-token-sum",
                max_grad_norm=0.0)
    tr = Trainer(cfg, _nudged(cfg, 1))
    e, _, _, rt = _enumerated(tr, tr.kl_ctl.beta)
    want = -exact.grad_expectation(tr.models.policy, e, rt.sum(axis=1))
    grads = []
    tr.opt.step = lambda flat, grad: grads.append(grad.copy())       # capture; the policy stays where it is
    if tr.critic_opt is not None:
        tr.critic_opt.step = lambda flat, grad: None                   # the learned critic stays where it is
    for _ in range(steps):
        tr.step()
    G = np.array(grads)
    rng = np.random.default_rng(0)
    out = []
    for d in [want / np.linalg.norm(want)] + [v / np.linalg.norm(v) for v in rng.normal(size=(2, want.size))]:
        proj = G @ d
        out.append(float((proj.mean() - want @ d) / (proj.std(ddof=1) / np.sqrt(len(proj)))))
    return out


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_sampled_ppo_gradients_with_the_exact_critic_average_to_the_exact_policy_gradient(module_cache_dir, lam):
    """GAE on exact values is unbiased for Q - V for any lambda: |z| <= 4 (measured lambda = 1: -1.98, -0.76,
    -1.42; lambda = 0.5: -1.39, -0.63, -0.73)."""
    assert all(abs(z) <= Z for z in _update_z_scores("exact", lam))


def test_the_same_check_detects_the_bias_of_an_untrained_critic_at_lambda_below_one(module_cache_dir):
    """The learned critic at its start (arith has no RM: a zero value head, V = 0) with lambda = 0.5 biases the
    update: the exact direction's z is far below -4 (measured -10.9)."""
    assert _update_z_scores("learned", 0.5)[0] < -Z


def test_a_learned_critic_logs_its_advantage_error_against_the_exact_one_with_exact_metrics(module_cache_dir):
    cfg = small(exact_every=2)
    tr = Trainer(cfg, build_models(cfg))
    m1 = tr.step()
    assert "adv_err_rms" not in m1                                       # no --exact: nothing computed
    tr.exact_fn = training_metrics(cfg)
    beta = tr.kl_ctl.beta
    ro, _ = tr.collect()
    tg = tr.advantages(ro, beta)
    err = tr.critic_error(ro, tg, beta)                                  # as step 2 would: an exact step
    e, _, _, rt = _enumerated(tr, beta)
    v_star = exact.state_values(e, rt)(ro.tokens, ro.mask)
    pen = losses.kl_penalty_rewards(ro.old_logp, ro.ref_logp, ro.mask, beta, cfg.kl_estimator)
    token_r = pen.copy()
    token_r[np.arange(len(ro.reward)), tr.task.prompt_len + ro.lengths - 1] += ro.reward
    a_star, _ = gae(token_r, v_star, ro.mask, cfg.gamma, cfg.lam)
    a, _ = gae(token_r, tg.old_values, ro.mask, cfg.gamma, cfg.lam)
    msk = ro.mask
    assert err["adv_err_rms"] == pytest.approx(np.sqrt(np.mean((a - a_star)[msk] ** 2)), rel=1e-9)
    assert err["value_err_rms"] == pytest.approx(np.sqrt(np.mean((tg.old_values - v_star)[msk] ** 2)), rel=1e-9)
    assert err["adv_corr"] == pytest.approx(np.corrcoef(a[msk], a_star[msk])[0, 1], rel=1e-9)
    assert err["adv_err_rms"] > 0.01
    # exact values in place of the learned ones: no error, correlation 1
    tg.inputs.values = v_star
    same = tr.critic_error(ro, tg, beta)
    assert same["adv_err_rms"] < 1e-12 and same["value_err_rms"] < 1e-12 and same["adv_corr"] == pytest.approx(1.0)
    m2 = tr.step()                                                       # the trainer logs them at step 2
    assert {"adv_err_rms", "adv_corr", "value_err_rms", "adv_exact_rms", "exact_reward"} <= set(m2)


@pytest.mark.parametrize("argv,needle", [
    (["run", "grpo", "--set", "critic=exact"], "critic=exact"),
    (["run", "ppo", "--set", "critic=oracle"], "critic"),
])
def test_critic_exact_without_a_critic_or_an_unknown_critic_is_one_line_exit_2(argv, needle, tmp_path, capsys):
    from toyrlhf.cli.main import main
    with pytest.raises(SystemExit) as e:
        main([*argv, "--steps", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
