"""The preset rows of `toyrlhf check --all-algos` as tables (issue 14, item 4).

    python plots/all_algos.py [--samples N]     (from any folder but the repo root; about 80 s, stage cache)

Runs ``toyrlhf.check.run_check("arith", all_algos=True)`` (pi = the arith SFT model, the check's default seed and
draws) and writes plots/all_algos.md: one row per preset and library preset (and the entropy-mask and GDPO variants)
with the exact expected gradient's cosine and norm ratio against the preset's target, the Monte-Carlo z-scores and
the verdicts. It also replaces the block between the all-algos markers in README.md with the compact table.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from toyrlhf import check
from toyrlhf.check import presets

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
BEGIN, END = "<!-- all-algos table: plots/all_algos.py -->", "<!-- end of all-algos table -->"


def _cells(r):
    verdict, _, parts = r.verdict.partition("; micro-batches")
    parts = "micro-batches" + parts
    exact = r.cos is not None
    cos = f"{r.cos:.4f}" if exact else f"({r.cos_mc:.3f} MC)"
    ratio = f"{r.ratio:.3f}" if exact else "-"
    z_e = f"{r.z_expected:+.1f}" if exact else "-"
    split = ("invariant" if "invariant" in parts else
             "changes, E shifts (z " + parts.split("(z ")[1] if "(z " in parts else "changes each batch")
    return cos, ratio, z_e, f"{r.z:+.1f}", verdict, split


def tables(report) -> tuple[str, str]:
    rows = [r for r in report.rows if r.section == presets.SECTION]
    full = ["| preset | target | cos | norm ratio | z(E) | z (vs target) | verdict | 2 micro-batches, local counts |",
            "|---|---|---|---|---|---|---|---|"]
    short = ["| preset | cos | norm ratio | verdict | micro-batches (local counts) |", "|---|---|---|---|---|"]
    for r in rows:
        cos, ratio, z_e, z, verdict, split = _cells(r)
        verdict = verdict.replace("|", "\\|")               # a '|' inside a cell would end it
        full.append(f"| `{r.estimator}` | {r.target} | {cos} | {ratio} | {z_e} | {z} | {verdict} | {split} |")
        brief = verdict.split("; MC")[0].replace(" (scale not detected at this N)", "")
        short.append(f"| `{r.estimator}` | {cos} | {ratio} | {brief} | {split} |")
    return "\n".join(full), "\n".join(short)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=2000)
    args = ap.parse_args()
    report = check.run_check("arith", samples=args.samples, seed=0, all_algos=True)
    info = report.info
    full, short = tables(report)
    head = (f"toyrlhf check --all-algos, task arith, pi = SFT model, {args.samples} draws of "
            f"{len(info['pg_prompts'])} prompts x G = {info['group_size']} (exact P(correct) "
            f"{', '.join(f'{p:.3f}' for p in info['pg_p'])}); reward 1[correct] (GDPO: the rule's components).")
    (HERE / "all_algos.md").write_text(head + "\n\n" + full + "\n")
    text = README.read_text()
    block = f"{BEGIN}\n{short}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    README.write_text(pattern.sub(lambda _: block, text))
    print(head + "\n\n" + full)


if __name__ == "__main__":
    main()
