"""Satterthwaite's degrees of freedom do not depend on the units of a covariate with a
random slope: ``df`` is invariant under any reparametrisation of the variance
parameters, and is computed where the fit searched ``theta`` (``_inference.satterthwaite``).
In ``theta``'s raw units, a slope on ``1e8 x`` gave the intercept 4e9 degrees of freedom
instead of 29 (the Hessian's entries 1e16 apart)."""

import warnings

import numpy as np
import pandas as pd
import pytest

import interlace


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n, n_g, n_h = 500, 30, 10
    g, h = rng.integers(0, n_g, n), rng.integers(0, n_h, n)
    x = rng.standard_normal(n)
    y = (
        2.0
        + 0.5 * x
        + rng.standard_normal(n_g)[g] * (1.0 + 0.5 * x)
        + 0.3 * rng.standard_normal(n_h)[h]
        + rng.standard_normal(n)
    )
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in g], "h": [f"h{k}" for k in h]})


DATA = _data()


def _table(formula: str, unit: float, weights=None) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular-fit notes in huge units (lme4's rule)
        fit = interlace.fit(formula, DATA.assign(x=DATA["x"] * unit), weights=weights)
    return fit.coef_table(ddf="satterthwaite")


@pytest.mark.parametrize("formula", ["y ~ x + (x | g) + (1 | h)", "y ~ x + (0 + x | g) + (1 | h)"])
def test_degrees_of_freedom_in_any_units(formula):
    ref = _table(formula, 1.0)
    assert np.all((ref["df"] > 5) & (ref["df"] < 1000))  # a real small-sample correction
    for unit in (1e8, 1e-6):
        table = _table(formula, unit)
        # the same model: df to 1e-6 relative (before: 1.4e8 times too large at 1e8)
        np.testing.assert_allclose(table["df"], ref["df"], rtol=1e-6)
        np.testing.assert_allclose(table["Pr(>|t|)"], ref["Pr(>|t|)"], rtol=1e-6, atol=1e-300)


def test_degrees_of_freedom_with_weights_in_any_units():
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(DATA))
    ref = _table("y ~ x + (x | g) + (1 | h)", 1.0, weights=w)
    # weights times 1e8: the same model (sigma^2 absorbs it), theta 1e4 smaller
    table = _table("y ~ x + (x | g) + (1 | h)", 1.0, weights=w * 1e8)
    np.testing.assert_allclose(table["df"], ref["df"], rtol=1e-6)
