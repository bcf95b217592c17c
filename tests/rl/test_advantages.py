"""Advantage estimators against hand computations and their defining formulas."""
import numpy as np
import pytest

from toyrlhf.rl.advantages import (
    batch_normalize,
    broadcast_to_tokens,
    gae,
    group_advantages,
    process_advantages,
    reinforce_advantages,
    rloo_advantages,
    zero_std_groups,
)


def ragged_batch(seed, B=5, P=2, T=6):
    """Rewards/values with garbage outside a ragged completion mask (prompt of P columns, lengths 1..T)."""
    rng = np.random.default_rng(seed)
    L = P + T
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0], lengths[-1] = 1, T
    cols = np.arange(L)[None, :]
    mask = (cols >= P) & (cols < P + lengths[:, None])
    rewards = rng.normal(size=(B, L))
    values = rng.normal(size=(B, L))
    return rewards, values, mask


def completion_rows(mask):
    """Per row, the masked column indices (the completion, in order)."""
    return [np.flatnonzero(row) for row in mask]


def test_gae_lambda0_is_the_td_error():
    rewards, values, mask = ragged_batch(0)
    gamma = 0.9
    adv, _ = gae(rewards, values, mask, gamma=gamma, lam=0.0)
    expected = np.zeros_like(adv)
    for b, cols in enumerate(completion_rows(mask)):
        for k, t in enumerate(cols):
            v_next = values[b, cols[k + 1]] if k + 1 < len(cols) else 0.0  # bootstrap 0 after the last token
            expected[b, t] = rewards[b, t] + gamma * v_next - values[b, t]
    np.testing.assert_allclose(adv, expected, rtol=0, atol=1e-12)


def test_gae_lambda1_gamma1_is_return_to_go_minus_value():
    rewards, values, mask = ragged_batch(1)
    adv, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    expected = np.zeros_like(adv)
    for b, cols in enumerate(completion_rows(mask)):
        for k, t in enumerate(cols):
            expected[b, t] = rewards[b, cols[k:]].sum() - values[b, t]
    np.testing.assert_allclose(adv, expected, rtol=0, atol=1e-12)
    # the lambda-return at lambda=1, gamma=1 is the Monte-Carlo return-to-go
    np.testing.assert_allclose(returns, np.where(mask, expected + values, 0.0), rtol=0, atol=1e-12)


