"""arith (two-step modular arithmetic, rule-verified, with step rewards) and arith_hard (its b = 4 prompts
demonstrated with a misconception)."""
from __future__ import annotations

import numpy as np

from ..tokens import BOS, EOS, OUT_OFFSET, PAD, SPECIAL, completion_lengths
from .base import Task


def _onehot(cols: np.ndarray, width: int) -> np.ndarray:
    """(B,) column indices -> (B, width) float one-hot rows."""
    out = np.zeros((len(cols), width))
    out[np.arange(len(cols)), cols] = 1.0
    return out


class ArithTask(Task):
    """Two-step modular arithmetic (mod 5), rule-verified, in the style of DeepSeek-R1's rewards.

    Prompt [BOS, a, b, c, =] (125 prompts). Intended completion [s1, s2, EOS] with s1 = (a+b) % 5 (step 1)
    and s2 = (s1 + c) % 5 (step 2, the final answer). With a 4-token context window the model sees a, b, c
    when it writes s1 and c, s1 when it writes s2.
    Gold reward components:
        accuracy  1 if the completion is well-formed and s2 = (a+b+c) % 5              (weight 1.0)
        format    1 if the completion is exactly two digits then EOS                     (weight 0.2)
    Step rewards (process supervision): step 1 ends at index 0, reward 1 if s1 = (a+b) % 5; step 2 ends at
    index 1, reward 1 if s2 = (s1 + c) % 5 for the model's *own* s1. A step exists only where the completion
    put a non-EOS token at that index.

    Corpus: noisy arithmetic, so pretraining does not solve the task. Each position mixes a rule with the
    uniform distribution over the 7 output tokens (EOS, digits, "="):
        t = 0   the right s1 w.p. 0.5, else uniform
        t = 1   after a digit d: (d + c) % 5 w.p. 0.5, else uniform; after "=": uniform
        t >= 2  EOS w.p. 0.8, else uniform
    """

    M = 5
    EQ = 3 + 5  # token id of "="

    def __init__(self):
        self.name = "arith"
        self.description = "verifiable: (a+b+c) mod 5 in two steps; accuracy + format rewards and step rewards"
        self.vocab = SPECIAL + tuple(str(d) for d in range(self.M)) + ("=",)
        self.prompt_len = 5
        self.max_new_tokens = 4
        self.verifiable = True
        self.reward_weights = {"accuracy": 1.0, "format": 0.2}
        self.digit0 = len(SPECIAL)  # token id of "0"

    def prompts(self) -> np.ndarray:
        a, b, c = np.meshgrid(*[np.arange(self.M)] * 3, indexing="ij")
        n = a.size
        digits = np.stack([a.ravel(), b.ravel(), c.ravel()], axis=1) + self.digit0
        return np.concatenate([np.full((n, 1), BOS), digits, np.full((n, 1), self.EQ)], axis=1).astype(np.int64)

    def _values(self, prompts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(prompts[:, i] - self.digit0 for i in (1, 2, 3))

    def _is_digit(self, tok) -> np.ndarray:
        return (tok >= self.digit0) & (tok < self.digit0 + self.M)

    def reward_components(self, prompts, completions) -> dict[str, np.ndarray]:
        prompts, completions = self._check_full(prompts, completions)
        a, b, c = self._values(prompts)
        well_formed = (self._is_digit(completions[:, 0]) & self._is_digit(completions[:, 1])
                       & (completions[:, 2] == EOS))
        right = completions[:, 1] - self.digit0 == (a + b + c) % self.M
        return {"accuracy": (well_formed & right).astype(np.float64), "format": well_formed.astype(np.float64)}

    def is_correct(self, prompts, completions) -> np.ndarray:
        return self.reward_components(prompts, completions)["accuracy"] == 1.0

    def step_rewards(self, prompts, completions):
        prompts, completions = self._check_full(prompts, completions)
        a, b, c = self._values(prompts)
        B, T = completions.shape
        lengths = completion_lengths(completions)
        s1, s2 = completions[:, 0], completions[:, 1]
        step_end = np.zeros((B, T), dtype=bool)
        step_end[:, 0] = s1 != EOS
        step_end[:, 1] = (lengths >= 2) & (s2 != EOS)
        rewards = np.zeros((B, T))
        rewards[:, 0] = s1 - self.digit0 == (a + b) % self.M
        # step 2 is judged against the model's own s1: a correct step from a wrong premise still earns it
        rewards[:, 1] = self._is_digit(s1) & (s2 - self.digit0 == (s1 - self.digit0 + c) % self.M)
        rewards[~step_end] = 0.0
        return rewards, step_end

    def corpus_probs(self, prompts, prefix) -> np.ndarray:
        prompts, prefix = self._check(prompts, prefix)
        a, b, c = self._values(prompts)
        B, t = prefix.shape
        rule = np.full((B, self.n_out), 1.0 / self.n_out)   # rows without a rule stay uniform
        if t == 0:
            eps = 0.5
            rule = _onehot((a + b) % self.M + self.digit0 - OUT_OFFSET, self.n_out)
        elif t == 1:
            eps = 0.5
            d = prefix[:, 0] - self.digit0
            digit = self._is_digit(prefix[:, 0])
            target = (np.where(digit, d, 0) + c) % self.M + self.digit0 - OUT_OFFSET
            rule[digit] = _onehot(target[digit], self.n_out)
        else:
            eps = 0.2
            rule = _onehot(np.full(B, EOS - OUT_OFFSET), self.n_out)
        return (1.0 - eps) * rule + eps / self.n_out

    def demonstrations(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Always the intended, correct working: [s1, s2, EOS]."""
        prompts = self.sample_prompts(n, rng)
        a, b, c = self._values(prompts)
        comps = np.full((n, self.max_new_tokens), PAD, dtype=np.int64)
        comps[:, 0] = (a + b) % self.M + self.digit0
        comps[:, 1] = (a + b + c) % self.M + self.digit0
        comps[:, 2] = EOS
        return prompts, comps


class ArithHardTask(ArithTask):
    """arith with hard prompts (issue 16, item 4): the prompts with b = 4 (25 of 125) are demonstrated with a
    misconception, s2 = (s1 + c + 1) % 5, except a share `demo_right` (2 %) of their demonstrations, which are
    right, and the corpus's step-2 rule on them is the same misconception. Rewards, prompts and the window are
    arith's; the SFT model's success probability on the hard
    prompts is small (a few per cent), so pass@k at large k asks whether RL finds what the SFT model rarely
    samples (Yue et al. 2025; DeepSeekMath Fig. 7). With a 4-token window the model sees b, c, "=" and s1 when it
    writes s2, so the misconception is representable."""

    HARD_B = 4
    demo_right = 0.02

    def __init__(self):
        super().__init__()
        self.name = "arith_hard"
        self.description = "arith whose b = 4 prompts are demonstrated with a misconception: SFT rarely solves them"

    def hard(self, prompts) -> np.ndarray:
        """(n,) bool: the hard prompts (b = 4)."""
        return prompts[:, 2] - self.digit0 == self.HARD_B

    def corpus_probs(self, prompts, prefix) -> np.ndarray:
        """arith's corpus, except that on a hard prompt the step-2 rule is the misconception (d + c + 1) % 5."""
        probs = super().corpus_probs(prompts, prefix)
        prompts, prefix = self._check(prompts, prefix)
        if prefix.shape[1] == 1:
            rows = self.hard(prompts) & self._is_digit(prefix[:, 0])
            j = np.arange(self.n_out)
            digits = (j >= self.digit0 - OUT_OFFSET) & (j < self.digit0 - OUT_OFFSET + self.M)
            base = super().corpus_probs(prompts[rows], prefix[rows])
            d = base[:, digits]
            probs[np.ix_(rows, digits)] = np.roll(d, 1, axis=1)
            probs[np.ix_(rows, ~digits)] = base[:, ~digits]
        return probs

    def demonstrations(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """arith's demonstrations; on a hard prompt s2 is (s1 + c + 1) % 5 unless a draw < demo_right."""
        prompts, comps = super().demonstrations(n, rng)
        wrong = self.hard(prompts) & (rng.random(n) >= self.demo_right)
        comps[wrong, 1] = (comps[wrong, 1] - self.digit0 + 1) % self.M + self.digit0
        return prompts, comps
