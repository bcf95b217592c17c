"""Rollout-training mismatch corrections (exact/mismatch.py): weights by hand, full IS unbiased, no mismatch no
bias, and a Monte-Carlo check of the exact expectation (stated z)."""
import numpy as np
import pytest

from toyrlhf import stages
from toyrlhf.exact import mismatch
from toyrlhf.exact.enumeration import enumerate_task, rescore
from toyrlhf.exact.expectations import per_prompt
from toyrlhf.tasks import get_task


def test_correction_weights_by_hand():
    log_w = np.log(np.array([[3.0, 0.25, 1.0], [1.5, 1.0, 1.0]]))
    mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    cw = lambda k: mismatch.correction_weights(k, log_w, mask, C=2.0, lo=0.5, hi=2.0)
    assert np.allclose(cw("token_tis"), [[2.0, 0.25, 0], [1.5, 1, 1]])
    assert np.allclose(cw("seq_is"), [[0.75, 0.75, 0], [1.5, 1.5, 1.5]])
    assert np.allclose(cw("token_mask"), [[0, 0, 0], [1.5, 1, 1]])
    assert np.allclose(cw("seq_mask"), [[0.75, 0.75, 0], [1.5, 1.5, 1.5]])
    # geometric means: sqrt(0.75) = 0.866 and 1.5^(1/3) = 1.145, both inside [0.5, 2]
    assert np.allclose(cw("geo_mask"), cw("token_tis"))


@pytest.fixture(scope="module")
def arith(shared_cache_dir):
    import os
    old = os.environ.get("TOYRLHF_CACHE_DIR")
    os.environ["TOYRLHF_CACHE_DIR"] = str(shared_cache_dir)
    try:
        task = get_task("arith")
        pol, _ = stages.cached_sft(stages.Pipeline(stages.PretrainConfig(task="arith", steps=30, corpus_size=500),
                                                   stages.SFTConfig(steps=10, demos=16)))
    finally:
        if old is None:
            os.environ.pop("TOYRLHF_CACHE_DIR")
        else:
            os.environ["TOYRLHF_CACHE_DIR"] = old
    return pol, task


def test_full_is_is_unbiased_and_no_mismatch_has_no_bias(arith):
    pol, task = arith
    rows = mismatch.mismatch_table(pol, task, lambda e: task.gold_reward(*e.split()), temperatures=(1.0, 1.5))
    by = {(m.sampler_temperature, m.correction): m for m in rows}
    for k in mismatch.CORRECTIONS:
        assert by[(1.0, k)].bias < 1e-8
    assert by[(1.5, "seq_is")].bias < 1e-8 and by[(1.5, "none")].bias > 0.05
    assert by[(1.5, "token_tis")].bias < by[(1.5, "none")].bias


@pytest.mark.parametrize("kind", ["none", "token_tis", "geo_mask"])
def test_monte_carlo_agrees_with_the_exact_expectation(arith, kind):
    """4000 samples y ~ mu (prompt uniform): the mean of f(y) . u against the exact E[f] . u, |z| < 4."""
    pol, task = arith
    enum = enumerate_task(pol, task)
    r = task.gold_reward(*enum.split())
    mu = rescore(pol, enum, temperature=1.5)
    A = r - per_prompt(enum, mu.probs * r)[enum.prompt_index]
    c = mismatch.correction_weights(kind, enum.logp - mu.logp, enum.mask) * A[:, None]
    u = np.random.default_rng(1).normal(size=pol.flat.size)
    u /= np.linalg.norm(u)
    d = mismatch._directional_logp(pol, enum, u, 1e-5)
    proj = (c * d).sum(axis=1)
    p = mu.probs / enum.n_prompts
    exact = float((p * proj).sum())
    from toyrlhf.exact.expectations import grad_token_weights
    Ef = grad_token_weights(pol, enum, p[:, None] * c)           # the table's expected gradient, projected
    assert abs(Ef @ u - exact) < 1e-6 * max(1.0, np.abs(proj).max())
    rng = np.random.default_rng(0)
    draws = proj[rng.choice(enum.n, size=4000, p=p / p.sum())]
    z = (draws.mean() - exact) / (draws.std(ddof=1) / np.sqrt(draws.size))
    print(f"z[{kind}] = {z:+.2f}")
    assert abs(z) < 4, z
