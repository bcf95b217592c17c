"""Speed of one Adam step: the fused kernel (`optim.Adam.step`) against the same update written as NumPy array
expressions, at the parameter counts of the policy (9,367) and of the sequence reward model / PPO critic (16,785).
Prints figures and the ratio; asserts nothing.

    python benchmarks/bench_adam.py
"""
from __future__ import annotations

import timeit

import numpy as np

from toyrlhf.optim import Adam


def numpy_adam(n: int):
    """The update of Kingma & Ba 2015, Algorithm 1, as NumPy expressions (ten array temporaries per step)."""
    m, v, state = np.zeros(n), np.zeros(n), {"t": 0}

    def step(params, grad, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        state["t"] += 1
        m[:] = b1 * m + (1.0 - b1) * grad
        v[:] = b2 * v + (1.0 - b2) * grad * grad
        params -= lr * (m / (1.0 - b1 ** state["t"])) / (np.sqrt(v / (1.0 - b2 ** state["t"])) + eps)
    return step


def best_of(fn, number=2000, repeat=7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main():
    rng = np.random.default_rng(0)
    for n in (9_367, 16_785):
        g = rng.normal(size=n)
        p1, p2 = np.zeros(n), np.zeros(n)
        opt, ref = Adam(n), numpy_adam(n)
        opt.step(p1, g)                       # compile / warm up
        fused = best_of(lambda: opt.step(p1, g))
        plain = best_of(lambda: ref(p2, g))
        print(f"Adam step, {n:>6} parameters: fused kernel {fused * 1e6:6.1f} us, NumPy {plain * 1e6:6.1f} us "
              f"-> {plain / fused:.1f}x")


if __name__ == "__main__":
    main()
