"""Seeing what the model says and logging: completions.jsonl every N steps (decoded, with rewards), the optional
TensorBoard writer (skipped without tensorboardX), the CSV export of metrics.jsonl."""
import csv
import importlib.util
import io
import json
import struct

import pytest

import toyrlhf
from toyrlhf.run_logs import metrics_csv

from tiny import TINY


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("TOYRLHF_CACHE_DIR", str(cache))
    tb = importlib.util.find_spec("tensorboardX") is not None
    run = toyrlhf.train("grpo", steps=4, out=tmp_path_factory.mktemp("run") / "r", log_completions_every=2,
                        tensorboard=tb, **TINY)
    yield run, tb
    mp.undo()


def test_completions_are_logged_every_n_steps_as_text_with_rewards(logged_run):
    run, _ = logged_run
    records = [json.loads(l) for l in (run.run_dir / "completions.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2] * 4 + [4] * 4      # one per prompt (4 prompts per step)
    for r in records:
        assert " -> " in r["text"] and isinstance(r["reward"], float) and isinstance(r["gold_reward"], float)
        assert r["text"].split(" -> ")[1].endswith("<eos>") != r["truncated"]


def test_completions_off_by_default_and_validated():
    from toyrlhf.config import RLConfig
    assert RLConfig().log_completions_every == 0 and RLConfig().tensorboard is False
    with pytest.raises(ValueError, match="log_completions_every"):
        RLConfig(log_completions_every=-1)


def test_metrics_csv_has_a_row_per_step(logged_run):
    run, _ = logged_run
    rows = list(csv.DictReader(io.StringIO(metrics_csv(run.run_dir))))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["gold_reward"]) == pytest.approx(run.metrics[-1]["gold_reward"], rel=1e-12)


def _events(path):
    """The scalar (tag, step, value) records of a TensorBoard event file (TFRecord framing, tensorboardX's proto)."""
    from tensorboardX.proto import event_pb2
    data, out, i = path.read_bytes(), [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        ev = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
        i += 12 + n + 4
        out += [(v.tag, ev.step, v.simple_value) for v in ev.summary.value]
    return out


def test_tensorboard_scalars(logged_run):
    run, tb = logged_run
    if not tb:
        pytest.skip("tensorboardX not installed (pip install 'toyrlhf[tensorboard]')")
    (event_file,) = (run.run_dir / "tb").glob("events.out.tfevents.*")
    gold = [(s, v) for tag, s, v in _events(event_file) if tag == "gold_reward"]
    assert [s for s, _ in gold] == [1, 2, 3, 4]
    assert gold[-1][1] == pytest.approx(run.metrics[-1]["gold_reward"], rel=1e-6)
