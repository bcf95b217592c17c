#!/usr/bin/env bash
# Regenerates the unified-paradigm comparison (docs/unified_paradigm.md, issue 15 item 4): SFT, RFT, online RFT,
# DPO, online DPO, PPO and GRPO on arith and on pref, 5 seeds x 500 steps each, at the matched sample budget
# (every method's step trains on B = 16 prompts x G = 8 = 128 completions: online methods sample them from the
# current policy, offline ones draw 128 rows / 64 pairs of their fixed data set; see the docs for the details).
# Run from any folder (not the repo root, whose runs/ would fill up):
#     bash /path/to/plots/unified_paradigm.sh
# About 8 minutes on 2 idle cores (80 runs plus the per-seed pretrain / SFT / RM stages on a cold cache, the DPO facts).
# Writes plots/unified_{arith,pref}.png (gold reward and KL curves with seed bands; plots/unified_table.py),
# .md (compare's table plus the budget caption and gold at steps 50 / 100, 95% seed intervals) and .csv (compare's);
# the run folders go to $TOYRLHF_FIGURES_WORK (default: a fresh temporary folder).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${TOYRLHF_FIGURES_WORK:-$(mktemp -d)}"
seeds="${UNIFIED_SEEDS:-5}"
steps="${UNIFIED_STEPS:-500}"
echo "run folders go to $work"

for task in arith pref; do
    toyrlhf compare sft rft online_rft dpo online_dpo ppo grpo --task "$task" --seeds "$seeds" --steps "$steps" \
        --out "$work/unified-$task" --overwrite
    cp "$work/unified-$task/comparison.csv" "$here/unified_$task.csv"
    python "$here/unified_table.py" "$work/unified-$task" --out "$here/unified_$task.md" --figure "$here/unified_$task.png"
done

# DPO facts 1 and 2 (exact tilt correlation against the number of pairs; mass outside the pairs, DPO vs PPO, read
# off the pref runs above and off a DPO / PPO pair whose pairs and reward model come from 800 training pairs):
# plots/dpo_facts.md
toyrlhf compare dpo ppo --task pref --seeds "$seeds" --steps "$steps" --set rm.pairs=1000 \
    --out "$work/few-pairs" --overwrite
python "$here/dpo_facts.py" --runs "$work/unified-pref" --runs "$work/few-pairs" --out "$here/dpo_facts.md"

# Two ablations of GRPO's gap to online RFT on arith (README): no KL (beta = 0), and dynamic sampling (all-equal
# groups redrawn, so more samples than the matched budget): plots/unified_arith_ablation.md
for ablation in beta=0 dynamic_sampling=true; do
    toyrlhf compare grpo --task arith --seeds "$seeds" --steps "$steps" --set "$ablation" \
        --out "$work/ablation-$ablation" --overwrite
    python "$here/unified_table.py" "$work/ablation-$ablation" --out "$work/ablation-$ablation/table.md"
done
{
    echo "# GRPO on arith: two ablations of its gap to online RFT ($seeds seeds x $steps steps)"
    echo
    echo "Written by plots/unified_paradigm.sh. Rows: grpo with --set beta=0 (no KL), then with --set dynamic_sampling=true"
    echo "(groups whose rewards are all equal are redrawn: more samples per step than the matched budget)."
    echo "Compare with grpo and online_rft in plots/unified_arith.md."
    echo
    for ablation in beta=0 dynamic_sampling=true; do
        echo "## --set $ablation"
        echo
        sed -n '/^| method |/,/^$/p' "$work/ablation-$ablation/table.md"
        echo
    done
} > "$here/unified_arith_ablation.md"
