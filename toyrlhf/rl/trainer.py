"""One loop for every algorithm (Spinning Up style: key equations live in losses.py / advantages.py).

Pseudocode of a step (each line is one method of ``Trainer``):
    1. collect:        q ~ P(Q), {o_i}_{i=1..G} ~ pi_old(.|q); log pi_old, log pi_ref per token; reward r_i; gold
                       r*_i (dynamic sampling: drop groups whose rewards are all equal, sample more; DAPO)
    2. advantages:     the registered estimator ``advantage`` (``advantages.ADVANTAGE_ESTIMATORS``) on the reward,
                       minus beta * k per token when kl == 'reward'; times the rollout correction c_t when the
                       sampler's mu differs from pi (sampler_temperature; losses.rollout_correction_weights);
                       GAE reads the value model's V(s_t), or the exact V^pi with critic=exact (rl/exact_critic.py)
    3. policy_update:  for epoch in 1..E, for each minibatch of prompt groups:
                           L = surrogate(ratio, A) [+ beta * KL_loss] [- c_H * entropy] -> dL/dlogp -> backward -> Adam
    4. critic_update:  the same minibatches: L_V = value_loss(V, V_old, returns) -> backward -> Adam (a learned critic)
    5. end_of_step:    adaptive beta (Ziegler et al. 2019), reference reset every N steps (DeepSeek-R1)
    6. metrics:        read off the raw rollout and the updates' statistics; the caller logs and checkpoints
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import stages
from ..config import RLConfig, parse_weights
from ..errors import UserError
from ..model import TinyLM
from ..optim import Adam, clip_grad_norm
from ..reward_model import cached_reward_model
from ..runs import Interrupted, NumericalError, save_npz
from ..tasks import get_task
from . import advantages as adv_mod
from . import exact_critic, exact_update, losses, surrogates, token_masks, trainer_state
from .advantages_baselines import multi_reward_advantages
from .rollout import RewardFn, Rollout, greedy_rewards, rollout


@dataclass
class Models:
    policy: TinyLM
    reference: TinyLM
    critic: TinyLM | None
    reward_model: object | None   # reward_model.RewardModel


def build_models(cfg: RLConfig, progress: Callable | None = None) -> Models:
    """Policy and reference from the cached SFT model; reward model and critic as the algorithm needs them."""
    pipe = stages.Pipeline(pretrain=cfg.pretrain, sft=cfg.sft)
    task = get_task(cfg.task)
    source = resolve_reward_source(cfg, task)
    sft_model, _ = stages.cached_sft(pipe, progress)
    rm = None
    if source == "rm":
        rm, _ = cached_reward_model(pipe, cfg.rm, progress)
    critic = None
    if cfg.uses_critic:
        critic = init_critic(sft_model, rm)
    return Models(policy=sft_model.copy(), reference=sft_model.copy(), critic=critic, reward_model=rm)


def resolve_reward_source(cfg: RLConfig, task) -> str:
    if cfg.reward == "auto":
        return "gold" if task.verifiable else "rm"
    return cfg.reward


def init_critic(sft_model: TinyLM, rm) -> TinyLM:
    """The value model starts from the reward model (InstructGPT §3.5; Huang et al. 2024): its trunk, and a value
    head equal to the RM's normalised reward head, so V(s) starts as the RM's reading of the text so far (with the
    default sequence RM, literally: its prefix window holds the prompt and the completion up to s).
    Without a learned RM (rule rewards) it starts from the SFT trunk with a zero value head."""
    if rm is None:
        critic = sft_model.copy()
        critic.params["wv"][:] = 0.0
        critic.params["bv"][:] = 0.0
        return critic
    critic = rm.model.copy()
    critic.params["wv"][:] = critic.params["wr"] / rm.std
    critic.params["bv"][:] = (critic.params["br"] - rm.mean) / rm.std
    return critic


@dataclass
class Targets:
    """What the updates fit: token advantages, the critic's targets and old values, the loss mask (B, L)."""

    adv: np.ndarray
    returns: np.ndarray | None
    old_values: np.ndarray | None
    loss_mask: np.ndarray
    mismatch: dict | None = None   # rollout-training mismatch statistics (sampler_temperature / rollout_correction)
    inputs: adv_mod.AdvantageInputs | None = None   # what the estimator read (the critic's error is measured on it)


