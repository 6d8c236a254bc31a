"""Newton's weights for a canonical link in closed form (``Family._canonical_newton``):
accurate to rounding where autodiff of the deviance residuals loses its digits, and zero
exactly where autodiff of R's clamped links is zero (what separation detection reads)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interlace._base.precision import float64_scope
from interlace._core.family import Family

CANONICAL = [Family("binomial", "logit"), Family("poisson", "log")]


def _response(family: Family, n: int, rng):
    if family.name == "binomial":  # proportions of 0-4 trials (0 trials: weight 0)
        w = rng.integers(0, 5, n).astype(float)
        y = np.where(w > 0, rng.integers(0, 5, n) % (w + 1) / np.maximum(w, 1), 0.0)
        return y, w
    return rng.poisson(3.0, n).astype(float), np.ones(n)


@float64_scope
def _autodiff_newton(family: Family, y, eta, w):
    """``h = d''/2``, ``d'`` of the deviance residuals by nested forward mode (the
    general path of ``Family.newton``)."""

    def dev(e):
        return family.deviance_residuals(y, family.linkinv(e), w, None)

    def first(e):
        return jax.jvp(dev, (e,), (jnp.ones_like(e),))[1]

    d1, d2 = jax.jvp(first, (eta,), (jnp.ones_like(eta),))
    return np.asarray(0.5 * d2), np.asarray(d1)


@float64_scope
def _closed(family: Family, y, eta, w):
    h, z = family.newton(jnp.asarray(y), jnp.asarray(eta), jnp.asarray(w))
    return np.asarray(h), np.asarray(z)


@pytest.mark.parametrize("family", CANONICAL, ids=lambda f: f.name)
def test_canonical_newton_is_exact_to_rounding(family):
    """Against the same quantities in extended precision (numpy's long double):
    ``h = w dmu/deta`` to 1e-14 relative and ``h (z - eta) = w (y - mu)`` to 1e-12 of
    ``w (y + mu)`` over ``|eta| < 29``, where autodiff's ``h`` is off by many orders near the
    logit's edge (checked below: worse than 1e-3 somewhere)."""
    rng = np.random.default_rng(7)
    eta = rng.uniform(-29.0, 29.0, 4000)
    y, w = _response(family, eta.size, rng)
    h, z = _closed(family, y, eta, w)
    e = np.exp(eta.astype(np.longdouble))
    mu = e / (1 + e) if family.name == "binomial" else e
    h_ref = w * (e / (1 + e) ** 2 if family.name == "binomial" else e)
    moving = w > 0
    assert np.all(h[~moving] == 0.0)
    rel = np.abs(h[moving] - h_ref[moving]) / h_ref[moving]
    assert float(np.max(rel)) < 1e-14
    step = h * (z - eta)  # w (y - mu), to 1e-12 of w (y + mu) (mu reaches e^29 for counts)
    assert np.all(np.abs(step - w * (y - mu)) <= 1e-12 * w * (y + mu))
    if family.name == "binomial":
        h_auto, _ = _autodiff_newton(family, y, eta, w)
        worst = np.max(np.abs(h_auto[moving] - h_ref[moving]) / h_ref[moving])
        assert float(worst) > 1e-3  # what the closed form mends


@pytest.mark.parametrize("family", CANONICAL, ids=lambda f: f.name)
def test_canonical_newton_agrees_with_autodiff_and_its_zeros(family):
    """Where autodiff is accurate (``|eta| < 8``) the two agree to 1e-6 relative (the
    size of autodiff's own error there); over ``|eta|`` up to 45, at and past the
    clamps, both give ``h = 0`` at the same rows (and ``z = eta`` there)."""
    rng = np.random.default_rng(8)
    inner = rng.uniform(-8.0, 8.0, 2000)
    y, w = _response(family, inner.size, rng)
    h, z = _closed(family, y, inner, w)
    h_auto, d1 = _autodiff_newton(family, y, inner, w)
    moving = h_auto != 0
    np.testing.assert_allclose(h[moving], h_auto[moving], rtol=1e-6)
    np.testing.assert_allclose(
        z[moving], (inner - 0.5 * d1 / np.where(moving, h_auto, 1))[moving], rtol=1e-6
    )

    edges = np.concatenate([rng.uniform(-45.0, 45.0, 2000), [-40, -36, -30.5, 30.5, 36, 40]])
    y, w = _response(family, edges.size, rng)
    h, z = _closed(family, y, edges, w)
    h_auto, _ = _autodiff_newton(family, y, edges, w)
    np.testing.assert_array_equal(h == 0, h_auto == 0)
    np.testing.assert_array_equal(z[h == 0], edges[h == 0])
    assert np.any(h == 0) and np.any(h > 0)
