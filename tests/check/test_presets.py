"""`toyrlhf check --all-algos`, preset section: a row for every preset and library preset, Monte-Carlo of the
trainer's own loss code agreeing with the exact expectation (stated z), the exact rows against the expected-update
trainer's independent code, RLOO unbiased, and partition invariance exactly where the normalisation is per sequence."""
import numpy as np
import pytest

from toyrlhf import check, stages
from toyrlhf.check import presets
from toyrlhf.config import preset_config
from toyrlhf.exact import enumerate_task, rescore
from toyrlhf.rl.algorithms import LIBRARY_PRESETS, PRESETS

Z_MAX = 4.0


def _pipe():
    return stages.Pipeline(stages.PretrainConfig(task="arith", steps=30, corpus_size=500),
                           stages.SFTConfig(steps=10, demos=16))


@pytest.fixture(scope="module")
def report(shared_cache_dir):
    mp = pytest.MonkeyPatch()
    mp.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
    try:
        yield check.run_check("arith", samples=200, seed=0, pipeline=_pipe(), all_algos=True)
    finally:
        mp.undo()


def _rows(report):
    return {r.estimator: r for r in report.rows if r.section == presets.SECTION}


def test_every_preset_and_library_preset_has_a_row(report):
    rows = _rows(report)
    assert set(PRESETS) | set(LIBRARY_PRESETS) <= set(rows)
    assert {"grpo + entropy_top 0.2", "grpo + clip_cov", "grpo + kl_cov", "grpo + gdpo (rule components)"} <= set(rows)
    for r in rows.values():
        assert np.isfinite(r.z) and r.cos_mc is not None and "micro-batches" in r.verdict


def test_monte_carlo_of_the_trainer_code_agrees_with_the_exact_expectation(report):
    rows = [r for r in _rows(report).values() if np.isfinite(r.expected)]
    assert len(rows) >= 8
    for r in rows:
        print(f"{r.estimator}: z(E) = {r.z_expected:+.2f}, cos {r.cos:.6f}, ratio {r.ratio:.4f}")
        assert abs(r.z_expected) < Z_MAX, r.estimator


def test_rloo_is_unbiased_for_the_regularised_objective(report):
    rows = _rows(report)
    for name in ("rloo", "trl-rloo"):
        assert rows[name].verdict.startswith("unbiased"), rows[name].verdict
    assert rows["grpo"].cos < 1 - 1e-6                          # the group std tilts it


def test_partition_invariance_exactly_where_normalisation_is_per_sequence(report):
    for label, name, extra in presets.PRESET_ROWS:
        if extra:
            continue
        cfg = preset_config(name)
        per_token = cfg.aggregation == "token-mean" and cfg.ratio not in ("sequence", "gmpo")
        verdict = _rows(report)[label].verdict
        assert ("invariant (every batch)" in verdict) != per_token, (label, verdict)


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_exact_rows_agree_with_the_expected_update_trainer(algo, shared_cache_dir, monkeypatch):
    """exact_preset_gradient (the check) against rl/exact_update.exact_loss_gradient (the trainer's --update exact),
    two codings of the same expectation, on every prompt of the task."""
    from toyrlhf.rl import exact_update
    from toyrlhf.rl.trainer import Trainer, build_models
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
    pipe = _pipe()
    cfg = preset_config(algo, task="arith", reward="gold", pretrain=pipe.pretrain, sft=pipe.sft, beta=0.05)
    t = Trainer(cfg, build_models(cfg))
    pol, task = t.models.policy, t.task
    enum = enumerate_task(pol, task)
    t.models.reference.set_flat(pol.flat + 3e-3 * np.random.default_rng(0).normal(size=pol.flat.size))
    ref = rescore(t.models.reference, enum)
    want = -exact_update.exact_loss_gradient(t, enum, ref, 0.05)
    r = np.asarray(t.reward_fn(enum.tokens, enum.mask, *enum.split()), np.float64)
    got, note = presets.exact_preset_gradient(cfg, pol, enum, ref, r, 0.05, task.max_new_tokens)
    assert note == ""
    assert np.abs(got - want).max() < 1e-10 * max(1.0, np.abs(want).max())


def test_minibatch_dlogp_is_the_gradient_before_the_backward_pass(shared_cache_dir, monkeypatch):
    from dataclasses import replace
    from toyrlhf.rl.trainer import Trainer, build_models
    from toyrlhf.settings import with_overrides
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
    cfg = with_overrides(preset_config("dapo", task="arith"),
                         {"pretrain.steps": "30", "pretrain.corpus_size": "500", "sft.steps": "10",
                          "sft.demos": "16", "prompts_per_step": "4", "group_size": "4", "dynamic_sampling": "false",
                          "micro_batches": "2", "token_norm": "local"})
    t = Trainer(cfg, build_models(cfg))
    ro, _ = t.collect()
    tg = t.advantages(ro, 0.0)
    rows = np.arange(ro.tokens.shape[0])
    loss, g, _ = t.minibatch_gradient(ro, tg, rows, 0.0, old_is_current=True)
    loss2, dl = t.minibatch_dlogp(ro, tg, rows, 0.0, old_is_current=True)
    _, _, cache = t.models.policy.logp_forward(ro.tokens, ro.mask)
    g2 = t.models.policy.logp_backward(dl, cache)
    assert loss2 == pytest.approx(loss, abs=1e-12)
    assert np.abs(g2 - g).max() < 1e-12 * max(1.0, np.abs(g).max())
    t.cfg = replace(cfg, micro_batches=1)
    assert np.abs(t.minibatch_dlogp(ro, tg, rows, 0.0, old_is_current=True)[1] - dl).max() > 1e-6
