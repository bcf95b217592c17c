"""Progress bars (cli/common.py): cut to the terminal's width, ETA from the recent rate (the first step's numba
compile left out), and off a terminal a header and a plain line every 10% instead of nothing (issue 17)."""
from __future__ import annotations

import io
import os
import re
import select
import sys
import time

import pytest

from toyrlhf.cli import common
from toyrlhf.cli.common import Progress

from tiny import set_args


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def visible(line: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)


def test_terminal_line_fits_80_columns_whatever_the_label_and_figures():
    clock = Clock()
    for label in ("grpo on pref", "upstream models (cached after)", "a label far too long " * 6):
        bar = Progress(1000, label, ("reward", "gold_reward", "kl", "entropy"), stream=io.StringIO(), tty=True,
                       now=clock)
        for step in (1, 10, 500, 1000):
            clock.t += 1.0
            bar.update(step, {"reward": -12345.678, "gold_reward": 1.5, "kl": 123.456, "entropy": 0.1})
            for columns in (40, 80, 200):
                assert len(bar.terminal_line(columns)) <= columns - 1
        bar.close()
    wide = Progress(10, "grpo on pref", ("reward",), stream=io.StringIO(), tty=True, now=clock)
    wide.update(5, {"reward": 0.5})
    assert "reward=0.500" in wide.terminal_line(80)      # the figures stay when they fit
    wide.close()


def test_eta_uses_the_recent_rate_not_the_first_steps_compile():
    """Step 1 takes 30 s (numba compiles), then 0.01 s a step: halfway through 1000 steps, 500 steps remain,
    5 s, not the ~15 s that the mean time per step since the start would give."""
    clock = Clock()
    bar = Progress(1000, "grpo on pref", stream=io.StringIO(), tty=True, now=clock)
    clock.t = 30.0
    bar.update(1, {})
    assert bar.eta() is None                              # one mark: no rate yet
    for step in range(2, 501):
        clock.t += 0.01
        bar.update(step, {})
    assert bar.eta() == pytest.approx(5.0, rel=1e-6)
    bar.close()


def test_off_a_terminal_a_header_then_a_plain_line_every_tenth_not_a_torrent():
    clock = Clock()
    out = io.StringIO()
    bar = Progress(400, "grpo on pref", ("reward",), stream=out, tty=False, now=clock)
    for step in range(1, 401):
        clock.t += 0.05
        bar.update(step, {"reward": step / 400})
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "grpo on pref: 400 steps"
    assert "\r" not in out.getvalue()
    # the header after QUIET_SECONDS (1 s: step 20), then 10%, 20%, ..., 100%: 11 lines for 400 steps
    steps = [int(l.split(": ")[1].split("/")[0]) for l in lines[1:]]
    assert steps == list(range(40, 401, 40)), lines
    assert lines[-1].startswith("grpo on pref: 400/400 100%") and "reward=1.000" in lines[-1]


def test_off_a_terminal_the_header_appears_while_the_first_step_is_still_running(monkeypatch):
    monkeypatch.setattr(common, "QUIET_SECONDS", 0.05)
    out = io.StringIO()
    bar = Progress(10, "pretrain pref", stream=out, tty=False)
    t0 = time.monotonic()
    while not out.getvalue() and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    bar.close()
    assert out.getvalue() == "pretrain pref: 10 steps\n"


def test_off_a_terminal_work_that_ends_within_a_second_prints_nothing():
    clock = Clock()
    out = io.StringIO()
    bar = Progress(400, "grpo on pref", stream=out, tty=False, now=clock)
    for step in range(1, 3):
        clock.t += 0.3
        bar.update(step, {})
    bar.close()
    assert out.getvalue() == ""


