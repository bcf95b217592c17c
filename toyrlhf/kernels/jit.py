"""The one decorator every kernel goes through: numba's njit with the project's flags and its cache fallback.

Every kernel is serial (no `parallel=True`): the fast path's threads are Python threads sharing fixed chunks of
rows or columns (`pool.py`), so that a busy core never stalls the others, and so that the first-run compile stays
short (a parallel kernel took 2-3x the LLVM time of its serial form, measured: 3.3 s against 1.5 s for the LM
head, most of it re-optimising the inlined exp/tanh helpers in the outlined parallel body). nogil=True lets those
threads run kernels side by side. It also puts in numba's cache loader without the registry refresh
(`_load_without_refresh`); with warmup.py's look at numba's cache index, the only places the package reaches into
numba's internals, both guarded so that a numba without them only starts slower.
"""
from __future__ import annotations

import os
import time

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
        cres = self._load_overload(sig, target_context)
        if cres is None and _wait_for_helper(self):    # the helper has just compiled it: load, do not compile again
            cres = self._load_overload(sig, target_context)
        return cres


COMPILING_MARKER = "toyrlhf-warmup.compiling"
"""A file in the kernels' cache folder, 'pid name': the kernel (its cache file name base) that a first run's
helper process (warmup.py) is compiling now."""
HELPER_WAIT_SECONDS = 30.0
"""The longest a cache miss waits for the helper (it compiles one kernel in at most about 2 s)."""


def mark_compiling(kernel) -> str | None:
    """The helper's side: write 'pid name' of `kernel` into the marker file of its cache folder (atomically) before
    compiling it; returns the marker's path (None if numba's cache has moved its internals or the write failed)."""
    try:
        cache = kernel._cache
        marker = os.path.join(cache._cache_path, COMPILING_MARKER)
        tmp = f"{marker}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()} {cache._impl.filename_base}")
        os.replace(tmp, marker)
        return marker
    except (OSError, AttributeError):
        return None


def _helper_compiling(cache) -> bool:
    """The run's side: is a live helper process compiling the kernel of numba cache `cache` (`mark_compiling`)?
    POSIX only (os.kill(pid, 0) asks whether the process exists there; on Windows it would end it)."""
    if os.name != "posix":
        return False
    try:
        with open(os.path.join(cache._cache_path, COMPILING_MARKER)) as f:
            pid, name = f.read().split()
        if name != cache._impl.filename_base or int(pid) == os.getpid():   # the helper itself loads it first
            return False
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError, AttributeError):
        return False


def _wait_for_helper(cache) -> bool:
    """Wait while the helper compiles this cache's kernel; True if it was compiling it (then load again).

    Why: this process compiles what it needs now while the helper compiles what it needs later, but the helper
    can be part-way through a kernel when this process gets to it. Compiling it here too cost a first run 0.4-1.7 s
    per kernel (measured by benchmarks/bench_compile.py: the sampler, the backward's two largest kernels); the
    helper finishes it sooner."""
    deadline = time.monotonic() + HELPER_WAIT_SECONDS
    waited = False
    while _helper_compiling(cache) and time.monotonic() < deadline:
        waited = True
        time.sleep(0.01)
    return waited


def _install_cache_loader() -> bool:
    """Put `_load_without_refresh` in place when this numba has the internals it relies on (checked with 0.68);
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
