"""Losses: exact gradients (finite differences), clipping properties, aggregation and accumulation, KL, critic."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from toyrlhf.rl.surrogates import policy_loss
from toyrlhf.rl.losses import (
    AGGREGATIONS,
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    aggregate,
    explained_variance,
    kl_k1,
    kl_k2,
    kl_k3,
    kl_loss,
    kl_penalty_rewards,
    soft_overlong_penalty,
    value_loss,
)

EPS_LOW, EPS_HIGH = 0.2, 0.28
P, T = 2, 7
MAX_TOKENS = T
KINK_MARGIN = 0.02  # inputs stay this far (in log-ratio / value units) from every non-differentiable point


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------

def ragged_mask(rng, B, P=P, T=T):
    """Prompt of P columns, completions of ragged lengths 1..T (shortest and longest both present)."""
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0], lengths[1] = 1, T
    cols = np.arange(P + T)[None, :]
    return (cols >= P) & (cols < P + lengths[:, None])


def away_from(x, kinks, rng, low, high):
    """Redraw entries of x (uniform in [low, high]) until each is KINK_MARGIN away from every kink."""
    x = x.copy()
    while True:
        bad = np.min(np.abs(x[..., None] - np.asarray(kinks)), axis=-1) < KINK_MARGIN
        if not bad.any():
            return x
        x[bad] = rng.uniform(low, high, size=bad.sum())


def policy_batch(seed, B=6, ratio="token"):
    """logp, old_logp, advantages, mask with ratios spread over both sides of both clip edges, away from kinks."""
    rng = np.random.default_rng(seed)
    mask = ragged_mask(rng, B)
    L = mask.shape[1]
    kinks = [np.log(1 - EPS_LOW), np.log(1 + EPS_HIGH)]
    old_logp = np.where(mask, np.log(rng.uniform(0.05, 0.95, size=(B, L))), 0.0)
    log_ratio = away_from(rng.uniform(-0.6, 0.6, size=(B, L)), kinks, rng, -0.6, 0.6)
    if ratio == "sequence":
        # shift each row so that its mean log-ratio (GSPO's log s_i) is away from the clip edges too
        lengths = mask.sum(1)
        target = away_from(rng.uniform(-0.5, 0.5, size=B), kinks, rng, -0.5, 0.5)
        row_mean = np.where(mask, log_ratio, 0).sum(1) / lengths
        log_ratio = log_ratio + (target - row_mean)[:, None]
        adv_seq = rng.normal(size=B) + 0.3
        adv = np.where(mask, adv_seq[:, None], 0.0)
    else:
        adv = np.where(mask, rng.normal(size=(B, L)) + 0.3, 0.0)
    logp = np.where(mask, old_logp + log_ratio, 0.0)
    return logp, old_logp, adv, mask


def fd_grad(f, x, h=1e-6):
    """Central finite differences of the scalar f at x, entry by entry."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (f(xp) - f(xm)) / (2 * h)
    return g


def assert_grad_matches_fd(f, x, grad, mask):
    fd = fd_grad(f, x)
    scale = np.max(np.abs(grad))
    assert scale > 0
    rel = np.max(np.abs(fd - grad)) / scale
    assert rel <= 1e-6, f"max relative error {rel:.2e}"
    assert np.all(grad[~mask] == 0)


def global_counts(mask):
    return dict(n_seqs=int(mask.any(1).sum()), n_tokens=int(mask.sum()), max_tokens=MAX_TOKENS)


# ----------------------------------------------------------------------------------------------------------------
# aggregate
# ----------------------------------------------------------------------------------------------------------------

def test_aggregate_modes_on_a_hand_example():
    # row 0: one token (2); row 1: three tokens (1, 2, 6); NaN outside the mask is ignored
    x = np.array([[np.nan, 2.0, np.nan, np.nan], [np.nan, 1.0, 2.0, 6.0]])
    mask = np.array([[False, True, False, False], [False, True, True, True]])
    expected = {
        "seq-mean-token-mean": (2.0 + 9.0 / 3) / 2,        # 2.5
        "token-mean": (2.0 + 9.0) / 4,                     # 2.75
        "seq-mean-token-sum-norm": (2.0 + 9.0) / (2 * 4),  # 1.375 with max_tokens = 4
        "seq-mean-token-sum": (2.0 + 9.0) / 2,             # 5.5
    }
    weights = {
        "seq-mean-token-mean": [1 / 2, 1 / 6],
        "token-mean": [1 / 4, 1 / 4],
        "seq-mean-token-sum-norm": [1 / 8, 1 / 8],
        "seq-mean-token-sum": [1 / 2, 1 / 2],
    }
    for mode in AGGREGATIONS:
        value, w = aggregate(x, mask, mode, max_tokens=4)
        assert value == pytest.approx(expected[mode], rel=1e-15)
        np.testing.assert_allclose(w, np.where(mask, np.array(weights[mode])[:, None], 0.0), rtol=1e-15)


