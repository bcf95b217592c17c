"""The exact facts of DPO (rl/dpo_facts.py): its optimum is the Gibbs tilt of the Bradley-Terry reward, the mass on
completions outside the pairs is read exactly off an enumeration, and the first-order 'chosen falls while the margin
rises' criterion predicts a real gradient step."""
import numpy as np

from toyrlhf import exact
from toyrlhf.config import preset_config
from toyrlhf.model import TinyLM
from toyrlhf.rl import dpo_facts as F
from toyrlhf.rl.preference_losses import preference_loss
from toyrlhf.tasks import get_task


def _prompt(rng, m=30):
    p = rng.dirichlet(np.ones(m))
    return p, rng.standard_normal(m)


def test_population_optimum_is_the_gibbs_tilt():
    rng = np.random.default_rng(0)
    p, r = _prompt(rng)
    beta = 0.3
    theta = F.tabular_dpo(p, r, beta)
    assert F.weighted_corr(beta * theta, r, p) > 0.99999
    assert np.std(beta * theta - r) < 1e-4                       # beta log(pi/pi_ref) = r + c
    assert np.abs(F.population_gradient(p, r, beta, r / beta)).max() < 1e-15
    assert np.abs(F.population_gradient(p, r, beta, np.zeros_like(r))).max() > 1e-3


def test_more_pairs_bring_the_implicit_reward_closer_to_the_tilt():
    rng = np.random.default_rng(1)
    p, r = _prompt(rng)
    corr = [np.mean([F.weighted_corr(F.tabular_dpo(p, r, 0.3, n, rng), r, p) for _ in range(5)])
            for n in (20, 200000)]
    assert corr[0] < 0.9 < 0.99 < corr[1], corr


def test_unseen_mass_is_one_minus_the_mass_of_the_pairs_completions():
    task = get_task("arith")
    model = TinyLM(preset_config("dpo", task="arith").pretrain.model_config(), seed=3)
    enum = exact.enumerate_task(model, task, prompts=task.prompts()[:2])
    rows = np.array([0, 5, 17, 1600, 1700])
    keys = F.pair_keys(enum.tokens[rows], enum.mask[rows], task.prompt_len)
    per, mean = F.unseen_mass(enum, enum.seq_logp, keys)
    want = 1.0 - exact.per_prompt(enum, np.isin(np.arange(enum.n), rows) * enum.probs)
    np.testing.assert_allclose(per, want, atol=1e-12)


def test_first_order_displacement_predicts_a_small_gradient_step():
    task = get_task("arith")
    mc = preset_config("dpo", task="arith").pretrain.model_config()
    policy, ref = TinyLM(mc, seed=4), TinyLM(mc, seed=5)
    enum = exact.enumerate_task(policy, task, prompts=task.prompts()[:1])
    w, l = np.array([10, 40, 300]), np.array([11, 41, 900])     # neighbours share a prefix; the last pair does not
    tw, mw, tl, ml = enum.tokens[w], enum.mask[w], enum.tokens[l], enum.mask[l]
    rw, rl = ref.logp_forward(tw, mw)[0], ref.logp_forward(tl, ml)[0]
    d = F.displacement(policy, tw, mw, rw, tl, ml, rl, beta=0.5)
    assert np.all(d["d_margin"] > 0)
    eta, theta = 1e-5, policy.flat.copy()
    for i in range(3):
        s = slice(i, i + 1)
        logp_w, _, cw = policy.logp_forward(tw[s], mw[s])
        logp_l, _, cl = policy.logp_forward(tl[s], ml[s])
        _, dw, dl, _ = preference_loss(logp_w, rw[s], mw[s], logp_l, rl[s], ml[s], beta=0.5)
        grad = policy.logp_backward(dw, cw) + policy.logp_backward(dl, cl)
        policy.set_flat(theta - eta * grad)
        change = (policy.logp_forward(tw[s], mw[s])[0].sum() - logp_w.sum()) / eta
        policy.set_flat(theta)
        assert abs(change - d["d_chosen"][i]) < 1e-3 * max(1.0, abs(d["d_chosen"][i])), (i, change, d["d_chosen"][i])


def test_sampled_pairs_without_a_finite_minimiser_do_not_break_the_solver():
    # completion 0 beats everything it meets and 3 loses to everything: the loss has no finite minimiser, Newton
    # follows theta off to infinity until the Hessian is too ill-conditioned and returns the last iterate
    p, r = np.full(4, 0.25), np.array([3.0, 1.0, 0.5, -3.0])
    W = np.zeros((4, 4))
    W[0, 1] = W[0, 2] = W[1, 2] = W[2, 1] = W[1, 3] = W[2, 3] = 1 / 6
    assert not F.has_finite_minimiser(W)
    W2 = W.copy()
    W2[3, 0] = 1 / 6                                                 # now every completion wins and loses
    assert F.has_finite_minimiser(W2)
    rng = np.random.default_rng(0)
    for seed in range(20):
        theta = F.tabular_dpo(p, r, 0.1, 6, np.random.default_rng(seed))
        assert np.all(np.isfinite(theta))
    theta = F.tabular_dpo(np.array([0.5, 0.5]), np.array([1.0, 0.0]), 0.1, 3, rng)
    assert np.all(np.isfinite(theta))
