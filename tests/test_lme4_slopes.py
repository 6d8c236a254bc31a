"""Random slopes and the lme4 random-effects syntax against lme4 references.

References: tests/data/lme4_slope_references.json, made by
tests/data/make_lme4_slope_references.R (R and lme4 versions recorded in its meta).
Tolerances (issue #3): deviance within 1e-6 relative or lower than lme4's; fixed
effects 1e-5 relative; covariance parameters 1e-3 relative; BLUPs 1e-3 relative to
each column's spread; new-data predictions 1e-5 relative. At lme4's own theta the
deviance must agree to 1e-10 relative (the formulas, free of optimizer error).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._core.theta import to_internal as _to_internal

from .conftest import DATA, fit_quiet

MODELS = {
    "sleepstudy_corr": ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)"),
    "sleepstudy_uncorr": ("sleepstudy.csv", "Reaction ~ Days + (Days || Subject)"),
    "sleepstudy_slope_only": ("sleepstudy.csv", "Reaction ~ Days + (0 + Days | Subject)"),
    "pastes_nested": ("pastes.csv", "strength ~ 1 + (1 | batch/cask)"),
    "crossed_slopes": ("crossed_slopes.csv", "y ~ t + cond + (1 + t | subject) + (1 | item)"),
    "crossed_cond_slope": ("crossed_slopes.csv", "y ~ cond + (1 + cond | subject) + (1 | item)"),
}
DTYPES = {"Subject": str, "batch": str, "cask": str, "subject": str, "item": str}
FITS = [f"{m}_{meth}" for m in MODELS for meth in ("REML", "ML")]
_cache: dict = {}


@pytest.fixture(scope="module")
def refs():
    with open(DATA / "lme4_slope_references.json") as fh:
        return json.load(fh)


def _fit(key):
    if key not in _cache:
        model, method = key.rsplit("_", 1)
        file, formula = MODELS[model]
        data = pd.read_csv(DATA / file, dtype=DTYPES)
        _cache[key] = fit_quiet(formula, data=data, method=method)
    return _cache[key]


@pytest.fixture(params=FITS)
def case(request, refs):
    res, messages = _fit(request.param)
    return res, messages, refs["fits"][request.param]


def _lme4_name(name: str) -> str:
    """formulaic's 'cond[T.b]' is lme4's 'condb'."""
    return name.replace("[T.", "").replace("]", "")


def test_deviance_and_fit_statistics(case):
    res, _, ref = case
    assert res.converged
    assert res.deviance <= ref["criterion"] * (1 + 1e-6)
    assert res.deviance == pytest.approx(ref["criterion"], rel=1e-6)
    assert res.aic == pytest.approx(ref["AIC"], rel=1e-6)
    assert res.bic == pytest.approx(ref["BIC"], rel=1e-6)
    assert res.df_modelwc == ref["df"]
    assert res.ngroups == ref["ngrps"]


def test_deviance_at_lme4_theta(case):
    res, _, ref = case
    d = res.design
    terms = d.terms
    cp = interlace.cross_products(
        [t.codes for t in terms], [len(t.levels) for t in terms], d.X, d.y, [t.X for t in terms]
    )
    theta_user = np.array([ref["theta"][_lme4_name(n)] for n in res.theta.index])
    theta = _to_internal(theta_user, [t.k for t in terms], cp.order)
    dev = interlace.profiled_deviance(np.asarray(theta), cp, reml=ref["REML"])  # eager, float64
    assert float(dev) == pytest.approx(ref["criterion"], rel=1e-10)


def test_fixed_effects(case):
    res, _, ref = case
    np.testing.assert_allclose(res.fe_params.to_numpy(), list(ref["fixef"].values()), rtol=1e-5)
    np.testing.assert_allclose(res.fe_bse.to_numpy(), list(ref["fixef_se"].values()), rtol=1e-4)


def test_covariance_parameters(case):
    res, messages, ref = case
    # theta, lme4's names; 1e-3 relative, 1e-4 absolute for entries at the boundary (0)
    for name, value in res.theta.items():
        assert value == pytest.approx(ref["theta"][_lme4_name(name)], rel=1e-3, abs=1e-4), name
    assert res.scale == pytest.approx(ref["sigma2"], rel=1e-3)
    assert interlace.isSingular(res) == ref["isSingular"]
    singular = "boundary (singular) fit: see help(interlace.isSingular)"
    assert (singular in messages) == ref["isSingular"]


def _lme4_cov(ref, factor):
    """lme4's covariance of a factor, merging its terms (Subject, Subject.1, ...)."""
    blocks = [
        v
        for k, v in ref["varcorr"].items()
        if k == factor or (k.startswith(factor + ".") and k[len(factor) + 1 :].isdigit())
    ]
    names = [_lme4_name(n) for b in blocks for n in b["cov"]["rownames"]]
    full = np.zeros((len(names), len(names)))
    start = 0
    for b in blocks:
        m = np.atleast_2d(np.array(b["cov"]["values"], dtype=float))
        full[start : start + len(m), start : start + len(m)] = m
        start += len(m)
    return pd.DataFrame(full, index=names, columns=names)


