"""Shared helpers of the exact engine's tests: a tiny random model, two prompts, a reward fixed per completion.

Statistical tests use fixed seeds and a stated tolerance |z| <= 4 (two-sided p ~ 6e-5 per comparison); a "detected"
difference needs |z| > 4. Exact-vs-exact comparisons use relative errors of 1e-9 or tighter (float64 round-off);
exact-vs-finite-differences use 1e-6.
"""
from __future__ import annotations

import numpy as np

from toyrlhf import tokens as tk
from toyrlhf.model import ModelConfig, TinyLM

Z = 4.0
FD_TOL = 1e-6
EXACT_TOL = 1e-9


def tiny_model(seed, V=5, arch="mlp", k=2, d=3, h=4):
    """V=5: output tokens EOS + 2 words, so a prompt has 1 + 2 + 4 + 8 = 15 completions at T=3."""
    return TinyLM(ModelConfig(vocab_size=V, arch=arch, context=k, embed=d, hidden=h), seed=seed, init="random")


PROMPTS = np.array([[tk.BOS, 3], [tk.BOS, 4]])
T = 3


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def fixed_reward(enum, seed, values=None):
    """A reward attached to each completion (as a function of its tokens, so it survives re-enumeration)."""
    rng = np.random.default_rng(seed)
    key = enum.tokens @ (np.arange(enum.tokens.shape[1]) * 7 + 3) % 1009
    table = rng.normal(size=1009) if values is None else rng.choice(values, size=1009)
    return table[key]
