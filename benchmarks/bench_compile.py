"""What numba costs a run: every kernel's compile time with an empty cache and its load time from a filled one.

Each measurement is a fresh subprocess running `toyrlhf run <algo> --steps N` in-process (the CLI's own code
path), with numba's Dispatcher.compile timed: with an empty NUMBA_CACHE_DIR it compiles (exclusive time: a
kernel's own typing, lowering and LLVM, without the helpers it triggers, which are listed on their own lines),
with the cache filled it loads. The stage cache is private: the first-time row builds pretrain, SFT and the
reward model too (their kernels show up there), the others reuse it. A first run's compile is shared with a
helper process (toyrlhf/kernels/warmup.py): its kernels, loaded here from the cache it wrote, count as loads.
Prints; asserts nothing.

    python benchmarks/bench_compile.py                 # grpo, then ppo on the same caches
    python benchmarks/bench_compile.py --algo grpo --steps 50
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

PROBE = r"""
import json, sys, time
t_start = time.perf_counter()
import numba.core.dispatcher as D
timings, stack = {}, []
_compile = D.Dispatcher.compile
def compile(self, sig):
    stack.append(0.0)
    t = time.perf_counter()
    try:
        return _compile(self, sig)
    finally:
        total = time.perf_counter() - t
        nested = stack.pop()
        if stack:
            stack[-1] += total
        name = self.py_func.__module__.rpartition(".")[2] + "." + self.py_func.__name__
        rec = timings.setdefault(name, [[], 0.0, 0.0, t - t_start])
        if str(sig) not in rec[0]:
            rec[0].append(str(sig))
        rec[1] += total - nested
        rec[2] += total
D.Dispatcher.compile = compile
t_numba = time.perf_counter()
from toyrlhf.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    if e.code not in (0, None):
        raise
print("@@" + json.dumps({"timings": timings, "total": time.perf_counter() - t_start,
                         "import_numba": t_numba - t_start}))
"""


def probe(args: list[str], env: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], env={**os.environ, **env}, capture_output=True,
                       text=True, cwd=tempfile.gettempdir())
    if r.returncode != 0:
        raise SystemExit(f"probe failed: {r.stderr[-2000:]}")
    line = next(x for x in r.stdout.splitlines() if x.startswith("@@"))
    return json.loads(line[2:])


def show(title: str, res: dict, what: str) -> None:
    rows = sorted(res["timings"].items(), key=lambda kv: -kv[1][1])
    total = sum(v[1] for v in res["timings"].values())
    print(f"\n{title}: whole process {res['total']:.2f} s, {what} {total:.2f} s over {len(rows)} functions "
          f"(load average {os.getloadavg()[0]:.2f})")
    for name, (sigs, excl, incl, at) in rows:
        n = len(sigs)
        extra = f"  (with the helpers it compiled: {incl:.2f} s)" if incl > excl + 5e-3 else ""
        print(f"  {name:34s} {n:3d} signature{'s' if n > 1 else ' '} {excl:7.3f} s, first at {at:5.2f} s{extra}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--algo", action="append", help="presets to run (default: grpo and ppo)")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    algos = args.algo or ["grpo", "ppo"]
    stage, numba_cache = tempfile.mkdtemp(), tempfile.mkdtemp()
    env = {"TOYRLHF_CACHE_DIR": stage, "NUMBA_CACHE_DIR": numba_cache, "MPLBACKEND": "Agg",
           "TOYRLHF_PROGRESS": "off"}
    alone = {**env, "NUMBA_CACHE_DIR": tempfile.mkdtemp(), "TOYRLHF_CACHE_DIR": tempfile.mkdtemp(),
             "TOYRLHF_BACKGROUND_COMPILE": "0"}
    cli0 = ["run", algos[0], "--steps", str(args.steps), "--out", tempfile.mkdtemp() + "/r"]
    show(f"{algos[0]}, first-time, compiling in this process only (TOYRLHF_BACKGROUND_COMPILE=0)", probe(cli0, alone),
         "compile")
    for i, algo in enumerate(algos):
        def cli():
            return ["run", algo, "--steps", str(args.steps), "--out", tempfile.mkdtemp() + "/r"]
        kind = ("first-time (empty numba and stage caches), with the background compile of kernels/warmup.py"
                if i == 0 else "numba cache of the runs above")
        show(f"{algo}, {kind}", probe(cli(), env), "compile" if i == 0 else "compile or load")
        show(f"{algo}, warm (numba cache filled)", probe(cli(), env), "cache loads")


if __name__ == "__main__":
    main()
