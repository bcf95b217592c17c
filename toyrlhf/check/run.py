"""`run_check`: exact values and gradients against Monte-Carlo estimates built from the project's own estimator code.

The report has four parts, one function each: the KL section (values and gradients of k1/k2/k3 as losses and in
the reward), the policy-gradient section (REINFORCE, RLOO, Dr. GRPO, GRPO against grad E[r]), the preference
section (the Bradley-Terry labels against the exact Bayes ceiling) and the run's info.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import preferences as prefs
from .. import stages
from .. import tokens as tk
from ..threads import single_threaded_blas
from ..errors import UserError
from ..exact import (Enumeration, check_size, enumerate_task, expectation, expected_kl_loss_gradient,
                     expected_kl_reward_gradient, expected_kl_value, expected_pg_gradient, grad_expectation,
                     grad_forward_kl, grad_reverse_kl, kl_divergences, rescore)
from ..model import TinyLM
from ..rl import advantages as adv_mod
from ..rl import losses
from ..rl.rollout import greedy_decode
from ..rl.surrogates import policy_loss
from ..tasks import Task, get_task
from .draws import Draws, TokenPairs, mean_se
from .presets import preset_section, preset_steps
from .rows import Z_MAX, CheckReport, CheckRow, cos_text, cosine, gradient_verdict, unit, value_verdict

__all__ = ["run_check", "check_steps", "pg_estimators"]

KL_VARIANTS = [  # (label, estimator, level, kind)
    ("k1 as loss", "k1", "token", "loss"),
    ("k2 as loss, per token", "k2", "token", "loss"),
    ("k2 as loss, per sequence", "k2", "sequence", "loss"),
    ("k3 as loss, per token (GRPO)", "k3", "token", "loss"),
    ("k3 as loss, per sequence", "k3", "sequence", "loss"),
    ("k1 in reward (REINFORCE)", "k1", "sequence", "reward"),
]
KL_VARIANTS_MORE = [  # only with all_algos (`toyrlhf check --all-algos`)
    ("k3+ as loss, per token (verl)", "k3+", "token", "loss"),
    ("k3*rho as loss, per token (V3.2)", "k3", "token", "loss-is"),
]
"""verl's straight-through k3+ (value of k3, gradient of k2) and the importance-ratio-corrected k3 of DeepSeek-V3.2
(TRL ``use_bias_correction_kl``; on-policy the ratio is 1 but carries its gradient)."""
KL_NAMES = {"rev": "KL(pi||ref)", "fwd": "KL(ref||pi)"}


def kl_variants(all_algos: bool = False) -> list:
    return KL_VARIANTS + (KL_VARIANTS_MORE if all_algos else [])


def pg_estimators(all_algos: bool = False) -> list:
    """The sequence-level advantage estimators of the registry, each with the aggregation its paper pairs it with:
    one policy-gradient row each (a newly registered estimator gets its row without other edits). Entries with
    ``in_default_check=False`` (the library variants of rl/advantages_baselines.py) only with `all_algos`."""
    return [e for e in adv_mod.ADVANTAGE_ESTIMATORS.values() if e.level == "sequence" and e.aggregation
            and (all_algos or e.in_default_check)]


def check_steps(all_algos: bool = False) -> int:
    """Progress ticks of run_check: KL section 4 + one per KL variant, policy gradients 2 + one per estimator,
    preferences 1; with all_algos the preset section's (``presets.preset_steps``)."""
    return (4 + len(kl_variants(all_algos)) + 2 + len(pg_estimators(all_algos)) + 1
            + (preset_steps() if all_algos else 0))


class _Context:
    """What every section reads: the task, pi and pi_ref, pi's enumeration, the draws' generator, progress."""

    def __init__(self, task: Task, policy: TinyLM, reference: TinyLM, sft_path: Path, rng: np.random.Generator,
                 samples: int, progress: Callable | None):
        self.task, self.policy, self.reference, self.sft_path = task, policy, reference, sft_path
        self.rng, self.samples, self.progress, self.steps = rng, samples, progress, 0
        self.all_algos = False
        self.prompts = task.prompts()
        self.enum: Enumeration = enumerate_task(policy, task)

    def tick(self) -> None:
        self.steps += 1
        if self.progress:
            self.progress(self.steps, {})


