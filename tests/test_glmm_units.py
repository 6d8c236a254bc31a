"""A GLMM's numbers do not depend on the units of a covariate with a random slope.

``y ~ x + (x | g) + (1 | h)`` with ``x`` and with ``1e6 x`` (or ``1e-6 x``) is one model:
the deviance, the estimates in the other units and, here, the fixed effects' standard
errors must agree. The standard errors come from the deviance's Hessian by differences of
its gradient (``_model.glmm_estimate._hessian_cov``); taken in ``theta``'s raw units, the
slope's ``theta ~ 5e-7`` sat 20 times below the step, and on a 1,200-row version of this
design a Poisson intercept's standard error came out 0.156 instead of 0.096 (a binomial
slope's 5% low, with a spurious warning that the Hessian was not positive definite).
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import interlace


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n, n_g, n_h = 600, 30, 12
    g, h = rng.integers(0, n_g, n), rng.integers(0, n_h, n)
    x = rng.standard_normal(n)
    b0, b1 = rng.standard_normal(n_g), 0.5 * rng.standard_normal(n_g)
    eta = -0.2 + 0.8 * x + b0[g] + b1[g] * x + 0.4 * rng.standard_normal(n_h)[h]
    return pd.DataFrame(
        {
            "y": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int),
            "c": rng.poisson(np.exp(0.3 + 0.5 * eta)),
            "x": x,
            "g": [f"g{k}" for k in g],
            "h": [f"h{k}" for k in h],
        }
    )


DATA = _data()


def _fit(formula: str, family: str, unit: float):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = interlace.fit(formula, DATA.assign(x=DATA["x"] * unit), family=family)
    hessian = [w for w in caught if "Hessian" in str(w.message)]
    return fit, hessian


@pytest.mark.parametrize(
    ("formula", "family"),
    [("y ~ x + (x | g) + (1 | h)", "binomial"), ("c ~ x + (x | g) + (1 | h)", "poisson")],
)
@pytest.mark.parametrize("unit", [1e6, 1e-6])
def test_standard_errors_in_any_units(formula, family, unit):
    ref, _ = _fit(formula, family, 1.0)
    fit, hessian = _fit(formula, family, unit)
    assert not hessian, [str(w.message) for w in hessian]
    per_unit = np.array([1.0, unit])  # (Intercept), x: x's coefficient is per unit of x
    # the same optimum (1e-9 relative), the same estimates and SEs in the other units
    # (1e-5 relative: a Hessian by forward differences, O(1e-5) steps in either case;
    # before the fix, 62% off for the Poisson intercept at 1e6)
    assert -2 * fit.llf == pytest.approx(-2 * ref.llf, rel=1e-9)
    np.testing.assert_allclose(fit.fe_params.values * per_unit, ref.fe_params.values, rtol=1e-6)
    np.testing.assert_allclose(fit.fe_bse.values * per_unit, ref.fe_bse.values, rtol=1e-5)


def test_profile_intervals_in_any_units():
    """lme4's profile intervals (``confint(method="profile")``) of the same model in units
    1 and 1e6: the constrained refits search ``theta`` and decide "at zero" in the fit's
    own units (``_inference.glmm_profile``). In raw units a refit restarted the slope's sd
    at 0.5 per unit of 1e6 and the search failed (NaN): the interval raised ValueError; a
    Poisson intercept's upper end moved by 3e-4."""
    ref, _ = _fit("y ~ x + (x | g) + (1 | h)", "binomial", 1.0)
    fit, _ = _fit("y ~ x + (x | g) + (1 | h)", "binomial", 1e6)
    a = ref.confint(method="profile")
    b = fit.confint(method="profile")
    per_unit = pd.Series(1.0, index=a.index)
    per_unit[["sd_x|g", "x"]] = 1e6  # per unit of x
    # ends by root finding to 1e-10 of the scale (_inference.profile); constrained refits
    # to the fit's gradient tolerance: 1e-6 relative, 1e-9 absolute (an end at sd 0)
    np.testing.assert_allclose(b.mul(per_unit, axis=0), a, rtol=1e-6, atol=1e-9)