def test_gae_equals_the_exponentially_weighted_sum_of_td_errors():
    rewards, values, mask = ragged_batch(2)
    gamma, lam = 0.97, 0.8
    adv, returns = gae(rewards, values, mask, gamma=gamma, lam=lam)
    expected = np.zeros_like(adv)
    for b, cols in enumerate(completion_rows(mask)):
        v = np.append(values[b, cols], 0.0)
        delta = rewards[b, cols] + gamma * v[1:] - v[:-1]
        for k, t in enumerate(cols):
            expected[b, t] = sum((gamma * lam) ** l * delta[k + l] for l in range(len(cols) - k))
    np.testing.assert_allclose(adv, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(returns, np.where(mask, adv + values, 0.0), rtol=0, atol=1e-15)


def test_gae_is_zero_outside_mask_and_ignores_entries_there():
    rewards, values, mask = ragged_batch(3)
    adv, returns = gae(rewards, values, mask, gamma=0.99, lam=0.95)
    assert np.all(adv[~mask] == 0) and np.all(returns[~mask] == 0)
    junk = np.random.default_rng(9).normal(size=rewards.shape) * 100
    adv2, returns2 = gae(np.where(mask, rewards, junk), np.where(mask, values, -junk), mask, gamma=0.99, lam=0.95)
    np.testing.assert_array_equal(adv, adv2)
    np.testing.assert_array_equal(returns, returns2)


def test_group_advantages_scale_none_times_g_over_g_minus_1_equals_rloo():
    rng = np.random.default_rng(4)
    G = 5
    r = rng.normal(size=4 * G)
    np.testing.assert_allclose(group_advantages(r, G, scale="none") * G / (G - 1), rloo_advantages(r, G),
                               rtol=0, atol=1e-12)


def test_population_and_sample_std_give_the_documented_numbers_on_a_hand_group():
    r = np.array([1.0, 0.0, 0.0, 0.0])
    # mean 1/4; squared deviations 9/16 + 3 * 1/16 = 12/16 = 3/4
    # population: var = (3/4)/4 = 3/16, std = sqrt(3)/4 -> A = (3/4)/(sqrt(3)/4) = sqrt(3), (-1/4)/(sqrt(3)/4) = -1/sqrt(3)
    # sample:     var = (3/4)/3 = 1/4,  std = 1/2       -> A = 1.5, -0.5
    pop = group_advantages(r, 4, scale="std", std="population", eps=0.0)
    smp = group_advantages(r, 4, scale="std", std="sample", eps=0.0)
    np.testing.assert_allclose(pop, [np.sqrt(3), -1 / np.sqrt(3), -1 / np.sqrt(3), -1 / np.sqrt(3)], rtol=1e-14)
    np.testing.assert_allclose(smp, [1.5, -0.5, -0.5, -0.5], rtol=1e-14)


def test_group_advantages_population_std_matches_the_oxen_blog_example():
    # Schoeninger (Oxen.ai) 2025: np.std (population) on [4.0, 2.5, 0.5, 0.1]
    a = group_advantages([4.0, 2.5, 0.5, 0.1], 4, eps=0.0)
    np.testing.assert_allclose(a, [1.414, 0.461, -0.810, -1.064], atol=5e-4)


def test_group_advantages_are_per_group_and_zero_for_equal_rewards():
    r = np.array([1.0, 0.0, 3.0, 3.0, 3.0, 3.0])
    a = group_advantages(r, 2)
    # group [1, 0]: mean 0.5, population std 0.5, default eps 1e-6
    np.testing.assert_allclose(a[:2], [0.5 / (0.5 + 1e-6), -0.5 / (0.5 + 1e-6)], rtol=1e-14)
    assert np.all(a[2:] == 0)


def test_group_advantages_rejects_bad_group_layouts():
    with pytest.raises(ValueError):
        group_advantages(np.zeros(6), 4)  # B % G != 0
    with pytest.raises(ValueError):
        group_advantages(np.zeros(6), 1)  # G < 2
    with pytest.raises(ValueError):
        group_advantages(np.zeros(6), 3, scale="batch")
    with pytest.raises(ValueError):
        group_advantages(np.zeros(6), 3, std="unbiased")
    with pytest.raises(ValueError):
        rloo_advantages(np.zeros(5), 2)


def test_rloo_is_reward_minus_leave_one_out_mean_on_a_hand_group():
    np.testing.assert_allclose(rloo_advantages([1.0, 0.0, 0.0, 0.0], 4), [1.0, -1 / 3, -1 / 3, -1 / 3], rtol=1e-14)


def test_reinforce_subtracts_the_batch_mean():
    np.testing.assert_allclose(reinforce_advantages([1.0, 2.0, 6.0]), [-2.0, -1.0, 3.0], rtol=1e-14)


def test_batch_normalize_whitens_over_masked_entries_only():
    rng = np.random.default_rng(5)
    a = rng.normal(3.0, 2.0, size=(4, 7))
    mask = rng.random((4, 7)) < 0.6
    out = batch_normalize(a, mask, eps=0.0)
    assert np.all(out[~mask] == 0)
    assert abs(out[mask].mean()) < 1e-12 and abs(out[mask].std() - 1) < 1e-12
    scaled = batch_normalize(a, mask, eps=0.0, shift_mean=False)
    np.testing.assert_allclose(scaled[mask], a[mask] / a[mask].std(), rtol=1e-13)
    np.testing.assert_allclose(batch_normalize(a[0], eps=0.0), (a[0] - a[0].mean()) / a[0].std(), rtol=1e-13)
    np.testing.assert_allclose(batch_normalize(a[0], eps=0.0, std="sample"),
                               (a[0] - a[0].mean()) / a[0].std(ddof=1), rtol=1e-13)


def test_process_advantages_on_a_hand_made_two_sequence_group():
    # One group of G=2, L=6, column 0 is the prompt.
    # seq 0: completion t=1..4, steps end at t=2 (r=1) and t=4 (r=0)
    # seq 1: completion t=1..5, steps end at t=1 (r=0), t=3 (r=1), t=5 (r=1)
    # All step rewards R = {1, 0, 0, 1, 1}: mean 0.6, population var 0.24, std sqrt(0.24) = sqrt(6)/5
    #   r = 1 -> 0.4 / (sqrt(6)/5) = 2/sqrt(6);   r = 0 -> -0.6 / (sqrt(6)/5) = -3/sqrt(6)
    # token advantage = sum of normalised step rewards at step ends >= t:
    #   seq 0: t1: 2-3 = -1, t2: -1, t3: -3, t4: -3, t5 (pad): 0           (all / sqrt 6)
    #   seq 1: t1: -3+2+2 = 1, t2: 4, t3: 4, t4: 2, t5: 2
    step_rewards = np.zeros((2, 6))
    step_end = np.zeros((2, 6), dtype=bool)
    for b, t, r in [(0, 2, 1.0), (0, 4, 0.0), (1, 1, 0.0), (1, 3, 1.0), (1, 5, 1.0)]:
        step_rewards[b, t], step_end[b, t] = r, True
    mask = np.zeros((2, 6), dtype=bool)
    mask[0, 1:5] = True
    mask[1, 1:6] = True
    adv = process_advantages(step_rewards, step_end, 2, eps=0.0, mask=mask)
    expected = np.array([[0, -1, -1, -3, -3, 0],
                         [0, 1, 4, 4, 2, 2]]) / np.sqrt(6)
    np.testing.assert_allclose(adv, expected, rtol=0, atol=1e-14)
    # scale="none": r - mean only (0.4 and -0.6)
    adv_none = process_advantages(step_rewards, step_end, 2, scale="none", mask=mask)
    np.testing.assert_allclose(adv_none, np.array([[0, -0.2, -0.2, -0.6, -0.6, 0],
                                                   [0, 0.2, 0.8, 0.8, 0.4, 0.4]]), rtol=0, atol=1e-14)


def test_process_advantages_with_one_step_per_sequence_is_outcome_supervision():
    rewards, _, mask = ragged_batch(6, B=6)
    last = mask & ~np.roll(mask, -1, axis=1)  # the last completion token of each row
    seq_r = rewards[:, 0]
    step_rewards = np.where(last, seq_r[:, None], 0.0)
    adv = process_advantages(step_rewards, last, 3, mask=mask)
    np.testing.assert_allclose(adv, broadcast_to_tokens(group_advantages(seq_r, 3), mask), rtol=0, atol=1e-13)


def test_process_advantages_normalises_each_group_separately():
    rng = np.random.default_rng(7)
    r = rng.normal(size=(4, 5))
    ends = rng.random((4, 5)) < 0.5
    ends[:, -1] = True
    both = process_advantages(r, ends, 2)
    np.testing.assert_allclose(both[:2], process_advantages(r[:2], ends[:2], 2), rtol=0, atol=1e-14)
    np.testing.assert_allclose(both[2:], process_advantages(r[2:], ends[2:], 2), rtol=0, atol=1e-14)


def test_broadcast_to_tokens_puts_the_value_on_masked_positions_only():
    mask = np.array([[False, True, True], [False, True, False]])
    np.testing.assert_array_equal(broadcast_to_tokens([2.0, -1.0], mask), [[0, 2, 2], [0, -1, 0]])


def test_zero_std_groups_flags_groups_with_all_equal_rewards():
    r = np.array([1, 1, 1, 0, 1, 0, 2, 2, 2, 0, 0, 0], dtype=float)
    np.testing.assert_array_equal(zero_std_groups(r, 3), [True, False, True, True])
    # those groups get zero advantage under every group estimator
    for a in (group_advantages(r, 3), group_advantages(r, 3, scale="none"), rloo_advantages(r, 3)):
        assert np.all(a.reshape(-1, 3)[zero_std_groups(r, 3)] == 0)
    with pytest.raises(ValueError):
        zero_std_groups(r, 5)


@pytest.mark.parametrize("eps", [0.0, 1e-6])
@pytest.mark.parametrize("std", ["population", "sample"])
def test_all_equal_group_gets_exactly_zero_advantage_even_with_eps_zero(eps, std):
    # 0.2 * 8 does not sum to exactly 1.6: the mean's round-off used to leave ~1e-11 (eps>0) or NaN (eps=0)
    r = np.array([0.2] * 8 + [1.0, 0.0, 1.0, 0.0, 0.2, 0.2, 1.2, 0.0])
    with np.errstate(all="raise"):
        a = group_advantages(r, 8, std=std, eps=eps)
    assert np.all(a[:8] == 0.0)
    assert np.all(np.isfinite(a)) and np.any(a[8:] != 0)


def test_process_advantages_of_equal_step_rewards_are_exactly_zero_with_eps_zero():
    step_end = np.zeros((4, 3), bool)
    step_end[:, 1] = step_end[:, 2] = True
    rewards = np.where(step_end, 0.1, 0.0)
    with np.errstate(all="raise"):
        a = process_advantages(rewards, step_end, 2, eps=0.0)
    assert np.all(a == 0.0)


@pytest.mark.parametrize("fn", ["group", "process"])
def test_negative_eps_is_refused(fn):
    with pytest.raises(ValueError, match="eps must be >= 0"):
        if fn == "group":
            group_advantages(np.arange(4.0), 2, eps=-1.0)
        else:
            process_advantages(np.zeros((2, 2)), np.ones((2, 2), bool), 2, eps=-1.0)
