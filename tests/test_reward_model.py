"""The Bradley-Terry reward model: the loss and its gradient (by hand and by finite differences through the
TinyLM), the K-way weighting, overfitting on little data, the accuracy against the Bayes ceiling on the default
task, score normalisation, checkpoints and the stage cache."""
import dataclasses
from math import comb

import numpy as np
import pytest

from toyrlhf import preferences as P
from toyrlhf import reward_model as R
from toyrlhf import stages
from toyrlhf.errors import UserError
from toyrlhf.model import ModelConfig, TinyLM
from toyrlhf.tasks import get_task
from toyrlhf.tokens import BOS, OUT_OFFSET, PAD
from conftest import fd_grad, rel_err

REL_TOL = 1e-6
Z_MAX = 4.0


# ------------------------------------------------------------------------------------------ the loss
def test_bt_loss_and_gradient_at_hand_computed_values():
    loss, dw, dl = R.bt_loss(np.array([0.0, 2.0]), np.array([0.0, 2.0]))
    np.testing.assert_allclose(loss, np.log(2.0))
    np.testing.assert_allclose(dw, -0.5)
    np.testing.assert_allclose(dl, 0.5)
    ln3 = np.log(3.0)                                   # sigma(ln 3) = 3/4
    loss, dw, dl = R.bt_loss(ln3, 0.0)
    assert loss == pytest.approx(np.log(4.0 / 3.0)) and dw == pytest.approx(-0.25) and dl == pytest.approx(0.25)
    # margin m: -log sigma(r_w - r_l - m)
    loss, dw, dl = R.bt_loss(1.0, 0.0, margin=1.0)
    assert loss == pytest.approx(np.log(2.0)) and dw == pytest.approx(-0.5) and dl == pytest.approx(0.5)
    loss, dw, _ = R.bt_loss(0.0, 0.0, margin=ln3)
    assert loss == pytest.approx(np.log(4.0)) and dw == pytest.approx(-0.75)


def test_swapping_winner_and_loser_flips_the_sign_of_the_gradient():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 3, 1000), rng.normal(0, 3, 1000)
    loss_ab, dw_ab, dl_ab = R.bt_loss(a, b)
    loss_ba, dw_ba, dl_ba = R.bt_loss(b, a)
    # the gradient raises the winner and lowers the loser, whichever of a, b is the winner
    assert np.all(dw_ab < 0) and np.all(dl_ab > 0) and np.all(dw_ba < 0) and np.all(dl_ba > 0)
    np.testing.assert_array_equal(dw_ab, -dl_ab)        # the loss depends on r_w - r_l only
    # d/da: -sigma(b - a) as winner, +sigma(b - a) ... as loser: +sigma(a - b), and the two differ by exactly 1
    np.testing.assert_allclose(dl_ba - dw_ab, 1.0, atol=1e-12)
    # log-odds identity: softplus(-d) - softplus(d) = -d
    np.testing.assert_allclose(loss_ab - loss_ba, -(a - b), atol=1e-10)


def test_group_loss_weights_all_pairs_of_a_ranking_by_one_over_k_choose_2():
    rng = np.random.default_rng(1)
    for k in (2, 3, 5):
        r = rng.normal(size=(7, k))
        loss, dr = R.group_bt_loss(r, margin=0.3)
        i, j = P.pair_index(k)
        per_pair = R.bt_loss(r[:, i], r[:, j], 0.3)[0]
        assert loss == pytest.approx(per_pair.sum(axis=1).mean() / comb(k, 2))
        # dr by central differences on the rewards
        num = np.zeros_like(r)
        for idx in np.ndindex(r.shape):
            for s in (1, -1):
                rr = r.copy()
                rr[idx] += s * 1e-6
                num[idx] += s * R.group_bt_loss(rr, 0.3)[0]
        assert rel_err(dr, num / 2e-6) <= REL_TOL
        np.testing.assert_allclose(dr.sum(axis=1), 0.0, atol=1e-15)   # invariant to a per-prompt shift


def ranked_batch(rng, V, n, k, P_len=3, T=4):
    """n groups of k sequences (group-major), random prompts and completions of random lengths."""
    B = n * k
    prompts = np.concatenate([np.full((B, 1), BOS), rng.integers(3, V, (B, P_len - 1))], axis=1)
    prompts = np.repeat(prompts[::k], k, axis=0)        # one prompt per group
    comp = rng.integers(OUT_OFFSET, V, (B, T))
    lengths = rng.integers(1, T + 1, B)
    tokens = np.concatenate([prompts, comp], axis=1)
    mask = np.zeros(tokens.shape, bool)
    for b in range(B):
        tokens[b, P_len + lengths[b]:] = PAD
        mask[b, P_len:P_len + lengths[b]] = True
    return tokens, mask


