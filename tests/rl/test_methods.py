"""The methods' Monte-Carlo updates against their exact expectations from the exact engine (z-scores), and their
trainers end to end (run folder, metrics, resume) with tiny upstream settings.

Exact counterparts (arith, 2 prompts, 1,555 completions each, a random policy and another random reference):
    online RFT, keep=correct:  E[grad L] = -(1/Q) sum_q sum_y pi(y) I(y) (1/|y|) grad log pi(y)
    online RFT, keep=best:     the same with pi_bon,G(y)/G (exact.best_of_n, ties at random) in place of pi(y) I(y)
    online DPO:                E[grad L] = (1/Q) sum_q sum_y 2 pi(y) sum_y' pi(y') h(y, y') grad log pi(y),
                               h = dl/du(u(y, y')) - alpha/|y| if r(y) > r(y'), -dl/du(u(y', y)) if r(y) < r(y'), 0 if equal
    offline DPO:               a minibatch drawn with replacement: E = the full-data gradient.
    offline RFT:               the kept set of k groups of G per prompt drawn once from pi_sft: given the counts n_q
                               kept per prompt, its rows are i.i.d. from pi_sft(y | q, correct), so
                               E[full-data gradient] = -sum_q E[n_q / N | N >= 1] E_{pi_sft}[(1/|y|) grad log pi(y) | q, correct],
                               the count ratios summed exactly over the joint binomial law of (n_1, n_2)
    SFT (arith):               each prompt has one demonstration (the intended working), prompts uniform: E = the mean
                               of the per-prompt gradients; a minibatch of fresh demonstrations is unbiased for it.
"""
from types import SimpleNamespace

from scipy import stats
import numpy as np
import pytest

from toyrlhf import exact
from toyrlhf import tokens as tk
from toyrlhf.config import preset_config
from toyrlhf.model import TinyLM
from toyrlhf.rl.dpo import online_dpo_loss, pair_gradient
from toyrlhf.rl.preference_losses import PREFERENCE_LOSSES
from toyrlhf.rl.preference_losses import nll_loss
from toyrlhf.rl.rft import RFTTrainer, online_rft_loss
from toyrlhf.rl.rollout import Rollout
from toyrlhf.tasks import get_task

TASK = get_task("arith")
PROMPT_IDS = np.array([3, 77])
G = 8
M = 300          # Monte-Carlo batches


@pytest.fixture(scope="module")
def models():
    mc = preset_config("grpo", task="arith").pretrain.model_config()
    policy, ref = TinyLM(mc, seed=11), TinyLM(mc, seed=12)
    policy.set_flat(policy.flat * 3.0)     # a peakier policy: more distinct rewards, more correct answers
    return policy, ref


def fixed_rollout(policy, ref, rng) -> Rollout:
    prompts = np.repeat(TASK.prompts()[PROMPT_IDS], G, axis=0)
    s = policy.sample(prompts, TASK.max_new_tokens, rng)
    old, ent, _ = policy.logp_forward(s.tokens, s.mask)
    ref_logp = ref.logp_forward(s.tokens, s.mask)[0]
    _, comps = tk.split(s.tokens, TASK.prompt_len)
    gold = TASK.gold_reward(prompts, comps)
    return Rollout(s.tokens, s.mask, old, ref_logp, ent, gold, gold, tk.completion_lengths(comps),
                   tk.is_truncated(comps), TASK.is_correct(prompts, comps), G)


def z_scores(samples: np.ndarray, exact_grad: np.ndarray) -> np.ndarray:
    """z of the Monte-Carlo mean against the exact gradient along the exact direction and 3 random ones."""
    rng = np.random.default_rng(0)
    dirs = np.vstack([exact_grad / np.linalg.norm(exact_grad), rng.standard_normal((3, exact_grad.size))])
    proj = samples @ dirs.T                                        # (M, 4)
    return (proj.mean(axis=0) - dirs @ exact_grad) / (proj.std(axis=0, ddof=1) / np.sqrt(len(samples)))


