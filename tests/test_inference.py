"""Inference (issue #6): simulate, parametric bootstrap, anova, Wald/bootstrap intervals
and Satterthwaite degrees of freedom, against tests/data/lme4_inference_references.json
(made by tests/data/make_lme4_inference_references.R: lme4 and lmerTest, versions in
its meta). Tolerances are stated per test."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._base.errors import ModelSpecError

from .conftest import DATA

SLEEP = "Reaction ~ Days + (Days | Subject)"
PAGE = "score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id)"


@pytest.fixture(scope="module")
def refs():
    with open(DATA / "lme4_inference_references.json") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def sleep():
    return pd.read_csv(DATA / "sleepstudy.csv", dtype={"Subject": str})


def _fit(formula, data, method="REML"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interlace.fit(formula, data, method=method)


@pytest.fixture(scope="module")
def sleep_fit(sleep):
    return _fit(SLEEP, sleep)


def test_simulate_moments(sleep_fit):
    sims = sleep_fit.simulate(4000, seed=3)
    assert sims.shape == (180, 4000) and list(sims.columns[:2]) == ["sim_1", "sim_2"]
    # each row's simulated mean is its marginal prediction (X beta); 4000 draws with sd
    # < 60 give a standard error < 1: tolerance 5 (5 sd)
    marginal = sleep_fit.predict(include_re=False).to_numpy()
    assert np.max(np.abs(sims.mean(axis=1).to_numpy() - marginal)) < 5.0
    # the variance of row (Days = d) is sigma^2 + [1 d] Sigma [1 d]' (within 10%)
    cov = sleep_fit.variance_components["Subject"].to_numpy()
    days = sleep_fit.design.X[:, 1]
    expected = sleep_fit.scale + cov[0, 0] + 2 * days * cov[0, 1] + days**2 * cov[1, 1]
    np.testing.assert_allclose(sims.var(axis=1).to_numpy(), expected, rtol=0.10)


def test_parametric_bootstrap_matches_bootmer(sleep_fit, refs):
    """Bootstrap sds of the fixed effects agree with lme4's bootMer (1000 refits) within
    Monte Carlo error: 4 standard errors of the difference of two sd estimates, each
    with relative standard error 1/sqrt(2(B-1))."""
    boot = sleep_fit.parametric_bootstrap(2000, seed=11)
    assert boot.n_bootstrap == 2000 and boot.converged.mean() > 0.99
    stats = refs["bootmer"]["tight"]["statistics"]
    if isinstance(stats, str):  # stored as text by older jsonlite settings
        stats = eval(stats)  # noqa: S307 - a literal written by our own R script
    for ours, theirs in (("Intercept", "(Intercept)"), ("Days", "Days")):
        sd_ours, sd_lme4 = boot.se()[ours], stats[theirs]["sd"]
        mc = np.hypot(sd_ours / np.sqrt(2 * 1999), sd_lme4 / np.sqrt(2 * 999))
        assert abs(sd_ours - sd_lme4) < 4 * mc, (ours, sd_ours, sd_lme4)
    ci = boot.conf_int()
    assert ci.loc["Days", "2.5 %"] < sleep_fit.fe_params["Days"] < ci.loc["Days", "97.5 %"]
    basic = boot.conf_int("basic")
    est = sleep_fit.fe_params["Days"]
    assert basic.loc["Days", "2.5 %"] == pytest.approx(2 * est - ci.loc["Days", "97.5 %"])


def test_bootstrap_statistic_callable(sleep_fit):
    boot = sleep_fit.parametric_bootstrap(64, seed=2, statistic=_slope_over_sigma)
    ratio = boot.replicates["statistic_0"].to_numpy()
    np.testing.assert_allclose(
        ratio, boot.replicates["Days"] / boot.replicates["sigma"], rtol=1e-12
    )


def _slope_over_sigma(params):
    return params["beta"][1] / params["sigma"]


@pytest.mark.parametrize(
    "key, m1, m2, data, refit, table",
    [
        (
            "sleepstudy",
            "Reaction ~ 1 + (Days | Subject)",
            SLEEP,
            "sleep",
            True,
            "sleepstudy_ML_tight",
        ),
        (
            "sleepstudy",
            "Reaction ~ 1 + (Days | Subject)",
            SLEEP,
            "sleep",
            False,
            "sleepstudy_norefit",
        ),
        (
            "page",
            "score ~ hours_studied + (1 | student_id) + (1 | school_id)",
            PAGE,
            "page",
            True,
            "results_page_ML_tight",
        ),
        (
            "page",
            "score ~ hours_studied + (1 | student_id) + (1 | school_id)",
            PAGE,
            "page",
            False,
            "results_page_norefit",
        ),
    ],
)
def test_anova_matches_lme4(refs, sleep, key, m1, m2, data, refit, table):
    """Every column of lme4's anova table: 1e-6 relative (p-values 1e-5 relative)."""
    frame = sleep if data == "sleep" else interlace.datasets.exam_scores()
    out = interlace.anova(_fit(m2, frame), _fit(m1, frame), refit=refit)  # any order
    assert out.refitted_ml == refit
    assert ("refitting model(s) with ML" in str(out)) == refit
    expected = refs["anova"][table]["table"]["columns"]
    got = out.table
    assert list(got.index) == ["m2", "m1"]  # ordered by npar, names kept
    for col in ("npar", "AIC", "BIC", "logLik", "deviance"):
        np.testing.assert_allclose(got[col], expected[col], rtol=1e-6, err_msg=col)
    assert got["Chisq"].iloc[1] == pytest.approx(expected["Chisq"][1], rel=1e-6)
    assert got["Df"].iloc[1] == expected["Df"][1]
    assert got["Pr(>Chisq)"].iloc[1] == pytest.approx(expected["Pr(>Chisq)"][1], rel=1e-5)


