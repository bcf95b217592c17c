"""Preference data: K completions per prompt from a policy, ranked by a noisy model of the hidden gold reward.

Labelling model (the "human" of the simulator):

    K = 2   Bradley-Terry (Bradley & Terry 1952):   P(a > b | x) = sigma((r*(x,a) - r*(x,b)) / tau)
    K > 2   Plackett-Luce (Luce 1959; Plackett 1975): a whole ranking o_1 > o_2 > ... > o_K with
            P(o) = prod_i exp(r*(o_i)/tau) / sum_{j >= i} exp(r*(o_j)/tau)

Both are sampled in one vectorised step with the Gumbel-max trick: rank the completions by
r*/tau + G with G ~ Gumbel(0, 1) i.i.d.; the ranking is then exactly Plackett-Luce (for K = 2 the difference
of two Gumbels is Logistic(0, 1), i.e. Bradley-Terry). Every pairwise marginal of Plackett-Luce is the
Bradley-Terry probability sigma(Delta*/tau) (Luce 1959; Plackett 1975; checked by enumeration in the tests), so
K-way rankings and pairs train the same population minimiser. tau is the annotator noise: tau -> 0 gives the
noiseless gold ordering (ties in r* broken by a fair coin), large tau gives coin flips.

Ties. Two *identical* completions (same tokens) carry no information about preferences, whatever the label
says; a group that contains any identical pair is rejected and the whole group is re-drawn for the same prompt
(so the prompt distribution stays uniform and the group is K i.i.d. policy samples conditioned on being
distinct). Rejected draws are counted (`n_ties_dropped`); a prompt still without K distinct completions after
`max_rounds` re-draws (a near-deterministic policy) is skipped and counted in `n_skipped`. Different completions
with *equal* gold reward are kept: Bradley-Terry gives them a fair coin, which is exactly what sigma(0) = 1/2 says.

Bayes ceiling. Labels are z ~ Bernoulli(sigma(Delta*/tau)); the best any scorer can do on a pair is to pick the
r*-preferred item, which agrees with the label w.p. sigma(|Delta*|/tau). So no model's expected accuracy can
exceed  Acc* = E_pairs[sigma(|Delta*|/tau)]  (`bayes_accuracy`), and no model's expected log-loss can go below
E_pairs[H_b(sigma(Delta*/tau))] (`bayes_nll`), attained iff r = r*/tau + c(x).

Exact population figures. The sampled pairs estimate population quantities: a held-out pair is a prompt x uniform
over its side's prompts and two *distinct* i.i.d. completions, P(a, b | x) = pi(a|x) pi(b|x) / (1 - sum_y pi(y|x)^2)
for a != b. With every completion enumerated (`toyrlhf.exact`), `exact_pair_expectations` computes

    Acc*(x)   = sum_{a != b} pi(a) pi(b) sigma(|Delta*_ab| / tau) / (1 - sum_y pi(y)^2)
    E[acc](x) = sum_{a != b} pi(a) pi(b) [sigma(Delta*_ab/tau) 1(s_a > s_b) + 1/2 1(s_a = s_b)] * 2 / (...)  (ordered)

exactly, without the O(N^2) double sum: completions are grouped by their distinct gold values (few) and, for the
scorer, sorted by score with running class masses, so each prompt costs O(N log N + N U) for U gold values.
The sample means `bayes_accuracy` / `expected_accuracy` are unbiased estimators of these (tested with z-scores).

Train/held-out split: by prompt. A random subset of the task's prompts is held out; held-out groups are drawn
only from those prompts and training groups only from the others, so a held-out prompt is never trained on.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from . import special
from . import tokens as tk


# ------------------------------------------------------------------------------------------ probabilities
def pref_prob(delta, tau: float) -> np.ndarray:
    """P(a > b) = sigma(delta / tau) for gold-reward differences delta = r*(a) - r*(b); tau = 0 is the noiseless
    limit (1 if delta > 0, 0 if delta < 0, 1/2 on a tie)."""
    delta = np.asarray(delta, dtype=np.float64)
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    if tau == 0:
        return np.where(delta > 0, 1.0, np.where(delta < 0, 0.0, 0.5))
    return special.expit(delta / tau)


def bayes_accuracy(delta_gold, tau: float) -> float:
    """The accuracy ceiling on noisy labels: E[sigma(|Delta*| / tau)] over the given pairs.

    The best possible prediction for a pair is the r*-preferred item (on a gold tie any choice gives 1/2), and it
    matches a label drawn from sigma(Delta*/tau) with probability sigma(|Delta*|/tau). Averaged over the pairs this
    is the expected accuracy of the Bayes-optimal scorer r* itself, so no scorer's expected accuracy is higher."""
    delta = np.asarray(delta_gold, dtype=np.float64)
    if delta.size == 0:
        return float("nan")
    return float(np.mean(pref_prob(np.abs(delta), tau)))