def test_aggregate_weights_are_the_gradient_of_the_scalar():
    rng = np.random.default_rng(0)
    mask = ragged_mask(rng, 5)
    x = rng.normal(size=mask.shape)
    for mode in AGGREGATIONS:
        value, w = aggregate(x, mask, mode, max_tokens=MAX_TOKENS)
        assert value == pytest.approx(np.sum(w * x), rel=1e-14)  # linear in x
        assert_grad_matches_fd(lambda z: aggregate(z, mask, mode, max_tokens=MAX_TOKENS)[0], x, w, mask)


def test_aggregate_rejects_unknown_mode_and_missing_budget():
    mask = np.ones((2, 3), dtype=bool)
    with pytest.raises(ValueError):
        aggregate(np.zeros((2, 3)), mask, "mean")
    with pytest.raises(ValueError):
        aggregate(np.zeros((2, 3)), mask, "seq-mean-token-sum-norm")


# ----------------------------------------------------------------------------------------------------------------
# policy loss: gradients
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_token_policy_loss_gradient_matches_finite_differences(aggregation):
    logp, old_logp, adv, mask = policy_batch(1)
    kw = dict(eps_low=EPS_LOW, eps_high=EPS_HIGH, aggregation=aggregation, max_tokens=MAX_TOKENS)
    loss, grad, stats = policy_loss(logp, old_logp, adv, mask, **kw)
    assert 0 < stats["clip_fraction"] < 1  # both branches are exercised
    assert_grad_matches_fd(lambda z: policy_loss(z, old_logp, adv, mask, **kw)[0], logp, grad, mask)


@pytest.mark.parametrize("n_seqs", [None, 10])
def test_sequence_policy_loss_gradient_matches_finite_differences(n_seqs):
    logp, old_logp, adv, mask = policy_batch(2, B=8, ratio="sequence")
    kw = dict(eps_low=EPS_LOW, eps_high=EPS_HIGH, ratio="sequence", n_seqs=n_seqs)
    loss, grad, stats = policy_loss(logp, old_logp, adv, mask, **kw)
    assert 0 < stats["clip_fraction"] < 1
    assert_grad_matches_fd(lambda z: policy_loss(z, old_logp, adv, mask, **kw)[0], logp, grad, mask)


def test_sequence_ratio_is_the_length_normalised_geometric_mean_and_gradient_spreads_equally():
    logp, old_logp, adv, mask = policy_batch(3, ratio="sequence")
    loss, grad, stats = policy_loss(logp, old_logp, adv, mask, eps_low=np.inf, eps_high=np.inf, ratio="sequence")
    lengths = mask.sum(1)
    s = np.exp(np.where(mask, logp - old_logp, 0).sum(1) / lengths)
    a = adv[:, P]
    B = len(s)
    assert stats["ratio_mean"] == pytest.approx(s.mean(), rel=1e-13)
    assert loss == pytest.approx(-(s * a).mean(), rel=1e-13)
    # unclipped GSPO gradient: -(1/N) A_i s_i / |o_i| on every token of sequence i
    np.testing.assert_allclose(grad, np.where(mask, (-a * s / (B * lengths))[:, None], 0.0), rtol=1e-13)


def test_sequence_ratio_with_one_token_sequences_equals_token_ratio_seq_mean():
    rng = np.random.default_rng(4)
    mask = np.zeros((6, 3), dtype=bool)
    mask[:, 1] = True
    logp = np.where(mask, rng.normal(-1, 0.3, (6, 3)), 0)
    old_logp = np.where(mask, rng.normal(-1, 0.3, (6, 3)), 0)
    adv = np.where(mask, rng.normal(size=(6, 3)), 0)
    seq = policy_loss(logp, old_logp, adv, mask, ratio="sequence")
    tok = policy_loss(logp, old_logp, adv, mask, ratio="token", aggregation="seq-mean-token-mean")
    assert seq[0] == pytest.approx(tok[0], rel=1e-14)
    np.testing.assert_allclose(seq[1], tok[1], rtol=1e-14)
    assert seq[2]["clip_fraction"] == tok[2]["clip_fraction"]


