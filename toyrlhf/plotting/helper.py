"""curves.png drawn by a helper process that has imported matplotlib while the run trained.

Importing matplotlib and drawing a first figure costs a fresh process about 0.5 s of CPU, more than all the rest
of what a warm `toyrlhf run` does after its last step. `toyrlhf run` (the CLI, when it is the whole process)
starts `python -m toyrlhf.plotting.helper` next to the run: on a free core that import is paid while the run
trains, and at the end the helper only draws. The run still waits for it, so curves.png is complete when
`toyrlhf run` exits and before the folder's lock is released. Any failure of the helper (it died, it did not
answer) falls back to drawing in this process, which then reports errors as usual; a UserError raised in the
helper (e.g. an unwritable folder) comes back as the same one-line UserError.

Protocol: one JSON line per request on the helper's stdin, [run_dir, out]; one JSON line back, {"ok": path} or
{"error": message}. End of stdin (the run ended, was interrupted or killed) ends the helper.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

from ..errors import UserError
from .curves import plot_run_curves
from .style import RC

ANSWER_SECONDS = 120.0
"""How long the run waits for the helper's answer before drawing itself (the helper draws in well under 1 s)."""


class CurvesHelper:
    """A running helper process; `draw(run_dir, out)` has it write curves.png. A context manager: leaving it ends
    the helper."""

    def __init__(self):
        self.proc = None
        if os.name != "posix":   # select() on pipes and new sessions are POSIX's: draw in-process elsewhere
            return
        try:
            # its own session: a Ctrl-C at the terminal reaches the run, which decides; the helper ends with stdin
            self.proc = subprocess.Popen([sys.executable, "-m", "toyrlhf.plotting.helper"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
                                         close_fds=True, text=True)
        except OSError:
            self.proc = None

    def __enter__(self) -> "CurvesHelper":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def draw(self, run_dir, out) -> Path:
        """curves.png of `run_dir` written to `out` by the helper; by this process if the helper cannot."""
        answer = self._ask([str(run_dir), str(out)])   # as given: the helper shares this cwd, errors name them alike
        self.close()
        if answer is not None and "error" in answer:
            raise UserError(answer["error"])
        if answer is not None and Path(out).is_file():
            return Path(out)
        return plot_run_curves(run_dir, out)

    def _ask(self, request) -> dict | None:
        """The helper's answer to one request, or None if it is gone or silent for ANSWER_SECONDS."""
        if self.proc is None:
            return None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], ANSWER_SECONDS)
            line = self.proc.stdout.readline() if ready else ""
            answer = json.loads(line) if line else None
        except (OSError, ValueError):
            return None
        return answer if isinstance(answer, dict) else None

    def close(self) -> None:
        """End the helper at once: it holds nothing worth waiting for (it writes only when asked, atomically, and
        has answered), and a run that was interrupted or failed must not wait for its import to finish."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for end in (proc.stdin.close, proc.kill, proc.wait, proc.stdout.close):
            try:
                end()
            except OSError:
                pass


def _warm_up() -> None:
    """Import matplotlib's figure and Agg canvas and draw a small text, so that the fonts are loaded before the run
    asks for its figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    import matplotlib
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(1, 1))
        fig.text(0.5, 0.5, "0.1 step")
        FigureCanvasAgg(fig).draw()


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    """The helper's loop: warm up, then draw each requested figure and answer."""
    _warm_up()
    for line in stdin:
        try:
            run_dir, out = json.loads(line)
            answer = {"ok": str(plot_run_curves(run_dir, out))}
        except UserError as e:
            answer = {"error": str(e)}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve()
    # nothing is left to clean up (every answer is flushed, every file renamed into place), and the run waits for
    # this exit: the interpreter's teardown of matplotlib's objects would cost it 0.2-0.4 s
    os._exit(0)