def test_negative_correlation_keeps_its_sign(refs, sleep):
    """lme4's ML fit of Reaction ~ 1 + (Days | Subject) has a negative off-diagonal theta."""
    ref = refs["anova"]["sleepstudy_refit"]["models"]["m1"]
    ours = _fit("Reaction ~ 1 + (Days | Subject)", sleep, method="ML")
    np.testing.assert_allclose(ours.theta.to_numpy(), list(ref["theta"].values()), rtol=1e-4)
    assert ours.theta["Subject.Days.(Intercept)"] < 0


def test_bootstrap_lrt(sleep):
    out = interlace.anova(
        _fit("Reaction ~ 1 + (Days | Subject)", sleep), _fit(SLEEP, sleep), n_bootstrap=99, seed=4
    )
    # the observed LR (23.5) is far beyond the null: no simulated LR reaches it
    assert out.table["Pr_boot(>Chisq)"].iloc[1] == pytest.approx(1 / 100)


@pytest.mark.parametrize("key, formula", [("sleepstudy", SLEEP), ("results_page", PAGE)])
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_satterthwaite_matches_lmertest(refs, sleep, key, formula, method):
    """df and p-values within 1e-3 relative of lmerTest (its df are numerical, ~1e-6)."""
    data = sleep if key == "sleepstudy" else interlace.datasets.exam_scores()
    table = _fit(formula, data, method).coef_table(ddf="satterthwaite")
    ref = refs["satterthwaite"][f"{key}_{method}"]["coefficients"]
    np.testing.assert_allclose(table["df"], list(ref["df"].values()), rtol=1e-3)
    np.testing.assert_allclose(table["Pr(>|t|)"], list(ref["Pr(>|t|)"].values()), rtol=1e-3)
    np.testing.assert_allclose(table["Std. Error"], list(ref["Std. Error"].values()), rtol=1e-5)


def test_wald_intervals_match_lme4(refs, sleep_fit):
    ref = refs["confint_wald"]["sleepstudy_REML"]
    ci = sleep_fit.confint("wald")
    assert [
        r.replace("Intercept", "(Intercept)").replace("((", "(").replace("))", ")")
        for r in ci.index
    ] == ref["rownames"]
    np.testing.assert_allclose(ci.iloc[4:, 0], ref["lower"][4:], rtol=1e-6)
    np.testing.assert_allclose(ci.iloc[4:, 1], ref["upper"][4:], rtol=1e-6)
    assert ci.iloc[:4].isna().all().all()  # lme4 gives no Wald interval for these


def test_confint_parm_selects_rows_as_lme4(sleep_fit):
    """``parm`` (lme4's): a name, a list (rows in the table's order), ``"beta_"`` (the
    fixed effects), ``"theta_"`` (the variance rows, sigma among them); a profile of
    one row equals that row of the whole profile (exactly: the same refits); an unknown
    name is refused with the rows listed."""
    full = sleep_fit.confint("wald")
    assert list(sleep_fit.confint("wald", parm="Days").index) == ["Days"]
    assert list(sleep_fit.confint("wald", parm=["Days", "sigma"]).index) == ["sigma", "Days"]
    assert list(sleep_fit.confint("wald", parm="beta_").index) == list(sleep_fit.fe_params.index)
    assert list(sleep_fit.confint("wald", parm="theta_").index) == list(full.index[:4])
    one = sleep_fit.confint("profile", parm="sigma")
    assert list(one.index) == ["sigma"]
    np.testing.assert_array_equal(one.to_numpy(), sleep_fit.confint("profile").loc[["sigma"]])
    with pytest.raises(ModelSpecError, match="parm='Dayz' is not a row.*'Days'"):
        sleep_fit.confint("wald", parm="Dayz")


@pytest.mark.parametrize(
    "key, formula, dtype",
    [
        ("sleepstudy", SLEEP, {"Subject": str}),
        ("dyestuff", "Yield ~ 1 + (1 | Batch)", {"Batch": str}),
    ],
)
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_profile_intervals_match_lme4(refs, key, formula, dtype, method):
    """Within 1e-3 relative of lme4's confint(profile) (lme4 interpolates a spline
    through ~20 profile points; we solve for the ends exactly). lme4 profiles the ML
    deviance also for REML fits, and so do we."""
    data = pd.read_csv(DATA / f"{key}.csv", dtype=dtype)
    ci = _fit(formula, data, method).confint("profile")
    ref = refs["confint_profile"][f"{key}_{method}"]
    assert len(ci) == len(ref["rownames"])
    np.testing.assert_allclose(ci.iloc[:, 0], ref["lower"], rtol=1e-3)
    np.testing.assert_allclose(ci.iloc[:, 1], ref["upper"], rtol=1e-3)
