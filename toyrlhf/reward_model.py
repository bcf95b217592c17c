"""The pairwise (Bradley-Terry) reward model: loss, training, normalisation, checkpoints and the stage cache.

Loss. For a comparison "y_w preferred to y_l" the Bradley-Terry negative log-likelihood (Bradley & Terry 1952;
Ouyang et al. 2022, InstructGPT, eq. 1) with an optional margin m (Touvron et al. 2023, Llama 2, eq. 2):

    L(r_w, r_l) = -log sigma(r_w - r_l - m) = softplus(-(r_w - r_l - m))
    dL/dr_w = -sigma(-(r_w - r_l - m)) = -dL/dr_l

For K > 2 ranked completions of one prompt, all C(K, 2) pairs form ONE batch element with weight 1/C(K, 2)
(InstructGPT eq. 1: one forward pass per completion, and no completion gets K - 1 separate updates, which made
their RM overfit within one epoch):

    loss(theta) = -1/C(K,2) E_{(x, y_1 > ... > y_K)} [ sum_{i<j} log sigma(r_theta(x, y_i) - r_theta(x, y_j) - m) ]

Model (head = "sequence", the default). The RM is a TinyLM whose one window covers the whole sequence at
absolute positions (align = "prefix", context = P + T) and whose scalar head reads the window ending at the last
completion token (reward_pool = "last"): the analogue of a transformer RM that reads its scalar off the final token
with attention over everything before it (Stiennon et al. 2020; Ouyang et al. 2022). Its token embeddings come from
the SFT model (InstructGPT initialises the RM from the SFT model; the SFT trunk's 4-token W1 has no counterpart in
the wider window, so W1 starts fresh), the reward head is re-initialised, wr ~ N(0, std 1/sqrt(F+1)), br = 0 (the
reward-head initialisation of openai/lm-human-preferences described in Huang, Liu & von Werra 2024, "The N
Implementation Details of RLHF with PPO"). head = "mean" keeps the SFT model whole (trunk with its 4-token windows)
and mean-pools the features of the windows ending at each completion token: it cannot see the prompt from late
windows nor count over the whole completion, and stays 3-3.4 points under the ceiling on pref (see below).

Normalisation. BT only identifies r up to a per-prompt shift (and its scale through the label noise tau), so after
training the scores are standardised to mean 0 and standard deviation 1 over fresh completions of the SFT policy
on uniformly drawn prompts (Ziegler et al. 2019, section 2: "we normalize the reward ... to have mean 0 and
variance 1 on x ~ D, y ~ rho(.|x)"; the "reward normalisation" detail of Huang et al. 2024). The (mean, std) is
stored in the checkpoint: `RewardModel.score` is normalised, `RewardModel.score_raw` is not.

No early stopping: held-out pairs are kept for evaluation only. Regularisation instead: decoupled weight decay
(AdamW, Loshchilov & Hutter 2019) on trunk + head, and a cosine learning-rate schedule to zero (SGDR without
restarts) so that the last steps average out the minibatch noise of the noisy labels. The defaults (64000 pairs,
4000 steps of 128, lr 2e-3, decay 0.3) come from sweeps over seeds 0-3 of the data, initialisation and minibatch
streams, all on the seed-0 SFT model.

What limits held-out accuracy (measured on pref, tau = 1): with the "sequence" head, a least-squares fit to the
exact gold reward of the 64000 pairs' training completions leaves 0.6 points to the Bayes ceiling on unseen
prompts (the MLP has to learn "word equals a topic word" well enough to transfer to topic pairs it never saw);
BT training on the noisy labels adds 0.4-0.7 (seeds 0-3: 1.0, 1.2, 1.0, 1.3 points in all). The "mean" head is
misspecified: its late windows cannot see the prompt and no window sees the whole completion, so a least-squares
fit of it to the exact gold reward of the same 64000 pairs stays 3.4 points under, where BT training lands too.
"""
from __future__ import annotations

import dataclasses
from math import comb
from pathlib import Path
from typing import Callable

import numpy as np

from . import special
from . import exact
from . import preferences as prefs
from . import stages
from . import tokens as tk
from . import budget
from .threads import single_threaded_blas
from .config import Pipeline, RMConfig
from .errors import UserError
from .model import ROLE_PARAMS, TinyLM
from .optim import Adam, clip_grad_norm, cosine_lr
from .plotting import plot_run_curves
from .runs import from_json_array, json_array, stage_run, write_json
from .settings import to_dict
from .tasks import Task, get_task


