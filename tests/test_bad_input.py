"""Bad input: every rejection names its problem, every repair says what it did.

One table of inputs ``fit`` must reject (exception class + a regex the message must
match: the column, the factor, the count...), then the inputs ``fit`` repairs with a
warning (incomplete rows, aliased fixed effects), then the promise that the caller's
DataFrame is never modified, then ``predict`` and ``bootstrap_se``.

Speed: JAX compiles once per distinct data shape. Every fit in this file that runs to
the end is built to have the shape of the results-page fit (300 rows, 3 fixed-effect
columns, 30 x 10 levels), so the whole file compiles once (the session's ``page_fit``).
Rows to drop are *appended* to the page data, so after the drop the fit sees exactly
the page data and must give exactly the page result.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import (
    DataError,
    FormulaError,
    InterlaceError,
    MissingColumnError,
    ModelSpecError,
)

from .conftest import PAGE_FORMULA, PAGE_GROUPS, fit_quiet

F = PAGE_FORMULA  # "score ~ hours_studied + prior_gpa"
G = PAGE_GROUPS  # ["student_id", "school_id"]


def _with(df: pd.DataFrame, **cols) -> pd.DataFrame:
    """A copy of ``df`` with columns replaced or added (values may be callables of df)."""
    out = df.copy()
    for name, value in cols.items():
        out[name] = value(out) if callable(value) else value
    return out


def _dates(df: pd.DataFrame) -> pd.Series:
    """A datetime column: one day per row."""
    return pd.Series(
        pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(df)), "D"), index=df.index
    )


def _set(df: pd.DataFrame, col: str, rows, value) -> pd.DataFrame:
    out = df.copy()
    out.loc[out.index[list(rows)], col] = value
    return out


# --------------------------------------------------------------------------------------
# 1. Inputs fit() must reject. Each row: make(df) -> kwargs of fit, class, message regex.
# --------------------------------------------------------------------------------------
REJECT = [
    # --- columns that are not there ---------------------------------------------------
    pytest.param(
        lambda df: dict(formula="y ~ hours_studied", data=df, groups=G),
        MissingColumnError,
        r"\['y'\].*not in the data",
        id="missing-response",
    ),
    pytest.param(
        lambda df: dict(formula="score ~ hours_studied + nope", data=df, groups=G),
        MissingColumnError,
        r"\['nope'\].*not in the data",
        id="missing-predictor",
    ),
    pytest.param(
        lambda df: dict(formula="score ~ np.log(nope)", data=df, groups=G),
        MissingColumnError,
        r"\['nope'\]",
        id="missing-predictor-in-transform",
    ),
    pytest.param(
        lambda df: dict(formula="score ~ C(nope)", data=df, groups=G),
        MissingColumnError,
        r"\['nope'\]",
        id="missing-categorical-predictor",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=df, groups=["student_id", "class_id"]),
        MissingColumnError,
        r"\['class_id'\].*not in the data",
        id="missing-group",
    ),
    pytest.param(
        lambda df: dict(formula=F + " + (1 | class_id)", data=df, groups=None),
        MissingColumnError,
        r"\['class_id'\]",
        id="missing-group-in-formula",
    ),
    pytest.param(
        lambda df: dict(formula=F + " + (1 | school_id:class_id)", data=df, groups=["student_id"]),
        MissingColumnError,
        r"\['class_id'\]",
        id="missing-column-of-interaction-group",
    ),
    # --- incomplete rows: all of them -------------------------------------------------
    pytest.param(
        lambda df: dict(formula=F, data=_with(df, score=np.nan), groups=G),
        DataError,
        r"Every row has a missing value",
        id="all-rows-incomplete",
    ),
    pytest.param(
        lambda df: dict(
            formula=F,
            groups=G,
            data=_set(
                _set(df, "score", range(0, 300, 2), np.nan), "school_id", range(1, 300, 2), None
            ),
        ),
        DataError,
        r"Every row has a missing value",
        id="all-rows-incomplete-across-columns",
    ),
    # --- the response -----------------------------------------------------------------
    pytest.param(
        lambda df: dict(
            formula=F, data=_with(df, score=lambda d: d["score"].astype(str)), groups=G
        ),
        DataError,
        r"response 'score' must be numeric.*dtype is (str|object)",
        id="string-response",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=_with(df, score=lambda d: d["score"] > 60), groups=G),
        DataError,
        r"response 'score' must be numeric.*dtype is bool",
        id="bool-response",
    ),
    pytest.param(
        lambda df: dict(
            formula=F, groups=G, data=_with(df, score=lambda d: pd.Categorical(d["score"].round()))
        ),
        DataError,
        r"response 'score' must be numeric.*category",
        id="categorical-response",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=_with(df, score=lambda d: d["score"] + 1j), groups=G),
        DataError,
        r"'score'.*(numeric|real|complex)",
        id="complex-response",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=_set(df, "score", [7], np.inf), groups=G),
        DataError,
        r"response 'score' contains infinite values",
        id="inf-response",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=_set(df, "score", [7, 8], -np.inf), groups=G),
        DataError,
        r"response 'score' contains infinite values",
        id="neg-inf-response",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=_set(df, "prior_gpa", [3], np.inf), groups=G),
        DataError,
        r"fixed-effect design contains infinite values",
        id="inf-predictor",
    ),
    # --- grouping factors that cannot carry a variance --------------------------------
    pytest.param(
        lambda df: dict(formula=F, data=_with(df, cohort="2024"), groups=["student_id", "cohort"]),
        DataError,
        r"Grouping factor 'cohort' has 1 level\(s\).*at least 2",
        id="group-with-one-level",
    ),
    pytest.param(
        lambda df: dict(
            formula=F,
            data=_with(df, row_id=lambda d: np.arange(len(d))),
            groups=["student_id", "row_id"],
        ),
        DataError,
        r"Grouping factor 'row_id' has 300 levels for 300 rows",
        id="group-with-a-level-per-row",
    ),
    pytest.param(
        lambda df: dict(formula=F + " + (1 | student_id)", data=df, groups=["student_id"]),
        ModelSpecError,
        r"\['\(1 \| student_id\)'\] are given more than once",
        id="group-given-twice",
    ),
    # --- empty / too small data -------------------------------------------------------
    pytest.param(
        lambda df: dict(formula=F, data=df.iloc[0:0], groups=G),
        DataError,
        r"data is empty",
        id="empty-dataframe-with-columns",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=pd.DataFrame(), groups=G),
        DataError,
        r"data is empty",
        id="empty-dataframe-no-columns",
    ),
    pytest.param(
        lambda df: dict(
            formula=F, groups=["school_id"], data=df.iloc[:3].assign(school_id=["a", "b", "a"])
        ),
        DataError,
        r"3 rows are too few for 3 fixed-effect columns",
        id="fewer-rows-than-columns",
    ),
    # --- the arguments ----------------------------------------------------------------
    pytest.param(
        lambda df: dict(formula=F, data=df, groups=G, method="MLE"),
        ModelSpecError,
        r"method must be 'REML' or 'ML', got 'MLE'",
        id="method-MLE",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=df, groups=G, method="reml"),
        ModelSpecError,
        r"method must be 'REML' or 'ML', got 'reml'",
        id="method-lowercase",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=df, groups=3),
        ModelSpecError,
        r"groups= must be a column name or a list",
        id="groups-int",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=df, groups=[1, 2]),
        ModelSpecError,
        r"groups= must be a column name or a list",
        id="groups-list-of-int",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=df, groups={"student_id": 1}),
        ModelSpecError,
        r"groups= must be a column name or a list",
        id="groups-dict",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=df, groups=None),
        ModelSpecError,
        r"no random effects",
        id="no-random-effects",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=df, groups=[]),
        ModelSpecError,
        r"no random effects",
        id="no-random-effects-empty-list",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=df.to_numpy(), groups=G),
        DataError,
        r"data must be a pandas DataFrame, a polars DataFrame, a pyarrow "
        r"Table .*; got numpy.ndarray\. Name its columns",
        id="data-ndarray",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=None, groups=G),
        DataError,
        r"data must be a pandas DataFrame.*; got NoneType",
        id="data-None",
    ),
    pytest.param(
        lambda df: dict(formula=F, data=df.to_dict("records"), groups=G),
        DataError,
        r"data must be a pandas DataFrame.*; got list",
        id="data-records",
    ),
    # --- the formula ------------------------------------------------------------------
    pytest.param(
        lambda df: dict(formula="score hours_studied", data=df, groups=G),
        FormulaError,
        r"exactly one '~'",
        id="formula-without-tilde",
    ),
    pytest.param(
        lambda df: dict(formula=None, data=df, groups=G),
        FormulaError,
        r"formula must be a string.*NoneType",
        id="formula-not-a-string",
    ),
    pytest.param(
        lambda df: dict(formula="score ~ hours_studied:", data=df, groups=G),
        FormulaError,
        r"Cannot parse the fixed part 'score ~ hours_studied:'",
        id="formula-unparseable-fixed-part",
    ),
    pytest.param(
        lambda df: dict(formula=F + " +", data=df, groups=G),  # page shape if fitted
        FormulaError,
        r"'score ~ hours_studied \+ prior_gpa \+'.*'\+'",
        id="formula-trailing-plus",
    ),
    pytest.param(
        lambda df: dict(formula="score ~ 0", data=df, groups=G),
        FormulaError,
        r"fixed part 'score ~ 0' has no columns",
        id="no-fixed-columns",
    ),
    # --- date and time predictors: a clear error that says how to convert them ----------
    pytest.param(
        lambda df: dict(formula=F + " + t", data=_with(df, t=_dates), groups=G),
        DataError,
        r"Column 't' of data has dtype datetime64\[\w+\]: a datetime column "
        r"cannot be used as a predictor\. Convert it to days since the first date: "
        r"data\['t'\] = \(data\['t'\] - data\['t'\]\.min\(\)\)\.dt\.days",
        id="datetime-predictor",
    ),
    pytest.param(
        lambda df: dict(
            formula=F + " + t",
            groups=G,
            data=_with(df, t=lambda d: _dates(d).dt.tz_localize("UTC")),
        ),
        DataError,
        r"Column 't' of data has dtype datetime64\[\w+, UTC\].*\.dt\.days",
        id="tz-aware-datetime-predictor",
    ),
    pytest.param(
        lambda df: dict(
            formula=F + " + dt", groups=G, data=_with(df, dt=lambda d: _dates(d) - _dates(d).min())
        ),
        DataError,
        r"Column 'dt' of data has dtype timedelta64\[\w+\]: a timedelta column "
        r"cannot be used as a predictor\. Convert it to a number of days: "
        r"data\['dt'\] = data\['dt'\]\.dt\.days",
        id="timedelta-predictor",
    ),
    pytest.param(
        lambda df: dict(
            formula="score ~ hours_studied + np.log(t)", groups=G, data=_with(df, t=_dates)
        ),
        DataError,
        r"Column 't' of data has dtype datetime64",
        id="datetime-in-a-transform",
    ),
    pytest.param(
        lambda df: dict(
            formula=F + " + (0 + t | school_id)", groups=["student_id"], data=_with(df, t=_dates)
        ),
        DataError,
        r"Column 't' of data has dtype datetime64",
        id="datetime-random-slope",
    ),
    pytest.param(
        lambda df: dict(
            formula=F + " + p",
            groups=G,
            data=_with(
                df,
                p=lambda d: pd.Series(
                    pd.period_range("2024-01", periods=len(d), freq="M"), index=d.index
                ),
            ),
        ),
        DataError,
        r"Column 'p' of data has dtype period\[M\]: a period column",
        id="period-predictor",
    ),
    # --- a response with nothing to fit -----------------------------------------------
    pytest.param(
        lambda df: dict(formula=F, data=_with(df, score=72.5), groups=G),
        DataError,
        r"The response 'score' is constant \(every value is 72\.5\): there "
        r"is no variance",
        id="constant-response",
    ),
    pytest.param(
        lambda df: dict(
            formula=F,
            groups=G,
            data=_with(df, score=lambda d: 3.0 + 2.0 * d.hours_studied - 0.5 * d.prior_gpa),
        ),
        DataError,
        r"The fixed effects reproduce the response 'score' exactly",
        id="response-fitted-exactly-by-fixed-effects",
    ),
]


RESOLUTION = [
    pytest.param(
        "score",
        r"The response 'score' varies by only [\d.e-]+ around 1e\+12 \(a "
        r"relative spread of .*\): float64 keeps about 16 significant digits",
        id="response-beyond-float64-resolution",
    ),
    pytest.param(
        "hours_studied",
        r"The predictor column 'hours_studied' varies by only",
        id="predictor-beyond-float64-resolution",
    ),
]


@pytest.mark.parametrize("column, pattern", RESOLUTION)
def test_data_float64_cannot_resolve_gets_a_warning_naming_the_column(page_df, column, pattern):
    """A column whose spread is below 1e-11 of its magnitude (here 1e12 + values ~1e-1)
    keeps only a few digits of its variation: the fit warns and names the column."""
    df = _with(page_df, **{column: lambda d: 1e12 + 1e-2 * d[column] / d[column].std()})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        interlace.fit(F, df, groups=G)
    messages = [str(w.message) for w in caught]
    assert any(re.search(pattern, m) for m in messages), messages


@pytest.mark.parametrize("make, exc, pattern", REJECT)
def test_fit_rejects_bad_input(page_df, make, exc, pattern):
    assert issubclass(exc, InterlaceError)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a drop warning before the error is fine here
        with pytest.raises(exc, match=pattern) as info:
            interlace.fit(**make(page_df))
    # The builtin parent works too, for existing `except ValueError` / `except KeyError`.
    assert isinstance(info.value, KeyError if exc is MissingColumnError else ValueError)


def test_missing_column_message_is_not_quoted(page_df):
    """KeyError's str() would wrap the message in quotes; MissingColumnError's does not."""
    with pytest.raises(MissingColumnError) as info:
        interlace.fit("y ~ hours_studied", page_df, G)
    assert str(info.value).startswith("Column(s) ['y']")
    assert "Available columns: ['score', 'hours_studied'" in str(info.value)


# --------------------------------------------------------------------------------------
# 2. Inputs fit() repairs with a warning: incomplete rows are dropped.
# --------------------------------------------------------------------------------------
def _append_incomplete(df: pd.DataFrame, k: int, **nan_cols) -> pd.DataFrame:
    """``df`` plus ``k`` copies of its first rows (new index labels) with ``nan_cols`` set
    to missing; dropping them gives back exactly ``df``."""
    extra = df.iloc[:k].copy()
    extra.index = pd.RangeIndex(len(df), len(df) + k)
    for col, value in nan_cols.items():
        extra.loc[:, col] = value  # keeps the column's dtype (Float64 stays Float64)
    out = pd.concat([df, extra])
    assert out.dtypes.equals(df.dtypes)
    return out


INCOMPLETE = [
    pytest.param(
        lambda df: _append_incomplete(df, 2, score=np.nan), 2, ["score"], id="nan-in-response"
    ),
    pytest.param(
        lambda df: _append_incomplete(df, 3, hours_studied=np.nan),
        3,
        ["hours_studied"],
        id="nan-in-predictor",
    ),
    pytest.param(
        lambda df: _append_incomplete(df, 1, school_id=None), 1, ["school_id"], id="none-in-group"
    ),
    pytest.param(
        lambda df: _append_incomplete(df, 4, student_id=np.nan),
        4,
        ["student_id"],
        id="nan-in-group",
    ),
    pytest.param(
        lambda df: _append_incomplete(df, 2, score=np.nan, prior_gpa=np.nan),
        2,
        ["score", "prior_gpa"],
        id="two-nans-in-one-row-count-once",
    ),
    pytest.param(
        lambda df: _append_incomplete(
            _with(df, score=lambda d: d["score"].astype("Float64")), 2, score=pd.NA
        ),
        2,
        ["score"],
        id="pd.NA-in-nullable-response",
    ),
]


@pytest.mark.parametrize("make, k, cols", INCOMPLETE)
def test_incomplete_rows_are_dropped_with_a_counted_warning(page_df, page_result, make, k, cols):
    data = make(page_df)
    n = len(data)
    assert n == len(page_df) + k
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = interlace.fit(F, data, G)
    drops = [w for w in caught if "Dropped" in str(w.message)]
    assert len(drops) == 1, [str(w.message) for w in caught]
    w = drops[0]
    assert issubclass(w.category, UserWarning)
    assert re.search(rf"Dropped {k} of {n} rows", str(w.message)), str(w.message)
    assert re.search(re.escape(str(cols)), str(w.message)), str(w.message)
    assert w.filename == __file__, "the warning should point at the caller's line"
    # The fit uses n - k rows: exactly the page data, so exactly the page result.
    assert result.nobs == n - k == len(page_df)
    assert result.fittedvalues.index.equals(page_df.index)
    np.testing.assert_allclose(result.fe_params, page_result.fe_params, rtol=1e-9)
    np.testing.assert_allclose(result.theta, page_result.theta, rtol=1e-7, atol=1e-10)
    assert result.llf == pytest.approx(page_result.llf, rel=1e-10)


def test_missing_values_in_unused_columns_do_not_drop_rows(page_df):
    data = _with(page_df, notes=np.nan, extra=lambda d: np.where(d.index % 2 == 0, np.nan, 1.0))
    result, messages = fit_quiet(F, data, G)
    assert result.nobs == len(page_df)
    assert not [m for m in messages if "Dropped" in m]


# --------------------------------------------------------------------------------------
# 2b. Column types fit() takes as R would: nullable dtypes (Int64, Float64, boolean,
#     string) as their numpy equivalents, dates as grouping labels, and unused categories
#     dropped (R drops unused factor levels) instead of reported as aliased columns. Each
#     row: formula, make(df) -> the reference data, make(df) -> the same data in the
#     column type under test, and the warnings the variant may give (regexes). The fit of
#     the variant must equal the fit of the reference.
# --------------------------------------------------------------------------------------
def _band(df: pd.DataFrame) -> pd.DataFrame:
    return _with(df, band=lambda d: np.where(d["prior_gpa"] > 3.0, "high", "low"))


def _int_students(df: pd.DataFrame) -> pd.DataFrame:
    return _with(df, student_id=lambda d: d["student_id"].str[1:].astype(np.int64))


FB = "score ~ hours_studied + C(band)"  # the page shape: 3 fixed-effect columns
FP = "score ~ hours_studied + passed"

COLUMN_TYPES = [
    pytest.param(
        F, lambda df: df, lambda df: df.convert_dtypes(), [], id="convert_dtypes-Float64-and-string"
    ),
    pytest.param(
        F,
        _int_students,
        lambda df: _int_students(df).astype({"student_id": "Int64"}),
        [],
        id="nullable-Int64-group",
    ),
    pytest.param(
        FB,
        _band,
        lambda df: _band(df).astype({"band": "string"}),
        [],
        id="nullable-string-categorical-predictor",
    ),
    pytest.param(
        "score ~ hours_studied + band",
        _band,
        lambda df: _band(df).convert_dtypes(),
        [],
        id="string-predictor-without-C",
    ),
    pytest.param(
        FP,
        lambda df: _with(df, passed=lambda d: d["prior_gpa"] > 3.0),
        lambda df: _with(df, passed=lambda d: (d["prior_gpa"] > 3.0).astype("boolean")),
        [],
        id="nullable-boolean-predictor",
    ),
    pytest.param(
        F,
        lambda df: df,
        lambda df: _with(
            df,
            hours_studied=lambda d: d["hours_studied"].astype("Float64"),
            prior_gpa=lambda d: d["prior_gpa"].astype("Float32"),
        ),
        [],
        id="nullable-float-predictors",
    ),
    pytest.param(
        FB,
        _band,
        lambda df: _with(
            _band(df),
            band=lambda d: pd.Categorical(d["band"], categories=["high", "low", "medium"]),
        ),
        [],
        id="unused-category-predictor",
    ),
    pytest.param(
        FB,
        _band,
        lambda df: _with(
            _band(df),
            band=lambda d: pd.Categorical(d["band"], categories=["high", "medium", "low"]),
        ).astype({"band": "category"}),
        [],
        id="unused-category-in-the-middle",
    ),
    pytest.param(
        FB,
        _band,
        lambda df: _append_incomplete(
            _with(
                _band(df),
                band=lambda d: pd.Categorical(d["band"], categories=["high", "low", "medium"]),
            ),
            1,
            band="medium",
            score=np.nan,
        ),
        [r"Dropped 1 of 301 rows"],
        id="category-unused-after-dropping-incomplete-rows",
    ),
    pytest.param(
        F,
        lambda df: df,
        lambda df: _with(
            df,
            school_id=lambda d: pd.Categorical(
                d["school_id"], categories=[*sorted(d["school_id"].unique()), "sch99"]
            ),
        ),
        [],
        id="unused-category-grouping-factor",
    ),
    pytest.param(
        F,
        lambda df: df,
        lambda df: _with(
            df,
            school_id=lambda d: (
                pd.to_datetime("2024-01-01")
                + pd.to_timedelta(d["school_id"].str[3:].astype(int), "D")
            ),
        ),
        [],
        id="datetime-grouping-factor",
    ),
]


@pytest.mark.parametrize("formula, reference, variant, allowed", COLUMN_TYPES)
def test_column_types_fit_as_their_numpy_equivalents(page_df, formula, reference, variant, allowed):
    singular = r"boundary \(singular\) fit"  # the page fit is singular (student_id)
    ref, ref_messages = fit_quiet(formula, reference(page_df), G)
    assert not [m for m in ref_messages if not re.search(singular, m)]
    result, messages = fit_quiet(formula, variant(page_df), G)
    unexpected = [m for m in messages if not any(re.search(a, m) for a in [*allowed, singular])]
    assert not unexpected, unexpected  # no "rank deficient": unused levels are dropped
    assert list(result.fe_params.index) == list(ref.fe_params.index)
    assert result.ngroups == ref.ngroups
    assert result.nobs == ref.nobs
    # Same data, possibly with levels in another order: the same optimum (deviance 1e-9
    # relative, fixed effects 1e-6, theta 1e-5 relative).
    assert result.deviance == pytest.approx(ref.deviance, rel=1e-9)
    np.testing.assert_allclose(result.fe_params, ref.fe_params, rtol=1e-6)
    np.testing.assert_allclose(result.theta, ref.theta, rtol=1e-5, atol=1e-8)


# --------------------------------------------------------------------------------------
# 3. Inputs fit() repairs with a warning: aliased fixed-effect columns are dropped.
# --------------------------------------------------------------------------------------
ALIASED = [
    pytest.param(
        "score ~ hours_studied + x2 + prior_gpa",
        dict(x2=lambda d: 2 * d["hours_studied"]),
        ["x2"],
        ["Intercept", "hours_studied", "prior_gpa"],
        id="x2-is-2*x1",
    ),
    pytest.param(
        "score ~ x2 + hours_studied + prior_gpa",
        dict(x2=lambda d: 2 * d["hours_studied"]),
        ["hours_studied"],
        ["Intercept", "x2", "prior_gpa"],
        id="aliased-first-keeps-first",
    ),
    pytest.param(
        "score ~ hours_studied + prior_gpa + const",
        dict(const=1.0),
        ["const"],
        ["Intercept", "hours_studied", "prior_gpa"],
        id="constant-column-aliased-with-intercept",
    ),
    pytest.param(
        "score ~ hours_studied + zero + prior_gpa",
        dict(zero=0.0),
        ["zero"],
        ["Intercept", "hours_studied", "prior_gpa"],
        id="all-zero-column",
    ),
]


@pytest.mark.parametrize("formula, cols, dropped, kept", ALIASED)
def test_rank_deficient_fixed_effects_drop_the_aliased_column(
    page_df, page_result, formula, cols, dropped, kept
):
    data = _with(page_df, **cols)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = interlace.fit(formula, data, G)
    rank = [w for w in caught if "rank deficient" in str(w.message)]
    assert len(rank) == 1, [str(w.message) for w in caught]
    assert issubclass(rank[0].category, UserWarning)
    assert re.search(
        rf"dropping {len(dropped)} column\(s\): {re.escape(str(dropped))}", str(rank[0].message)
    )
    assert rank[0].filename == __file__
    assert list(result.fe_params.index) == kept
    assert list(result.fe_cov.index) == kept and list(result.fe_cov.columns) == kept
    assert result.design.dropped_fe == tuple(dropped)
    assert np.all(np.isfinite(result.fe_params)) and np.all(np.isfinite(result.fe_bse))
    # The same column space as the page model: the same fit. (The REML criterion is not
    # invariant to rescaling X -- x2 = 2 x1 shifts it by log 2 -- so compare llf only
    # when the kept columns are the page's own.)
    np.testing.assert_allclose(result.fittedvalues, page_result.fittedvalues, rtol=1e-8)
    np.testing.assert_allclose(result.theta, page_result.theta, rtol=1e-6, atol=1e-9)
    assert result.scale == pytest.approx(page_result.scale, rel=1e-8)
    if kept == list(page_result.fe_params.index):
        assert result.llf == pytest.approx(page_result.llf, rel=1e-9)
        np.testing.assert_allclose(result.fe_params, page_result.fe_params, rtol=1e-8)


# --------------------------------------------------------------------------------------
# 4. The caller's DataFrame is never modified.
# --------------------------------------------------------------------------------------
def _rich_frame(page_df: pd.DataFrame) -> pd.DataFrame:
    """The page data with awkward dtypes and index, plus incomplete rows to drop."""
    df = page_df.copy()
    df.index = pd.Index([f"r{i}" for i in range(len(df))], name="row")
    df["school_id"] = pd.Categorical(df["school_id"])
    df["prior_gpa"] = df["prior_gpa"].astype("float32")
    df["unused"] = np.arange(len(df), dtype=np.int16)
    df = df.iloc[::-1]  # not in index order
    extra = df.iloc[:3].copy()
    extra.index = pd.Index(["na1", "na2", "na3"], name="row")
    extra["score"] = [np.nan, 1.0, 2.0]
    extra["hours_studied"] = [1.0, np.nan, 2.0]
    extra["student_id"] = [extra["student_id"].iloc[0], extra["student_id"].iloc[1], None]
    return pd.concat([df, extra])


def _assert_unchanged(df: pd.DataFrame, before: pd.DataFrame, columns_before):
    pd.testing.assert_frame_equal(
        df,
        before,
        check_exact=True,
        check_index_type=True,
        check_column_type=True,
        check_categorical=True,
        check_flags=True,
        check_freq=True,
    )
    assert list(df.columns) == list(columns_before)
    assert df.index.name == before.index.name
    assert df.dtypes.equals(before.dtypes)
    assert df.attrs == before.attrs


def test_fit_does_not_modify_the_callers_dataframe(page_df):
    df = _rich_frame(page_df)
    df.attrs["source"] = "test"
    before, columns_before = df.copy(deep=True), list(df.columns)
    result, messages = fit_quiet(F, df, G)
    assert any("Dropped 3 of 303 rows" in m for m in messages), messages
    assert result.nobs == 300
    _assert_unchanged(df, before, columns_before)
    # The result is labelled by the caller's index (rows actually used).
    assert set(result.fittedvalues.index) == set(df.index) - {"na1", "na2", "na3"}


def test_fit_does_not_modify_the_dataframe_when_it_rejects_it(page_df):
    df = _with(_rich_frame(page_df), row_id=lambda d: np.arange(len(d)))
    before, columns_before = df.copy(deep=True), list(df.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="row_id"):
            interlace.fit(F, df, ["student_id", "row_id"])
    _assert_unchanged(df, before, columns_before)


def test_predict_does_not_modify_newdata(page_df, page_result):
    newdata = _rich_frame(page_df).iloc[-20:].copy()  # incl. rows with NaN and None
    newdata.loc[newdata.index[0], "student_id"] = "never-seen"
    before, columns_before = newdata.copy(deep=True), list(newdata.columns)
    for include_re in (True, False):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = page_result.predict(newdata, include_re=include_re)
        # the row whose student_id is None: population level for student_id, with a warning
        assert [str(w.message)[:22] for w in caught] == (
            ["1 of 20 rows of newdat"] if include_re else []
        )
        assert pred.index.equals(newdata.index)
        _assert_unchanged(newdata, before, columns_before)


# --------------------------------------------------------------------------------------
# 5. predict(newdata=...) on bad newdata.
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def categorical_result(page_df):
    """A fit with a C(...) fixed effect, shaped like the page fit (no new compile)."""
    data = _with(page_df, band=lambda d: np.where(d["prior_gpa"] > 3.0, "high", "low"))
    result, _ = fit_quiet("score ~ hours_studied + C(band)", data, G)
    assert list(result.fe_params.index) == ["Intercept", "hours_studied", "C(band)[T.low]"]
    return result, data


def test_predict_unseen_level_of_categorical_fixed_effect_raises(categorical_result):
    result, data = categorical_result
    newdata = data.head(5).copy()
    newdata.loc[newdata.index[2], "band"] = "medium"
    with pytest.raises(DataError, match=r"level of a categorical predictor.*never saw.*medium"):
        result.predict(newdata)
    with pytest.raises(DataError, match=r"never saw"):
        result.predict(newdata, include_re=False)
    # Seen levels only: fine, and the same as the in-sample predictions.
    np.testing.assert_allclose(result.predict(data.head(5)), result.predict().head(5), rtol=1e-12)


def test_predict_numbers_given_as_strings_are_named(categorical_result):
    """A predictor the fit read as numbers, given as strings in newdata, is named in the
    error, before formulaic meets them (it spoke of "generated columns", and recorded the
    column as categorical in the fitted model's own transform state); that state, and
    later predictions, stay as the fit left them."""
    result, data = categorical_result
    spec_before = repr(result.design.model_spec.encoder_state)
    expected = result.predict(data.head(5))
    newdata = data.head(5).assign(hours_studied=lambda d: d["hours_studied"].astype(str))
    with pytest.raises(
        DataError, match=r"\['hours_studied'\] held numbers when the model was fitted"
    ):
        result.predict(newdata)
    unseen = data.head(5).copy()
    unseen.loc[unseen.index[2], "band"] = "medium"
    with pytest.raises(DataError, match=r"never saw"):
        result.predict(unseen)
    assert repr(result.design.model_spec.encoder_state) == spec_before
    np.testing.assert_allclose(result.predict(data.head(5)), expected, rtol=0, atol=0)


def test_predict_newdata_missing_a_grouping_column(page_df, page_result):
    newdata = page_df.head(6).drop(columns=["school_id"])
    with pytest.raises(
        MissingColumnError, match=r"newdata lacks grouping column\(s\) \['school_id'\]"
    ):
        page_result.predict(newdata)
    with pytest.raises(MissingColumnError, match=r"include_re=False"):
        page_result.predict(newdata, include_re=True)
    marginal = page_result.predict(newdata, include_re=False)
    beta = page_result.fe_params
    expected = (
        beta["Intercept"]
        + beta["hours_studied"] * newdata["hours_studied"]
        + beta["prior_gpa"] * newdata["prior_gpa"]
    )
    np.testing.assert_allclose(marginal, expected, rtol=1e-12)
    assert marginal.index.equals(newdata.index)


def test_predict_newdata_missing_a_predictor_column(page_df, page_result):
    newdata = page_df.head(6).drop(columns=["prior_gpa"])
    with pytest.raises(MissingColumnError, match=r"prior_gpa"):
        page_result.predict(newdata, include_re=False)


NEWDATA_TYPES = [
    pytest.param(lambda d: d.convert_dtypes(), id="convert_dtypes"),
    pytest.param(
        lambda d: d.astype({"student_id": "category", "school_id": "category"}),
        id="categorical-groups",
    ),
    pytest.param(
        lambda d: _with(
            d,
            school_id=lambda e: pd.Categorical(
                e["school_id"], categories=[*sorted(e["school_id"].unique()), "sch99"]
            ),
        ),
        id="categorical-group-unused-category",
    ),
    pytest.param(
        lambda d: d.astype({"hours_studied": "Float32", "prior_gpa": "float32"}), id="narrow-floats"
    ),
]


@pytest.mark.parametrize("variant", NEWDATA_TYPES)
def test_predict_newdata_column_types(page_df, page_result, variant):
    """Nullable and categorical columns in newdata predict as the plain columns do
    (float32 columns within 1e-6 relative, the rest exactly)."""
    newdata = page_df.head(20)
    expected = page_result.predict(newdata)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning
        got = page_result.predict(variant(newdata))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(got, page_result.fittedvalues.head(20), rtol=1e-6)


def test_predict_newdata_with_a_datetime_predictor_says_how_to_convert(page_df, page_result):
    newdata = _with(page_df.head(5), hours_studied=_dates)
    with pytest.raises(
        DataError,
        match=r"Column 'hours_studied' of newdata has dtype "
        r"datetime64.*newdata\['hours_studied'\] - newdata",
    ):
        page_result.predict(newdata)


def test_predict_newdata_with_a_missing_predictor_gives_nan_for_its_row(categorical_result):
    """R's predict(na.action = na.pass): the row with a missing predictor is NaN, also
    for a missing categorical predictor (not an 'unseen level' error); the others are
    unchanged."""
    result, data = categorical_result
    newdata = data.head(6).copy()
    newdata.loc[newdata.index[1], "band"] = None
    newdata.loc[newdata.index[3], "hours_studied"] = np.nan
    for include_re in (True, False):
        got = result.predict(newdata, include_re=include_re).to_numpy()
        full = result.predict(data.head(6), include_re=include_re).to_numpy()
        assert np.isnan(got[[1, 3]]).all()
        np.testing.assert_allclose(got[[0, 2, 4, 5]], full[[0, 2, 4, 5]], rtol=1e-12)


def test_predict_newdata_not_a_dataframe(page_df, page_result):
    with pytest.raises(
        InterlaceError, match=r"newdata must be a pandas DataFrame.*got list"
    ) as info:
        page_result.predict(page_df.head(3).to_dict("records"))
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------------------
# 6. bootstrap_se with bad arguments (all rejected before any resampling).
# --------------------------------------------------------------------------------------
BOOTSTRAP = [
    pytest.param(
        dict(statistic="mode"),
        r"statistic must be 'median', 'mean' or a callable.*'mode'",
        id="statistic-unknown-name",
    ),
    pytest.param(dict(statistic=3), r"statistic must be .*got 3", id="statistic-not-callable"),
    pytest.param(dict(statistic=None), r"statistic must be .*got None", id="statistic-None"),
    pytest.param(
        dict(resample_level="row"),
        r"resample_level must be 'group' or 'observation', got 'row'",
        id="resample-level",
    ),
    pytest.param(
        dict(group="class_id"),
        r"group='class_id' is not a grouping factor.*\['student_id', 'school_id'\]",
        id="group-unknown",
    ),
    pytest.param(
        dict(n_bootstrap=1), r"n_bootstrap must be an integer of at least 2", id="n_bootstrap-1"
    ),
    pytest.param(
        dict(n_bootstrap=0), r"n_bootstrap must be an integer of at least 2", id="n_bootstrap-0"
    ),
    pytest.param(
        dict(n_bootstrap=-5),
        r"n_bootstrap must be an integer of at least 2",
        id="n_bootstrap-negative",
    ),
    pytest.param(
        dict(n_bootstrap=100.0), r"n_bootstrap must be an integer", id="n_bootstrap-float"
    ),
    pytest.param(dict(n_bootstrap="100"), r"n_bootstrap must be an integer", id="n_bootstrap-str"),
]


@pytest.mark.parametrize("kwargs, pattern", BOOTSTRAP)
def test_bootstrap_se_rejects_bad_arguments(page_result, kwargs, pattern):
    with pytest.raises(ModelSpecError, match=pattern):
        page_result.bootstrap_se(seed=0, **kwargs)


@pytest.mark.parametrize(
    "formula, pattern",
    [
        ("score ~ 1 + (1 + zz | student_id)", r"Random term '\(1 \+ zz \| student_id\)'.*\['zz'\]"),
        (
            "score ~ 1 + (1 | student_id/nope)",
            r"Random term '\(1 \| nope:student_id\)'.*\['nope'\]",
        ),
    ],
)
def test_random_term_with_missing_column_is_named(page_df, formula, pattern):
    with pytest.raises(MissingColumnError, match=pattern):
        interlace.fit(formula, page_df)
