"""The best windowed policy (toyrlhf/exact/window.py): its gradient against central finite differences, pi* itself
when no window is shared, and, when windows are shared, the global optimum of a brute-force multi-start search over
the windows' distributions (computed without the enumeration), below J(pi*) and above every TinyLM of that window."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_softmax

from toyrlhf import exact
from toyrlhf import tokens as tk
from toyrlhf.optim import Adam

from exact_helpers import FD_TOL, PROMPTS, T, fixed_reward, tiny_model

N_OUT = 3


def _ref(k, seed=0):
    ref = tiny_model(seed, k=k)
    enum = exact.enumerate_completions(ref, PROMPTS, T)
    return ref, enum, fixed_reward(enum, seed + 5)


def test_the_window_gradient_matches_central_finite_differences():
    _, enum, r = _ref(k=1)
    theta = np.random.default_rng(0).normal(size=enum.win_logp.shape)
    _, g, _ = exact.window_objective(enum, r, 0.3, theta)
    fd = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        for s in (1, -1):
            t = theta.copy()
            t[idx] += s * 1e-5
            fd[idx] += s * exact.window_objective(enum, r, 0.3, t)[0] / 2e-5
    assert np.max(np.abs(g - fd)) < FD_TOL * max(1.0, np.max(np.abs(fd)))


@pytest.mark.parametrize("beta", [0.05, 0.5, 3.0])
def test_with_no_shared_window_the_window_optimum_is_pi_star(beta):
    """k = 4 sees the whole prefix (P + T - 1 = 4 tokens): every state has its own window."""
    _, enum, r = _ref(k=4)
    w = exact.window_optimum(enum, r, beta)
    star = exact.optimum(enum, r, beta)
    assert w.converged and w.grad_norm < 1e-9
    assert abs(w.value_mean - star.value_mean) < 1e-10
    assert exact.total_variation(enum.with_win_logp(w.win_logp), star.logp)[1] < 1e-8


def _brute(ref_model, r_of, beta):
    """J(theta) of a windowed policy, from itertools' completions and model.contexts only: one softmax per
    distinct window tuple (sorted), products of conditionals, the prompt mean of E[r - beta log(pi/ref)]."""
    P = PROMPTS.shape[1]
    comps, wins = [], {}
    for q, prompt in enumerate(PROMPTS):
        for L in range(1, T + 1):
            for body in itertools.product(range(1, N_OUT), repeat=L - 1):
                for last in (range(N_OUT) if L == T else (0,)):
                    y = [b + tk.OUT_OFFSET for b in body] + [last + tk.OUT_OFFSET]
                    tokens = np.full((1, P + T), tk.PAD, dtype=np.int64)
                    tokens[0, :P], tokens[0, P:P + L] = prompt, y
                    X = ref_model.contexts(tokens, np.zeros(L, np.int64), np.arange(P - 1, P + L - 1))
                    keys = [wins.setdefault(tuple(x), len(wins)) for x in X]
                    comps.append((q, [a - tk.OUT_OFFSET for a in y], keys))
    keys_sorted = sorted(wins, key=wins.get)
    ref_lp = ref_model.next_logprobs(np.array(keys_sorted))
    r = np.array([r_of[(q, tuple(a + tk.OUT_OFFSET for a in y))] for q, y, _ in comps])
    q_of = np.array([c[0] for c in comps])

    def seq(lp):
        return np.array([sum(lp[u, a] for u, a in zip(keys, y)) for _, y, keys in comps])

    lref = seq(ref_lp)

    def J(theta):
        lp = log_softmax(theta.reshape(len(wins), N_OUT), axis=1)
        s = seq(lp)
        p = np.exp(s)
        return float(np.mean([np.sum((p * (r - beta * (s - lref)))[q_of == q]) for q in range(len(PROMPTS))]))

    return J, keys_sorted, seq


def test_with_shared_windows_it_finds_the_brute_force_global_optimum_below_pi_star():
    """k = 1: the prompt's last token and every word share two windows. 12 Nelder-Mead restarts on the brute
    objective; the solver's J is at least the best of them (1e-7), its policy the same (TV < 1e-3), and pi* is out
    of reach (J gap > 1e-3)."""
    beta = 0.2
    ref_model, enum, r = _ref(k=1)
    r_of = {(int(enum.prompt_index[i]), tuple(int(t) for t in enum.completions[i] if t != tk.PAD)): r[i]
            for i in range(enum.n)}
    J, keys, seq = _brute(ref_model, r_of, beta)
    assert len(keys) == enum.win_logp.shape[0] == 2
    rng = np.random.default_rng(0)
    best = max((minimize(lambda x: -J(x), rng.normal(scale=2, size=len(keys) * N_OUT), method="Nelder-Mead",
                         options={"xatol": 1e-9, "fatol": 1e-13, "maxfev": 6000}) for _ in range(12)),
               key=lambda res: -res.fun)
    w = exact.window_optimum(enum, r, beta)
    order = [keys.index(tuple(x)) for x in enum.win_X]          # the enumeration's window u -> brute row
    theta_w = np.zeros((len(keys), N_OUT))
    theta_w[order] = w.win_logp
    assert abs(J(theta_w.ravel()) - w.value_mean) < 1e-12        # the same objective, computed two ways
    assert w.value_mean >= -best.fun - 1e-7
    p_brute = np.exp(seq(log_softmax(best.x.reshape(len(keys), N_OUT), axis=1)))
    p_w = np.exp(seq(theta_w))
    assert 0.5 * np.abs(p_brute - p_w).sum() / len(PROMPTS) < 1e-3
    assert exact.optimum(enum, r, beta).value_mean - w.value_mean > 1e-3
    assert w.converged and w.grad_norm < 1e-8


def test_tinylms_trained_on_the_exact_gradient_approach_the_window_optimum_from_below():
    """Every TinyLM with k = 1 is a windowed policy: 3 random ones, trained by Adam on the exact gradient of
    J = E[r] - beta KL(pi||ref) (400 steps), end within 1e-4 of the window optimum and never above it."""
    beta = 0.3
    _, enum, r = _ref(k=1)
    w = exact.window_optimum(enum, r, beta)
    for seed in range(3):
        model = tiny_model(100 + seed, k=1)
        opt = Adam(model.flat.size, lr=0.05)
        for _ in range(400):
            pi = exact.rescore(model, enum)
            opt.step(model.flat, -exact.grad_expectation(model, pi, r - beta * (pi.seq_logp - enum.seq_logp)))
        pi = exact.rescore(model, enum)
        J = exact.expectation(pi, r)[1] - beta * exact.kl_divergences(pi, enum)["reverse_mean"]
        assert w.value_mean - 1e-4 < J <= w.value_mean + 1e-12
