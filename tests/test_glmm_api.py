"""The GLMM API of ``interlace.fit(..., family=)`` and :class:`GLMMResult`: response forms,
offsets, predict, residuals, summary, bad input, the caller's frame, warnings' line and
float64 scoping.

Speed: every distinct model shape compiles for seconds, so the file fits three shapes
(cbpp, 56 rows; a simulated binary design, 200 rows; a simulated Poisson design with
exposure, 150 rows), each once per module through fixtures, and every other fit that runs
to the end has one of those shapes (rows to drop are added to them). Plus two cbpp fits
at nAGQ 0 and 25 for the summary header.

Tolerances: fits of the same arrays reached by different routes (cbind vs proportion +
weights, offset in the formula vs ``offset=``) are the same computation: 1e-8 relative.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import DataError, FormulaError, MissingColumnError, ModelSpecError
from interlace._core.family import family_of

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "glmm_references.json").read_text())
CBPP_LEVELS = REF["meta"]["factor_levels"]["cbpp"]
CBIND = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
PROP = "incidence/size ~ period + (1 | herd)"
BIN_F = "y ~ x + (1 | g)"
POIS_F = "count ~ x + (1 | g)"
POIS_OFF_F = "count ~ x + offset(np.log(hours)) + (1 | g)"
RTOL = 1e-8


def quiet_fit(*args, **kwargs) -> interlace.GLMMResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interlace.fit(*args, **kwargs)


def assert_same_fit(a, b, rtol=RTOL):
    np.testing.assert_allclose(a.fe_params.to_numpy(), b.fe_params.to_numpy(), rtol=rtol)
    np.testing.assert_allclose(np.abs(a.theta.to_numpy()), np.abs(b.theta.to_numpy()), rtol=rtol)
    assert a.llf == pytest.approx(b.llf, rel=rtol)
    assert list(a.fe_params.index) == list(b.fe_params.index)


def cbpp_frame() -> pd.DataFrame:
    """cbpp with lme4's factor levels (as tests/test_glmm_references.py loads it)."""
    d = pd.read_csv(DATA / "cbpp.csv")
    for col, levels in CBPP_LEVELS.items():
        if col in d.columns:
            d[col] = pd.Categorical(d[col].astype(str), categories=levels)
    return d


def binary_frame() -> pd.DataFrame:
    """200 rows, 20 groups: y ~ Bernoulli(logit^-1(-0.3 + 0.8 x + b_g)), b_g ~ N(0, 1);
    a non-default (string) index."""
    rng = np.random.default_rng(20240611)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=200)
    eta = -0.3 + 0.8 * x + rng.normal(size=20)[g]
    y = (rng.random(200) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame(
        {"g": [f"G{i:02d}" for i in g], "x": x, "y": y},
        index=pd.Index([f"r{i}" for i in range(200)], name="row"),
    )


def poisson_frame() -> pd.DataFrame:
    """150 rows, 15 groups: count ~ Poisson(hours exp(0.2 + 0.4 x + b_g)), b_g ~ N(0, 0.5^2);
    a shuffled integer index."""
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(15), 10)
    x = rng.normal(size=150)
    hours = rng.uniform(0.5, 4.0, size=150)
    mu = hours * np.exp(0.2 + 0.4 * x + 0.5 * rng.normal(size=15)[g])
    d = pd.DataFrame(
        {"g": [f"S{i}" for i in g], "x": x, "hours": hours, "count": rng.poisson(mu)},
        index=rng.permutation(np.arange(1000, 1150)),
    )
    d["logh"] = np.log(d["hours"])
    return d


@pytest.fixture(scope="module")
def cbpp():
    return cbpp_frame()


@pytest.fixture(scope="module")
def cbpp_fit(cbpp):
    return quiet_fit(CBIND, cbpp, family="binomial")


@pytest.fixture(scope="module")
def binary():
    return binary_frame()


@pytest.fixture(scope="module")
def binary_fit(binary):
    return quiet_fit(BIN_F, binary, family="binomial")


@pytest.fixture(scope="module")
def pois():
    return poisson_frame()


@pytest.fixture(scope="module")
def pois_fit(pois):
    """The exposure as an offset(...) term of the formula."""
    return quiet_fit(POIS_OFF_F, pois, family="poisson")


@pytest.fixture(scope="module")
def pois_arg_fit(pois):
    """The exposure as the offset= argument."""
    return quiet_fit(POIS_F, pois, family="poisson", offset=np.log(pois["hours"].to_numpy()))


# --------------------------------------------------------------------------------------
# 1. Equivalent response forms
# --------------------------------------------------------------------------------------
def test_cbpp_response_forms_agree(cbpp, cbpp_fit):
    prop = quiet_fit(PROP, cbpp, family="binomial", weights="size")
    d = cbpp.assign(p=cbpp["incidence"] / cbpp["size"])
    array = quiet_fit("p ~ period + (1 | herd)", d, family="binomial", weights=d["size"].to_numpy())
    for other in (prop, array):
        assert_same_fit(other, cbpp_fit)
        np.testing.assert_allclose(other.fittedvalues, cbpp_fit.fittedvalues, rtol=RTOL)
    # and they are glmer's fit (reference -2 logLik, 1e-6 relative)
    assert -2 * cbpp_fit.llf == pytest.approx(REF["fits"]["cbpp_laplace"]["minus2logLik"], rel=1e-6)
    assert cbpp_fit.nobs == 56 and cbpp_fit.family == "binomial" and cbpp_fit.link == "logit"


def test_binary_response_forms_agree(binary, binary_fit):
    y = binary["y"]
    d = binary.assign(
        yb=y.astype(bool),
        ys=np.where(y == 1, "yes", "no"),  # sorted levels: "no" (failure), "yes"
        yc=pd.Categorical(np.where(y == 1, "yes", "no"), categories=["yes", "no"]),
        yflip=1 - y,
    )
    for col in ("yb", "ys"):
        assert_same_fit(quiet_fit(f"{col} ~ x + (1 | g)", d, family="binomial"), binary_fit)
    # a factor's first level is failure (R): categories ["yes", "no"] make "yes" failure
    flipped = quiet_fit("yflip ~ x + (1 | g)", d, family="binomial")
    assert_same_fit(quiet_fit("yc ~ x + (1 | g)", d, family="binomial"), flipped)
    np.testing.assert_allclose(flipped.fe_params, -binary_fit.fe_params, rtol=1e-6)


