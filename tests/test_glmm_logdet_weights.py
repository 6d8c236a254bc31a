"""The Laplace step's ``ldL2`` from the Newton step's own factor (``_core.logdet_weights``).

For a canonical link, :func:`~interlace._core.pirls.laplace` takes ``ldL2`` and its
gradient from the factorisation of the Newton step, with the derivative of ``ldL2`` in
the working weights computed as a selected inverse, instead of a second weighted
cross-product pass and factorisation. These tests hold that shortcut to the computation
it replaces:

* the weight derivative against autodiff of ``ldL2`` through the cross-products and the
  Cholesky factor (1e-12 relative), on a skewed design whose term 1 has both scattered
  (light) and dense (heavy) levels: with two tail terms, with a random slope in term 1,
  and term 1 alone;
* the Laplace deviance and its gradient (Poisson with intercepts, binomial with a
  correlated slope; ``beta`` given and ``nAGQ = 0``'s joint modes) against the
  two-factorisation path (value 1e-12, gradient 1e-9 relative), after PIRLS at a point
  away from the optimum.

Speed: two small designs (1,500 and 2,400 rows); each test compiles its own evaluations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from interlace._core import logdet_weights, pirls
from interlace._core.arrays import cross_products_of
from interlace._core.deviance import log_det_z
from interlace._core.family import family_of
from interlace._model.glmm_design import build_glmm_design
from interlace._model.glmm_estimate import GlmmProblem, laplace_objective

pytestmark = pytest.mark.usefixtures("float64_throughout")  # private _core functions


def _skewed(n: int, seed: int) -> pd.DataFrame:
    """Subjects with Zipf-distributed row counts (a few meet most items: heavy levels),
    items and a third, small factor."""
    rng = np.random.default_rng(seed)
    s = np.minimum(rng.zipf(1.4, n), 150) - 1
    i = rng.integers(0, 60, n)
    x = rng.normal(size=n)
    eta = 0.2 * x + 0.7 * rng.normal(size=150)[s] + 0.5 * rng.normal(size=60)[i]
    return pd.DataFrame(
        {
            "count": rng.poisson(np.exp(eta)),
            "hit": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int),
            "x": x,
            "s": s.astype(str),
            "i": i.astype(str),
            "o": rng.integers(0, 5, n).astype(str),
        }
    )


@pytest.mark.parametrize(
    ("formula", "theta"),
    [
        ("count ~ x + (1 | s) + (1 | i) + (1 | o)", [0.7, 1.3, 0.4]),  # two tail terms
        ("count ~ x + (1 + x | s) + (1 | i)", [0.7, -0.3, 0.5, 1.1]),  # a slope in term 1
        ("count ~ x + (1 + x | s)", [0.7, -0.3, 0.5]),  # term 1 alone
    ],
)
def test_weight_derivative_of_log_det_equals_autodiff(formula, theta):
    frame = _skewed(2400, 3)
    fam = family_of("poisson")
    prob = GlmmProblem(build_glmm_design(formula, frame, None, fam), fam, 1, shared=False)
    ma = prob.ma
    cp0 = ma.template
    if cp0.q_tail:
        assert 0 < cp0.heavy_levels.shape[0] < cp0.q1  # both layouts of term 1's levels
    theta = jnp.array(theta)
    eta = prob.start.eta + 0.1 * np.random.default_rng(0).normal(size=len(frame))
    w, z = fam.working(prob.data.y, eta, prob.data.prior_weights, prob.data.size)

    def factor(weights):
        cp = cross_products_of(ma.replace(y=z, weights=weights))
        return cp, pirls.working_factor(theta, cp)[0]

    def ld_l2(weights):
        cp, L = factor(weights)
        return log_det_z(theta, cp, jnp.log(jnp.diagonal(L)))

    def shortcut(weights):
        return logdet_weights.log_det_weight_derivative(theta, ma, *factor(weights))

    assert logdet_weights.supported(cp0)
    expected = jax.jit(jax.grad(ld_l2))(w)
    got = jax.jit(shortcut)(w)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13 * float(jnp.max(expected)))


def _laplace_value_and_grad(prob: GlmmProblem):
    """Value and gradient of the Laplace objective as a function of ``(x, fixed)``, one
    executable for both stages (a fresh trace, so that a patched
    ``logdet_weights.supported`` takes effect)."""

    def objective(v, fixed):
        return laplace_objective(
            v,
            fixed,
            prob.start,
            prob.ma,
            prob.data,
            None,
            family=prob.family,
            n_theta=prob.n_theta,
        )[0]

    return jax.jit(jax.value_and_grad(objective))


@pytest.mark.parametrize(
    ("family", "formula", "x"),
    [
        ("poisson", "count ~ x + (1 | s) + (1 | i)", [0.9, 0.6, 0.1, -0.2]),
        ("binomial", "hit ~ x + (1 + x | s) + (1 | i)", [0.9, 0.2, 0.4, 0.6, 0.1, -0.2]),
    ],
)
def test_laplace_from_one_factorisation_equals_two(family, formula, x, monkeypatch):
    frame = _skewed(1500, 4)
    fam = family_of(family)
    prob = GlmmProblem(build_glmm_design(formula, frame, None, fam), fam, 1, shared=False)
    assert logdet_weights.supported(prob.ma.template)
    x = np.array(x)
    one = _laplace_value_and_grad(prob)
    with monkeypatch.context() as m:
        m.setattr(logdet_weights, "supported", lambda cp: False)
        two = _laplace_value_and_grad(prob)
        two(x, np.bool_(True))  # traced (and compiled) while patched
    for fixed in (np.bool_(True), np.bool_(False)):  # beta given; nAGQ = 0's joint modes
        v1, g1 = one(x, fixed)
        v2, g2 = two(x, fixed)
        assert float(v1) == pytest.approx(float(v2), rel=1e-12)
        np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9 * float(jnp.max(jnp.abs(g2))))
        assert float(jnp.max(jnp.abs(g2))) > 1.0  # away from the optimum: a gradient to match


def test_scope_of_the_shortcut():
    """A random slope in the tail (a block-diagonal ``Lambda_t``) keeps the
    two-factorisation path; slopes in term 1, or term 1 alone, do not."""
    frame = _skewed(600, 5)
    fam = family_of("poisson")
    for formula, expected in (
        ("count ~ x + (1 | s) + (1 | i)", True),
        ("count ~ x + (1 + x | s) + (1 | i)", True),
        ("count ~ x + (1 | s) + (1 + x | o)", False),  # o: 5 levels, in the tail
        ("count ~ x + (1 | s)", True),
    ):
        prob = GlmmProblem(build_glmm_design(formula, frame, None, fam), fam, 1, shared=False)
        assert logdet_weights.supported(prob.ma.template) is expected, formula
