"""From a formula and a DataFrame to the arrays a fit needs (the pandas edge, inbound).

Other frames (polars, pyarrow, a dict of columns) become pandas first
(:func:`~interlace._model.frames.as_pandas`). Validates the input, drops incomplete rows
(with a warning that says how many), builds the fixed-effect matrix with formulaic, drops
aliased fixed-effect columns as lme4 does, and turns each grouping factor into integer
level codes. The caller's DataFrame is never modified: every step works on copies or new
arrays.

Columns as R would read them: the columns a formula reads are found by walking its
expressions (:func:`~interlace._model.formula.formula_variables`: ``scale(x)`` reads ``x``);
nullable dtypes (Int64, Float64, boolean, string) become their numpy equivalents; unused
categories of a categorical are dropped, as R drops unused factor levels; date and time
predictors are rejected with a sentence that says how to convert them.

On the way back (``predict``), :func:`fixed_matrix_for` and :func:`term_matrix_for`
code new data with the formulaic ModelSpecs of the fit, so stateful transforms keep the
state learnt on the fitted rows, and :func:`match_levels` finds grouping levels by
canonical label (``308``, ``308.0`` and ``"308"`` are one level, as R's factor labels).
"""

from __future__ import annotations

import builtins
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import formulaic
import numpy as np
import pandas as pd

from .._base.errors import DataError, FormulaError, MissingColumnError, ModelSpecError
from .._core.standardize import intercept_column
from .._core.theta import theta_names
from .formula import ParsedFormula, RandomTerm, formula_variables, parse_formula
from .frames import as_pandas

__all__ = [
    "Design",
    "TermDesign",
    "build_design",
    "fixed_matrix_for",
    "term_matrix_for",
    "level_labels",
    "match_levels",
]


@dataclass(frozen=True)
class TermDesign:
    """One random term ``(lhs | factor)``: level codes and its ``n x k`` columns."""

    factor: str
    lhs: str
    codes: np.ndarray  # (n,) int level codes of the grouping factor
    levels: pd.Index  # level labels
    X: np.ndarray  # (n, k) the term's columns
    columns: tuple[str, ...]  # lme4 names: "(Intercept)", "x", ...
    spec: Any  # formulaic ModelSpec of lhs, for predict()
    variables: tuple[str, ...] = ()  # data columns the lhs reads (x of scale(x))
    group_columns: tuple[str, ...] = ()  # the factor's columns: ("a", "b") for a:b
    from_groups: bool = False  # given through groups= (not written in the formula)

    @property
    def k(self) -> int:
        return int(self.X.shape[1])


@dataclass(frozen=True)
class Design:
    """Arrays of a crossed random-effects model, plus the labels to map them back."""

    y: np.ndarray  # (n,)
    X: np.ndarray  # (n, p)
    fe_names: tuple[str, ...]
    terms: tuple[TermDesign, ...]  # random terms in the user's order
    factor_names: tuple[str, ...]  # distinct grouping factors, in order of appearance
    codes: tuple[np.ndarray, ...]  # per factor, (n,) int level codes
    levels: tuple[pd.Index, ...]  # per factor, the level labels
    row_index: pd.Index  # index labels of the rows used
    model_spec: Any  # formulaic ModelSpec of the fixed part, for predict()
    dropped_fe: tuple[str, ...]  # aliased fixed-effect columns that were dropped
    formula: str
    response: str
    fixed_variables: tuple[str, ...] = ()  # data columns the fixed part reads
    # Linear mixed models with lme4's weights= / offsets (``_model.weighted_design``):
    weights: np.ndarray | None = None  # (n,) prior weights: residual variance sigma^2 / w_i
    offset: np.ndarray | None = None  # (n,) known part of the mean, all offsets summed
    offset_terms: tuple[str, ...] = ()  # offset(expr) expressions, for predict(newdata)
    # weights= / offset= as the summary's Weights: / Offset: lines name them (lme4's
    # call); None: not given
    weights_label: str | None = None
    offset_label: str | None = None

    @property
    def offset_argument(self) -> bool:
        """Whether ``offset=`` was given (``predict(newdata)`` then needs one)."""
        return self.offset_label is not None

    @property
    def nobs(self) -> int:
        return int(self.y.shape[0])

    @property
    def y_model(self) -> np.ndarray:
        """The response the linear model fits: ``y`` less the offset."""
        return self.y if self.offset is None else self.y - self.offset

    @property
    def theta_names(self) -> list[str]:
        """lme4's names of ``theta``'s entries, term by term (:func:`theta_names`)."""
        return [nm for t in self.terms for nm in theta_names(t.factor, t.columns)]


