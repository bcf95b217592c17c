"""Reinforcement learning from (model or rule) rewards: rollouts, advantages, losses, presets, one trainer."""
# registers more estimators into advantages.ADVANTAGE_ESTIMATORS (a sibling module; an import from advantages.py
# itself would be a cycle)
from . import advantages_baselines  # noqa: F401
