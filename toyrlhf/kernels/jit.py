"""The one decorator every kernel goes through: numba's njit with the project's flags and its cache fallback."""
from __future__ import annotations

import os

# numba's default threading layer here is OpenMP (GNU libgomp), whose idle workers spin between parallel regions:
# with a second CPU-bound process on 2 cores the spinning threads took the core the work needed (measured: a
# GRPO step 72 ms "quiet" / 212 ms with a hog, against 9.4 / 18 ms with passive waiting; numba's workqueue
# layer 14.7 / 23 ms). libgomp reads this once, when numba first loads it; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from numba import njit  # noqa: E402


def _kernel(parallel: bool = False, contract: bool = False):
    """njit with cache=True, falling back to an uncached compile when no cache locator is writable.
    contract=True lets LLVM fuse a*b + c into one FMA (one rounding instead of two; no reassociation)."""

    def deco(fn):
        opts = dict(parallel=parallel, error_model="numpy", nogil=True)
        if contract:
            opts["fastmath"] = {"contract"}
        try:
            return njit(cache=True, **opts)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(cache=False, **opts)(fn)

    return deco

def _helper(fn):
    """A serial njit helper called from the kernels (same flags, cached, inlined by LLVM)."""
    return _kernel(parallel=False, contract=True)(fn)