def agreement_prob(score_diff, delta_gold, tau: float) -> np.ndarray:
    """Per pair, the probability that a BT label agrees with the scorer's choice (a tie in scores counts 1/2):

        sigma(Delta*/tau) 1(s_a > s_b) + sigma(-Delta*/tau) 1(s_a < s_b) + 1/2 1(s_a = s_b)
    """
    s = np.sign(np.asarray(score_diff, dtype=np.float64))
    p = pref_prob(delta_gold, tau)
    return np.where(s > 0, p, np.where(s < 0, 1.0 - p, 0.5))


def expected_accuracy(score_diff, delta_gold, tau: float) -> float:
    """Expected accuracy of a *fixed* scorer on BT labels, over the label noise only (the pairs are given):

        E[acc] = mean_pairs [ sigma(Delta*/tau) 1(s_a > s_b) + sigma(-Delta*/tau) 1(s_a < s_b) + 1/2 1(s_a = s_b) ]

    where score_diff = s_a - s_b and delta_gold = r*(a) - r*(b) for the same (a, b). It is <= bayes_accuracy on
    the same pairs, with equality iff the scorer orders every pair with Delta* != 0 like r*. Unlike the realised
    accuracy against sampled labels it carries no label noise, so it isolates the scorer's ordering errors."""
    p = agreement_prob(score_diff, delta_gold, tau)
    return float(np.mean(p)) if p.size else float("nan")


def bayes_nll(delta_gold, tau: float) -> float:
    """The log-loss floor: E[H_b(sigma(Delta*/tau))] (nats per pair), the expected BT loss of r*/tau (margin 0)."""
    delta = np.abs(np.asarray(delta_gold, dtype=np.float64))
    if delta.size == 0:
        return float("nan")
    if tau == 0:
        return float(np.mean(np.where(delta > 0, 0.0, np.log(2.0))))
    x = delta / tau
    # H_b(sigma(x)) = softplus(-x) + (1 - sigma(x)) x   (stable for any x >= 0)
    return float(np.mean(np.logaddexp(0.0, -x) + special.expit(-x) * x))


def accuracy(score_diff) -> float:
    """Realised accuracy: mean of 1(s_w > s_l) + 1/2 1(s_w = s_l) over pairs, score_diff = s_w - s_l."""
    d = np.asarray(score_diff, dtype=np.float64)
    if d.size == 0:
        return float("nan")
    return float(np.mean((d > 0) + 0.5 * (d == 0)))


def group_se(per_pair: np.ndarray, n_groups: int) -> float:
    """Standard error, over the sampling of the groups, of the mean of a per-pair figure: the groups are i.i.d.,
    the C(k,2) pairs inside one group are not, so the spread is taken over group means."""
    if n_groups < 2:
        return float("nan")
    g = np.asarray(per_pair, dtype=np.float64).reshape(n_groups, -1).mean(axis=1)
    return float(g.std(ddof=1) / np.sqrt(n_groups))


