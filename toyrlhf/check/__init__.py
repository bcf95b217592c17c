"""`toyrlhf check`: every estimator of the project against the exact engine, on a task small enough to enumerate.

    rows.py    CheckRow / CheckReport and the verdicts (words computed from exact cosines, ratios and z-scores)
    draws.py   Monte-Carlo draws: per-(window, token) log-probs and gradients, projections on unit directions
    run.py     run_check: the KL, policy-gradient and preference sections and the run's info

A report built on top of the engine: it may import the stages, the presets and the preference sampler; the engine
(``toyrlhf/exact/``) never imports it.
"""
from __future__ import annotations

from .draws import Draws, TokenPairs, directional_logp, mean_se
from .rows import Z_MAX, CheckReport, CheckRow, gradient_verdict, value_verdict
from .run import check_steps, pg_estimators, run_check

__all__ = ["check_steps", "pg_estimators", "Z_MAX", "CheckReport", "CheckRow", "Draws", "TokenPairs", "directional_logp",
           "gradient_verdict", "mean_se", "run_check", "value_verdict"]
