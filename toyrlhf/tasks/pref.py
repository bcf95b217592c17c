"""pref: no rule, a hidden gold reward over on-topic, varied, 3-word completions."""
from __future__ import annotations

import numpy as np

from ..tokens import BOS, SPECIAL, completion_lengths, is_truncated
from .base import Task


class PrefTask(Task):
    """Preference task: no rule, a hidden gold reward scores whole completions on several features.

    Prompt [BOS, t1, t2]: two topic words (36 ordered pairs, t1 == t2 allowed). Completion: words, then EOS.
    Gold reward components (weights in `reward_weights`):
        on_topic   number of completion words that are t1 or t2, capped at 2           (+0.6 each)
        variety    number of distinct words, capped at 3                                (+0.3 each)
        length     |number of words - 3|: the ideal is 3 words then EOS                 (-0.4 each)
        repetition number of immediate repeats (a word equal to the one before it)      (-0.3 each)
        truncated  1 if the completion never emitted EOS                                (-0.5)
    The best completions (e.g. "t1 t2 w <eos>" with w a third word) score 2.1, the worst -2.2.
    Variety and on_topic are counts over the whole completion, so a reward model that mean-pools 4-token
    windows can approximate but not reproduce the gold reward; the default reward model reads the whole sequence.

    Corpus: a first-order Markov chain over words that ignores the topics, so on-topic completions are no
    likelier than chance and repeats are common: first word from START; then EOS w.p. 0.2, else a word
    from the row transition[previous word] (stay 0.4, move to the next word in the list 0.3, any other 0.075).
    """

    WORDS = ("cat", "dog", "fox", "owl", "bee", "ant")
    START = np.array([0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    P_EOS = 0.2

    def __init__(self):
        self.name = "pref"
        self.description = "preference: on-topic, varied 3-word answers to a two-word topic (hidden gold reward)"
        self.vocab = SPECIAL + self.WORDS
        self.prompt_len = 3
        self.max_new_tokens = 5
        self.verifiable = False
        self.reward_weights = {"on_topic": 0.6, "variety": 0.3, "length": -0.4, "repetition": -0.3,
                               "truncated": -0.5}
        k = len(self.WORDS)
        self.word_ids = np.arange(k) + len(SPECIAL)
        # the "next" word is the following one in WORDS (cyclically): a drift that makes the chain non-trivial
        trans = np.full((k, k), 0.3 / (k - 2))
        trans[np.arange(k), np.arange(k)] = 0.4
        trans[np.arange(k), (np.arange(k) + 1) % k] = 0.3
        self.transition = trans

    def prompts(self) -> np.ndarray:
        t1, t2 = np.meshgrid(self.word_ids, self.word_ids, indexing="ij")
        n = t1.size
        return np.stack([np.full(n, BOS), t1.ravel(), t2.ravel()], axis=1).astype(np.int64)

    def _words_mask(self, completions) -> np.ndarray:
        """(B, T) True on word tokens (before EOS)."""
        n_words = completion_lengths(completions) - (~is_truncated(completions))
        return np.arange(completions.shape[1])[None, :] < n_words[:, None]

    def reward_components(self, prompts, completions) -> dict[str, np.ndarray]:
        prompts, completions = self._check_full(prompts, completions)
        words = self._words_mask(completions)
        n_words = words.sum(axis=1)
        topic = (completions == prompts[:, 1:2]) | (completions == prompts[:, 2:3])
        on_topic = np.minimum((topic & words).sum(axis=1), 2)
        present = ((completions[:, :, None] == self.word_ids[None, None, :]) & words[:, :, None]).any(axis=1)
        variety = np.minimum(present.sum(axis=1), 3)
        repeats = ((completions[:, 1:] == completions[:, :-1]) & words[:, 1:]).sum(axis=1)
        return {
            "on_topic": on_topic.astype(np.float64),
            "variety": variety.astype(np.float64),
            "length": np.abs(n_words - 3).astype(np.float64),
            "repetition": repeats.astype(np.float64),
            "truncated": is_truncated(completions).astype(np.float64),
        }

    def corpus_probs(self, prompts, prefix) -> np.ndarray:
        prompts, prefix = self._check(prompts, prefix)
        B, t = prefix.shape
        probs = np.zeros((B, self.n_out))
        if t == 0:                      # the first word: never EOS, topics ignored
            probs[:, 1:] = self.START
            return probs
        prev = prefix[:, -1] - self.word_ids[0]
        is_word = (prev >= 0) & (prev < len(self.WORDS))
        # after a non-word (only reachable by continuing past EOS) fall back to START: any valid row will do
        nxt = np.where(is_word[:, None], self.transition[np.clip(prev, 0, len(self.WORDS) - 1)], self.START)
        probs[:, 0] = self.P_EOS
        probs[:, 1:] = (1.0 - self.P_EOS) * nxt
        return probs

    def demonstrations(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Best-of-4: for each prompt a "human" drafts 4 corpus completions and keeps the one with the highest
        gold reward (ties: the first). Decent, but far from optimal."""
        drafts = 4
        prompts = self.sample_prompts(n, rng)
        reps = np.repeat(prompts, drafts, axis=0)
        comps = self.sample_corpus_completions(reps, rng)
        best = self.gold_reward(reps, comps).reshape(n, drafts).argmax(axis=1)
        return prompts, comps.reshape(n, drafts, -1)[np.arange(n), best]
