"""The library surrogates of rl/surrogates.py (dual clip, ratio cap, CISPO, SAPO, GMPO): float64 finite-difference
gradients away from the kinks, their defining properties, and a trainer step with each."""
import numpy as np
import pytest

from toyrlhf.config import preset_config
from toyrlhf.rl.surrogates import SURROGATES, SurrogateSettings, policy_loss

from test_losses import EPS_HIGH, EPS_LOW, assert_grad_matches_fd, away_from, ragged_mask

HP = SurrogateSettings(dual_clip_c=1.5, ratio_cap_delta=1.5, sapo_tau_pos=1.0, sapo_tau_neg=1.05)


def batch(seed, B=6, spread=0.9, kinks=(10.0,)):
    rng = np.random.default_rng(seed)
    mask = ragged_mask(rng, B)
    L = mask.shape[1]
    old = np.where(mask, np.log(rng.uniform(0.05, 0.95, size=(B, L))), 0.0)
    lr = away_from(rng.uniform(-spread, spread, size=(B, L)), list(kinks), rng, -spread, spread)
    adv_seq = rng.normal(size=B)
    adv = np.where(mask, adv_seq[:, None] if seed % 2 else rng.normal(size=(B, L)), 0.0)
    return np.where(mask, old + lr, 0.0), old, adv, mask


TOKEN_KINKS = [np.log(1 - EPS_LOW), np.log(1 + EPS_HIGH), np.log(1.5)]


@pytest.mark.parametrize("name", ["dual_clip", "ratio_cap", "sapo"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_token_surrogate_gradients_match_finite_differences(name, seed):
    logp, old, adv, mask = batch(seed, kinks=TOKEN_KINKS)
    f = lambda lp: policy_loss(lp, old, adv, mask, eps_low=EPS_LOW, eps_high=EPS_HIGH, ratio=name,
                               aggregation="seq-mean-token-mean", hp=HP)[0]
    _, g, _ = policy_loss(logp, old, adv, mask, eps_low=EPS_LOW, eps_high=EPS_HIGH, ratio=name,
                          aggregation="seq-mean-token-mean", hp=HP)
    assert_grad_matches_fd(f, logp, g, mask)


@pytest.mark.parametrize("seed", [1, 3, 5])          # odd seeds: one advantage per sequence
def test_gmpo_gradient_matches_finite_differences(seed):
    eps = 0.4
    logp, old, adv, mask = batch(seed, kinks=[-eps, eps])
    f = lambda lp: policy_loss(lp, old, adv, mask, eps_low=eps, eps_high=eps, ratio="gmpo")[0]
    _, g, st = policy_loss(logp, old, adv, mask, eps_low=eps, eps_high=eps, ratio="gmpo")
    assert_grad_matches_fd(f, logp, g, mask)
    assert 0 < st["clip_fraction"] < 1


def test_cispo_keeps_every_tokens_gradient_with_the_clipped_detached_weight():
    logp, old, adv, mask = batch(4, kinks=TOKEN_KINKS)
    _, g, st = policy_loss(logp, old, adv, mask, eps_low=EPS_LOW, eps_high=EPS_HIGH, ratio="cispo",
                           aggregation="token-mean")
    w = np.clip(np.exp(logp - old), 1 - EPS_LOW, 1 + EPS_HIGH)
    np.testing.assert_allclose(g, np.where(mask, -w * adv / mask.sum(), 0.0), rtol=1e-13, atol=1e-16)
    assert np.all(g[mask & (adv != 0)] != 0) and st["clip_fraction"] > 0
    # with the weight frozen at this point, the loss is linear in logp: its finite differences are g
    f = lambda lp: float(np.sum(np.where(mask, -w * adv * (lp - old), 0.0)) / mask.sum())
    assert_grad_matches_fd(f, logp, g, mask)


def test_ratio_cap_is_dual_clip_with_c_equal_delta_and_both_bound_negative_advantages():
    logp, old, adv, mask = batch(6, spread=2.0, kinks=TOKEN_KINKS)
    kw = dict(eps_low=EPS_LOW, eps_high=EPS_HIGH, aggregation="token-mean", hp=HP)
    a = policy_loss(logp, old, adv, mask, ratio="ratio_cap", **kw)
    b = policy_loss(logp, old, adv, mask, ratio="dual_clip", **kw)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    ppo = policy_loss(logp, old, adv, mask, ratio="token", **kw)
    big = mask & (adv < 0) & (np.exp(logp - old) > 1.5)
    assert big.any() and not a[1][big].any() and ppo[1][big].all()
    same = mask & ~big
    np.testing.assert_array_equal(a[1][same], ppo[1][same])


def test_on_policy_every_surrogate_gives_the_plain_policy_gradient():
    """At rho = 1 no clip is active and SAPO's gate is 1: -w A per token (GMPO: -A/(N|o|), as GSPO)."""
    _, old, adv, mask = batch(7)
    ref = policy_loss(old, old, adv, mask, ratio="token", aggregation="seq-mean-token-mean")[1]
    for name in ("dual_clip", "ratio_cap", "cispo", "sapo"):
        g = policy_loss(old, old, adv, mask, ratio=name, aggregation="seq-mean-token-mean", hp=HP)[1]
        np.testing.assert_allclose(g, ref, rtol=1e-13, atol=1e-16, err_msg=name)
    _, old, adv, mask = batch(9)
    np.testing.assert_allclose(policy_loss(old, old, adv, mask, ratio="gmpo")[1],
                               policy_loss(old, old, adv, mask, ratio="sequence")[1], rtol=1e-13)


def test_every_surrogate_is_registered_with_a_level():
    for name in ("dual_clip", "ratio_cap", "cispo", "sapo", "gmpo"):
        assert SURROGATES[name].level in ("token", "sequence")
        preset_config("grpo", ratio=name)


@pytest.mark.parametrize("bad, msg", [
    (dict(ratio="dual_clip", dual_clip_c=1.0), "dual_clip_c must be > 1"),
    (dict(ratio="ratio_cap", ratio_cap_delta=1.1), "ratio_cap_delta must be > 1 \\+ eps_high"),
    (dict(ratio="sapo", sapo_tau_neg=0.0), "sapo_tau_pos and sapo_tau_neg must be > 0"),
    (dict(kl="reward", kl_ratio_correction=True), "needs kl=loss"),
])
def test_bad_surrogate_settings_are_one_line_errors(bad, msg):
    with pytest.raises(ValueError, match=msg) as e:
        preset_config("grpo", **bad)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def trainer_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TOYRLHF_CACHE_DIR", str(tmp_path_factory.mktemp("surrogates-cache")))
    yield
    mp.undo()


@pytest.mark.parametrize("knobs", [dict(ratio="dual_clip"), dict(ratio="ratio_cap"), dict(ratio="cispo"),
                                   dict(ratio="sapo"), dict(ratio="gmpo", eps_low=0.4, eps_high=0.4),
                                   dict(kl_estimator="k3+"), dict(kl_ratio_correction=True)])
def test_each_surrogate_and_kl_variant_trains_two_finite_off_policy_steps(trainer_cache, knobs):
    from toyrlhf.rl.trainer import Trainer, build_models
    cfg = preset_config("grpo", task="arith", prompts_per_step=4, group_size=4, epochs=2, minibatches=2, **knobs)
    cfg.pretrain.steps, cfg.sft.steps = 200, 50
    tr = Trainer(cfg, build_models(cfg))
    for _ in range(2):
        m = tr.step()
        assert all(v is None or np.isfinite(v) for v in m.values())
