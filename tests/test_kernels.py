"""The fused fast path (toyrlhf/kernels/) against the NumPy reference path, its exp/tanh against libm, and the
determinism contract: the same bytes for any NUMBA_NUM_THREADS / OPENBLAS_NUM_THREADS."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from toyrlhf import kernels
from toyrlhf.kernels import pool
from toyrlhf.model import ModelConfig, TinyLM
from toyrlhf.threads import blas_single_thread
from test_model import random_batch, small_model

FAST_TOL = 1e-12
"""fast == reference to round-off: max |fast - ref| / max |ref| (measured ~1e-15; summation orders differ)."""


def rel(a, b):
    return np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))) / max(np.max(np.abs(b)), 1e-300)


def both_paths(m, fn):
    out = {}
    for fast in (True, False):
        m.fast = fast
        out[fast] = fn()
    del m.fast
    return out[True], out[False]


CASES = [("mlp", {}), ("bigram", {}), ("mlp", dict(k=7, align="prefix", reward_pool="last")),
         ("mlp", dict(k=7, align="prefix", reward_pool="mean")), ("mlp", dict(k=5, d=6, h=37, reward_pool="last"))]


@pytest.mark.parametrize("arch, shape", CASES)
def test_fast_path_equals_reference_path(arch, shape):
    rng = np.random.default_rng(0)
    m = small_model(arch, 1, **shape)
    tokens, mask = random_batch(rng, 7, 41, 3, 4)          # 41 rows: ragged last row block
    wl, we = rng.normal(size=tokens.shape), rng.normal(size=tokens.shape)

    def run():
        lp, ent, c = m.logp_forward(tokens, mask, 0.7)
        g = m.logp_backward(wl, c, we)
        v, vc = m.value_forward(tokens, mask)
        r, rc = m.reward_forward(tokens, mask)
        X = m.contexts(tokens, np.arange(41), np.full(41, 2))
        return [lp, ent, g, v, m.value_backward(wl, vc), r, m.reward_backward(we[:, 0], rc),
                m.next_logprobs(X, 0.9)]

    for name, a, b in zip(["logp", "entropy", "logp grad", "value", "value grad", "reward", "reward grad",
                           "next_logprobs"], *both_paths(m, run)):
        assert rel(a, b) <= FAST_TOL, name


@pytest.mark.parametrize("arch, shape", CASES[:3])
@pytest.mark.parametrize("T", [4, 30])
def test_fast_sampler_draws_what_the_reference_sampler_draws_and_leaves_the_generator_where_it_does(arch, shape, T):
    """The fast sampler draws every step's uniforms at once, then rewinds the generator to where the reference loop
    leaves it (with T = 30 every row has stopped at EOS long before the last step)."""
    m = small_model(arch, 2, **shape)
    prompts = np.random.default_rng(1).integers(3, 7, (50, 3))
    if shape.get("align") == "prefix":
        T = min(T, m.config.window - 2)

    def run():
        rng = np.random.default_rng(5)
        return m.sample(prompts, T, rng, 0.8), rng.random(3)

    (fast, fast_next), (ref, ref_next) = both_paths(m, run)
    assert np.array_equal(fast.tokens, ref.tokens) and np.array_equal(fast.mask, ref.mask)
    assert rel(fast.logp, ref.logp) <= FAST_TOL
    assert np.array_equal(fast_next, ref_next)


def test_fast_sampler_refuses_a_prefix_window_past_its_end_as_the_reference_does():
    m = small_model("mlp", 3, k=5, align="prefix", reward_pool="last")
    prompts = np.array([[3, 4, 5]] * 8)
    errors = both_paths(m, lambda: pytest.raises(ValueError, m.sample, prompts, 6, np.random.default_rng(0)))
    assert str(errors[0].value) == str(errors[1].value)


@pytest.mark.parametrize("arch, shape", CASES)
def test_fast_path_gives_the_same_bits_for_any_chunking_between_threads(arch, shape):
    """Row chunks and column chunks shared between threads (kernels.pool): one chunk, or 16-row chunks on four
    threads, give the same bytes for every output and gradient, and the same samples."""
    rng = np.random.default_rng(3)
    m = small_model(arch, 4, **{**dict(h=40), **shape})
    tokens, mask = random_batch(rng, 7, 300, 3, 4)
    wl, we = rng.normal(size=tokens.shape), rng.normal(size=tokens.shape)

    def run():
        lp, ent, c = m.logp_forward(tokens, mask, 0.7)
        v, vc = m.value_forward(tokens, mask)
        r, rc = m.reward_forward(tokens, mask)
        s = m.sample(tokens[:, :3], 4, np.random.default_rng(2))
        return [lp, ent, m.logp_backward(wl, c, we), v, m.value_backward(wl, vc), r, m.reward_backward(we[:, 0], rc),
                s.tokens, s.logp]

    one = run()
    with pool.configure(threads=4, min_rows=1, adaptive=False):
        seen = []
        pool.rows(lambda lo, hi: seen.append((lo, hi)), (), 300)
        assert len(seen) > 2
        shared = run()
    for a, b in zip(one, shared):
        assert np.array_equal(a, b)


def test_vectorised_exp_and_tanh_match_libm():
    x = np.concatenate([np.random.default_rng(0).normal(0, 3, 20_000), np.linspace(-30, 30, 6001),
                        [0.0, -0.0, 1e-300, 1e-10, -1e-8, 19.0, 25.0, -1e3]])
    t = kernels._vtanh_array(x)
    assert np.max(np.abs(t - np.tanh(x)) / np.maximum(np.abs(np.tanh(x)), 1e-300)) <= 1e-15
    assert np.isnan(kernels._vtanh_array(np.array([np.nan]))[0])
    y = np.concatenate([-np.random.default_rng(1).random(20_000) * 700, np.linspace(-5, 5, 1001), [0.0, 709.0]])
    assert np.max(np.abs(kernels._vexp_array(y) / np.exp(y) - 1)) <= 1e-15


def test_background_compile_plan_uses_the_signatures_the_model_uses():
    """kernels/warmup.py compiles a first run's kernels in a helper process from tiny made-up arguments: they must
    have the types TinyLM and Adam pass, or the helper compiles signatures nobody calls. Every kernel of the plan
    is called here through the model first; calling it with the plan's arguments then adds no signature."""
    from toyrlhf.kernels import warmup
    from toyrlhf.optim import Adam, clip_grad_norm
    rng = np.random.default_rng(0)
    for kw in (dict(), dict(k=4, align="prefix", reward_pool="last")):
        m = small_model("mlp", 0, **kw)
        tokens, mask = random_batch(rng, 7, 20, 2, 2)
        lp, ent, c = m.logp_forward(tokens, mask)
        m.logp_forward(tokens, mask)                  # the same parameters again: a window-memo lookup
        g = m.logp_backward(rng.normal(size=tokens.shape), c, rng.normal(size=tokens.shape))
        v, vc = m.value_forward(tokens, mask)
        g = g + m.value_backward(rng.normal(size=tokens.shape), vc)
        r, rc = m.reward_forward(tokens, mask)
        g = g + m.reward_backward(rng.normal(size=20), rc)
        Adam(m.flat.size, lr=1e-3).step(m.flat, clip_grad_norm(g, 1.0)[0])
        m.sample(tokens[:, :2], 2, rng)
    top_level = [(k, a) for k, a in warmup._plan() if not k.py_func.__name__.startswith(("_lm_head", "_dot8"))]
    for kernel, args in top_level:
        before = list(kernel.signatures)
        assert before, f"{kernel.py_func.__name__} was not called by the model"
        kernel(*args)
        assert kernel.signatures == before, f"{kernel.py_func.__name__}: the plan's arguments have other types"


