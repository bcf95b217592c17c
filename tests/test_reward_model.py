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
from toyrlhf.optim import Adam, clip_grad_norm, cosine_lr
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


HEAD_SHAPES = {"mlp-mean": dict(arch="mlp", context=3), "bigram-mean": dict(arch="bigram", context=3),
               "mlp-sequence": dict(arch="mlp", context=7, align="prefix", reward_pool="last")}


@pytest.mark.parametrize("head", HEAD_SHAPES)
@pytest.mark.parametrize("k, margin", [(2, 0.0), (2, 0.5), (3, 0.0), (3, 0.25)])
def test_rm_gradient_through_the_tinylm_matches_finite_differences(head, k, margin):
    rng = np.random.default_rng(k)
    m = TinyLM(ModelConfig(vocab_size=7, embed=3, hidden=5, **HEAD_SHAPES[head]), seed=k, init="random")
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


@pytest.mark.parametrize("head", HEAD_SHAPES)
def test_prepared_inputs_give_reward_forward_and_backward_bit_for_bit(head):
    """RewardInputs (windows cut once, distinct windows scored once, a reused gradient buffer) is a pure speed-up:
    rewards and gradients are reward_forward's / reward_backward's numbers exactly, also for a minibatch of rows
    with repeats, and again after the buffer was used."""
    rng = np.random.default_rng(5)
    m = TinyLM(ModelConfig(vocab_size=7, embed=3, hidden=8, **HEAD_SHAPES[head]), seed=1, init="random")
    tokens, mask = ranked_batch(rng, 7, 40, 2)
    tokens, mask = np.concatenate([tokens, tokens[:30]]), np.concatenate([mask, mask[:30]])   # repeated rows
    inputs = R.RewardInputs(m, tokens, mask)
    assert (inputs.windows is not None) == (head == "mlp-sequence")
    want_r, want_cache = m.reward_forward(tokens, mask)
    assert np.array_equal(inputs.scores(m), want_r)
    for rows in (rng.integers(0, len(tokens), 64), rng.integers(0, len(tokens), 64)):
        r, cache = inputs.forward(m, rows)
        want_r, want_cache = m.reward_forward(tokens[rows], mask[rows])
        dr = rng.normal(size=rows.size)
        assert np.array_equal(r, want_r)
        assert np.array_equal(inputs.backward(m, dr, cache), m.reward_backward(dr, want_cache))


def test_training_on_prepared_inputs_equals_the_plain_loop_bit_for_bit(cache_dir):
    """_fit's steps against the loop it replaced (reward_forward / rm_loss_and_grad, masked weight decay) on the
    sequence head: the same weights and the same learning curve after 40 steps."""
    sft, _ = stages.cached_sft(SMALL_PIPE)
    task = get_task("pref")
    cfg = dataclasses.replace(SMALL_RM, steps=40, eval_every=10)
    train, heldout = P.make_split(sft, task, cfg.pairs, rng=np.random.default_rng(0))
    fast = R.init_reward_model(sft, task, cfg.head, np.random.default_rng(1))
    plain = fast.copy()
    log = []
    R._fit(fast, train, heldout, cfg, np.random.default_rng(2), lambda step, f: log.append(f))
    rng, opt = np.random.default_rng(2), Adam(plain.flat.size, lr=cfg.lr)
    tokens, mask = train.joined()
    tok3, mask3 = tokens.reshape(train.n, 2, -1), mask.reshape(train.n, 2, -1)
    decay = np.zeros(plain.flat.size, dtype=bool)
    for sl in R._reward_param_slices(plain):
        decay[sl] = True
    assert decay.sum() == plain.num_params("reward")
    for step in range(cfg.steps):
        idx = rng.integers(0, train.n, cfg.batch_size)
        loss, grad, _ = R.rm_loss_and_grad(plain, tok3[idx].reshape(2 * idx.size, -1),
                                           mask3[idx].reshape(2 * idx.size, -1), 2)
        assert loss == log[step]["loss"]
        opt.lr = cosine_lr(cfg.lr, step, cfg.steps)
        opt.step(plain.flat, clip_grad_norm(grad, cfg.max_grad_norm)[0])
        plain.flat[decay] *= 1.0 - opt.lr * cfg.weight_decay
        if (step + 1) % 10 == 0:
            assert log[step]["heldout_loss"] == R.evaluate(plain, heldout)["loss"]
    assert np.array_equal(fast.flat, plain.flat)