def gold_order_accuracy(score_diff, delta_gold) -> tuple[float, int]:
    """Agreement of the scorer with the noiseless gold ordering: over pairs with Delta* != 0 (gold ties have no
    order), the fraction with sign(s_a - s_b) = sign(Delta*), a score tie counting 1/2. Returns (fraction, pairs)."""
    s = np.sign(np.asarray(score_diff, dtype=np.float64))
    g = np.sign(np.asarray(delta_gold, dtype=np.float64))
    keep = g != 0
    n = int(keep.sum())
    if n == 0:
        return float("nan"), 0
    return float(np.mean((s[keep] == g[keep]) + 0.5 * (s[keep] == 0))), n


def exact_pair_expectations(probs, gold, scores, offsets, tau: float) -> dict[str, float]:
    """Population Bayes ceiling and a scorer's expected accuracy over pairs of distinct i.i.d. completions.

    probs, gold, scores (N,): pi(y|x), r*(x, y) and the scorer's s(x, y) for every completion y of every prompt x,
    rows of prompt q at offsets[q]:offsets[q+1] (the layout of `toyrlhf.exact.Enumeration`); prompts weigh equally.
    Per prompt, with Z = 1 - sum_y pi(y)^2 the probability that two draws differ, and p(d) = sigma(d / tau):

        Acc*   = [ sum_{u,v} P_u P_v p(|u - v|) - 1/2 sum_y pi(y)^2 ] / Z          (P_u: mass of gold value u)
        E[acc] = [ 2 sum_{s_a > s_b} pi(a) pi(b) p(r*_a - r*_b) + 1/2 sum_{a != b, s_a = s_b} pi(a) pi(b) ] / Z

    Returns {"bayes_accuracy", "expected_accuracy"}, uniform means over the prompts. E[acc] <= Acc*, with equality
    iff the scorer orders every pair of distinct gold value like r* (on the support of pi)."""
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    if not (probs.shape == gold.shape == scores.shape and probs.ndim == 1):
        raise ValueError("probs, gold and scores must be 1-D arrays of one length")
    bayes, acc = [], []
    for lo, hi in zip(offsets[:-1], offsets[1:]):
        p, r, sc = probs[lo:hi], gold[lo:hi], scores[lo:hi]
        z = 1.0 - np.sum(p * p)
        if not z > 0:
            raise ValueError("a prompt whose completions cannot differ (one completion has all the mass)")
        values, cls = np.unique(r, return_inverse=True)                  # (U,), (n,) gold classes
        P = np.bincount(cls, weights=p, minlength=values.size)           # (U,) mass per gold value
        diff = values[:, None] - values[None, :]
        win = pref_prob(diff, tau)                                       # (U, U) P(class u beats class v)
        bayes.append((P @ pref_prob(np.abs(diff), tau) @ P - 0.5 * np.sum(p * p)) / z)
        ordered, tied = _scored_below(p, cls, sc, win)
        ties = tied - np.sum(p * p)                                      # sum_{a != b, s_a = s_b} pi_a pi_b
        acc.append((2.0 * ordered + 0.5 * ties) / z)
    return {"bayes_accuracy": float(np.mean(bayes)), "expected_accuracy": float(np.mean(acc))}