# --------------------------------------------------------------------------------------
# 2. Offsets
# --------------------------------------------------------------------------------------
def test_offset_spellings_agree(pois, pois_fit, pois_arg_fit):
    column = quiet_fit(POIS_F, pois, family="poisson", offset="logh")
    r_spelling = quiet_fit("count ~ x + offset(log(hours)) + (1 | g)", pois, family="poisson")
    for other in (pois_arg_fit, column, r_spelling):
        assert_same_fit(other, pois_fit)
        np.testing.assert_allclose(other.fittedvalues, pois_fit.fittedvalues, rtol=RTOL)
    # the offset is in the linear predictor (coefficient 1), not a fixed effect
    assert list(pois_fit.fe_params.index) == ["Intercept", "x"]
    np.testing.assert_allclose(pois_fit.model_fit.offset, pois["logh"], rtol=1e-15)


def test_predict_newdata_with_offset_term(pois, pois_fit):
    pred = pois_fit.predict(pois)
    np.testing.assert_allclose(pred, pois_fit.fittedvalues, rtol=1e-10)
    assert pred.index.equals(pois.index)
    # the offset term is read from newdata: doubling the exposure doubles the mean
    doubled = pois_fit.predict(pois.assign(hours=2 * pois["hours"]))
    np.testing.assert_allclose(doubled, 2 * pred, rtol=1e-10)


def test_predict_newdata_with_offset_argument(pois, pois_arg_fit):
    with pytest.raises(DataError, match=r"fitted with offset=; pass offset="):
        pois_arg_fit.predict(pois)
    pred = pois_arg_fit.predict(pois, offset=pois["logh"].to_numpy())
    np.testing.assert_allclose(pred, pois_arg_fit.fittedvalues, rtol=1e-10)
    # a column name works as in fit; a wrong length is refused
    by_name = pois_arg_fit.predict(pois, offset="logh")
    np.testing.assert_allclose(by_name, pois_arg_fit.fittedvalues, rtol=1e-10)
    with pytest.raises(DataError, match="one per row"):
        pois_arg_fit.predict(pois, offset=np.zeros(3))
    # newdata=None needs no offset: the fitted one is used; an offset without newdata is
    # refused rather than ignored
    np.testing.assert_allclose(pois_arg_fit.predict(), pois_arg_fit.fittedvalues, rtol=1e-12)
    with pytest.raises(ModelSpecError, match="offset= goes with newdata="):
        pois_arg_fit.predict(offset="logh")


# --------------------------------------------------------------------------------------
# 3. predict
# --------------------------------------------------------------------------------------
def test_predict_scales_and_levels(pois, pois_fit):
    res = pois_fit
    np.testing.assert_allclose(res.predict(type="link"), res.linear_predictor, rtol=1e-12)
    np.testing.assert_allclose(res.predict(), res.fittedvalues, rtol=1e-12)
    X = res.design.X
    xb_off = X @ res.fe_params.to_numpy() + res.model_fit.offset
    np.testing.assert_allclose(res.predict(include_re=False, type="link"), xb_off, rtol=1e-10)
    np.testing.assert_allclose(res.predict(pois, include_re=False, type="link"), xb_off, rtol=1e-10)
    # response scale = inverse link (log) of the link scale
    link = res.predict(pois, type="link")
    np.testing.assert_allclose(res.predict(pois), np.exp(link), rtol=1e-12)
    # an unseen level gets a random effect of 0: the population prediction
    new = pois.iloc[:5].assign(g="never-seen")
    np.testing.assert_allclose(
        res.predict(new, type="link"), res.predict(new, include_re=False, type="link"), rtol=1e-12
    )
    with pytest.raises(ModelSpecError, match=r"type='probability'"):
        res.predict(type="probability")
    # a missing level also gets 0, with a warning that points at the caller
    with pytest.warns(UserWarning, match=r"missing") as w:
        missing = res.predict(new.assign(g=None), type="link")
    assert w[0].filename == __file__
    np.testing.assert_allclose(missing, res.predict(new, include_re=False, type="link"), rtol=1e-12)