# ------------------------------------------------------------------------------------------ config and model
def test_config_fields_are_validated():
    for bad in (dict(pairs=1), dict(k=1), dict(tau=-1.0), dict(heldout_frac=0.0), dict(heldout_frac=1.0),
                dict(lr=0.0), dict(weight_decay=-1.0), dict(steps=0), dict(temperature=0.0), dict(norm_samples=1),
                dict(head="max-pool"), dict(lr_schedule="linear")):
        with pytest.raises(ValueError):
            R.RMConfig(**bad)


def test_every_config_field_has_a_docstring():
    import inspect
    src = inspect.getsource(R.RMConfig)
    for f in dataclasses.fields(R.RMConfig):
        after = src.split(f"    {f.name}:", 1)[1].splitlines()[1].strip()
        assert after.startswith('"""'), f.name


def test_mean_head_copies_the_sft_trunk_and_reinitialises_the_reward_head():
    task = get_task("pref")
    sft = TinyLM(ModelConfig(vocab_size=task.vocab_size), seed=0)
    sft.params["wr"][:] = 5.0
    rm = R.init_reward_model(sft, task, "mean", np.random.default_rng(0))
    assert rm.config == sft.config
    np.testing.assert_array_equal(rm.params["W1"], sft.params["W1"])
    assert np.abs(rm.params["wr"]).max() < 1.0 and rm.params["br"][0] == 0.0
    assert np.all(sft.params["wr"] == 5.0)               # the SFT model is untouched


def test_sequence_head_reads_the_whole_sequence_with_the_sft_embeddings():
    task = get_task("pref")
    sft = TinyLM(ModelConfig(vocab_size=task.vocab_size), seed=0)
    rm = R.init_reward_model(sft, task, "sequence", np.random.default_rng(0))
    L = task.prompt_len + task.max_new_tokens
    assert (rm.config.context, rm.config.align, rm.config.reward_pool) == (L, "prefix", "last")
    np.testing.assert_array_equal(rm.params["emb"], sft.params["emb"])
    assert rm.params["W1"].shape == (L * sft.config.embed, sft.config.hidden)
    assert np.abs(rm.params["wr"]).max() < 1.0 and rm.params["br"][0] == 0.0
    # every score depends on the first prompt word, which the 4-token windows of late completion tokens never see
    rng = np.random.default_rng(1)
    s = sft.sample(task.sample_prompts(8, rng), task.max_new_tokens, rng)
    tok = s.tokens.copy()
    w0 = task.word_ids[0]
    tok[:, 1] = w0 + (tok[:, 1] - w0 + 1) % len(task.WORDS)              # another topic word
    assert np.all(rm.reward_forward(s.tokens, s.mask)[0] != rm.reward_forward(tok, s.mask)[0])


def test_sequence_head_needs_an_mlp_sft_model():
    task = get_task("pref")
    sft = TinyLM(ModelConfig(vocab_size=task.vocab_size, arch="bigram"), seed=0)
    with pytest.raises(UserError, match="mlp"):
        R.init_reward_model(sft, task, "sequence", np.random.default_rng(0))


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
                "gold_order_accuracy", "spearman", "pearson", "reward_mean", "reward_std", "parameters",
                "bayes_accuracy_se", "heldout_expected_accuracy_se", "exact_heldout_bayes_accuracy",
                "exact_heldout_expected_accuracy", "exact_train_bayes_accuracy", "exact_train_expected_accuracy",
                "spearman_within_prompt", "pearson_within_prompt"):
        assert np.isfinite(s[key]), key
    assert s["n_train_pairs"] + s["n_heldout_pairs"] == R.RMConfig().pairs
    assert s["heldout_expected_accuracy"] <= s["bayes_accuracy"] + 1e-12
    assert s["train_expected_accuracy"] <= s["train_bayes_accuracy"] + 1e-12