class Trainer:
    """Holds the models, optimizers, KL controller and RNG of one run; `step()` does one RL step."""

    should_stop: Callable[[], bool] | None = None
    """Set by the caller (rl/run.py): true once a stop signal arrived; checked between dynamic-sampling rollouts."""

    def __init__(self, cfg: RLConfig, models: Models):
        self.cfg = cfg
        self.task = get_task(cfg.task)
        self.models = models
        source = resolve_reward_source(cfg, self.task)
        self.reward_fn = RewardFn(self.task, source, models.reward_model, parse_weights(cfg.reward_weights),
                                  cfg.overlong_cache if cfg.overlong_penalty else None)
        self.opt = Adam(models.policy.flat.size, lr=cfg.lr)
        self.critic_opt = Adam(models.critic.flat.size, lr=cfg.critic_lr) if models.critic is not None else None
        self.kl_ctl = (losses.AdaptiveKLController(cfg.beta, cfg.kl_target, cfg.kl_horizon)
                       if cfg.kl_target is not None else losses.FixedKLController(cfg.beta))
        self.rng = np.random.default_rng([cfg.seed, 4])
        self.entropy_coef = cfg.entropy_coef       # adapted toward entropy_target when set (end_of_step)
        self.step_count = 0
        self.exact_fn: Callable | None = None     # set by `toyrlhf run --exact` (toyrlhf.exact)
        if cfg.update == "exact":                   # `--set update=exact`: expected updates (rl/exact_update.py)
            exact_update.check_config(cfg, self.task)
        self.exact_critic = None                  # `--set critic=exact`: GAE reads V^pi (rl/exact_critic.py)
        if cfg.critic == "exact":
            exact_critic.check_config(self.task)
            self.exact_critic = exact_critic.ExactCritic()
        self._value_oracle = None                 # with --exact and a learned critic: the exact V it is compared to

    # ------------------------------------------------------------------ rollout
    def collect(self) -> tuple[Rollout, Rollout]:
        """(training batch, first raw rollout). With dynamic sampling, zero-variance groups are replaced in the
        training batch; metrics are read off the raw rollout, because the kept groups are a biased selection
        (e.g. their mean k1 can even be negative)."""
        cfg = self.cfg
        m = self.models
        ro = rollout(m.policy, m.reference, self.task, self.reward_fn, cfg.prompts_per_step, cfg.group_size,
                     self.rng, cfg.temperature, self.sampler_temperature)
        if not cfg.dynamic_sampling:
            return ro, ro
        kept = [ro.select_groups(np.flatnonzero(~adv_mod.zero_std_groups(ro.reward, cfg.group_size)))]
        have = kept[0].n_groups
        for _ in range(cfg.max_resample):     # at most config.MAX_RESAMPLE
            if have >= cfg.prompts_per_step:
                break
            if self.should_stop is not None and self.should_stop():   # a signal: do not defer it to the step's end
                raise Interrupted(f"stopped during step {self.step_count + 1} (dynamic sampling)")
            more = rollout(m.policy, m.reference, self.task, self.reward_fn, cfg.prompts_per_step,
                           cfg.group_size, self.rng, cfg.temperature, self.sampler_temperature)
            part = more.select_groups(np.flatnonzero(~adv_mod.zero_std_groups(more.reward, cfg.group_size)))
            kept.append(part)
            have += part.n_groups
        if have == 0:  # every group had equal rewards: nothing to learn from; keep the batch (zero gradient)
            return ro, ro
        merged = Rollout.concat([k for k in kept if k.n_groups])
        return merged.select_groups(np.arange(min(have, cfg.prompts_per_step))), ro

    # ------------------------------------------------------------------ advantages
    def advantages(self, ro: Rollout, beta: float) -> "Targets":
        """Token advantages of the registered estimator, the critic's targets, and the loss mask."""
        cfg = self.cfg
        est = adv_mod.ADVANTAGE_ESTIMATORS.lookup(cfg.advantage)
        penalty = np.zeros_like(ro.old_logp)
        if cfg.kl == "reward" and beta > 0:                               # r_t = -beta * k(.) per token
            penalty = losses.kl_penalty_rewards(ro.old_logp, ro.ref_logp, ro.mask, beta, cfg.kl_estimator)
        x = adv_mod.AdvantageInputs(ro.reward, penalty, ro.mask, ro.group_size)
        if est.needs_critic:
            x.values = self.critic_values(ro, beta)
        if est.needs_step_rewards:
            x.step_rewards, x.step_end = self._step_rewards(ro)
        if "lengths" in est.inputs:
            x.lengths = ro.lengths.astype(np.float64)
        if "greedy_reward" in est.inputs:                                 # ReMax: pi_old's greedy completion
            x.greedy_reward = greedy_rewards(self.models.policy, self.task, self.reward_fn, ro.tokens, ro.group_size)
        adv, returns = adv_mod.compute_advantages(cfg.advantage, x, cfg.advantage_settings)
        if cfg.reward_norm == "gdpo":           # normalise each rule-reward component, then sum (GDPO)
            comps = self.task.reward_components(*_split(ro, self.task))
            seq = multi_reward_advantages(comps, self.reward_fn.weights, ro.group_size, mode="gdpo",
                                          eps=cfg.adv_eps, std=cfg.std)
            adv = adv_mod.broadcast_to_tokens(seq, ro.mask)
        if cfg.whiten:
            adv = adv_mod.batch_normalize(adv, ro.mask)
        loss_mask = ro.mask & ~ro.truncated[:, None] if cfg.mask_truncated else ro.mask
        mismatch = None
        if ro.sampler_logp is not None:
            adv, mismatch = self.rollout_correction(ro, adv, loss_mask)
        return Targets(adv, returns, x.values, loss_mask, mismatch, x)

    def critic_values(self, ro: Rollout, beta: float) -> np.ndarray:
        """V(s_t) (B, L) for GAE: the value model's, or with critic=exact the exact V^pi of the policy that sampled
        `ro`, for this step's beta (rl/exact_critic.py)."""
        if self.exact_critic is not None:
            return self.exact_critic.values(self, ro, beta)
        return self.models.critic.value_forward(ro.tokens, ro.mask)[0]

    def critic_error(self, ro: Rollout, tg: "Targets", beta: float) -> dict:
        """With --exact and a learned critic, on the steps the exact metrics are due: its GAE advantages against the
        exact critic's (adv_err_rms, adv_corr, value_err_rms, adv_exact_rms; rl/exact_critic.py), measured before
        the update moves the policy that sampled `ro`. Otherwise {}."""
        if self.models.critic is None or tg.inputs is None or not self._exact_due(self.step_count + 1):
            return {}
        if self._value_oracle is None:
            self._value_oracle = exact_critic.ExactCritic()
        return exact_critic.critic_error(self, ro, tg.inputs, beta, self._value_oracle)

    def _exact_due(self, step: int) -> bool:
        return self.exact_fn is not None and bool(self.cfg.exact_every) and step % self.cfg.exact_every == 0

    @property
    def sampler_temperature(self) -> float | None:
        """The sampler's temperature when its log-probs are needed (a mismatch or a correction), else None."""
        cfg = self.cfg
        if cfg.sampler_temperature is not None:
            return cfg.sampler_temperature
        return cfg.temperature if cfg.rollout_correction != "none" else None

    def rollout_correction(self, ro: Rollout, adv: np.ndarray, loss_mask: np.ndarray) -> tuple[np.ndarray, dict]:
        """Token advantages times the correction's weight c_t (``losses.rollout_correction_weights`` on
        w_t = pi_old(y_t) / mu(y_t), the trainer's over the sampler's probability), and the statistics logged:
        the mean weight and the fraction of tokens it zeroes over the loss tokens, and the sampled
        sum_t log(mu / pi_old), a k1 estimate of KL(mu || pi_old) per sequence."""
        cfg = self.cfg
        log_w = np.where(ro.mask, ro.old_logp - ro.sampler_logp, 0.0)
        c = losses.rollout_correction_weights(cfg.rollout_correction, log_w, ro.mask, C=cfg.rollout_is_cap,
                                              lo=cfg.rollout_mask_low, hi=cfg.rollout_mask_high)
        stats = {"rollout_is_weight": _mean(c[loss_mask]), "rollout_masked_fraction": _mean(c[loss_mask] == 0),
                 "rollout_kl": float(-log_w.sum(axis=1).mean())}
        if cfg.rollout_correction != "none":
            adv = adv * c
        return adv, stats

    def _step_rewards(self, ro: Rollout) -> tuple[np.ndarray, np.ndarray]:
        """The task's process rewards on the rollout's (B, L) grid (step ends inside the completion only)."""
        steps = self.task.step_rewards(*_split(ro, self.task))
        if steps is None:
            raise UserError(f"task {self.task.name!r} gives no step rewards; advantage={self.cfg.advantage} needs them")
        step_r, step_end = steps
        P = self.task.prompt_len
        full_r, full_end = np.zeros_like(ro.old_logp), np.zeros(ro.mask.shape, bool)
        full_r[:, P:], full_end[:, P:] = step_r, step_end & ro.mask[:, P:]
        return full_r, full_end

    # ------------------------------------------------------------------ updates
    def minibatches(self, ro: Rollout) -> list[np.ndarray]:
        """Rows of each minibatch, epoch after epoch: a fresh permutation of the prompt groups per epoch, cut into
        runs of whole groups of np.array_split's sizes (the first n % k minibatches one group larger), as slices."""
        G, n, k = ro.group_size, ro.n_groups, self.cfg.minibatches
        cuts = [G * (i * (n // k) + min(i, n % k)) for i in range(k + 1)]
        out = []
        for _ in range(self.cfg.epochs):
            rows = (self.rng.permutation(n)[:, None] * G + np.arange(G)).ravel()     # the permuted groups' rows
            out += [rows[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
        return out

    def policy_update(self, ro: Rollout, tg: "Targets", schedule: list[np.ndarray], beta: float) -> dict:
        """Minimise surrogate [+ beta * KL] [- c_H * entropy] on each minibatch with Adam; per-minibatch stats."""
        cfg, policy = self.cfg, self.models.policy
        stats = {"clip_fraction": [], "approx_kl": [], "grad_norm": [], "loss": [], "masked_token_fraction": []}
        keep_ent = (token_masks.entropy_top_mask(ro.entropy, tg.loss_mask, cfg.entropy_top_frac)
                    if cfg.token_mask == "entropy_top" else None)
        first = True
        for rows in schedule:
            if not _take(tg.loss_mask, rows).any():
                continue
            # pi_theta == pi_old before the first update of a rollout: use the same numbers so the ratio is
            # exactly 1 (not 1 up to the round-off of a differently shaped matrix product).
            loss, grad, st = self.minibatch_gradient(ro, tg, rows, beta, old_is_current=first, keep_ent=keep_ent)
            first = False
            grad, gnorm = clip_grad_norm(grad, cfg.max_grad_norm)
            _check_finite(self.step_count + 1, loss=loss, gradient=gnorm)
            if not self.opt.step(policy.flat, grad):     # Adam reads the parameters' finiteness in its own pass
                _check_finite(self.step_count + 1, parameters=policy.flat)
            for k, v in (("loss", loss), ("grad_norm", gnorm), ("clip_fraction", st["clip_fraction"]),
                         ("approx_kl", st["approx_kl"])):
                stats[k].append(v)
            stats["masked_token_fraction"].extend(st["masked_token_fraction"])
        return stats

    def minibatch_gradient(self, ro: Rollout, tg: "Targets", rows: np.ndarray, beta: float, *,
                           old_is_current: bool = False, keep_ent=None) -> tuple[float, np.ndarray, dict]:
        """The loss of one minibatch and its gradient in the policy's flat parameters, summed over
        ``micro_batches`` micro-batches of prompt groups (gradient accumulation). token_norm='global' gives every
        micro-batch the minibatch's token and sequence counts (TRL 'dapo': the same numbers as the unsplit
        minibatch); 'local' its own counts and weight 1/micro_batches (TRL 'bnpo')."""
        parts, counts, scale = self._micro_parts(ro, tg, rows)
        loss_total, grad_total = 0.0, None
        st_all = {"clip_fraction": [], "approx_kl": [], "masked_token_fraction": []}
        for part in parts:
            loss, g, st = self._micro_gradient(ro, tg, part, beta, old_is_current, keep_ent, counts)
            if scale != 1.0:
                loss, g = loss * scale, g * scale
            loss_total += loss
            grad_total = g if grad_total is None else grad_total + g
            for k in st_all:
                if k in st:
                    st_all[k].append(st[k])
        return loss_total, grad_total, {"clip_fraction": _mean(st_all["clip_fraction"]),
                                        "approx_kl": _mean(st_all["approx_kl"]),
                                        "masked_token_fraction": st_all["masked_token_fraction"]}

    def minibatch_dlogp(self, ro: Rollout, tg: "Targets", rows: np.ndarray, beta: float, *,
                        old_is_current: bool = False, keep_ent=None) -> tuple[float, np.ndarray]:
        """``minibatch_gradient``'s loss and its derivative in the rows' token log-probs, (len(rows), L), before the
        backward pass (the same micro-batches, counts and weights): the gradient is logp_backward of it when the
        entropy bonus is off. Lets `toyrlhf check` project many sampled batches without a backward pass each."""
        if self.entropy_coef > 0:
            raise ValueError("minibatch_dlogp: the entropy bonus has no log-prob derivative (entropy_coef > 0)")
        parts, counts, scale = self._micro_parts(ro, tg, rows)
        where = {r: i for i, r in enumerate(np.asarray(rows).tolist())}
        out = np.zeros((len(rows), ro.tokens.shape[1]))
        loss_total = 0.0
        for part in parts:
            loss, dlogp, _, _, _ = self._micro_loss(ro, tg, part, beta, old_is_current, keep_ent, counts)
            out[[where[r] for r in part.tolist()]] += scale * dlogp
            loss_total += scale * loss
        return loss_total, out

    def _micro_parts(self, ro: Rollout, tg: "Targets", rows: np.ndarray) -> tuple[list, dict, float]:
        """The micro-batches of a minibatch (whole prompt groups), the counts each is normalised by, its weight."""
        cfg = self.cfg
        G = ro.group_size
        parts = [rows]
        if cfg.micro_batches > 1:
            groups = np.split(rows, len(rows) // G)
            chunks = np.array_split(np.arange(len(groups)), min(cfg.micro_batches, len(groups)))
            parts = [np.concatenate([groups[i] for i in c]) for c in chunks if len(c)]
        counts, scale = {}, 1.0
        if len(parts) > 1 and cfg.token_norm == "global":
            lm = tg.loss_mask[rows]
            counts = dict(n_tokens=int(lm.sum()), n_seqs=int(lm.any(axis=1).sum()))
        elif len(parts) > 1:
            scale = 1.0 / len(parts)
        return parts, counts, scale

    def _micro_gradient(self, ro, tg, rows, beta, old_is_current, keep_ent, counts):
        loss, dlogp, dent, cache, st = self._micro_loss(ro, tg, rows, beta, old_is_current, keep_ent, counts)
        return loss, self.models.policy.logp_backward(dlogp, cache, dent), st

    def _micro_loss(self, ro, tg, rows, beta, old_is_current, keep_ent, counts):
        cfg, policy = self.cfg, self.models.policy
        agg = dict(aggregation=cfg.aggregation, max_tokens=self.task.max_new_tokens, **counts)
        tok, lmask = _take(ro.tokens, rows), _take(tg.loss_mask, rows)
        logp, ent, cache = policy.logp_forward(tok, _take(ro.mask, rows), cfg.temperature)
        old = logp.copy() if old_is_current else _take(ro.old_logp, rows)
        adv, kl_cov_sel, extra = _take(tg.adv, rows), None, {}
        if cfg.token_mask != "none":       # entropy_top / clip_cov / kl_cov (rl/token_masks.py)
            adv, kl_cov_sel, frac = token_masks.apply_token_mask(
                cfg.token_mask, logp=logp, old_logp=old, adv=adv, mask=lmask,
                keep_entropy=None if keep_ent is None else _take(keep_ent, rows), rng=self.rng, eps_low=cfg.eps_low,
                eps_high=cfg.eps_high, cov_ratio=cfg.cov_ratio, clip_cov_lb=cfg.clip_cov_lb,
                clip_cov_ub=cfg.clip_cov_ub)
            extra["masked_token_fraction"] = frac
        loss, dlogp, st = surrogates.policy_loss(logp, old, adv, lmask, eps_low=cfg.eps_low,
                                                 eps_high=cfg.eps_high, ratio=cfg.ratio, **agg,
                                                 hp=cfg.surrogate_settings)
        if kl_cov_sel is not None:
            kv, dk = token_masks.kl_cov_penalty(logp, old, kl_cov_sel, lmask, coef=cfg.kl_cov_coef, **agg)
            loss += kv
            dlogp = dlogp + dk
        if cfg.kl == "loss" and beta > 0:
            kl_val, dkl = losses.kl_loss(logp, _take(ro.ref_logp, rows), lmask, estimator=cfg.kl_estimator, **agg,
                                         old_logp=old if cfg.kl_ratio_correction else None)
            loss += beta * kl_val
            dlogp = dlogp + beta * dkl
        dent = None
        if self.entropy_coef > 0:
            ent_val, w = losses.aggregate(ent, lmask, cfg.aggregation, max_tokens=self.task.max_new_tokens, **counts)
            loss -= self.entropy_coef * ent_val
            dent = -self.entropy_coef * w
        return loss, dlogp, dent, cache, {**st, **extra}

    def critic_update(self, ro: Rollout, tg: "Targets", schedule: list[np.ndarray]) -> dict:
        """The clipped value loss on the policy's minibatches, with the critic's own Adam."""
        cfg, critic = self.cfg, self.models.critic
        stats = {"value_loss": [], "value_clip_fraction": []}
        for rows in schedule:
            tok, lmask = _take(ro.tokens, rows), _take(tg.loss_mask, rows)
            if not lmask.any():
                continue
            values, vcache = critic.value_forward(tok, _take(ro.mask, rows))
            vloss, dv, vst = losses.value_loss(values, _take(tg.old_values, rows), _take(tg.returns, rows), lmask,
                                               clip=cfg.value_clip)
            vgrad, vnorm = clip_grad_norm(critic.value_backward(dv, vcache), cfg.max_grad_norm)
            # a finite norm means finite entries; an infinite one may be finite entries whose squares overflow
            _check_finite(self.step_count + 1, value_loss=vloss,
                          value_gradient=vnorm if math.isfinite(vnorm) else vgrad)
            if not self.critic_opt.step(critic.flat, vgrad):
                _check_finite(self.step_count + 1, value_model_parameters=critic.flat)
            stats["value_loss"].append(vloss)
            stats["value_clip_fraction"].append(vst.get("value_clip_fraction", 0.0))
        return stats

    def end_of_step(self, ro: Rollout, raw: Rollout) -> float:
        """Count the step, steer beta toward the KL target, reset the reference if due; returns the KL sample."""
        cfg = self.cfg
        self.step_count += 1
        kl_mean = float(((raw.old_logp - raw.ref_logp) * raw.mask).sum(axis=1).mean())   # sum_t k1 per sequence
        if cfg.kl != "none":
            self.kl_ctl.update(kl_mean, ro.tokens.shape[0])
        if cfg.entropy_target is not None:                                # adaptive entropy coefficient
            self.entropy_coef = token_masks.adaptive_entropy_coef(
                self.entropy_coef, float(raw.entropy[raw.mask].mean()), cfg.entropy_target, cfg.entropy_coef_step,
                cfg.entropy_coef_max)
        if cfg.ref_reset_every and self.step_count % cfg.ref_reset_every == 0:
            self.models.reference.set_flat(self.models.policy.flat)       # DeepSeek-R1 / iterative GRPO
        return kl_mean

    # ------------------------------------------------------------------ one step
    def step(self) -> dict:
        """One RL step: the module docstring's pseudocode, line by line."""
        if self.cfg.update == "exact":
            return exact_update.exact_step(self)
        t0 = time.perf_counter()
        beta = self.kl_ctl.beta                                           # this step's beta, before the controller
        ro, raw = self.collect()
        tg = self.advantages(ro, beta)
        critic_error = self.critic_error(ro, tg, beta)
        schedule = self.minibatches(ro)
        pstats = self.policy_update(ro, tg, schedule, beta)
        vstats = self.critic_update(ro, tg, schedule) if self.models.critic is not None else None
        kl_mean = self.end_of_step(ro, raw)
        metrics = self.metrics(raw, ro, tg, pstats, vstats, kl_mean, beta)
        metrics.update(critic_error)
        metrics["time_s"] = time.perf_counter() - t0
        return metrics

    def metrics(self, raw: Rollout, ro: Rollout, tg: "Targets", pstats: dict, vstats: dict | None,
                kl_mean: float, beta: float) -> dict:
        """The step's metrics.jsonl record (without time_s), read off the raw rollout: with dynamic sampling the
        kept groups are a biased selection."""
        cfg = self.cfg
        self.last_rollout = raw      # rl/run.py logs a few of its completions (log_completions_every)
        n_zero = int(adv_mod.zero_std_groups(raw.reward, cfg.group_size).sum())
        out = {
            "step": self.step_count,
            "reward": float(raw.reward.mean()),
            "gold_reward": float(raw.gold_reward.mean()),
            "kl": kl_mean,
            "entropy": float(raw.entropy[raw.mask].mean()),
            "response_length": float(raw.lengths.mean()),
            "truncated_fraction": float(raw.truncated.mean()),
            **{k: _mean(pstats[k]) for k in ("clip_fraction", "approx_kl", "grad_norm", "loss")},
            "beta": float(beta),
            "frac_zero_std_groups": n_zero / cfg.prompts_per_step,
        }
        if cfg.token_mask != "none":
            out["masked_token_fraction"] = _mean(pstats["masked_token_fraction"])
        if tg.mismatch is not None:
            out.update(tg.mismatch)
        if cfg.entropy_target is not None:
            out["entropy_coef"] = self.entropy_coef
        if raw.correct is not None:
            out["accuracy"] = float(raw.correct.mean())
            out["response_length_correct"] = _mean(raw.lengths[raw.correct])
            out["response_length_incorrect"] = _mean(raw.lengths[~raw.correct])
        if vstats is not None:
            out["value_loss"] = _mean(vstats["value_loss"])
            out["explained_variance"] = float(losses.explained_variance(tg.old_values, tg.returns, ro.mask))
        if self._exact_due(self.step_count):
            out.update(self.exact_fn(self))
        return out

    # ------------------------------------------------------------------ checkpoints (rl/trainer_state.py)
    def state_arrays(self) -> dict:
        return trainer_state.state_arrays(self)

    def save(self, path) -> None:
        save_npz(path, self.state_arrays())

    def load_state(self, path) -> None:
        """Restore everything `state_arrays` saved, each member checked first (trainer_state.load_state)."""
        trainer_state.load_state(self, path)


def _take(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """a[rows] for the integer rows of a minibatch, by ndarray.take: the same copy at a quarter of fancy indexing's
    cost on a (128, 12) array (1.2 against 4.8 us, measured), which the updates pay about ten times a minibatch."""
    return a.take(rows, axis=0)


def _split(ro: Rollout, task):
    return ro.tokens[:, :task.prompt_len], ro.tokens[:, task.prompt_len:]


def _mean(xs) -> float | None:
    """The mean of a list (or 1-D array) of numbers, None if empty. One number is its own mean (x / 1 = x): returned
    without NumPy's per-call cost, since the policy update asks for each minibatch's one-part means."""
    if len(xs) == 1:
        return float(xs[0])
    xs = np.asarray(xs, dtype=np.float64)
    return float(xs.mean()) if xs.size else None


def _check_finite(step: int, **quantities) -> None:
    """Raise NumericalError naming the first non-finite quantity (a float or an array) of this step."""
    for name, value in quantities.items():
        finite = math.isfinite(value) if isinstance(value, float) else np.all(np.isfinite(value))
        if not finite:
            raise NumericalError(f"non-finite {name.replace('_', ' ')} at step {step}")
