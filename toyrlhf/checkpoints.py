"""Model checkpoints and the stage cache: one layout written and read here for every stage.

A model checkpoint (.npz, no pickles) holds

    flat          the model's flat parameter vector
    model_config  its shape (ModelConfig as JSON)
    kind          'lm' (pretrained / SFT) or 'rm' (reward model)
    task          the task it was trained on
    config        the producing stage's settings (JSON; the cache files: every upstream stage's too)
    + extras      the reward model's normalisation reward_mean, reward_std and, in the cache, its summary

The stage cache ($TOYRLHF_CACHE_DIR) keeps one such file per stage and configuration, named
<stage>-<task>-s<seed>-<config_hash of the stage's and its upstream stages' configs>.npz, so that every RL run of a
task and seed starts from the same weights. `cached_model` is the one function that reads or builds them.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import UserError
from .model import ModelConfig, TinyLM, param_shapes
from .runs import NumericalError, from_json_array, json_array, load_npz, save_npz
from .settings import config_hash, to_dict

EXTRAS = ("config", "summary", "reward_mean", "reward_std")
"""The optional members a model checkpoint may hold; nothing else in the file is read."""
METADATA_BYTES = 1 << 20
"""Size limit of each metadata member (JSON strings, 0-d numbers): far above any real one."""


RL_WEIGHTS = ("policy", "reference", "opt_m", "opt_v")
"""An RL checkpoint's (Trainer.state_arrays) float64 vectors of one number per policy parameter."""
RL_CRITIC_WEIGHTS = ("critic", "critic_opt_m", "critic_opt_v")
"""The same, one number per critic parameter (the critic has the reward model's shape when it starts from it)."""
RL_METADATA = ("step", "model_config", "config", "rng", "kind", "task", "kl_ctl", "opt_t")
"""An RL checkpoint's counters and JSON / name members; with a critic also critic_opt_t, with an adaptive entropy
coefficient (entropy_target) also entropy_coef."""


def rl_checkpoint_layout(n_policy: int, n_critic: int | None = None, *, entropy_coef: bool = False) -> dict:
    """`load_npz` keyword arguments for an RL run's checkpoint of a policy with n_policy weights (and a critic with
    n_critic, None: no critic members are read): the members it must hold (nothing else in the file is read) and a
    byte limit for each, 8 bytes per parameter for the weight vectors and METADATA_BYTES for the rest, so that a
    crafted member is refused before it is read."""
    limits = {k: 8 * n_policy for k in RL_WEIGHTS}
    metadata = RL_METADATA + (("entropy_coef",) if entropy_coef else ())
    if n_critic is not None:
        limits.update({k: 8 * n_critic for k in RL_CRITIC_WEIGHTS})
        metadata += ("critic_opt_t",)
    return {"required": tuple(limits) + metadata, "optional": (), "limits": limits, "max_bytes": METADATA_BYTES}


def model_params(mcfg: ModelConfig) -> int:
    """The number of weights of a model of this shape (the length of its flat vector)."""
    return sum(int(np.prod(s)) for s in param_shapes(mcfg).values())


def save_model(path, model: TinyLM, *, kind: str, task: str, config: dict, extra: dict | None = None) -> None:
    """A model checkpoint: flat weights + the model shape + the producing stage's full config (+ extras)."""
    arrays = {"flat": model.flat, "model_config": json_array(model.config.to_dict()),
              "kind": np.array(kind), "task": np.array(task), "config": json_array(config)}
    for k, v in (extra or {}).items():
        arrays[k] = np.asarray(v)
    save_npz(path, arrays)


def load_model(path, kind: str | None = None) -> tuple[TinyLM, dict]:
    """Load a model checkpoint; returns (model, the raw arrays). Wrong kind / shape / size -> UserError.

    The metadata is read first; the weights only once the model shape says how many there must be."""
    z = load_npz(path, required=("model_config", "kind", "task"), optional=EXTRAS, max_bytes=METADATA_BYTES)
    if kind is not None and str(z["kind"]) != kind:
        raise UserError(f"{path}: holds a {z['kind']} model, expected a {kind} model")
    try:
        mcfg = ModelConfig(**from_json_array(z["model_config"]))
        n = model_params(mcfg)
    except (ValueError, TypeError) as e:
        raise UserError(f"{path}: corrupt checkpoint ({str(e).splitlines()[0]})") from None
    z.update(load_npz(path, required=("flat",), optional=(), max_bytes=8 * n))
    try:
        if z["flat"].shape != (n,):
            raise ValueError(f"{z['flat'].size} weights for a model of {n}")
        model = TinyLM(mcfg, seed=0)
        model.set_flat(z["flat"])
    except (ValueError, TypeError) as e:
        raise UserError(f"{path}: corrupt checkpoint ({str(e).splitlines()[0]})") from None
    if not np.all(np.isfinite(model.flat)):
        raise UserError(f"{path}: checkpoint holds non-finite weights")
    return model, z


def check_finite(model: TinyLM, what: str) -> None:
    """NumericalError unless every weight is finite (the end of each stage's training, and before caching)."""
    if not np.all(np.isfinite(model.flat)):
        raise NumericalError(f"non-finite parameters after the last step of {what}; nothing saved (try a lower lr)")


# ------------------------------------------------------------------------------------------ stage cache
def cache_dir() -> Path:
    """$TOYRLHF_CACHE_DIR, default ~/.cache/toyrlhf (created on first use)."""
    path = Path(os.environ.get("TOYRLHF_CACHE_DIR") or Path.home() / ".cache" / "toyrlhf")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # a probe with a unique name: a shared fixed name raced between concurrent processes (one unlinked the
        # other's probe, which then read the cache as "not writable")
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        raise UserError(f"stage cache {path} is not writable; set TOYRLHF_CACHE_DIR to a writable folder") from None
    return path


def cache_path(stage: str, configs: dict) -> Path:
    """<stage>-<task>-s<seed>-<hash>.npz for the stage's configs, upstream first (configs['pretrain'] gives the
    task and seed)."""
    pc = configs["pretrain"]
    return cache_dir() / f"{stage}-{pc.task}-s{pc.seed}-{config_hash(*configs.values())}.npz"


def cached_model(stage: str, configs: dict, build: Callable[[], tuple[TinyLM, dict]], *, kind: str = "lm",
                 what: str | None = None) -> tuple[TinyLM, dict, Path]:
    """The stage cache: (model, arrays, path) of the stage's cache file, built on a miss.

    build() -> (model, extra arrays) trains the stage (its loop stops at the first non-finite loss with a
    NumericalError); a model with any non-finite weight is never cached. `configs` maps stage name -> config,
    upstream first: they make the key and are stored in the file."""
    path = cache_path(stage, configs)
    if path.exists():
        return (*load_model(path, kind), path)
    model, extra = build()
    check_finite(model, what or stage)
    task = configs["pretrain"].task
    save_model(path, model, kind=kind, task=task, config={k: to_dict(v) for k, v in configs.items()}, extra=extra)
    return model, extra, path
