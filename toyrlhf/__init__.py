"""toyrlhf: a CPU-only simulator of LLM post-training, exact enough to check algorithms against ground truth."""

import os as _os

__version__ = "0.1.0"

# The command line lives in cli/ beside this package and is installed as `toyrlhf.cli` (setup.cfg maps it).
# In a source checkout (setup.cfg next to cli/), let the same name resolve there too, so `python -m toyrlhf`
# run from the checkout finds its CLI instead of failing on a half-shadowed package.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "setup.cfg")) and _os.path.isfile(_os.path.join(_root, "cli", "__init__.py")):
    __path__.append(_root)  # noqa: F821 - a package's own __path__
