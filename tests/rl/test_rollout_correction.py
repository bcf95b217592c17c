"""The trainer's rollout-training mismatch knob (sampler_temperature, rollout_correction): the sampled corrected
gradient agrees with the exact expectation of exact/mismatch.py (stated z), the corrected loss's gradient by finite
differences, the weights' registry facts, defaults off, and bad combinations as one-line errors."""
import numpy as np
import pytest

from toyrlhf.config import preset_config
from toyrlhf.exact import mismatch
from toyrlhf.exact.enumeration import enumerate_task, rescore
from toyrlhf.exact.expectations import grad_expectation
from toyrlhf.rl import rollout_correction
from toyrlhf.settings import with_overrides

TINY_UP = {"pretrain.steps": "30", "pretrain.corpus_size": "500", "sft.steps": "10", "sft.demos": "16"}
Z_MAX = 4.0


def _trainer(shared_cache_dir, monkeypatch, algo="rloo", **sets):
    from toyrlhf.rl.trainer import Trainer, build_models
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
    cfg = with_overrides(preset_config(algo, task="arith"), {**TINY_UP, **{k: str(v) for k, v in sets.items()}})
    return Trainer(cfg, build_models(cfg))


def test_sequence_level_corrections_are_constant_along_the_sequence_and_overflow_safe():
    rng = np.random.default_rng(0)
    mask = np.zeros((5, 6), bool)
    for i, n in enumerate([1, 6, 3, 4, 2]):
        mask[i, :n] = True
    log_w = rng.normal(scale=0.7, size=mask.shape)
    log_w[0, 0] = 800.0                                  # W = e^800 overflows: the masks must give 0, not nan
    for kind, e in rollout_correction.ROLLOUT_CORRECTIONS.items():
        c = rollout_correction.rollout_correction_weights(kind, log_w, mask)
        assert np.all(c[~mask] == 0)
        if kind != "seq_is":
            assert np.all(np.isfinite(c)), kind
        if e.level == "sequence" and kind != "seq_is":
            for i in range(len(mask)):
                assert np.ptp(c[i, mask[i]]) == 0, kind
    assert rollout_correction.rollout_correction_weights("seq_mask", log_w, mask)[0, 0] == 0
    assert rollout_correction.rollout_correction_weights("seq_tis", log_w, mask)[0, 0] == 2.0


@pytest.mark.parametrize("kind", ["token_tis", "seq_mask"])
def test_trainer_corrected_gradient_matches_the_exact_expectation(kind, shared_cache_dir, monkeypatch):
    """RLOO (its leave-one-out baseline has the expectation E_mu[r|q] of the exact study's A = r - E_mu[r|q]),
    sampler at T = 1.5, trainer at T = 1: the mean of 800 sampled batch gradients (8 prompts x G = 4) projected on
    the exact expected gradient's direction and on a random direction, |z| < 4; its cosine with the exact one."""
    t = _trainer(shared_cache_dir, monkeypatch, kl="none", beta=0.0, reward="gold", prompts_per_step=8,
                 group_size=4, sampler_temperature=1.5, rollout_correction=kind)
    pol, task = t.models.policy, t.task
    enum = enumerate_task(pol, task)
    r = task.gold_reward(*enum.split())
    mu = rescore(pol, enum, temperature=1.5)
    E, _ = mismatch.expected_corrected_gradient(pol, enum, r, mu, kind)
    g_true = grad_expectation(pol, enum, r)
    rnd = np.random.default_rng(3).normal(size=E.size)
    dirs = np.stack([E / np.linalg.norm(E), rnd / np.linalg.norm(rnd), g_true / np.linalg.norm(g_true)])
    n = 800
    proj, total = np.zeros((n, 3)), np.zeros(E.size)
    for i in range(n):
        ro, _ = t.collect()
        tg = t.advantages(ro, 0.0)
        _, g, _ = t.minibatch_gradient(ro, tg, np.arange(ro.tokens.shape[0]), 0.0, old_is_current=True)
        proj[i] = dirs @ -g                           # ascent direction
        total -= g
    z = (proj.mean(axis=0) - dirs @ E) / (proj.std(axis=0, ddof=1) / np.sqrt(n))
    mean = total / n
    cos = mean @ E / (np.linalg.norm(mean) * np.linalg.norm(E))
    print(f"{kind}: z along E, random, true = {z[0]:+.2f}, {z[1]:+.2f}, {z[2]:+.2f}; cos(MC mean, E) = {cos:.4f}")
    assert np.all(np.abs(z[:2]) < Z_MAX), z
    assert cos > 0.95