@single_threaded_blas
def run_check(task: str = "arith", samples: int = 2000, seed: int = 0, *, group_size: int = 8, pg_prompts: int = 4,
              kl_batch: int = 16, ref_mix: float = 0.5, pipeline=None, progress: Callable | None = None,
              build_progress: Callable | None = None, all_algos: bool = False) -> CheckReport:
    """Exact values and gradients against Monte-Carlo estimates built from the project's own estimator code.

    pi = the task's SFT model (stage cache); pi_ref = the SFT weights moved `ref_mix` of the way back to the
    pretrained weights (so KL(pi||ref) is moderate and non-trivial); `pipeline` overrides the upstream stages'
    configs (default: the stages' defaults for the task and seed). `samples` draws per row group:
      * KL rows: a draw is `kl_batch` sequences from pi (``model.sample``) on uniform prompts; the per-token
        estimators are ``rl.losses.kl_k1/k2/k3`` summed over the completion (values), ``rl.losses.kl_loss``
        at token level (GRPO) or on the sequence log-probs (sequence level) as losses, and "k1 in reward" is
        ``rl.losses.kl_penalty_rewards`` summed into the sequence reward, through ``policy_loss``.
      * policy-gradient rows: a draw is `pg_prompts` prompts of different difficulty (evenly spaced in pi's
        exact accuracy) x G completions; rewards are the task's 0/1 correctness (verifiable tasks; the gold
        reward otherwise), advantages from ``rl.advantages`` and the preset's aggregation in ``rl.surrogates.policy_loss``
        (the batch counts passed as ``n_seqs``, so each draw is normalised as a training batch is).
    Per-draw gradients are reduced to their projections on the unit target gradients (``directional_logp``); the
    mean gradient over draws goes through ``model.logp_backward``. Log-probs and gradients of the sampled tokens
    are computed once per distinct (window, token) pair (``TokenPairs``): the same numbers, regrouped.
    `all_algos` adds the rows of every registered estimator (``in_default_check=False`` ones too) and of the KL
    variants of ``KL_VARIANTS_MORE``; the default rows and their numbers are the same either way.
    """
    t_start = time.perf_counter()
    ctx = _setup(task, samples, seed, ref_mix, pipeline, progress, build_progress)
    ctx.all_algos = bool(all_algos)
    kl_rows, kl_info = _kl_section(ctx, int(kl_batch))
    pg_rows, pg_info = _policy_gradient_section(ctx, int(group_size), int(pg_prompts))
    pref_rows, n_pairs = _preference_section(ctx)
    if ctx.all_algos:       # after the preference draws, so the default rows' numbers do not depend on all_algos
        reward_of = _reward_fn(ctx.task)
        pg_rows += preset_section(ctx, int(group_size), chosen_prompts(ctx, reward_of, int(pg_prompts))[1],
                                  reward_of)
    info = {
        "task": task, "seed": seed, "samples": samples, "sft": str(ctx.sft_path), "ref_mix": ref_mix,
        "pref_pairs": n_pairs, "n_completions": ctx.enum.n, "n_prompts": ctx.enum.n_prompts,
        **kl_info, **pg_info, "time_s": time.perf_counter() - t_start,
    }
    return CheckReport(kl_rows + pg_rows + pref_rows, info)


def _setup(task: str, samples: int, seed: int, ref_mix: float, pipeline, progress, build_progress) -> _Context:
    """Validate, build (or load) the SFT and pretrained models and pi_ref between them, enumerate pi."""
    if samples < 2:
        raise UserError(f"--samples must be at least 2, got {samples}")
    try:
        tsk = get_task(task)
    except ValueError as e:
        raise UserError(str(e)) from None
    check_size(len(tsk.prompts()), tsk.n_out, tsk.max_new_tokens, what=f"task {task!r}")
    pipe = pipeline or stages.Pipeline(pretrain=stages.PretrainConfig(task=task, seed=seed))
    if pipe.pretrain.task != task or pipe.pretrain.seed != seed:
        raise ValueError("pipeline.pretrain must have the check's task and seed")
    policy, sft_path = stages.cached_sft(pipe, build_progress)
    base, _ = stages.cached_pretrained(pipe.pretrain, build_progress)
    ref_model = policy.copy()
    ref_model.set_flat(policy.flat + ref_mix * (base.flat - policy.flat))
    return _Context(tsk, policy, ref_model, sft_path, np.random.default_rng([seed, 7, 7]), samples, progress)