@pytest.mark.parametrize("arch", ["mlp", "bigram"])
@pytest.mark.parametrize("k, margin", [(2, 0.0), (2, 0.5), (3, 0.0), (3, 0.25)])
def test_rm_gradient_through_the_tinylm_matches_finite_differences(arch, k, margin):
    rng = np.random.default_rng(k)
    m = TinyLM(ModelConfig(vocab_size=7, arch=arch, context=3, embed=3, hidden=5), seed=k, init="random")
    tokens, mask = ranked_batch(rng, 7, 4, k)
    loss, g, r = R.rm_loss_and_grad(m, tokens, mask, k, margin)
    assert r.shape == (4, k)
    num = fd_grad(m, lambda: R.rm_loss_and_grad(m, tokens, mask, k, margin)[0])
    assert rel_err(g, num) <= REL_TOL
    # only trunk and reward head receive gradient
    lm_head = np.zeros_like(g, dtype=bool)
    i = 0
    for name, shape in m.shapes.items():
        n = int(np.prod(shape))
        lm_head[i:i + n] = name in ("W2", "b2", "wv", "bv")
        i += n
    assert np.all(g[lm_head] == 0)


# ------------------------------------------------------------------------------------------ config and model
def test_config_fields_are_validated():
    for bad in (dict(pairs=1), dict(k=1), dict(tau=-1.0), dict(heldout_frac=0.0), dict(heldout_frac=1.0),
                dict(lr=0.0), dict(weight_decay=-1.0), dict(steps=0), dict(temperature=0.0), dict(norm_samples=1)):
        with pytest.raises(ValueError):
            R.RMConfig(**bad)


def test_every_config_field_has_a_docstring():
    import inspect
    src = inspect.getsource(R.RMConfig)
    for f in dataclasses.fields(R.RMConfig):
        after = src.split(f"    {f.name}:", 1)[1].splitlines()[1].strip()
        assert after.startswith('"""'), f.name


def test_reward_head_is_reinitialised_and_the_trunk_copied():
    sft = TinyLM(ModelConfig(vocab_size=9), seed=0)
    sft.params["wr"][:] = 5.0
    rm = R.init_reward_model(sft, np.random.default_rng(0))
    np.testing.assert_array_equal(rm.params["W1"], sft.params["W1"])
    assert np.abs(rm.params["wr"]).max() < 1.0 and rm.params["br"][0] == 0.0
    assert np.all(sft.params["wr"] == 5.0)               # the SFT model is untouched


# ------------------------------------------------------------------------------------------ small pipeline
SMALL_PIPE = stages.Pipeline(pretrain=stages.PretrainConfig(steps=60, corpus_size=500, hidden=16),
                             sft=stages.SFTConfig(steps=20))
SMALL_RM = R.RMConfig(pairs=120, steps=30, norm_samples=300)


def test_checkpoint_round_trip_and_stage_cache(cache_dir, tmp_path):
    rm, path = R.cached_reward_model(SMALL_PIPE, SMALL_RM)
    assert path.parent == cache_dir and path.name.startswith("rm-pref-s0-")
    again, path2 = R.cached_reward_model(SMALL_PIPE, SMALL_RM)          # a cache hit
    assert path2 == path
    np.testing.assert_array_equal(again.model.flat, rm.model.flat)
    assert (again.mean, again.std) == (rm.mean, rm.std)
    other, path3 = R.cached_reward_model(SMALL_PIPE, dataclasses.replace(SMALL_RM, tau=0.5))
    assert path3 != path
    _, z = R.load_reward_model(path)
    summary = R.checkpoint_summary(z)
    assert summary["n_train_pairs"] + summary["n_heldout_pairs"] == 120
    # explicit save / load
    R.save_reward_model(tmp_path / "rm.npz", rm, task="pref", config={"rm": dataclasses.asdict(SMALL_RM)})
    loaded, _ = R.load_reward_model(tmp_path / "rm.npz")
    task = get_task("pref")
    rng = np.random.default_rng(0)
    s = loaded.model.sample(task.sample_prompts(16, rng), task.max_new_tokens, rng)
    np.testing.assert_array_equal(loaded.score(s.tokens, s.mask), rm.score(s.tokens, s.mask))
    np.testing.assert_allclose(rm.score(s.tokens, s.mask) * rm.std + rm.mean, rm.score_raw(s.tokens, s.mask))
    # an LM checkpoint is not a reward model
    _, sft_path = stages.cached_sft(SMALL_PIPE)
    with pytest.raises(UserError):
        R.load_reward_model(sft_path)