def test_uncorrected_mismatch_is_biased_and_detected(shared_cache_dir, monkeypatch):
    """The same estimator without a correction: its exact expectation differs from grad E_pi[r], and the sampled
    batches see it (|z| > 4 along the difference), so the agreement above is not a test that cannot fail."""
    t = _trainer(shared_cache_dir, monkeypatch, kl="none", beta=0.0, reward="gold", prompts_per_step=8,
                 group_size=4, sampler_temperature=1.5, rollout_correction="none")
    pol, task = t.models.policy, t.task
    enum = enumerate_task(pol, task)
    r = task.gold_reward(*enum.split())
    E_none, _ = mismatch.expected_corrected_gradient(pol, enum, r, rescore(pol, enum, temperature=1.5), "none")
    g_true = grad_expectation(pol, enum, r)
    d = (E_none - g_true) / np.linalg.norm(E_none - g_true)
    n = 200
    proj = np.zeros(n)
    for i in range(n):
        ro, _ = t.collect()
        _, g, _ = t.minibatch_gradient(ro, t.advantages(ro, 0.0), np.arange(ro.tokens.shape[0]), 0.0,
                                       old_is_current=True)
        proj[i] = d @ -g
    se = proj.std(ddof=1) / np.sqrt(n)
    z_true, z_none = (proj.mean() - d @ g_true) / se, (proj.mean() - d @ E_none) / se
    print(f"none: z against grad E_pi[r] {z_true:+.1f}, against its exact expectation {z_none:+.2f}")
    assert abs(z_true) > Z_MAX and abs(z_none) < Z_MAX


@pytest.mark.parametrize("kind, ratio", [("token_tis", "token"), ("geo_mask", "dual_clip"), ("seq_tis", "sequence")])
def test_corrected_loss_gradient_by_finite_differences(kind, ratio, shared_cache_dir, monkeypatch):
    """After a small parameter move (ratios != 1), the trainer's minibatch loss with the correction against
    central differences along random directions, float64."""
    t = _trainer(shared_cache_dir, monkeypatch, algo="grpo", prompts_per_step=4, group_size=4,
                 sampler_temperature=0.7, rollout_correction=kind, ratio=ratio, eps_low=0.2, eps_high=0.2)
    ro, _ = t.collect()
    tg = t.advantages(ro, t.kl_ctl.beta)
    assert tg.mismatch["rollout_is_weight"] != 1.0
    pol = t.models.policy
    rng = np.random.default_rng(5)
    theta = pol.flat.copy()
    pol.set_flat(theta + 1e-3 * rng.normal(size=theta.size))
    rows = np.arange(ro.tokens.shape[0])
    loss = lambda: t.minibatch_gradient(ro, tg, rows, t.kl_ctl.beta)[0]
    _, g, _ = t.minibatch_gradient(ro, tg, rows, t.kl_ctl.beta)
    base, h = pol.flat.copy(), 1e-6
    for _ in range(3):
        u = rng.normal(size=base.size)
        u /= np.linalg.norm(u)
        pol.set_flat(base + h * u)
        lp = loss()
        pol.set_flat(base - h * u)
        lm = loss()
        pol.set_flat(base)
        fd = (lp - lm) / (2 * h)
        assert fd == pytest.approx(g @ u, rel=1e-5, abs=1e-9)


def test_defaults_are_off_and_the_metrics_are_logged(shared_cache_dir, monkeypatch):
    t = _trainer(shared_cache_dir, monkeypatch, algo="grpo", prompts_per_step=4, group_size=4)
    assert t.sampler_temperature is None
    ro, _ = t.collect()
    assert ro.sampler_logp is None and t.advantages(ro, 0.0).mismatch is None
    t = _trainer(shared_cache_dir, monkeypatch, algo="grpo", prompts_per_step=4, group_size=4,
                 sampler_temperature=2.0, rollout_correction="token_mask")
    m = t.step()
    assert 0 < m["rollout_masked_fraction"] < 1 and m["rollout_kl"] > 0 and np.isfinite(m["rollout_is_weight"])


@pytest.mark.parametrize("bad, msg", [
    (dict(rollout_correction="token_tis", ratio="sequence"), "sequence-level surrogate"),
    (dict(rollout_correction="geo_mask", ratio="gmpo"), "sequence-level surrogate"),
    (dict(rollout_correction="tis"), "rollout_correction must be one of"),
    (dict(sampler_temperature=0.0), "sampler_temperature must be > 0"),
    (dict(sampler_temperature=0.8, update="exact"), "update=sample"),
    (dict(rollout_correction="seq_tis", method="dpo", beta=0.1), "policy-gradient trainer"),
    (dict(rollout_mask_low=1.0), "rollout_mask_low < 1"),
    (dict(rollout_is_cap=0.0), "rollout_is_cap must be > 0"),
])
def test_bad_mismatch_settings_are_one_line_errors(bad, msg):
    with pytest.raises(ValueError, match=msg) as e:
        preset_config("grpo", **bad)
    assert "\n" not in str(e.value)


def test_sequence_corrections_accept_a_sequence_surrogate():
    assert preset_config("gspo", sampler_temperature=0.8, rollout_correction="seq_mask").ratio == "sequence"


def test_algos_lists_the_knob_and_the_library_names_map_to_it():
    from click.testing import CliRunner
    from toyrlhf.cli.commands_rl import algos_cmd
    out = CliRunner().invoke(algos_cmd, []).output
    assert "--set rollout_correction=NAME" in out
    for name in rollout_correction.ROLLOUT_CORRECTIONS:
        assert f"  {name} " in out
    for lib in ("verl", "openrlhf"):
        text = CliRunner().invoke(algos_cmd, ["--names", lib]).output
        assert "rollout_correction" in text and "no trainer knob" not in text
