"""The method registry: RLConfig.method -> the trainer class `rl/run.py:train` drives.

Every trainer has ``Trainer``'s interface (``step() -> metrics``, ``state_arrays`` / ``save`` / ``load_state``,
``models``, ``should_stop``, ``exact_fn``) and the same checkpoint format, so run folders, resume, `toyrlhf compare`
and `toyrlhf plot` treat them alike. The presets (`toyrlhf algos`) all use method 'rl'.
"""
from __future__ import annotations

from .dpo import DPOTrainer, OnlineDPOTrainer
from .rft import OnlineRFTTrainer, RFTTrainer, SupervisedTrainer
from .trainer import Models, Trainer

TRAINERS: dict[str, type[Trainer]] = {
    "rl": Trainer,
    "sft": SupervisedTrainer,
    "rft": RFTTrainer,
    "online_rft": OnlineRFTTrainer,
    "dpo": DPOTrainer,
    "online_dpo": OnlineDPOTrainer,
}


def make_trainer(cfg, models: Models) -> Trainer:
    """The trainer of cfg.method over `models` (rl.trainer.build_models builds them for every method)."""
    return TRAINERS[cfg.method](cfg, models)
