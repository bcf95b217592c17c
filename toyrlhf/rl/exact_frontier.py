"""The exact optimal reward-vs-sqrt(KL) frontier under runs' learning curves: for the run's task, reference policy
(the SFT model from the stage cache) and training reward r, pi*_beta = pi_ref exp(r / beta) / Z_q maximises
E[r] - beta KL(pi || pi_ref) (the KL-regularised objective of Ziegler et al. 2019; its closed form as in Rafailov et
al. 2023, eq. 4), so no policy at the same prompt-averaged KL has a higher E[r] than the frontier traced by a beta
sweep. Drawn on the axes of Gao et al. 2022 (fig. 1), with E_pi*[gold] for the proxy's optimum."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import exact
from ..config import RLConfig
from .exact_eval import load_run, optimum_report
from .trainer import Trainer, build_models
from .trainer_state import config_from_run

BETAS = np.geomspace(1e-3, 1e2, 61)
"""The beta sweep: KL from ~0 (beta = 100) to the reward-maximising corner (beta = 0.001)."""


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def config_frontier(cfg: RLConfig, betas=BETAS) -> dict:
    """exact.frontier of the config's reference policy and training reward (the run's reward function on every
    completion, the RM's normalisation included), with E_pi*[gold]; builds or loads the upstream stages."""
    trainer = Trainer(cfg, build_models(cfg))
    return _frontier(trainer, betas)


def _frontier(trainer: Trainer, betas) -> dict:
    cfg = trainer.cfg
    ref = exact.enumerate_task(trainer.models.reference, trainer.task, cfg.temperature)
    prompts, comps = ref.split()
    proxy = np.asarray(trainer.reward_fn(ref.tokens, ref.mask, prompts, comps), np.float64)
    gold = np.asarray(trainer.task.gold_reward(prompts, comps), np.float64)
    return exact.frontier(ref, proxy, betas, gold)


def run_frontiers(run_dirs: Sequence, betas=BETAS) -> list[dict]:
    """One exact frontier per distinct (task, temperature, reference weights, reward) among the RL runs (seeds that
    build other SFT and reward models get their own), each with "runs": the run folders it belongs to, "seed", and
    "reward_settings" (runs whose reward function differs, e.g. DAPO's overlong penalty, cannot share a frontier)."""
    groups: dict[str, dict] = {}
    for d in run_dirs:
        cfg = config_from_run(d)
        trainer = Trainer(cfg, build_models(cfg))
        m = trainer.models
        rm = (np.append(m.reward_model.model.flat, [m.reward_model.mean, m.reward_model.std])
              if m.reward_model is not None else np.zeros(0))      # its weights and its normalisation
        reward = repr((cfg.task, cfg.temperature, cfg.reward, cfg.reward_weights, cfg.overlong_penalty,
                       cfg.overlong_cache))
        key = _digest(m.reference.flat, rm) + reward
        if key not in groups:
            groups[key] = {**_frontier(trainer, betas), "runs": [], "seed": cfg.seed, "reward_settings": reward}
        groups[key]["runs"].append(Path(d))
    return list(groups.values())


def tv_to_optimum(run_dir) -> float | None:
    """TV(pi, pi*) = mean_q 1/2 sum_y |pi(y|q) - pi*(y|q)| of a run's final checkpoint to pi* of its own objective
    E[r] - beta KL(pi || pi_ref) (its beta setting, its checkpoint's reference, its training reward), as `toyrlhf
    eval` reports it; None for a run without a KL term (beta = 0 or kl = none) or without a checkpoint."""
    cfg = config_from_run(run_dir)
    if not (cfg.beta > 0 and cfg.kl != "none") or not (Path(run_dir) / "checkpoint.npz").is_file():
        return None
    _, trainer, _ = load_run(run_dir)
    return optimum_report(trainer, cfg.beta, window=False)["tv_to_opt"]
