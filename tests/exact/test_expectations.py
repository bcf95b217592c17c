"""Exact expectations and their gradients (toyrlhf/exact/expectations.py): E[r], KL(pi||ref), KL(ref||pi) and
entropy against finite differences; pass@k and best-of-n against enumerating k- and n-tuples."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from toyrlhf import exact
from conftest import fd_grad, rel_err
from exact_helpers import FD_TOL, PROMPTS, T, fixed_reward, tiny_model


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
    """Beirami et al. 2024: the formula is an upper bound, tight without ties."""
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
