"""What building the upstream stages for a new seed costs: pretraining, SFT and the reward model (split into its
data, training, normalisation, evaluation and exact-population parts), wall and CPU seconds.

Each run is a fresh subprocess with an empty stage cache ($TOYRLHF_CACHE_DIR) and a seed not built before, so it
pays what a first `toyrlhf run` for that seed pays except numba's compile (run once beforehand to fill numba's
cache; its one-time set-up and the kernels' cache loads stay in the first stage, as for a user). The numbers
are medians over the runs, with the load average before each run: on a shared machine compare CPU seconds, or
interleave two checkouts with --pythonpath. Prints; asserts nothing.

    python benchmarks/bench_stages.py                        # 5 runs, seeds 1000..1004
    python benchmarks/bench_stages.py --runs 3 --pythonpath /tmp/old /tmp/new   # two trees, alternated
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

PROBE = r"""
import json, os, sys, time
os.environ["TOYRLHF_CACHE_DIR"] = sys.argv[2]
from toyrlhf import preferences, reward_model as R, stages
from toyrlhf.config import Pipeline, PretrainConfig, RMConfig
times = {}
def timed(mod, name, key):
    f = getattr(mod, name)
    def wrapper(*a, **k):
        t, c = time.perf_counter(), time.process_time()
        try:
            return f(*a, **k)
        finally:
            times[key] = times.get(key, 0.0) + time.perf_counter() - t
            times["cpu " + key] = times.get("cpu " + key, 0.0) + time.process_time() - c
    setattr(mod, name, wrapper)
for mod, name, key in ((stages, "pretrain", "pretrain"), (stages, "sft", "sft"),
                       (R, "train_reward_model", "rm"), (preferences, "make_split", "rm: data"),
                       (R, "_fit", "rm: training"), (R, "normalisation", "rm: normalisation"),
                       (R, "evaluate", "rm: evaluation"), (R, "exact_population", "rm: exact figures")):
    timed(mod, name, key)
t, c = time.perf_counter(), time.process_time()
R.cached_reward_model(Pipeline(PretrainConfig(task="pref", seed=int(sys.argv[1]))), RMConfig())
times["all three"], times["cpu all three"] = time.perf_counter() - t, time.process_time() - c
print(json.dumps(times))
"""

ORDER = ("all three", "pretrain", "sft", "rm", "rm: data", "rm: training", "rm: normalisation", "rm: evaluation",
         "rm: exact figures")


def run_once(seed: int, pythonpath: str | None) -> tuple[dict, str]:
    """One fresh process building the three stages for `seed`: (seconds per part, load average before)."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as cache:
        out = subprocess.run([sys.executable, "-c", PROBE, str(seed), cache], env=env, check=True,
                             capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1]), load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1000, help="first seed (each run takes the next)")
    ap.add_argument("--pythonpath", nargs="*", default=[None], help="trees to compare, alternated run by run")
    args = ap.parse_args()
    results: dict = {p: [] for p in args.pythonpath}
    for i in range(args.runs):
        for p in args.pythonpath:
            times, load = run_once(args.seed + i, p)
            results[p].append(times)
            print(f"run {i + 1} {p or 'installed'} (load {load}): all three {times['all three']:.2f} s wall, "
                  f"{times['cpu all three']:.2f} s CPU", flush=True)
    for p, rows in results.items():
        print(f"\n{p or 'installed toyrlhf'}: median of {len(rows)} runs, seconds")
        print(f"{'part':<20}{'wall':>8}{'CPU':>8}")
        for key in ORDER:
            if key in rows[0]:
                wall = statistics.median(r[key] for r in rows)
                cpu = statistics.median(r["cpu " + key] for r in rows)
                print(f"{key:<20}{wall:>8.2f}{cpu:>8.2f}")


if __name__ == "__main__":
    main()
