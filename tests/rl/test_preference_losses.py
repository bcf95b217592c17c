"""The direct-preference and RFT losses: float64 central finite differences of every loss w.r.t. the per-token
log-probs of each side, and through TinyLM.logp_backward to the parameters; the closed forms at known points."""
import numpy as np
import pytest

from toyrlhf.model import ModelConfig, TinyLM
from toyrlhf.rl.preference_losses import PREFERENCE_LOSSES, nll_loss, preference_loss


def _batch(rng, n=5, L=7):
    mask_w = np.zeros((n, L), bool)
    mask_l = np.zeros((n, L), bool)
    for i in range(n):
        mask_w[i, 3:3 + rng.integers(1, 4)] = True
        mask_l[i, 3:3 + rng.integers(1, 4)] = True
    lw, ll = -rng.random((n, L)) * 2, -rng.random((n, L)) * 2
    rw, rl = -rng.random((n, L)) * 2, -rng.random((n, L)) * 2
    return lw * mask_w, rw * mask_w, mask_w, ll * mask_l, rl * mask_l, mask_l


def _fd(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        g[idx] = (f(xp) - f(xm)) / (2 * eps)
    return g


@pytest.mark.parametrize("kind", list(PREFERENCE_LOSSES))
@pytest.mark.parametrize("sft_coef", [0.0, 0.7])
def test_pair_loss_gradients_match_finite_differences(kind, sft_coef):
    rng = np.random.default_rng(1)
    lw, rw, mw, ll, rl, ml = _batch(rng)
    w = np.array([1.0, 0.0, 1.0, 0.5, 1.0])
    kw = dict(loss=kind, beta=0.3, sft_coef=sft_coef, weights=w)
    _, dw, dl, _ = preference_loss(lw, rw, mw, ll, rl, ml, **kw)
    gw = _fd(lambda x: preference_loss(x, rw, mw, ll, rl, ml, **kw)[0], lw)
    gl = _fd(lambda x: preference_loss(lw, rw, mw, x, rl, ml, **kw)[0], ll)
    np.testing.assert_allclose(dw, gw * mw, atol=1e-8)   # off the mask the loss does not read logp
    np.testing.assert_allclose(dl, gl * ml, atol=1e-8)
    assert np.all(dw[~mw] == 0) and np.all(dl[~ml] == 0)


def test_closed_forms_at_zero_margin():
    m = np.zeros((1, 4), bool)
    m[0, 2:] = True
    z = np.zeros((1, 4))
    beta = 0.5
    assert preference_loss(z, z, m, z, z, m, loss="sigmoid", beta=beta)[0] == pytest.approx(np.log(2))
    assert preference_loss(z, z, m, z, z, m, loss="ipo", beta=beta)[0] == pytest.approx(1.0)     # (0 - 1/(2*0.5))^2
    assert preference_loss(z, z, m, z, z, m, loss="hinge", beta=beta)[0] == pytest.approx(1.0)
    _, dw, dl, _ = preference_loss(z, z, m, z, z, m, loss="sigmoid", beta=beta)
    np.testing.assert_allclose(dw[m], -beta / 2)           # GC of DPO at pi = pi_ref: sigma(0) beta
    np.testing.assert_allclose(dl[m], beta / 2)


def test_sigmoid_loss_is_stable_for_huge_margins():
    m = np.zeros((2, 3), bool)
    m[:, 1:] = True
    lw = np.where(m, np.array([[0, 400, 400], [0, -400, -400]]), 0.0)
    z = np.zeros((2, 3))
    loss, dw, _, _ = preference_loss(lw, z, m, z, z, m, beta=1.0)
    assert np.isfinite(loss) and np.all(np.isfinite(dw))
    assert loss == pytest.approx(800.0 / 2, rel=1e-12)


def test_nll_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    lw, _, mw, _, _, _ = _batch(rng)
    w = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    _, d = nll_loss(lw, mw, w)
    g = _fd(lambda x: nll_loss(x, mw, w)[0], lw)
    np.testing.assert_allclose(d, g * mw, atol=1e-8)


@pytest.mark.parametrize("kind", list(PREFERENCE_LOSSES))
def test_pair_loss_chained_through_tinylm_matches_parameter_finite_differences(kind):
    """dL/dtheta = logp_backward(dL/dlogp): the gradient the trainers apply, against central differences on the
    parameters of a small MLP (float64)."""
    cfg = ModelConfig(vocab_size=7, arch="mlp", context=2, embed=3, hidden=5)
    model, ref = TinyLM(cfg, seed=0), TinyLM(cfg, seed=1)
    rng = np.random.default_rng(3)
    n, P, T = 4, 2, 3
    tok = rng.integers(3, 7, size=(2 * n, P + T))
    tok[:, 0] = 1
    mask = np.zeros(tok.shape, bool)
    mask[:, P:] = True
    ref_logp = ref.logp_forward(tok, mask)[0]

    def loss_of(flat):
        model.set_flat(flat)
        logp, _, cache = model.logp_forward(tok, mask)
        loss, dw, dl, _ = preference_loss(logp[:n], ref_logp[:n], mask[:n], logp[n:], ref_logp[n:], mask[n:],
                                          loss=kind, beta=0.7, sft_coef=0.3)
        return loss, np.concatenate([dw, dl]), cache

    theta = model.flat.copy()
    _, dlogp, cache = loss_of(theta)
    grad = model.logp_backward(dlogp, cache)
    idx = np.random.default_rng(4).choice(theta.size, 40, replace=False)
    for i in idx:
        e = np.zeros_like(theta)
        e[i] = 1e-6
        fd = (loss_of(theta + e)[0] - loss_of(theta - e)[0]) / 2e-6
        assert abs(fd - grad[i]) <= 1e-6 * max(1.0, abs(fd)), (i, fd, grad[i])
    model.set_flat(theta)
