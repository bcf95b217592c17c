"""Special tokens and the padded-batch conventions every module shares.

Token ids: PAD=0, BOS=1, EOS=2, then each task's own tokens (3..V-1).
PAD and BOS are input-only symbols: the LM head predicts over the *output vocabulary*
ids 2..V-1 (EOS and the task tokens), so output index j is token id j + OUT_OFFSET.
A model can therefore never emit padding or a second BOS, and EOS stays distinct from PAD.

Layout of a batch (README, "Architecture"):
    tokens          (B, L) int64   prompt (left-padded with BOS to the task's prompt length P)
                                   followed by the completion (right-padded with PAD), L = P + T
    completion_mask (B, L) bool    True on completion tokens, EOS included
    logp            (B, L) float64 log pi(tokens[b, t] | tokens[b, <t]) where the mask is True, 0 elsewhere
A completion ends at its first EOS (included) or at T = max_new_tokens (then it is *truncated*).
"""
from __future__ import annotations

import numpy as np

PAD = 0
BOS = 1
EOS = 2
OUT_OFFSET = 2  # output index j  <->  token id j + OUT_OFFSET
SPECIAL = ("<pad>", "<bos>", "<eos>")


def completion_lengths(completions: np.ndarray) -> np.ndarray:
    """Length of each completion (B, T): tokens up to and including the first EOS, or T if none."""
    completions = np.asarray(completions)
    is_eos = completions == EOS
    has_eos = is_eos.any(axis=1)
    first = np.argmax(is_eos, axis=1)
    return np.where(has_eos, first + 1, completions.shape[1]).astype(np.int64)


def is_truncated(completions: np.ndarray) -> np.ndarray:
    """True where a completion (B, T) never emitted EOS (cut at max_new_tokens)."""
    return ~(np.asarray(completions) == EOS).any(axis=1)


def pad_after_eos(completions: np.ndarray) -> np.ndarray:
    """Replace everything after the first EOS with PAD (copy)."""
    completions = np.array(completions, dtype=np.int64, copy=True)
    lengths = completion_lengths(completions)
    cols = np.arange(completions.shape[1])[None, :]
    completions[cols >= lengths[:, None]] = PAD
    return completions


def join(prompts: np.ndarray, completions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate prompts (B, P) and completions (B, T) into tokens (B, P+T) and completion_mask (B, P+T)."""
    prompts = np.asarray(prompts, dtype=np.int64)
    completions = pad_after_eos(completions)
    tokens = np.concatenate([prompts, completions], axis=1)
    lengths = completion_lengths(completions)
    mask = np.zeros(tokens.shape, dtype=bool)
    cols = np.arange(completions.shape[1])[None, :]
    mask[:, prompts.shape[1]:] = cols < lengths[:, None]
    return tokens, mask


def split(tokens: np.ndarray, prompt_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `join`: (prompts (B, P), completions (B, T))."""
    tokens = np.asarray(tokens)
    return tokens[:, :prompt_len], tokens[:, prompt_len:]


def decode(ids, vocab) -> str:
    """Human-readable text of a token-id sequence (stops after EOS, drops PAD)."""
    out = []
    for i in np.asarray(ids).tolist():
        if i == PAD:
            continue
        out.append(vocab[i])
        if i == EOS:
            break
    return " ".join(out)