def test_variance_components(case):
    res, _, ref = case
    for factor, vc in res.variance_components.items():
        expected = _lme4_cov(ref, factor)
        if isinstance(vc, float):
            assert list(expected.columns) == ["(Intercept)"]
            assert vc == pytest.approx(expected.iloc[0, 0], rel=1e-3)
            continue
        assert [_lme4_name(c) for c in vc.columns] == list(expected.columns)
        scale = np.sqrt(np.outer(np.diag(expected), np.diag(expected)))  # per-entry scale
        np.testing.assert_allclose(
            vc.to_numpy(), expected.to_numpy(), rtol=1e-3, atol=float(1e-3 * scale.max())
        )


def test_blups(case):
    res, _, ref = case
    for factor, blups in res.random_effects.items():
        expected = ref["ranef"][factor]
        frame = blups.to_frame("(Intercept)") if isinstance(blups, pd.Series) else blups
        assert isinstance(blups, pd.Series) == (list(expected) == ["(Intercept)"])
        for col in frame.columns:
            want = pd.Series(expected[_lme4_name(col)]).reindex(frame.index.astype(str))
            assert not want.isna().any()
            np.testing.assert_allclose(
                frame[col].to_numpy(),
                want.to_numpy(),
                rtol=1e-3,
                atol=1e-3 * want.std() + 1e-8,
                err_msg=f"{factor} {col}",
            )


def test_fitted_and_new_data_predictions(case):
    res, _, ref = case
    # 1e-5 relative, and 1e-6 of the fitted values' spread for values near zero
    spread = float(np.std(ref["fitted"]))
    np.testing.assert_allclose(
        res.fittedvalues.to_numpy(), ref["fitted"], rtol=1e-5, atol=1e-6 * spread
    )
    new = pd.DataFrame(ref["predict_new"]["newdata"]).astype(
        {c: str for c in DTYPES if c in ref["predict_new"]["newdata"][0]}
    )
    before = new.copy()
    pred = res.predict(newdata=new)
    np.testing.assert_allclose(
        pred.to_numpy(), ref["predict_new"]["values"], rtol=1e-5, atol=1e-6 * spread
    )
    pd.testing.assert_frame_equal(new, before)


def test_result_shapes_follow_lme4():
    res, _ = _fit("sleepstudy_corr_REML")
    assert list(res.random_effects["Subject"].columns) == ["(Intercept)", "Days"]
    assert list(res.variance_components["Subject"].columns) == ["(Intercept)", "Days"]
    assert list(res.theta.index) == [
        "Subject.(Intercept)",
        "Subject.Days.(Intercept)",
        "Subject.Days",
    ]
    text = res.summary()
    assert "Corr" in text and "Subject" in text and "Days" in text
    uncorr, _ = _fit("sleepstudy_uncorr_REML")
    vc = uncorr.variance_components["Subject"]
    assert vc.loc["(Intercept)", "Days"] == 0.0  # || : no covariance parameter
    crossed, _ = _fit("crossed_slopes_REML")
    assert isinstance(crossed.random_effects["item"], pd.Series)
    assert isinstance(crossed.variance_components["item"], float)
