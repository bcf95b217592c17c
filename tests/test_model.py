"""TinyLM: every hand-written backward against central finite differences (float64), sampling, determinism."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from toyrlhf.model import ModelConfig, TinyLM
from toyrlhf.tokens import BOS, EOS, OUT_OFFSET, PAD
from conftest import fd_grad, rel_err

REL_TOL = 1e-6


def random_batch(rng, V, B, P, T):
    prompts = np.concatenate([np.full((B, 1), BOS), rng.integers(3, V, (B, P - 1))], axis=1)
    comp = rng.integers(OUT_OFFSET, V, (B, T))
    lengths = rng.integers(1, T + 1, B)
    mask = np.zeros((B, P + T), bool)
    tokens = np.concatenate([prompts, comp], axis=1)
    for b in range(B):
        tokens[b, P + lengths[b]:] = PAD
        mask[b, P:P + lengths[b]] = True
    return tokens, mask


def small_model(arch, seed, V=7, k=3, d=3, h=5, **kw):
    return TinyLM(ModelConfig(vocab_size=V, arch=arch, context=k, embed=d, hidden=h, **kw), seed=seed, init="random")


shapes = st.tuples(st.sampled_from(["mlp", "bigram"]), st.integers(0, 10_000), st.integers(4, 7),
                   st.integers(1, 4), st.integers(1, 4), st.integers(2, 6), st.integers(1, 3),
                   st.integers(1, 4), st.floats(0.5, 2.0))


@settings(max_examples=12, deadline=None)
@given(shapes)
def test_logp_and_entropy_backward_matches_finite_differences(spec):
    arch, seed, V, k, d, h, B, T, temp = spec
    rng = np.random.default_rng(seed)
    m = small_model(arch, seed, V, k, d, h)
    tokens, mask = random_batch(rng, V, B, 2, T)
    wl, we = rng.normal(size=tokens.shape), rng.normal(size=tokens.shape)

    def f():
        lp, ent, _ = m.logp_forward(tokens, mask, temp)
        return float(np.sum(wl * lp) + np.sum(we * ent))

    _, _, cache = m.logp_forward(tokens, mask, temp)
    g = m.logp_backward(wl, cache, dentropy=we)
    assert rel_err(g, fd_grad(m, f)) <= REL_TOL


@pytest.mark.parametrize("arch", ["mlp", "bigram"])
def test_cross_entropy_backward_matches_finite_differences(arch):
    rng = np.random.default_rng(1)
    m = small_model(arch, 1)
    tokens, mask = random_batch(rng, 7, 4, 3, 4)

    def f():
        lp, _, _ = m.logp_forward(tokens, mask)
        return float(-lp.sum() / mask.sum())

    _, _, cache = m.logp_forward(tokens, mask)
    g = m.logp_backward(-np.ones(tokens.shape) / mask.sum(), cache)
    assert rel_err(g, fd_grad(m, f)) <= REL_TOL


@pytest.mark.parametrize("arch", ["mlp", "bigram"])
def test_value_head_backward_matches_finite_differences(arch):
    rng = np.random.default_rng(2)
    m = small_model(arch, 2)
    tokens, mask = random_batch(rng, 7, 3, 3, 4)
    w = rng.normal(size=tokens.shape)

    def f():
        return float(np.sum(w * m.value_forward(tokens, mask)[0]))

    g = m.value_backward(w, m.value_forward(tokens, mask)[1])
    assert rel_err(g, fd_grad(m, f)) <= REL_TOL


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("arch, head", [("mlp", "wr"), ("mlp", "wv"), ("bigram", "wr")])
def test_scalar_head_on_prepared_windows_backward_matches_finite_differences(arch, head, fast):
    """head_forward / head_backward on windows cut by `contexts` (the reward model's prepared inputs): the gradient
    of sum_n w_n s_n against central differences, on the fast and the reference path."""
    rng = np.random.default_rng(11)
    m = small_model(arch, 11)
    m.fast = fast
    tokens, _ = random_batch(rng, 7, 6, 3, 4)
    X = m.contexts(tokens, np.repeat(np.arange(6), 2), rng.integers(0, tokens.shape[1], 12))   # repeated windows
    w = rng.normal(size=12)

    def f():
        return float(np.sum(w * m.head_forward(X, head)[0]))

    g, grads = m.zeros_like_params()
    m.head_backward(w, m.head_forward(X, head)[1], grads)
    assert rel_err(g, fd_grad(m, f)) <= REL_TOL


@pytest.mark.parametrize("seed, arch, shape", [
    (3, "mlp", {}), (3, "bigram", {}),
    (4, "mlp", dict(k=7, align="recent", reward_pool="last")),
    (4, "mlp", dict(k=7, align="prefix", reward_pool="mean")),
    (4, "mlp", dict(k=7, align="prefix", reward_pool="last"))])
def test_reward_head_backward_matches_finite_differences_for_every_window_and_pooling(seed, arch, shape):
    rng = np.random.default_rng(seed)
    m = small_model(arch, seed, **shape)
    tokens, mask = random_batch(rng, 7, 5, 3, 4)
    w = rng.normal(size=5)

    def f():
        return float(np.sum(w * m.reward_forward(tokens, mask)[0]))

    g = m.reward_backward(w, m.reward_forward(tokens, mask)[1])
    assert rel_err(g, fd_grad(m, f)) <= REL_TOL


@pytest.mark.parametrize("align", ["recent", "prefix"])
def test_value_and_logp_backward_match_finite_differences_for_both_window_alignments(align):
    rng = np.random.default_rng(5)
    m = small_model("mlp", 5, k=7, align=align)
    tokens, mask = random_batch(rng, 7, 4, 3, 4)
    w = rng.normal(size=tokens.shape)
    g = m.value_backward(w, m.value_forward(tokens, mask)[1])
    assert rel_err(g, fd_grad(m, lambda: float(np.sum(w * m.value_forward(tokens, mask)[0])))) <= REL_TOL
    g = m.logp_backward(w, m.logp_forward(tokens, mask)[2])
    assert rel_err(g, fd_grad(m, lambda: float(np.sum(w * m.logp_forward(tokens, mask)[0])))) <= REL_TOL


def test_prefix_window_holds_absolute_positions_and_never_sees_past_its_end():
    m = small_model("mlp", 6, k=5, align="prefix")
    tokens = np.array([[BOS, 3, 4, 5, 6], [BOS, 6, 5, 4, 3]])
    X = m.contexts(tokens, np.array([0, 1, 0]), np.array([4, 1, 2]))
    assert X.tolist() == [[BOS, 3, 4, 5, 6], [BOS, 6, PAD, PAD, PAD], [BOS, 3, 4, PAD, PAD]]
    with pytest.raises(ValueError, match="at most 5 tokens"):
        m.contexts(np.zeros((1, 7), np.int64), np.array([0]), np.array([5]))


def test_last_token_reward_reads_the_whole_sequence_and_ignores_what_follows_the_completion():
    m = small_model("mlp", 7, k=7, align="prefix", reward_pool="last")
    tokens = np.array([[BOS, 3, 4, 5, EOS, PAD, PAD]] * 3)
    tokens[1, 1] = 6                                        # another prompt token: another reward
    tokens[2, 5:] = [5, 6]                                  # junk after the completion's end: the same reward
    mask = np.zeros(tokens.shape, bool)
    mask[:, 3:5] = True
    r = m.reward_forward(tokens, mask)[0]
    assert r[0] != r[1] and r[0] == r[2]


def test_model_config_rejects_unknown_alignment_and_pooling():
    for bad in (dict(align="middle"), dict(reward_pool="max"), dict(arch="bigram", align="prefix")):
        with pytest.raises(ValueError):
            ModelConfig(vocab_size=7, **bad)


def test_bigram_logp_depends_only_on_previous_token():
    m = small_model("bigram", 4)
    tokens = np.array([[BOS, 3, 4, 5], [BOS, 6, 4, 5]])
    mask = np.array([[0, 0, 0, 1], [0, 0, 0, 1]], bool)
    lp, _, _ = m.logp_forward(tokens, mask)
    assert lp[0, 3] == lp[1, 3]


def test_mlp_window_is_bos_padded_on_the_left():
    m = small_model("mlp", 5, k=4)
    X = m.contexts(np.array([[BOS, 3]]), np.array([0]), np.array([1]))
    assert X.tolist() == [[BOS, BOS, BOS, 3]]


def test_next_token_distributions_sum_to_one():
    m = small_model("mlp", 6)
    X = np.random.default_rng(0).integers(0, 7, (50, 3))
    assert np.allclose(np.exp(m.next_logprobs(X, 0.7)).sum(1), 1.0, atol=1e-12)


def test_sampling_same_seed_gives_same_samples():
    m = small_model("mlp", 7)
    prompts = np.array([[BOS, 3, 4]] * 16)
    a = m.sample(prompts, 5, np.random.default_rng(11))
    b = m.sample(prompts, 5, np.random.default_rng(11))
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.logp, b.logp)


def test_sampling_logp_equals_model_logp_under_temperature():
    m = small_model("mlp", 8)
    prompts = np.array([[BOS, 3, 4]] * 32)
    s = m.sample(prompts, 5, np.random.default_rng(0), temperature=0.8)
    lp, _, _ = m.logp_forward(s.tokens, s.mask, 0.8)
    assert np.allclose(lp, s.logp, atol=1e-12)
    # EOS ends a completion: nothing but PAD after it, and the mask stops with it
    for row, mk in zip(s.tokens, s.mask):
        comp = row[3:]
        if EOS in comp:
            e = list(comp).index(EOS)
            assert (comp[e + 1:] == PAD).all() and mk[3:].sum() == e + 1


def test_sampled_frequencies_match_model_probabilities_chi_square():
    """Two-token completions from one prompt: empirical counts vs exact probabilities.

    Threshold: reject if the chi-square p-value < 1e-3 (fixed seed, so the test is deterministic;
    a correct sampler fails with probability 1e-3 over seeds)."""
    m = small_model("mlp", 9, V=5)
    n = 40_000
    prompts = np.array([[BOS, 3]] * n)
    s = m.sample(prompts, 2, np.random.default_rng(123))
    comp = s.tokens[:, 2:]
    Vo = 3
    # exact probability of every completion (first token, then second unless the first was EOS)
    lp1 = m.next_logprobs(m.contexts(np.array([[BOS, 3]]), np.array([0]), np.array([1])))[0]
    probs, keys = [], []
    for a in range(Vo):
        ta = a + OUT_OFFSET
        if ta == EOS:
            probs.append(np.exp(lp1[a])); keys.append((ta, PAD))
            continue
        lp2 = m.next_logprobs(m.contexts(np.array([[BOS, 3, ta]]), np.array([0]), np.array([2])))[0]
        for c in range(Vo):
            probs.append(np.exp(lp1[a] + lp2[c])); keys.append((ta, c + OUT_OFFSET))
    probs = np.array(probs)
    assert abs(probs.sum() - 1) < 1e-12
    counts = np.array([np.sum((comp[:, 0] == a) & (comp[:, 1] == c)) for a, c in keys])
    assert counts.sum() == n
    p = stats.chisquare(counts, probs * n).pvalue
    assert p > 1e-3


def test_logp_rejects_mask_on_first_position():
    m = small_model("mlp", 10)
    with pytest.raises(ValueError):
        m.logp_forward(np.array([[BOS, 3]]), np.array([[True, False]]))
