"""The `toyrlhf run --exact` hook (toyrlhf/rl/exact_metrics.py): exact expectations under the current policy,
against the sampler, and a one-line error for a task too large to enumerate."""
from __future__ import annotations

import numpy as np
import pytest

from toyrlhf import exact
from toyrlhf import tokens as tk
from toyrlhf.config import preset_config
from toyrlhf.errors import UserError
from toyrlhf.exact import enumeration
from toyrlhf.model import ModelConfig, TinyLM
from toyrlhf.rl.exact_metrics import training_metrics
from toyrlhf.rl.trainer import Models, Trainer
from toyrlhf.tasks import get_task

Z = 4.0


def make_trainer(task_name="length"):
    task = get_task(task_name)
    policy = TinyLM(ModelConfig(vocab_size=task.vocab_size, context=4, embed=4, hidden=8), seed=1)
    cfg = preset_config("grpo", task=task_name, exact_every=1)
    return cfg, Trainer(cfg, Models(policy=policy, reference=policy.copy(), critic=None, reward_model=None))


def test_training_metrics_are_exact_expectations_under_the_policy():
    cfg, trainer = make_trainer()
    fn = training_metrics(cfg)
    out = fn(trainer)
    assert {"exact_reward", "exact_gold_reward", "exact_kl"} <= set(out)
    assert abs(out["exact_kl"]) < 1e-12                           # reference == policy
    # against the sampler: the gold reward is 0/1 correctness on `length`
    task, pol = trainer.task, trainer.models.policy
    s = pol.sample(np.repeat(task.prompts(), 2000, axis=0), task.max_new_tokens, np.random.default_rng(0))
    g = task.gold_reward(*tk.split(s.tokens, task.prompt_len))
    z = (g.mean() - out["exact_gold_reward"]) / (g.std(ddof=1) / np.sqrt(g.size))
    assert abs(z) <= Z, z
    assert abs(out["exact_reward"] - out["exact_gold_reward"]) < 1e-12  # rule reward = gold reward here
    # a moved reference: exact_kl is the enumerated KL(pi || ref)
    ref = trainer.models.reference
    ref.set_flat(ref.flat + np.random.default_rng(1).normal(0, 0.3, ref.flat.shape))
    out2 = fn(trainer)
    e = exact.enumerate_task(pol, task)
    assert out2["exact_kl"] > 0.01
    assert abs(out2["exact_kl"] - exact.kl_divergences(e, exact.rescore(ref, e))["reverse_mean"]) < 1e-12


def test_training_metrics_refuse_a_task_too_large_to_enumerate(monkeypatch):
    cfg, _ = make_trainer()
    monkeypatch.setattr(enumeration, "MAX_SEQUENCES", 100_000)   # check_size reads it there
    with pytest.raises(UserError) as err:
        training_metrics(cfg)
    msg = str(err.value)
    assert "149,296 completions" in msg and "\n" not in msg


def test_the_hook_logs_the_entropy_mechanism_and_its_first_order_prediction():
    cfg, trainer = make_trainer()
    fn = training_metrics(cfg)
    first = fn(trainer)
    assert {"exact_entropy_cov", "exact_entropy_change_cov", "exact_entropy_change_grad"} <= set(first)
    assert "exact_entropy_change" not in first                     # no previous evaluation yet
    pol = trainer.models.policy
    step = np.random.default_rng(0).normal(0, 1e-4, pol.flat.shape)
    pol.set_flat(pol.flat + step)
    second = fn(trainer)
    d, d1 = second["exact_entropy_change"], second["exact_entropy_change_first_order"]
    assert abs(d) > 1e-7 and abs(d - d1) < 1e-3 * abs(d) + 1e-10
