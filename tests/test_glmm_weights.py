"""A binomial GLMM whose prior weights are not whole numbers of trials, against glmer.

glmer fits such data with a warning, and its objective scales each row's binomial log
density by ``w / round(w)`` (lme4's C++ ``binomialDist::aic``; R's ``binomial()$aic``
has no such factor). interlace follows glmer. Reference:
tests/data/glmm_weights_references.json, made by
tests/data/make_glmm_weights_references.R (tight bobyqa fit) on
tests/data/glmm_fractional_weights.csv (make_glmm_data.py): weights 0.7, 1.5, 2.0, 2.6.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import interlace
from interlace._base.precision import float64_scope
from interlace._core.family import family_of
from interlace._model.glmm_design import build_glmm_design
from interlace._model.glmm_estimate import deviance_at

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "glmm_weights_references.json").read_text())["fractional_weights"]


@pytest.fixture(scope="module")
def data():
    import pandas as pd

    return pd.read_csv(DATA / REF["data_file"], dtype={"subject": str, "item": str})


@float64_scope
def test_row_density_is_scaled_by_weight_over_trials():
    """``-2 log p`` of a 0/1 row with weight ``w``: ``w / round(w)`` times the binomial
    density of ``round(w y)`` successes in ``round(w)`` trials (exact to 1e-14); 0 when
    ``round(w) = 0``."""
    fam = family_of("binomial")
    mu = np.array([0.3, 0.3, 0.6, 0.6, 0.2])
    y = np.array([1.0, 0.0, 1.0, 1.0, 1.0])
    w = np.array([0.7, 2.6, 1.5, 1.0, 0.4])
    m, k = np.round(w), np.round(w * y)
    from scipy.stats import binom

    expected = np.where(m > 0, -2 * (w / np.where(m > 0, m, 1)) * binom.logpmf(k, m, mu), 0.0)
    got = np.asarray(fam.minus_two_log_density(y, mu, w))
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-14)


def test_objective_at_lme4_points(data):
    """lme4's deviance function (devFunOnly) at two (theta, beta) points: 1e-7 relative."""
    fam = family_of("binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-integer successes, as glmer
        glmm = build_glmm_design(REF["formula"], data, None, fam, weights="w")
    for point in REF["devfun"]:
        pars = np.asarray(point["pars"])
        value = deviance_at(glmm, fam, pars[:2], pars[2:])
        assert value == pytest.approx(point["value"], rel=1e-7)


def test_fit_matches_glmer(data):
    """-2 logLik 1e-6 relative and never worse; fixed effects 1e-4; SEs 1e-3 relative;
    theta 1e-4; glmer's warning about non-integer successes is given too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = interlace.fit(REF["formula"], data, family="binomial", weights="w")
    assert any("non-integer #successes" in str(w.message) for w in caught)
    m2ll = -2 * fit.llf
    assert m2ll == pytest.approx(REF["m2ll"], rel=1e-6)
    assert m2ll <= REF["m2ll"] * (1 + 1e-9)
    np.testing.assert_allclose(fit.fe_params.to_numpy(), list(REF["fixef"].values()), atol=1e-4)
    np.testing.assert_allclose(fit.fe_bse.to_numpy(), list(REF["se"].values()), rtol=1e-3)
    np.testing.assert_allclose(fit.theta_lme4.to_numpy(), list(REF["theta"].values()), atol=1e-4)
