"""predict(newdata) finds a row's grouping level by its label, whatever the dtype.

R matches factor levels by their labels (strings): a model fitted with integer subject
codes predicts for new data that carries the same subjects as strings (``"308"``) or
floats (``308.0``). interlace compares canonical labels (:func:`interlace._model.design._label`):
``308``, ``308.0`` and ``"308"`` are one level, ``1.5`` is never ``"1"``. A level not seen
in the fit gets a BLUP of 0 without a warning (the results page's rule); a missing
grouping value (NaN / None / pd.NA) gets 0 too, with a ``UserWarning`` that counts the
rows and names the column.

Speed: every fit has the page fit's shape (300 rows, 3 fixed-effect columns, 30 x 10
levels) except the one with an interaction factor.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from interlace._model.design import _label, match_levels

from .conftest import PAGE_FORMULA, fit_quiet

F = PAGE_FORMULA


# --------------------------------------------------------------------------------------
# Canonical labels and matching, no fit.
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, label",
    [
        (308, "308"),
        (np.int32(308), "308"),
        (np.uint8(8), "8"),
        (308.0, "308"),
        (np.float32(308.0), "308"),
        ("308", "308"),
        (1.5, "1.5"),
        (-0.0, "0"),
        (True, "True"),
        (np.bool_(False), "False"),
        ("s1", "s1"),
        (None, None),
        (np.nan, None),
        (pd.NA, None),
        (pd.NaT, None),
    ],
)
def test_canonical_labels(value, label):
    assert _label(value) == label


def test_match_levels_across_dtypes():
    levels = pd.Index([1, 2, 308])
    newdata = pd.DataFrame({"s": pd.Series(["308", 308.0, 1.5, "1", None, 2, "2.0"], dtype=object)})
    pos, missing = match_levels(newdata, ["s"], levels)
    # "2.0" is not "2": R's as.character(2) is "2" and the string "2.0" is another label
    assert pos.tolist() == [2, 2, -1, 0, -1, 1, -1]
    assert missing.tolist() == [False, False, False, False, True, False, False]


def test_match_levels_of_an_interaction():
    levels = pd.Index(["1:a", "1:b", "2:a"])
    newdata = pd.DataFrame({"n": [1.0, 2, np.nan, 1.5, 1], "c": ["b", "a", "a", "a", None]})
    pos, missing = match_levels(newdata, ["n", "c"], levels)
    assert pos.tolist() == [1, 2, -1, -1, -1]
    assert missing.tolist() == [False, False, True, False, True]


# --------------------------------------------------------------------------------------
# Fits with integer subject codes.
# --------------------------------------------------------------------------------------
def _int_codes(df: pd.DataFrame) -> pd.DataFrame:
    """The page data with student ids 300 + k (int64) and school ids k (int64)."""
    out = df.copy()
    out["student_id"] = 300 + out["student_id"].str[1:].astype(np.int64)
    out["school_id"] = out["school_id"].str[3:].astype(np.int64)
    return out


@pytest.fixture(scope="module")
def int_fit(page_df):
    data = _int_codes(page_df)
    result, _ = fit_quiet(F, data, ["student_id", "school_id"])
    assert result.random_effects["student_id"].index.dtype == np.int64
    return result, data


def _predict_quietly(result, newdata, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matched levels: no warning
        return result.predict(newdata, **kwargs)


NEWDATA_LABELS = [
    pytest.param(lambda s: s.astype(str), id="str"),
    pytest.param(lambda s: s.astype(float), id="float"),
    pytest.param(lambda s: s.astype(object), id="object-int"),
    pytest.param(lambda s: s.astype("Int64"), id="Int64"),
    pytest.param(lambda s: s.astype("int32"), id="int32"),
    pytest.param(lambda s: s.astype("category"), id="category-of-ints"),
    pytest.param(lambda s: s.astype(str).astype("category"), id="category-of-strings"),
    pytest.param(lambda s: s.astype(str).astype("string"), id="nullable-string"),
    pytest.param(lambda s: s.astype(float).astype("Float64"), id="Float64"),
]


@pytest.mark.parametrize("convert", NEWDATA_LABELS)
def test_int_fit_predicts_for_labels_of_another_dtype(int_fit, convert):
    """The same subjects and schools in another dtype: the conditional predictions of the
    fitted rows (their fitted values, 1e-12 relative), not the population level."""
    result, data = int_fit
    newdata = data.head(25).copy()
    newdata["student_id"] = convert(newdata["student_id"])
    newdata["school_id"] = convert(newdata["school_id"])
    got = _predict_quietly(result, newdata)
    np.testing.assert_allclose(got, result.fittedvalues.head(25), rtol=1e-12)
    marginal = result.predict(newdata, include_re=False)
    assert np.abs(got - marginal).max() > 1e-3  # the random effects are really there


def test_non_integer_float_does_not_match_an_integer_level(int_fit):
    """308.5 is not the subject 308 (nor "308.0" the string): unseen, BLUP 0, no warning."""
    result, data = int_fit
    newdata = data.head(3).copy()
    newdata["student_id"] = pd.Series([308.5, 300.0001, np.float64(301)], index=newdata.index)
    got = _predict_quietly(result, newdata)
    school = result.random_effects["school_id"].loc[newdata["school_id"]].to_numpy()
    student = result.random_effects["student_id"]
    marginal = result.predict(newdata, include_re=False).to_numpy()
    expected = marginal + school + np.array([0.0, 0.0, student.loc[301]])
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_string_levels_fit_matches_numbers_in_newdata(page_df):
    """Fitted with string ids "1".."30": new data carrying 1, 1.0 or "1" finds the
    level "1"; 1.5 does not (BLUP 0)."""
    data = page_df.assign(student_id=page_df["student_id"].str[1:])  # "24", "28", ...
    result, _ = fit_quiet(F, data, ["student_id", "school_id"])
    re_s = result.random_effects["student_id"]
    re_sch = result.random_effects["school_id"]
    rows = data.head(4).copy()
    rows["student_id"] = pd.Series([1, 1.0, "1", 1.5], index=rows.index, dtype=object)
    got = _predict_quietly(result, rows).to_numpy()
    base = (
        result.predict(rows, include_re=False) + re_sch.loc[rows["school_id"]].to_numpy()
    ).to_numpy()
    np.testing.assert_allclose(got, base + np.array([re_s["1"]] * 3 + [0.0]), rtol=1e-12)


# --------------------------------------------------------------------------------------
# Missing grouping values: population level for that factor, with a counted warning.
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("missing", [np.nan, None, pd.NA], ids=["nan", "None", "pd.NA"])
def test_missing_group_value_warns_and_uses_the_population_level(int_fit, missing):
    result, data = int_fit
    newdata = data.head(10).copy()
    newdata["student_id"] = newdata["student_id"].astype("Int64" if missing is pd.NA else object)
    newdata.loc[newdata.index[[2, 7]], "student_id"] = missing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = result.predict(newdata)
    assert len(caught) == 1, [str(w.message) for w in caught]
    w = caught[0]
    assert issubclass(w.category, UserWarning)
    assert re.search(
        r"2 of 10 rows of newdata have a missing value \(NaN/None\) in grouping "
        r"column\(s\) \['student_id'\]: their random effects for 'student_id' are "
        r"set to 0 \(population level\)",
        str(w.message),
    ), str(w.message)
    assert w.filename == __file__, "the warning should point at the caller's line"
    fitted = result.fittedvalues.head(10).to_numpy()
    student = result.random_effects["student_id"].loc[data.head(10)["student_id"]].to_numpy()
    expected = fitted.copy()
    expected[[2, 7]] -= student[[2, 7]]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_unseen_levels_get_zero_without_a_warning(int_fit):
    """The results page: unseen group levels get a BLUP of 0, silently."""
    result, data = int_fit
    newdata = data.head(4).assign(student_id=[9999, "new", 12.5, 301])
    got = _predict_quietly(result, newdata).to_numpy()
    school = result.random_effects["school_id"].loc[newdata["school_id"]].to_numpy()
    marginal = result.predict(newdata, include_re=False).to_numpy()
    expected = marginal + school + np.array([0, 0, 0, result.random_effects["student_id"][301]])
    np.testing.assert_allclose(got, expected, rtol=1e-12)


# --------------------------------------------------------------------------------------
# Interaction factors: (1 | a:b) with a float / string a in new data.
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def interaction_fit(page_df):
    data = _int_codes(page_df)
    data["half"] = data["student_id"] % 2
    result, _ = fit_quiet(F + " + (1 | student_id) + (1 | school_id:half)", data)
    assert list(result.random_effects) == ["student_id", "school_id:half"]
    labels = result.random_effects["school_id:half"].index
    assert all(re.fullmatch(r"\d+:[01]", lab) for lab in labels), list(labels)
    return result, data


@pytest.mark.parametrize(
    "school, half",
    [
        pytest.param(float, np.int64, id="float-a"),
        pytest.param(str, float, id="str-a-float-b"),
        pytest.param(np.int64, str, id="int-a-str-b"),
        pytest.param("category", "Float64", id="category-a-Float64-b"),
    ],
)
def test_interaction_matches_labels_of_another_dtype(interaction_fit, school, half):
    """(1 | school_id:half) fitted on ints: new data with either column as float, str,
    category or Float64 finds the fitted levels (fitted values, 1e-12 relative)."""
    result, data = interaction_fit
    newdata = data.head(20).astype({"school_id": school, "half": half})
    got = _predict_quietly(result, newdata)
    np.testing.assert_allclose(got, result.fittedvalues.head(20), rtol=1e-12)


def test_interaction_with_a_missing_component_warns(interaction_fit):
    result, data = interaction_fit
    newdata = data.head(6).copy()
    newdata["half"] = newdata["half"].astype(float)
    newdata.loc[newdata.index[0], "half"] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = result.predict(newdata)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and re.search(
        r"1 of 6 rows .* \['school_id', 'half'\]: their random effects for 'school_id:half'",
        messages[0],
    ), messages
    inter = result.random_effects["school_id:half"]
    key = f"{data['school_id'].iloc[0]}:{data['half'].iloc[0]}"
    np.testing.assert_allclose(got.iloc[0], result.fittedvalues.iloc[0] - inter[key], rtol=1e-12)
    np.testing.assert_allclose(got.iloc[1:], result.fittedvalues.iloc[1:6], rtol=1e-12)
