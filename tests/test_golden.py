"""Refactors change no number: every preset's 30 steps on pref and arith, and `toyrlhf check`, against the
golden files in tests/golden/ (recorded by tests/golden/record.py; regenerated only in a commit that says why)."""
import importlib.util
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
_spec = importlib.util.spec_from_file_location("golden_record", GOLDEN / "record.py")
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)

CASES = sorted(p.stem for p in GOLDEN.glob("*.json"))
CHECK = "check"


def _want(case: str) -> dict:
    return json.loads((GOLDEN / f"{case}.json").read_text())


@pytest.fixture(scope="module")
def golden_runs(request, tmp_path_factory):
    """{case or CHECK: Future of its record}, for the cases this session selected, started at once: one queue of
    subprocesses per task, so two golden runs go at a time. Each is a single-threaded process (record.ENV), so the
    two use both cores of the 2-core machines the suite is timed on (one at a time left a core idle), and a task's
    runs still go one after another, the first building the upstream stages the others load (no two
    processes build one stage). `toyrlhf check` is arith's: it queues behind arith's runs."""
    wanted = {item.callspec.params["case"] if hasattr(item, "callspec") else CHECK for item in request.session.items
              if item.module is request.module and item.originalname.endswith("_identical_to_golden")}
    workdir, cache = tmp_path_factory.mktemp("golden-runs"), tmp_path_factory.mktemp("golden-stage-cache")
    queues = {task: ThreadPoolExecutor(1, thread_name_prefix=f"golden-{task}") for task in record.TASKS}
    runs = {}
    for case in CASES:
        if case in wanted:
            algo, task = _want(case)["algo"], _want(case)["task"]
            runs[case] = queues[task].submit(record.run_record, algo, task, workdir, cache)
    if CHECK in wanted:
        runs[CHECK] = queues["arith"].submit(record.check_table, workdir, cache)
    yield runs
    for q in queues.values():
        q.shutdown(wait=True, cancel_futures=True)


def test_every_preset_and_task_has_a_golden_file():
    assert set(CASES) == {f"{a}-{t}" for a in record.presets() for t in record.TASKS}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_run_is_bit_identical_to_golden(case, golden_runs):
    want = _want(case)
    got = golden_runs[case].result()
    assert len(got["metrics"]) == len(want["metrics"])
    for i, (g, w) in enumerate(zip(got["metrics"], want["metrics"])):
        assert g == w, f"{case}: step {i + 1} differs"
    assert got["checkpoint"] == want["checkpoint"], f"{case}: checkpoint arrays differ"


@pytest.mark.slow
def test_check_table_is_identical_to_golden(golden_runs):
    assert golden_runs[CHECK].result() == (GOLDEN / "check.txt").read_text()
