"""The Task interface: vocabulary and prompts, the gold reward from named components, the pretraining corpus as an
explicit next-token distribution (sampling, log-probabilities and its exact entropy all read it), demonstrations."""
from __future__ import annotations

import numpy as np

from .. import special
from ..tokens import BOS, EOS, OUT_OFFSET, PAD, completion_lengths, decode


class Task:
    """Base class. Subclasses set the attributes in `__init__` and implement `prompts`, `reward_components`,
    `corpus_probs` and `demonstrations` (plus `is_correct` / `step_rewards` where they apply)."""

    name: str
    description: str
    vocab: tuple[str, ...]
    prompt_len: int
    max_new_tokens: int
    verifiable: bool
    reward_weights: dict[str, float]

    # ------------------------------------------------------------------ vocabulary and prompts
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def n_out(self) -> int:
        """V_out: the output vocabulary (ids 2..V-1, EOS and the task tokens)."""
        return self.vocab_size - OUT_OFFSET

    def prompts(self) -> np.ndarray:
        """(n_prompts, P) int64: the whole prompt set; the prompt distribution is uniform over it."""
        raise NotImplementedError

    def sample_prompts(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, P): uniform draws (with replacement) from `prompts()`."""
        all_prompts = self.prompts()
        return all_prompts[rng.integers(len(all_prompts), size=int(n))]

    def _check(self, prompts, completions) -> tuple[np.ndarray, np.ndarray]:
        prompts = np.asarray(prompts, dtype=np.int64)
        completions = np.asarray(completions, dtype=np.int64)
        if prompts.ndim != 2 or prompts.shape[1] != self.prompt_len:
            raise ValueError(f"prompts must be (B, {self.prompt_len}), got {prompts.shape}")
        if completions.ndim != 2 or len(completions) != len(prompts):
            raise ValueError(f"completions must be (B, t) with B = {len(prompts)}, got {completions.shape}")
        return prompts, completions

    def _check_full(self, prompts, completions) -> tuple[np.ndarray, np.ndarray]:
        prompts, completions = self._check(prompts, completions)
        if completions.shape[1] != self.max_new_tokens:
            raise ValueError(f"completions must be (B, {self.max_new_tokens}), got {completions.shape}")
        return prompts, completions

    # ------------------------------------------------------------------ rewards
    def reward_components(self, prompts, completions) -> dict[str, np.ndarray]:
        """Named (B,) float64 reward features of each completion; the gold reward weighs them."""
        raise NotImplementedError

    def gold_reward(self, prompts, completions) -> np.ndarray:
        """(B,) float64: sum_k reward_weights[k] * reward_components[k]."""
        comps = self.reward_components(prompts, completions)
        total = np.zeros(len(np.asarray(prompts)))
        for key, weight in self.reward_weights.items():
            total += weight * comps[key]
        return total

    def is_correct(self, prompts, completions) -> np.ndarray:
        """(B,) bool, for verifiable tasks; a task without a rule raises NotImplementedError."""
        raise NotImplementedError(f"task {self.name!r} is not verifiable: it has no correctness rule")

    def step_rewards(self, prompts, completions):
        """Process supervision: (rewards (B, T) float64, step_end (B, T) bool), or None if the task has no steps."""
        return None

    @property
    def has_step_rewards(self) -> bool:
        """True if the task overrides ``step_rewards`` (process supervision is possible)."""
        return type(self).step_rewards is not Task.step_rewards

    # ------------------------------------------------------------------ the pretraining corpus
    def corpus_probs(self, prompts, prefix) -> np.ndarray:
        """(B, V_out) next-token distribution of the corpus generator after prompt (B, P) + prefix (B, t)."""
        raise NotImplementedError

    def sample_corpus_completions(self, prompts, rng: np.random.Generator) -> np.ndarray:
        """(B, T) completions drawn from the corpus generator for the given prompts; PAD after EOS."""
        prompts = np.asarray(prompts, dtype=np.int64)
        B, T = len(prompts), self.max_new_tokens
        comps = np.full((B, T), PAD, dtype=np.int64)
        alive = np.ones(B, dtype=bool)
        for t in range(T):
            rows = np.flatnonzero(alive)
            if len(rows) == 0:
                break
            probs = self.corpus_probs(prompts[rows], comps[rows, :t])
            cdf = np.cumsum(probs, axis=1)
            # scale u by the row total so rounding can never select a zero-probability last column
            u = rng.random(len(rows)) * cdf[:, -1]
            pick = (cdf <= u[:, None]).sum(axis=1)
            comps[rows, t] = pick + OUT_OFFSET
            alive[rows] = comps[rows, t] != EOS
        return comps

    def sample_corpus(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Pretraining data: (prompts (n, P), completions (n, T)), prompts uniform, completions from `corpus_probs`."""
        prompts = self.sample_prompts(n, rng)
        return prompts, self.sample_corpus_completions(prompts, rng)

    def corpus_logprob(self, prompts, completions) -> np.ndarray:
        """(B,) log p(completion | prompt) under the corpus generator (tokens up to and including EOS)."""
        prompts, completions = self._check(prompts, completions)
        lengths = completion_lengths(completions)
        B = len(prompts)
        out = np.zeros(B)
        for t in range(completions.shape[1]):
            rows = np.flatnonzero(lengths > t)
            if len(rows) == 0:
                break
            probs = self.corpus_probs(prompts[rows], completions[rows, :t])
            with np.errstate(divide="ignore"):
                out[rows] += np.log(probs[np.arange(len(rows)), completions[rows, t] - OUT_OFFSET])
        return out

    def _corpus_exact(self) -> tuple[float, float]:
        """(total entropy in nats, expected completion length) of the corpus, by walking its prefix tree.

        Level t holds every (prompt, prefix of length t) the generator can reach without having emitted EOS,
        with its probability. Only children of probability exactly 0 are dropped, so the sums are exact.
        """
        cached = getattr(self, "_corpus_exact_cache", None)
        if cached is not None:
            return cached
        prompts = self.prompts()
        n = len(prompts)
        rows = np.arange(n)                                 # which prompt each tree node belongs to
        prefix = np.zeros((n, 0), dtype=np.int64)
        weight = np.full(n, 1.0 / n)                        # P(prompt, prefix)
        entropy = np.log(n)                                 # the prompt tokens: uniform over the set
        expected_len = 0.0
        for t in range(self.max_new_tokens):
            probs = self.corpus_probs(prompts[rows], prefix)
            entropy += weight @ special.entr(probs).sum(axis=1)
            expected_len += weight.sum()                    # every live node predicts one more token
            # children that continue: any non-EOS token (column 0 is EOS) with nonzero probability
            r, j = np.nonzero(probs[:, 1:] > 0)
            weight = weight[r] * probs[r, j + 1]
            prefix = np.concatenate([prefix[r], (j + 1 + OUT_OFFSET)[:, None]], axis=1)
            rows = rows[r]
        self._corpus_exact_cache = (float(entropy), float(expected_len))
        return self._corpus_exact_cache

    def corpus_entropy(self) -> float:
        """Exact entropy (nats) of one corpus sequence: log n_prompts + E[sum_t H(next | prompt, prefix)]."""
        return self._corpus_exact()[0]

    def corpus_expected_length(self) -> float:
        """Expected completion length (EOS included) of a corpus sequence."""
        return self._corpus_exact()[1]

    def corpus_entropy_per_token(self) -> float:
        """corpus_entropy / expected predicted tokens, where those are the P-1 prompt tokens after BOS
        plus the completion tokens (EOS included): the per-token loss floor of pretraining."""
        entropy, expected_len = self._corpus_exact()
        return entropy / (self.prompt_len - 1 + expected_len)

    # ------------------------------------------------------------------ SFT data and display
    def demonstrations(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """SFT data, (prompts (n, P), completions (n, T)): what a human demonstrator would write."""
        raise NotImplementedError

    def describe(self, prompt_row, completion_row) -> str:
        """Readable 'prompt -> completion' text (BOS padding dropped; a completion without <eos> was truncated)."""
        prompt_row = np.asarray(prompt_row)
        return f"{decode(prompt_row[prompt_row != BOS], self.vocab)} -> {decode(completion_row, self.vocab)}"

    def __repr__(self) -> str:
        return f"<Task {self.name}: V={self.vocab_size} P={self.prompt_len} T={self.max_new_tokens}>"
