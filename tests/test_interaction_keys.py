"""Interaction grouping factors (``(1 | a:b)``, the ``b:a`` of ``(1 | a/b)``) are keyed by
combining the columns' integer codes, not by joining labels into one string per row.

Their labels (``"a1:b2"``, canonical labels joined by ``:``) and their order (sorted as
strings, as before) are unchanged: checked against a copy of the previous
implementation, on tricky labels, on a nested fit (identical arrays, identical fit) and
on 10^6 rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import interlace._model.design as design
from interlace._model.formula import RandomTerm

from .conftest import DATA, fit_quiet


def _old_level_labels(frame, columns):
    """interlace's level_labels before integer keys (reference copy)."""
    per = []
    for c in columns:
        codes, uniques = pd.factorize(frame[c])
        per.append((np.asarray(codes, dtype=np.int64), [design._label(u) for u in uniques]))
    if len(per) == 1:
        return per[0]
    stacked = np.column_stack([codes for codes, _ in per])
    complete = (stacked >= 0).all(axis=1)
    out = np.full(len(stacked), -1, dtype=np.int64)
    if not complete.any():
        return out, []
    combos, inverse = np.unique(stacked[complete], axis=0, return_inverse=True)
    out[complete] = np.asarray(inverse).reshape(-1)
    labels = [":".join(lab[k] for (_, lab), k in zip(per, row)) for row in combos]
    return out, labels


def _old_factor(data, term):
    """interlace's _factor before integer keys: one joined string per row, factorized."""
    if len(term.columns) == 1:
        codes, levels = pd.factorize(data[term.columns[0]], sort=True)
    else:
        row_codes, labels = _old_level_labels(data, term.columns)
        codes, levels = pd.factorize(np.asarray(labels, dtype=object)[row_codes], sort=True)
    return np.asarray(codes, dtype=np.int64), pd.Index(levels, name=term.name)


def _same(frame, columns):
    term = RandomTerm(tuple(columns))
    codes, levels = design._factor(frame, term)
    old_codes, old_levels = _old_factor(frame, term)
    np.testing.assert_array_equal(codes, old_codes)  # exact
    pd.testing.assert_index_equal(levels, old_levels, exact=True)  # exact, order included
    assert codes.dtype == np.int64  # exact
    return codes, levels


TRICKY = {
    # numbers sort as strings ("10:..." before "2:..."), floats 1.0 labelled "1"
    "numbers": pd.DataFrame({"a": [2, 10, 2, 10, 1, 1], "b": [1.0, 1.0, 2.5, 2.5, 1.0, 3.0]}),
    # "A1:x" sorts before "A:x" (':' after digits): not the order of (a, b) codes
    "prefix": pd.DataFrame({"a": ["A", "A1", "A", "A1", "B"], "b": ["x", "x", "y", "x", "x"]}),
    # two combinations with one label ("x:y" + "z" and "x" + "y:z") are one level
    "colons": pd.DataFrame({"a": ["x:y", "x", "x", "q"], "b": ["z", "y:z", "y:z", "z"]}),
    # 1 and "1" in an object column share the canonical label "1": one level
    "mixed": pd.DataFrame(
        {"a": pd.Series([1, "1", 2, "2", 1], dtype=object), "b": ["u", "u", "v", "v", "v"]}
    ),
    "bool_category": pd.DataFrame(
        {
            "a": [True, False, True, False],
            "b": pd.Categorical(["k", "k", "m", "m"], categories=["m", "k"]),
        }
    ),
    "three": pd.DataFrame(
        {
            "a": [1, 1, 2, 2, 1, 2, 1],
            "b": ["p", "q", "p", "q", "p", "p", "q"],
            "c": [0.5, 0.5, 0.5, 1.5, 1.5, 0.5, 0.5],
        }
    ),
}


@pytest.mark.parametrize("case", sorted(TRICKY))
def test_labels_and_order_as_before(case):
    frame = TRICKY[case]
    _same(frame, list(frame.columns))
    _same(frame, list(frame.columns)[::-1])


def test_level_labels_as_before_with_missing_values():
    """level_labels (used by predict to match new data): same codes, -1 where a column
    is missing, same labels in the same order (exact)."""
    frame = pd.DataFrame({"a": [1.0, np.nan, 2.0, 1.0, 2.0], "b": ["u", "v", None, "v", "u"]})
    codes, labels = design.level_labels(frame, ["a", "b"])
    old_codes, old_labels = _old_level_labels(frame, ["a", "b"])
    np.testing.assert_array_equal(codes, old_codes)  # exact
    assert list(labels) == old_labels  # exact
    none = pd.DataFrame({"a": [np.nan, 1.0], "b": ["u", None]})
    codes, labels = design.level_labels(none, ["a", "b"])
    np.testing.assert_array_equal(codes, [-1, -1])  # exact
    assert list(labels) == []  # exact


def test_nested_fit_identical_to_before(monkeypatch):
    """(1 | batch/cask) on Pastes: the b:a factor's codes and labels, and the fit, are
    those of the previous implementation (exact: same arrays in, same numbers out)."""
    pastes = pd.read_csv(DATA / "pastes.csv")
    new = fit_quiet("strength ~ 1 + (1 | batch/cask)", pastes)[0]
    monkeypatch.setattr(design, "_factor", _old_factor)
    old = fit_quiet("strength ~ 1 + (1 | batch/cask)", pastes)[0]
    assert new.design.factor_names == old.design.factor_names == ("batch", "cask:batch")
    for a, b in zip(new.design.codes, old.design.codes):
        np.testing.assert_array_equal(a, b)  # exact
    for a, b in zip(new.design.levels, old.design.levels):
        pd.testing.assert_index_equal(a, b, exact=True)  # exact
    assert list(new.design.levels[1][:3]) == ["a:A", "a:B", "a:C"]  # exact, lme4's labels
    assert new.deviance == old.deviance  # exact
    pd.testing.assert_series_equal(new.theta, old.theta, check_exact=True)  # exact
    for f in new.random_effects:
        pd.testing.assert_series_equal(
            new.random_effects[f], old.random_effects[f], check_exact=True
        )  # exact, same index order


def test_million_rows_from_integer_codes(monkeypatch):
    """10^6 rows, ~120,000 combinations: same codes and levels as before, and no
    per-row joined string key is built (no factorize of an n-long array of 'x:y'
    strings). No timing is asserted."""
    rng = np.random.default_rng(0)
    n = 10**6
    frame = pd.DataFrame(
        {"a": rng.integers(0, 2000, n), "b": rng.choice([f"s{i}" for i in range(60)], n)}
    )
    real = pd.factorize
    joined = []

    def spy(values, *args, **kwargs):
        arr = np.asarray(values, dtype=object) if np.ndim(values) else np.asarray([])
        if len(arr) == n and isinstance(arr[0], str) and ":" in arr[0]:
            joined.append(len(arr))
        return real(values, *args, **kwargs)

    monkeypatch.setattr(pd, "factorize", spy)
    codes, levels = design._factor(frame, RandomTerm(("a", "b")))
    assert joined == []  # exact: no row-by-row string key
    monkeypatch.setattr(pd, "factorize", real)
    old_codes, old_levels = _old_factor(frame, RandomTerm(("a", "b")))
    np.testing.assert_array_equal(codes, old_codes)  # exact
    pd.testing.assert_index_equal(levels, old_levels, exact=True)  # exact