def test_an_open_outer_bar_that_never_moves_stays_silent(monkeypatch):
    """`run` opens the upstream bar and then the run's: with every stage cached, only the run's bar speaks."""
    monkeypatch.setattr(common, "QUIET_SECONDS", 0.05)
    clock = Clock()
    outer_out, inner_out = io.StringIO(), io.StringIO()
    outer = Progress(5000, "upstream models", stream=outer_out, tty=False, now=clock)
    inner = Progress(20, "grpo on pref", stream=inner_out, tty=False, now=clock)
    time.sleep(0.3)                         # both timers have fired
    for step in range(1, 21):
        clock.t += 1.0
        inner.update(step, {})
    inner.close()
    outer.close()
    assert outer_out.getvalue() == ""
    assert inner_out.getvalue().splitlines()[0] == "grpo on pref: 20 steps"


def test_a_real_run_in_an_80_column_terminal_redraws_one_line(tmp_path, shared_cache_dir):
    """Every redraw of `toyrlhf run` under a pseudo-terminal of 80 columns is at most 79 visible characters, and
    the run's bar leaves one line, not one per step."""
    import pty
    env = {**os.environ, "COLUMNS": "80", "MPLBACKEND": "Agg", "TOYRLHF_PROGRESS": "auto", "TOYRLHF_CACHE_DIR": str(shared_cache_dir)}
    argv = [sys.executable, "-m", "toyrlhf", "run", "grpo", "--steps", "30", *set_args(), "--out",
            str(tmp_path / "run")]
    pid, fd = pty.fork()
    if pid == 0:   # pragma: no cover - the child
        os.chdir(tmp_path)
        os.execve(sys.executable, argv, env)
    data = b""
    t0 = time.time()
    while time.time() - t0 < 300:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, data.decode(errors="replace")
    lines = data.decode(errors="replace").replace("\r\n", "\n").split("\n")
    redraws = [visible(part) for line in lines for part in line.split("\r") if re.search(r"\[[#.]{10,}\]", part)]
    assert redraws and max(len(r) for r in redraws) <= 79, max(redraws, key=len)
    run_lines = [line for line in lines if visible(line.split("\r")[-1]).startswith("grpo on pref [")]
    assert len(run_lines) == 1 and visible(run_lines[0].split("\r")[-1]).startswith("grpo on pref [")
    assert "30/30 100%" in run_lines[0]


def test_progress_bar_off_a_terminal_prints_the_header_and_off_prints_nothing(monkeypatch):
    monkeypatch.setattr(common, "QUIET_SECONDS", 0.05)
    for value, expected in (("auto", "check pref: 3 steps\n"), ("off", "")):
        monkeypatch.setenv("TOYRLHF_PROGRESS", value)
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        with common.progress_bar(3, "check pref") as bar:
            time.sleep(0.3)
            bar(1, {})
        assert err.getvalue().startswith(expected) and (value == "auto" or err.getvalue() == ""), err.getvalue()


def test_a_misspelt_progress_setting_is_a_one_line_error():
    from toyrlhf.cli.main import check_environment
    assert "TOYRLHF_PROGRESS='of'" in check_environment({"TOYRLHF_PROGRESS": "of"})
    assert check_environment({"TOYRLHF_PROGRESS": "off"}) is None and check_environment({}) is None


@pytest.mark.parametrize("argv", [
    ["run", "grpo", "--set", "lr=fast"], ["run", "grpo", "--task", "nope"], ["run", "grpo", "--steps", "0"],
    ["pretrain", "--set", "corpus_size=-3"], ["sft", "--init", "no-such-file.npz"], ["check", "--samples", "1"],
    ["rm", "--set", "pairs=0"]])
def test_bad_input_is_refused_before_any_bar_starts(argv, tmp_path, capsys, monkeypatch):
    """With the bars on and no quiet second, an error in the input is still the one line: it comes first."""
    from toyrlhf.cli.main import main
    monkeypatch.setenv("TOYRLHF_PROGRESS", "auto")
    monkeypatch.setattr(common, "QUIET_SECONDS", 0.0)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main([*argv, "--out", str(tmp_path / "out")] if argv[0] != "check" else argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("toyrlhf: error:"), err