# ------------------------------------------------------------------------------------------ default pipeline
@pytest.fixture(scope="module")
def default_sft(shared_cache_dir):
    """The default pretrain + SFT pipeline (seed 0), built once per session in the shared stage cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
        yield stages.cached_sft(stages.Pipeline())[0]


@pytest.fixture(scope="module")
def default_rm(default_sft):
    return R.train_reward_model(default_sft, get_task("pref"), R.RMConfig(), seed=0)


@pytest.mark.slow
def test_default_rm_summary_is_complete_and_consistent(default_rm):
    rm, s = default_rm
    for key in ("n_train_pairs", "n_heldout_pairs", "n_ties_dropped", "train_loss", "heldout_loss",
                "train_accuracy", "heldout_accuracy", "bayes_accuracy", "train_bayes_accuracy",
                "gold_order_accuracy", "spearman", "pearson", "reward_mean", "reward_std", "parameters"):
        assert np.isfinite(s[key]), key
    assert s["n_train_pairs"] + s["n_heldout_pairs"] == R.RMConfig().pairs
    assert s["heldout_expected_accuracy"] <= s["bayes_accuracy"] + 1e-12
    assert s["train_expected_accuracy"] <= s["train_bayes_accuracy"] + 1e-12


@pytest.mark.slow
def test_default_rm_on_unseen_prompts_is_within_6_points_of_the_ceiling_up_to_label_noise(default_rm):
    """The honest statement on the default task. Measured on seed 0: realised 0.633, expected 0.633, ceiling 0.671
    (3.8 points), gold order 0.80, Spearman 0.63, Pearson 0.66; the defaults were chosen on seeds 1-2, where the
    gap of the expected accuracy was 3.2 and 5.4 points. Two parts:
      * the RM's expected accuracy over the label noise (no sampling noise given the pairs) is at most 6 points
        under the Bayes ceiling of the same pairs;
      * the realised accuracy against the sampled labels differs from it by label noise only: at most 4 standard
        errors (sqrt(sum p(1-p)) / n, ~0.8 points on the 3200 held-out pairs)."""
    _, s = default_rm
    assert s["heldout_expected_accuracy"] >= s["bayes_accuracy"] - 0.06
    assert abs(s["heldout_accuracy"] - s["heldout_expected_accuracy"]) <= Z_MAX * s["heldout_accuracy_se"]
    assert s["gold_order_accuracy"] >= 0.75 and s["spearman"] >= 0.5 and s["pearson"] >= 0.5


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="not reached: the mean-pooled 4-token reward head cannot represent the pref "
                                       "gold reward (1.4 points under the ceiling even fitted to exact gold "
                                       "rewards on seen prompts, ~3 on unseen ones); with the default 12800 noisy "
                                       "pairs the RM sits ~4 points under (see reward_model.py)")
def test_default_rm_heldout_expected_accuracy_within_2_points_of_the_bayes_ceiling(default_rm):
    _, s = default_rm
    assert s["heldout_expected_accuracy"] >= s["bayes_accuracy"] - 0.02


@pytest.mark.slow
def test_rm_with_very_little_data_overfits(default_sft):
    cfg = R.RMConfig(pairs=60, heldout_frac=0.5, steps=150, lr=3e-3, weight_decay=0.0, norm_samples=500)
    _, s = R.train_reward_model(default_sft, get_task("pref"), cfg, seed=0)
    assert s["n_train_pairs"] == 30
    # it fits the label noise: above the train-set ceiling, and below the loss floor of the true reward
    assert s["train_accuracy"] > s["train_bayes_accuracy"] + 0.2
    assert s["train_loss"] < s["train_bayes_loss"]
    # and does not generalise: held-out below its ceiling, in expectation and in log-loss
    assert s["heldout_expected_accuracy"] < s["bayes_accuracy"] - 0.05
    assert s["heldout_loss"] > s["heldout_bayes_loss"]


@pytest.mark.slow
def test_scores_are_normalised_under_fresh_sft_samples(default_sft, default_rm):
    rm, s = default_rm
    task = get_task("pref")
    n = 20_000
    rng = np.random.default_rng(12345)                  # not the normalisation's stream
    sample = default_sft.sample(task.sample_prompts(n, rng), task.max_new_tokens, rng)
    z = rm.score(sample.tokens, sample.mask)
    n_norm = R.RMConfig().norm_samples
    # both the normaliser (n_norm samples) and this check (n samples) are estimates
    se_mean = z.std() * np.sqrt(1 / n + 1 / n_norm)
    var_se = np.sqrt(np.mean((z - z.mean()) ** 4) - z.var() ** 2)          # sd of one (z - mean)^2 term
    se_std = var_se / (2 * z.std()) * np.sqrt(1 / n + 1 / n_norm)
    assert abs(z.mean()) <= Z_MAX * se_mean
    assert abs(z.std() - 1.0) <= Z_MAX * se_std
    assert s["reward_std"] > 0
