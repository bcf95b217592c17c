"""The Python API: toyrlhf.train() returns the trained models and metrics, toyrlhf.load_run() reads a folder back."""
import subprocess
import sys

import numpy as np
import pytest

import toyrlhf
from toyrlhf.errors import UserError

from tiny import TINY


def test_import_toyrlhf_is_cheap():
    code = "import sys, toyrlhf; print(sorted(m for m in ('numpy', 'numba', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    assert out == "[]"
    assert {"train", "load_run"} <= set(dir(toyrlhf))


def test_train_returns_models_and_metrics_then_load_run(cache_dir, tmp_path):
    out = tmp_path / "deep" / "grpo"          # a folder that does not exist yet (rl.run.train wanted it made)
    run = toyrlhf.train("grpo", task="pref", steps=4, seed=1, out=out, lr=2e-3, **TINY)
    assert run.run_dir == out and (out / "checkpoint.npz").is_file()
    assert [m["step"] for m in run.metrics] == [1, 2, 3, 4]
    assert run.config.lr == 2e-3 and run.config.sft.steps == 10 and run.config.seed == 1
    assert run.summary["steps"] == 4 and run.reward_model is not None and run.critic is None
    back = toyrlhf.load_run(out)
    assert np.array_equal(back.policy.flat, run.policy.flat)
    assert back.metrics == run.metrics and back.config == run.config
    # the trained policy is not the SFT model it started from
    assert not np.array_equal(back.policy.flat, back.models.reference.flat)


def test_train_into_a_temporary_folder_and_errors(cache_dir):
    run = toyrlhf.train("ppo", steps=2, **TINY)
    assert run.run_dir.is_dir() and run.critic is not None and len(run.metrics) == 2
    with pytest.raises(UserError, match="unknown setting"):
        toyrlhf.train("grpo", steps=2, no_such_knob=1)
    with pytest.raises(UserError, match="unknown algorithm"):
        toyrlhf.train("nope")
    with pytest.raises(UserError, match="not an empty folder"):
        toyrlhf.train("grpo", steps=2, out=run.run_dir, **TINY)
