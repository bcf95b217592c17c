"""Expected-update training (toyrlhf/rl/exact_update.py, `--set update=exact`): one exact step is Adam on the exact
expected gradient computed independently; the mean of many sampled-update gradients at a fixed policy agrees with the
exact one (|z| <= 4 on stated projections); unsupported settings are one-line errors."""
from __future__ import annotations

import numpy as np
import pytest

from toyrlhf import exact
from toyrlhf.config import preset_config
from toyrlhf.errors import UserError
from toyrlhf.optim import Adam
from toyrlhf.rl import exact_update
from toyrlhf.rl.trainer import Trainer, build_models
from toyrlhf.tasks import get_task

Z = 4.0


def small(algo, **kw):
    cfg = preset_config(algo, task="arith", **{"prompts_per_step": 16, "group_size": 4, **kw})
    cfg.pretrain.steps, cfg.pretrain.corpus_size, cfg.sft.steps = 60, 2000, 40
    return cfg


def test_one_exact_step_is_adam_on_the_exact_expected_gradient(module_cache_dir):
    """RLOO with k1 in the reward and a token sum (h = 1): E[g] = grad (E[r] - beta KL(pi||ref)) exactly
    (Ahmadian et al. 2024), computed here from exact.grad_expectation / grad_reverse_kl, then a fresh Adam."""
    cfg = small("rloo", update="exact", max_grad_norm=0.0, beta=0.1)
    tr = Trainer(cfg, build_models(cfg))
    pol = tr.models.policy
    theta0 = pol.flat.copy()
    e = exact.enumerate_task(pol, tr.task)
    ref = exact.rescore(tr.models.reference, e)
    prompts, comps = e.split()
    r = np.asarray(tr.reward_fn(e.tokens, e.mask, prompts, comps), np.float64)
    want = -(exact.grad_expectation(pol, e, r) - cfg.beta * exact.grad_reverse_kl(pol, e, ref))
    adam = Adam(theta0.size, lr=cfg.lr)
    theta = theta0.copy()
    adam.step(theta, want)
    m = tr.step()
    assert np.max(np.abs(pol.flat - theta)) < 1e-12
    assert abs(m["grad_norm"] - np.linalg.norm(want)) < 1e-9 * np.linalg.norm(want)
    assert abs(m["reward"] - exact.expectation(e, r)[1]) < 1e-12
    assert m["kl"] == pytest.approx(0.0, abs=1e-12) and m["step"] == 1
    m2 = tr.step()
    assert m2["kl"] > 0 and np.isfinite(m2["entropy"])


@pytest.mark.parametrize("algo", ["grpo", "dr_grpo"])
def test_mean_of_sampled_gradients_agrees_with_the_exact_update(module_cache_dir, algo):
    """At a fixed policy (the SFT model with a nonzero reference gap), 300 sampled-update gradients (the trainer's
    own code path, captured before Adam) average to the exact one: |z| <= 4 on the exact direction and on two random
    unit directions."""
    kw = dict(max_grad_norm=0.0)
    cfg_s, cfg_e = small(algo, **kw), small(algo, update="exact", **kw)
    models = build_models(cfg_s)
    rng = np.random.default_rng(0)
    models.policy.set_flat(models.policy.flat + 0.05 * rng.normal(size=models.policy.flat.size))
    tr_e = Trainer(cfg_e, models)
    e = exact.enumerate_task(models.policy, tr_e.task)
    ref = exact.rescore(models.reference, e)
    g_exact = exact_update.exact_loss_gradient(tr_e, e, ref, cfg_e.beta)
    tr_s = Trainer(cfg_s, models)
    grads = []
    tr_s.opt.step = lambda flat, grad: grads.append(grad.copy())       # capture, do not move the policy
    for _ in range(300):
        tr_s.step()
    G = np.array(grads)
    dirs = [g_exact / np.linalg.norm(g_exact)] + [d / np.linalg.norm(d) for d in rng.normal(size=(2, G.shape[1]))]
    for d in dirs:
        proj = G @ d
        z = (proj.mean() - g_exact @ d) / (proj.std(ddof=1) / np.sqrt(len(proj)))
        assert abs(z) <= Z, (algo, z)
    cos = float(G.mean(0) @ g_exact / np.linalg.norm(G.mean(0)) / np.linalg.norm(g_exact))
    assert cos > 0.5


def test_unsupported_settings_are_one_line_errors(module_cache_dir):
    task = get_task("arith")
    with pytest.raises(UserError, match="epochs x minibatches"):
        exact_update.check_config(small("ppo", update="exact"), task)
    with pytest.raises(UserError, match="whiten"):
        exact_update.check_config(small("grpo", update="exact", whiten=True), task)
    with pytest.raises(UserError, match="kl=reward with advantage=group"):
        exact_update.check_config(small("grpo", update="exact", kl="reward"), task)
    with pytest.raises(ValueError, match="update must be"):
        small("grpo", update="exactly")
