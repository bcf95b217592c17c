"""Reinforcement learning from (model or rule) rewards: rollouts, advantages, losses, presets, one trainer."""