def _fake_cache(tmp_path, name="forward._mlp_rows-284"):
    from types import SimpleNamespace
    return SimpleNamespace(_cache_path=str(tmp_path), _impl=SimpleNamespace(filename_base=name))


def _mark(tmp_path, pid, name):
    from toyrlhf.kernels import jit
    (tmp_path / jit.COMPILING_MARKER).write_text(f"{pid} {name}")


@pytest.mark.skipif(os.name != "posix", reason="the helper process is POSIX only")
def test_a_cache_miss_waits_only_while_a_live_helper_compiles_that_very_kernel(tmp_path):
    """jit._wait_for_helper: a run that needs a kernel the first-run helper (warmup.py) is compiling right now waits
    for it instead of compiling it too; it does not wait for another kernel, for its own marker (the helper loading
    what it compiles) or for a helper that is gone."""
    import threading
    import time
    from toyrlhf.kernels import jit
    cache = _fake_cache(tmp_path)
    assert not jit._wait_for_helper(cache)                                   # no helper at all
    from types import SimpleNamespace
    assert jit.mark_compiling(SimpleNamespace(_cache=cache)) == str(tmp_path / jit.COMPILING_MARKER)
    assert not jit._wait_for_helper(cache)                                   # our own marker (the helper's writer)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _mark(tmp_path, gone.pid, "forward._mlp_rows-284")
    assert not jit._wait_for_helper(cache)                                   # a helper that has exited
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _mark(tmp_path, helper.pid, "sample._sample_rows-20")
        assert not jit._wait_for_helper(cache)                               # compiling another kernel
        _mark(tmp_path, helper.pid, "forward._mlp_rows-284")
        done = threading.Timer(0.3, _mark, (tmp_path, helper.pid, "sample._sample_rows-20"))
        t = time.monotonic()
        done.start()
        assert jit._wait_for_helper(cache)                                   # it was compiling this one
        assert 0.25 < time.monotonic() - t < 10.0                            # and we waited until it moved on
    finally:
        helper.kill()
        helper.wait()


