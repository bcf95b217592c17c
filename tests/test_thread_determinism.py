"""Issue 13 item 1: the numbers do not depend on the thread settings, for every preset and task and for the
upstream stages: each thread setting runs in a fresh interpreter (thread pools are fixed at import) and prints
a digest of every preset's first steps on every task, with the stages built from an empty cache."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import hashlib, json, sys
import numpy as np
from toyrlhf.config import preset_config
from toyrlhf.rl.algorithms import PRESETS
from toyrlhf.rl.trainer import Trainer, build_models
from toyrlhf.tasks import TASKS
out = {}
for task in TASKS:
    for algo in PRESETS:
        cfg = preset_config(algo, task=task, prompts_per_step=4, group_size=4)
        cfg.pretrain.steps, cfg.pretrain.corpus_size, cfg.sft.steps, cfg.rm.steps, cfg.rm.pairs = 60, 2000, 20, 20, 200
        tr = Trainer(cfg, build_models(cfg))
        ms = [{k: v for k, v in tr.step().items() if k != "time_s"} for _ in range(3)]
        h = hashlib.sha256(json.dumps(ms, sort_keys=True).encode())
        h.update(np.ascontiguousarray(tr.models.policy.flat).tobytes())
        out[f"{algo}-{task}"] = h.hexdigest()
print(json.dumps(out))
"""

SETTINGS = {"1 thread": {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            "2 threads": {"NUMBA_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"},
            "8 BLAS threads": {"NUMBA_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "8", "OMP_NUM_THREADS": "8"}}


@pytest.mark.slow
def test_every_preset_and_task_gives_identical_numbers_for_any_thread_setting(tmp_path):
    """The settings' processes run at once (a 2-core machine otherwise idles a core through the 1-thread one), which
    also has each one's threads compete with the others' for the cores."""
    procs = {}
    for name, env in SETTINGS.items():
        cache = tmp_path / name.replace(" ", "-")      # each setting builds its own upstream stages
        procs[name] = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, cwd=tmp_path, env={**os.environ, **env, "TOYRLHF_CACHE_DIR": str(cache)})
    digests = {}
    try:
        for name, p in procs.items():
            out, err = p.communicate(timeout=900)
            assert p.returncode == 0, err[-2000:]
            digests[name] = json.loads(out.strip().splitlines()[-1])
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    first = digests["1 thread"]
    assert len(first) >= 14
    for name, d in digests.items():
        differ = sorted(k for k in first if d[k] != first[k])
        assert not differ, f"{name}: {differ} differ from one thread"
