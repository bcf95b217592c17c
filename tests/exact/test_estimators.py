"""Expected gradients of the estimators (toyrlhf/exact/estimators.py): the KL estimators k1/k2/k3 as values,
losses and rewards; the policy-gradient estimators against brute force over all groups, against the true gradient
and against Monte Carlo from the project's sampler, advantages and losses."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import binom

from toyrlhf import exact
from toyrlhf.model import ModelConfig, TinyLM
from toyrlhf.rl import advantages as adv_mod
from toyrlhf.rl import losses, surrogates
from toyrlhf.tasks import get_task
from conftest import rel_err
from exact_helpers import EXACT_TOL, PROMPTS, T, Z, cos, fixed_reward, tiny_model


# ------------------------------------------------------------------------------------------------ KL estimators
def test_k1_and_k3_are_unbiased_for_the_sequence_kl_and_k2_is_not():
    m, ref_m = tiny_model(12), tiny_model(13)                           # KL 0.64 nats, E[k2] 25% above it
    e = exact.enumerate_completions(m, PROMPTS, T)
    ref = exact.rescore(ref_m, e)
    kl = exact.kl_divergences(e, ref)["reverse_mean"]
    # exact: E[sum_t k1] = E[sum_t k3] = KL, E[sum_t k2] != KL
    assert abs(exact.expected_kl_value(e, ref, "k1")[1] - kl) < EXACT_TOL
    assert abs(exact.expected_kl_value(e, ref, "k3")[1] - kl) < EXACT_TOL
    assert abs(exact.expected_kl_value(e, ref, "k2")[1] - kl) > 0.05 * kl
    # Monte Carlo from the model's sampler and rl.losses' estimators
    rng = np.random.default_rng(0)
    s = m.sample(np.repeat(PROMPTS, 20_000, axis=0), T, rng)
    ref_logp, _, _ = ref_m.logp_forward(s.tokens, s.mask)
    for k in ("k1", "k2", "k3"):
        v, _ = losses.KL_ESTIMATORS[k](s.logp, ref_logp)
        x = np.where(s.mask, v, 0.0).sum(axis=1)
        z = (x.mean() - kl) / (x.std(ddof=1) / np.sqrt(len(x)))
        if k == "k2":
            assert abs(z) > Z, z
        else:
            assert abs(z) <= Z, (k, z)


def test_kl_gradients_k1_loss_zero_k2_and_k1_reward_reverse_k3_forward():
    """Sequence level: E[k1'(.) grad log pi] = 0, E[k2' grad log pi] = grad KL(pi||ref), E[k3' ...] = grad KL(ref||pi);
    the detached k1 penalty in the reward gives grad KL(pi||ref)."""
    m, ref_m = tiny_model(11), tiny_model(12)
    e = exact.enumerate_completions(m, PROMPTS, T)
    ref = exact.rescore(ref_m, e)
    g_rev, g_fwd = exact.grad_reverse_kl(m, e, ref), exact.grad_forward_kl(m, e, ref)
    scale = np.linalg.norm(g_rev)
    for level in ("token", "sequence"):
        assert np.linalg.norm(exact.expected_kl_loss_gradient(m, e, ref, "k1", level)) < 1e-12 * scale
    assert rel_err(exact.expected_kl_loss_gradient(m, e, ref, "k2", "sequence"), g_rev) < EXACT_TOL
    assert rel_err(exact.expected_kl_loss_gradient(m, e, ref, "k3", "sequence"), g_fwd) < EXACT_TOL
    assert rel_err(exact.expected_kl_reward_gradient(m, e, ref, "k1"), g_rev) < EXACT_TOL
    assert rel_err(g_rev, g_fwd) > 0.1                                    # the two targets really differ


def test_k3_as_a_per_token_loss_follows_the_forward_kl_only_for_one_token():
    """Per token, E[sum_t (1 - ref_t/pi_t) grad log pi_t] = -E_{s~pi}[sum_a ref(a|s) grad log pi(a|s)]: the forward
    KL's gradient, but with states visited by pi instead of ref (Tang & Munos 2025). Equal for T = 1."""
    m, ref_m = tiny_model(13), tiny_model(14)
    for T_, equal in ((1, True), (3, False)):
        e = exact.enumerate_completions(m, PROMPTS, T_)
        ref = exact.rescore(ref_m, e)
        g_tok = exact.expected_kl_loss_gradient(m, e, ref, "k3", "token")
        g_fwd = exact.grad_forward_kl(m, e, ref)
        assert (rel_err(g_tok, g_fwd) < EXACT_TOL) == equal
        g2 = exact.expected_kl_loss_gradient(m, e, ref, "k2", "token")
        assert (rel_err(g2, exact.grad_reverse_kl(m, e, ref)) < EXACT_TOL) == equal


# ------------------------------------------------------------------------------------------------ policy gradients
def brute_force_pg_gradient(m, e, r, advantage, G, aggregation, max_tokens=None):
    """E[g] by listing every group of G completions per prompt (and for reinforce every whole batch), with the
    project's advantage functions: independent of exact.expected_advantage's count enumeration."""
    h = exact.sequence_scale(e, aggregation, max_tokens)
    n = e.n_prompts
    coef = np.zeros(e.n)
    segs = [np.arange(e.offsets[q], e.offsets[q + 1]) for q in range(n)]
    if advantage == "reinforce":
        tuples = np.array(list(itertools.product(*[segs[q] for q in range(n) for _ in range(G)])))
        prob = np.prod(e.probs[tuples], axis=1)
        A = np.stack([adv_mod.reinforce_advantages(r[t]) for t in tuples])
        B = n * G
        np.add.at(coef, tuples.ravel(), (prob[:, None] * A * h[tuples] / B).ravel())
    else:
        fn = {"group": lambda x: adv_mod.group_advantages(x, G, scale="std"),
              "group_mean": lambda x: adv_mod.group_advantages(x, G, scale="none"),
              "rloo": lambda x: adv_mod.rloo_advantages(x, G)}[advantage]
        for seg in segs:
            tuples = np.array(list(itertools.product(seg, repeat=G)))
            prob = np.prod(e.probs[tuples], axis=1)
            A = fn(r[tuples].ravel()).reshape(-1, G)
            np.add.at(coef, tuples.ravel(), (prob[:, None] * A * h[tuples] / (G * n)).ravel())
    return exact.sequence_weights(m, e, coef)


@pytest.mark.parametrize("advantage,G,aggregation,values", [
    ("group", 3, "seq-mean-token-mean", (0.0, 1.0)),
    ("group", 3, "seq-mean-token-sum", (0.0, 0.5, 1.5)),
    ("group_mean", 3, "seq-mean-token-sum-norm", (0.0, 1.0)),
    ("rloo", 3, "seq-mean-token-mean", (0.0, 0.5, 1.5)),
    ("reinforce", 2, "seq-mean-token-mean", (0.0, 1.0)),
])
def test_expected_pg_gradient_equals_brute_force_over_all_groups(advantage, G, aggregation, values):
    m = tiny_model(15)
    e = exact.enumerate_completions(m, PROMPTS, T)
    r = fixed_reward(e, 1, values)
    got = exact.expected_pg_gradient(m, e, r, advantage, G, aggregation)
    want = brute_force_pg_gradient(m, e, r, advantage, G, aggregation)
    assert rel_err(got, want) < EXACT_TOL


def test_rloo_expected_gradient_equals_the_true_gradient_and_monte_carlo_agrees():
    m = tiny_model(16)
    e = exact.enumerate_completions(m, PROMPTS, T)
    r = fixed_reward(e, 2, (0.0, 1.0))
    G = 4
    g_true = exact.grad_expectation(m, e, r)
    g_rloo = exact.expected_pg_gradient(m, e, r, "rloo", G, "seq-mean-token-sum")
    assert rel_err(g_rloo, g_true) < EXACT_TOL
    # Monte Carlo: draws of (both prompts x G) from the sampler, rl.advantages + rl.losses, one backward per draw
    u = g_true / np.linalg.norm(g_true)
    rng = np.random.default_rng(3)
    reward_of = {tuple(row): v for row, v in zip(e.tokens, r)}
    proj = []
    for _ in range(3000):
        s = m.sample(np.repeat(PROMPTS, G, axis=0), T, rng)
        rr = np.array([reward_of[tuple(row)] for row in s.tokens])
        A = adv_mod.broadcast_to_tokens(adv_mod.rloo_advantages(rr, G), s.mask)
        logp, _, cache = m.logp_forward(s.tokens, s.mask)
        _, dlogp, _ = surrogates.policy_loss(logp, logp, A, s.mask, aggregation="seq-mean-token-sum")
        proj.append(-m.logp_backward(dlogp, cache) @ u)
    proj = np.asarray(proj)
    z = (proj.mean() - np.linalg.norm(g_true)) / (proj.std(ddof=1) / np.sqrt(len(proj)))
    assert abs(z) <= Z, z


def test_dr_grpo_expected_gradient_is_g_minus_1_over_g_times_the_true_gradient():
    """group_mean advantages = (G-1)/G x RLOO's (Liu et al. 2025 App. A); the seq-mean-token-sum-norm aggregation
    adds the constant 1/L_max."""
    m = tiny_model(17)
    e = exact.enumerate_completions(m, PROMPTS, T)
    r = fixed_reward(e, 3)                                   # any reward, not only 0/1
    g_true = exact.grad_expectation(m, e, r)
    for G in (2, 4, 8):
        g = exact.expected_pg_gradient(m, e, r, "group_mean", G, "seq-mean-token-sum-norm", max_tokens=T)
        assert rel_err(g, (G - 1) / G / T * g_true) < EXACT_TOL
        g = exact.expected_pg_gradient(m, e, r, "group_mean", G, "seq-mean-token-sum")
        assert rel_err(g, (G - 1) / G * g_true) < EXACT_TOL


def test_reinforce_batch_mean_baseline_is_b_minus_1_over_b_times_the_true_gradient():
    m = tiny_model(18)
    e = exact.enumerate_completions(m, PROMPTS, T)
    r = fixed_reward(e, 4)
    G, B = 4, 2 * 4
    g = exact.expected_pg_gradient(m, e, r, "reinforce", G, "seq-mean-token-sum")
    assert rel_err(g, (B - 1) / B * exact.grad_expectation(m, e, r)) < EXACT_TOL


def binary_grpo_weight(p, G, eps=1e-6):
    """a(1) - a(0) for a 0/1 reward with success probability p: the other G-1 rewards are Binomial(G-1, p)."""
    k = np.arange(G)
    w = binom.pmf(k, G - 1, p)

    def adv(own):
        m = (own + k) / G
        return (own - m) / (np.sqrt(m * (1 - m)) + eps)

    return float(w @ adv(1) - w @ adv(0))


def test_grpo_std_scaling_is_not_parallel_to_the_true_gradient_when_prompts_differ_in_difficulty():
    """With a 0/1 reward the std-scaled expected gradient of prompt q is w(p_q) grad p_q with w(p) = a(1) - a(0)
    averaged over the Binomial(G-1, p) peers; w grows as p_q nears 0 or 1 (the group std shrinks), while grad E[r]
    weighs every prompt's grad p_q equally. So it is exactly parallel for a single prompt and not parallel across
    prompts of different difficulty whose gradients point different ways. (Groups with equal rewards give no
    gradient, which caps w: at G=8, w runs from 1.86 at p=0.5 to 2.6 at p=0.01; at G=16 (DeepSeek-R1) from 1.9
    to 3.7; the test uses G=16.)"""
    m = tiny_model(31)
    G = 16
    # reward: the completion starts with word 3 for prompt 0 (p=0.35), is exactly [4, 4, 4] for prompt 1 (p=0.08)
    e = exact.enumerate_completions(m, PROMPTS, T)
    c = e.completions
    r = np.where(e.prompt_index == 0, c[:, 0] == 3, (c == 4).all(axis=1)).astype(float)
    p, _ = exact.expectation(e, r)
    assert p[0] > 3 * p[1]
    agg = "seq-mean-token-sum"                     # isolate the std scaling from the 1/|o| length weighting
    g_std = exact.expected_pg_gradient(m, e, r, "group", G, agg)
    g_true = exact.grad_expectation(m, e, r)
    assert cos(g_std, g_true) < 0.99
    # the binomial form, per prompt
    grads = [exact.grad_expectation(m, e, r, np.eye(2)[q] / 2) for q in range(2)]
    want = sum(binary_grpo_weight(p[q], G) * grads[q] for q in range(2))
    assert rel_err(g_std, want) < EXACT_TOL
    # one prompt alone: parallel
    e1 = exact.enumerate_completions(m, PROMPTS[:1], T)
    r1 = (e1.completions[:, 0] == 3).astype(float)
    assert cos(exact.expected_pg_gradient(m, e1, r1, "group", G, agg), exact.grad_expectation(m, e1, r1)) > 1 - 1e-12


def test_grpo_length_normalisation_lengthens_incorrect_answers_and_dr_grpo_does_not():
    """Liu et al. 2025 on the `length` task (correctness independent of the fillers): GRPO's 1/|o_i| shrinks the
    (negative) weight of long incorrect completions. Seen per sequence (log pi(y) moves by e * c(y), c the expected
    coefficient of grad log pi(y)), GRPO raises E[length | incorrect] and Dr. GRPO leaves it exactly unchanged.
    In parameter space, GRPO's unit expected update raises E[length | incorrect] more than Dr. GRPO's, which is the
    true gradient's direction."""
    task = get_task("length")
    m = TinyLM(ModelConfig(vocab_size=task.vocab_size, context=4, embed=4, hidden=8), seed=0)
    e = exact.enumerate_task(m, task)
    correct = task.is_correct(*e.split()).astype(float)
    L = e.lengths.astype(float)
    G = 8
    c_grpo = exact.expected_sequence_coefficients(e, correct, "group", G, "seq-mean-token-mean")
    c_dr = exact.expected_sequence_coefficients(e, correct, "group_mean", G, "seq-mean-token-sum-norm")
    _, d_grpo = exact.tilt_derivative(e, c_grpo, L, where=1 - correct)
    _, d_dr = exact.tilt_derivative(e, c_dr, L, where=1 - correct)
    assert d_grpo > 1e-3 and abs(d_dr) < 1e-12
    # parameter space: directional derivative of E[len | incorrect] along each unit expected gradient
    _, P_inc = exact.expectation(e, 1 - correct)
    _, EL_inc = exact.expectation(e, (1 - correct) * L)
    EL_inc /= P_inc
    grad_len_inc = exact.grad_expectation(m, e, (1 - correct) * (L - EL_inc) / P_inc)
    unit = {k: v / np.linalg.norm(v) for k, v in {
        "grpo": exact.sequence_weights(m, e, e.probs * c_grpo / e.n_prompts),
        "dr": exact.sequence_weights(m, e, e.probs * c_dr / e.n_prompts),
        "true": exact.grad_expectation(m, e, correct)}.items()}
    assert unit["grpo"] @ grad_len_inc > unit["dr"] @ grad_len_inc + 1e-3
    assert abs(unit["dr"] @ grad_len_inc - unit["true"] @ grad_len_inc) < 1e-9


def test_group_std_with_too_many_distinct_rewards_raises_and_linear_advantages_fall_back():
    m = tiny_model(20)
    e = exact.enumerate_completions(m, PROMPTS, T)
    r = fixed_reward(e, 5)                                   # 15 distinct values per prompt
    with pytest.raises(ValueError, match="distinct rewards"):
        exact.expected_advantage(e, r, "group", 8, max_configs=100)
    g = exact.expected_pg_gradient(m, e, r, "rloo", 8, "seq-mean-token-sum", max_configs=100)
    assert rel_err(g, exact.grad_expectation(m, e, r)) < EXACT_TOL
    with pytest.raises(ValueError, match="token-mean"):
        exact.sequence_scale(e, "token-mean")