@pytest.mark.slow
def test_default_rm_heldout_accuracy_is_within_2_points_of_the_bayes_ceiling(default_rm):
    """The issue's target on the default task, on prompts the RM never saw. Measured on seed 0: realised 0.660,
    expected 0.662, ceiling 0.672 (1.0 points for the expected accuracy); seeds 1-3 gave gaps of 1.2, 1.0 and
    1.3 points (the defaults come from sweeps over seeds 0-3). Three parts:
      * the RM's expected accuracy over the label noise (no label noise left, given the pairs) is within 2 points
        of the Bayes ceiling of the same pairs;
      * the realised accuracy against the sampled labels differs from it by label noise only: at most 4 standard
        errors (sqrt(sum p(1-p)) / n, ~0.4 points on the 12800 held-out pairs);
      * the realised accuracy itself (fixed seeds, so a fixed number) is within 2 points of the ceiling."""
    _, s = default_rm
    assert s["heldout_expected_accuracy"] >= s["bayes_accuracy"] - 0.02
    assert abs(s["heldout_accuracy"] - s["heldout_expected_accuracy"]) <= Z_MAX * s["heldout_accuracy_se"]
    assert s["heldout_accuracy"] >= s["bayes_accuracy"] - 0.02
    assert s["gold_order_accuracy"] >= 0.85 and s["spearman"] >= 0.8 and s["pearson"] >= 0.8
    assert s["spearman_within_prompt"] >= 0.85 and s["pearson_within_prompt"] >= 0.85


@pytest.mark.slow
def test_default_rm_sample_figures_estimate_the_exact_population_figures_without_bias(default_rm):
    """The held-out pairs are a sample of a population the exact engine enumerates (every completion of every
    held-out prompt under the SFT policy). The sampled ceiling and the RM's expected accuracy sit within Z_MAX
    standard errors (over the sampling of the pairs) of their exact population values, and the RM is within 2
    points of the ceiling on the whole population too (measured: 0.6595 against 0.6705)."""
    _, s = default_rm
    for sample, se, exact_value in (
            ("bayes_accuracy", "bayes_accuracy_se", "exact_heldout_bayes_accuracy"),
            ("heldout_expected_accuracy", "heldout_expected_accuracy_se", "exact_heldout_expected_accuracy"),
            ("train_bayes_accuracy", "train_bayes_accuracy_se", "exact_train_bayes_accuracy")):
        assert abs(s[sample] - s[exact_value]) <= Z_MAX * s[se], (sample, s[sample], s[exact_value], s[se])
    assert s["exact_heldout_expected_accuracy"] >= s["exact_heldout_bayes_accuracy"] - 0.02
    assert s["exact_heldout_expected_accuracy"] <= s["exact_heldout_bayes_accuracy"]


@pytest.mark.slow
def test_mean_pooled_head_cannot_reach_the_ceiling_that_the_sequence_head_reaches(default_sft):
    """The reason for the default: on the same pairs the mean-pooled 4-token head is misspecified for pref's
    whole-completion gold reward and stays far under the ceiling (measured 5.3 points here, 3.4 with the full
    defaults) where the sequence head gets within 2."""
    cfg = R.RMConfig(head="mean", pairs=8000, steps=800, norm_samples=500, exact=False)
    _, s = R.train_reward_model(default_sft, get_task("pref"), cfg, seed=0)
    assert s["heldout_expected_accuracy"] < s["bayes_accuracy"] - 0.03


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


def test_same_seed_gives_identical_learning_curves_and_weights(cache_dir):
    sft, _ = stages.cached_sft(SMALL_PIPE)
    cfg = dataclasses.replace(SMALL_RM, eval_every=10)
    runs = []
    for _ in range(2):
        log = []
        rm, s = R.train_reward_model(sft, get_task("pref"), cfg, seed=3, progress=lambda i, f: log.append((i, f)))
        runs.append((log, rm.model.flat.copy(), s["heldout_expected_accuracy"]))
    (log_a, w_a, acc_a), (log_b, w_b, acc_b) = runs
    assert log_a == log_b and acc_a == acc_b
    np.testing.assert_array_equal(w_a, w_b)
    assert [i for i, f in log_a if "heldout_loss" in f] == [9, 19, 29]