def test_predict_binomial_inverse_link(binary, binary_fit):
    link = binary_fit.predict(binary, type="link")
    np.testing.assert_allclose(binary_fit.predict(binary), 1 / (1 + np.exp(-link)), rtol=1e-12)
    np.testing.assert_allclose(link, binary_fit.linear_predictor, rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------------------
# 4. residuals
# --------------------------------------------------------------------------------------
def test_residuals(cbpp, cbpp_fit):
    res = cbpp_fit
    y = (cbpp["incidence"] / cbpp["size"]).to_numpy()
    mu = res.fittedvalues.to_numpy()
    np.testing.assert_allclose(res.residuals("response"), y - mu, rtol=1e-12, atol=1e-15)
    pearson2 = float(np.sum(res.residuals("pearson") ** 2))
    assert pearson2 == pytest.approx(REF["fits"]["cbpp_laplace"]["sum_pearson_resid2"], rel=1e-5)
    assert float(np.sum(res.residuals("deviance") ** 2)) == pytest.approx(res.deviance, rel=1e-10)
    pd.testing.assert_series_equal(res.resid, res.residuals("deviance"))
    # working residuals: (y - mu) / (d mu / d eta), logit: d mu / d eta = mu (1 - mu)
    np.testing.assert_allclose(
        res.residuals("working"), (y - mu) / (mu * (1 - mu)), rtol=1e-10, atol=1e-14
    )
    assert res.residuals("pearson").index.equals(cbpp.index)
    with pytest.raises(ModelSpecError, match=r"type='raw'.*deviance.*pearson"):
        res.residuals("raw")


# --------------------------------------------------------------------------------------
# 5. summary, repr, conf_int, aliases
# --------------------------------------------------------------------------------------
def test_summary_and_repr(cbpp_fit):
    res = cbpp_fit
    s = res.summary()
    assert "Generalized linear mixed model fit by maximum likelihood (Laplace Approximation)" in s
    assert " Family: binomial  ( logit )" in s
    lines = s.splitlines()
    i = next(
        j
        for j, ln in enumerate(lines)
        if ln.split() == ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    )
    values = [float(v) for v in lines[i + 1].split()]
    expected = [res.aic, res.bic, res.llf, -2 * res.llf, res.nobs - res.df_modelwc]
    np.testing.assert_allclose(values, expected, atol=0.05 + 1e-9)
    assert "Number of obs: 56, groups:  herd, 15" in s
    r = repr(res)
    assert "\n" not in r and r.startswith("<GLMMResult binomial(logit) nAGQ=1")
    assert "nobs=56" in r


def test_summary_names_weights_and_offset(cbpp, cbpp_fit):
    """lme4's call lines under the formula: ``Weights:`` and ``Offset:`` for the arguments
    given (a column by its name, values by their count), none for the others."""
    res = quiet_fit(
        "incidence / size ~ period + (1 | herd)",
        cbpp,
        family="binomial",
        weights="size",
        offset=np.full(len(cbpp), 0.1),
    )
    lines = res.summary().splitlines()
    i = lines.index("Formula: incidence / size ~ period + (1 | herd)")
    assert lines[i + 1 : i + 4] == ["Weights: size", f" Offset: <{len(cbpp)} values>", ""]
    assert not any(
        ln.startswith(("Weights:", " Offset:")) for ln in cbpp_fit.summary().splitlines()
    )


@pytest.mark.parametrize("nagq", [0, 25])
def test_summary_quadrature_header(cbpp, nagq):
    res = quiet_fit(CBIND, cbpp, family="binomial", nAGQ=nagq)
    assert res.nAGQ == nagq
    head = res.summary().splitlines()[0]
    assert head == (
        "Generalized linear mixed model fit by maximum likelihood "
        f"(Adaptive Gauss-Hermite Quadrature, nAGQ = {nagq})"
    )
    ref = REF["fits"][f"cbpp_nAGQ{nagq}"]
    assert -2 * res.llf == pytest.approx(ref["minus2logLik"], rel=1e-6)


def test_conf_int_and_aliases(cbpp_fit):
    res = cbpp_fit
    ci = res.conf_int(0.95)
    assert list(ci.columns) == ["2.5%", "97.5%"]
    assert np.all(ci.iloc[:, 0] < res.fe_params) and np.all(res.fe_params < ci.iloc[:, 1])
    pd.testing.assert_frame_equal(res.conf_int(alpha=0.05), ci, rtol=1e-14)
    pd.testing.assert_frame_equal(res.fe_conf_int, ci)
    # half-width 1.959964 se (Wald)
    np.testing.assert_allclose(
        (ci.iloc[:, 1] - ci.iloc[:, 0]) / 2, 1.959963984540054 * res.fe_bse, rtol=1e-12
    )
    with pytest.raises(ModelSpecError, match="level or alpha"):
        res.conf_int(0.95, alpha=0.05)
    with pytest.raises(ModelSpecError, match="level=1.5"):
        res.conf_int(1.5)
    assert res.params is res.fe_params
    pd.testing.assert_series_equal(res.bse, res.fe_bse)
    pd.testing.assert_series_equal(res.tvalues, res.fe_zvalues)
    pd.testing.assert_series_equal(res.pvalues, res.fe_pvalues)
    assert res.cov_params() is res.fe_cov
    assert res.scale == 1.0
    np.testing.assert_allclose(np.abs(res.theta_lme4), np.abs(res.theta), rtol=1e-15)


# --------------------------------------------------------------------------------------
# 6. Bad input
# --------------------------------------------------------------------------------------
def _pois() -> pd.DataFrame:
    return poisson_frame()


def _bin() -> pd.DataFrame:
    return binary_frame()


def _cbpp() -> pd.DataFrame:
    return cbpp_frame()


def _set(df: pd.DataFrame, col: str, rows, value) -> pd.DataFrame:
    out = df.copy()
    out.loc[out.index[list(rows)], col] = value
    return out


REJECT = [
    pytest.param(
        lambda: dict(formula=BIN_F, data=_set(_bin(), "y", [3], 2), family="binomial"),
        DataError,
        r"binomial response 'y' has values outside \[0, 1\] \(e\.g\. 2\)",
        id="binomial-outside-0-1",
    ),
    pytest.param(
        # a value just above 1 (a proportion computed in floating point) is named with
        # the digits that put it outside, not rounded back to "1"
        lambda: dict(
            formula=BIN_F,
            data=_set(_bin().astype({"y": float}), "y", [3], 1 + 1e-12),
            family="binomial",
        ),
        DataError,
        r"values outside \[0, 1\] \(e\.g\. 1\.000000000001\)",
        id="binomial-just-above-1",
    ),
    pytest.param(
        lambda: dict(formula=POIS_F, data=_set(_pois(), "count", [4], -1), family="poisson"),
        DataError,
        r"Poisson response 'count' has negative values \(e\.g\. -1\)",
        id="poisson-negative",
    ),
    pytest.param(
        lambda: dict(formula=POIS_F, data=_pois().assign(count=0), family="poisson"),
        DataError,
        r"Every count of 'count' is 0",
        id="poisson-all-zero",
    ),
    pytest.param(
        lambda: dict(formula=BIN_F, data=_bin().assign(y=0), family="binomial"),
        DataError,
        r"Every response of 'y' is 0.*needs both outcomes",
        id="binomial-all-zero",
    ),
    pytest.param(
        lambda: dict(formula=BIN_F, data=_bin().assign(y=1), family="binomial"),
        DataError,
        r"Every response of 'y' is 1.*needs both outcomes",
        id="binomial-all-ones",
    ),
    pytest.param(
        lambda: dict(formula=BIN_F, data=_bin().assign(y="yes"), family="binomial"),
        DataError,
        r"binomial response 'y' has a single value \(yes\)",
        id="binomial-string-one-level",
    ),
    pytest.param(
        lambda: dict(
            formula=PROP, data=_cbpp(), family="binomial", weights=-_cbpp()["size"].to_numpy()
        ),
        DataError,
        r"weights must be >= 0; 56 are negative",
        id="negative-weights",
    ),
    pytest.param(
        lambda: dict(formula=PROP, data=_cbpp(), family="binomial", weights=np.ones(55)),
        DataError,
        r"weights= has 55 values.*one per row of the data \(56\)",
        id="weights-wrong-length",
    ),
    pytest.param(
        lambda: dict(
            formula=PROP,
            data=_cbpp(),
            family="binomial",
            weights=np.where(np.arange(56) == 5, np.inf, _cbpp()["size"]),
        ),
        DataError,
        r"weights have 1 infinite values in rows the model uses",
        id="infinite-weight",
    ),
    pytest.param(
        lambda: dict(
            formula=POIS_F,
            data=_pois(),
            family="poisson",
            offset=np.where(np.arange(150) == 7, np.inf, 0.0),
        ),
        DataError,
        r"offset is infinite in 1 rows",
        id="offset-infinite",
    ),
    pytest.param(
        lambda: dict(formula=CBIND, data=_cbpp(), family="binomial", weights="size"),
        ModelSpecError,
        r"weights= with a cbind\(successes, failures\) response",
        id="cbind-with-weights",
    ),
    pytest.param(
        lambda: dict(formula=CBIND, data=_cbpp(), family="poisson"),
        FormulaError,
        r"cbind\(successes, failures\) is a binomial response, not poisson",
        id="cbind-poisson",
    ),
    pytest.param(
        lambda: dict(
            formula="cbind(incidence) ~ period + (1 | herd)", data=_cbpp(), family="binomial"
        ),
        FormulaError,
        r"cbind\(\) takes two columns",
        id="cbind-one-argument",
    ),
    pytest.param(
        lambda: dict(formula=POIS_F, data=_pois(), family="gamma"),
        ModelSpecError,
        r"family='gamma' is not supported: Gamma GLMMs are not available yet",
        id="unknown-family",
    ),
    pytest.param(
        lambda: dict(formula=POIS_F, data=_pois(), family="quasipoisson"),
        ModelSpecError,
        r"family='quasipoisson' is not supported: quasi-likelihood .*'negative_binomial'",
        id="quasi-family",
    ),
    pytest.param(
        lambda: dict(formula=POIS_F, data=_pois(), family="gaussian(log)"),
        ModelSpecError,
        r"a Gaussian response with a 'log' link is a GLMM interlace does not fit",
        id="gaussian-log-link",
    ),
    pytest.param(
        lambda: dict(formula=POIS_F, data=_pois(), family="poisson", method="REML"),
        ModelSpecError,
        r"method='REML': REML is not defined for a poisson GLMM",
        id="reml-glmm",
    ),
    pytest.param(
        lambda: dict(
            formula="count ~ x + (1 | g) + (1 | h)",
            data=_pois().assign(h=np.tile(list("abcde"), 30)),
            family="poisson",
            nAGQ=25,
        ),
        ModelSpecError,
        r"nAGQ=25: adaptive Gauss-Hermite quadrature.*single scalar random-effects term.*"
        r"2 term\(s\)",
        id="nagq-two-terms",
    ),
    pytest.param(
        lambda: dict(formula="count ~ x + (1 + x | g)", data=_pois(), family="poisson", nAGQ=5),
        ModelSpecError,
        r"nAGQ=5:.*single scalar random-effects term.*\[2\] column",
        id="nagq-vector-term",
    ),
    pytest.param(
        lambda: dict(formula=POIS_F, data=_pois(), family="poisson", nAGQ=-1),
        ModelSpecError,
        r"nAGQ=-1: use 1 \(Laplace",
        id="nagq-negative",
    ),
    pytest.param(
        lambda: dict(formula=POIS_F, data=_pois(), family="poisson", nAGQ=1.5),
        ModelSpecError,
        r"nAGQ=1\.5: use 1",
        id="nagq-float",
    ),
    pytest.param(
        lambda: dict(formula=POIS_F, data=_pois(), family="poisson", nAGQ=101),
        ModelSpecError,
        r"nAGQ=101: use 1",
        id="nagq-too-many",
    ),
    pytest.param(
        lambda: dict(formula="x ~ 1 + (1 | g)", data=_pois(), weights=-_pois()["hours"]),
        DataError,
        r"weights must be > 0 for a linear mixed model",
        id="gaussian-weights",
    ),
    pytest.param(
        lambda: dict(formula="x ~ 1 + (1 | g)", data=_pois(), family="gaussian", offset="nope"),
        MissingColumnError,
        r"offset='nope' is not a column",
        id="gaussian-offset",
    ),
    pytest.param(
        lambda: dict(formula="x ~ 1 + (1 | g)", data=_pois(), nAGQ=0),
        ModelSpecError,
        r"nAGQ applies to GLMMs only",
        id="gaussian-nagq",
    ),
    pytest.param(
        lambda: dict(
            formula="count ~ x + offset(np.log(nope)) + (1 | g)", data=_pois(), family="poisson"
        ),
        MissingColumnError,
        r"offset 'np\.log\(nope\)' reads a name that is not a column.*'nope'",
        id="offset-term-missing-column",
    ),
    pytest.param(
        lambda: dict(formula=POIS_F, data=_pois(), family="poisson", offset="nope"),
        MissingColumnError,
        r"offset='nope' is not a column of the data",
        id="offset-argument-missing-column",
    ),
    pytest.param(
        lambda: dict(formula=PROP, data=_cbpp(), family="binomial", weights="nope"),
        MissingColumnError,
        r"weights='nope' is not a column of the data",
        id="weights-missing-column",
    ),
    pytest.param(
        lambda: dict(formula="count ~ x - offset(logh) + (1 | g)", data=_pois(), family="poisson"),
        FormulaError,
        r"subtracts an offset",
        id="offset-subtracted",
    ),
]


@pytest.mark.parametrize(("make", "error", "pattern"), REJECT)
def test_reject(make, error, pattern):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a row-drop warning before the error
        with pytest.raises(error, match=pattern):
            interlace.fit(**make())


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: interlace.binomial("log"), r"link='log' is not available for family 'binomial'"),
        (lambda: interlace.poisson("identity"), r"link='identity'.*'poisson'"),
    ],
    ids=["binomial-log", "poisson-identity"],
)
def test_bad_link(make, pattern):
    with pytest.raises(ModelSpecError, match=pattern):
        make()


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        (interlace.binomial, interlace.binomial()),  # glmer's family = binomial
        (interlace.poisson, interlace.poisson()),
        (interlace.negative_binomial, interlace.negative_binomial()),
        ("binomial()", interlace.binomial()),
        ('binomial(link = "probit")', interlace.binomial("probit")),
        ("binomial(link='cloglog')", interlace.binomial("cloglog")),
        ("binomial(probit)", interlace.binomial("probit")),
        ("Poisson()", interlace.poisson()),
        ("negative binomial", interlace.negative_binomial()),
        ("nb", interlace.negative_binomial()),
        # MASS's negative.binomial(theta, link): a fixed size, by keyword or position
        ("negative.binomial(theta = 2)", interlace.negative_binomial(2)),
        ("negative.binomial(1.75)", interlace.negative_binomial(1.75)),
        ("negative.binomial(link = 'log', 0.5)", interlace.negative_binomial(0.5)),
        ("negative_binomial(size=3)", interlace.negative_binomial(3)),
    ],
)
def test_family_as_r_writes_it(family, expected):
    assert family_of(family) == expected


