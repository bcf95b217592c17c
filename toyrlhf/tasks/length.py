"""length: a verifiable answer followed by reward-neutral fillers, the test bed for GRPO's length bias."""
from __future__ import annotations

import numpy as np

from ..tokens import BOS, EOS, OUT_OFFSET, PAD, SPECIAL, is_truncated
from .base import Task


class LengthTask(Task):
    """Verifiable task whose correctness does not depend on length: the test bed for GRPO's length bias.

    Prompt [BOS, x, y] with x, y in A..D (read as 0..3; 16 prompts). The answer is (x + y) % 4 as a letter.
    A completion is the answer token, then any number of fillers ("um", "so"), then EOS.
    Gold reward: accuracy = 1 if the first token is the right answer and the completion ends with EOS
    (weight 1.0). Nothing else: length is reward-neutral (what follows the answer is ignored).

    Corpus: the right answer first w.p. 0.4, else each wrong answer w.p. 0.2; then at each step EOS w.p. 0.35,
    else "um" or "so" (0.325 each), so lengths vary widely (and 18% of corpus completions are truncated).
    """

    ANSWERS = ("A", "B", "C", "D")
    FILLERS = ("um", "so")
    P_RIGHT = 0.4
    P_EOS = 0.35

    def __init__(self):
        self.name = "length"
        self.description = "verifiable: answer (x+y) mod 4, fillers are reward-neutral (tests length bias)"
        self.vocab = SPECIAL + self.ANSWERS + self.FILLERS
        self.prompt_len = 3
        self.max_new_tokens = 5
        self.verifiable = True
        self.reward_weights = {"accuracy": 1.0}
        self.answer0 = len(SPECIAL)                      # token id of "A"
        self.filler0 = self.answer0 + len(self.ANSWERS)  # token id of "um"

    def prompts(self) -> np.ndarray:
        k = len(self.ANSWERS)
        x, y = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
        n = x.size
        return np.stack([np.full(n, BOS), x.ravel() + self.answer0, y.ravel() + self.answer0],
                        axis=1).astype(np.int64)

    def answer(self, prompts) -> np.ndarray:
        """(B,) token id of the right answer."""
        prompts = np.asarray(prompts)
        k = len(self.ANSWERS)
        return (prompts[:, 1] + prompts[:, 2] - 2 * self.answer0) % k + self.answer0

    def reward_components(self, prompts, completions) -> dict[str, np.ndarray]:
        prompts, completions = self._check_full(prompts, completions)
        ok = (completions[:, 0] == self.answer(prompts)) & ~is_truncated(completions)
        return {"accuracy": ok.astype(np.float64)}

    def is_correct(self, prompts, completions) -> np.ndarray:
        return self.reward_components(prompts, completions)["accuracy"] == 1.0

    def corpus_probs(self, prompts, prefix) -> np.ndarray:
        prompts, prefix = self._check(prompts, prefix)
        B, t = prefix.shape
        probs = np.zeros((B, self.n_out))
        k = len(self.ANSWERS)
        if t == 0:
            answers = slice(self.answer0 - OUT_OFFSET, self.answer0 - OUT_OFFSET + k)
            probs[:, answers] = (1.0 - self.P_RIGHT) / (k - 1)
            probs[np.arange(B), self.answer(prompts) - OUT_OFFSET] = self.P_RIGHT
        else:
            probs[:, EOS - OUT_OFFSET] = self.P_EOS
            probs[:, self.filler0 - OUT_OFFSET:] = (1.0 - self.P_EOS) / len(self.FILLERS)
        return probs

    def demonstrations(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The right answer, then 0..3 fillers (uniform count, uniform fillers), then EOS."""
        prompts = self.sample_prompts(n, rng)
        T = self.max_new_tokens
        n_fill = rng.integers(0, T - 1, size=n)
        fillers = self.filler0 + rng.integers(len(self.FILLERS), size=(n, T))
        cols = np.arange(T)[None, :]
        comps = np.where(cols <= n_fill[:, None], fillers, PAD)
        comps[:, 0] = self.answer(prompts)
        comps[np.arange(n), n_fill + 1] = EOS
        return prompts, comps.astype(np.int64)