# ----------------------------------------------------------------------------------------------------------------
# policy loss: clipping properties
# ----------------------------------------------------------------------------------------------------------------

@st.composite
def policy_inputs(draw):
    B = draw(st.integers(1, 4))
    L = draw(st.integers(1, 6))
    fl = dict(allow_nan=False, allow_infinity=False)
    log_ratio = draw(hnp.arrays(np.float64, (B, L), elements=st.floats(-3, 3, **fl)))
    adv = draw(hnp.arrays(np.float64, (B, L), elements=st.floats(-5, 5, **fl)))
    old_logp = draw(hnp.arrays(np.float64, (B, L), elements=st.floats(-8, 0, **fl)))
    mask = draw(hnp.arrays(np.bool_, (B, L)))
    eps_low = draw(st.floats(0.0, 0.9))
    eps_high = draw(st.floats(0.0, 2.0))
    return old_logp + log_ratio, old_logp, adv, mask, eps_low, eps_high


@settings(max_examples=150, deadline=None)
@given(policy_inputs(), st.sampled_from(tuple(AGGREGATIONS) + ("sequence",)))
def test_clipped_objective_never_exceeds_the_unclipped_one(inputs, mode):
    logp, old_logp, adv, mask, eps_low, eps_high = inputs
    if mode == "sequence":
        kw = dict(ratio="sequence")
    else:
        kw = dict(aggregation=mode, max_tokens=8)
    clipped, *_ = policy_loss(logp, old_logp, adv, mask, eps_low=eps_low, eps_high=eps_high, **kw)
    unclipped, *_ = policy_loss(logp, old_logp, adv, mask, eps_low=np.inf, eps_high=np.inf, **kw)
    # losses are -objective: clipped objective <= unclipped objective  <=>  clipped loss >= unclipped loss
    assert clipped >= unclipped - 1e-12 * (1 + abs(unclipped))
    # and the unclipped loss is the plain importance-weighted surrogate -aggregate(rho * A)
    if mode != "sequence":
        rho_a = np.exp(np.where(mask, logp - old_logp, 0)) * adv
        assert unclipped == pytest.approx(-aggregate(rho_a, mask, mode, max_tokens=8)[0], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("mode", tuple(AGGREGATIONS) + ("sequence",))
def test_on_policy_ratio_is_exactly_one_and_gradient_is_minus_weights_times_advantage(mode):
    ratio = "sequence" if mode == "sequence" else "token"
    logp, _, adv, mask = policy_batch(5, ratio=ratio)
    aggregation = "seq-mean-token-mean" if mode == "sequence" else mode
    kw = dict(eps_low=EPS_LOW, eps_high=EPS_HIGH, ratio=ratio, aggregation=aggregation, max_tokens=MAX_TOKENS)
    loss, grad, stats = policy_loss(logp, logp.copy(), adv, mask, **kw)
    unclipped, *_ = policy_loss(logp, logp.copy(), adv, mask, **{**kw, "eps_low": np.inf, "eps_high": np.inf})
    assert stats["ratio_mean"] == 1.0 and stats["ratio_max"] == 1.0
    assert stats["clip_fraction"] == 0.0 and stats["approx_kl"] == 0.0
    # GSPO's per-sequence mean equals seq-mean-token-mean weights when A is constant along the sequence
    agg_value, weights = aggregate(adv, mask, aggregation, max_tokens=MAX_TOKENS)
    assert loss == unclipped == pytest.approx(-agg_value, rel=1e-14)
    np.testing.assert_allclose(grad, -weights * adv, rtol=1e-14, atol=0)


def test_clip_removes_the_gradient_exactly_where_the_clipped_branch_is_active():
    logp, old_logp, adv, mask = policy_batch(6)
    loss, grad, stats = policy_loss(logp, old_logp, adv, mask, eps_low=EPS_LOW, eps_high=EPS_HIGH)
    rho = np.exp(logp - old_logp)
    clipped = mask & (((adv > 0) & (rho > 1 + EPS_HIGH)) | ((adv < 0) & (rho < 1 - EPS_LOW)))
    assert clipped.any() and (mask & ~clipped).any()
    assert np.all(grad[clipped] == 0) and np.all(grad[mask & ~clipped] != 0)
    assert stats["clip_fraction"] == pytest.approx(clipped.sum() / mask.sum())
    # approx_kl is the mean k3 of the ratio, (rho - 1) - log rho (the "37 details" diagnostic)
    lr = (logp - old_logp)[mask]
    assert stats["approx_kl"] == pytest.approx(np.mean(np.exp(lr) - 1 - lr), rel=1e-13)
    assert stats["ratio_max"] == pytest.approx(rho[mask].max(), rel=1e-14)


def test_huge_log_ratios_are_clipped_for_numerical_safety():
    mask = np.array([[True, True, True]])
    logp = np.array([[0.0, -1.0, -1.0]])
    old_logp = np.array([[-900.0, -1.0, -1.5]])  # log-ratio 900 would overflow exp
    adv = np.array([[-1.0, 1.0, 1.0]])  # negative advantage: the upper clip does not bound the objective
    with np.errstate(over="raise"):
        loss, grad, stats = policy_loss(logp, old_logp, adv, mask, log_ratio_clip=20.0)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert stats["ratio_max"] == pytest.approx(np.exp(20.0))
    assert grad[0, 0] == 0.0 and grad[0, 1] != 0.0


# ----------------------------------------------------------------------------------------------------------------
# minibatches and gradient accumulation
# ----------------------------------------------------------------------------------------------------------------

SPLITS = [slice(0, 3), slice(3, 5), slice(5, 8)]  # uneven minibatches of one rollout of 8 sequences


@pytest.mark.parametrize("mode", tuple(AGGREGATIONS) + ("sequence",))
def test_minibatch_accumulation_with_global_counts_reproduces_the_full_batch(mode):
    ratio = "sequence" if mode == "sequence" else "token"
    logp, old_logp, adv, mask = policy_batch(7, B=8, ratio=ratio)
    kw = dict(eps_low=EPS_LOW, eps_high=EPS_HIGH, ratio=ratio,
              aggregation="token-mean" if mode == "sequence" else mode, **global_counts(mask))
    full_loss, full_grad, _ = policy_loss(logp, old_logp, adv, mask, **kw)
    acc_loss, acc_grad = 0.0, np.zeros_like(full_grad)
    for s in SPLITS:
        l, g, _ = policy_loss(logp[s], old_logp[s], adv[s], mask[s], **kw)
        acc_loss += l
        acc_grad[s] = g
    assert acc_loss == pytest.approx(full_loss, rel=1e-13)
    np.testing.assert_allclose(acc_grad, full_grad, rtol=1e-13, atol=0)
    # the same holds for the KL and value losses
    kl_full, dkl_full = kl_loss(logp, old_logp, mask, aggregation=kw["aggregation"], **global_counts(mask))
    parts = [kl_loss(logp[s], old_logp[s], mask[s], aggregation=kw["aggregation"], **global_counts(mask))
             for s in SPLITS]
    assert sum(p[0] for p in parts) == pytest.approx(kl_full, rel=1e-13)
    np.testing.assert_allclose(np.concatenate([p[1] for p in parts]), dkl_full, rtol=1e-13, atol=0)
    v_full, dv_full, _ = value_loss(logp, old_logp, adv, mask, aggregation=kw["aggregation"], **global_counts(mask))
    parts = [value_loss(logp[s], old_logp[s], adv[s], mask[s], aggregation=kw["aggregation"], **global_counts(mask))
             for s in SPLITS]
    assert sum(p[0] for p in parts) == pytest.approx(v_full, rel=1e-13)
    np.testing.assert_allclose(np.concatenate([p[1] for p in parts]), dv_full, rtol=1e-13, atol=0)


def test_naive_per_minibatch_token_mean_does_not_reproduce_the_full_batch():
    """The pitfall: each minibatch divides by its own token count, and accumulation averages the minibatches."""
    logp, old_logp, adv, mask = policy_batch(7, B=8)
    kw = dict(eps_low=EPS_LOW, eps_high=EPS_HIGH, aggregation="token-mean")
    full_loss, full_grad, _ = policy_loss(logp, old_logp, adv, mask, **kw)
    naive_loss, naive_grad = 0.0, np.zeros_like(full_grad)
    for s in SPLITS:
        l, g, _ = policy_loss(logp[s], old_logp[s], adv[s], mask[s], **kw)  # local counts
        naive_loss += l / len(SPLITS)
        naive_grad[s] = g / len(SPLITS)
    token_counts = [mask[s].sum() for s in SPLITS]
    assert len(set(token_counts)) > 1  # minibatches hold different numbers of tokens
    assert abs(naive_loss - full_loss) > 1e-3 * abs(full_loss)
    assert np.max(np.abs(naive_grad - full_grad)) > 1e-3 * np.max(np.abs(full_grad))
    # each token's weight is 1/(n_minibatches * tokens in its minibatch) instead of 1/(tokens in the batch)
    w = np.zeros(mask.shape)
    for s, n in zip(SPLITS, token_counts):
        w[s] = 1.0 / (len(SPLITS) * n)
    np.testing.assert_allclose(naive_grad, full_grad * np.where(mask, w * mask.sum(), 0.0), rtol=1e-12, atol=1e-300)


# ----------------------------------------------------------------------------------------------------------------
# KL
# ----------------------------------------------------------------------------------------------------------------

def test_kl_estimators_on_a_hand_example():
    logp, ref = np.log(0.5), np.log(0.25)  # pi = 0.5, pi_ref = 0.25, r = pi_ref/pi = 1/2
    k1, d1 = kl_k1(logp, ref)
    k2, d2 = kl_k2(logp, ref)
    k3, d3 = kl_k3(logp, ref)
    assert k1 == pytest.approx(np.log(2), rel=1e-15)                 # -log r
    assert k2 == pytest.approx(0.5 * np.log(2) ** 2, rel=1e-15)      # (log r)^2 / 2
    assert k3 == pytest.approx(0.5 - 1 + np.log(2), rel=1e-14)       # (r - 1) - log r = 0.19315
    assert (d1, d2, d3) == (pytest.approx(1.0), pytest.approx(np.log(2)), pytest.approx(0.5))


def test_kl_k3_gradient_is_one_minus_ref_over_pi_and_estimators_are_nonnegative_where_documented():
    rng = np.random.default_rng(8)
    logp, ref = rng.normal(-2, 1, 50), rng.normal(-2, 1, 50)
    k3, d3 = kl_k3(logp, ref)
    np.testing.assert_allclose(d3, 1 - np.exp(ref - logp), rtol=1e-15)
    assert np.all(k3 >= 0) and np.all(kl_k2(logp, ref)[0] >= 0) and np.any(kl_k1(logp, ref)[0] < 0)
    for name, fn in KL_ESTIMATORS.items():
        k, d = fn(logp, ref)
        h = 1e-6
        # a straight-through estimator (k3+) returns the gradient of another estimator's value (k2)
        value = KL_ESTIMATORS[KL_ESTIMATORS[name].gradient_of or name].fn
        fd = (value(logp + h, ref)[0] - value(logp - h, ref)[0]) / (2 * h)
        assert np.max(np.abs(fd - d)) / np.max(np.abs(d)) <= 1e-6, name


def test_k3_plus_has_the_value_of_k3_and_the_gradient_of_k2():
    rng = np.random.default_rng(9)
    logp, ref = rng.normal(-2, 1, 20), rng.normal(-2, 1, 20)
    k, d = KL_ESTIMATORS["k3+"].fn(logp, ref)
    np.testing.assert_array_equal(k, kl_k3(logp, ref)[0])
    np.testing.assert_array_equal(d, kl_k2(logp, ref)[1])


def test_ratio_corrected_kl_loss_gradient_matches_finite_differences_and_is_k2_on_policy():
    """DeepSeek-V3.2 / TRL use_bias_correction_kl: loss = aggregate(rho * k3); float64 central differences."""
    rng = np.random.default_rng(10)
    mask = ragged_mask(rng, 5)
    logp = np.where(mask, np.log(rng.uniform(0.05, 0.95, mask.shape)), 0.0)
    ref = np.where(mask, np.log(rng.uniform(0.05, 0.95, mask.shape)), 0.0)
    old = np.where(mask, logp + rng.normal(0, 0.3, mask.shape), 0.0)
    f = lambda lp: kl_loss(lp, ref, mask, estimator="k3", old_logp=old)[0]
    _, g = kl_loss(logp, ref, mask, estimator="k3", old_logp=old)
    h = 1e-6
    for b, t in zip(*np.nonzero(mask)):
        e = np.zeros_like(logp)
        e[b, t] = h
        assert g[b, t] == pytest.approx((f(logp + e) - f(logp - e)) / (2 * h), rel=1e-6, abs=1e-10)
    assert not g[~mask].any()
    _, g_on = kl_loss(logp, ref, mask, estimator="k3", old_logp=logp)
    _, g_k2 = kl_loss(logp, ref, mask, estimator="k2")
    np.testing.assert_allclose(g_on, g_k2, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_kl_loss_gradient_matches_finite_differences(estimator, aggregation):
    rng = np.random.default_rng(9)
    mask = ragged_mask(rng, 5)
    logp = np.where(mask, rng.normal(-1.5, 0.7, mask.shape), 0)
    ref = np.where(mask, rng.normal(-1.5, 0.7, mask.shape), 0)
    kw = dict(estimator=estimator, aggregation=aggregation, max_tokens=MAX_TOKENS)
    loss, grad = kl_loss(logp, ref, mask, **kw)
    k, _ = KL_ESTIMATORS[estimator](logp, ref)
    assert loss == pytest.approx(aggregate(k, mask, aggregation, max_tokens=MAX_TOKENS)[0], rel=1e-14)
    assert_grad_matches_fd(lambda z: kl_loss(z, ref, mask, **kw)[0], logp, grad, mask)


def test_kl_penalty_rewards_are_minus_beta_k1_on_the_mask():
    rng = np.random.default_rng(10)
    mask = ragged_mask(rng, 4)
    logp, ref = rng.normal(-1, 0.5, mask.shape), rng.normal(-1, 0.5, mask.shape)
    r = kl_penalty_rewards(logp, ref, mask, beta=0.05)
    np.testing.assert_allclose(r, np.where(mask, -0.05 * (logp - ref), 0.0), rtol=1e-15)
    # with gamma = 1 the summed penalty is the sequence-level -beta log(pi(y)/pi_ref(y))
    np.testing.assert_allclose(r.sum(1), -0.05 * np.where(mask, logp - ref, 0).sum(1), rtol=1e-13)
    np.testing.assert_allclose(kl_penalty_rewards(logp, ref, mask, 0.1, estimator="k3"),
                               np.where(mask, -0.1 * kl_k3(logp, ref)[0], 0.0), rtol=1e-15)


# ----------------------------------------------------------------------------------------------------------------
# value loss
# ----------------------------------------------------------------------------------------------------------------

def value_batch(seed, clip, B=6):
    rng = np.random.default_rng(seed)
    mask = ragged_mask(rng, B)
    old = rng.normal(size=mask.shape)
    ret = old + rng.normal(0, 0.6, size=mask.shape)
    diff = rng.uniform(-0.6, 0.6, size=mask.shape)
    if clip is not None:
        # away from the band edges |V - V_old| = c and from the switch (V - R)^2 = (V_clip - R)^2
        while True:
            diff = away_from(diff, [-clip, clip], rng, -0.6, 0.6)
            v = old + diff
            v_clip = old + np.clip(diff, -clip, clip)
            tie = np.abs(np.abs(v - ret) - np.abs(v_clip - ret)) < KINK_MARGIN
            tie &= np.abs(diff) > clip
            if not tie.any():
                break
            diff[tie] = rng.uniform(-0.6, 0.6, size=tie.sum())
    return old + diff, old, ret, mask


@pytest.mark.parametrize("clip", [None, 0.2])
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_value_loss_gradient_matches_finite_differences(clip, aggregation):
    v, old, ret, mask = value_batch(11, clip)
    kw = dict(clip=clip, aggregation=aggregation, max_tokens=MAX_TOKENS)
    loss, grad, stats = value_loss(v, old, ret, mask, **kw)
    if clip is not None:
        assert 0 < stats["value_clip_fraction"] < 1
    else:
        assert stats["value_clip_fraction"] == 0
    assert_grad_matches_fd(lambda z: value_loss(z, old, ret, mask, **kw)[0], v, grad, mask)


def test_value_loss_clipping_on_a_hand_example():
    mask = np.ones((1, 2), dtype=bool)
    old = np.array([[0.0, 0.0]])
    v = np.array([[1.0, 0.5]])
    ret = np.array([[0.1, 2.0]])
    # token 0: V_clip = 0.2; (1 - 0.1)^2 = 0.81 > (0.2 - 0.1)^2 = 0.01 -> unclipped, l = 0.405, grad 0.9
    # token 1: V_clip = 0.2; (0.5 - 2)^2 = 2.25 < (0.2 - 2)^2 = 3.24 -> clipped, l = 1.62, grad 0
    loss, grad, stats = value_loss(v, old, ret, mask, clip=0.2, aggregation="token-mean")
    assert loss == pytest.approx((0.405 + 1.62) / 2, rel=1e-14)
    np.testing.assert_allclose(grad, [[0.9 / 2, 0.0]], rtol=1e-14)
    assert stats["value_clip_fraction"] == 0.5
    loss, grad, _ = value_loss(v, old, ret, mask, clip=None, aggregation="token-mean")
    assert loss == pytest.approx((0.405 + 1.125) / 2, rel=1e-14)
    np.testing.assert_allclose(grad, [[0.45, -0.75]], rtol=1e-14)


def test_explained_variance_is_one_for_a_perfect_critic_and_zero_for_the_mean():
    rng = np.random.default_rng(12)
    mask = ragged_mask(rng, 5)
    ret = rng.normal(size=mask.shape)
    assert explained_variance(ret, ret, mask) == 1.0
    assert explained_variance(np.full(mask.shape, ret[mask].mean()), ret, mask) == pytest.approx(0.0, abs=1e-14)
    noisy = ret + rng.normal(0, 0.5, mask.shape)
    d = (ret - noisy)[mask]
    assert explained_variance(noisy, ret, mask) == pytest.approx(1 - d.var() / ret[mask].var(), rel=1e-14)
    assert np.isnan(explained_variance(ret, np.ones(mask.shape), mask))


# ----------------------------------------------------------------------------------------------------------------
# KL controllers, overlong penalty
# ----------------------------------------------------------------------------------------------------------------

def test_adaptive_kl_controller_follows_ziegler_formula_with_clipped_error():
    target, horizon, n = 6.0, 10000, 256
    cases = [
        (9.0, +0.2),    # 50% above target, error clipped to +0.2: beta up
        (6.6, +0.1),    # 10% above: beta up by 0.1 * n / horizon
        (6.0, 0.0),     # on target: unchanged
        (5.4, -0.1),    # 10% below: beta down
        (0.0, -0.2),    # far below, clipped to -0.2
        (1e9, +0.2),
    ]
    for kl, err in cases:
        ctl = AdaptiveKLController(0.1, target, horizon)
        beta = ctl.update(kl, n)
        assert beta == ctl.beta == pytest.approx(0.1 * (1 + err * n / horizon), rel=1e-14)
        assert np.sign(ctl.beta - 0.1) == np.sign(err)
    ctl = AdaptiveKLController(0.1, target, horizon)
    for kl in (9.0, 2.0, 7.0):
        ctl.update(kl, n)
    restored = AdaptiveKLController(1.0, 1.0, 1.0)
    restored.load_state_dict(ctl.state_dict())
    assert restored.state_dict() == ctl.state_dict()
    assert restored.update(8.0, n) == ctl.update(8.0, n)


def test_fixed_kl_controller_keeps_beta_constant():
    ctl = FixedKLController(0.04, target=6.0, horizon=10000)
    for kl in (0.0, 100.0):
        assert ctl.update(kl, 256) == 0.04
    other = FixedKLController(1.0)
    other.load_state_dict(ctl.state_dict())
    assert other.beta == 0.04


def test_soft_overlong_penalty_on_its_three_regimes():
    # L_max = 20, L_cache = 4: free up to 16, linear ramp on (16, 20], -1 beyond 20
    lengths = np.array([5, 16, 17, 18, 19, 20, 21, 40])
    np.testing.assert_allclose(soft_overlong_penalty(lengths, 20, 4),
                               [0, 0, -0.25, -0.5, -0.75, -1.0, -1.0, -1.0], rtol=1e-15)
    # L_cache = 0: no ramp, a hard -1 beyond L_max
    np.testing.assert_array_equal(soft_overlong_penalty(lengths, 20, 0), [0, 0, 0, 0, 0, 0, -1, -1])
    for bad_cache in (-1, 21):
        with pytest.raises(ValueError):
            soft_overlong_penalty(lengths, 20, bad_cache)
