"""Synthetic tasks: vocabulary, prompts, gold reward, pretraining corpus and demonstrations.

Every task is small enough that the exact engine can enumerate all (V-2)^T completions of a prompt.
A task bundles what the pipeline needs at each stage:

    pretraining  `corpus_probs` — the corpus generator as an explicit next-token distribution. Sampling
                 (`sample_corpus`) and the exact corpus entropy (`corpus_entropy`, the loss floor of a
                 perfect pretrained model) are both computed from it, so they cannot disagree.
    SFT          `demonstrations` — what a "human" would write.
    RM / RL      `reward_components` and `reward_weights` — the hidden gold reward is their weighted sum;
                 `is_correct` (rule-verifiable tasks) and `step_rewards` (process supervision).

The corpus generator of every task only looks at the last 4 tokens of prompt + completion (BOS-padded
on the left, as the model sees them), so a TinyLM with a 4-token context can match it exactly.

Tasks:
    pref    no rule: a hidden gold reward scores on-topic, varied, 3-word completions (the default)
    arith   verifiable two-step modular arithmetic, with outcome, format and step rewards (R1 style)
    length  verifiable, with correctness independent of length: a test bed for GRPO's length bias
    arith_hard  arith whose b = 4 prompts are demonstrated with a misconception (few SFT successes)
"""
from __future__ import annotations

import numpy as np
from scipy.special import entr

from .tokens import BOS, EOS, OUT_OFFSET, PAD, SPECIAL, completion_lengths, decode, is_truncated

def _onehot(cols: np.ndarray, width: int) -> np.ndarray:
    """(B,) column indices -> (B, width) float one-hot rows."""
    out = np.zeros((len(cols), width))
    out[np.arange(len(cols)), cols] = 1.0
    return out


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
            entropy += weight @ entr(probs).sum(axis=1)
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


# ====================================================================== pref
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


# ====================================================================== arith
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


# ====================================================================== length
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


# ====================================================================== registry
TASKS: dict[str, Task] = {task.name: task for task in (PrefTask(), ArithTask(), LengthTask(),
                                                       ArithHardTask())}
DEFAULT_TASK = "pref"


def get_task(name: str) -> Task:
    """The registered task called `name`."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None
