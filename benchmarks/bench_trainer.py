"""Wall time of one RL step of the presets at their default settings (`toyrlhf run <algo>`: pref, 16 prompts x 8),
and where it goes: the model's calls (sampling, log-prob / value / reward forward and backward), Adam, and the
rest (the trainer's losses, advantages and bookkeeping). PPO against GRPO is issue 12's ratio.

The stage cache is $TOYRLHF_CACHE_DIR (built if missing). Medians and ranges of --reps blocks of --steps steps,
after a warm-up; the load average is printed, since the machine may be shared, and so is the median CPU time per
step (the process's, its pool threads' included), which a busy machine disturbs less than the wall time.
Prints; asserts nothing.

    python benchmarks/bench_trainer.py                      # grpo and ppo
    python benchmarks/bench_trainer.py --algo ppo --algo rloo --steps 50
    python benchmarks/bench_trainer.py --kernels              # also: the model calls' time inside numba kernels

--kernels times every numba kernel call too (about 1 us of timing each), and splits the model calls' time into
the kernels and the Python around them (argument checks, gathers, buffers, the memo's bookkeeping).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from toyrlhf import kernels
from toyrlhf.config import preset_config
from toyrlhf.model import TinyLM
from toyrlhf.optim import Adam
from toyrlhf.rl.trainer import Trainer, build_models
from toyrlhf.threads import blas_single_thread

MODEL_CALLS = ("sample", "logp_forward", "logp_backward", "value_forward", "value_backward", "reward_forward",
               "reward_backward")


def instrument(clock: dict, kernel_calls: bool = False) -> None:
    """Add the seconds spent in each of TinyLM's MODEL_CALLS and in Adam.step to clock[name] (outermost calls);
    with kernel_calls, those spent in numba kernels (toyrlhf.kernels' dispatchers) called from inside the model's
    calls to clock["model kernels"]."""
    depth = {"calls": 0, "kernels": 0}

    def wrap(owner, name, key, level):
        fn = getattr(owner, name)

        def timed(*a, **k):
            if depth[level] or (level == "kernels" and not depth["model"]):
                return fn(*a, **k)
            depth[level] += 1
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                clock[key] = clock.get(key, 0.0) + time.perf_counter() - t
                depth[level] -= 1

        setattr(owner, name, timed)

    def in_model(fn):
        def marked(*a, **k):
            depth["model"] += 1
            try:
                return fn(*a, **k)
            finally:
                depth["model"] -= 1
        return marked

    depth["model"] = 0
    for name in MODEL_CALLS:
        setattr(TinyLM, name, in_model(getattr(TinyLM, name)))
        wrap(TinyLM, name, name, "calls")
    wrap(Adam, "step", "adam", "calls")
    if kernel_calls:
        for name in dir(kernels):
            if hasattr(getattr(kernels, name), "py_func"):          # a numba dispatcher
                wrap(kernels, name, "model kernels", "kernels")


def bench(algo: str, steps: int, reps: int, clock: dict) -> dict:
    cfg = preset_config(algo)
    tr = Trainer(cfg, build_models(cfg))
    with blas_single_thread():
        for _ in range(10):
            tr.step()
        blocks, cpu, parts = [], [], []
        for _ in range(reps):
            clock.clear()
            t, c = time.perf_counter(), time.process_time()
            for _ in range(steps):
                tr.step()
            blocks.append(1e3 * (time.perf_counter() - t) / steps)
            cpu.append(1e3 * (time.process_time() - c) / steps)
            parts.append({k: 1e3 * v / steps for k, v in clock.items()})
    i = int(np.argsort(blocks)[len(blocks) // 2])
    return dict(median=float(np.median(blocks)), lo=min(blocks), hi=max(blocks), parts=parts[i],
                cpu=float(np.median(cpu)),
                updates=cfg.epochs * cfg.minibatches, critic=cfg.uses_critic)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--algo", action="append", help="presets (default: grpo and ppo)")
    ap.add_argument("--steps", type=int, default=100, help="steps per timed block")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--kernels", action="store_true", help="split the model calls' time: numba kernels / Python")
    args = ap.parse_args()
    algos = args.algo or ["grpo", "ppo"]
    clock: dict = {}
    instrument(clock, args.kernels)
    res = {}
    for algo in algos:
        res[algo] = r = bench(algo, args.steps, args.reps, clock)
        model = sum(v for k, v in r["parts"].items() if k in MODEL_CALLS)
        rest = r["median"] - model - r["parts"].get("adam", 0.0)
        print(f"{algo:10s} {r['median']:6.2f} ms/step (range {r['lo']:.2f}-{r['hi']:.2f}; CPU {r['cpu']:.2f}; load "
              f"{os.getloadavg()[0]:.2f}); {r['updates']} policy updates{' + critic updates' if r['critic'] else ''}"
              f" a step: model {model:.2f} ms, Adam {r['parts'].get('adam', 0.0):.2f} ms, the rest {rest:.2f} ms")
        print("           " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["parts"].items(), key=lambda kv: -kv[1])
                                        if k != "model kernels"))
        if args.kernels:
            inside = r["parts"].get("model kernels", 0.0)
            print(f"           of the model calls' {model:.2f} ms: {inside:.2f} ms in numba kernels, "
                  f"{model - inside:.2f} ms in the Python around them")
    if "grpo" in res:
        for algo in algos:
            if algo != "grpo":
                print(f"{algo} / grpo wall time per step: {res[algo]['median'] / res['grpo']['median']:.2f}x "
                      f"(CPU time: {res[algo]['cpu'] / res['grpo']['cpu']:.2f}x)")


if __name__ == "__main__":
    main()
