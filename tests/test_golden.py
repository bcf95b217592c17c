"""Refactors change no number: every preset's 30 steps on pref and arith, and `toyrlhf check`, against the
golden files in tests/golden/ (recorded by tests/golden/record.py; regenerated only in a commit that says why)."""
import importlib.util
import json
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
_spec = importlib.util.spec_from_file_location("golden_record", GOLDEN / "record.py")
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)

CASES = sorted(p.stem for p in GOLDEN.glob("*.json"))


@pytest.fixture(scope="module")
def golden_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("golden-stage-cache")


def test_every_preset_and_task_has_a_golden_file():
    assert set(CASES) == {f"{a}-{t}" for a in record.presets() for t in record.TASKS}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_run_is_bit_identical_to_golden(case, tmp_path, golden_cache):
    want = json.loads((GOLDEN / f"{case}.json").read_text())
    got = record.run_record(want["algo"], want["task"], tmp_path, golden_cache)
    assert len(got["metrics"]) == len(want["metrics"])
    for i, (g, w) in enumerate(zip(got["metrics"], want["metrics"])):
        assert g == w, f"{case}: step {i + 1} differs"
    assert got["checkpoint"] == want["checkpoint"], f"{case}: checkpoint arrays differ"


@pytest.mark.slow
def test_check_table_is_identical_to_golden(tmp_path, golden_cache):
    assert record.check_table(tmp_path, golden_cache) == (GOLDEN / "check.txt").read_text()
