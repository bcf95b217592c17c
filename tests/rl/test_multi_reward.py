"""Multi-reward (sum then normalise vs GDPO's normalise then sum) with hand-computed values, and local vs global
token normalisation under gradient accumulation (micro_batches, token_norm; TRL bnpo vs dapo)."""
import numpy as np
import pytest

import toyrlhf
from toyrlhf.config import preset_config
from toyrlhf.rl.advantages_baselines import multi_reward_advantages
from toyrlhf.rl.losses import aggregate

from tiny import TINY


def test_sum_then_normalise_by_hand():
    comps = {"a": np.array([1.0, 0.0, 1.0, 0.0]), "b": np.array([0.0, 1.0, 1.0, 0.0])}
    A = multi_reward_advantages(comps, {"a": 1.0, "b": 1.0}, 4, mode="sum", eps=0.0)
    # r = [1, 1, 2, 0], mean 1, population std sqrt(1/2)
    assert A == pytest.approx([0.0, 0.0, np.sqrt(2), -np.sqrt(2)])


def test_gdpo_normalise_then_sum_by_hand():
    comps = {"a": np.array([1.0, 0.0, 0.0, 0.0]), "b": np.array([2.0, 2.0, 2.0, 0.0])}
    A = multi_reward_advantages(comps, {"a": 1.0, "b": 0.5}, 4, mode="gdpo", eps=0.0)
    s3 = np.sqrt(3)
    # a: mean 1/4, std sqrt(3)/4 -> [s3, -1/s3, -1/s3, -1/s3]; b likewise reversed: [1/s3, 1/s3, 1/s3, -s3]
    total = np.array([s3, -1 / s3, -1 / s3, -1 / s3]) + 0.5 * np.array([1 / s3, 1 / s3, 1 / s3, -s3])
    assert A == pytest.approx((total - total.mean()) / total.std())
    # summing first gives b (spread 2) the say: r = [2, 1, 1, 0] has the same ranking, other values
    B = multi_reward_advantages(comps, {"a": 1.0, "b": 0.5}, 4, mode="sum", eps=0.0)
    assert not np.allclose(A, B)


def test_gdpo_keeps_distinct_patterns_apart_where_the_sum_ties_them():
    comps = {"a": np.array([1.0, 1.0, 1.0, 0.0]), "b": np.array([1.0, 0.0, 0.0, 1.0])}
    w = {"a": 1.0, "b": 1.0}
    s = multi_reward_advantages(comps, w, 4, mode="sum")
    assert s[1] == s[3]                                          # (1, 0) and (0, 1) both sum to 1
    g = multi_reward_advantages(comps, w, 4, mode="gdpo", eps=0.0)
    # a: [1, 1, 1, -3] / sqrt(3);  b: [1, -1, -1, 1]: the rarer success (b, row 3) is worth more than a's (row 1)
    total = np.array([1, 1, 1, -3]) / np.sqrt(3) + np.array([1, -1, -1, 1])
    assert g == pytest.approx((total - total.mean()) / total.std())
    assert g[1] != pytest.approx(g[3])


def test_local_and_global_token_norm_under_accumulation():
    rng = np.random.default_rng(0)
    mask = np.zeros((6, 8), bool)
    for i, n in enumerate([1, 8, 2, 7, 3, 3]):                   # ragged lengths
        mask[i, :n] = True
    x = rng.normal(size=mask.shape)
    full, w_full = aggregate(x, mask, "token-mean")
    micro = [slice(0, 2), slice(2, 4), slice(4, 6)]
    N = int(mask.sum())
    glob = sum(aggregate(x[s], mask[s], "token-mean", n_tokens=N)[0] for s in micro)
    local = sum(aggregate(x[s], mask[s], "token-mean")[0] for s in micro) / 3
    assert glob == pytest.approx(full, abs=1e-12)
    assert abs(local - full) > 1e-3


def _grads(cfg, shared_cache_dir, monkeypatch):
    """One rollout; the gradient of the whole batch as one minibatch, unsplit and in 4 micro-batches."""
    from dataclasses import replace
    from toyrlhf.rl.trainer import Trainer, build_models
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
    t = Trainer(cfg, build_models(cfg))
    ro, _ = t.collect()
    tg = t.advantages(ro, t.kl_ctl.beta)
    rows = np.arange(ro.tokens.shape[0])
    out = []
    for c in (cfg, replace(cfg, micro_batches=4, token_norm="global"), replace(cfg, micro_batches=4, token_norm="local")):
        t.cfg = c
        out.append(t.minibatch_gradient(ro, tg, rows, t.kl_ctl.beta, old_is_current=True)[1])
    return ro, out


def test_trainer_global_micro_batches_equal_the_full_minibatch(shared_cache_dir, monkeypatch):
    from toyrlhf.settings import with_overrides
    cfg = with_overrides(preset_config("dapo", task="arith"),
                         {"pretrain.steps": "30", "pretrain.corpus_size": "500", "sft.steps": "10",
                          "sft.demos": "16", "prompts_per_step": "4", "group_size": "4", "dynamic_sampling": "false"})
    ro, (g1, g_glob, g_loc) = _grads(cfg, shared_cache_dir, monkeypatch)
    assert len(set(ro.lengths.tolist())) > 1                    # ragged
    assert np.abs(g_glob - g1).max() < 1e-12 * max(1.0, np.abs(g1).max())
    assert np.abs(g_loc - g1).max() > 1e-6


@pytest.mark.parametrize("bad, msg", [(dict(reward_norm="gdpo", advantage="rloo"), "needs advantage=group"),
                                      (dict(token_norm="tokens"), "token_norm must be one of"),
                                      (dict(micro_batches=32), "cannot exceed prompts_per_step")])
def test_bad_multi_reward_settings_are_one_line_errors(bad, msg):
    with pytest.raises(ValueError, match=msg) as e:
        preset_config("grpo", **bad)
    assert "\n" not in str(e.value)


def test_gdpo_and_micro_batches_run(shared_cache_dir, monkeypatch):
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
    run = toyrlhf.train("grpo", task="arith", steps=2, reward_norm="gdpo", micro_batches=2, token_norm="local",
                        **TINY)
    assert len(run.metrics) == 2 and np.isfinite(run.metrics[-1]["loss"])
    with pytest.raises(ValueError, match="rule reward components"):
        preset_config("grpo", task="pref", reward_norm="gdpo").check_task()
