"""The exact engine: enumeration, exact expectations and gradients, expected gradients of the estimators, best-of-n,
pass@k, the training hook and `toyrlhf check`.

Statistical tests use fixed seeds and a stated tolerance |z| <= 4 (two-sided p ~ 6e-5 per comparison); a "detected"
difference needs |z| > 4. Exact-vs-exact comparisons use relative errors of 1e-9 or tighter (float64 round-off);
exact-vs-finite-differences use 1e-6.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from toyrlhf import exact
from toyrlhf import tokens as tk
from toyrlhf.errors import UserError
from toyrlhf.model import ModelConfig, TinyLM
from toyrlhf.rl import advantages as adv_mod
from toyrlhf.rl import losses
from toyrlhf.tasks import get_task
from conftest import fd_grad, rel_err

Z = 4.0
FD_TOL = 1e-6
EXACT_TOL = 1e-9


# ------------------------------------------------------------------------------------------------ helpers
def tiny_model(seed, V=5, arch="mlp", k=2, d=3, h=4):
    """V=5: output tokens EOS + 2 words, so a prompt has 1 + 2 + 4 + 8 = 15 completions at T=3."""
    return TinyLM(ModelConfig(vocab_size=V, arch=arch, context=k, embed=d, hidden=h), seed=seed, init="random")


PROMPTS = np.array([[tk.BOS, 3], [tk.BOS, 4]])
T = 3


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def fixed_reward(enum, seed, values=None):
    """A reward attached to each completion (as a function of its tokens, so it survives re-enumeration)."""
    rng = np.random.default_rng(seed)
    key = enum.tokens @ (np.arange(enum.tokens.shape[1]) * 7 + 3) % 1009
    table = rng.normal(size=1009) if values is None else rng.choice(values, size=1009)
    return table[key]


# ------------------------------------------------------------------------------------------------ enumeration
@pytest.mark.parametrize("arch,temperature", [("mlp", 1.0), ("mlp", 0.6), ("bigram", 1.7)])
def test_probabilities_sum_to_one_per_prompt(arch, temperature):
    m = tiny_model(0, arch=arch)
    e = exact.enumerate_completions(m, PROMPTS, T, temperature)
    assert e.n == len(PROMPTS) * exact.count_completions(3, T) == 30
    assert np.max(np.abs(exact.per_prompt(e, e.probs) - 1.0)) < 1e-12


def test_enumeration_lists_every_completion_exactly_once_in_the_padded_layout():
    m = tiny_model(1)
    e = exact.enumerate_completions(m, PROMPTS, T)
    # brute force: every word sequence of length < T followed by EOS, and every length-T sequence
    words, expected = (3, 4), set()
    for q in range(len(PROMPTS)):
        for L in range(T + 1):
            for body in itertools.product(words, repeat=L):
                comp = list(body) + ([tk.EOS] if L < T else [])
                if len(comp) > T:
                    continue
                expected.add((q, tuple(comp + [tk.PAD] * (T - len(comp)))))
    got = {(int(q), tuple(c)) for q, c in zip(e.prompt_index, e.completions)}
    assert got == expected and len(got) == e.n
    assert np.all(np.diff(e.prompt_index) >= 0)                          # sorted by prompt, offsets consistent
    assert np.array_equal(e.offsets, np.searchsorted(e.prompt_index, np.arange(len(PROMPTS) + 1)))
    assert np.array_equal(e.row_prompts, PROMPTS[e.prompt_index])
    ref_tokens, ref_mask = tk.join(e.row_prompts, e.completions)
    assert np.array_equal(e.tokens, ref_tokens) and np.array_equal(e.mask, ref_mask)
    assert np.array_equal(e.lengths, tk.completion_lengths(e.completions))


@pytest.mark.parametrize("arch,temperature", [("mlp", 1.0), ("mlp", 0.7), ("bigram", 1.3)])
def test_enumerated_logp_equals_model_logp_forward(arch, temperature):
    m = tiny_model(2, arch=arch, k=3)
    e = exact.enumerate_completions(m, PROMPTS, T, temperature)
    logp, _, _ = m.logp_forward(e.tokens, e.mask, temperature)
    assert np.max(np.abs(logp - e.logp)) < 1e-12
    assert np.max(np.abs(logp.sum(axis=1) - e.seq_logp)) < 1e-12
    assert np.all(e.logp[~e.mask] == 0.0)


def test_rescore_gives_the_other_models_log_probs_even_with_another_window():
    m = tiny_model(3, k=2)
    e = exact.enumerate_completions(m, PROMPTS, T)
    for other in (tiny_model(4, k=2), tiny_model(5, k=3), tiny_model(6, arch="bigram")):
        r = exact.rescore(other, e)
        logp, _, _ = other.logp_forward(e.tokens, e.mask)
        assert np.max(np.abs(r.logp - logp)) < 1e-12
        assert np.max(np.abs(exact.per_prompt(r, r.probs) - 1.0)) < 1e-12


def test_enumerating_about_1e5_completions_works():
    """V_out = 7, T = 5: 9,331 completions a prompt; 11 prompts -> 102,641 rows (timing-free)."""
    m = TinyLM(ModelConfig(vocab_size=9, context=4, embed=4, hidden=16), seed=0)
    prompts = np.stack([np.full(11, tk.BOS), np.arange(11) % 6 + 3, np.arange(11) // 6 + 3], axis=1)
    e = exact.enumerate_completions(m, prompts, 5)
    assert e.n == 102_641 == 11 * exact.count_completions(7, 5)
    assert np.max(np.abs(exact.per_prompt(e, e.probs) - 1.0)) < 1e-12
    rows = np.random.default_rng(0).choice(e.n, 2000, replace=False)
    logp, _, _ = m.logp_forward(e.tokens[rows], e.mask[rows])
    assert np.max(np.abs(logp - e.logp[rows])) < 1e-12
    g = exact.grad_expectation(m, e, e.lengths.astype(float))
    assert g.shape == m.flat.shape and np.all(np.isfinite(g)) and np.linalg.norm(g) > 0


def test_too_many_completions_is_a_one_line_user_error():
    m = tiny_model(0)
    with pytest.raises(UserError) as err:
        exact.enumerate_completions(m, PROMPTS, T, limit=29)
    assert "30 completions" in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------ exact gradients
@pytest.mark.parametrize("arch,temperature", [("mlp", 1.0), ("bigram", 1.0), ("mlp", 0.8)])
def test_exact_gradients_match_finite_differences_of_exact_expectations(arch, temperature):
    m, ref_m = tiny_model(7, arch=arch), tiny_model(8, arch=arch)
    e = exact.enumerate_completions(m, PROMPTS, T, temperature)
    r = fixed_reward(e, 0)
    ref = exact.rescore(ref_m, e)
    w = np.array([0.3, 0.7])

    def now():
        return exact.enumerate_completions(m, PROMPTS, T, temperature)

    cases = {
        "E[r]": (exact.grad_expectation(m, e, r, w), lambda: float(w @ exact.expectation(now(), r)[0])),
        "KL(pi||ref)": (exact.grad_reverse_kl(m, e, ref),
                        lambda: exact.kl_divergences(now(), ref)["reverse_mean"]),
        "KL(ref||pi)": (exact.grad_forward_kl(m, e, ref),
                        lambda: exact.kl_divergences(now(), ref)["forward_mean"]),
        "H": (exact.grad_entropy(m, e), lambda: exact.entropy(now())[1]),
    }
    for name, (g, f) in cases.items():
        assert rel_err(g, fd_grad(m, f)) <= FD_TOL, name


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
        _, dlogp, _ = losses.policy_loss(logp, logp, A, s.mask, aggregation="seq-mean-token-sum")
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
    from scipy.stats import binom
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


# ------------------------------------------------------------------------------------------------ pass@k, best-of-n
def test_pass_at_k_formula_matches_enumerating_k_tuples():
    m = tiny_model(21)
    e = exact.enumerate_completions(m, PROMPTS, T)
    correct = fixed_reward(e, 6, (0.0, 0.0, 1.0))
    for k in (1, 2, 3):
        per, mean = exact.pass_at_k(e, correct, k)
        for q in range(e.n_prompts):
            seg = np.arange(e.offsets[q], e.offsets[q + 1])
            tuples = np.array(list(itertools.product(seg, repeat=k)))
            want = np.sum(np.prod(e.probs[tuples], axis=1) * correct[tuples].max(axis=1))
            assert abs(per[q] - want) < 1e-12
        assert abs(mean - per.mean()) < 1e-15


def brute_force_bon(p, r, n):
    """Best-of-n by listing all n-tuples; ties between the maxima broken uniformly at random."""
    out = np.zeros(len(p))
    for t in itertools.product(range(len(p)), repeat=n):
        t = np.array(t)
        best = r[t] == r[t].max()
        np.add.at(out, t[best], np.prod(p[t]) / best.sum())
    return out


def test_best_of_n_distribution_matches_enumerating_n_tuples_and_sums_to_one():
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.ones(6))
    r = np.array([0.0, 1.0, 1.0, 2.0, 0.0, 3.0])             # ties
    for n in (1, 2, 3, 4):
        b = exact.best_of_n(p, r, n)
        assert abs(b.sum() - 1.0) < 1e-12
        assert np.max(np.abs(b - brute_force_bon(p, r, n))) < 1e-12
    assert np.allclose(exact.best_of_n(p, r, 1), p)
    # without ties both tie rules agree with the per-completion formula F(y)^n - F-(y)^n
    r_distinct = np.arange(6.0)
    F = np.cumsum(p)
    assert np.allclose(exact.best_of_n(p, r_distinct, 5), F ** 5 - (F - p) ** 5, atol=1e-15)
    assert np.allclose(exact.best_of_n(p, r_distinct, 5, ties="index"), exact.best_of_n(p, r_distinct, 5))


def test_best_of_n_kl_is_below_log_n_minus_n_minus_1_over_n_and_matches_the_papers_table():
    """Beirami et al. 2024: the formula is an upper bound, tight without ties (PAPERS.md §7.2 table)."""
    table = {(2, 4): 0.459, (5, 4): 0.607, (50, 4): 0.636, (2, 16): 0.693, (5, 16): 1.480, (50, 64): 3.109}
    for (support, n), want in table.items():
        p = np.full(support, 1.0 / support)
        kl = exact.best_of_n_kl(p, np.arange(support, dtype=float), n)
        assert abs(kl - want) < 1e-3 and kl <= exact.best_of_n_kl_bound(n) + 1e-12
    # a model's completions, with and without ties
    m = tiny_model(22)
    e = exact.enumerate_completions(m, PROMPTS, T)
    seg = slice(e.offsets[0], e.offsets[1])
    for r in (fixed_reward(e, 8)[seg], fixed_reward(e, 8, (0.0, 1.0))[seg]):
        for n in (2, 8, 32):
            b = exact.best_of_n(e.probs[seg], r, n)
            assert abs(b.sum() - 1.0) < 1e-12
            assert exact.best_of_n_kl(e.probs[seg], r, n) <= exact.best_of_n_kl_bound(n) + 1e-12


# ------------------------------------------------------------------------------------------------ training hook
def make_trainer(task_name="length"):
    from toyrlhf.rl.algorithms import preset_config
    from toyrlhf.rl.trainer import Models, Trainer
    task = get_task(task_name)
    policy = TinyLM(ModelConfig(vocab_size=task.vocab_size, context=4, embed=4, hidden=8), seed=1)
    cfg = preset_config("grpo", task=task_name, exact_every=1)
    return cfg, Trainer(cfg, Models(policy=policy, reference=policy.copy(), critic=None, reward_model=None))


def test_training_metrics_are_exact_expectations_under_the_policy():
    cfg, trainer = make_trainer()
    fn = exact.training_metrics(cfg)
    out = fn(trainer)
    assert {"exact_reward", "exact_gold_reward", "exact_kl"} <= set(out)
    assert abs(out["exact_kl"]) < 1e-12                           # reference == policy
    # against the sampler: the gold reward is 0/1 correctness on `length`
    task, pol = trainer.task, trainer.models.policy
    s = pol.sample(np.repeat(task.prompts(), 2000, axis=0), task.max_new_tokens, np.random.default_rng(0))
    g = task.gold_reward(*tk.split(s.tokens, task.prompt_len))
    z = (g.mean() - out["exact_gold_reward"]) / (g.std(ddof=1) / np.sqrt(g.size))
    assert abs(z) <= Z, z
    assert abs(out["exact_reward"] - out["exact_gold_reward"]) < 1e-12  # rule reward = gold reward here
    # a moved reference: exact_kl is the enumerated KL(pi || ref)
    ref = trainer.models.reference
    ref.set_flat(ref.flat + np.random.default_rng(1).normal(0, 0.3, ref.flat.shape))
    out2 = fn(trainer)
    e = exact.enumerate_task(pol, task)
    assert out2["exact_kl"] > 0.01
    assert abs(out2["exact_kl"] - exact.kl_divergences(e, exact.rescore(ref, e))["reverse_mean"]) < 1e-12


def test_training_metrics_refuse_a_task_too_large_to_enumerate(monkeypatch):
    cfg, _ = make_trainer()
    monkeypatch.setattr(exact, "MAX_SEQUENCES", 100_000)
    with pytest.raises(UserError) as err:
        exact.training_metrics(cfg)
    msg = str(err.value)
    assert "149,296 completions" in msg and "\n" not in msg


# ------------------------------------------------------------------------------------------------ toyrlhf check
@pytest.mark.slow
def test_check_rows_agree_with_monte_carlo_and_name_the_known_biases(cache_dir):
    """run_check on tiny upstream stages: every row's MC mean matches the exact E[estimator] (|z| <= 4), and the
    verdicts (computed from cosines / ratios / z) name the textbook facts."""
    from toyrlhf import stages
    pipe = stages.Pipeline(pretrain=stages.PretrainConfig(task="arith", seed=0, steps=60, corpus_size=2000),
                           sft=stages.SFTConfig(steps=40))
    rep = exact.run_check("arith", samples=400, seed=0, pipeline=pipe)
    for row in rep.rows:
        assert abs(row.z_expected) <= Z, (row.estimator, row.target, row.z_expected)
    v = {(r.estimator, r.target): r.verdict for r in rep.rows}
    assert v[("KL k1 (sum over tokens)", "KL(pi||ref)")].startswith("unbiased")
    assert v[("KL k3 (sum over tokens)", "KL(pi||ref)")].startswith("unbiased")
    assert v[("KL k2 (sum over tokens)", "KL(pi||ref)")].startswith("biased")
    assert v[("k1 as loss", "grad KL(pi||ref)")].startswith("zero expected gradient")
    assert v[("k3 as loss, per sequence", "grad KL(ref||pi)")].startswith("unbiased")
    assert v[("k3 as loss, per sequence", "grad KL(pi||ref)")].startswith("biased: follows grad KL(ref||pi)")
    assert v[("k2 as loss, per sequence", "grad KL(pi||ref)")].startswith("unbiased")
    assert v[("k1 in reward (REINFORCE)", "grad KL(pi||ref)")].startswith("unbiased")
    assert v[("RLOO", "grad E[r]")].startswith("unbiased")
    assert "(G-1)/G/L_max x true" in v[("Dr. GRPO (group mean, sum/L_max)", "grad E[r]")]
    assert "(B-1)/B x true" in v[("REINFORCE (batch mean)", "grad E[r]")]
    assert v[("GRPO (std, 1/|o|)", "grad E[r]")].startswith("not parallel")
    # the preference-label rows: the sampled ceiling and the BT sampler's agreement with r* are unbiased for the
    # exact ceiling of the enumerated pair population
    # these two rows have E[est] = exact by construction, so their verdict is fixed; only their z can fail
    pref_rows = [r for r in rep.rows if r.section == "preference labels"]
    assert len(pref_rows) == 2 and all(abs(r.z) <= Z for r in pref_rows)
    from toyrlhf.cli.commands_exact import format_table
    lines = format_table(rep)
    starts = ("KL ", "k", "REINFORCE", "RLOO", "Dr.", "GRPO", "sigma", "label")
    assert len([ln for ln in lines if ln.startswith(starts)]) == len(rep.rows)


def toyrlhf_cli(*args, env_extra=None):
    return subprocess.run([sys.executable, "-m", "toyrlhf", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env_extra or {})})


@pytest.mark.parametrize("args,fragment", [(["--task", "nope"], "unknown task 'nope'"),
                                           (["--samples", "1"], "--samples must be at least 2")])
def test_check_wrong_input_is_one_line_exit_2(args, fragment, tmp_path):
    proc = toyrlhf_cli("check", *args, env_extra={"TOYRLHF_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr


def test_rescoring_with_a_prefix_window_model_scores_the_full_sequences_not_the_shared_windows():
    """A model whose window holds the whole prefix (the reward model's alignment) must not reuse the enumeration's
    last-k windows even at the same width: rescore falls back to logp_forward on every sequence."""
    from toyrlhf.model import ModelConfig, TinyLM
    task = get_task("length")
    policy = TinyLM(ModelConfig(vocab_size=task.vocab_size, context=task.prompt_len + task.max_new_tokens,
                                embed=4, hidden=8), seed=0)
    enum = exact.enumerate_task(policy, task)
    other = TinyLM(ModelConfig(vocab_size=task.vocab_size, context=policy.config.context, embed=4, hidden=8,
                               align="prefix"), seed=1)
    out = exact.rescore(other, enum)
    lp, _, _ = other.logp_forward(enum.tokens, enum.mask)
    np.testing.assert_array_equal(out.seq_logp, lp.sum(axis=1))
    with pytest.raises(ValueError, match="align"):
        exact.enumerate_task(other, task)
