"""Which rows a GLMM uses, and how it names them: rows with a missing ``cbind`` count,
weight or offset are dropped (glmer's ``na.action``) with the dropped-rows warning, which
names the user's response; a factor or string response is coded over the rows the model
uses; argument messages (``nAGQ``, ``method``, all-zero weights, ``I()`` responses).

Speed: one simulated design (300 rows, 30 groups); the fits share two binomial shapes
(299 and 300 rows), one Poisson shape and one nAGQ = 5 shape. Message checks that need
no fit call :func:`build_glmm_design` or fail before fitting.

glmer references: tests/data/glmm_input_rows_references.json, made by
tests/data/make_glmm_input_rows_references.R (tight bobyqa fits) on
tests/data/glmm_input_rows.csv, which is this module's ``make()`` written with
``float_format="%.17g"``. Each dropped one row (nobs 299). Tolerance: 1e-5 absolute
(interlace and glmer agree to ~1e-7 here).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import DataError, ModelSpecError
from interlace._model.glmm_design import build_glmm_design

BIN = "y ~ x + (1 | g)"
POIS_OFF = "c ~ x + offset(log(h)) + (1 | g)"
ATOL = 1e-5
DATA = Path(__file__).parent / "data"
_GLMER = json.loads((DATA / "glmm_input_rows_references.json").read_text())["fits"]


def _glmer(case: str) -> tuple[list[float], list[float]]:
    """glmer's (fixef, theta) of a case of make_glmm_input_rows_references.R."""
    return _GLMER[case]["fixef"], _GLMER[case]["theta"]


CBIND_NA = _glmer("cbind_na")
UNUSED_LEVEL = _glmer("unused_level")
WEIGHT_NA = _glmer("weight_na")
OFFSET_NA = _glmer("offset_na")
NAGQ5 = _glmer("nagq5")
FULL = _glmer("full")


