"""The optimum rows of `toyrlhf eval` (rl/exact_eval.optimum_report): a TinyLM policy's J = E[r] - beta KL lies
below the best policy of its context window, which lies below pi*; the TVs are those of the exact engine."""
from __future__ import annotations

import numpy as np
import pytest

from toyrlhf import exact
from toyrlhf.config import preset_config
from toyrlhf.rl.exact_eval import optimum_report
from toyrlhf.rl.trainer import Trainer, build_models


def test_run_below_window_optimum_below_pi_star_with_the_engines_tvs(module_cache_dir, monkeypatch):
    """The report's window optimum is kept (it is 40% of the test's time) and checked to be the engine's for the
    enumeration, rewards and beta computed here; the TVs are then recomputed from it."""
    cfg = preset_config("grpo", task="arith", prompts_per_step=16, group_size=4)
    cfg.pretrain.steps, cfg.pretrain.corpus_size, cfg.sft.steps = 60, 2000, 40
    models = build_models(cfg)
    models.policy.set_flat(models.policy.flat + 0.05 * np.random.default_rng(0).normal(size=models.policy.flat.size))
    tr = Trainer(cfg, models)
    beta = 1.0
    calls, real_window_optimum = [], exact.window_optimum

    def window_optimum(*args, **kw):
        calls.append((args, real_window_optimum(*args, **kw)))
        return calls[-1][1]

    monkeypatch.setattr(exact, "window_optimum", window_optimum)
    o = optimum_report(tr, beta)
    assert o["J"] < o["win_value"] <= o["opt_value"] + 1e-12
    assert o["win_converged"] and o["win_context"] == models.policy.config.window
    e = exact.enumerate_task(models.policy, tr.task, cfg.temperature)
    ref = exact.rescore(models.reference, e, cfg.temperature)
    r = np.asarray(tr.reward_fn(e.tokens, e.mask, *e.split()), np.float64)
    ((w_ref, w_r, w_beta, _), w), = calls
    assert np.array_equal(w_ref.seq_logp, ref.seq_logp) and np.array_equal(w_ref.tokens, ref.tokens)
    assert np.array_equal(w_r, r) and w_beta == beta
    star = exact.optimum(ref, r, beta)
    assert o["tv_to_win"] == pytest.approx(exact.total_variation(e, w.logp)[1], abs=1e-12)
    assert o["tv_win_to_opt"] == pytest.approx(exact.total_variation(ref.with_win_logp(w.win_logp), star.logp)[1],
                                               abs=1e-12)
    assert o["tv_to_opt"] <= o["tv_to_win"] + o["tv_win_to_opt"] + 1e-12          # the triangle inequality