def _scored_below(p: np.ndarray, cls: np.ndarray, sc: np.ndarray, win: np.ndarray) -> tuple[float, float]:
    """One prompt's scorer sums of `exact_pair_expectations`, completions sorted by score with the running mass
    per gold class: (sum_{s_a > s_b} pi_a pi_b p(r*_a - r*_b), sum_a pi_a * (mass scored equal to a, a included)).

    When no two scores tie (the usual case: an enumerated prompt's scores were all distinct), each tie block is
    one completion, so the blocks' bounds are the positions themselves and the mass scored equal to a is its own
    class's step of the running mass: the numbers the general path computes, with four passes over the (n, U)
    running masses instead of nine (0.19 -> 0.1 s for pref's 270k training completions, measured)."""
    n, U = p.size, win.shape[0]
    order = np.argsort(sc, kind="stable")
    s_sorted, a_cls, pa = sc[order], cls[order], p[order]
    onehot = np.zeros((n, U))
    onehot[np.arange(n), a_cls] = pa
    below = np.zeros((n + 1, U))                                         # (n+1, U) mass before index i
    np.cumsum(onehot, axis=0, out=below[1:])
    if np.all(s_sorted[1:] > s_sorted[:-1]):
        lower = below[:-1]                                               # (n, U) mass with a strictly lower score
        # a's row of the equal-score mass is 0 but in a's class (adding 0 is exact), so its sum is that entry
        rows = np.arange(n)
        tie_sums = below[rows + 1, a_cls] - lower[rows, a_cls]
    else:
        first = np.searchsorted(s_sorted, s_sorted, side="left")         # first index of each score's tie block
        lower = below[first]
        last = np.searchsorted(s_sorted, s_sorted, side="right")
        tie_sums = (below[last] - lower).sum(axis=1)                     # (n,) mass with an equal score (a included)
    ordered = np.sum(pa * np.sum(lower * win[a_cls], axis=1))
    return ordered, np.sum(pa * tie_sums)


# ------------------------------------------------------------------------------------------ correlations
def pearson(a, b) -> float:
    """Pearson's correlation (Pearson 1895), NaN when either side is constant:

        rho = sum (a - a_bar)(b - b_bar) / sqrt(sum (a - a_bar)^2 sum (b - b_bar)^2)

    NumPy only: scipy.stats costs 0.5 s to import, an eighth of building the stages for a new seed."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    am, bm = a - a.mean(), b - b.mean()
    return float(np.clip(np.sum(am * bm) / np.sqrt(np.sum(am * am) * np.sum(bm * bm)), -1.0, 1.0))


def average_ranks(x) -> np.ndarray:
    """Ranks 1..n of x, tied values sharing the mean of their ranks (as scipy.stats.rankdata's default)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    first = np.concatenate([[True], xs[1:] != xs[:-1]])         # the first of each run of equal values
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], x.size)
    ranks = np.empty(x.size)
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(first) - 1]   # mean of ranks starts+1 .. ends
    return ranks


def spearman(a, b) -> float:
    """Spearman's rank correlation (Spearman 1904): Pearson's correlation of the average ranks."""
    return pearson(average_ranks(a), average_ranks(b))


def within_groups(fn, a, b, groups) -> float:
    """Mean over groups (prompts) of the correlation fn (pearson or spearman) between a and b within each group;
    groups where either side is constant are left out. BT fixes a reward only up to a shift per prompt: this
    figure does not depend on such shifts, the pooled one does."""
    per = [fn(a[groups == g], b[groups == g]) for g in np.unique(groups)]
    per = [c for c in per if np.isfinite(c)]
    return float(np.mean(per)) if per else float("nan")


# ------------------------------------------------------------------------------------------ Plackett-Luce
def plackett_luce_rank(gold, tau: float, rng: np.random.Generator) -> np.ndarray:
    """Sample a ranking of each row of gold (n, K): returns (n, K) column indices, best first.

    tau > 0: Gumbel-max trick, argsort of -(r*/tau + G) is an exact Plackett-Luce draw (Bradley-Terry for K = 2).
    tau = 0: the gold ordering, ties broken uniformly at random."""
    gold = np.asarray(gold, dtype=np.float64)
    if gold.ndim != 2:
        raise ValueError(f"gold must be (n, K), got shape {gold.shape}")
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    if tau == 0:
        return np.lexsort((rng.random(gold.shape), -gold), axis=-1)
    return np.argsort(-(gold / tau + rng.gumbel(size=gold.shape)), axis=1, kind="stable")


def plackett_luce_prob(scores, order) -> float:
    """Exact probability of one ranking `order` (best first) under Plackett-Luce with utilities `scores` (K,)."""
    s = np.asarray(scores, dtype=np.float64)[np.asarray(order)]
    # log P = sum_i [ s_i - logsumexp(s_i..s_K) ]
    tail = np.logaddexp.accumulate(s[::-1])[::-1]
    return float(np.exp(np.sum(s - tail)))


