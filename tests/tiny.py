"""Tiny upstream settings for end-to-end tests of the API, sweeps and logging: every stage in a second or two."""

TINY = {"pretrain": {"steps": 30, "corpus_size": 500}, "sft": {"steps": 10, "demos": 16},
        "rm": {"pairs": 200, "steps": 20, "norm_samples": 64, "exact": False, "eval_every": 0},
        "prompts_per_step": 4, "group_size": 4}
"""As keyword settings of toyrlhf.train()."""

TINY_SETS = ["pretrain.steps=30", "pretrain.corpus_size=500", "sft.steps=10", "sft.demos=16", "rm.pairs=200",
             "rm.steps=20", "rm.norm_samples=64", "rm.exact=false", "rm.eval_every=0", "prompts_per_step=4",
             "group_size=4"]
"""The same as `--set` options."""


def set_args(sets=TINY_SETS) -> list[str]:
    return [a for s in sets for a in ("--set", s)]
