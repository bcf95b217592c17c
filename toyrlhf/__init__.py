"""toyrlhf: a CPU-only simulator of LLM post-training, exact enough to check algorithms against ground truth."""

import importlib as _importlib
import os as _os

__version__ = "0.1.0"

# The command line lives in cli/ beside this package and is installed as `toyrlhf.cli` (setup.cfg maps it).
# In a source checkout (setup.cfg next to cli/), let the same name resolve there too, so `python -m toyrlhf`
# run from the checkout finds its CLI instead of failing on a half-shadowed package.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "setup.cfg")) and _os.path.isfile(_os.path.join(_root, "cli", "__init__.py")):
    __path__.append(_root)  # noqa: F821 - a package's own __path__

# The Python API (toyrlhf/api.py) loads on first use, so that `import toyrlhf` stays cheap (no numpy, numba or
# matplotlib until a run is asked for): toyrlhf.train(...), toyrlhf.load_run(dir).
_LAZY = {"train": "toyrlhf.api", "load_run": "toyrlhf.api", "RunResult": "toyrlhf.api"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'toyrlhf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