@pytest.mark.parametrize(
    ("family", "pattern"),
    [
        ("binomial(theta = 2)", r"argument 'theta' is not one this family takes; it takes link"),
        ("binomial(probit, link = logit)", r"too many arguments; it takes link"),
        ("negative.binomial(2, log, 3)", r"too many arguments; it takes theta, link"),
        ("negative.binomial(theta = 2, size = 3)", r"gives its theta twice"),
        ("negative.binomial(theta = many)", r"size \(theta\) must be a number, got 'many'"),
        ("negative.binomial(theta = -1)", r"size must be positive"),
        ("tweedie(var.power = 1.5)", r"family='tweedie\(var.power = 1.5\)' is not supported"),
    ],
)
def test_family_call_refusals_name_the_argument(family, pattern):
    with pytest.raises(ModelSpecError, match=pattern):
        family_of(family)


def test_family_spellings_fit_the_same_model(cbpp, cbpp_fit):
    """R's spellings reach the same fit through ``interlace.fit`` (equal to the last bit:
    the same Family, the same computation); ``"gaussian()"`` is the linear model."""
    for family in (interlace.binomial, 'binomial(link = "logit")'):
        assert quiet_fit(CBIND, cbpp, family=family).llf == cbpp_fit.llf
    counts = "incidence ~ period + (1 | herd)"
    # MASS's call form fixes the size, as interlace.negative_binomial(size) does
    fixed = quiet_fit(counts, cbpp, family="negative.binomial(theta = 3)")
    assert fixed.size == 3.0
    assert fixed.llf == quiet_fit(counts, cbpp, family=interlace.negative_binomial(3)).llf
    assert quiet_fit(counts, cbpp, family="gaussian()").llf == quiet_fit(counts, cbpp).llf
    with pytest.raises(ModelSpecError, match=r"names its link already"):
        family_of("binomial(probit)", "logit")