def test_blas_single_thread_pins_and_restores():
    from threadpoolctl import threadpool_info
    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    with blas_single_thread():
        with blas_single_thread():
            assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == before


STEP = r'''
import hashlib, numpy as np
from toyrlhf.model import ModelConfig, TinyLM
from toyrlhf.optim import Adam, clip_grad_norm
h = hashlib.sha256()
for arch, kw in (("mlp", {}), ("mlp", dict(context=12, align="prefix", reward_pool="last")), ("bigram", {})):
    m = TinyLM(ModelConfig(vocab_size=16, arch=arch, context=kw.get("context", 4), embed=16, hidden=128,
                           **{k: v for k, v in kw.items() if k != "context"}), seed=0)
    opt = Adam(m.flat.size, lr=1e-2)
    rng = np.random.default_rng(0)
    prompts = np.concatenate([np.full((96, 1), 1), rng.integers(3, 16, (96, 3))], axis=1)
    for step in range(3):
        s = m.sample(prompts, 8, rng)
        lp, ent, c = m.logp_forward(s.tokens, s.mask)
        g = m.logp_backward(-1.0 * s.mask / s.mask.sum(), c, 0.01 * s.mask)
        v, vc = m.value_forward(s.tokens, s.mask)
        g = g + m.value_backward(v - s.mask, vc)
        r, rc = m.reward_forward(s.tokens, s.mask)
        g = g + m.reward_backward(r - 1.0, rc)
        g, norm = clip_grad_norm(g, 0.5)
        opt.step(m.flat, g)
        for a in (s.tokens, s.logp, lp, ent, v, r, g, np.array(norm), m.flat):
            h.update(np.ascontiguousarray(a).tobytes())
print(h.hexdigest())
'''


@pytest.mark.slow
def test_results_are_bit_identical_for_any_thread_count(tmp_path):
    """Sampling, logp/value/reward forward and backward, clipping and Adam, in subprocesses with different
    numba / BLAS thread counts: the same bytes."""
    procs = {}
    for nt, bt in (("1", "1"), ("2", "2"), ("8", "1"), ("2", "1")):     # all at once: a free core is used
        env = {**os.environ, "NUMBA_NUM_THREADS": nt, "OPENBLAS_NUM_THREADS": bt}
        procs[(nt, bt)] = subprocess.Popen([sys.executable, "-c", STEP], env=env, cwd=tmp_path, text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    digests = {}
    for key, p in procs.items():
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        digests[key] = out.strip()
    assert len(set(digests.values())) == 1, digests
