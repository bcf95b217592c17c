"""The scipy.special functions the library calls, imported on their first use.

A run that finds its stages in the cache calls none of them, yet importing scipy.special costs it 0.19 s of its
start (scipy 1.17's array-API layer pulls in numpy.f2py and numpy.testing). Call sites read
`special.expit(x)`, as they would with `scipy.special`; the functions are scipy's own, so no number changes.
"""
from __future__ import annotations

_NAMES = ("entr", "expit", "gammaln", "log_softmax", "logsumexp")


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import scipy.special
    fn = getattr(scipy.special, name)
    globals()[name] = fn        # later calls find it as a plain module attribute
    return fn


def __dir__():
    return sorted((*globals(), *_NAMES))
