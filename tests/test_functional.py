"""The public functional layer (issue #7): pure functions of a model's arrays.

Finite differences are central, ``(f(x + h) - f(x - h)) / 2h``, with ``h`` chosen per
quantity; tolerances are stated per assertion.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import interlace
from interlace import blups, deviance, fit_arrays, fit_many, loglik, model_arrays

FORMULA = "reaction ~ days + (days | subject) + (1 | site)"


@pytest.fixture(scope="module")
def data():
    """Reaction times with a correlated random slope per subject, crossed with a site
    effect; no variance sits on the boundary (derivatives there are not smooth)."""
    df = interlace.datasets.reaction_times()
    rng = np.random.default_rng(5)
    site = rng.integers(0, 6, len(df))
    return df.assign(
        site=[f"L{s}" for s in site], reaction=df.reaction + rng.normal(0, 15, 6)[site]
    )


@pytest.fixture(scope="module")
def model(data):
    return model_arrays(FORMULA, data)


@pytest.fixture(scope="module")
def fitted(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interlace.fit(FORMULA, data)


def _central(f, x, direction, h):
    return (f(x + h * direction) - f(x - h * direction)) / (2 * h)


def test_functions_agree_with_fit(model, fitted):
    # jnp arrays of our own and jax.jit around the functional layer: float64 on (the
    # documented rule; eager calls on float64 arrays need nothing)
    with jax.enable_x64(True):
        theta = jnp.asarray(fitted.theta.to_numpy())
        assert float(deviance(theta, model)) == pytest.approx(fitted.deviance, rel=1e-10)
        b = blups(theta, model)
        np.testing.assert_allclose(
            np.asarray(b[0]), fitted.random_effects["subject"].to_numpy(), rtol=1e-8, atol=1e-10
        )
        out = jax.jit(fit_arrays)(model)
        assert bool(out["converged"])
        np.testing.assert_allclose(out["beta"], fitted.fe_params.to_numpy(), rtol=1e-7)
        np.testing.assert_allclose(out["theta"], fitted.theta.to_numpy(), rtol=1e-5)
        assert float(out["sigma"]) ** 2 == pytest.approx(fitted.scale, rel=1e-7)


def test_loglik_maximum_is_the_ml_deviance(model):
    out = fit_arrays(model, reml=False)
    ll = loglik(out["beta"], out["theta"], out["sigma"], model)
    assert float(ll) == pytest.approx(-0.5 * float(out["deviance"]), rel=1e-12)
    # and it is a maximum in beta and sigma: any perturbation lowers it (perturbed in numpy:
    # arithmetic on JAX arrays with float64 off would make float32 arrays, refused)
    beta, sigma = np.asarray(out["beta"]), np.asarray(out["sigma"])
    assert float(loglik(beta + 0.01, out["theta"], sigma, model)) < float(ll)
    assert float(loglik(beta, out["theta"], sigma * 1.01, model)) < float(ll)


@pytest.mark.parametrize("wrt", ["theta", "beta", "sigma", "y", "X"])
def test_loglik_gradients_match_central_differences(model, fitted, wrt):
    # jax.grad around the functional layer: float64 on, as documented
    with jax.enable_x64(True):
        beta = jnp.asarray(fitted.fe_params.to_numpy()) + 0.1
        theta = jnp.asarray(fitted.theta.to_numpy()) * 1.1
        sigma = jnp.asarray(np.sqrt(fitted.scale))
        args = {"theta": theta, "beta": beta, "sigma": sigma, "y": model.y, "X": model.X}

        def f(x):
            a = dict(args, **{wrt: x})
            m = model.replace(y=a["y"], X=a["X"])
            return loglik(a["beta"], a["theta"], a["sigma"], m)

        x = args[wrt]
        grad = jax.grad(f)(x)
        rng = np.random.default_rng(0)
        h = 1e-5 * (1.0 + float(jnp.max(jnp.abs(x))))  # step relative to the argument's scale
        for _ in range(3):  # random directions: directional derivatives
            d = jnp.asarray(rng.normal(size=np.shape(x)))
            fd = _central(f, x, d, h)
            assert float(jnp.sum(grad * d)) == pytest.approx(float(fd), rel=1e-6), wrt


def test_estimate_gradients_match_refits(model):
    """d(estimates)/dy by the implicit function theorem = finite differences of refits."""
    # jax.jacrev around fit_arrays: float64 on, as documented
    with jax.enable_x64(True):

        def estimates_of(y):
            out = fit_arrays(model.replace(y=y))
            return jnp.concatenate([out["beta"], out["theta"], out["sigma"][None]])

        jac = jax.jacrev(estimates_of)(model.y)  # (k, n)
        rng = np.random.default_rng(1)
        for _ in range(2):
            d = jnp.asarray(rng.normal(size=model.y.shape))
            fd = _central(estimates_of, model.y, d, 1e-3)  # refits; Newton-polished optima
            np.testing.assert_allclose(jac @ d, fd, rtol=1e-5, atol=1e-9)


def test_vmapped_fits_equal_separate_fits(data):
    rng = np.random.default_rng(2)
    Y = data.reaction.to_numpy()[:, None] + rng.normal(0, 10, (len(data), 6))
    table = fit_many(FORMULA, data, Y)
    assert table.shape[0] == 6 and table["converged"].all()
    for j in range(6):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one = interlace.fit(FORMULA, data.assign(reaction=Y[:, j]))
        np.testing.assert_allclose(
            table.loc[j, list(one.fe_params.index)], one.fe_params, rtol=1e-6
        )
        np.testing.assert_allclose(
            table.loc[j, list(one.theta.index)], one.theta, rtol=1e-6, atol=1e-8
        )
        assert table.loc[j, "sigma"] ** 2 == pytest.approx(one.scale, rel=1e-6)


def test_fit_many_does_not_stick_to_a_singular_warm_start():
    """The first response's fit is singular (school variance 0); other responses are
    not. A warm start on the boundary would pin them there (theta = 0 is stationary)."""
    page = interlace.datasets.exam_scores()
    rng = np.random.default_rng(0)
    Y = page.score.to_numpy()[:, None] + rng.normal(0, 3, (len(page), 40))
    formula = "score ~ hours_studied + prior_gpa"
    table = fit_many(formula, page, Y, groups=["student_id", "school_id"])
    positive = 0
    for j in range(Y.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one = interlace.fit(
                formula, page.assign(score=Y[:, j]), groups=["student_id", "school_id"]
            )
        positive += one.theta["school_id.(Intercept)"] > 1e-3
        # same optimum: fixed effects within 1e-6, deviance never worse by > 1e-8 rel.
        np.testing.assert_allclose(
            table.loc[j, list(one.fe_params.index)], one.fe_params, rtol=0, atol=1e-6
        )
        assert table.loc[j, "deviance"] <= one.deviance * (1 + 1e-8)
        assert table.loc[j, "llf"] == pytest.approx(one.llf, rel=1e-8)  # REML's logLik
    assert positive >= 1  # the case the test is about occurs


def test_fit_many_survives_a_constant_first_response():
    """The batch's warm start comes from the first response that fits: a constant first
    response (no model fits it) used to start every refit from NaN, so that no response
    converged. Same shapes as the test above (no new compile). Tolerances as there."""
    page = interlace.datasets.exam_scores()
    rng = np.random.default_rng(1)
    Y = page.score.to_numpy()[:, None] + rng.normal(0, 3, (len(page), 40))
    Y[:, 0] = 5.0
    formula = "score ~ hours_studied + prior_gpa"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = fit_many(formula, page, Y, groups=["student_id", "school_id"])
        one = interlace.fit(formula, page.assign(score=Y[:, 1]), groups=["student_id", "school_id"])
    assert not table.loc[0, "converged"]
    assert table.loc[1:, "converged"].all()
    np.testing.assert_allclose(
        table.loc[1, list(one.fe_params.index)], one.fe_params, rtol=0, atol=1e-6
    )
    assert table.loc[1, "deviance"] <= one.deviance * (1 + 1e-8)
