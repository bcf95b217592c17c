"""The one decorator every kernel goes through: numba's njit with the project's flags and its cache fallback.

Every kernel is serial (no `parallel=True`): the fast path's threads are Python threads sharing fixed chunks of
rows or columns (`pool.py`), so that a busy core never stalls the others, and so that the first-run compile stays
short (a parallel kernel took 2-3x the LLVM time of its serial form, measured: 3.3 s against 1.5 s for the LM
head, most of it re-optimising the inlined exp/tanh helpers in the outlined parallel body). nogil=True lets those
threads run kernels side by side. It also puts in numba's cache loader without the registry refresh
(`_load_without_refresh`), the one place the package reaches into numba's internals.
"""
from __future__ import annotations

from numba import njit
from numba.core import caching
from numba.core.runtime import rtsys


def _load_without_refresh(self, sig, target_context):
    """numba's Cache.load_overload, less its `target_context.refresh()`.

    That refresh imports and installs every implementation numba has (strings, typed dicts and sets, random
    generators, datetimes, polynomials, linear algebra, and for the last scipy.linalg): 0.15-0.2 s of a warm run's
    0.35 s of cache loads, plus 0.19 s of scipy imports, for kernels that were compiled long ago and need none of
    it. What a loaded kernel does need is set up without it: the C helper and exception symbols when the target
    context is made, and numba's runtime (its array allocator), initialised here as the refresh would have. A
    compile still refreshes: numba's compiler does so itself before typing, whatever was loaded before."""
    rtsys.initialize(target_context)
    with self._guard_against_spurious_io_errors():
        return self._load_overload(sig, target_context)


def _install_cache_loader() -> bool:
    """Put `_load_without_refresh` in place when this numba has the internals it relies on (0.58 - 0.68 do);
    otherwise leave numba alone: only start-up time differs, never a result."""
    cache = getattr(caching, "Cache", None)
    needed = ("load_overload", "_load_overload", "_guard_against_spurious_io_errors")
    if cache is None or not all(hasattr(cache, name) for name in needed) or not hasattr(rtsys, "initialize"):
        return False
    cache.load_overload = _load_without_refresh
    return True


CACHE_LOADER_INSTALLED = _install_cache_loader()


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
