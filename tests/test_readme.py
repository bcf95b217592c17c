"""The README's worked example of a unit-level check runs, and prints what the README says it prints."""
import contextlib
import io
import re
from pathlib import Path

import pytest

from toyrlhf.rl.advantages import ADVANTAGE_ESTIMATORS
from toyrlhf.rl.losses import AGGREGATIONS, KL_ESTIMATORS
from toyrlhf.rl.surrogates import SURROGATES

REGISTRIES = (ADVANTAGE_ESTIMATORS, SURROGATES, AGGREGATIONS, KL_ESTIMATORS)

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_blocks():
    text = README.read_text()
    return re.findall(r"```python\n(.*?)```\n```\n(.*?)```", text, flags=re.S)


def test_readme_keeps_its_worked_examples():
    """The exact Bayes ceiling of preference pairs, the exact-engine gradient check, adding an estimator."""
    assert len(readme_blocks()) >= 3, "README lost a worked example"


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_worked_examples_print_what_the_readme_shows(module_cache_dir, index):
    """Every ```python block that is followed by an output block runs and prints that output (the blocks share a
    stage cache, as a reader's session would: two of them use the same SFT model)."""
    code, expected = readme_blocks()[index]
    out = io.StringIO()
    before = [(reg, set(reg)) for reg in REGISTRIES]
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {})
    finally:   # a block may register a toy estimator: take it out again for the other tests
        for reg, names in before:
            for name in set(reg) - names:
                reg.remove(name)
    assert out.getvalue().split() == expected.split()