def test_coef_table_refuses_degrees_of_freedom(cbpp_fit):
    table = cbpp_fit.coef_table()
    np.testing.assert_array_equal(table["z value"], cbpp_fit.fe_zvalues)  # one formula
    with pytest.raises(ModelSpecError, match=r"ddf='kenward-roger'.*interlace.anova"):
        cbpp_fit.coef_table(ddf="kenward-roger")


def test_proportion_non_integer_successes_warns(cbpp, cbpp_fit):
    with pytest.warns(UserWarning, match=r"non-integer #successes") as w:
        interlace.fit(PROP, cbpp, family="binomial", weights=cbpp["size"].to_numpy() + 0.5)
    assert w[0].filename == __file__


def test_poisson_non_integer_counts_warn(pois, pois_fit):
    d = pois.assign(count=pois["count"].astype(float))
    d.iloc[3, d.columns.get_loc("count")] += 0.5
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = interlace.fit(POIS_OFF_F, d, family="poisson")
    hits = [x for x in w if "non-integer values" in str(x.message)]
    assert len(hits) == 1 and issubclass(hits[0].category, UserWarning)
    assert "Poisson response 'count'" in str(hits[0].message)
    assert hits[0].filename == __file__, "the warning should point at the caller's line"
    assert res.converged


def test_a_predictor_far_from_zero_fits_as_near_zero(pois, pois_fit):
    """``x`` shifted to a Unix time stamp's size (1.7e9, spread ~1): the same model with a
    shifted intercept. The model arrays hold centred columns, so the linear predictor
    keeps its digits (``X beta`` from raw columns cancelled terms of ~7e8, and the fit
    stopped short of convergence with standard errors 2e-4 off). Same shapes as
    ``pois_fit``. Tolerances: the shifted values are rounded to 2.4e-7 (float64 near
    1.7e9), which moves the fit by ~1e-8; asserted at 1e-6 (1e-7 for llf)."""
    shift = 1.7e9
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = interlace.fit(POIS_OFF_F, pois.assign(x=pois["x"] + shift), family="poisson")
    assert res.converged
    assert not [w for w in caught if "converge" in str(w.message)]
    assert res.llf == pytest.approx(pois_fit.llf, rel=1e-7)
    b0, b1 = pois_fit.fe_params.to_numpy()
    assert res.fe_params.iloc[1] == pytest.approx(b1, rel=1e-6)
    assert res.fe_params.iloc[0] == pytest.approx(b0 - shift * b1, rel=1e-6)
    assert res.fe_bse.iloc[1] == pytest.approx(pois_fit.fe_bse.iloc[1], rel=1e-6)
    np.testing.assert_allclose(res.theta.to_numpy(), pois_fit.theta.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(res.fittedvalues, pois_fit.fittedvalues, rtol=1e-6)
    # predict(newdata) and simulate take X beta in the fit's centred columns too: the
    # fit's own rows as new data give its linear predictor to rounding (1e-10; X beta
    # from the raw columns was ~1e-7 off)
    shifted = pois.assign(x=pois["x"] + shift)
    link = res.predict(shifted, type="link").to_numpy()
    np.testing.assert_allclose(link, res.predict(type="link").to_numpy(), rtol=0, atol=1e-10)


def test_negative_binomial_without_overdispersion_warns(pois, pois_fit):
    """Poisson counts fitted as negative binomial: the likelihood rises toward an infinite
    size (the Poisson GLMM), so the size reported is where the optimizer stopped; the
    fit says so and names the family to use. Tolerance: the log-likelihood equals the
    Poisson fit's to 1e-9 relative (``mu^2 / size`` is below 1e-12 there)."""
    with pytest.warns(UserWarning, match="no overdispersion beyond a Poisson") as w:
        res = interlace.fit(POIS_OFF_F, pois, family="negative_binomial")
    assert w[0].filename == __file__
    assert res.size > 1e6 * pois["count"].mean()
    assert res.llf == pytest.approx(pois_fit.llf, rel=1e-9)


def test_constant_counts_fit_as_a_singular_model(pois, pois_arg_fit):
    """Constant counts (lme4 refuses them: "Response is constant") are a Poisson sample
    whose maximum-likelihood fit is ``mu = 3`` in every row with no random variation.
    PIRLS starts there from a constant working response, which the intercept fits
    exactly: the factor's last pivot (its residual) is 0 up to rounding, and a negative
    one made the whole factor, and the fit, NaN. Same shapes as ``pois_arg_fit``.
    Tolerances: the closed-form log-likelihood to 1e-10 relative, estimates to 1e-7."""
    d = pois.assign(count=3)
    with pytest.warns(UserWarning, match="singular"):
        res = interlace.fit(POIS_F, d, family="poisson", offset=np.zeros(len(d)))
    assert res.converged
    assert res.llf == pytest.approx(len(d) * (3.0 * np.log(3.0) - 3.0 - np.log(6.0)), rel=1e-10)
    np.testing.assert_allclose(res.fe_params.to_numpy(), [np.log(3.0), 0.0], atol=1e-7)
    assert abs(res.theta.iloc[0]) < 1e-6
    assert np.all(np.isfinite(res.fe_bse.to_numpy()))


def test_missing_rows_are_dropped_with_weights(cbpp, cbpp_fit):
    """Three incomplete rows spread through the data (response, predictor, group): they
    are dropped with the LMM's warning and their weights (NaN here) with them."""
    extra = cbpp.iloc[[0, 1, 2]].copy()
    extra.loc[extra.index[0], "incidence"] = np.nan
    extra.loc[extra.index[1], "period"] = np.nan
    extra.loc[extra.index[2], "herd"] = np.nan
    d = pd.concat(
        [cbpp.iloc[:10], extra.iloc[:1], cbpp.iloc[10:30], extra.iloc[1:], cbpp.iloc[30:]]
    )
    d.index = pd.Index([f"k{i}" for i in range(len(d))])
    w = d["size"].to_numpy(dtype=float)
    w[[10, 31, 32]] = np.nan
    with pytest.warns(UserWarning, match=r"Dropped 3 of 59 rows with missing values") as rec:
        res = interlace.fit(PROP, d, family="binomial", weights=w)
    assert rec[0].filename == __file__, "the warning should point at the caller's line"
    assert_same_fit(res, cbpp_fit)
    kept = d.index.delete([10, 31, 32])
    assert res.fittedvalues.index.equals(kept)
    np.testing.assert_allclose(res.fittedvalues, cbpp_fit.fittedvalues, rtol=RTOL)
    np.testing.assert_allclose(res.model_fit.prior_weights, cbpp["size"], rtol=0)


def test_missing_rows_are_dropped_with_offset(pois, pois_arg_fit):
    extra = pois.iloc[[0, 1]].copy()
    extra["x"] = np.nan
    extra.index = [-1, -2]
    d = pd.concat([pois.iloc[:40], extra.iloc[:1], pois.iloc[40:], extra.iloc[1:]])
    off = np.log(d["hours"].to_numpy())
    off[[40, 151]] = np.inf  # rows that are dropped: their offset is never looked at
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = interlace.fit(POIS_F, d, family="poisson", offset=off)
    dropped = [x for x in rec if "Dropped 2 of 152 rows" in str(x.message)]
    assert len(dropped) == 1 and dropped[0].filename == __file__
    assert_same_fit(res, pois_arg_fit)
    assert res.fittedvalues.index.equals(pois.index)
    np.testing.assert_allclose(res.model_fit.offset, pois["logh"], rtol=1e-15)


# --------------------------------------------------------------------------------------
# 7. The caller's frame is never modified; results carry its index
# --------------------------------------------------------------------------------------
def test_caller_frame_untouched(binary, cbpp, pois, binary_fit, cbpp_fit, pois_fit):
    d = binary.assign(
        ys=np.where(binary["y"] == 1, "yes", "no"),
        yc=pd.Categorical(np.where(binary["y"] == 1, "yes", "no"), categories=["yes", "no"]),
        yb=binary["y"].astype(bool),
    )
    d.loc[d.index[5], "x"] = np.nan  # a dropped row
    c = cbpp.set_axis(pd.Index([f"c{i}" for i in range(len(cbpp))]), axis=0)
    p = pois.copy()
    cases = [
        (d, dict(formula="ys ~ x + (1 | g)", family="binomial")),
        (d, dict(formula="yc ~ x + (1 | g)", family="binomial")),
        (d, dict(formula="yb ~ x + (1 | g)", family="binomial")),
        (c, dict(formula=CBIND, family="binomial")),
        (c, dict(formula=PROP, family="binomial", weights="size")),
        (p, dict(formula=POIS_OFF_F, family="poisson")),
        (p, dict(formula=POIS_F, family="poisson", offset="logh")),
    ]
    for frame, kwargs in cases:
        before = frame.copy(deep=True)
        dtypes = frame.dtypes.copy()
        res = quiet_fit(data=frame, **kwargs)
        off = frame["logh"].to_numpy() if "offset" in kwargs else None
        res.predict(frame, offset=off)
        res.predict(frame, include_re=False, type="link", offset=off)
        pd.testing.assert_frame_equal(frame, before, check_exact=True)
        pd.testing.assert_series_equal(frame.dtypes, dtypes)
        assert frame.index.equals(before.index)
        expected = frame.index.drop(frame.index[5]) if frame is d else frame.index
        assert res.fittedvalues.index.equals(expected)
        assert res.residuals("pearson").index.equals(expected)
        assert res.linear_predictor.index.equals(expected)


# --------------------------------------------------------------------------------------
# 9. float64 whatever jax_enable_x64 says
# --------------------------------------------------------------------------------------
def test_float64_scope(pois):
    assert not jax.config.jax_enable_x64, "the suite runs with float64 off (conftest)"
    res = quiet_fit(POIS_OFF_F, pois, family="poisson")
    for values in (res.fe_params, res.fittedvalues, res.linear_predictor, res.theta):
        assert values.dtype == np.float64
    assert res.model_fit.eta.dtype == np.float64
    assert res.fe_cov.to_numpy().dtype == np.float64
    # the result's methods compute in float64 too (JAX's inverse link, deviance
    # residuals, d mu / d eta and normal tail are float32 outside a float64 scope)
    assert res.predict(pois).dtype == np.float64
    assert res.predict().dtype == np.float64
    for kind in ("deviance", "pearson", "response", "working"):
        assert res.residuals(kind).dtype == np.float64, kind
    assert res.fe_pvalues.dtype == np.float64
    assert float(np.sum(res.resid**2)) == pytest.approx(res.deviance, rel=1e-10)
    assert not jax.config.jax_enable_x64
    assert jnp.ones(3).dtype == jnp.float32


def test_negative_binomial_density_is_exact_at_large_sizes():
    """log G(y + k) - log G(k) and k log(k / (k + mu)) cancel catastrophically for k >> y,
    mu (0.2 absolute at k = 1e14 per row before the fix: a fit_many gene reported -2 logLik
    -279,760 instead of 3,175). The density must tend smoothly to Poisson's: within
    1e-9 at k = 1e12 (the true gap is ~y^2 / k) and for the deviance residuals too."""
    import jax
    import jax.numpy as jnp
    from scipy.stats import poisson

    fam = interlace.negative_binomial()
    y = np.array([0.0, 1.0, 5.0, 30.0, 400.0])
    mu = np.array([0.5, 2.0, 4.0, 25.0, 390.0])
    with jax.enable_x64(True):
        for k in (1e5, 1e8, 1e12, 1e16):
            nb = np.asarray(fam.minus_two_log_density(jnp.asarray(y), jnp.asarray(mu), 1.0, k))
            # |NB - Poisson| of -2 log p is ((y - mu)^2 - y) / k to first order in 1 / k
            gap = 2.0 * ((y - mu) ** 2 + y + mu) / k
            assert np.all(np.abs(nb - (-2.0 * poisson.logpmf(y, mu))) <= 1e-9 + gap)
            dev = np.asarray(fam.deviance_residuals(jnp.asarray(y), jnp.asarray(mu), 1.0, k))
            pois = np.asarray(
                interlace.poisson().deviance_residuals(jnp.asarray(y), jnp.asarray(mu), 1.0)
            )
            assert np.all(np.isfinite(dev))
            assert np.all(np.abs(dev - pois) <= 1e-9 + gap)


@pytest.mark.usefixtures("float64_throughout")  # private evaluation, outside fit's scope
@pytest.mark.parametrize(("subjects", "items", "per"), [(12, 4, 16), (300, 150, 30)])
def test_evaluation_with_dense_rows_of_c_equals_update_entries(subjects, items, per):
    """A GLMM's levels of term 1 that meet more than an eighth of the tail columns enter
    the Schur update as dense rows of C (matrix products per evaluation) instead of
    scattered entries: the same Laplace deviance and gradient (1e-12 relative), here with
    a random slope in term 1 (the subjects, ``per`` rows each). 12 subjects meet every one
    of 4 items; 300 meet ~27 of 150 items each, a tail of 153 columns whose update is
    taken in two column blocks (``_core.deviance``)."""
    from interlace._core.family import family_of
    from interlace._core.pirls import cold_start
    from interlace._model.estimate import design_arrays
    from interlace._model.glmm_design import build_glmm_design
    from interlace._model.glmm_estimate import GlmmProblem

    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(subjects), per)
    h = (
        np.tile(np.arange(items), g.size // items)
        if items < per
        else rng.integers(0, items, g.size)
    )
    x = rng.normal(size=g.size)
    eta = 0.2 + 0.6 * x + rng.normal(size=subjects)[g] * (1 + 0.5 * x) + rng.normal(size=items)[h]
    frame = pd.DataFrame(
        {"y": (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int), "x": x, "g": g, "h": h}
    )
    fam = family_of("binomial")
    glmm = build_glmm_design("y ~ x + (1 + x | g) + (1 | h)", frame, None, fam)
    prob = GlmmProblem(glmm, fam, 1, shared=False)  # exact widths: design_arrays below
    assert prob.ma.template.heavy_levels.shape[0] == subjects  # every level as a dense row
    assert prob.ma.template.t == items + 3  # the items, x's two columns and y
    x0 = np.concatenate([[0.8, 0.2, 0.5, 0.6], [0.1, 0.4]])
    dense_value, dense_grad, _ = prob.fun(False)(x0)
    # the same (centred and scaled) fixed-effect columns, every level scattered
    design = dataclasses.replace(glmm.design, X=np.asarray(prob.ma.X))
    prob.ma = design_arrays(design, heavy_above=10**9)
    assert prob.ma.template.heavy_levels.shape[0] == 0
    eta0 = fam.linkfun(fam.start_mu(np.asarray(prob.data.y), np.asarray(prob.data.prior_weights)))
    prob.start = cold_start(eta0, prob.ma)
    value, grad, _ = prob.fun(False)(x0)
    assert dense_value == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(dense_grad, grad, rtol=1e-10, atol=1e-12 * np.max(np.abs(grad)))


def test_glmm_dense_rows_start_at_an_eighth_of_the_tail():
    """The layout rule (``GlmmProblem``): subjects that meet 20% of the items (6 of 30, a
    tail of 35 columns with x, y and two columns of padding) are dense rows of C, where scattered entries took
    2.5x as long per evaluation on bench_glmm-like designs; subjects that meet one item
    of 200 (about 170 of them observed) keep scattered entries."""
    from interlace._core.family import family_of
    from interlace._model.glmm_design import build_glmm_design
    from interlace._model.glmm_estimate import GlmmProblem

    fam = family_of("binomial")
    rng = np.random.default_rng(8)
    for subjects, items, per_subject, heavy in ((40, 30, 6, 40), (400, 200, 1, 0)):
        s = np.repeat(np.arange(subjects), per_subject)
        i = np.concatenate([rng.choice(items, per_subject, replace=False) for _ in range(subjects)])
        frame = pd.DataFrame(
            {"y": rng.integers(0, 2, s.size), "x": rng.normal(size=s.size), "s": s, "i": i}
        )
        glmm = build_glmm_design("y ~ x + (1 | s) + (1 | i)", frame, None, fam)
        prob = GlmmProblem(glmm, fam, 1)
        # items met, x's two columns and two of padding (shared_fixed_width), y
        assert prob.ma.template.t == np.unique(i).size + 5
        assert prob.ma.template.heavy_levels.shape[0] == heavy


@pytest.mark.usefixtures("float64_throughout")
@pytest.mark.parametrize("family", ["binomial", "poisson", "negative_binomial"])
def test_density_constant_is_the_data_part_of_the_log_density(family):
    """``Family.density_constant`` (the log-gammas of the data, computed once per
    response) plus the mu-dependent kernel is the full ``-2 log p`` summed: numpy and JAX
    input agree, and so does the in-graph constant (1e-12 relative); the full density is
    checked against scipy's (binomial with 3 trials and a weight-0 row, Poisson, negative
    binomial with k = 2.5)."""
    import jax.numpy as jnp
    from scipy import stats

    from interlace._core.family import family_of

    fam = family_of(family) if family != "negative_binomial" else interlace.negative_binomial(2.5)
    if family == "binomial":
        w = np.array([3.0, 3.0, 1.0, 3.0, 0.0])
        y = np.array([0.0, 1 / 3, 1.0, 1.0, 0.5])
        mu = np.array([0.2, 0.5, 0.7, 0.9, 0.4])
        scipy_ll = stats.binom.logpmf(np.round(w * y), w, mu)[w > 0].sum()
    else:
        w = np.ones(5)
        y = np.array([0.0, 1.0, 4.0, 9.0, 120.0])
        mu = np.array([0.5, 2.0, 4.0, 7.5, 100.0])
        scipy_ll = (
            stats.poisson.logpmf(y, mu).sum()
            if family == "poisson"
            else stats.nbinom.logpmf(y, 2.5, 2.5 / (2.5 + mu)).sum()
        )
    const_np = fam.density_constant(y, w)
    const_jax = fam.density_constant(jnp.asarray(y), jnp.asarray(w))
    assert isinstance(const_np, (np.floating, float))
    assert float(const_jax) == pytest.approx(float(const_np), rel=1e-12)
    args = (jnp.asarray(y), jnp.asarray(mu), jnp.asarray(w), 2.5)
    given = float(fam.minus_two_log_likelihood(*args, constant=const_np))
    in_graph = float(fam.minus_two_log_likelihood(*args))
    per_row = float(jnp.sum(fam.minus_two_log_density(*args)))
    assert given == pytest.approx(in_graph, rel=1e-12)
    assert given == pytest.approx(per_row, rel=1e-12)
    assert given == pytest.approx(-2.0 * scipy_ll, rel=1e-10)


@pytest.mark.usefixtures("float64_throughout")
@pytest.mark.parametrize(
    "family", ["binomial", "binomial:probit", "binomial:cloglog", "poisson"], ids=str
)
def test_links_and_back_transform_take_numpy_as_numpy(family):
    """A new GLMM's set-up and results run in numpy (no per-operation compiles): the
    link, its inverse and ``back_transform_cov`` return numpy arrays for numpy input,
    equal to their JAX results: 1e-12 relative for the links (libm and XLA differ by ulps,
    which cloglog's ``log(-log1p(-mu))`` amplifies), 1e-14 for the covariance."""
    from interlace._core.family import family_of
    from interlace._core.standardize import Standardization, back_transform_cov

    name, _, link = family.partition(":")
    fam = family_of(name, link or None)
    rng = np.random.default_rng(5)
    mu = rng.uniform(0.02, 0.98, size=50) * (1.0 if name == "binomial" else 7.0)
    eta = rng.normal(scale=3.0, size=50)
    for fn, arg in ((fam.linkfun, mu), (fam.linkinv, eta)):
        out = fn(arg)
        assert isinstance(out, np.ndarray)
        np.testing.assert_allclose(out, np.asarray(fn(jnp.asarray(arg))), rtol=1e-12)
    cov = np.cov(rng.normal(size=(3, 20)))
    std = Standardization(np.array([0.0, 2.5, -1.0]), np.array([1.0, 3.0, 0.5]), 0.0, 1.0)
    for ic in (0, -1):
        out = back_transform_cov(cov, std, ic)
        assert isinstance(out, np.ndarray)
        std_j = Standardization(*(jnp.asarray(v) for v in std[:2]), 0.0, 1.0)
        ref = np.asarray(back_transform_cov(jnp.asarray(cov), std_j, ic))
        np.testing.assert_allclose(out, ref, rtol=1e-14, atol=1e-15 * np.abs(ref).max())


def test_a_new_glmm_builds_one_executable(cbpp, cbpp_fit, monkeypatch):
    """A GLMM of new shapes compiles its evaluation and nothing else: set-up, the
    Hessian's differences and the results stay in numpy or reuse compiled code (each
    small ``jnp.asarray`` of a new shape used to compile a copy, ~10 ms and its tracing:
    seven per new model). Counts backend compiles (jax.monitoring), not seconds. The
    one model of the file with shapes of its own: cbpp without its last three rows, at
    its exact shapes (size classes off: with them it shares cbpp's evaluation,
    ``tests/test_glmm_size_classes.py``)."""
    from interlace._core import glmm_buckets

    monkeypatch.setattr(glmm_buckets, "ENABLED", False)
    compiles = []

    def listen(event: str, duration: float, **kwargs) -> None:
        if event.endswith("backend_compile_duration"):
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        fit = quiet_fit(CBIND, cbpp.iloc[:-3], family="binomial")
        _ = (fit.summary(), fit.predict(cbpp), fit.residuals("pearson"), fit.random_effects)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert fit.converged and fit.nobs == cbpp_fit.nobs - 3
    assert len(compiles) == 1
