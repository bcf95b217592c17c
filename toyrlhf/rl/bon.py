"""Best-of-n as an inference-time baseline, exactly: the SFT policy's n samples, the one the reward model scores
highest returned (Stiennon et al. 2020; Gao et al. 2023), evaluated over every completion of every prompt.

With pi the SFT policy and completions sorted by the proxy (RM) score, pi_bon(y) = F(y)^n - F-(y)^n
(``exact.best_of_n``, ties at random; Beirami et al. 2024), so per prompt

    proxy(n) = sum_y pi_bon(y) r_RM(y),   gold(n) = sum_y pi_bon(y) r*(y),   KL(n) = KL(pi_bon || pi)  (exact.best_of_n_kl)

averaged uniformly over the task's prompts, beside the usual bound log n - (n-1)/n (``exact.best_of_n_kl_bound``).
"""
from __future__ import annotations

import numpy as np

from .. import exact, stages
from ..reward_model import cached_reward_model
from ..tasks import get_task

SCORE_CHUNK = 50_000
"""Sequences scored per reward-model call (bounds the memory of the hidden activations)."""


def parse_ns(text: str) -> list[int]:
    """'1,2,4,...,256' -> [1, 2, 4, 8, ..., 256] (an ellipsis continues the ratio of the two numbers before it);
    ValueError for anything else than positive integers."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    out: list[int] = []
    for i, p in enumerate(parts):
        if p == "...":
            if len(out) < 2 or i + 1 >= len(parts) or out[-1] <= out[-2]:
                raise ValueError("'...' needs two increasing numbers before it and one after it")
            ratio, stop = out[-1] / out[-2], _positive(parts[i + 1])
            while out[-1] * ratio < stop:
                out.append(int(round(out[-1] * ratio)))
            continue
        out.append(_positive(p))
    if not out:
        raise ValueError("--n needs at least one positive integer")
    return sorted(set(out))


def _positive(p: str) -> int:
    try:
        v = int(p)
    except ValueError:
        raise ValueError(f"--n: {p[:30]!r} is not a whole number") from None
    if v < 1:
        raise ValueError(f"--n: n must be >= 1, got {v}")
    return v


def score_enumeration(rm, enum) -> np.ndarray:
    """(N,) the reward model's normalised score of every enumerated completion, in chunks."""
    return np.concatenate([rm.score(enum.tokens[i:i + SCORE_CHUNK], enum.mask[i:i + SCORE_CHUNK])
                           for i in range(0, enum.n, SCORE_CHUNK)])


def best_of_n_curve(sft_model, rm, task, ns) -> list[dict]:
    """One row per n: exact proxy and gold reward of best-of-n, its exact KL to the SFT policy and the bound."""
    enum = exact.enumerate_task(sft_model, task)
    proxy = score_enumeration(rm, enum)
    gold = task.gold_reward(*enum.split())
    rows = []
    for n in ns:
        g = np.zeros(enum.n_prompts)
        r = np.zeros(enum.n_prompts)
        kl = np.zeros(enum.n_prompts)
        for q in range(enum.n_prompts):
            s = slice(enum.offsets[q], enum.offsets[q + 1])
            p = enum.probs[s]
            b = exact.best_of_n(p, proxy[s], n)
            g[q], r[q] = b @ gold[s], b @ proxy[s]
            kl[q] = exact.best_of_n_kl(p, proxy[s], n)
        rows.append({"n": int(n), "gold_reward": float(g.mean()), "proxy_reward": float(r.mean()),
                     "kl": float(kl.mean()), "kl_bound": exact.best_of_n_kl_bound(n)})
    return rows


def best_of_n_report(cfg, ns, progress=None) -> list[dict]:
    """`toyrlhf bon`: best-of-n on the SFT policy of cfg's pipeline, scored by its reward model (both from the
    stage cache, built on a miss)."""
    pipe = stages.Pipeline(pretrain=cfg.pretrain, sft=cfg.sft)
    sft_model, _ = stages.cached_sft(pipe, progress)
    rm, _ = cached_reward_model(pipe, cfg.rm, progress)
    return best_of_n_curve(sft_model, rm, get_task(cfg.task), ns)
