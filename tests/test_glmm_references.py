"""GLMMs against lme4's glmer: cbpp (logit, probit, cloglog; nAGQ 0, 1, 25; cbind and
proportion + weights), grouseticks (Poisson, three factors, one of them observation-level),
VerbAgg (binary, subjects x items crossed), a binary model with a correlated by-subject
slope, a Poisson model with an offset and a negative binomial model whose size is
estimated (glmer.nb; simulated crossed designs).

References: tests/data/glmm_references.json, made by tests/data/make_glmm_references.R
(glmer with bobyqa, rhoend 1e-10, tolPwrss 1e-12) from the CSVs next to it
(tests/data/make_glmm_data.py simulates the crossed designs). Each model is fitted once
per module through ``interlace.fit``.

Tolerances, and why:

* ``-2 logLik``: ours is never worse than lme4's (1e-9 relative slack for rounding) and
  within 1e-6 relative of it; at lme4's optimum our objective equals lme4's value to 1e-8
  (grouseticks' Laplace fit needed ``tolPwrss = 1e-13`` in glmer to get there: at 1e-12
  glmer stopped 1e-3 to 4e-3 above the optimum with a degenerate Hessian).
* lme4's objective at given parameters (``devFunOnly``): equal to 1e-7 relative (lme4's
  log-determinant lags its modes by one PIRLS step; at its optimum, 1e-8).
* fixed effects: within 2e-3 of lme4's standard error (a scale-free statement: at the
  1e-8-relative differences in -2 logLik between the two optima, flat directions move
  ``beta`` by ~1e-5); ``theta``: 2e-4 absolute;
* standard errors: those from ``R_X`` at the modes (lme4's ``use.hessian = FALSE``) to 1e-5
  relative; lme4's default for ``nAGQ >= 1`` is a finite-difference Hessian of its own
  objective, whose error lme4 puts near 1e-4..1e-3: ours (forward differences of the
  exact gradient) agree to 5e-3 relative;
* conditional deviance, fitted values and linear predictors: 1e-5 relative; conditional
  modes: 1e-3 of the term's standard deviation.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._core.family import family_of
from interlace._core.theta import to_internal
from interlace._model.glmm_design import build_glmm_design
from interlace._model.glmm_estimate import GlmmProblem, deviance_at

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "glmm_references.json").read_text())
LEVELS = REF["meta"]["factor_levels"]
FITS = REF["fits"]
CASES = list(FITS)


def family_for(case: str, *, fixed_size: bool = False) -> interlace.Family:
    """The case's family; glmer.nb's is a negative binomial with its size estimated (or,
    with ``fixed_size``, held at lme4's estimate)."""
    f = FITS[case]
    if f["family"].startswith("Negative Binomial"):
        return interlace.negative_binomial(size=f["nb_theta"] if fixed_size else None)
    return family_of(f["family"], f["link"])


def load(case: str) -> pd.DataFrame:
    """The case's data with lme4's factor levels (R's order: the first is the reference)."""
    f = FITS[case]
    d = pd.read_csv(DATA / f["data_file"])
    levels_of = next((v for k, v in LEVELS.items() if case.startswith(k)), {})
    for col, levels in levels_of.items():
        if col in d.columns:
            d[col] = pd.Categorical(d[col].astype(str), categories=levels)
    return d


def formula_of(case: str) -> str:
    return FITS[case]["formula"]


_cache: dict[str, interlace.GLMMResult] = {}


def fitted(case: str) -> interlace.GLMMResult:
    if case not in _cache:
        f = FITS[case]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # grouseticks: lme4 warns, we may too
            _cache[case] = interlace.fit(
                formula_of(case),
                load(case),
                family=family_for(case),
                nAGQ=f["nAGQ"],
                weights=f["weights"],
            )
    return _cache[case]


def lme4_names(res: interlace.GLMMResult) -> list[str]:
    """Our fixed-effect names as lme4 writes them: ``(Intercept)``, ``period2``."""
    out = []
    for name in res.fe_params.index:
        if name == "Intercept":
            out.append("(Intercept)")
        else:
            out.append(name.replace("[T.", "").replace("]", ""))
    return out


@pytest.mark.parametrize("case", CASES)
def test_minus_two_loglik(case):
    f, res = FITS[case], fitted(case)
    if "nb_theta" in f:  # glmer.nb's size, its estimate polished to ~1e-8 (the R script)
        assert res.size == pytest.approx(f["nb_theta"], rel=1e-6)
    ours, theirs = -2.0 * res.llf, f["minus2logLik"]
    assert res.converged
    assert ours <= theirs * (1 + 1e-9)  # never worse than lme4 (rounding slack)
    assert ours == pytest.approx(theirs, rel=1e-6)
    # lme4's definitions of the information criteria
    assert res.aic == pytest.approx(f["AIC"] - theirs + ours, rel=1e-12)
    assert res.bic == pytest.approx(f["BIC"] - theirs + ours, rel=1e-12)
    assert res.nobs == f["nobs"]


@pytest.mark.parametrize("case", CASES)
def test_estimates(case):
    f, res = FITS[case], fitted(case)
    names = lme4_names(res)
    ours = res.fe_params.to_numpy()
    theirs = np.array([f["fixef"][n] for n in names])
    se = np.array([f["fixef_se"][n] for n in names])
    assert np.max(np.abs(ours - theirs) / se) < 2e-3
    th = res.theta_lme4
    ref_theta = np.array([f["theta"][n] for n in th.index])
    np.testing.assert_allclose(np.abs(th.to_numpy()), np.abs(ref_theta), atol=2e-4)
    assert res.is_singular == f["isSingular"]


@pytest.mark.parametrize("case", CASES)
def test_standard_errors(case):
    f, res = FITS[case], fitted(case)
    names = lme4_names(res)
    rx = np.sqrt(np.diag(res.model_fit.fe_cov_rx))
    np.testing.assert_allclose(rx, [f["fixef_se_rx"][n] for n in names], rtol=1e-5)
    np.testing.assert_allclose(res.fe_bse, [f["fixef_se"][n] for n in names], rtol=5e-3)
    np.testing.assert_allclose(res.fe_zvalues, [f["zvalue"][n] for n in names], rtol=5e-3)


@pytest.mark.parametrize("case", CASES)
def test_coef_table_is_glmers(case):
    """``coef_table()`` is ``coef(summary(fit))``: lme4's columns, our names. Estimates and
    standard errors as in the tests above; z values to 5e-3 relative (the standard
    errors'); p-values as ``2 Phi(-|z|)`` of those z, so ``|log p - log p_lme4|`` is at
    most ``(z^2 + 1) 5e-3`` (``d log p / dz`` is about ``-(z + 1/z)`` in the tail)."""
    f, res = FITS[case], fitted(case)
    names = lme4_names(res)
    table = res.coef_table()
    assert list(table.columns) == ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
    assert list(table.index) == list(res.fe_params.index)
    pd.testing.assert_series_equal(table["Estimate"], res.fe_params, check_names=False)
    np.testing.assert_allclose(table["Std. Error"], [f["fixef_se"][n] for n in names], rtol=5e-3)
    z_ref = np.array([f["zvalue"][n] for n in names])
    np.testing.assert_allclose(table["z value"], z_ref, rtol=5e-3)
    p_ref = np.array([f["pvalue"][n] for n in names])
    gap = np.abs(np.log(table["Pr(>|z|)"].to_numpy()) - np.log(p_ref))
    assert np.all(gap <= (z_ref**2 + 1.0) * 5e-3), (gap, z_ref)
    with pytest.raises(interlace.ModelSpecError, match="z statistics, as glmer does"):
        res.coef_table(ddf="satterthwaite")


@pytest.mark.parametrize("case", CASES)
def test_conditional_quantities(case):
    f, res = FITS[case], fitted(case)
    assert res.deviance == pytest.approx(f["deviance"], rel=1e-5)
    np.testing.assert_allclose(res.fittedvalues.to_numpy()[:10], f["fitted_head"], rtol=1e-5)
    np.testing.assert_allclose(res.linear_predictor.to_numpy()[:10], f["linpred_head"], rtol=1e-5)
    assert np.sum(res.residuals("pearson") ** 2) == pytest.approx(f["sum_pearson_resid2"], rel=1e-5)
    for factor, ref in f["ranef"].items():
        ours = res.random_effects[factor]
        for column, values in ref["values"].items():
            mine = ours if isinstance(ours, pd.Series) else ours[column]
            mine = mine.set_axis(mine.index.astype(str)).reindex(ref["levels"])
            sd = np.sqrt(np.var(values)) or 1.0
            np.testing.assert_allclose(mine.to_numpy(), values, atol=1e-3 * sd)


DEVFUN = REF["devfun"]


def _objective(case: str, pars: dict) -> float:
    """Our ``-2 logLik`` at lme4's parameters ``pars`` (lme4's names)."""
    f = FITS[case]
    fam = family_for(case, fixed_size=True)
    glmm = build_glmm_design(formula_of(case), load(case), None, fam, weights=f["weights"])
    res = fitted(case)
    names = res.theta_lme4.index
    theta = interlace.theta_from_lme4(pd.Series([pars[n] for n in names], index=names), res)
    beta = None
    if f["nAGQ"] > 0:  # lme4's deviance function of nAGQ = 0 takes theta only
        beta = np.array([pars[n] for n in lme4_names(res)])
    return deviance_at(glmm, fam, theta.to_numpy(), beta, nagq=f["nAGQ"])


@pytest.mark.parametrize("name", sorted(DEVFUN))
def test_objective_at_lme4_points(name):
    """Our deviance function at lme4's evaluation points (``devFunOnly``) equals lme4's to
    1e-7 relative (~2e-5 absolute on cbpp): lme4 takes ``ldL2`` with the working weights
    of its last PIRLS iterate but one (make_glmm_references.R's ``exact_check`` notes),
    ours at the converged modes, which moves the value by ~1e-6 away from the optimum."""
    entry = DEVFUN[name]
    for point in entry["points"]:
        value = _objective(entry["model"], point["pars"])
        assert value == pytest.approx(point["value"], rel=1e-7), point["label"]


@pytest.mark.parametrize("case", CASES)
def test_objective_at_lme4_optimum(case):
    """At lme4's optimum our objective is lme4's ``-2 logLik`` (1e-8 relative), and our
    optimum is at least as low."""
    f = FITS[case]
    value = _objective(case, {**f["theta"], **f["fixef"]})
    assert value == pytest.approx(f["minus2logLik"], rel=1e-8)
    assert -2.0 * fitted(case).llf <= value * (1 + 1e-9)


@pytest.mark.parametrize("case", ["binary_slope_laplace", "cbpp_cloglog"])
def test_hessian_standard_errors_equal_central_differences(case):
    """The fit's standard errors (forward differences of the exact gradient, one
    evaluation per parameter) equal those of a central-difference Hessian taken here at
    the fit's optimum, 1e-4 relative (measured: 4e-6 or better). A correlated slope
    (three theta) and a non-canonical link, where PIRLS is Fisher scoring."""
    f, res = FITS[case], fitted(case)
    fam = family_for(case)
    with jax.enable_x64(True):
        glmm = build_glmm_design(formula_of(case), load(case), None, fam, weights=f["weights"])
        prob = GlmmProblem(glmm, fam, f["nAGQ"])
        fun = prob.fun(False)
        x = np.concatenate(
            [
                to_internal(res.theta.to_numpy(), prob.ks, prob.order),
                prob.standardized_beta(res.fe_params.to_numpy()),
            ]
        )
        k = x.shape[0]
        H = np.empty((k, k))
        for j in range(k):
            e = np.zeros(k)
            e[j] = 1e-4 * max(1.0, abs(x[j]))
            H[:, j] = (fun(x + e)[1] - fun(x - e)[1]) / (2.0 * e[j])
    H = 0.5 * (H + H.T)
    cov_s = 2.0 * np.linalg.inv(H)[prob.n_theta :, prob.n_theta :]
    cov = prob.user_cov(cov_s)
    se = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(res.fe_bse.to_numpy(), se, rtol=1e-4)
