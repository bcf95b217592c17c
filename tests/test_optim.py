"""Adam and gradient clipping against values worked out by hand."""
import numpy as np
import pytest

from toyrlhf.optim import Adam, clip_grad_norm


def test_adam_first_step_moves_each_parameter_by_lr_times_sign():
    # step 1: m^ = g, v^ = g^2, so the update is lr * g / (|g| + eps) ~= lr * sign(g)
    p = np.array([1.0, -2.0, 0.5])
    opt = Adam(3, lr=0.1, eps=1e-8)
    opt.step(p, np.array([0.3, -4.0, 0.0]))
    assert np.allclose(p, [1.0 - 0.1 * 0.3 / (0.3 + 1e-8), -2.0 + 0.1 * 4.0 / (4.0 + 1e-8), 0.5], atol=1e-15)


def test_adam_second_step_matches_hand_computation():
    p = np.array([0.0])
    opt = Adam(1, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    opt.step(p, np.array([1.0]))
    opt.step(p, np.array([3.0]))
    # by hand: m2 = 0.9*0.1 + 0.1*3 = 0.39 ; v2 = 0.999*0.001 + 0.001*9 = 0.009999
    m_hat = 0.39 / (1 - 0.81)
    v_hat = 0.009999 / (1 - 0.999 ** 2)
    first = 0.01 * 1.0 / (1.0 + 1e-8)
    assert p[0] == pytest.approx(-first - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8), abs=1e-15)


def test_adam_state_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(5, 4))
    p1, o1 = np.zeros(4), Adam(4, lr=0.05)
    for g in grads:
        o1.step(p1, g)
    p2, o2 = np.zeros(4), Adam(4, lr=0.05)
    for g in grads[:2]:
        o2.step(p2, g)
    o3 = Adam(4, lr=0.05)
    o3.load_state(o2.state())
    for g in grads[2:]:
        o3.step(p2, g)
    assert np.array_equal(p1, p2)


def test_clip_grad_norm_scales_to_max_norm_and_reports_norm_before():
    g, norm = clip_grad_norm(np.array([3.0, 4.0]), 1.0)
    assert norm == 5.0 and np.allclose(g, [0.6, 0.8])
    g, norm = clip_grad_norm(np.array([0.3, 0.4]), 1.0)
    assert np.array_equal(g, [0.3, 0.4])


def test_adam_rejects_non_positive_learning_rate():
    with pytest.raises(ValueError):
        Adam(3, lr=0.0)


def test_fused_adam_kernel_is_bit_identical_to_the_numpy_formula_of_algorithm_1():
    rng = np.random.default_rng(0)
    n = 1000
    lr, b1, b2, eps = 3e-3, 0.9, 0.999, 1e-8
    p_kernel, opt = rng.normal(size=n), Adam(n, lr=lr, beta1=b1, beta2=b2, eps=eps)
    p_numpy, m, v = p_kernel.copy(), np.zeros(n), np.zeros(n)
    for t in range(1, 30):
        g = rng.normal(size=n) * 10.0 ** rng.integers(-6, 3, n)
        opt.step(p_kernel, g)
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g * g
        p_numpy -= lr * (m / (1.0 - b1 ** t)) / (np.sqrt(v / (1.0 - b2 ** t)) + eps)
    np.testing.assert_array_equal(p_kernel, p_numpy)
    np.testing.assert_array_equal(opt.m, m)
    np.testing.assert_array_equal(opt.v, v)


def test_adam_rejects_a_parameter_vector_of_the_wrong_shape():
    import pytest
    with pytest.raises(ValueError):
        Adam(3).step(np.zeros(4), np.zeros(4))


def test_adam_step_reports_whether_every_parameter_is_finite_afterwards():
    # the trainer's divergence check reads this instead of scanning the vector again
    p, opt = np.array([1.0, -2.0, 3.0]), Adam(3, lr=0.1)
    assert opt.step(p, np.array([0.5, 0.0, -1.0])) is True
    assert opt.step(p, np.array([np.nan, 0.0, 1.0])) is False
    q = np.array([1.0, np.inf])
    assert Adam(2).step(q, np.zeros(2)) is False
    assert Adam(1, lr=1e308).step(np.array([-1e308]), np.array([1.0])) is False   # overflows to -inf