def _as_terms(groups: str | Sequence[str] | None) -> list[RandomTerm]:
    if groups is None:
        return []
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, str) for g in groups):
        raise ModelSpecError("groups= must be a column name or a list of column names.")
    return [RandomTerm(tuple(c.strip() for c in g.split(":")), "1") for g in groups]


def _label(value: Any) -> str | None:
    """The canonical label of one grouping level, as R's factor levels are strings:
    ``308``, ``308.0``, ``np.int32(308)`` and ``"308"`` are all ``"308"``; ``1.5`` is
    ``"1.5"`` (never ``"1"``); ``True`` is ``"True"``; missing values give ``None``."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return None
        return str(int(v)) if v.is_integer() else repr(v)
    return str(value)


def level_labels(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Each row's grouping level as ``(codes, labels)``: ``labels[codes[i]]`` is row
    ``i``'s canonical label (:func:`_label`; an interaction ``a:b`` joins its columns'
    labels with ``:``), ``codes[i] == -1`` where a column of the factor is missing.

    An interaction's combinations are found from integer codes (each column factorized,
    the codes combined column by column as ``key * levels + code``), in the
    lexicographic order of the columns' codes; only the combinations, never the rows,
    get a joined string label."""
    per = []
    for c in columns:
        codes, uniques = pd.factorize(frame[c])
        per.append((np.asarray(codes, dtype=np.int64), [_label(u) for u in uniques]))
    if len(per) == 1:
        return per[0]
    complete = np.logical_and.reduce([codes >= 0 for codes, _ in per])
    out = np.full(len(complete), -1, dtype=np.int64)
    if not complete.any():
        return out, []
    # key: each complete row's combination of the columns so far, re-factorized (sorted)
    # after each column so that it stays below the row count; parts[i]: each
    # combination's code in column i.
    key = np.zeros(int(complete.sum()), dtype=np.int64)
    parts: list[np.ndarray] = []
    for codes, labels in per:
        width = max(len(labels), 1)
        key, combos = pd.factorize(key * width + codes[complete], sort=True)
        key, combos = np.asarray(key, dtype=np.int64), np.asarray(combos, dtype=np.int64)
        parts = [p[combos // width] for p in parts] + [combos % width]
    out[complete] = key
    joined = None
    for (_, labels), p in zip(per, parts):
        column = np.asarray(labels, dtype=object)[p]
        joined = column if joined is None else joined + ":" + column
    return out, list(joined)


def match_levels(
    newdata: pd.DataFrame, columns: Sequence[str], levels: pd.Index
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``levels`` (a fitted factor's levels) of each row's level in
    ``newdata``, matched by canonical label across int / float / str / category
    (``"308"`` and ``308.0`` find the level ``308``); ``-1`` for a level not seen in the
    fit or a missing value. Also returns the mask of rows with a missing value."""
    codes, labels = level_labels(newdata, columns)
    keys: dict[str | None, int] = {}
    for i, level in enumerate(levels):
        keys.setdefault(_label(level), i)
    lookup = np.array([keys.get(lab, -1) for lab in labels] + [-1], dtype=np.int64)
    return lookup[codes], codes < 0  # code -1 picks the trailing -1


def _factor(data: pd.DataFrame, term: RandomTerm) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and sorted level labels of a grouping factor. A single column keeps
    its values as labels; an interaction ``a:b`` is labelled ``"a-label:b-label"`` with
    canonical labels (a float ``1.0`` gives ``"1"``, as R's ``interaction``), its levels
    sorted as strings; combinations whose labels are equal are one level. The rows'
    codes come from the combinations' (:func:`level_labels`): strings are made and
    sorted per combination, not per row."""
    if len(term.columns) == 1:
        codes, levels = pd.factorize(data[term.columns[0]], sort=True)
    else:
        row_codes, labels = level_labels(data, term.columns)
        combo_codes, levels = pd.factorize(np.asarray(labels, dtype=object), sort=True)
        codes = np.append(np.asarray(combo_codes, dtype=np.int64), -1)[row_codes]
    return np.asarray(codes, dtype=np.int64), pd.Index(levels, name=term.name)


_TIME_KINDS = {"M": "datetime", "m": "timedelta"}


def _retyped(spec, rows: pd.DataFrame) -> str | None:
    """Which columns the fit read as numbers that ``rows`` (newdata) holds as strings or
    categories, said plainly (formulaic's own message speaks of generated columns), or
    None."""
    state = getattr(spec, "encoder_state", None) or {}
    names = [
        name
        for name, (kind, _) in state.items()
        if getattr(kind, "value", kind) == "numerical"
        and name in rows.columns
        and not pd.api.types.is_numeric_dtype(rows[name])
    ]
    if not names:
        return None
    return (
        f"column(s) {names} held numbers when the model was fitted, but not in newdata "
        f"(dtype {rows[names[0]].dtype}, e.g. {rows[names[0]].iloc[0]!r}); convert them to "
        "numbers."
    )


def _check_column_types(frame: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    """Reject date and time columns as predictors with a sentence that says how to
    convert them (grouping factors may be dates: they only need labels)."""
    for c in columns:
        dtype = frame[c].dtype
        kind = (
            "period"
            if isinstance(dtype, pd.PeriodDtype)
            else _TIME_KINDS.get(getattr(dtype, "kind", ""), None)
        )
        if kind is None:
            continue
        fix = {
            "datetime": f"days since the first date: {where}[{c!r}] = "
            f"({where}[{c!r}] - {where}[{c!r}].min()).dt.days",
            "timedelta": f"a number of days: {where}[{c!r}] = {where}[{c!r}].dt.days "
            f"(or .dt.total_seconds() / 86400 for fractions of a day)",
            "period": f"a number: {where}[{c!r}] = {where}[{c!r}].dt.year (or another field)",
        }[kind]
        raise DataError(
            f"Column {c!r} of {where} has dtype {dtype}: a {kind} column cannot be used as "
            f"a predictor. Convert it to {fix}; or to strings with .astype(str) to use it "
            "as a categorical predictor."
        )


def _numpy_column(col: pd.Series, categories_as_values: bool = False) -> pd.Series:
    """``col`` with a nullable dtype replaced by its numpy equivalent (Int64 -> int64,
    or float64 when values are missing; Float64 -> float64; boolean -> bool; string ->
    object), so that formulaic treats it as it treats the numpy column. Unused categories
    of a categorical are dropped (R drops unused factor levels); with
    ``categories_as_values`` a categorical becomes its values (for new data, whose
    categories need not be the fit's)."""
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        if categories_as_values:
            return col.astype(object).where(col.notna(), np.nan)
        return col.cat.remove_unused_categories()
    if not pd.api.types.is_extension_array_dtype(dtype):
        return col
    if isinstance(dtype, pd.StringDtype) and dtype.na_value is not pd.NA:
        return col  # pandas' default str dtype: formulaic reads it as categorical
    numpy_dtype = getattr(dtype, "numpy_dtype", None)
    kind = getattr(numpy_dtype, "kind", "")
    missing = col.isna().to_numpy()
    if kind in ("i", "u", "f"):
        values = col.to_numpy(
            dtype=np.float64 if missing.any() or kind == "f" else numpy_dtype, na_value=np.nan
        )
    elif kind == "b" and not missing.any():
        values = col.to_numpy(dtype=bool)
    elif pd.api.types.is_string_dtype(dtype) or kind == "b":
        values = np.array(col.astype(object).to_numpy(), dtype=object)  # a copy
        values[missing] = np.nan
    else:
        return col
    return pd.Series(values, index=col.index, name=col.name)


def _numpy_frame(frame: pd.DataFrame, categories_as_values: bool = False) -> pd.DataFrame:
    """:func:`_numpy_column` of every column, as a new frame."""
    return pd.DataFrame(
        {c: _numpy_column(frame[c], categories_as_values) for c in frame.columns}, index=frame.index
    )


def _newdata_matrix(
    spec: Any,
    variables: Sequence[str],
    newdata: pd.DataFrame,
    width: int,
    what: str,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """``spec`` (a formulaic ModelSpec, with the transform state learnt in the fit:
    ``scale``'s mean and sd, ``poly``'s basis, ``bs``'s knots) applied to ``newdata``.
    Rows with a missing value in ``variables`` get NaN rows (as R's ``na.pass``); a
    level the fit never saw raises :class:`DataError`. ``names``: the columns to keep,
    in this order (the fixed effects left after dropping aliased ones)."""
    frame = newdata.loc[:, list(variables)]
    _check_column_types(frame, variables, "newdata")
    frame = _numpy_frame(frame, categories_as_values=True)
    ok = np.flatnonzero(~frame.isna().any(axis=1).to_numpy())
    out = np.full((len(frame), width), np.nan)
    if len(ok) == 0:
        return out
    rows = frame.iloc[ok] if variables else pd.DataFrame(index=newdata.index[ok])
    retyped = _retyped(spec, rows)
    if retyped:
        raise DataError(f"Cannot build {what} for newdata: {retyped}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            mm = spec.get_model_matrix(rows, na_action="ignore")
        except Warning as w:
            raise DataError(
                f"newdata has a level of a categorical predictor that the model never saw "
                f"({w}), in {what}. Predictions for it are undefined; remove those rows or "
                "refit."
            ) from None
        except Exception as exc:
            raise DataError(f"Cannot build {what} for newdata: {exc}") from exc
    values = np.asarray(mm, dtype=np.float64)
    if names is not None:
        cols = [str(c) for c in mm.columns]
        values = values[:, [cols.index(name) for name in names]]
    out[ok] = values
    return out


def term_matrix_for(term: TermDesign, newdata: pd.DataFrame) -> np.ndarray:
    """The columns of random term ``term`` for ``newdata`` (same coding and transform
    state as in the fit); NaN rows where a column the term reads is missing."""
    variables = term.variables or tuple(sorted(term.spec.required_variables))
    absent = [c for c in variables if c not in newdata.columns]
    if absent:
        raise MissingColumnError(
            f"newdata lacks column(s) {absent} of the random term ({term.lhs} | {term.factor}); "
            "add them, or use include_re=False for population-level predictions."
        )
    return _newdata_matrix(
        term.spec, variables, newdata, term.k, f"the random term ({term.lhs} | {term.factor})"
    )


def _term_design(
    term: RandomTerm,
    formula_,
    frame: pd.DataFrame,
    codes: np.ndarray,
    levels: pd.Index,
    variables: Sequence[str],
    from_groups: bool = False,
) -> TermDesign:
    """The columns of one random term; formulaic's ``Intercept`` is named as in lme4.
    ``from_groups``: the term came from ``groups=`` (the summary spells it out)."""
    try:
        mm = formula_.get_model_matrix(frame, na_action="raise")
    except Exception as exc:
        raise FormulaError(f"Cannot build the random term {str(term)!r}: {exc}") from exc
    X = np.asarray(mm, dtype=np.float64)
    if X.shape[1] == 0:
        raise FormulaError(f"Random term {str(term)!r} has no columns.")
    if not np.all(np.isfinite(X)):
        raise DataError(f"Random term {str(term)!r} has infinite values.")
    columns = tuple("(Intercept)" if str(c) == "Intercept" else str(c) for c in mm.columns)
    return TermDesign(
        factor=term.name,
        lhs=term.lhs,
        codes=codes,
        levels=levels,
        X=X,
        columns=columns,
        spec=mm.model_spec,
        variables=tuple(variables),
        group_columns=tuple(term.columns),
        from_groups=from_groups,
    )


def _check_numeric_response(col: pd.Series, name: str) -> None:
    numeric = pd.api.types.is_numeric_dtype(col)
    if not numeric or pd.api.types.is_bool_dtype(col) or pd.api.types.is_complex_dtype(col):
        raise DataError(
            f"The response {name!r} must be numeric (real-valued), but its dtype is "
            f"{col.dtype}. Convert it with pd.to_numeric() or pick a numeric column."
        )


def _drop_aliased(X: np.ndarray, names: list[str], tol: float = 1e-7) -> list[int]:
    """Indices of columns to keep: each column is kept unless it lies in the span of the
    columns kept before it (lme4 keeps the first columns of a pivoted QR the same way).
    With an intercept, the other columns are centred first: a column near 1e8 with a
    spread of 1 is not aliased, though its projection on the intercept is 1 - 1e-16."""
    X = np.asarray(X, dtype=float)
    intercept = intercept_column(X)
    if intercept >= 0:
        X = X - np.where(np.arange(X.shape[1]) == intercept, 0.0, X.mean(axis=0))
    keep: list[int] = []
    Q = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        v = X[:, j]
        norm = np.linalg.norm(v)
        if norm == 0:
            continue
        r = v - Q @ (Q.T @ v)
        r = r - Q @ (Q.T @ r)  # re-orthogonalise once for stability
        if np.linalg.norm(r) > tol * norm:
            keep.append(j)
            Q = np.column_stack([Q, r / np.linalg.norm(r)])
    return keep


def _random_terms(parsed: ParsedFormula, groups) -> list[RandomTerm]:
    """The formula's random terms, then those of ``groups=``; each at most once."""
    terms = list(parsed.random) + _as_terms(groups)
    keys = [(t.name, t.lhs.replace(" ", "")) for t in terms]
    dupes = sorted({str(t) for t, key in zip(terms, keys) if keys.count(key) > 1})
    if dupes:
        raise ModelSpecError(f"Random term(s) {dupes} are given more than once.")
    if not terms:
        raise ModelSpecError(
            "The model has no random effects: pass groups=['g'] or write '(1 | g)' in the "
            "formula. A model without random effects is an ordinary linear model or GLM "
            "(statsmodels' OLS or GLM, R's lm or glm), not a mixed model."
        )
    return terms


def _parse_parts(parsed: ParsedFormula, terms: list[RandomTerm]):
    """formulaic formulas of the fixed part and of each random term's left-hand side."""
    try:
        fixed_formula = formulaic.Formula(parsed.fixed)
    except Exception as exc:  # formulaic raises its own parser errors
        raise FormulaError(f"Cannot parse the fixed part {parsed.fixed!r}: {exc}") from exc
    term_formulas = []
    for t in terms:
        try:
            term_formulas.append(formulaic.Formula(t.lhs))
        except Exception as exc:
            raise FormulaError(f"Cannot parse the random term {str(t)!r}: {exc}") from exc
    return fixed_formula, term_formulas


def _model_frame(
    data: pd.DataFrame,
    parsed: ParsedFormula,
    terms,
    fixed_formula,
    term_formulas,
    stacklevel: int = 5,
    missing_values: Mapping[str, np.ndarray] | None = None,
    response_label: str | None = None,
):
    """The columns the model reads, checked, without rows that miss a value (with a
    warning that counts them), in numpy dtypes: ``(frame, fixed_vars, term_vars)``.
    ``missing_values``, ``response_label``: :func:`build_design`'s ``missing``, ``response_label``."""

    def reads(formula_) -> list[str]:  # columns, or names that are neither columns nor builtins
        return [
            v for v in formula_variables(formula_) if v in data.columns or not hasattr(builtins, v)
        ]

    term_vars = [reads(f) for f in term_formulas]
    fixed_vars = reads(fixed_formula.rhs)
    position = {c: i for i, c in enumerate(data.columns)}

    def in_data_order(names) -> list[str]:
        return sorted(names, key=lambda c: (position.get(c, len(position)), str(c)))

    fixed_cols = [*in_data_order(reads(fixed_formula.lhs)), *in_data_order(fixed_vars)]
    lhs_cols = [v for vs in term_vars for v in vs]
    value_cols = list(dict.fromkeys([*fixed_cols, *lhs_cols]))
    needed = list(dict.fromkeys([*fixed_cols, *(c for t in terms for c in t.columns), *lhs_cols]))
    missing = [c for c in needed if c not in data.columns]
    for term, variables in zip(terms, term_vars):
        absent = [c for c in (*term.columns, *variables) if c not in data.columns]
        if absent:
            raise MissingColumnError(
                f"Random term {str(term)!r} names column(s) {absent} that are not in the "
                f"data. Available columns: {list(data.columns)}."
            )
    if missing:
        raise MissingColumnError(
            f"Column(s) {missing} named by the model are not in the data. "
            f"Available columns: {list(data.columns)}."
        )
    frame = data[needed]  # a new frame: the caller's is never touched

    response = parsed.response.strip("`")
    if response in frame.columns:  # a plain column (not a transform of one)
        _check_numeric_response(frame[response], response)
    _check_column_types(frame, value_cols, "data")
    others = {k: np.asarray(rows, dtype=bool) for k, rows in (missing_values or {}).items()}
    incomplete = np.logical_or.reduce(
        [frame.isna().any(axis=1).to_numpy(), *others.values()], axis=0
    )
    if incomplete.all():
        raise DataError("Every row has a missing value in a column the model uses; nothing to fit.")
    if incomplete.any():
        bad_cols = [
            response_label if c == response and response_label else c
            for c in needed
            if frame[c].isna().any()
        ]
        bad_cols += [name for name, rows in others.items() if rows.any()]
        warnings.warn(
            f"Dropped {int(incomplete.sum())} of {len(frame)} rows with missing values "
            f"(NaN/None) in {bad_cols}. Impute or drop them yourself to silence this.",
            UserWarning,
            stacklevel=stacklevel,
        )
        frame = frame.loc[~incomplete]
    # Nullable dtypes as their numpy equivalents; unused categories dropped (as R drops
    # unused factor levels), so they are neither columns of X nor levels of a factor.
    return _numpy_frame(frame), fixed_vars, term_vars


def _fixed_matrices(
    parsed: ParsedFormula,
    fixed_formula,
    frame: pd.DataFrame,
    stacklevel: int = 5,
    response_label: str | None = None,
):
    """``(y, X, fe_names, dropped, spec)``: the response, the fixed-effect columns without
    aliased ones (dropped with a warning that names them) and formulaic's spec."""
    try:
        mm = fixed_formula.get_model_matrix(frame, na_action="raise")
    except Exception as exc:
        raise FormulaError(f"Cannot build the model matrices of {parsed.fixed!r}: {exc}") from exc
    if mm.lhs.shape[1] != 1:
        raise DataError(
            f"The response {parsed.response!r} must be one numeric column, but it expands "
            f"to {mm.lhs.shape[1]} columns {list(mm.lhs.columns)}."
        )
    y = np.asarray(mm.lhs, dtype=np.float64)[:, 0]
    rhs = mm.rhs
    if not np.all(np.isfinite(y)):
        name = response_label or parsed.response
        raise DataError(f"The response {name!r} contains infinite values.")

    X = np.asarray(rhs, dtype=np.float64)
    fe_names = [str(c) for c in rhs.columns]
    if X.shape[1] == 0:
        raise FormulaError(f"The fixed part {parsed.fixed!r} has no columns; use 'y ~ 1'.")
    if not np.all(np.isfinite(X)):
        raise DataError("The fixed-effect design contains infinite values (check transforms).")
    keep = _drop_aliased(X, fe_names)
    dropped = tuple(fe_names[j] for j in range(len(fe_names)) if j not in keep)
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column(s): {list(dropped)}. They are aliased with the other columns.",
            UserWarning,
            stacklevel=stacklevel,
        )
        X = X[:, keep]
        fe_names = [fe_names[j] for j in keep]
    return y, X, fe_names, dropped, rhs.model_spec


def _random_designs(
    terms,
    term_formulas,
    term_vars,
    frame: pd.DataFrame,
    n_formula_terms: int,
    observation_level: bool = False,
):
    """Per random term its :class:`TermDesign`, and per grouping factor its level codes
    and labels (each factor coded once, checked for enough levels; ``observation_level``
    allows a level per row, which a GLMM may use for overdispersion)."""
    n = len(frame)
    factors: dict[str, tuple[np.ndarray, pd.Index]] = {}
    term_designs = []
    for i, (term, formula_, variables) in enumerate(zip(terms, term_formulas, term_vars)):
        if term.name not in factors:
            c, lev = _factor(frame, term)
            if len(lev) < 2:
                raise DataError(
                    f"Grouping factor {term.name!r} has {len(lev)} level(s); a random effect "
                    "needs at least 2. Drop it from groups= or check the column."
                )
            if len(lev) >= n and not observation_level:
                raise DataError(
                    f"Grouping factor {term.name!r} has {len(lev)} levels for {n} rows: with "
                    "one row per level its variance cannot be told apart from the residual "
                    "variance. Drop it from groups=."
                )
            factors[term.name] = (c, lev)
        c, lev = factors[term.name]
        term_designs.append(
            _term_design(term, formula_, frame, c, lev, variables, from_groups=i >= n_formula_terms)
        )
    for name in factors:
        cols = [col for td in term_designs if td.factor == name for col in td.columns]
        repeated = sorted({col for col in cols if cols.count(col) > 1})
        if repeated:
            raise ModelSpecError(
                f"Grouping factor {name!r} gets column(s) {repeated} from more than one random "
                "term; each column may vary over a factor once."
            )
    return term_designs, factors


# Warnings from the steps of build_design point at the user's call: user, float64_scope,
# fit (or model_arrays, fit_many), build_design, the step: stacklevel 5 (a caller one
# frame deeper passes 6).


def build_design(
    formula: str,
    data: Any,
    groups: str | Sequence[str] | None = None,
    *,
    observation_level: bool = False,
    stacklevel: int = 5,
    missing: Mapping[str, np.ndarray] | None = None,
    response_label: str | None = None,
) -> Design:
    """Validate the inputs and build the arrays of ``formula`` with crossed ``groups``
    (lme4's ``lFormula``): random terms, formulas, the model frame, the fixed-effect
    matrices, the random-term designs.

    ``data``: a pandas, polars or other eager frame, or a dict of columns
    (:func:`~interlace._model.frames.as_pandas`). Rows with a missing value in any column
    the model uses are dropped, with a ``UserWarning`` that says how many (lme4's default
    ``na.action = na.omit``). ``missing``: other values the model uses (weights,
    offsets), each a boolean mask of ``data``'s rows where it is missing, by the name
    the warning gives it; those rows are dropped too. ``response_label``: how messages
    name the response column (a caller's stand-in for the user's response).
    """
    data = as_pandas(data, "data")
    parsed: ParsedFormula = parse_formula(formula)
    terms = _random_terms(parsed, groups)
    if data.shape[0] == 0:
        raise DataError("data is empty: the model needs at least a few rows.")
    fixed_formula, term_formulas = _parse_parts(parsed, terms)
    frame, fixed_vars, term_vars = _model_frame(
        data, parsed, terms, fixed_formula, term_formulas, stacklevel, missing, response_label
    )
    y, X, fe_names, dropped, spec = _fixed_matrices(
        parsed, fixed_formula, frame, stacklevel, response_label
    )
    term_designs, factors = _random_designs(
        terms, term_formulas, term_vars, frame, len(parsed.random), observation_level
    )
    if len(frame) <= X.shape[1]:
        raise DataError(f"{len(frame)} rows are too few for {X.shape[1]} fixed-effect columns.")
    return Design(
        y=y,
        X=X,
        fe_names=tuple(fe_names),
        terms=tuple(term_designs),
        factor_names=tuple(factors),
        codes=tuple(v[0] for v in factors.values()),
        levels=tuple(v[1] for v in factors.values()),
        row_index=frame.index,
        model_spec=spec,
        dropped_fe=dropped,
        formula=formula,
        response=parsed.response,
        fixed_variables=tuple(fixed_vars),
    )


def fixed_matrix_for(design: Design, newdata: pd.DataFrame) -> np.ndarray:
    """The fixed-effect matrix of ``newdata`` under the fitted model's coding and
    transform state (``scale(x)`` uses the fit's mean and sd, as R's ``predict``); NaN
    rows where a column the fixed part reads is missing.

    Raises :class:`DataError` when a categorical predictor has a level not seen in the
    fit (its effect was never estimated).
    """
    variables = design.fixed_variables or tuple(sorted(design.model_spec.required_variables))
    absent = [c for c in variables if c not in newdata.columns]
    if absent:
        raise MissingColumnError(
            f"newdata lacks column(s) {absent} that the fixed effects need. "
            f"Available columns: {list(newdata.columns)}."
        )
    return _newdata_matrix(
        design.model_spec,
        variables,
        newdata,
        len(design.fe_names),
        "the fixed effects",
        design.fe_names,
    )
