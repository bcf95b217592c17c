"""Expected-update training (`toyrlhf run ALGO --update exact`): each step replaces the sampled policy-gradient
estimate by its exact expectation over rollouts, the infinite-batch limit, so learning curves carry no sampling noise.

For an on-policy step (one epoch, one minibatch: the ratio is 1 and no clipping is active) the sampled loss gradient
is  -(1/B) sum_i h(y_i) A_i grad log pi(y_i)  [+ beta d KL_loss]. Its expectation over the rollout (every prompt,
G completions each) is, exactly (``toyrlhf.exact.estimators``):

    E[d loss] = -E[g_pg](R) + beta * (1/n) sum_q sum_y pi(y|q) h(y) sum_t k'(logp_t, ref_t) grad logp_t   (kl = loss)

with R = r - beta sum_t k_t (kl = reward, detached; Ziegler et al. 2019) or R = r, E[g_pg] from
``exact.expected_pg_gradient`` (the registered advantage estimator, the preset's token aggregation h; Shao et al.
2024 eq. 3 for GRPO, Ahmadian et al. 2024 for RLOO, Liu et al. 2025 for Dr. GRPO) and k' the KL estimator's
derivative (Schulman 2020's k1/k2/k3) weighted per token by the same aggregation, as ``rl.losses.kl_loss``
weights it. The gradient is then clipped to max_grad_norm and Adam steps, as in ``Trainer.policy_update``.

Batch-scope advantages (reinforce's batch-mean baseline) are taken for a batch of every prompt once (B = n G), the
batch ``exact.expected_advantage`` defines. The logged metrics are exact expectations under the policy before the
update (reward, gold_reward, kl, entropy per token, response_length, accuracy).
"""
from __future__ import annotations

import time

import numpy as np

from .. import exact
from ..errors import UserError
from ..optim import clip_grad_norm
from ..runs import NumericalError
from . import advantages as adv_mod
from . import losses

__all__ = ["UPDATES", "check_config", "enumerated_rewards", "exact_loss_gradient", "exact_step"]

UPDATES = ("sample", "exact")
"""RLConfig.update: 'sample' (rollouts, the default) or 'exact' (the expected update, this module)."""


def check_config(cfg, task) -> None:
    """UserError (one line) unless `cfg` is an on-policy setting whose expected update is exact here: one epoch and
    one minibatch (mu = 1), token ratio, a sequence-level advantage, an aggregation with a per-sequence weight, no
    whitening / dynamic sampling / truncation mask / entropy bonus, and a task the exact engine can enumerate."""
    bad = []
    if cfg.epochs * cfg.minibatches != 1:
        bad.append(f"epochs x minibatches = {cfg.epochs * cfg.minibatches} (needs 1: on-policy, mu = 1)")
    if cfg.ratio != "token":
        bad.append(f"ratio={cfg.ratio}")
    est = adv_mod.ADVANTAGE_ESTIMATORS.lookup(cfg.advantage)
    if est.level != "sequence":
        bad.append(f"advantage={cfg.advantage} (token level: needs a critic or step rewards)")
    if losses.AGGREGATIONS.lookup(cfg.aggregation).sequence_scale is None:
        bad.append(f"aggregation={cfg.aggregation} (no per-sequence weight)")
    if cfg.kl == "reward" and cfg.beta > 0 and est.level == "sequence" and est.expected is None:
        bad.append(f"kl=reward with advantage={cfg.advantage} (no closed form for the shaped reward's many values)")
    for name in ("whiten", "dynamic_sampling", "mask_truncated"):
        if getattr(cfg, name):
            bad.append(f"{name}=true")
    if cfg.entropy_coef > 0:
        bad.append("entropy_coef > 0")
    if bad:
        raise UserError(f"--update exact needs an on-policy setting; not supported: {'; '.join(bad)}")
    exact.check_size(len(task.prompts()), task.n_out, task.max_new_tokens, what=f"task {task.name!r} (--update exact)")


def enumerated_rewards(trainer, enum) -> tuple[np.ndarray, np.ndarray]:
    """(proxy reward, gold reward) of every enumerated completion, scored once per run (the rewards are frozen)."""
    cache = trainer.__dict__.setdefault("_exact_update_cache", {})
    if cache.get("key") != id(trainer.reward_fn):
        prompts, comps = enum.split()
        cache.update(key=id(trainer.reward_fn), gold=trainer.task.gold_reward(prompts, comps),
                     proxy=np.asarray(trainer.reward_fn(enum.tokens, enum.mask, prompts, comps), np.float64))
    return cache["proxy"], cache["gold"]


