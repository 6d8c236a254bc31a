"""Frames other than pandas in (``interlace._model.frames``): polars, pyarrow, dicts.

The same data as a polars DataFrame, a pyarrow Table or a dict of columns must give the
same fit as the pandas DataFrame: the frames are converted to pandas before anything
else reads them, so the numbers are identical; the tolerance rtol=1e-12 (atol=1e-14 for
values near zero) only allows for nothing. Categories keep their order (a polars Enum or a
pyarrow dictionary as a pandas categorical of that order; a polars Categorical, which
polars sorts lexically, as a string column), nulls are pandas' missing values (same
warnings), results stay pandas, and anything else gets a DataError that says what is
accepted.

Speed: every fit but the slopes pair has the results page's shape (300 rows, 3
fixed-effect columns, 30 x 10 levels), which the session compiles once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import interlace
from interlace import DataError

from .conftest import DATA, PAGE_FORMULA, PAGE_GROUPS, fit_quiet

RTOL, ATOL = 1e-12, 1e-14
SLOPES = "Reaction ~ Days + (Days | Subject)"


def _same_fit(got, want):
    """Every number the results page reads, equal within RTOL/ATOL, same labels."""
    pd.testing.assert_series_equal(got.fe_params, want.fe_params, rtol=RTOL, atol=ATOL)
    pd.testing.assert_series_equal(got.fe_bse, want.fe_bse, rtol=RTOL, atol=ATOL)
    assert got.variance_components.keys() == want.variance_components.keys()
    for name, vc in want.variance_components.items():
        if isinstance(vc, pd.DataFrame):
            pd.testing.assert_frame_equal(got.variance_components[name], vc, rtol=RTOL, atol=ATOL)
        else:
            np.testing.assert_allclose(got.variance_components[name], vc, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got.scale, want.scale, rtol=RTOL)
    np.testing.assert_allclose(got.llf, want.llf, rtol=RTOL)
    assert got.random_effects.keys() == want.random_effects.keys()
    for name, blups in want.random_effects.items():
        check = (
            pd.testing.assert_frame_equal
            if isinstance(blups, pd.DataFrame)
            else pd.testing.assert_series_equal
        )
        check(got.random_effects[name], blups, rtol=RTOL, atol=ATOL)
    pd.testing.assert_series_equal(got.fittedvalues, want.fittedvalues, rtol=RTOL, atol=ATOL)


CONVERT = {
    "polars": pl.from_pandas,
    "pyarrow": lambda df: pa.Table.from_pandas(df, preserve_index=False),
    "dict-of-lists": lambda df: df.to_dict("list"),
    "dict-of-arrays": lambda df: {c: df[c].to_numpy() for c in df.columns},
}


# --------------------------------------------------------------------------------------
# The page fit and a random-slopes fit from each kind of frame.
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=list(CONVERT))
def converted_fit(request, page_df):
    """(kind, the frame, a deep copy of it taken before the fit, the fit's result and
    warnings)."""
    frame = CONVERT[request.param](page_df)
    before = (
        frame.clone()
        if isinstance(frame, pl.DataFrame)
        else ({k: list(v) for k, v in frame.items()} if isinstance(frame, dict) else frame)
    )
    result, messages = fit_quiet(PAGE_FORMULA, data=frame, groups=PAGE_GROUPS)
    return request.param, frame, before, result, messages


def test_page_fit_is_the_same_from_any_frame(converted_fit, page_fit):
    _, _, _, result, messages = converted_fit
    want, want_messages = page_fit
    _same_fit(result, want)
    assert messages == want_messages  # the page's singular-fit warning, nothing else
    assert isinstance(result.fe_params, pd.Series) and isinstance(result.fittedvalues, pd.Series)
    assert result.fittedvalues.index.equals(pd.RangeIndex(300))


def test_the_callers_frame_is_unchanged(converted_fit):
    kind, frame, before, _, _ = converted_fit
    if kind == "polars":
        assert frame.equals(before) and frame.schema == before.schema
    elif kind == "pyarrow":  # immutable: the same object with the same contents
        assert frame.num_rows == 300 and frame.column_names == list(
            interlace.datasets.exam_scores().columns
        )
    else:
        assert list(frame) == list(before)
        for k, v in frame.items():
            assert list(v) == before[k]


@pytest.fixture(scope="module")
def slope_fits():
    """The sleepstudy slopes model from pandas and from polars (both read from the csv)."""
    pandas_df = pd.read_csv(DATA / "sleepstudy.csv", dtype={"Subject": str})
    polars_df = pl.read_csv(DATA / "sleepstudy.csv", schema_overrides={"Subject": pl.String})
    return (
        fit_quiet(SLOPES, data=pandas_df)[0],
        fit_quiet(SLOPES, data=polars_df)[0],
        pandas_df,
        polars_df,
    )


def test_random_slopes_fit_is_the_same_from_polars(slope_fits):
    want, got, _, _ = slope_fits
    assert isinstance(got.random_effects["Subject"], pd.DataFrame)
    _same_fit(got, want)


def test_predict_with_polars_newdata_applies_random_slopes_as_pandas(slope_fits):
    want, got, pandas_df, polars_df = slope_fits
    new_pd = pandas_df.iloc[::7].reset_index(drop=True)
    new_pl = polars_df.gather_every(7)
    for include_re in (True, False):
        pd.testing.assert_series_equal(
            got.predict(new_pl, include_re=include_re),
            want.predict(new_pd, include_re=include_re),
            rtol=RTOL,
            atol=ATOL,
        )


# --------------------------------------------------------------------------------------
# predict(newdata) from any frame.
# --------------------------------------------------------------------------------------
PAGE_NEW = {  # the page's df_new: s_new is a level the fit never saw (BLUP 0)
    "hours_studied": [5.0, 8.0, 5.0],
    "prior_gpa": [3.2, 3.8, 3.2],
    "student_id": ["s1", "s2", "s_new"],
    "school_id": ["sch1", "sch1", "sch1"],
}


@pytest.mark.parametrize("kind", list(CONVERT))
def test_predict_newdata_from_any_frame(kind, page_result):
    want = page_result.predict(pd.DataFrame(PAGE_NEW))
    got = page_result.predict(CONVERT[kind](pd.DataFrame(PAGE_NEW)))
    pd.testing.assert_series_equal(got, want, rtol=RTOL, atol=ATOL)
    # the page's printed predictions (2 decimals)
    np.testing.assert_allclose(got, [60.90, 58.98, 59.58], rtol=0, atol=0.005)


def test_predict_polars_newdata_with_a_null_grouping_value_warns_as_pandas(page_result):
    new_pd = pd.DataFrame(PAGE_NEW).assign(student_id=["s1", None, "s_new"])
    new_pl = pl.from_pandas(new_pd)
    assert new_pl["student_id"].null_count() == 1
    with pytest.warns(UserWarning, match=r"1 of 3 rows of newdata have a missing value") as got_w:
        got = page_result.predict(new_pl)
    with pytest.warns(UserWarning) as want_w:
        want = page_result.predict(new_pd)
    assert [str(w.message) for w in got_w] == [str(w.message) for w in want_w]
    pd.testing.assert_series_equal(got, want, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------------------
# Column types: category order, nulls.
# --------------------------------------------------------------------------------------
# Three bands of prior_gpa. In the data they first appear as upper, lower, middle; in
# lexical order they are lower, middle, upper; ORDER is a third order. Each order has
# another reference level, so a lost order changes the fit's names and numbers.
ORDER = ["middle", "lower", "upper"]


def _bands(df: pd.DataFrame) -> np.ndarray:
    gpa = df["prior_gpa"]
    return np.where(gpa < 2.67, "lower", np.where(gpa > 3.33, "upper", "middle"))


@pytest.fixture(scope="module")
def band_fits(page_df):
    """``score ~ band`` (the page's shape: 3 fixed-effect columns) with band as a pandas
    categorical of ORDER and as a pandas string column (lexical order)."""
    bands = _bands(page_df)
    categorical = page_df.assign(band=pd.Categorical(bands, categories=ORDER))
    strings = page_df.assign(band=bands)
    return (
        fit_quiet("score ~ band", categorical, PAGE_GROUPS)[0],
        fit_quiet("score ~ band", strings, PAGE_GROUPS)[0],
        bands,
    )


def test_band_fits_differ_by_reference_level(band_fits):
    """The checks below are only as good as this: the orders give different fits."""
    ordered, lexical, bands = band_fits
    assert list(ordered.fe_params.index) == ["Intercept", "band[T.lower]", "band[T.upper]"]
    assert list(lexical.fe_params.index) == ["Intercept", "band[T.middle]", "band[T.upper]"]
    assert pd.unique(bands).tolist() == ["upper", "lower", "middle"]  # order of appearance


def test_polars_enum_keeps_its_order_as_a_pandas_categorical(band_fits, page_df):
    ordered, _, bands = band_fits
    frame = pl.from_pandas(page_df).with_columns(band=pl.Series(bands, dtype=pl.Enum(ORDER)))
    _same_fit(fit_quiet("score ~ band", frame, PAGE_GROUPS)[0], ordered)


def test_pyarrow_dictionary_keeps_its_order_as_a_pandas_categorical(band_fits, page_df):
    ordered, _, bands = band_fits
    codes = pa.array([ORDER.index(b) for b in bands], pa.int8())
    band = pa.DictionaryArray.from_arrays(codes, pa.array(ORDER))
    frame = pa.Table.from_pandas(page_df, preserve_index=False).append_column("band", band)
    _same_fit(fit_quiet("score ~ band", frame, PAGE_GROUPS)[0], ordered)


def test_polars_categorical_is_coded_as_a_string_column(band_fits, page_df):
    """polars sorts a Categorical lexically and keeps no category list of its own:
    coded as strings are (reference 'lower'), not in the order the values came in."""
    _, lexical, bands = band_fits
    frame = pl.from_pandas(page_df).with_columns(band=pl.Series(bands, dtype=pl.Categorical))
    _same_fit(fit_quiet("score ~ band", frame, PAGE_GROUPS)[0], lexical)


@pytest.mark.parametrize("column, missing", [("score", np.nan), ("student_id", None)])
def test_polars_null_is_dropped_with_the_pandas_warning(column, missing, page_df, page_fit):
    """A 301st row with a null (polars) or NaN/None (pandas): the same warning, and the
    page fit once it is dropped."""
    pandas_df = pd.concat(
        [page_df, page_df.iloc[:1].assign(**{column: missing})], ignore_index=True
    )
    polars_df = pl.from_pandas(page_df)
    null = pl.lit(None, dtype=polars_df.schema[column]).alias(column)
    polars_df = pl.concat([polars_df, polars_df.head(1).with_columns(null)])
    assert polars_df[column].null_count() == 1 and pandas_df[column].isna().sum() == 1
    got, messages = fit_quiet(PAGE_FORMULA, polars_df, PAGE_GROUPS)
    _, want_messages = fit_quiet(PAGE_FORMULA, pandas_df, PAGE_GROUPS)
    assert messages == want_messages
    assert f"Dropped 1 of 301 rows with missing values (NaN/None) in ['{column}']" in messages[0]
    _same_fit(got, page_fit[0])


def test_polars_integer_column_with_a_null_is_read_as_pandas_reads_it(page_df):
    """An Int64 column with a null: the row dropped with pandas' warning, the other
    values as numbers (model_arrays: the same validation as fit, no optimisation)."""
    years = [None] + [2000 + i % 7 for i in range(299)]
    frame = pl.from_pandas(page_df).with_columns(year=pl.Series(years, dtype=pl.Int64))
    with pytest.warns(UserWarning, match=r"Dropped 1 of 300 rows .* in \['year'\]"):
        got = interlace.model_arrays("score ~ year", frame, PAGE_GROUPS)
    with pytest.warns(UserWarning, match=r"Dropped 1 of 300 rows .* in \['year'\]"):
        want = interlace.model_arrays(
            "score ~ year", page_df.assign(year=pd.array(years, dtype="Int64")), PAGE_GROUPS
        )
    np.testing.assert_array_equal(np.asarray(got.X), np.asarray(want.X))
    np.testing.assert_array_equal(np.asarray(got.X)[:, 1], years[1:])


def test_polars_datetime_predictor_gets_the_pandas_error(page_df):
    frame = pl.from_pandas(page_df).with_columns(when=pl.Series([0] * 300).cast(pl.Date))
    with pytest.raises(
        DataError,
        match=r"Column 'when' of data has dtype datetime64.*cannot "
        r"be used as a predictor",
    ):
        interlace.fit("score ~ when", frame, PAGE_GROUPS)


# --------------------------------------------------------------------------------------
# What is refused, with a sentence that says what is accepted.
# --------------------------------------------------------------------------------------
ACCEPTED = r"must be a pandas DataFrame, a polars DataFrame, a pyarrow Table"
BAD = [
    pytest.param(
        lambda df: df.to_numpy(), ACCEPTED + r".*got numpy.ndarray\. Name its columns", id="ndarray"
    ),
    pytest.param(lambda df: None, ACCEPTED + r".*got NoneType", id="None"),
    pytest.param(lambda df: df.to_dict("records"), ACCEPTED + r".*got list", id="list"),
    pytest.param(lambda df: df["score"], ACCEPTED + r".*got pandas.Series", id="pandas-series"),
    pytest.param(
        lambda df: pl.from_pandas(df)["score"],
        ACCEPTED + r".*got polars.Series",
        id="polars-series",
    ),
    pytest.param(
        lambda df: pl.from_pandas(df).lazy(),
        r"is a lazy frame \(polars.LazyFrame\); call \.collect\(\) on it first",
        id="polars-lazyframe",
    ),
    pytest.param(
        lambda df: {"score": [1.0, 2.0], "student_id": ["a"]},
        r"is a dict whose columns must have equal lengths; got \{'score': 2, 'student_id': 1\}",
        id="dict-ragged",
    ),
    pytest.param(
        lambda df: {"score": 1.0, "student_id": ["a"]},
        r"is a dict, so each value must be a column .* 'score' is a single float",
        id="dict-scalar",
    ),
]


@pytest.mark.parametrize("make, message", BAD)
def test_fit_refuses_what_is_not_a_frame(make, message, page_df):
    with pytest.raises(DataError, match=r"^data " + message):
        interlace.fit(PAGE_FORMULA, make(page_df), PAGE_GROUPS)


@pytest.mark.parametrize("make, message", [p for p in BAD if p.id != "None"])  # None: in-sample
def test_predict_refuses_what_is_not_a_frame(make, message, page_df, page_result):
    with pytest.raises(DataError, match=r"^newdata " + message):
        page_result.predict(make(page_df))


def test_fit_many_takes_polars_data_and_responses(page_df):
    """Design from a polars frame, responses as a polars frame: the same table as
    pandas (model_arrays and fit_many share build_design's conversion)."""
    rng = np.random.default_rng(0)
    responses = pd.DataFrame({"a": page_df["score"], "b": page_df["score"] + rng.normal(0, 1, 300)})
    want = interlace.fit_many(PAGE_FORMULA, page_df, responses, PAGE_GROUPS)
    got = interlace.fit_many(
        PAGE_FORMULA, pl.from_pandas(page_df), pl.from_pandas(responses), PAGE_GROUPS
    )
    pd.testing.assert_frame_equal(got, want, rtol=RTOL, atol=ATOL)


def test_polars_and_pyarrow_are_not_dependencies_of_interlace():
    """narwhals is the one dependency: no module of the package imports polars or
    pyarrow, and pyproject lists them in the test extra only."""
    import ast
    from pathlib import Path

    package = Path(interlace.__file__).parent
    imported = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    assert "narwhals" in imported and not imported & {"polars", "pyarrow"}
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((package.parent / "pyproject.toml").read_text())["project"]
    names = [d.split(">")[0].split("=")[0].strip() for d in project["dependencies"]]
    assert "narwhals" in names and not {"polars", "pyarrow"} & set(names)
    assert {"polars", "pyarrow"} <= {
        d.split(">")[0] for d in project["optional-dependencies"]["test"]
    }
