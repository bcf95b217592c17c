"""The README's worked example of a unit-level check runs, and prints what the README says it prints."""
import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_blocks():
    text = README.read_text()
    return re.findall(r"```python\n(.*?)```\n```\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_readme_exact_check_example_prints_what_the_readme_shows(cache_dir):
    blocks = readme_blocks()
    assert blocks, "README lost its worked example"
    code, expected = blocks[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().split() == expected.split()
