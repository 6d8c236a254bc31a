"""``fit_arrays`` where ``interlace.fit`` needs its search reparametrised.

* A random slope whose covariate sits far from 0 (a year, a timestamp): the public
  functional fit searches such columns centred, as ``interlace.fit`` does
  (``_core.centring``), and reports ``theta`` for the columns as given. Before, it
  started from ``theta = 1`` on the raw columns, where the intercept and slope variances
  trade off along a narrow ridge, and stopped unconverged, tens of deviance units above
  the optimum (x ~ N(1e4, 1)).
* A slope on a covariate in tiny units (x * 1e-6): ``theta`` is searched rescaled, as
  ``interlace.fit`` searches it (``_core.theta.column_scales``). Before, the search
  stopped near its start and reported convergence, 20 ML units above the optimum.

Tolerances are stated per assertion; finite differences are central.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import fit_arrays, model_arrays

FORMULA = "y ~ x + (x | g) + (1 | h)"


def _far_data(centre: float, seed: int = 11) -> pd.DataFrame:
    """400 rows, 20 x 8 crossed levels, a correlated slope on ``x ~ N(centre, 1)``."""
    rng = np.random.default_rng(seed)
    n = 400
    g, h = rng.integers(0, 20, n), rng.integers(0, 8, n)
    x = rng.normal(centre, 1.0, n)
    u = x - centre
    y = (
        2.0
        + 0.5 * u
        + rng.normal(0, 1.0, 20)[g]
        + rng.normal(0, 0.4, 20)[g] * u
        + rng.normal(0, 0.5, 8)[h]
        + rng.normal(0, 1.0, n)
    )
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{v}" for v in g], "h": [f"h{v}" for v in h]})


@pytest.fixture(scope="module")
def far():
    return _far_data(1e4)


@pytest.fixture(scope="module")
def far_model(far):
    return model_arrays(FORMULA, far)


_fit = jax.jit(fit_arrays, static_argnames=("reml", "implicit"))


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_fit_arrays_reaches_the_single_fit_far_from_zero(far, far_model, method):
    assert far_model.centring is not None  # x's mean is 1e4 standard deviations from 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = interlace.fit(FORMULA, far, method=method)
    with jax.enable_x64(True):
        out = _fit(far_model, reml=method == "REML")
    assert bool(out.converged)
    criterion = single.deviance if method == "ML" else -2.0 * single.llf
    # the same optimum: deviance to 1e-10 relative, estimates to 1e-6 relative
    assert float(out.deviance) == pytest.approx(criterion, rel=1e-10)
    np.testing.assert_allclose(np.asarray(out.theta), single.theta.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.beta), single.fe_params.to_numpy(), rtol=1e-6)
    assert float(out.sigma) ** 2 == pytest.approx(single.scale, rel=1e-6)


def test_replaced_columns_are_centred_at_their_own_mean(far_model):
    """The shifts follow the arrays' current columns: the model's ``x`` moved back near 0
    (``replace``) fits as the arrays built from that data do, which carry no centring."""
    near = _far_data(0.0)
    near_model = model_arrays(FORMULA, near)
    assert near_model.centring is None
    moved = far_model.replace(
        y=near_model.y, X=near_model.X, term_X=near_model.term_X
    )  # the same codes (same seed), other columns
    with jax.enable_x64(True):
        a, b = _fit(moved, reml=True), _fit(near_model, reml=True)
    assert bool(a.converged) and bool(b.converged)
    # equal optima (rounding of two searches): 1e-10 relative in the deviance
    assert float(a.deviance) == pytest.approx(float(b.deviance), rel=1e-10)
    np.testing.assert_allclose(np.asarray(a.theta), np.asarray(b.theta), rtol=1e-5, atol=1e-8)


def test_implicit_derivatives_far_from_zero(far_model):
    """d(theta, beta, sigma)/dy through the centred search = finite differences of refits."""
    with jax.enable_x64(True):

        def estimates_of(y):
            out = fit_arrays(far_model.replace(y=y))
            return jnp.concatenate([out.theta, out.beta, out.sigma[None]])

        jac = jax.jit(jax.jacrev(estimates_of))(far_model.y)
        refit = jax.jit(estimates_of)
        rng = np.random.default_rng(4)
        d = jnp.asarray(rng.normal(size=far_model.y.shape))
        h = 1e-4
        fd = (refit(far_model.y + h * d) - refit(far_model.y - h * d)) / (2 * h)
        # 1e-5 relative: the refits' optima and the differences' truncation
        np.testing.assert_allclose(np.asarray(jac @ d), np.asarray(fd), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("formula", [FORMULA, "y ~ x + (0 + x | g) + (1 | h)"])
def test_fit_arrays_reaches_the_single_fit_in_tiny_units(formula):
    data = _far_data(0.0)
    data = data.assign(x=data.x * 1e-6)  # the same model, x in other units
    model = model_arrays(formula, data)
    assert model.centring is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = interlace.fit(formula, data, method="ML")
    with jax.enable_x64(True):
        out = _fit(model, reml=False)
    assert bool(out.converged)
    # the same optimum: deviance to 1e-10 relative, theta (~1e6 for the slope) to 1e-6
    assert float(out.deviance) == pytest.approx(single.deviance, rel=1e-10)
    np.testing.assert_allclose(np.asarray(out.theta), single.theta.to_numpy(), rtol=1e-6)
