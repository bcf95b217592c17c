"""A trainer's checkpoint: the arrays `Trainer.save` writes, their validated reading (`Trainer.load_state`), and the
check that a checkpoint or config.json belongs to the run resuming from it.

Kept apart from the training loop (rl/trainer.py): reading a checkpoint is input handling (every member is checked
before anything is changed), not training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..checkpoints import rl_checkpoint_layout
from ..config import RLConfig
from ..errors import UserError
from ..model import TinyLM
from ..runs import from_json_array, json_array, load_npz, read_json
from ..settings import from_dict, to_dict

__all__ = ["RESUMABLE_CHANGES", "state_arrays", "load_state", "check_same_run", "config_from_run"]

RESUMABLE_CHANGES = ("steps",)
"""Settings a resumed run may change (`toyrlhf run --resume DIR --steps N` extends it); any other difference between
a checkpoint's config and the run's means the checkpoint (or config.json) belongs to another run."""


def state_arrays(trainer) -> dict:
    """Everything a resumed run needs, as named arrays: weights, Adam states, step, RNG, KL controller, config."""
    m = trainer.models
    out = {"step": np.array(trainer.step_count), "policy": m.policy.flat, "reference": m.reference.flat,
           "model_config": json_array(m.policy.config.to_dict()), "config": json_array(to_dict(trainer.cfg)),
           "rng": json_array(trainer.rng.bit_generator.state), "kind": np.array("rl"),
           "task": np.array(trainer.cfg.task), "kl_ctl": json_array(trainer.kl_ctl.state_dict())}
    for k, v in trainer.opt.state().items():
        out[f"opt_{k}"] = v
    if trainer.cfg.entropy_target is not None:
        out["entropy_coef"] = np.array(trainer.entropy_coef)
    if m.critic is not None:
        out["critic"] = m.critic.flat
        for k, v in trainer.critic_opt.state().items():
            out[f"critic_opt_{k}"] = v
    return out


def load_state(trainer, path) -> None:
    """Restore everything `state_arrays` saved. Only the members it writes are read, each within the size its
    shape allows (checkpoints.rl_checkpoint_layout), and the whole checkpoint is checked before anything is
    changed. A UserError for a checkpoint of another kind, shape, run or algorithm; weights or Adam moments that
    are not finite float64 vectors of the model's size, or a negative second moment; a step or Adam count that
    is not a non-negative integer; a corrupt RNG, KL-controller or entropy-coefficient state."""
    m, cfg = trainer.models, trainer.cfg
    n_critic = None if m.critic is None else m.critic.flat.size
    z = load_npz(path, **rl_checkpoint_layout(m.policy.flat.size, n_critic,
                                              entropy_coef=cfg.entropy_target is not None))
    if str(z["kind"]) != "rl":
        raise UserError(f"{path}: holds a {z['kind']} model, not an RL run's checkpoint")
    try:
        st = _checked_state(trainer, z)
    except (KeyError, ValueError, TypeError, OverflowError, json.JSONDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise UserError(f"{path}: checkpoint does not match this run ({msg})") from None
    for model, flat in st["flats"]:
        model.set_flat(flat)
    trainer.opt.load_state(st["opt"])
    if st["critic_opt"] is not None:
        trainer.critic_opt.load_state(st["critic_opt"])
    trainer.rng.bit_generator.state = st["rng"]
    trainer.kl_ctl.load_state_dict(st["kl"])
    trainer.entropy_coef = st["entropy_coef"]
    trainer.step_count = st["step"]


def _count(z, name: str) -> int:
    """A float or a boolean is no count: int() would silently truncate it."""
    a = z[name]
    if a.shape != () or a.dtype.kind not in "iu" or int(a) < 0:
        raise ValueError(f"{name} is not a non-negative integer")
    return int(a)


def _vector(z, name: str, model: TinyLM) -> np.ndarray:
    """float32 weights would load, but the resume would be inexact."""
    a = z[name]
    if a.dtype != np.float64:
        raise ValueError(f"{name} holds {a.dtype} numbers, not float64")
    if a.shape != model.flat.shape:
        raise ValueError(f"{name} has shape {a.shape}, this run's model {model.flat.size} parameters")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds non-finite numbers")
    return a


def _adam(z, prefix: str, model: TinyLM) -> dict:
    st = {"m": _vector(z, f"{prefix}_m", model), "v": _vector(z, f"{prefix}_v", model), "t": _count(z, f"{prefix}_t")}
    if np.any(st["v"] < 0):
        raise ValueError("negative Adam second moment (v is a running mean of squares)")
    return st


def _checked_state(trainer, z) -> dict:
    """Every member of checkpoint `z` read and checked (ValueError and friends on the first bad one); nothing set."""
    m, cfg = trainer.models, trainer.cfg
    if from_json_array(z["model_config"]) != m.policy.config.to_dict():
        raise ValueError("a model of another shape")
    out = {"step": _count(z, "step"), "rng": from_json_array(z["rng"]), "kl": from_json_array(z["kl_ctl"]),
           "opt": _adam(z, "opt", m.policy), "critic_opt": None,
           "flats": [(m.policy, _vector(z, "policy", m.policy)), (m.reference, _vector(z, "reference", m.reference))]}
    if m.critic is not None:
        out["flats"].append((m.critic, _vector(z, "critic", m.critic)))
        out["critic_opt"] = _adam(z, "critic_opt", m.critic)
    check_same_run(z, cfg)
    probe = np.random.default_rng()
    try:
        probe.bit_generator.state = out["rng"]      # validates the RNG state without touching ours
    except Exception as e:  # noqa: BLE001 - numpy raises ValueError, TypeError, KeyError, OverflowError...
        raise ValueError(f"corrupt RNG state ({e.__class__.__name__})") from None
    type(trainer.kl_ctl)(1.0, 1.0, 1.0).load_state_dict(out["kl"])
    out["entropy_coef"] = trainer.entropy_coef
    if cfg.entropy_target is not None:   # adaptive_entropy_coef keeps it in [0, cap] after the first step
        e = z["entropy_coef"]
        if e.shape != () or e.dtype.kind != "f" or not 0 <= float(e) <= max(cfg.entropy_coef_max, cfg.entropy_coef):
            raise ValueError(f"entropy_coef is not a number in [0, {cfg.entropy_coef_max}]")
        out["entropy_coef"] = float(e)
    return out


def check_same_run(z: dict, cfg: RLConfig) -> None:
    """ValueError unless checkpoint arrays `z` were written by a run with `cfg`'s settings (apart from
    RESUMABLE_CHANGES): a checkpoint of another seed or task of the same shape, or another run's config.json."""
    if "config" not in z:
        raise ValueError("no config in the checkpoint")
    saved = from_json_array(z["config"])
    if not isinstance(saved, dict):
        raise ValueError("the checkpoint's config is not a table")
    ours = to_dict(cfg)
    diff = sorted(k for k in set(saved) | set(ours) if k not in RESUMABLE_CHANGES and saved.get(k) != ours.get(k))
    if "task" in z and str(z["task"]) != cfg.task and "task" not in diff:
        diff.insert(0, "task")
    if diff:
        k = diff[0]
        raise ValueError(f"written by another run: {k} {_short(saved.get(k))} in the checkpoint, {_short(ours.get(k))} "
                         f"in config.json" + (f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""))


def _short(v) -> str:
    text = json.dumps(v, sort_keys=True) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def config_from_run(run_dir) -> RLConfig:
    data = read_json(Path(run_dir) / "config.json")
    return from_dict(RLConfig, data)