@functools.lru_cache(maxsize=16)
def pair_index(k: int) -> tuple[np.ndarray, np.ndarray]:
    """The C(k, 2) pairs (i, j), i < j, of rank positions: in a ranked group position i beat position j.
    Made once per k (read-only arrays): the reward model's loss asks for them at every step."""
    if k < 2:
        raise ValueError(f"a comparison needs k >= 2 completions, got {k}")
    ij = np.array(list(itertools.combinations(range(k), 2)), dtype=np.int64)
    i, j = ij[:, 0].copy(), ij[:, 1].copy()
    i.flags.writeable = j.flags.writeable = False
    return i, j


# ------------------------------------------------------------------------------------------ data
@dataclass
class Preferences:
    """n labelled groups of K distinct completions, each group *ranked best first* by the sampled label.

    prompts (n, P), completions (n, K, T) PAD after EOS, gold (n, K) the hidden r* of each completion,
    prompt_ids (n,) row of task.prompts(). The C(K, 2) comparisons of a group are (winner, loser) =
    (position i, position j) for i < j (`pair_index`)."""

    prompts: np.ndarray
    completions: np.ndarray
    gold: np.ndarray
    prompt_ids: np.ndarray
    tau: float
    n_ties_dropped: int = 0
    n_skipped: int = 0
    population_ids: np.ndarray | None = None
    """The prompt rows the groups were drawn from, uniformly (make_split: its side of the split); None = unknown."""

    @property
    def n(self) -> int:
        return int(self.completions.shape[0])

    @property
    def k(self) -> int:
        return int(self.completions.shape[1])

    @property
    def n_pairs(self) -> int:
        """Pairwise comparisons: n * C(K, 2)."""
        return self.n * self.k * (self.k - 1) // 2

    def joined(self) -> tuple[np.ndarray, np.ndarray]:
        """(tokens (n*K, P+T), mask (n*K, P+T)), group-major: rows g*K .. g*K+K-1 are group g, best first."""
        T = self.completions.shape[2]
        return tk.join(np.repeat(self.prompts, self.k, axis=0), self.completions.reshape(-1, T))

    def flat_completions(self) -> tuple[np.ndarray, np.ndarray]:
        """(prompts (n*K, P), completions (n*K, T)) in the order of `joined`."""
        T = self.completions.shape[2]
        return np.repeat(self.prompts, self.k, axis=0), self.completions.reshape(-1, T)

    def delta_gold(self) -> np.ndarray:
        """(n * C(K, 2),) r*(winner) - r*(loser) for every comparison, group-major."""
        i, j = pair_index(self.k)
        return (self.gold[:, i] - self.gold[:, j]).ravel()

    def pair_diff(self, scores) -> np.ndarray:
        """Score differences s(winner) - s(loser) for every comparison, from scores (n*K,) or (n, K)."""
        s = np.asarray(scores, dtype=np.float64).reshape(self.n, self.k)
        i, j = pair_index(self.k)
        return (s[:, i] - s[:, j]).ravel()

    def subset(self, idx) -> "Preferences":
        idx = np.asarray(idx)
        return Preferences(self.prompts[idx], self.completions[idx], self.gold[idx], self.prompt_ids[idx],
                           self.tau, 0, 0, self.population_ids)


def _all_distinct(comps: np.ndarray) -> np.ndarray:
    """comps (m, K, T) -> (m,) True where no two of the K completions are token-identical."""
    i, j = pair_index(comps.shape[1])
    same = (comps[:, i] == comps[:, j]).all(axis=2)        # (m, C(K,2))
    return ~same.any(axis=1)


