#!/usr/bin/env bash
# Regenerates every reference figure in plots/ (the ones README.md shows). One command, from the repo root:
#     bash plots/make_figures.sh
# About 15 minutes on 2 cores (7 presets x 5 seeds x 500 steps, the mean-pooled-RM pair, the length-bias pair,
# the reward-model data scaling, the check).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${TOYRLHF_FIGURES_WORK:-$(mktemp -d)}"
echo "run folders go to $work"

# 1. every preset on the default task (learned reward model), 5 seeds
toyrlhf compare ppo grpo dr_grpo dapo rloo reinforce gspo --seeds 5 --steps 500 --out "$work/presets" --overwrite
cp "$work/presets/comparison.png" "$here/presets_pref.png"
# reward vs sqrt(KL) over the exact optimal frontier of each seed's reference (the gaps go to frontier_pref.txt)
toyrlhf plot --frontier "$work/presets/" --smooth 20 --out "$here/frontier_pref.png" | tee "$here/frontier_pref.txt"
cp "$work/presets/comparison.md" "$here/presets_pref.md"

# 1b. the same start with the weaker, mean-pooled reward model: over-optimisation (Gao et al. 2022)
toyrlhf compare grpo ppo --set rm.head=mean --seeds 5 --steps 500 --out "$work/mean_rm" --overwrite
cp "$work/mean_rm/frontier.png" "$here/frontier_pref_mean_rm.png"
cp "$work/mean_rm/comparison.md" "$here/rm_mean_pref.md"

# 2. GRPO vs Dr. GRPO on the length-bias task: length of incorrect vs correct answers
toyrlhf compare grpo dr_grpo --task length --seeds 5 --steps 500 --out "$work/length" --overwrite
toyrlhf plot "$work"/length/*/ --metric response_length_incorrect --metric response_length_correct \
    --metric accuracy --metric response_length --smooth 25 --out "$here/length_bias.png"
cp "$work/length/comparison.md" "$here/length_bias.md"

# 2b. reward-model accuracy against the number of pairs, both heads, exact population figures (~6 minutes)
python "$here/rm_data_scaling.py" --out "$here/rm_data_scaling.png"

# 3. the exact-vs-estimator check (KL estimators and policy gradients)
toyrlhf check --figure "$here/check.png" | tee "$here/check.txt"

# 4. every preset and library preset against the exact gradient (toyrlhf check --all-algos; ~80 s):
#    plots/all_algos.md and the README's all-algos table
python "$here/all_algos.py"
