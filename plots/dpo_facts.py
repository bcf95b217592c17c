"""Exact facts of DPO 1 and 2 (issue 15 item 3; docs/unified_paradigm.md), measured on pref.

    python plots/dpo_facts.py --runs COMPARE_DIR [--out plots/dpo_facts.md]     (from any folder but the repo root)

1. The Gibbs tilt: per prompt, the SFT policy's 200 most likely completions (renormalised) as pi_ref, the seed-0
   reward model's normalised score as r, beta = 0.1; ``dpo_facts.tabular_dpo`` (Newton) on the population loss and
   on n sampled Bradley-Terry-labelled pairs per prompt (--draws independent draws, rng seeds [d, n], default one); the
   pi_ref-weighted within-prompt correlation of beta log(pi/pi_ref) with r, averaged over the 36 prompts.
2. Mass outside the pairs (Xu et al. 2024): COMPARE_DIR is a `toyrlhf compare ... dpo ... ppo --task pref` folder
   (dpo-s<k>/, ppo-s<k>/, ...). For every seed, every completion of every prompt is enumerated and scored exactly under
   pi_sft (the runs' reference), the trained DPO policy and the trained PPO policy (and the other methods found);
   the DPO run's own training pairs (``dpo.offline_pairs``: the RM stage's pairs, on which PPO's reward model was
   trained too) give the seen set, and ``dpo_facts.unseen_mass`` the mass on completions in no pair. Prompts split
   into the RM stage's training prompts (they have pairs) and its held-out prompts (no pair at all: mass 1 there by
   definition, left out). Also the gold reward of the mass outside and inside the pairs, and DPO - PPO paired by
   seed. plots/unified_paradigm.sh passes the 51,200-pair comparison and a 800-pair one (--set rm.pairs=1000).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import stats

from toyrlhf import exact
from toyrlhf.rl import dpo_facts as F
from toyrlhf.rl.bon import score_enumeration
from toyrlhf.rl.dpo import offline_pairs
from toyrlhf.rl.exact_eval import load_run
from toyrlhf.tasks import get_task

HERE = Path(__file__).resolve().parent
BETA, SUPPORT = 0.1, 200
NS = (30, 300, 3000, 30000)
METHODS = ("dpo", "ppo", "online_dpo", "grpo", "rft", "online_rft", "sft")


def ci(x):
    x = np.asarray(x, float)
    if len(x) < 2:
        return float(x.mean()), float("nan")
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def fmt(m, h, d=3):
    return f"{m:.{d}f}" if not np.isfinite(h) else f"{m:.{d}f} ± {h:.{d}f}"


def tilt_table(run0: Path, draws: int) -> list[str]:
    cfg, trainer, sft = load_run(run0)
    task = get_task(cfg.task)
    enum = exact.enumerate_task(sft, task, cfg.temperature)
    r_all = score_enumeration(trainer.models.reward_model, enum)
    prompts = []
    for q in range(enum.n_prompts):
        s = slice(enum.offsets[q], enum.offsets[q + 1])
        idx, p = F.top_support(enum.probs[s], SUPPORT)
        prompts.append((p, r_all[s][idx]))
    head = "" if draws == 1 else f"; mean ± sd over {draws} draws of the pairs"
    rows = [f"| pairs per prompt | within-prompt correlation of β log(π/π_ref) with r (mean over prompts{head}) | "
            "prompts whose pair loss has a finite minimiser | correlation over those prompts only |",
            "|---|---|---|---|"]
    for n in NS:
        per_draw, finite, fin_corr = [], [], []
        for d in range(draws):
            rng = np.random.default_rng([d, n])
            corr = []
            for p, r in prompts:
                twin = np.random.default_rng()
                twin.bit_generator.state = rng.bit_generator.state     # the same draw tabular_dpo makes
                ok = F.has_finite_minimiser(F._sampled_weights(p, r, n, twin))
                corr.append(F.weighted_corr(BETA * F.tabular_dpo(p, r, BETA, n, rng), r, p))
                finite.append(ok)
                if ok:
                    fin_corr.append(corr[-1])
            per_draw.append(np.mean(corr))
        sd = "" if draws == 1 else f" ± {np.std(per_draw, ddof=1):.3f}"
        fc = f"{np.mean(fin_corr):.3f}" if fin_corr else "–"
        rows.append(f"| {n:,} | {np.mean(per_draw):.3f}{sd} | {int(np.sum(finite))} / {len(finite)} | {fc} |")
    corr, gmax = [], 0.0
    for p, r in prompts:
        theta = F.tabular_dpo(p, r, BETA)
        corr.append(F.weighted_corr(BETA * theta, r, p))
        gmax = max(gmax, float(np.abs(F.population_gradient(p, r, BETA, r / BETA)).max()))
    rows.append(f"| population (exact) | 1 − {1 - np.mean(corr):.1e} (worst prompt 1 − {1 - np.min(corr):.1e}); "
                f"max \\|∇L\\| at the tilt {gmax:.1e} | {len(prompts)} / {len(prompts)} | |")
    return rows


def unseen_rows(runs: Path) -> list[str]:
    seeds = sorted(int(p.name.split("-s")[-1]) for p in runs.glob("dpo-s*") if (p / "checkpoint.npz").is_file())
    methods = [m for m in METHODS if (runs / f"{m}-s{seeds[0]}" / "checkpoint.npz").is_file()]
    res: dict[str, dict[str, list]] = {}
    n_pairs, n_train, covered = [], [], []
    for seed in seeds:
        cfg, trainer, sft = load_run(runs / f"dpo-s{seed}")
        task = get_task(cfg.task)
        pairs = offline_pairs(cfg, task, sft)
        keys = F.pair_keys(pairs["tok_w"], pairs["mask_w"], task.prompt_len) | \
            F.pair_keys(pairs["tok_l"], pairs["mask_l"], task.prompt_len)
        enum = exact.enumerate_task(sft, task, cfg.temperature)
        gold = task.gold_reward(*enum.split())
        train_q = np.isin(np.arange(enum.n_prompts), np.unique(pairs["prompt_ids"]))
        seen = np.array([tuple(k) in keys for k in map(tuple, F._keys(enum))])
        n_pairs.append(len(pairs["prompt_ids"]))
        n_train.append(int(train_q.sum()))
        covered.append(int(seen.sum()))
        policies = {"π_sft (the reference)": sft}
        for m in methods:
            policies[m] = load_run(runs / f"{m}-s{seed}")[1].models.policy
        for name, pol in policies.items():
            logp = exact.rescore(pol, enum).seq_logp
            per, _ = F.unseen_mass(enum, logp, keys)
            pr = np.exp(logp)
            g_un = exact.per_prompt(enum, np.where(seen, 0, pr * gold))
            g_se = exact.per_prompt(enum, np.where(seen, pr * gold, 0))
            d = res.setdefault(name, {"train": [], "g_un": [], "g_se": []})
            d["train"].append(per[train_q].mean())
            d["g_un"].append(g_un[train_q].sum() / per[train_q].sum())
            d["g_se"].append(g_se[train_q].sum() / (1 - per[train_q]).sum())
        print(f"{runs.name} seed {seed}: {covered[-1]} distinct completions in {n_pairs[-1]} pairs, "
              f"{n_train[-1]} training prompts", flush=True)
    out = [f"`{runs.name}`: pref, {len(seeds)} seeds; each seed's DPO run's own training pairs "
           f"({n_pairs[0]:,} pairs, {min(covered):,}–{max(covered):,} distinct completions) over the RM stage's "
           f"{min(n_train)}–{max(n_train)} training prompts (its held-out prompts have no pair: all their mass is "
           f"outside by definition, left out); PPO's reward model was trained on the same pairs. Means over the "
           f"training prompts; ± = 95% Student-t half-width over seeds; gold = probability-weighted gold reward "
           f"of the mass outside / inside the pairs.", "",
           "| policy | mass outside the pairs | gold reward outside | gold reward inside |", "|---|---:|---:|---:|"]
    for name, d in res.items():
        out.append(f"| {name} | {fmt(*ci(d['train']), 4)} | {fmt(*ci(d['g_un']))} | {fmt(*ci(d['g_se']))} |")
    if "dpo" in res and "ppo" in res:
        diff = np.array(res["dpo"]["train"]) - np.array(res["ppo"]["train"])
        out += ["", f"DPO − PPO, paired by seed: {fmt(*ci(diff), 4)} (per seed: "
                    f"{', '.join(f'{x:+.4f}' for x in diff)})."]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=Path, required=True, action="append",
                    help="a `toyrlhf compare ... dpo ppo --task pref` folder (repeatable); the tilt uses the first")
    ap.add_argument("--out", type=Path, default=HERE / "dpo_facts.md")
    ap.add_argument("--skip-tilt", action="store_true")
    ap.add_argument("--draws", type=int, default=1, help="independent pair draws per n (rng seeds [d, n])")
    a = ap.parse_args()
    t0 = time.time()
    lines = ["# Exact facts of DPO on pref (plots/dpo_facts.py)", ""]
    lines += ["## 2. Mass on completions that never appear in the pairs (Xu et al. 2024)", ""]
    for runs in a.runs:
        lines += unseen_rows(runs) + [""]
    print("\n".join(lines), flush=True)
    if not a.skip_tilt:
        lines += ["## 1. The Gibbs tilt: implicit reward against the RM's score, seed 0, β = 0.1, "
                  f"the SFT policy's {SUPPORT} most likely completions per prompt", ""]
        lines += tilt_table(a.runs[0] / "dpo-s0", a.draws) + [""]
    lines.append(f"({time.time() - t0:.0f} s)")
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