# ------------------------------------------------------------------------------------------ loss
def bt_loss(r_w, r_l, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bradley-Terry loss per comparison and its gradient, elementwise:

        L = -log sigma(r_w - r_l - m) = log(1 + exp(-(r_w - r_l - m)))
        dL/dr_w = -sigma(-(r_w - r_l - m)),   dL/dr_l = +sigma(-(r_w - r_l - m))

    (Bradley & Terry 1952; Ouyang et al. 2022 InstructGPT eq. 1; margin m as in Touvron et al. 2023 Llama 2 eq. 2.)
    Computed with logaddexp, so it is finite for any finite difference (no log(0), no exp overflow)."""
    d = np.asarray(r_w, dtype=np.float64) - np.asarray(r_l, dtype=np.float64) - margin
    loss = np.logaddexp(0.0, -d)
    g = special.expit(-d)
    return loss, -g, g


def group_bt_loss(r, margin: float = 0.0) -> tuple[float, np.ndarray]:
    """InstructGPT's K-way loss: r (n, K) rewards of n groups ranked best first ->
    (mean over groups of (1/C(K,2)) sum_{i<j} L(r_i, r_j), dloss/dr (n, K))."""
    r = np.asarray(r, dtype=np.float64)
    n, k = r.shape
    i, j = prefs.pair_index(k)
    loss, dw, dl = bt_loss(r[:, i], r[:, j], margin)        # (n, C)
    scale = 1.0 / (n * comb(k, 2))
    dr = np.zeros_like(r)
    for pos, d in ((i, dw), (j, dl)):       # np.add.at's additions in its order, winners first (it cost 25 us)
        for c in range(pos.size):
            dr[:, pos[c]] += d[:, c] * scale
    return float(loss.sum() * scale), dr


def rm_loss_and_grad(model: TinyLM, tokens, mask, k: int, margin: float = 0.0):
    """The full RM objective on ranked groups: tokens/mask (n*k, L) group-major, best first.
    L = -(1/n) sum_groups (1/C(k,2)) sum_{i<j} log sigma(r_i - r_j - m)  (Ouyang et al. 2022, InstructGPT eq. 1).
    Returns (loss, flat gradient, rewards (n, k))."""
    return _loss_and_grad(model, model.reward_forward(tokens, mask), k, margin)


def _loss_and_grad(model: TinyLM, forward, k: int, margin: float, backward=None):
    r, cache = forward
    r = r.reshape(-1, k)
    loss, dr = group_bt_loss(r, margin)
    return loss, (backward or model.reward_backward)(dr.ravel(), cache), r


# ------------------------------------------------------------------------------------------ prepared inputs
class RewardInputs:
    """Sequences (tokens, mask (B, L)) prepared once for the many forward passes of one reward model over them (the
    training minibatches, the held-out evaluations): the same rewards as `reward_forward`, bit for bit, cheaper.

    The default head (MLP, fast path, reward_pool 'last') reads one window per sequence: those windows are cut
    once (`windows`, (B, context)), so a step skips reward_forward's per-call bookkeeping, and `scores` runs the
    trunk on each distinct window once (held-out sets repeat most sequences: 25600 rows, 4338 distinct on pref).
    A row's features depend on that row alone, so either way every reward is the same number. Any other head keeps
    the tokens and goes through reward_forward."""

    def __init__(self, model: TinyLM, tokens: np.ndarray, mask: np.ndarray):
        tokens, mask = np.asarray(tokens), np.asarray(mask, dtype=bool)
        self.n = tokens.shape[0]
        self.tokens, self.mask, self.windows = tokens, mask, None
        self._grad = None
        c = model.config
        if model.fast and c.arch == "mlp" and c.reward_pool == "last":
            X = model.reward_windows(tokens, mask)[0]                        # one per sequence, as reward_forward
            # ids in the smallest integer type: a step's 256 random rows come from 0.8 MB, not 6.5 MB (pref)
            self.windows = X.astype(np.min_scalar_type(c.vocab_size))
            self._distinct, self._of_row = _distinct_rows(self.windows, c.vocab_size)

    def forward(self, model: TinyLM, rows: np.ndarray | None = None):
        """`model.reward_forward` of the sequences `rows` (all by default): (rewards, cache for reward_backward)."""
        if self.windows is None:
            sl = slice(None) if rows is None else rows
            return model.reward_forward(self.tokens[sl], self.mask[sl])
        X = self.windows if rows is None else self.windows[rows]
        return _window_forward(model, X)

    def backward(self, model: TinyLM, dr: np.ndarray, cache) -> np.ndarray:
        """`model.reward_backward(dr, cache)` of a `forward`, into one gradient vector kept between calls (zeroed
        each time, so the next call overwrites what this one returned): a fresh vector and its views cost as much
        as the reward head's whole backward pass."""
        if self.windows is None:
            return model.reward_backward(dr, cache)
        if self._grad is None:
            self._grad = model.zeros_like_params()
        g, grads = self._grad
        g[:] = 0.0
        grads["br"] += float(np.sum(dr))
        model.head_backward(dr, cache[2], grads)
        return g

    def scores(self, model: TinyLM) -> np.ndarray:
        """(B,) raw rewards of every sequence, each distinct window through the trunk once, CHUNK at a time."""
        if self.windows is None:
            return raw_scores(model, self.tokens, self.mask)
        return _chunked(lambda sl: _window_forward(model, self._distinct[sl])[0], len(self._distinct))[self._of_row]


CHUNK = 4096
"""Sequences scored per call when scoring many: rows are independent, so no bit changes, and the features stay in
reused memory (270k enumerated completions at once: 277 MB of fresh pages, 130-440 ms against 100-140 ms)."""


def raw_scores(model: TinyLM, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(B,) `model.reward_forward(tokens, mask)` rewards, CHUNK sequences at a time."""
    return _chunked(lambda sl: model.reward_forward(tokens[sl], mask[sl])[0], len(tokens))


def _chunked(f: Callable, n: int) -> np.ndarray:
    """f(sl) over the slices of CHUNK rows covering 0..n, concatenated (n = 0: f of one empty slice)."""
    return np.concatenate([f(slice(a, a + CHUNK)) for a in range(0, max(n, 1), CHUNK)])


def _distinct_rows(X: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows of X (N, k) of ids in [0, base), the index of each row's among them). Rows are compared as
    one base-`base` number each (np.unique along axis 0 sorts a structured view: 0.3 s on 100k rows, 30x slower);
    when base**k does not fit in an int64 every row is kept."""
    N, k = X.shape
    if k * np.log2(max(base, 2)) >= 62:
        return X, np.arange(N)
    key = X @ (base ** np.arange(k - 1, -1, -1, dtype=np.int64))
    _, first, of_row = np.unique(key, return_index=True, return_inverse=True)
    return X[first], of_row


def _window_forward(model: TinyLM, X: np.ndarray):
    """reward_forward's 'last' pooling on its windows X (B, context): r_b = H(X_b) @ wr + br, and its cache."""
    s, hcache = model.head_forward(X, "wr")
    # 0.0 + s: what reward_forward's bincount pooling adds (a -0.0 becomes 0.0), so the rewards are its numbers
    r = (0.0 + s) + model.params["br"][0]
    return r, (np.arange(len(X)), np.ones(len(X)), hcache)


# ------------------------------------------------------------------------------------------ the model
class RewardModel:
    """A TinyLM used through its reward head, plus the normalisation (mean, std) of its raw scores."""

    def __init__(self, model: TinyLM, mean: float = 0.0, std: float = 1.0):
        if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
            raise ValueError(f"reward normalisation needs a finite mean and std > 0, got ({mean}, {std})")
        self.model = model
        self.mean = float(mean)
        self.std = float(std)

    def score_raw(self, tokens, mask) -> np.ndarray:
        """(B,) reward-head output, unnormalised."""
        return raw_scores(self.model, tokens, mask)

    def score(self, tokens, mask) -> np.ndarray:
        """(B,) normalised reward (raw - mean) / std: mean 0, std 1 under the SFT policy."""
        return (self.score_raw(tokens, mask) - self.mean) / self.std

    def score_completions(self, prompts, completions) -> np.ndarray:
        """(B,) normalised reward of prompts (B, P) + completions (B, T)."""
        return self.score(*tk.join(prompts, completions))

    @property
    def parameters(self) -> int:
        return self.model.num_params("reward")

    def copy(self) -> "RewardModel":
        return RewardModel(self.model.copy(), self.mean, self.std)


def init_reward_model(sft_model: TinyLM, task: Task, head: str, rng: np.random.Generator) -> TinyLM:
    """The RM before training, with its reward head re-initialised: wr ~ N(0, std 1/sqrt(F+1)), br = 0.

    head 'mean': a copy of the SFT model. head 'sequence': a TinyLM with one prefix window of P + T tokens read at
    the last token, its token embeddings copied from the SFT model, W1 and b1 freshly initialised from rng."""
    if head == "mean":
        model = sft_model.copy()
    else:
        sc = sft_model.config
        if sc.arch != "mlp":
            raise UserError("the 'sequence' reward-model head needs an mlp SFT model (it reuses its embeddings); "
                            "use --set head=mean for a bigram")
        cfg = dataclasses.replace(sc, context=task.prompt_len + task.max_new_tokens, align="prefix",
                                  reward_pool="last")
        model = TinyLM(cfg, seed=rng)
        model.params["emb"][:] = sft_model.params["emb"]
    F = model.config.features
    model.params["wr"][:] = rng.normal(0.0, 1.0 / np.sqrt(F + 1), F)
    model.params["br"][:] = 0.0
    return model


def _reward_param_slices(model: TinyLM) -> list[slice]:
    """The flat vector's runs of 'reward'-role parameters (trunk + reward head), as slices: weight decay scales
    them in place (a boolean mask gathers and scatters 17k numbers per step)."""
    names = ROLE_PARAMS["reward"]
    out, i = [], 0
    for name, shape in model.shapes.items():
        n = int(np.prod(shape))
        if name in names:
            if out and out[-1].stop == i:
                out[-1] = slice(out[-1].start, i + n)
            else:
                out.append(slice(i, i + n))
        i += n
    return out


def evaluate(model: TinyLM, data: prefs.Preferences, margin: float = 0.0, inputs: RewardInputs | None = None) -> dict:
    """Figures of a scorer on labelled groups: BT loss, realised / expected accuracy, Bayes ceiling and loss floor,
    agreement with the gold ordering. `inputs`: the groups' RewardInputs when they are evaluated repeatedly."""
    inputs = inputs or RewardInputs(model, *data.joined())
    r = inputs.scores(model).reshape(data.n, data.k)
    loss, _ = group_bt_loss(r, margin)
    diff, dgold = data.pair_diff(r), data.delta_gold()
    order, n_ordered = prefs.gold_order_accuracy(diff, dgold)
    acc = prefs.accuracy(diff)
    # per-pair probability that the scorer's choice matches the label: its mean is the expected accuracy, its
    # Bernoulli variances give the std of the realised one
    p = prefs.agreement_prob(diff, dgold, data.tau)
    return {"loss": loss, "accuracy": acc, "accuracy_se": float(np.sqrt(np.sum(p * (1 - p))) / p.size),
            "expected_accuracy": float(np.mean(p)),
            "expected_accuracy_se": prefs.group_se(p, data.n),
            "bayes_accuracy": prefs.bayes_accuracy(dgold, data.tau),
            "bayes_accuracy_se": prefs.group_se(prefs.pref_prob(np.abs(dgold), data.tau), data.n),
            "bayes_loss": prefs.bayes_nll(dgold, data.tau),
            "gold_order_accuracy": order, "gold_ordered_pairs": n_ordered, "scores": r}


def normalisation(model: TinyLM, policy: TinyLM, task: Task, n: int, rng: np.random.Generator,
                  temperature: float = 1.0) -> tuple[float, float]:
    """(mean, std) of the raw RM score over n fresh policy completions on uniformly drawn prompts: the reward
    normalisation of Ziegler et al. 2019 §2.2 (scores mean 0, std 1 under the initial policy)."""
    prompts = task.sample_prompts(n, rng)
    s = policy.sample(prompts, task.max_new_tokens, rng, temperature)
    r = raw_scores(model, s.tokens, s.mask)
    std = float(r.std(ddof=1))
    return float(r.mean()), (std if np.isfinite(std) and std > 0 else 1.0)


def exact_population(model: TinyLM, policy: TinyLM, task: Task, prompt_ids, tau: float,
                     temperature: float = 1.0) -> dict[str, float] | None:
    """The population figures the sampled pairs estimate, by enumerating every completion of the given prompts:
    the Bayes ceiling and the scorer's expected accuracy over pairs of distinct i.i.d. policy completions
    (`preferences.exact_pair_expectations`). None when the task is too large to enumerate."""
    prompts = task.prompts()[np.asarray(prompt_ids, dtype=np.int64)]
    try:
        enum = exact.enumerate_task(policy, task, temperature, prompts=prompts)
    except UserError:
        return None
    scores = raw_scores(model, enum.tokens, enum.mask)
    gold = task.gold_reward(*enum.split())
    return prefs.exact_pair_expectations(enum.probs, gold, scores, enum.offsets, tau)


# ------------------------------------------------------------------------------------------ training
@single_threaded_blas
def train_reward_model(sft_model: TinyLM, task: Task, cfg: RMConfig, seed: int,
                       progress: Callable | None = None) -> tuple[RewardModel, dict]:
    """Sample and label preference groups from `sft_model`, train a BT reward model initialised from it
    (`init_reward_model`: its embeddings for head 'sequence', its whole trunk for head 'mean'), normalise it.

    Returns (RewardModel, summary); progress(step, figures) is called after every step with the minibatch's
    "loss", "acc" and the step's "lr"; every cfg.eval_every steps (and after the last) the figures also hold
    "heldout_loss" and "heldout_expected_accuracy", the learning curves' held-out points. A non-finite loss stops
    the training at that step, non-finite weights after it (NumericalError).
    Random streams: [seed, 4] data, [seed, 5] initialisation (the reward head; W1 and b1 too for head 'sequence'),
    [seed, 6] minibatches, [seed, 7] normalisation samples."""
    train, heldout = prefs.make_split(sft_model, task, cfg.pairs, k=cfg.k, tau=cfg.tau,
                                      heldout_frac=cfg.heldout_frac, rng=np.random.default_rng([seed, 4]),
                                      temperature=cfg.temperature)
    if train.n == 0 or heldout.n == 0:
        raise UserError("the SFT policy produced no group of distinct completions on one side of the split; "
                        "raise temperature or lower k")
    model = init_reward_model(sft_model, task, cfg.head, np.random.default_rng([seed, 5]))
    with np.errstate(over="ignore", invalid="ignore"):
        inputs = _fit(model, train, heldout, cfg, np.random.default_rng([seed, 6]), progress)
    stages.check_finite(model, "reward-model training")
    mean, std = normalisation(model, sft_model, task, cfg.norm_samples, np.random.default_rng([seed, 7]),
                              cfg.temperature)
    return RewardModel(model, mean, std), _summary(model, sft_model, task, cfg, train, heldout, mean, std, inputs)


def _fit(model: TinyLM, train: prefs.Preferences, heldout: prefs.Preferences, cfg: RMConfig,
         rng: np.random.Generator, progress: Callable | None) -> RewardInputs:
    """cfg.steps AdamW steps on minibatches of cfg.batch_size groups drawn with replacement from `train`; returns
    the training groups' RewardInputs."""
    inputs = RewardInputs(model, *train.joined())
    ho_inputs = RewardInputs(model, *heldout.joined()) if progress else None
    rows = np.arange(train.n * train.k).reshape(train.n, train.k)      # group g's sequences, best first
    opt = Adam(model.flat.size, lr=cfg.lr)
    decay = _reward_param_slices(model) if cfg.weight_decay > 0 else []
    i, j = prefs.pair_index(train.k)
    for step in range(cfg.steps):
        idx = rng.integers(0, train.n, cfg.batch_size)
        loss, grad, r = _loss_and_grad(model, inputs.forward(model, rows[idx].ravel()), train.k, cfg.margin,
                                       lambda dr, cache: inputs.backward(model, dr, cache))
        stages.check_loss(loss, step, "reward-model training")
        grad, _ = clip_grad_norm(grad, cfg.max_grad_norm)
        if cfg.lr_schedule == "cosine":
            opt.lr = cosine_lr(cfg.lr, step, cfg.steps)
        opt.step(model.flat, grad)
        for sl in decay:
            model.flat[sl] *= 1.0 - opt.lr * cfg.weight_decay
        if progress:
            figures = {"loss": loss, "acc": prefs.accuracy((r[:, i] - r[:, j]).ravel()), "lr": opt.lr}
            if (cfg.eval_every and (step + 1) % cfg.eval_every == 0) or step + 1 == cfg.steps:
                ev = evaluate(model, heldout, cfg.margin, ho_inputs)
                figures.update(heldout_loss=ev["loss"], heldout_expected_accuracy=ev["expected_accuracy"])
            progress(step, figures)
    return inputs


def _summary(model: TinyLM, sft_model: TinyLM, task: Task, cfg: RMConfig, train: prefs.Preferences,
             heldout: prefs.Preferences, mean: float, std: float, inputs: RewardInputs | None = None) -> dict:
    """The trained RM's figures on both sides of the split (sampled, and exact where the task can be listed);
    `inputs`: the training groups' RewardInputs, if made already."""
    tr, ho = evaluate(model, train, cfg.margin, inputs), evaluate(model, heldout, cfg.margin)
    # pairs (k = 2) are two distinct i.i.d. draws; a pair inside a larger all-distinct group follows another law
    ex_tr = ex_ho = None
    if cfg.exact and cfg.k == 2:
        ex_tr = exact_population(model, sft_model, task, train.population_ids, cfg.tau, cfg.temperature)
        ex_ho = exact_population(model, sft_model, task, heldout.population_ids, cfg.tau, cfg.temperature)
    gold = heldout.gold.ravel()
    raw = ho["scores"].ravel()
    ids = np.repeat(heldout.prompt_ids, heldout.k)
    summary = {
        "stage": "rm", "head": cfg.head, "k": cfg.k, "tau": cfg.tau, "steps": cfg.steps,
        "n_train_groups": train.n, "n_heldout_groups": heldout.n,
        "n_train_pairs": train.n_pairs, "n_heldout_pairs": heldout.n_pairs,
        "n_train_prompts": int(np.unique(train.prompt_ids).size),
        "n_heldout_prompts": int(np.unique(heldout.prompt_ids).size),
        "n_ties_dropped": train.n_ties_dropped + heldout.n_ties_dropped,
        "n_groups_skipped": train.n_skipped + heldout.n_skipped,
        "train_loss": tr["loss"], "heldout_loss": ho["loss"],
        "train_bayes_loss": tr["bayes_loss"], "heldout_bayes_loss": ho["bayes_loss"],
        "train_accuracy": tr["accuracy"], "heldout_accuracy": ho["accuracy"],
        "heldout_accuracy_se": ho["accuracy_se"],
        "heldout_expected_accuracy_se": ho["expected_accuracy_se"], "bayes_accuracy_se": ho["bayes_accuracy_se"],
        "train_expected_accuracy_se": tr["expected_accuracy_se"], "train_bayes_accuracy_se": tr["bayes_accuracy_se"],
        "train_expected_accuracy": tr["expected_accuracy"], "heldout_expected_accuracy": ho["expected_accuracy"],
        "bayes_accuracy": ho["bayes_accuracy"], "train_bayes_accuracy": tr["bayes_accuracy"],
        "gold_order_accuracy": ho["gold_order_accuracy"], "gold_ordered_pairs": ho["gold_ordered_pairs"],
        "spearman": prefs.spearman(raw, gold), "pearson": prefs.pearson(raw, gold),
        # BT fixes r only up to a shift per prompt: within-prompt correlations do not depend on those shifts
        "spearman_within_prompt": prefs.within_groups(prefs.spearman, raw, gold, ids),
        "pearson_within_prompt": prefs.within_groups(prefs.pearson, raw, gold, ids),
        # the same figures over the whole pair population of each side, by enumeration (None: task too large)
        "exact_train_bayes_accuracy": ex_tr and ex_tr["bayes_accuracy"],
        "exact_train_expected_accuracy": ex_tr and ex_tr["expected_accuracy"],
        "exact_heldout_bayes_accuracy": ex_ho and ex_ho["bayes_accuracy"],
        "exact_heldout_expected_accuracy": ex_ho and ex_ho["expected_accuracy"],
        "reward_mean": mean, "reward_std": std,
        "parameters": model.num_params("reward"),
    }
    return summary


# ------------------------------------------------------------------------------------------ checkpoints
def _extra(rm: RewardModel, summary: dict | None = None) -> dict:
    """The arrays an RM checkpoint holds beside the model's: the normalisation (and the training summary)."""
    extra = {"reward_mean": np.array(rm.mean), "reward_std": np.array(rm.std)}
    if summary is not None:
        extra["summary"] = json_array(summary)
    return extra


def save_reward_model(path, rm: RewardModel, *, task: str, config: dict, summary: dict | None = None) -> None:
    """checkpoints.save_model with kind='rm' and the normalisation (reward_mean, reward_std) as extra arrays."""
    stages.save_model(path, rm.model, kind="rm", task=task, config=config, extra=_extra(rm, summary))


def _from_arrays(model: TinyLM, z: dict, path) -> RewardModel:
    if "reward_mean" not in z or "reward_std" not in z:
        raise UserError(f"{path}: reward-model checkpoint without its normalisation (reward_mean, reward_std)")
    try:
        return RewardModel(model, float(z["reward_mean"]), float(z["reward_std"]))
    except (ValueError, TypeError) as e:
        raise UserError(f"{path}: corrupt reward normalisation ({str(e).splitlines()[0]})") from None


def load_reward_model(path) -> tuple[RewardModel, dict]:
    """Load an RM checkpoint: (RewardModel, raw arrays). Not an RM, or a bad normalisation -> UserError."""
    model, z = stages.load_model(path, "rm")
    return _from_arrays(model, z, path), z


def checkpoint_summary(arrays: dict) -> dict | None:
    """The training summary stored in an RM checkpoint (None if it has none)."""
    return from_json_array(arrays["summary"]) if "summary" in arrays else None


# ------------------------------------------------------------------------------------------ stage cache
def cached_reward_model(pipe: stages.Pipeline, cfg: RMConfig, progress=None) -> tuple[RewardModel, Path]:
    """The reward model for pipe's task and seed from the stage cache, trained (SFT model included) on a miss.

    File: rm-<task>-s<seed>-<config_hash(pretrain, sft, rm)>.npz in stages.cache_dir()."""
    pc = pipe.pretrain

    def build():
        sft_model, _ = stages.cached_sft(pipe, progress)
        rm, summary = train_reward_model(sft_model, get_task(pc.task), cfg, pc.seed, progress)
        return rm.model, _extra(rm, summary)

    model, z, path = stages.cached_model("rm", {"pretrain": pc, "sft": pipe.sft, "rm": cfg}, build, kind="rm",
                                         what="reward-model training")
    return _from_arrays(model, z, path), path


# ------------------------------------------------------------------------------------------ run folder
def run_rm(cfg: RMConfig, out=None, *, init=None, task: str = "pref", seed: int = 0, overwrite: bool = False,
           bars=None) -> tuple[Path, dict]:
    """Reward-model training in a run folder from the --init SFT checkpoint or the cached SFT model."""
    sft_model, task = stages.init_model(init, "lm", task)
    t = stages.check_task(task)
    budget.check_stage("rm", cfg, Pipeline(pretrain=stages.PretrainConfig(task=task, seed=seed)))
    with stage_run(out, f"rm-{task}-s{seed}", overwrite, bars) as run:
        if sft_model is None:
            pipe = Pipeline(pretrain=stages.PretrainConfig(task=task, seed=seed))
            (sft_model, init), _ = run.train(pipe.pretrain.steps + pipe.sft.steps,
                                             f"pretrain + sft {task} (cached after)", ("loss",),
                                             "pretraining / SFT (for the stage cache)",
                                             lambda progress: stages.cached_sft(pipe, progress), log=False)
        run.write("config.json", lambda p: write_json(p, {"stage": "rm", "init": str(init), "task": task,
                                                          "seed": seed, "rm": to_dict(cfg)}))
        (rm, summary), secs = run.train(cfg.steps, f"reward model {task}", ("loss", "acc"), "reward-model training",
                                        lambda progress: train_reward_model(sft_model, t, cfg, seed, progress))
        summary.update({"task": task, "seed": seed, "wall_time_s": secs})
        run.finish(lambda p: save_reward_model(p, rm, task=task, config={"rm": to_dict(cfg)}), summary,
                   curves=plot_run_curves)
    return run.dir, summary
