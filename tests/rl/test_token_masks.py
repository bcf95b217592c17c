"""Entropy variants (rl/token_masks.py): top-entropy-quantile masking (Wang et al. 2025), Clip-Cov and KL-Cov
(Cui et al. 2025), the adaptive entropy coefficient; masks select what the papers say, gradients by float64
finite differences, the trainer hook end to end."""
import numpy as np
import pytest

import toyrlhf
from toyrlhf.config import preset_config
from toyrlhf.rl import surrogates, token_masks as tm

from tiny import TINY


def _batch(seed=0, B=6, L=5):
    rng = np.random.default_rng(seed)
    mask = np.ones((B, L), bool)
    mask[0, 3:] = mask[2, 2:] = False
    logp = np.log(rng.uniform(0.05, 0.95, (B, L)))
    old = logp + rng.normal(0, 0.3, (B, L))
    adv = np.repeat(rng.normal(0, 1, (B, 1)), L, axis=1)
    return rng, mask, logp, old, adv


def test_entropy_top_keeps_the_top_rho_fraction_of_tokens():
    h = np.array([[0.1, 0.9, 0.5, 0.0], [0.7, 0.2, 0.3, 0.8]])
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)          # 7 tokens; the padded 0.0 never counts
    keep = tm.entropy_top_mask(h, mask, 0.3)                     # ceil(0.3 * 7) = 3: 0.9, 0.8, 0.7
    assert keep.tolist() == [[False, True, False, False], [True, False, False, True]]
    assert tm.entropy_top_mask(h, mask, 1.0).tolist() == mask.tolist()


def test_covariance_and_kl_cov_selects_the_largest():
    logp = np.array([[-1.0, -2.0], [-0.5, -3.0]])
    adv = np.array([[1.0, 1.0], [-1.0, -1.0]])
    mask = np.ones((2, 2), bool)
    cov = tm.token_covariance(logp, adv, mask)
    # mean A = 0, mean logp = -1.625: cov = A (logp + 1.625)
    assert np.allclose(cov, [[0.625, -0.375], [-1.125, 1.375]])
    assert tm.kl_cov_select(cov, mask, ratio=0.25).tolist() == [[False, False], [False, True]]
    assert tm.kl_cov_select(cov, mask, ratio=1e-4).sum() == 1                 # at least one token


def test_clip_cov_removes_only_eligible_unclipped_tokens():
    cov = np.array([[0.5, 2.0, 3.0, 6.0], [4.0, 1.5, -1.0, 2.5]])
    mask = np.ones((2, 4), bool)
    clipped = np.zeros((2, 4), bool)
    clipped[1, 3] = True                                          # 2.5 is in (1, 5) but already clipped
    eligible = {(0, 1), (0, 2), (1, 0), (1, 1)}
    for seed in range(20):
        keep = tm.clip_cov_mask(cov, mask, ratio=0.25, lb=1.0, ub=5.0, rng=np.random.default_rng(seed),
                                clipped=clipped)
        dropped = set(zip(*np.nonzero(~keep)))
        assert len(dropped) == 2 and dropped <= eligible         # int(0.25 * 8) = 2 of the 4 eligible


def _fd(f, x, mask, h=1e-6):
    g = np.zeros_like(x)
    for idx in zip(*np.nonzero(mask)):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (f(xp) - f(xm)) / (2 * h)
    return g


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_kl_cov_penalty_gradient_by_finite_differences(agg):
    _, mask, logp, old, adv = _batch()
    sel = tm.kl_cov_select(tm.token_covariance(logp, adv, mask), mask, ratio=0.3)
    f = lambda lp: tm.kl_cov_penalty(lp, old, sel, mask, coef=0.1, aggregation=agg)[0]
    _, g = tm.kl_cov_penalty(logp, old, sel, mask, coef=0.1, aggregation=agg)
    assert np.abs(g - _fd(f, logp, mask)).max() < 1e-8 and np.abs(g).max() > 0


@pytest.mark.parametrize("kind", ["entropy_top", "clip_cov"])
def test_masked_policy_loss_gradient_by_finite_differences(kind):
    rng, mask, logp, old, adv = _batch(1)
    ent = rng.uniform(0, 2, mask.shape)
    keep_e = tm.entropy_top_mask(ent, mask, 0.4)
    a, _, frac = tm.apply_token_mask(kind, logp=logp, old_logp=old, adv=adv * 5, mask=mask, keep_entropy=keep_e,
                                     rng=np.random.default_rng(0), cov_ratio=0.2, clip_cov_lb=0.0, clip_cov_ub=9.0)
    assert frac > 0 and np.all(a[~mask | (a == 0)] == 0)
    f = lambda lp: surrogates.policy_loss(lp, old, a, mask, aggregation="token-mean")[0]
    _, g, _ = surrogates.policy_loss(logp, old, a, mask, aggregation="token-mean")
    assert np.abs(g - _fd(f, logp, mask)).max() < 1e-7
    assert np.all(g[mask & (a == 0)] == 0)                        # masked tokens: no policy gradient


def test_adaptive_entropy_coefficient_moves_toward_the_target():
    c = 0.0
    for _ in range(5):
        c = tm.adaptive_entropy_coef(c, entropy=0.3, target=1.0, step=0.01, cap=0.1)
    assert c == pytest.approx(0.05)
    for _ in range(10):
        c = tm.adaptive_entropy_coef(c, entropy=2.0, target=1.0, step=0.01, cap=0.1)
    assert c == 0.0
    assert tm.adaptive_entropy_coef(0.095, 0.0, 1.0, 0.01, 0.1) == 0.1        # capped


@pytest.mark.parametrize("bad, msg", [(dict(token_mask="clip_cov", ratio="sequence"), "token-level surrogate"),
                                      (dict(token_mask="top"), "token_mask must be one of"),
                                      (dict(entropy_top_frac=0.0), "entropy_top_frac"),
                                      (dict(entropy_target=1.0, entropy_coef_step=0.0), "entropy_coef_step")])
def test_bad_entropy_settings_are_one_line_errors(bad, msg):
    with pytest.raises(ValueError, match=msg) as e:
        preset_config("grpo", **bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("sets", [dict(token_mask="entropy_top"), dict(token_mask="clip_cov", cov_ratio=0.05),
                                  dict(token_mask="kl_cov", cov_ratio=0.05, minibatches=2),
                                  dict(entropy_target=5.0, entropy_coef_step=0.01)])
def test_trainer_hook_runs(sets, shared_cache_dir, monkeypatch):
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
    run = toyrlhf.train("grpo", task="arith", steps=3, **{**TINY, **sets})
    last = run.metrics[-1]
    if "token_mask" in sets:
        assert last["masked_token_fraction"] > 0
    else:       # far below the target entropy: the coefficient rises by one step per RL step
        assert [m["entropy_coef"] for m in run.metrics] == pytest.approx([0.01, 0.02, 0.03])