def sample_distinct_groups(policy, task, prompt_ids: np.ndarray, k: int, rng: np.random.Generator,
                           temperature: float = 1.0, max_rounds: int = 50):
    """K i.i.d. policy completions per prompt, re-drawing a whole group while two of its completions are identical.

    Returns (completions (m, K, T), kept (n,) bool over prompt_ids, n_rejected_draws)."""
    all_prompts = task.prompts()
    n, T = len(prompt_ids), task.max_new_tokens
    comps = np.zeros((n, k, T), dtype=np.int64)
    todo = np.arange(n)
    rejected = 0
    for _ in range(max_rounds):
        if todo.size == 0:
            break
        prompts = np.repeat(all_prompts[prompt_ids[todo]], k, axis=0)
        s = policy.sample(prompts, T, rng, temperature)
        drawn = tk.pad_after_eos(tk.split(s.tokens, task.prompt_len)[1]).reshape(len(todo), k, T)
        ok = _all_distinct(drawn)
        comps[todo[ok]] = drawn[ok]
        rejected += int((~ok).sum())
        todo = todo[~ok]
    kept = np.ones(n, dtype=bool)
    kept[todo] = False
    return comps[kept], kept, rejected


def make_preferences(policy, task, prompt_ids, *, k: int = 2, tau: float = 1.0, rng: np.random.Generator,
                     temperature: float = 1.0, max_rounds: int = 50) -> Preferences:
    """Label one group of K distinct policy completions for each entry of prompt_ids (rows of task.prompts())."""
    prompt_ids = np.asarray(prompt_ids, dtype=np.int64)
    comps, kept, rejected = sample_distinct_groups(policy, task, prompt_ids, k, rng, temperature, max_rounds)
    ids = prompt_ids[kept]
    prompts = task.prompts()[ids]
    m, _, T = comps.shape
    gold = task.gold_reward(np.repeat(prompts, k, axis=0), comps.reshape(-1, T)).reshape(m, k)
    order = plackett_luce_rank(gold, tau, rng)                   # (m, K) best first
    rows = np.arange(m)[:, None]
    return Preferences(prompts, comps[rows, order], gold[rows, order], ids, float(tau),
                       n_ties_dropped=rejected, n_skipped=int((~kept).sum()))


def split_prompts(n_prompts: int, heldout_frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random disjoint (train_ids, heldout_ids) of the prompt rows; round(frac * n) held out, at least 1 on each
    side when 0 < frac < 1."""
    if not 0.0 < heldout_frac < 1.0:
        raise ValueError(f"heldout_frac must lie strictly between 0 and 1, got {heldout_frac}")
    if n_prompts < 2:
        raise ValueError("a split by prompt needs at least 2 prompts")
    n_ho = int(np.clip(round(heldout_frac * n_prompts), 1, n_prompts - 1))
    perm = rng.permutation(n_prompts)
    return np.sort(perm[n_ho:]), np.sort(perm[:n_ho])


def make_split(policy, task, n_groups: int, *, k: int = 2, tau: float = 1.0, heldout_frac: float = 0.2,
               rng: np.random.Generator, temperature: float = 1.0) -> tuple[Preferences, Preferences]:
    """Train and held-out preference data, split by prompt.

    round(heldout_frac * n_groups) groups (at least 1) go to held-out, the rest to training; each group's prompt
    is drawn uniformly from its side's prompt set (split_prompts), so no prompt appears on both sides."""
    if n_groups < 2:
        raise ValueError(f"need at least 2 groups (1 train + 1 held-out), got {n_groups}")
    train_ids, ho_ids = split_prompts(len(task.prompts()), heldout_frac, rng)
    n_ho = int(np.clip(round(heldout_frac * n_groups), 1, n_groups - 1))
    n_tr = n_groups - n_ho
    train = make_preferences(policy, task, train_ids[rng.integers(len(train_ids), size=n_tr)], k=k, tau=tau,
                             rng=rng, temperature=temperature)
    heldout = make_preferences(policy, task, ho_ids[rng.integers(len(ho_ids), size=n_ho)], k=k, tau=tau,
                               rng=rng, temperature=temperature)
    train.population_ids, heldout.population_ids = train_ids, ho_ids
    return train, heldout