# ------------------------------------------------------------------------------------------------------------------ KL
def _kl_section(ctx: _Context, B: int) -> tuple[list, dict]:
    """KL values (k1/k2/k3 summed over tokens) and the gradients of each KL_VARIANTS penalty, exact vs MC."""
    policy, enum = ctx.policy, ctx.enum
    ref = rescore(ctx.reference, enum)
    kls = kl_divergences(enum, ref)
    targets = {"rev": ("grad KL(pi||ref)", grad_reverse_kl(policy, enum, ref)),
               "fwd": ("grad KL(ref||pi)", grad_forward_kl(policy, enum, ref))}
    u = {key: unit(g) for key, (_, g) in targets.items()}
    expected = {label: (expected_kl_reward_gradient(policy, enum, ref, est) if kind == "reward"
                        else expected_kl_loss_gradient(policy, enum, ref, est, level,
                                                       ratio_corrected=kind == "loss-is"))
                for label, est, level, kind in kl_variants(ctx.all_algos)}
    ctx.tick()
    values, mc = _kl_monte_carlo(ctx, u, B)
    rows = []
    for k in ("k1", "k2", "k3"):
        row = CheckRow("KL value", f"KL {k} (sum over tokens)", "KL(pi||ref)", kls["reverse_mean"],
                       expected_kl_value(enum, ref, k)[1], *mean_se(values[k]))
        row.verdict = value_verdict(row)
        rows.append(row)
    rows += _kl_gradient_rows(expected, mc, targets, u)
    return rows, {"kl_reverse": kls["reverse_mean"], "kl_forward": kls["forward_mean"], "kl_batch": B}


def _kl_monte_carlo(ctx: _Context, u: dict, B: int) -> tuple[dict, dict]:
    """Per-draw KL values and, per KL_VARIANTS label, the draws' gradient projections on u and mean gradient."""
    samples, policy = ctx.samples, ctx.policy
    prompts = ctx.prompts[ctx.rng.integers(len(ctx.prompts), size=samples * B)]
    s = policy.sample(prompts, ctx.task.max_new_tokens, ctx.rng)
    pairs = TokenPairs(policy, s.tokens, s.mask)
    logp, ref_logp = pairs.logp(policy), pairs.logp(ctx.reference)
    draws = Draws(policy, pairs, {k: pairs.directional(policy, v) for k, v in u.items()}, samples)
    ctx.tick()
    values = {}
    for k in ("k1", "k2", "k3"):
        kv, _ = losses.KL_ESTIMATORS[k](logp, ref_logp)
        values[k] = np.where(s.mask, kv, 0.0).sum(axis=1).reshape(samples, B).mean(axis=1)
    seq, seq_ref = logp.sum(axis=1)[:, None], ref_logp.sum(axis=1)[:, None]
    ones = np.ones((len(seq), 1), dtype=bool)
    mc = {}
    for label, est, level, kind in kl_variants(ctx.all_algos):
        if kind == "reward":
            shaped = losses.kl_penalty_rewards(logp, ref_logp, s.mask, 1.0, est)
            adv = adv_mod.broadcast_to_tokens(shaped.sum(axis=1), s.mask)
            _, dlogp, _ = policy_loss(logp, logp, adv, s.mask, aggregation="seq-mean-token-sum", n_seqs=B)
        elif level == "token":
            _, dlogp = losses.kl_loss(logp, ref_logp, s.mask, estimator=est, aggregation="seq-mean-token-sum",
                                      n_seqs=B, old_logp=logp if kind == "loss-is" else None)
        else:
            _, dseq = losses.kl_loss(seq, seq_ref, ones, estimator=est, aggregation="seq-mean-token-sum", n_seqs=B)
            dlogp = adv_mod.broadcast_to_tokens(dseq[:, 0], s.mask)
        mc[label] = draws.add(dlogp)
        ctx.tick()
    return values, mc