def mc_gradients(policy, ref, loss_fn, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(M):
        ro = fixed_rollout(policy, ref, rng)
        _, dlogp, cache = loss_fn(ro)[:3]
        out.append(policy.logp_backward(dlogp, cache))
    return np.array(out)


def _enum(policy, ref):
    enum = exact.enumerate_task(policy, TASK, prompts=TASK.prompts()[PROMPT_IDS])
    return enum, exact.rescore(ref, enum), TASK.gold_reward(*enum.split())


@pytest.mark.parametrize("rule", ["correct", "best"])
def test_online_rft_update_matches_its_exact_expectation(models, rule):
    policy, ref = models
    enum, _, gold = _enum(policy, ref)
    Q = len(PROMPT_IDS)
    if rule == "correct":
        weight = enum.probs * TASK.is_correct(*enum.split())
    else:
        weight = np.zeros(enum.n)
        for q in range(Q):
            s = slice(enum.offsets[q], enum.offsets[q + 1])
            weight[s] = exact.best_of_n(enum.probs[s], gold[s], G) / G
    D = np.where(enum.mask, (-weight / (Q * enum.lengths))[:, None], 0.0)
    g_exact = exact.grad_token_weights(policy, enum, D)
    g_mc = mc_gradients(policy, ref, lambda ro: online_rft_loss(policy, ro, rule), seed=1)
    z = z_scores(g_mc, g_exact)
    assert np.all(np.abs(z) < 4.0), z


@pytest.mark.parametrize("kind", ["sigmoid", "ipo"])
def test_online_dpo_update_matches_its_exact_expectation(models, kind):
    policy, ref = models
    cfg = preset_config("online_dpo", task="arith", pref_loss=kind, beta=0.5, sft_coef=0.3, group_size=G)
    enum, ref_enum, gold = _enum(policy, ref)
    Q = len(PROMPT_IDS)
    delta = enum.seq_logp - ref_enum.seq_logp
    c = np.zeros(enum.n)
    for q in range(Q):
        s = slice(enum.offsets[q], enum.offsets[q + 1])
        p, r, d, lens = enum.probs[s], gold[s], delta[s], enum.lengths[s]
        u = d[:, None] - d[None, :]                                 # u(y, y') = Delta(y) - Delta(y')
        f = PREFERENCE_LOSSES[kind].fn(u, cfg.beta)[1]              # dl/du(u(y, y'))
        win, lose = r[:, None] > r[None, :], r[:, None] < r[None, :]
        h = np.where(win, f - cfg.sft_coef / lens[:, None], 0.0) - np.where(lose, f.T, 0.0)
        c[s] = 2 * p * (h @ p) / Q
    g_exact = exact.sequence_weights(policy, enum, c)
    g_mc = mc_gradients(policy, ref, lambda ro: online_dpo_loss(policy, ro, cfg), seed=2)
    z = z_scores(g_mc, g_exact)
    assert np.all(np.abs(z) < 4.0), z


def test_offline_dpo_minibatch_is_unbiased_for_the_full_data_gradient(models):
    policy, ref = models
    cfg = preset_config("dpo", task="arith", beta=0.2, sft_coef=0.1)
    ro = fixed_rollout(policy, ref, np.random.default_rng(5))     # 16 completions -> 8 fixed pairs
    a, b = np.arange(0, 16, 2), np.arange(1, 16, 2)
    data = [ro.tokens[a], ro.mask[a], ro.ref_logp[a], ro.tokens[b], ro.mask[b], ro.ref_logp[b]]

    def grad(rows):
        loss, dlogp, cache, _ = pair_gradient(policy, *[x[rows] for x in data], cfg)
        return policy.logp_backward(dlogp, cache)

    full = grad(np.arange(8))
    rng = np.random.default_rng(6)
    z = z_scores(np.array([grad(rng.integers(0, 8, 4)) for _ in range(400)]), full)
    assert np.all(np.abs(z) < 4.0), z


class _TwoPromptArith(type(TASK)):
    """arith restricted to PROMPT_IDS, so the trainers' own data builders can be enumerated exactly."""

    def prompts(self):
        return super().prompts()[PROMPT_IDS]


def _nll_gradient(model, tokens, mask):
    logp, _, cache = model.logp_forward(tokens, mask)
    return model.logp_backward(nll_loss(logp, mask)[1], cache)


def _count_shares(p: np.ndarray, m: int) -> np.ndarray:
    """E[n_q / N | N >= 1] for n_q ~ Binomial(m, p_q) independently (two prompts), N = n_1 + n_2, summed exactly."""
    n = np.arange(m + 1)
    joint = np.outer(stats.binom.pmf(n, m, p[0]), stats.binom.pmf(n, m, p[1]))
    joint[0, 0] = 0.0                            # build_data refuses an empty kept set
    N = np.maximum(n[:, None] + n[None, :], 1)
    return np.array([np.sum(joint * n[:, None] / N), np.sum(joint * n[None, :] / N)]) / joint.sum()


@pytest.mark.parametrize("rule, k", [("correct", 128), ("best", 2)])
def test_offline_rft_dataset_gradient_matches_its_exact_expectation(models, rule, k):
    """RFTTrainer.build_data's kept set, redrawn M times, against the exact expectation over pi_sft's samples:
    'correct' keeps pi_sft(y | q, correct) rows in the count shares above; 'best' keeps one row per group, drawn
    from best-of-G (exact.best_of_n), k groups per prompt."""
    sampler, theta = models                     # pi_sft draws the dataset; the gradient is taken at theta
    task = _TwoPromptArith()
    enum = exact.enumerate_task(sampler, task)
    gold = task.gold_reward(*enum.split())
    keep = task.is_correct(*enum.split()) if rule == "correct" else None
    w = np.zeros(enum.n)                        # the kept set's expected share of each completion
    for q in range(2):
        s = slice(enum.offsets[q], enum.offsets[q + 1])
        if rule == "best":
            w[s] = exact.best_of_n(enum.probs[s], gold[s], G) / 2
        else:
            p = [np.sum((enum.probs * keep)[enum.offsets[j]:enum.offsets[j + 1]]) for j in range(2)]
            w[s] = _count_shares(np.array(p), k * G)[q] * enum.probs[s] * keep[s] / p[q]
    theta_enum = exact.rescore(theta, enum)
    g_exact = exact.grad_token_weights(theta, theta_enum, np.where(enum.mask, (-w / enum.lengths)[:, None], 0.0))

    def kept_set_gradient(seed):
        cfg = preset_config("rft", task="arith", rft_samples=k, group_size=G, rft_keep=rule, seed=seed)
        me = SimpleNamespace(cfg=cfg, task=task, models=SimpleNamespace(reference=sampler),
                             reward_fn=lambda tok, mask, prompts, comps: task.gold_reward(prompts, comps))
        tokens, mask, _ = RFTTrainer.build_data(me)
        return _nll_gradient(theta, tokens, mask)

    z = z_scores(np.array([kept_set_gradient(seed) for seed in range(M)]), g_exact)
    assert np.all(np.abs(z) < 4.0), z


def test_sft_minibatch_matches_the_exact_demonstration_gradient(models):
    """arith's demonstrations are the intended working, one per prompt: fresh minibatches average to its gradient."""
    policy, _ = models
    task = _TwoPromptArith()
    prompts, comps = task.demonstrations(200, np.random.default_rng(0))
    rows = np.unique(np.hstack([prompts, comps]), axis=0)
    assert len(rows) == len(PROMPT_IDS)          # deterministic demonstrations: one row per prompt
    tokens, mask = tk.join(rows[:, :task.prompt_len], rows[:, task.prompt_len:])
    g_exact = _nll_gradient(policy, tokens, mask)
    rng = np.random.default_rng(7)
    batches = [tk.join(*task.demonstrations(16, rng)) for _ in range(M)]
    z = z_scores(np.array([_nll_gradient(policy, t, mk) for t, mk in batches]), g_exact)
    assert np.all(np.abs(z) < 4.0), z