def make(seed: int = 0, n_g: int = 30, per: int = 10) -> pd.DataFrame:
    """x, g (30 levels), y (0/1), s and f (successes and failures of 3 trials), h
    (exposure) and c (Poisson counts over h)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_g), per)
    x = rng.normal(size=n_g * per)
    b = rng.normal(0, 0.8, n_g)[g]
    p = 1 / (1 + np.exp(-(0.2 + 0.7 * x + b)))
    s = rng.binomial(3, p)
    h = rng.uniform(0.5, 3.0, n_g * per)
    return pd.DataFrame(
        {
            "x": x,
            "g": [f"g{i:02d}" for i in g],
            "y": rng.binomial(1, p).astype(float),
            "s": s.astype(float),
            "f": 3.0 - s,
            "h": h,
            "c": rng.poisson(h * np.exp(0.3 + 0.5 * x + 0.6 * b)).astype(float),
        }
    )


def with_nan(data: pd.DataFrame, column: str, row: int) -> pd.DataFrame:
    out = data.copy()
    out.loc[row, column] = np.nan
    return out


def fit_warned(*args, **kwargs):
    """interlace.fit and the messages of its UserWarnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = interlace.fit(*args, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def dropped_warning(messages: list[str], names: list[str]) -> None:
    hits = [m for m in messages if m.startswith("Dropped 1 of 300 rows")]
    assert len(hits) == 1, messages
    assert f"in {names!r}" in hits[0]
    assert "_interlace_" not in hits[0]


def assert_glmer(result, reference) -> None:
    fixef, theta = reference
    assert result.nobs == 299
    np.testing.assert_allclose(result.fe_params.to_numpy(), fixef, atol=ATOL)
    np.testing.assert_allclose(np.abs(result.theta.to_numpy()), theta, atol=ATOL)


def polars_strings(data: pd.DataFrame):
    """``data`` as a polars frame with a string response ``ys``, null in row 0."""
    pl = pytest.importorskip("polars")
    ys = pd.Series(np.where(data["y"] == 1, "yes", "no")).where(data.index != 0, None)
    return pl.from_pandas(data.assign(ys=ys))


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    """make()'s frame, checked equal to the CSV glmer read (the references' data)."""
    frame = make()
    on_disk = pd.read_csv(DATA / "glmm_input_rows.csv").astype(dict.fromkeys("ysfc", float))
    pd.testing.assert_frame_equal(on_disk, frame)
    return frame


def test_cbind_missing_count_drops_the_row(data):
    """A NaN success count drops its row (not a complaint about weights= never given)."""
    a = with_nan(data, "s", 5)
    snapshot = a.copy()
    result, messages = fit_warned("cbind(s, f) ~ x + (1 | g)", a, family="binomial")
    assert_glmer(result, CBIND_NA)
    dropped_warning(messages, ["cbind(s, f)"])
    pd.testing.assert_frame_equal(a, snapshot)
    with pytest.warns(UserWarning, match=r"Dropped 1 of 300 rows.*\['cbind\(s, f\)'\]"):
        glmm = build_glmm_design(
            "cbind(s, f) ~ x + (1 | g)", with_nan(data, "f", 7), None, interlace.binomial()
        )
    assert 7 not in glmm.design.row_index and np.all(np.isfinite(glmm.prior_weights))


@pytest.mark.parametrize("kind", ["categorical", "string"])
def test_response_coded_over_the_rows_used(data, kind):
    """The first level occurs only in a row dropped for NaN x: the coding starts at the
    first level among the rows used (glmer drops unused levels), not at 'aa'."""
    a = with_nan(data, "x", 0)
    yc = np.where(a["y"] == 1, "yes", "no").astype(object)
    yc[0] = "aa"
    a["yc"] = pd.Categorical(yc, categories=["aa", "no", "yes"]) if kind == "categorical" else yc
    result, messages = fit_warned("yc ~ x + (1 | g)", a, family="binomial")
    assert_glmer(result, UNUSED_LEVEL)
    dropped_warning(messages, ["x"])


@pytest.mark.parametrize("kind", ["categorical", "string"])
def test_a_response_of_more_than_two_levels_warns_that_they_are_pooled(data, kind):
    """Three levels among the rows used: the first is failure and the others success (as
    glm and glmer code them), with a warning naming them; two levels used of a
    categorical's three declared are coded silently."""
    yc = np.where(data["y"] == 1, "yes", "no").astype(object)
    yc[:5] = "maybe"
    a = data.assign(yc=pd.Categorical(yc) if kind == "categorical" else yc)
    with pytest.warns(
        UserWarning, match=r"'yc' has 3 levels: 'maybe' is coded as failure.*'no', 'yes'"
    ):
        glmm = build_glmm_design("yc ~ x + (1 | g)", a, None, interlace.binomial())
    np.testing.assert_array_equal(glmm.design.y, (yc != "maybe").astype(float))
    two = data.assign(
        yc=pd.Categorical(np.where(data["y"] == 1, "yes", "no"), ["maybe", "no", "yes"])
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        glmm = build_glmm_design("yc ~ x + (1 | g)", two, None, interlace.binomial())
    np.testing.assert_array_equal(glmm.design.y, data["y"].to_numpy(float))


@pytest.mark.parametrize("as_column", [True, False], ids=["column", "array"])
def test_missing_weight_drops_the_row(data, as_column):
    w = np.where(data.index == 3, np.nan, 1.0)
    a = data.assign(wt=w)
    result, messages = fit_warned(BIN, a, family="binomial", weights="wt" if as_column else w)
    assert_glmer(result, WEIGHT_NA)
    dropped_warning(messages, ["wt" if as_column else "weights"])


@pytest.mark.parametrize("how", ["term", "argument"])
def test_missing_offset_drops_the_row(data, how):
    """NaN in a column of offset(log(h)), or in offset=, drops the row (glmer's na.omit)."""
    a = with_nan(data, "h", 3).assign(lh=lambda d: np.log(d["h"]))
    if how == "term":
        result, messages = fit_warned(POIS_OFF, a, family="poisson")
        names = ["offset(log(h))"]
    else:
        result, messages = fit_warned("c ~ x + (1 | g)", a, family="poisson", offset="lh")
        names = ["lh"]
    assert_glmer(result, OFFSET_NA)
    dropped_warning(messages, names)


def test_infinite_weight_or_offset_is_refused(data):
    """inf is not missing: refused, and only -inf is called a log of 0."""
    zero_h = data.assign(h=np.where(data.index == 2, 0.0, data["h"]))
    with np.errstate(divide="ignore"), pytest.raises(DataError, match=r"infinite.*log of 0"):
        interlace.fit(POIS_OFF, zero_h, family="poisson")
    inf = np.where(data.index == 2, np.inf, 0.0)
    with pytest.raises(DataError, match=r"offset is infinite in 1 rows") as info:
        interlace.fit("c ~ x + (1 | g)", data, family="poisson", offset=inf)
    assert "log of 0" not in str(info.value)
    with pytest.raises(DataError, match=r"weights have 1 infinite values"):
        interlace.fit(BIN, data, family="binomial", weights=np.where(data.index == 2, np.inf, 1))
    with pytest.raises(DataError, match=r"counts of cbind\(s, f\) must be finite"):
        interlace.fit("cbind(s, f) ~ x + (1 | g)", data.assign(s=inf), family="binomial")


def test_cbind_negative_counts_name_the_count(data):
    """A negative success or failure count (``cbind(s, s + f)`` written as if its
    second argument were the trials, or a miscoded column) names that argument and its
    rows, not the weights= the user never gave; a missing count is still a dropped row."""
    trials_as_failures = data.assign(f=data["s"] - (data["s"] + data["f"]))
    with pytest.raises(
        DataError,
        match=r"failures of cbind\(s, f\), f, are negative in \d+ row.*not cbind\(successes, trials\)",
    ):
        build_glmm_design(
            "cbind(s, f) ~ x + (1 | g)", trials_as_failures, None, interlace.binomial()
        )
    one = data.assign(s=np.where(data.index == 4, -1.0, data["s"]))
    with pytest.raises(
        DataError,
        match=r"successes of cbind\(s, f\), s, are negative in 1 row\(s\) \(e.g. -1\): "
        r"both counts must be >= 0\.$",
    ):
        build_glmm_design("cbind(s, f) ~ x + (1 | g)", one, None, interlace.binomial())


@pytest.mark.parametrize(
    "formula, frame, weights, name",
    [
        pytest.param(
            "ys ~ x + (1 | g)",
            lambda d: d.assign(ys=np.where(d["y"] == 1, "yes", "no").astype(object)).assign(
                ys=lambda e: e["ys"].where(e.index != 0, None)
            ),
            None,
            "ys",
            id="string-None",
        ),
        pytest.param("ys ~ x + (1 | g)", polars_strings, None, "ys", id="polars-null"),
        pytest.param(
            "yb ~ x + (1 | g)",
            lambda d: d.assign(yb=pd.array(d["y"] == 1, dtype="boolean")).assign(
                yb=lambda e: e["yb"].where(e.index != 0, pd.NA)
            ),
            None,
            "yb",
            id="nullable-boolean-NA",
        ),
        pytest.param(
            "s / t ~ x + (1 | g)",
            lambda d: d.assign(t=np.where(d.index == 0, 0.0, 3.0), s=d["s"].where(d.index != 0, 0)),
            "t",
            "s / t",
            id="expression-0/0",
        ),
        pytest.param(
            "I(y > 0) ~ x + (1 | g)",
            lambda d: with_nan(d, "y", 0),
            None,
            "I(y > 0)",
            id="I-comparison-NaN",
        ),
    ],
)
def test_dropped_rows_warning_names_the_response(data, formula, frame, weights, name):
    """The warning names the user's response, never the internal stand-in column; a
    missing value read by I(y > 0) is missing (numpy's nan > 0 would be False)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        glmm = build_glmm_design(formula, frame(data), None, interlace.binomial(), weights=weights)
    dropped_warning([str(w.message) for w in caught], [name])
    assert glmm.design.nobs == 299 and 0 not in glmm.design.row_index
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("nagq", [np.int64(5), 5.0], ids=["numpy-int", "integral-float"])
def test_nagq_integral_values(data, nagq):
    result = interlace.fit(BIN, data, family="binomial", nAGQ=nagq)
    assert result.nAGQ == 5 and type(result.nAGQ) is int
    np.testing.assert_allclose(result.fe_params.to_numpy(), NAGQ5[0], atol=ATOL)
    np.testing.assert_allclose(np.abs(result.theta.to_numpy()), NAGQ5[1], atol=ATOL)


@pytest.mark.parametrize("nagq", [5.5, True, np.bool_(True), -1, -1.0, 101.0, float("nan")])
def test_nagq_refused(data, nagq):
    with pytest.raises(ModelSpecError, match=r"nAGQ=.*: use 1 \(Laplace"):
        interlace.fit(BIN, data, family="binomial", nAGQ=nagq)


def test_argument_messages(data):
    with pytest.raises(ModelSpecError, match=r"method='bogus' is unknown.*Gaussian") as info:
        interlace.fit(BIN, data, family="binomial", method="bogus")
    assert "REML is not defined" not in str(info.value)
    with pytest.raises(ModelSpecError, match=r"method='REML': REML is not defined"):
        interlace.fit(BIN, data, family="binomial", method="REML")
    with pytest.raises(DataError, match=r"Every weight in weights= is 0") as info:
        interlace.fit(BIN, data, family="binomial", weights=np.zeros(len(data)))
    assert "Every response" not in str(info.value)
    with pytest.raises(DataError, match=r"Every trial count .* of cbind\(s, f\) is 0"):
        interlace.fit("cbind(s, f) ~ x + (1 | g)", data.assign(s=0.0, f=0.0), family="binomial")


def test_I_response(data):
    """I(y > 0) on the left, as the LMM path and glmer take it (here y > 0 is y)."""
    result = interlace.fit("I(y > 0) ~ x + (1 | g)", data, family="binomial")
    assert result.nobs == 300
    np.testing.assert_allclose(result.fe_params.to_numpy(), FULL[0], atol=ATOL)
    np.testing.assert_allclose(np.abs(result.theta.to_numpy()), FULL[1], atol=ATOL)
