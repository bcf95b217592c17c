"""Shared by the task tests: token conventions and small builders of prompts and completions."""
from __future__ import annotations

import itertools

import numpy as np

from toyrlhf import tokens as tk
from toyrlhf.tasks import TASKS

NAMES = sorted(TASKS)
CONTEXT = 4  # the corpus generators promise to look at no more than the last 4 tokens


def seq(task, *words):
    """Token ids of a completion written as words, PAD-filled to max_new_tokens."""
    ids = [task.vocab.index(w) for w in words]
    return np.array(ids + [tk.PAD] * (task.max_new_tokens - len(ids)), dtype=np.int64)


def prompt(task, *words):
    return np.array([tk.BOS] + [task.vocab.index(w) for w in words], dtype=np.int64)


def batch(task, rows):
    """[(prompt words, completion words), ...] -> (prompts (B, P), completions (B, T))."""
    return (np.stack([prompt(task, *p) for p, _ in rows]), np.stack([seq(task, *c) for _, c in rows]))


def all_contexts(task, t):
    """Every (prompt, prefix of length t without EOS): (prompts (N, P), prefixes (N, t))."""
    P = task.prompts()
    words = np.arange(tk.EOS + 1, task.vocab_size)
    combos = list(itertools.product(words, repeat=t))
    prefixes = np.array(combos, dtype=np.int64).reshape(len(combos), t)
    return np.repeat(P, len(prefixes), axis=0), np.tile(prefixes, (len(P), 1))
