"""Exact evaluation of a run's policy (`toyrlhf eval RUN_DIR`): pass@k and maj@k for k = 1 .. 256 against the SFT
model's, and the run's distance to the KL-regularised optimum pi* of its own objective.

The final answer of a completion (what maj@k votes on) is the task's answer tokens:
    arith   s2, the second digit, of a well-formed completion [digit, digit, EOS]  (5 classes; else no answer)
    length  the first token, if it is an answer letter and the completion ends with EOS  (4 classes; else none)
so "the answer is right" is exactly the task's accuracy. maj@k conventions (ties at random, no-answer draws do not
vote) are those of ``toyrlhf.exact.voting``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import exact
from ..errors import UserError
from ..model import TinyLM
from ..runs import load_npz
from ..tasks import ArithTask, LengthTask, Task, get_task
from ..tokens import EOS, is_truncated
from .trainer import Trainer, build_models
from .trainer_state import config_from_run

__all__ = ["KS", "final_answers", "EvalResult", "evaluate_policy", "load_run", "evaluate_run"]

KS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""The k of pass@k / maj@k."""


def final_answers(task: Task, prompts: np.ndarray, comps: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(answer class of every completion (B,), -1 = none; right answer of every prompt row (B,); n_classes), per the
    module docstring. UserError for a task without an answer definition."""
    prompts, comps = np.asarray(prompts), np.asarray(comps)
    if isinstance(task, ArithTask):
        d0 = task.digit0
        well = task._is_digit(comps[:, 0]) & task._is_digit(comps[:, 1]) & (comps[:, 2] == EOS)
        a, b, c = task._values(prompts)
        return np.where(well, comps[:, 1] - d0, -1), (a + b + c) % task.M, task.M
    if isinstance(task, LengthTask):
        k = len(task.ANSWERS)
        first = comps[:, 0] - task.answer0
        ok = (first >= 0) & (first < k) & ~is_truncated(comps)
        return np.where(ok, first, -1), task.answer(prompts) - task.answer0, k
    raise UserError(f"task {task.name!r} has no final answer to vote on (pass@k / maj@k need arith or length)")


@dataclass
class EvalResult:
    """Exact figures of one policy: pass@k and maj@k (k = KS), accuracy, and (for a run) its objective against pi*."""

    ks: tuple
    pass_at_k: np.ndarray
    maj_at_k: np.ndarray
    accuracy: float


def evaluate_policy(policy: TinyLM, task: Task, temperature: float, ks=KS) -> EvalResult:
    """Exact pass@k = mean_q 1 - (1 - p_q)^k and maj@k (``exact.voting``) of `policy` over all the task's prompts."""
    enum = exact.enumerate_task(policy, task, temperature)
    prompts, comps = enum.split()
    answers, right_rows, n_classes = final_answers(task, prompts, comps)
    right = right_rows[enum.offsets[:-1]]
    correct = task.is_correct(prompts, comps).astype(np.float64)
    passk = exact.pass_at_k_curve(enum, correct, ks)
    majk = np.array([exact.maj_at_k(enum, answers, right, n_classes, k)[1] for k in ks])
    return EvalResult(tuple(ks), passk, majk, float(passk[0]))


def load_run(run_dir) -> tuple:
    """(cfg, trainer with the checkpoint's policy and reference loaded, the SFT model) of a run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise UserError(f"{run_dir}: not a run folder (no config.json)")
    cfg = config_from_run(run_dir)
    models = build_models(cfg)
    sft = models.reference.copy()
    z = load_npz(run_dir / "checkpoint.npz", required=("policy", "reference"))
    for model, key in ((models.policy, "policy"), (models.reference, "reference")):
        if z[key].shape != model.flat.shape:
            raise UserError(f"{run_dir}: the checkpoint's {key} does not match the run's model")
        model.set_flat(z[key])
    return cfg, Trainer(cfg, models), sft


def optimum_report(trainer: Trainer, beta: float, window: bool = True) -> dict:
    """The run's policy against pi* of E[r] - beta KL(pi||ref) (r the run's training reward, ref its reference):
    J(pi) = E_pi[r] - beta KL, J(pi*) = beta log E_ref[exp(r/beta)], the rewards, KLs, gold rewards, TV(pi, pi*).
    With `window`, also the best policy the model's context window can represent (``exact.window_optimum``: pi*
    restricted to next-token distributions that depend on the last k tokens only, which every TinyLM is): its
    J, reward, KL and gold ("win_*"), TV(window optimum, pi*) and TV(run, window optimum)."""
    cfg, m = trainer.cfg, trainer.models
    task = trainer.task
    enum = exact.enumerate_task(m.policy, task, cfg.temperature)
    ref = exact.rescore(m.reference, enum, cfg.temperature)
    prompts, comps = enum.split()
    proxy = np.asarray(trainer.reward_fn(enum.tokens, enum.mask, prompts, comps), np.float64)
    gold = task.gold_reward(prompts, comps)
    star = exact.optimum(ref, proxy, beta, gold)
    R = exact.expectation(enum, proxy)[1]
    KL = exact.kl_divergences(enum, ref)["reverse_mean"]
    out = {"beta": beta, "reward": R, "kl": KL, "gold": exact.expectation(enum, gold)[1], "J": R - beta * KL,
           "opt_reward": star.reward_mean, "opt_kl": star.kl_mean, "opt_gold": star.gold_mean,
           "opt_value": star.value_mean, "tv_to_opt": exact.total_variation(enum, star.logp)[1]}
    if window:
        w = exact.window_optimum(ref, proxy, beta, gold)
        out.update(win_value=w.value_mean, win_reward=w.reward_mean, win_kl=w.kl_mean, win_gold=w.gold_mean,
                   win_converged=w.converged, win_context=ref.window,
                   tv_win_to_opt=exact.total_variation(ref.with_win_logp(w.win_logp), star.logp)[1],
                   tv_to_win=exact.total_variation(enum, w.logp)[1])
    return out


def evaluate_run(run_dir, ks=KS, sft_only: bool = False) -> dict:
    """`toyrlhf eval`: {"run": EvalResult (or None with sft_only), "sft": EvalResult, "optimum": optimum_report or
    None (beta = 0 or sft_only)}."""
    cfg, trainer, sft = load_run(run_dir)
    task = get_task(cfg.task)
    exact.check_size(len(task.prompts()), task.n_out, task.max_new_tokens, what=f"task {cfg.task!r}")
    out = {"cfg": cfg, "sft": evaluate_policy(sft, task, cfg.temperature, ks), "run": None, "optimum": None}
    if not sft_only:
        out["run"] = evaluate_policy(trainer.models.policy, task, cfg.temperature, ks)
        if cfg.beta > 0 and cfg.kl != "none":
            out["optimum"] = optimum_report(trainer, cfg.beta)
    return out
