"""Record (or compare against) the golden runs: every preset, 30 steps on `pref` and `arith`, seed 0.

A refactor must not change a number: `tests/test_golden.py` reruns these and compares `metrics.jsonl` (apart from
time_s) and the checkpoint's arrays to the files here, bit for bit. Regenerate only in a commit that says why the
numbers change (e.g. kernels with another summation order):

    python tests/golden/record.py          # writes tests/golden/<preset>-<task>.json and check.txt
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASKS = ("pref", "arith")
STEPS = 30
# arrays that carry the run's state; config / model_config are descriptions and may gain fields
STATE_KEYS_SKIPPED = ("config", "model_config")
# NumPy picks its exp / log / expm1 / log1p kernels by the CPU at import: on an AVX-512 machine (X86_V4) they round
# a few results differently from the AVX2 ones (X86_V3) the files were recorded with (measured: a GRPO loss
# 2.9049643972158597e-05 against ...387 on a Zen 4). Capping NumPy's dispatch at X86_V3 makes the comparison the same
# on every x86-64 machine with AVX2; naming a feature the CPU lacks is harmless.
NUMPY_SIMD_CAP = "X86_V4 AVX512_ICL AVX512_SPR"
ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
       "MPLBACKEND": "Agg", "NPY_DISABLE_CPU_FEATURES": NUMPY_SIMD_CAP}


def presets() -> list[str]:
    from toyrlhf.rl.algorithms import PRESETS
    return list(PRESETS)


def _cli(args, cwd, cache_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV, "TOYRLHF_CACHE_DIR": str(cache_dir)}
    return subprocess.run([sys.executable, "-m", "toyrlhf", *map(str, args)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=900)


def array_digest(a) -> str:
    import numpy as np
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def run_record(algo: str, task: str, workdir: Path, cache_dir: Path) -> dict:
    """The golden record of one run: its metrics (no time_s) and a digest of every checkpoint array."""
    import numpy as np
    out = workdir / f"{algo}-{task}"
    p = _cli(["run", algo, "--task", task, "--steps", STEPS, "--seed", 0, "--out", out], workdir, cache_dir)
    if p.returncode != 0:
        raise RuntimeError(f"{algo} on {task} failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    for m in metrics:
        m.pop("time_s", None)
    with np.load(out / "checkpoint.npz", allow_pickle=False) as z:
        state = {k: array_digest(z[k]) for k in sorted(z.files) if k not in STATE_KEYS_SKIPPED}
    return {"algo": algo, "task": task, "steps": STEPS, "metrics": metrics, "checkpoint": state}


def check_table(workdir: Path, cache_dir: Path) -> str:
    """`toyrlhf check`'s table (its timing line removed)."""
    p = _cli(["check"], workdir, cache_dir)
    if p.returncode != 0:
        raise RuntimeError(f"toyrlhf check failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    return "\n".join(line for line in p.stdout.splitlines() if not _is_timing(line)) + "\n"


def _is_timing(line: str) -> bool:
    return re.search(r" in [0-9.]+ s$", line) is not None


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        for task in TASKS:
            for algo in presets():
                rec = run_record(algo, task, tmp, cache)
                (HERE / f"{algo}-{task}.json").write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
                print(f"recorded {algo} on {task}: {len(rec['metrics'])} steps", flush=True)
        (HERE / "check.txt").write_text(check_table(tmp, cache))
        print("recorded toyrlhf check")


if __name__ == "__main__":
    main()
