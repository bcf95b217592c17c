"""Vectorisable exp and tanh for the fast path.

exp and tanh: numba lowers np.exp / np.tanh / math.tanh to scalar libm calls that block vectorisation (no SVML
here): np.tanh over the hidden layer alone cost more than the whole step budget. `_vexp` and `_vtanh` are
written as branch-free loops that LLVM vectorises: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2,
e^r - 1 by its Taylor polynomial to degree 13 (truncation < 5e-18), 2^n assembled in the exponent bits through
an int64 view of a float64 scratch buffer. Accuracy: within a few ulp of libm (tests compare with np.exp /
np.tanh at 1e-15 relative); tanh uses tanh(a) = em / (em + 2), em = e^{2a} - 1, so it keeps full relative
accuracy near 0. NaN propagates.
"""
from __future__ import annotations

import numpy as np
from .jit import _helper, _kernel, _part

_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01      # fdlibm split of ln 2: n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = 1.90821492927058770002e-10
_MAGIC = 6755399441055744.0               # 1.5 * 2^52: x + _MAGIC rounds x to an integer held in the low bits
_EXP_OFF = 1023 - 0x4338000000000000      # bits(_MAGIC + n) + _EXP_OFF = n + 1023, the biased exponent of 2^n
_C2, _C3, _C4, _C5 = 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120
_C6, _C7, _C8, _C9 = 1.0 / 720, 1.0 / 5040, 1.0 / 40320, 1.0 / 362880
_C10, _C11, _C12, _C13 = 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800


@_part
def _reduce(y, fb, q, i):
    """y = n ln2 + r (Cody-Waite, |r| <= ln2/2): fb[i] = n + _MAGIC (n in its low bits, for `_pow2_bits`),
    q[i] = e^r - 1 by its Taylor polynomial to degree 13."""
    t = y * _INV_LN2 + _MAGIC
    fb[i] = t
    nf = t - _MAGIC
    r = (y - nf * _LN2_HI) - nf * _LN2_LO
    q[i] = r * (1.0 + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * (_C6 + r * (_C7 + r * (
        _C8 + r * (_C9 + r * (_C10 + r * (_C11 + r * (_C12 + r * _C13))))))))))))


@_helper
def _pow2_bits(fb, m):
    """fb[i] = bits(x/ln2 + _MAGIC) -> fb[i] = 2^n, through an int64 view (vectorises: shifts and adds)."""
    ib = fb[:m].view(np.int64)
    for i in range(m):
        ib[i] = (ib[i] + _EXP_OFF) << 52


@_helper
def _vexp(x, out, fb, q, m):
    """out[i] = exp(x[i]) for i < m, x <= 709 (x < -708 is read as -708: e^-708 = 3e-308). Vectorises.
    x, out, fb, q must not overlap (an overlap check would send LLVM to the scalar loop)."""
    for i in range(m):
        y = x[i]
        if y < -708.0:
            y = -708.0
        _reduce(y, fb, q, i)
    _pow2_bits(fb, m)
    for i in range(m):
        s = fb[i]
        out[i] = s + s * q[i]


@_helper
def _vtanh(x, fb, q, m):
    """x[i] = tanh(x[i]) in place for i < m: tanh(|x|) = em / (em + 2), em = e^{2|x|} - 1 = (2^n - 1) + 2^n q."""
    for i in range(m):
        y = 2.0 * abs(x[i])
        if y > 40.0:                              # tanh(20) == 1.0 in float64; NaN stays NaN
            y = 40.0
        _reduce(y, fb, q, i)
    _pow2_bits(fb, m)
    for i in range(m):
        s = fb[i]
        em = (s - 1.0) + s * q[i]
        t = em / (em + 2.0)
        x[i] = t if x[i] >= 0.0 else -t


@_kernel(contract=True)
def _vexp_array(x):
    """exp of a 1-D array through `_vexp` (for tests and benchmarks)."""
    n = x.shape[0]
    out = np.empty(n)
    fb = np.empty(1024)
    q = np.empty(1024)
    for lo in range(0, n, 1024):
        m = min(n, lo + 1024) - lo
        _vexp(x[lo:lo + m], out[lo:lo + m], fb, q, m)
    return out


@_kernel(contract=True)
def _vtanh_array(x):
    """tanh of a 1-D array through `_vtanh` (for tests and benchmarks)."""
    n = x.shape[0]
    out = x.copy()
    fb = np.empty(1024)
    q = np.empty(1024)
    for lo in range(0, n, 1024):
        m = min(n, lo + 1024) - lo
        _vtanh(out[lo:lo + m], fb, q, m)
    return out