def exact_loss_gradient(trainer, enum, ref, beta: float) -> np.ndarray:
    """E[d loss / d theta] of the trainer's on-policy step, exactly (module docstring): the advantage part from
    ``exact.expected_pg_gradient`` on R = r [- beta sum_t k_t], the KL-loss part summed per (window, token)."""
    cfg, policy, task = trainer.cfg, trainer.models.policy, trainer.task
    proxy, _ = enumerated_rewards(trainer, enum)
    R = proxy
    if cfg.kl == "reward" and beta > 0:
        pen = losses.kl_penalty_rewards(enum.logp, ref.logp, enum.mask, beta, cfg.kl_estimator)
        R = proxy + pen.sum(axis=1)
    try:
        g = exact.expected_pg_gradient(policy, enum, R, cfg.advantage, cfg.group_size, cfg.aggregation,
                                       max_tokens=task.max_new_tokens, std=cfg.std, eps=cfg.adv_eps)
    except ValueError as e:
        raise UserError(f"--update exact: {e}") from None
    grad = -g
    if cfg.kl == "loss" and beta > 0:
        h = exact.sequence_scale(enum, cfg.aggregation, task.max_new_tokens)
        _, dk = losses.KL_ESTIMATORS.lookup(cfg.kl_estimator).fn(enum.logp, ref.logp)
        w = enum.probs * h / enum.n_prompts
        grad = grad + beta * exact.grad_token_weights(policy, enum, np.where(enum.mask, w[:, None] * dk, 0.0))
    return grad


def _token_entropy(enum) -> float:
    """E[sum_t H(pi(.|s_t))] / E[|y|], prompt-averaged numerator and denominator (the sampled 'entropy' metric's
    limit: the mean next-token entropy over the completion tokens of a large batch)."""
    wl = enum.win_logp
    H = -(np.exp(wl) * wl).sum(axis=1)                                   # (U,) entropy after each window
    P = enum.prompt_len
    cm = enum.mask[:, P:]
    per_row = np.where(cm, H[np.where(cm, enum.tok_win, 0)], 0.0).sum(axis=1)
    return exact.expectation(enum, per_row)[1] / exact.expectation(enum, enum.lengths)[1]


def exact_step(trainer) -> dict:
    """One expected-update step of `trainer` (Trainer.step with update='exact'): exact gradient, clip, Adam; the
    KL controller and the reference reset as in ``Trainer.end_of_step`` (fed the exact KL); exact metrics."""
    t0 = time.perf_counter()
    cfg, m, task = trainer.cfg, trainer.models, trainer.task
    beta = trainer.kl_ctl.beta
    enum = exact.enumerate_task(m.policy, task, cfg.temperature)
    ref = exact.rescore(m.reference, enum, cfg.temperature)
    proxy, gold = enumerated_rewards(trainer, enum)
    kl = exact.kl_divergences(enum, ref)["reverse_mean"]
    out = {"reward": exact.expectation(enum, proxy)[1], "gold_reward": exact.expectation(enum, gold)[1], "kl": kl,
           "entropy": _token_entropy(enum), "response_length": exact.expectation(enum, enum.lengths)[1]}
    if task.verifiable:
        out["accuracy"] = exact.expectation(enum, task.is_correct(*enum.split()).astype(np.float64))[1]
    grad, gnorm = clip_grad_norm(exact_loss_gradient(trainer, enum, ref, beta), cfg.max_grad_norm)
    if not (np.all(np.isfinite(grad)) and np.isfinite(gnorm)):
        raise trainer_numerical_error(trainer, "gradient")
    trainer.opt.step(m.policy.flat, grad)
    if not np.all(np.isfinite(m.policy.flat)):
        raise trainer_numerical_error(trainer, "parameters")
    trainer.step_count += 1
    if cfg.kl != "none":
        trainer.kl_ctl.update(kl, cfg.prompts_per_step * cfg.group_size)
    if cfg.ref_reset_every and trainer.step_count % cfg.ref_reset_every == 0:
        m.reference.set_flat(m.policy.flat)
    out = {"step": trainer.step_count, **out, "grad_norm": gnorm, "beta": float(beta)}
    if trainer.exact_fn is not None and cfg.exact_every and trainer.step_count % cfg.exact_every == 0:
        out.update(trainer.exact_fn(trainer))
    out["time_s"] = time.perf_counter() - t0
    return out


def trainer_numerical_error(trainer, what: str) -> NumericalError:
    """The NumericalError the trainer raises for a non-finite quantity (rl/run.py adds the checkpoint advice)."""
    return NumericalError(f"non-finite {what} at step {trainer.step_count + 1}")
