"""Sweeps: a grid of RL runs (algorithms x seeds x any setting), run on local processes or on a Ray cluster, then one
table and one figure (`toyrlhf sweep GRID.toml`, cli/commands_sweep.py).

    grid.py         the grid file, its points, run names and resolved configs, the upstream stages they need
    report.py       the sweep's table (CSV + Markdown, Student-t intervals over seeds) and figure
    driver.py       what to run (finished runs skipped, interrupted ones resumed), stages first, then the runs
    local.py        backend: local processes (ProcessPoolExecutor, spawn)
    ray_backend.py  backend: an existing Ray cluster through Ray's API; stages and results travel as bytes through
                    Ray (object store, task return values), never through a shared disk. `ray` is imported there
                    only, and only when that backend is used.
"""