def _kl_gradient_rows(expected: dict, mc: dict, targets: dict, u: dict) -> list:
    """Two rows per KL_VARIANTS label (one per target direction), each verdict told the other direction."""
    rows = []
    for label in expected:
        E = expected[label]
        per, mean_vec = mc[label]
        for key in ("rev", "fwd"):
            tname, tg = targets[key]
            other = "fwd" if key == "rev" else "rev"
            row = CheckRow("KL gradient", label, tname, float(np.linalg.norm(tg)), float(E @ u[key]),
                           *mean_se(per[key]), cos=cosine(E, tg), ratio=float(np.linalg.norm(E) / np.linalg.norm(tg)),
                           cos_mc=cosine(mean_vec, tg))
            og = targets[other][1]
            row.verdict = gradient_verdict(row, (f"grad {KL_NAMES[other]}", cosine(E, og),
                                                 float(np.linalg.norm(E) / np.linalg.norm(og))))
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------- policy gradients
def _reward_fn(task: Task) -> Callable:
    """The policy-gradient rows' reward: 0/1 correctness on verifiable tasks, the gold reward otherwise."""
    if task.verifiable:
        return lambda prompts, comps: task.is_correct(prompts, comps).astype(np.float64)
    return task.gold_reward


def _policy_gradient_section(ctx: _Context, G: int, pg_prompts: int) -> tuple[list, dict]:
    """Each registered sequence-level estimator's policy gradient on `pg_prompts` prompts of spread difficulty, against grad E[r]."""
    tsk, policy = ctx.task, ctx.policy
    reward_of = _reward_fn(tsk)
    p_all, chosen = chosen_prompts(ctx, reward_of, pg_prompts)
    sub = enumerate_task(policy, tsk, prompts=ctx.prompts[chosen])
    r_sub = reward_of(*sub.split())
    g_true = grad_expectation(policy, sub, r_sub)
    Bpg = len(chosen) * G
    ests = pg_estimators(ctx.all_algos)
    greedy_sub = None
    if any("greedy_reward" in e.inputs for e in ests):      # ReMax: each chosen prompt's greedy completion
        g_tok, _ = greedy_decode(policy, ctx.prompts[chosen], tsk.max_new_tokens)
        greedy_r = reward_of(*tk.split(g_tok, tsk.prompt_len))                 # (K,)
        ctx.greedy_r, greedy_sub = greedy_r, greedy_r[sub.prompt_index]
    hp = adv_mod.AdvantageSettings()
    E_pg, why = {}, {}
    for e in ests:
        try:
            E_pg[e.name] = expected_pg_gradient(policy, sub, r_sub, e.name, G, e.aggregation,
                                                max_tokens=tsk.max_new_tokens, std=hp.std, eps=hp.eps,
                                                greedy_reward=greedy_sub)
        except ValueError as err:     # std-scaled advantages with a many-valued reward: no exact expectation
            E_pg[e.name], why[e.name] = None, str(err).split(":")[0]
    ctx.tick()
    mc = _pg_monte_carlo(ctx, chosen, ests, hp, G, unit(g_true), reward_of)
    rows = _pg_rows(ests, E_pg, why, mc, g_true, G, Bpg, tsk.max_new_tokens)
    binary = bool(tsk.verifiable)
    return rows, {
        "group_size": G, "pg_batch": Bpg,
        "pg_prompts": [tsk.describe(ctx.prompts[q], np.zeros(0, np.int64)).replace(" ->", "").strip()
                       for q in chosen],
        "pg_p": [float(p_all[q]) for q in chosen], "reward": "1[correct]" if binary else "gold reward",
        "accuracy": float(p_all.mean()), "accuracy_label": "P(correct)" if binary else "E[gold reward]",
    }


def chosen_prompts(ctx: _Context, reward_of: Callable, pg_prompts: int) -> tuple[np.ndarray, np.ndarray]:
    """(pi's exact E[r | q] for every prompt, the indices of `pg_prompts` prompts evenly spaced in it)."""
    p_all, _ = expectation(ctx.enum, reward_of(*ctx.enum.split()))
    order = np.argsort(p_all, kind="stable")
    K = min(pg_prompts, ctx.enum.n_prompts)
    return p_all, order[np.unique(np.round(np.linspace(0, len(order) - 1, K)).astype(int))]


