"""Profile intervals of fixed effects far wider than the Wald interval.

The profile of a fixed effect used to be searched for in the fixed bracket
``est -/+ 3 z se``; where the profile is flatter than that, Brent's method had no sign
change and ``confint(method="profile")`` raised. The model here (two groups, a
group-level covariate, a singular ML fit) has, at level 0.999, profile ends about four
Wald half-widths from the estimate. References: lme4's ends solved exactly (uniroot on
the offset refits) and lme4's ``confint(method = "profile")`` (spline-interpolated), from
``tests/data/make_lme4_profile_wide_references.R``.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import interlace._inference.profile as profile

from .conftest import DATA, fit_quiet

FORMULA = "y ~ x + (1 | g)"


@pytest.fixture(scope="module")
def refs():
    with open(DATA / "lme4_profile_wide_references.json") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA / "profile_two_groups.csv", dtype={"g": str})


@pytest.fixture(scope="module")
def ml_fit(data):
    return fit_quiet(FORMULA, data, method="ML")[0]


def _fixed_rows(ci):
    return ci.loc[["Intercept", "x"]]


@pytest.mark.parametrize("level", ["0.95", "0.99", "0.999"])
def test_fixed_effect_profile_ends_match_lme4(ml_fit, refs, level):
    ref = refs["levels"][level]
    ci = _fixed_rows(ml_fit.confint("profile", level=float(level)))
    exact = np.array([ref["exact_root"]["(Intercept)"], ref["exact_root"]["x"]])
    # both solve zeta(v) = -+z exactly: 1e-6 relative (the refits' optimisers)
    np.testing.assert_allclose(ci.to_numpy(), exact, rtol=1e-6, atol=1e-8)
    # lme4's confint interpolates a spline through the profile: 5e-3 relative
    spline = pd.DataFrame(
        {"lo": ref["confint_profile"]["lower"], "hi": ref["confint_profile"]["upper"]},
        index=ref["confint_profile"]["rownames"],
    ).loc[["(Intercept)", "x"]]
    np.testing.assert_allclose(ci.to_numpy(), spline.to_numpy(), rtol=5e-3, atol=1e-3)


def test_ends_lie_outside_the_old_fixed_bracket(ml_fit, refs):
    """The case the fixed bracket ``est -/+ 3 z se`` could not solve (exact comparison
    of numbers well apart: the ends are > 4 Wald half-widths away, the bracket 3)."""
    from scipy.special import ndtri

    z = float(ndtri(0.9995))
    ci = _fixed_rows(ml_fit.confint("profile", level=0.999))
    est, se = ml_fit.fe_params.loc[ci.index], ml_fit.fe_bse.loc[ci.index]
    assert ((est - ci.iloc[:, 0]) > 3 * z * se).all()
    assert ((ci.iloc[:, 1] - est) > 3 * z * se).all()
    wald = ml_fit.conf_int(0.999)
    assert (ci.iloc[:, 0] < wald.iloc[:, 0]).all() and (ci.iloc[:, 1] > wald.iloc[:, 1]).all()


def test_reml_fit_profiles_the_ml_deviance(data, ml_fit):
    """As lme4: a REML fit is refitted by ML and profiled; same ends to 1e-7 relative."""
    reml = fit_quiet(FORMULA, data, method="REML")[0]
    a = _fixed_rows(reml.confint("profile", level=0.999))
    b = _fixed_rows(ml_fit.confint("profile", level=0.999))
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-7, atol=1e-8)


def test_search_limit_gives_nan_and_a_warning(ml_fit, monkeypatch):
    """With one step (one Wald half-width) allowed, the 0.999 ends are out of reach:
    NaN ends and a warning naming the parameter, not an exception."""
    monkeypatch.setattr(profile, "_MAX_DOUBLINGS", 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ci = _fixed_rows(ml_fit.confint("profile", level=0.999))
    assert np.isnan(ci.to_numpy()).all()  # exact: all four ends NaN
    messages = [str(w.message) for w in caught if "did not reach" in str(w.message)]
    assert len(messages) == 4  # exact: one per end
    assert any("'x'" in m for m in messages) and any("'Intercept'" in m for m in messages)
