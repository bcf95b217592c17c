"""The window memo (toyrlhf/model_memo.py) returns exactly what a fresh forward computes, and never stale numbers."""
import numpy as np
import pytest

from toyrlhf import model_memo
from toyrlhf.kernels import pool
from toyrlhf.model import ModelConfig, TinyLM
from toyrlhf.tokens import BOS

CFG = ModelConfig(vocab_size=16, context=4, embed=8, hidden=32)


def _batch(model, rng, B=48, P=4, T=6, temperature=1.0):
    prompts = np.concatenate([np.full((B, 1), BOS), rng.integers(3, 16, (B, P - 1))], axis=1)
    return model.sample(prompts, T, rng, temperature)


def _fresh(model, tokens, mask, temperature=1.0):
    """logp_forward with the memo dropped first: every window computed anew."""
    model._memo = None
    return model.logp_forward(tokens, mask, temperature)


def _equal_outputs(a, b):
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_forward_after_sampling_reads_the_samplers_windows_bit_for_bit():
    m = TinyLM(CFG, seed=1)
    s = _batch(m, np.random.default_rng(0))
    assert m._memo is not None and m._memo.valid_for(m._params_version(), 1.0)
    memo_out = m.logp_forward(s.tokens, s.mask)
    assert np.array_equal(memo_out[0][s.mask], s.logp[s.mask])
    assert _equal_outputs(memo_out, _fresh(m, s.tokens, s.mask))


def test_backward_through_memo_features_equals_fresh_backward():
    m = TinyLM(CFG, seed=2)
    rng = np.random.default_rng(1)
    s = _batch(m, rng)
    dlogp = rng.normal(size=s.tokens.shape) * s.mask
    dent = rng.normal(size=s.tokens.shape) * s.mask
    g_memo = m.logp_backward(dlogp, m.logp_forward(s.tokens, s.mask)[2], dent)
    g_fresh = m.logp_backward(dlogp, _fresh(m, s.tokens, s.mask)[2], dent)
    assert np.array_equal(g_memo, g_fresh)


def test_an_in_place_parameter_change_makes_the_memo_stale():
    m = TinyLM(CFG, seed=3)
    s = _batch(m, np.random.default_rng(2))
    before = m.logp_forward(s.tokens, s.mask)
    m.params["b1"][:] += 0.1              # in place, as an optimiser step changes them
    after = m.logp_forward(s.tokens, s.mask)
    assert not np.array_equal(before[0], after[0])
    assert _equal_outputs(after, _fresh(m, s.tokens, s.mask))


def test_the_memo_is_keyed_by_temperature():
    m = TinyLM(CFG, seed=4)
    s = _batch(m, np.random.default_rng(3), temperature=0.7)
    hot = m.logp_forward(s.tokens, s.mask, 1.3)
    assert _equal_outputs(hot, _fresh(m, s.tokens, s.mask, 1.3))
    assert _equal_outputs(m.logp_forward(s.tokens, s.mask, 0.7), _fresh(m, s.tokens, s.mask, 0.7))


def test_new_windows_are_added_and_old_caches_stay_valid_when_the_memo_grows():
    m = TinyLM(CFG, seed=5)
    rng = np.random.default_rng(4)
    a, b = _batch(m, rng, B=8), _batch(m, rng, B=64)        # b's sampling merges into a's memo
    cache_a = m.logp_forward(a.tokens, a.mask)[2]
    count = int(m._memo.count[0])
    for _ in range(3):                                       # windows no sample produced: appended, memo grows
        c = _batch(TinyLM(CFG, seed=int(rng.integers(1 << 30))), rng, B=64)
        got = m.logp_forward(c.tokens, c.mask)
        assert _equal_outputs(got, _fresh(m, c.tokens, c.mask))
        m.logp_forward(a.tokens, a.mask)
        m.logp_forward(b.tokens, b.mask)
    assert m._memo.count[0] > count
    dlogp = rng.normal(size=a.tokens.shape) * a.mask
    assert np.array_equal(m.logp_backward(dlogp, cache_a), m.logp_backward(dlogp, _fresh(m, a.tokens, a.mask)[2]))
    assert _equal_outputs(m.logp_forward(b.tokens, b.mask), _fresh(m, b.tokens, b.mask))


def test_a_call_past_the_cap_starts_a_new_memo(monkeypatch):
    monkeypatch.setattr(model_memo, "CAP", 40)
    m = TinyLM(CFG, seed=6)
    rng = np.random.default_rng(5)
    for _ in range(4):
        s = _batch(m, rng, B=16)
        assert _equal_outputs(m.logp_forward(s.tokens, s.mask), _fresh(m, s.tokens, s.mask))
        assert m._memo is None or m._memo.count[0] <= model_memo.CAP


@pytest.mark.parametrize("threads", [2, 3])
def test_sampler_chunks_shared_between_threads_merge_into_one_memo(threads):
    m = TinyLM(CFG, seed=7)
    with pool.configure(threads=threads, min_rows=1, adaptive=False):
        s = _batch(m, np.random.default_rng(6), B=80)
        shared = m.logp_forward(s.tokens, s.mask)
    alone = TinyLM(CFG, seed=7)
    s2 = _batch(alone, np.random.default_rng(6), B=80)
    assert np.array_equal(s.tokens, s2.tokens) and np.array_equal(s.logp, s2.logp)
    assert _equal_outputs(shared, _fresh(m, s.tokens, s.mask))


def test_a_pickled_model_leaves_its_caches_behind():
    """A parameter version is a number of this process: an unpickled model starts without caches."""
    import pickle
    m = TinyLM(CFG, seed=8)
    s = _batch(m, np.random.default_rng(7))
    other = pickle.loads(pickle.dumps(m))
    assert not any(hasattr(other, a) for a in ("_snapshot", "_table_cache", "_memo"))
    assert _equal_outputs(other.logp_forward(s.tokens, s.mask), _fresh(m, s.tokens, s.mask))