def _pg_monte_carlo(ctx: _Context, chosen: np.ndarray, ests: list, hp, G: int, u_true: np.ndarray,
                    reward_of: Callable) -> dict:
    """Per estimator: the draws' ascent-direction projections on u_true and their mean gradient. Each draw is one
    training batch, so batch-scope estimators (REINFORCE's batch mean) see only their own draw."""
    samples, policy, T = ctx.samples, ctx.policy, ctx.task.max_new_tokens
    Bpg = len(chosen) * G
    s = policy.sample(np.tile(np.repeat(ctx.prompts[chosen], G, axis=0), (samples, 1)), T, ctx.rng)
    pairs = TokenPairs(policy, s.tokens, s.mask)
    logp = pairs.logp(policy)
    r = reward_of(*tk.split(s.tokens, ctx.task.prompt_len))
    draws = Draws(policy, pairs, {"true": pairs.directional(policy, u_true)}, samples)
    ctx.tick()
    extra = {"lengths": tk.completion_lengths(tk.split(s.tokens, ctx.task.prompt_len)[1]).astype(np.float64)}
    if any("greedy_reward" in e.inputs for e in ests):
        extra["greedy_reward"] = np.tile(np.repeat(ctx.greedy_r, G), samples)
    mc = {}
    for e in ests:
        kw = {k: extra[k].reshape(samples, Bpg) for k in e.inputs}
        A = np.concatenate([e.fn(x, G, hp, **{k: v[d] for k, v in kw.items()})
                            for d, x in enumerate(r.reshape(samples, Bpg))])
        _, dlogp, _ = policy_loss(logp, logp, adv_mod.broadcast_to_tokens(A, s.mask), s.mask,
                                         aggregation=e.aggregation, max_tokens=T, n_seqs=Bpg)
        mc[e.name] = draws.add(dlogp, sign=-1.0)     # ascent direction: -d loss / d theta
        ctx.tick()
    return mc


def _pg_rows(ests: list, E_pg: dict, why: dict, mc: dict, g_true: np.ndarray, G: int, Bpg: int, T: int) -> list:
    """One row per estimator; the verdict names the constant a parallel expected gradient is scaled by."""
    u_true = unit(g_true)
    consts = {"(G-1)/G": (G - 1) / G, "(B-1)/B": (Bpg - 1) / Bpg, "1/L_max": 1 / T,
              "(G-1)/G/L_max": (G - 1) / G / T, "(B-1)/B/L_max": (Bpg - 1) / Bpg / T}
    rows = []
    for e in ests:
        a, label = e.name, e.label
        E = E_pg[a]
        per, mean_vec = mc[a]
        if E is None:
            row = CheckRow("policy gradient", label, "grad E[r]", float(np.linalg.norm(g_true)), float("nan"),
                           *mean_se(per["true"]), cos_mc=cosine(mean_vec, g_true))
            seen = "biased (detected)" if abs(row.z) > Z_MAX else "bias not detected"
            row.verdict = f"no exact E[est] ({why[a]}); MC: {seen}, cos(MC mean) {cos_text(row.cos_mc)}"
        else:
            row = CheckRow("policy gradient", label, "grad E[r]", float(np.linalg.norm(g_true)),
                           float(E @ u_true), *mean_se(per["true"]), cos=cosine(E, g_true),
                           ratio=float(np.linalg.norm(E) / np.linalg.norm(g_true)), cos_mc=cosine(mean_vec, g_true))
            row.verdict = gradient_verdict(row, None, consts)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------------- preferences
def _preference_section(ctx: _Context) -> tuple[list, int]:
    """Pairs of distinct pi completions on uniform prompts, labelled by the project's Bradley-Terry sampler
    (tau = 1) against the exact population ceiling from the enumeration, the gold reward scoring itself."""
    enum = ctx.enum
    gold_all = ctx.task.gold_reward(*enum.split())
    ceiling = prefs.exact_pair_expectations(enum.probs, gold_all, gold_all, enum.offsets, 1.0)["bayes_accuracy"]
    n_pairs = 16 * ctx.samples
    pairs = prefs.make_preferences(ctx.policy, ctx.task, ctx.rng.integers(len(ctx.prompts), size=n_pairs), tau=1.0,
                                   rng=ctx.rng)
    dgold = pairs.delta_gold()                                  # r*(label winner) - r*(label loser)
    rows = []
    for label, per_pair in (("sigma(|Delta*|) (sampled ceiling)", prefs.pref_prob(np.abs(dgold), 1.0)),
                            ("label agrees with r* (BT sampler)", (dgold > 0) + 0.5 * (dgold == 0))):
        row = CheckRow("preference labels", label, "Bayes ceiling", ceiling, ceiling, *mean_se(per_pair))
        row.verdict = value_verdict(row)
        rows.append(row)
    ctx.tick()
    return rows, pairs.n_pairs
