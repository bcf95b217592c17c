"""The entropy mechanism metrics (rl/exact_metrics.entropy_mechanism; Cui et al. 2025): the first-order entropy
changes against finite differences of the exact sequence entropy in the step size."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from toyrlhf import exact
from toyrlhf.rl.exact_metrics import entropy_mechanism

from exact_helpers import PROMPTS, T, fixed_reward, tiny_model


@pytest.mark.parametrize("advantage,aggregation", [("group", "seq-mean-token-mean"), ("rloo", "seq-mean-token-sum")])
def test_first_order_entropy_changes_match_finite_differences(advantage, aggregation):
    model = tiny_model(2)
    enum = exact.enumerate_completions(model, PROMPTS, T)
    r = fixed_reward(enum, 4, values=[0.0, 1.0])
    em = entropy_mechanism(model, enum, r, advantage, 4, aggregation, max_tokens=T)
    # parameter space: H(theta + eta E[g]) with the independently computed expected gradient
    g = exact.expected_pg_gradient(model, enum, r, advantage, 4, aggregation, max_tokens=T)
    theta = model.flat.copy()

    def H_at(eta):
        m = model.copy()
        m.set_flat(theta + eta * g)
        return exact.entropy(exact.enumerate_completions(m, PROMPTS, T))[1]

    h = 1e-5
    fd = (H_at(h) - H_at(-h)) / (2 * h)
    assert em["exact_entropy_change_grad"] == pytest.approx(fd, rel=1e-5, abs=1e-9)
    assert abs(fd) > 1e-4
    # the actual change of a tiny step against the first-order prediction (error O(eta^2))
    for eta in (1e-2, 1e-3):
        assert abs(H_at(eta) - H_at(0.0) - eta * em["exact_entropy_change_grad"]) < 50 * eta ** 2
    # sequence space: log pi(y|q) += eta c(y), renormalised, gives dH/d eta = -Cov(log pi, c)
    c = exact.expected_sequence_coefficients(enum, r, advantage, 4, aggregation, max_tokens=T)

    def H_tilt(eta):
        lp = enum.seq_logp + eta * c
        for q in range(enum.n_prompts):
            sl = slice(enum.offsets[q], enum.offsets[q + 1])
            lp[sl] -= logsumexp(lp[sl])
        return float(np.bincount(enum.prompt_index, weights=-np.exp(lp) * lp).mean())

    fd = (H_tilt(h) - H_tilt(-h)) / (2 * h)
    assert em["exact_entropy_change_cov"] == pytest.approx(fd, rel=1e-6, abs=1e-10)
    assert em["exact_entropy_change_cov"] == -em["exact_entropy_cov"]
