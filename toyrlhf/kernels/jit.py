"""The one decorator every kernel goes through: numba's njit with the project's flags and its cache fallback.

Every kernel is serial (no `parallel=True`): the fast path's threads are Python threads sharing fixed chunks of
rows or columns (`pool.py`), so that a busy core never stalls the others, and so that the first-run compile stays
short (a parallel kernel took 2-3x the LLVM time of its serial form, measured: 3.3 s against 1.5 s for the LM
head, most of it re-optimising the inlined exp/tanh helpers in the outlined parallel body). nogil=True lets those
threads run kernels side by side.
"""
from __future__ import annotations

from numba import njit


def _kernel(contract: bool = False, inline: str = "never"):
    """njit with cache=True, falling back to an uncached compile when no cache locator is writable.
    contract=True lets LLVM fuse a*b + c into one FMA (one rounding instead of two; no reassociation)."""

    def deco(fn):
        opts = dict(error_model="numpy", nogil=True, inline=inline)
        if contract:
            opts["fastmath"] = {"contract"}
        try:
            return njit(cache=True, **opts)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(cache=False, **opts)(fn)

    return deco


def _helper(fn):
    """A njit helper called from the fast kernels (their flags, cached, inlined by LLVM)."""
    return _kernel(contract=True)(fn)


def _part(fn):
    """A part of one kernel, written apart to keep functions short: inlined into its caller by numba itself, so
    it is never compiled on its own (a `_helper` is, then again in each caller: +0.7 s per split, measured)."""
    return _kernel(contract=True, inline="always")(fn)
