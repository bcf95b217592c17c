"""The optimiser's loops: Adam in one pass, and a sum of squares in a fixed order (for the gradient norm)."""
from __future__ import annotations

import numpy as np

from .jit import _kernel


@_kernel()
def _adam_update(params, grad, m, v, lr, beta1, beta2, eps, bc1, bc2):
    """One bias-corrected Adam step in place, element by element, in the operation order of the NumPy form
    (so the result is bit-identical to it): one pass over memory instead of ten array temporaries. Returns whether
    every updated parameter is finite, read in the same pass (p - p is 0 exactly for a finite p): the trainer's
    divergence check after each step, without another pass over the vector.

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g;  p -= lr (m / bc1) / (sqrt(v / bc2) + eps)
    """
    c1 = 1.0 - beta1
    c2 = 1.0 - beta2
    finite = True
    for i in range(params.shape[0]):
        g = grad[i]
        mi = m[i] * beta1 + c1 * g
        vi = v[i] * beta2 + c2 * g * g
        m[i] = mi
        v[i] = vi
        p = params[i] - lr * (mi / bc1) / (np.sqrt(vi / bc2) + eps)
        params[i] = p
        finite &= (p - p) == 0.0
    return finite


@_kernel(contract=True)
def _sum_squares(x):
    """sum_i x_i^2 with eight fixed partial sums (a fixed order; BLAS ddot's order depends on its threads)."""
    n = x.shape[0]
    acc = np.zeros(8)
    n8 = n - n % 8
    for i0 in range(0, n8, 8):
        for l in range(8):
            acc[l] += x[i0 + l] * x[i0 + l]
    s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    for i in range(n8, n):
        s += x[i] * x[i]
    return s
