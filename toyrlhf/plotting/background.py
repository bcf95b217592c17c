"""curves.png drawn by a helper process that starts with the run: matplotlib's import and its first figure's font
loading (0.5 s of the 1 s a run's curves.png cost in-process) happen while the steps run, so the run waits only for
the drawing itself when it ends.

    with CurvesDrawer(plot_run_curves) as draw:   # starts the helper (python -m toyrlhf.plotting.background)
        ...                                       # the run's steps; metrics.jsonl and summary.json written
        draw(run_dir, run_dir / "curves.png")     # the helper draws it; returns once the file is written

The helper reads one request (a JSON line on its stdin), calls `plot_run_curves` on it and exits; end of input
without a request (the run failed or was interrupted) makes it exit without drawing, and it lives in its own
session, so a Ctrl-C at the terminal reaches the run only. Whenever the helper fails (it could not start, died,
timed out, or the folder holds something it refuses) the figure is drawn in this process instead, so every
outcome, a UserError included, is exactly that of `plot_run_curves`. No helper is started when this process has
loaded matplotlib already (the helper would only add an interpreter), nor for any other function than
plot_run_curves (tests replace it to skip the figure): the drawer then calls it here.

Measured on the 2-core machine under load ~2 (other processes running): `toyrlhf run grpo --steps 500` waited
0.73-1.7 s for curves.png after its last step, 0.47 s with the helper (the drawing alone: 0.35-0.5 s of Agg text
layout and rasterising for five panels, at any warm-up).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from .curves import plot_run_curves

HELPER_TIMEOUT_S = 120.0
"""How long a run waits for the helper's figure before drawing it itself (a figure takes well under a second)."""


class CurvesDrawer:
    """`plot_run_curves(run_dir, out)` through a helper process started when the drawer is (see the module doc)."""

    def __init__(self, draw: Callable = plot_run_curves, helper: bool | None = None):
        """helper: None starts one unless matplotlib is loaded here already (a compare / sweep worker's second run:
        drawing here then costs what the helper's drawing would, without a fresh interpreter's imports)."""
        self.draw = draw
        self.proc = None
        if helper is None:
            helper = "matplotlib.figure" not in sys.modules
        if helper and draw is plot_run_curves:
            try:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True,
                    env={**os.environ, "MPLBACKEND": "Agg"})
            except OSError:   # no process to spare: draw in this one
                self.proc = None

    def __enter__(self) -> "CurvesDrawer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, run_dir, out) -> Path:
        proc, self.proc = self.proc, None
        if proc is not None:
            request = json.dumps({"run_dir": str(run_dir), "out": str(out)}) + "\n"
            try:
                proc.communicate(request.encode(), timeout=HELPER_TIMEOUT_S)
                if proc.returncode == 0:
                    return Path(out)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                _stop(proc)
        return self.draw(run_dir, out)

    def close(self) -> None:
        """Stop a helper that was never asked for a figure (the run failed or was interrupted)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdin is not None and not proc.stdin.closed:
        try:
            proc.stdin.close()
        except OSError:   # the pipe's other end is gone
            pass


def _warm_up() -> None:
    """Import matplotlib's Figure and Agg canvas and render a little text once (the font cache and glyphs load on
    first use), before the request comes."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(1, 1))
    fig.subplots().set_title("0.5")
    FigureCanvasAgg(fig).print_png(io.BytesIO())


def main() -> int:
    _warm_up()
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    request = json.loads(line)
    plot_run_curves(request["run_dir"], request["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
