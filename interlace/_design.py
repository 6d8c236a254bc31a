"""From a formula and a DataFrame to the arrays a fit needs (the pandas edge, inbound).

Validates the input, drops incomplete rows (with a warning that says how many), builds
the fixed-effect matrix with formulaic, drops aliased fixed-effect columns as lme4 does,
and turns each grouping factor into integer level codes. The caller's DataFrame is never
modified: every step works on copies or new arrays.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import formulaic
import numpy as np
import pandas as pd

from ._errors import DataError, FormulaError, MissingColumnError, ModelSpecError
from ._formula import ParsedFormula, RandomTerm, parse_formula

__all__ = ["Design", "TermDesign", "build_design", "fixed_matrix_for", "term_matrix_for"]


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

    @property
    def nobs(self) -> int:
        return int(self.y.shape[0])


def _as_terms(groups: str | Sequence[str] | None) -> list[RandomTerm]:
    if groups is None:
        return []
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, str) for g in groups):
        raise ModelSpecError("groups= must be a column name or a list of column names.")
    return [RandomTerm(tuple(c.strip() for c in g.split(":")), "1") for g in groups]


def _factor(data: pd.DataFrame, term: RandomTerm) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and sorted level labels of a grouping factor (``a:b`` = interaction)."""
    if len(term.columns) == 1:
        col = data[term.columns[0]]
    else:
        col = data[list(term.columns)].astype(str).agg(":".join, axis=1)
    codes, levels = pd.factorize(col, sort=True)
    return codes.astype(np.int64), pd.Index(levels, name=term.name)


def term_matrix_for(term: TermDesign, newdata: pd.DataFrame) -> np.ndarray:
    """The columns of random term ``term`` for ``newdata`` (same coding as in the fit)."""
    absent = [c for c in sorted(term.spec.required_variables) if c not in newdata.columns]
    if absent:
        raise MissingColumnError(
            f"newdata lacks column(s) {absent} of the random term ({term.lhs} | {term.factor}); "
            "add them, or use include_re=False for population-level predictions."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            mm = term.spec.get_model_matrix(newdata, na_action="ignore")
        except Warning as w:
            raise DataError(f"newdata has a level the random term ({term.lhs} | "
                            f"{term.factor}) never saw: {w}") from None
    return np.asarray(mm, dtype=np.float64)


def _term_design(term: RandomTerm, formula_, frame: pd.DataFrame, codes: np.ndarray,
                 levels: pd.Index) -> TermDesign:
    """The columns of one random term; formulaic's ``Intercept`` is named as in lme4."""
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
    return TermDesign(factor=term.name, lhs=term.lhs, codes=codes, levels=levels, X=X,
                      columns=columns, spec=mm.model_spec)


def _check_numeric_response(col: pd.Series, name: str) -> None:
    numeric = pd.api.types.is_numeric_dtype(col)
    if (not numeric or pd.api.types.is_bool_dtype(col) or pd.api.types.is_complex_dtype(col)):
        raise DataError(
            f"The response {name!r} must be numeric (real-valued), but its dtype is "
            f"{col.dtype}. Convert it with pd.to_numeric() or pick a numeric column."
        )


def _drop_aliased(X: np.ndarray, names: list[str], tol: float = 1e-7) -> list[int]:
    """Indices of columns to keep: each column is kept unless it lies in the span of the
    columns kept before it (lme4 keeps the first columns of a pivoted QR the same way)."""
    keep: list[int] = []
    Q = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        v = X[:, j].astype(float)
        norm = np.linalg.norm(v)
        if norm == 0:
            continue
        r = v - Q @ (Q.T @ v)
        r = r - Q @ (Q.T @ r)  # re-orthogonalise once for stability
        if np.linalg.norm(r) > tol * norm:
            keep.append(j)
            Q = np.column_stack([Q, r / np.linalg.norm(r)])
    return keep


def build_design(
    formula: str,
    data: pd.DataFrame,
    groups: str | Sequence[str] | None = None,
) -> Design:
    """Validate the inputs and build the arrays of ``formula`` with crossed ``groups``.

    Rows with a missing value in any column the model uses are dropped, with a
    ``UserWarning`` that says how many (lme4's default ``na.action = na.omit``).
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    parsed: ParsedFormula = parse_formula(formula)
    terms = list(parsed.random) + _as_terms(groups)
    keys = [(t.name, t.lhs.replace(" ", "")) for t in terms]
    dupes = sorted({str(t) for t, key in zip(terms, keys) if keys.count(key) > 1})
    if dupes:
        raise ModelSpecError(f"Random term(s) {dupes} are given more than once.")
    if not terms:
        raise ModelSpecError(
            "The model has no random effects: pass groups=['g'] or write '(1 | g)' in the "
            "formula. For a model without random effects use ordinary least squares."
        )
    if data.shape[0] == 0:
        raise DataError("data is empty: the model needs at least a few rows.")

    try:
        fixed_formula = formulaic.Formula(parsed.fixed)
    except Exception as exc:  # formulaic raises its own parser errors
        raise FormulaError(f"Cannot parse the fixed part {parsed.fixed!r}: {exc}") from exc
    group_cols = [c for t in terms for c in t.columns]
    term_formulas = []
    for t in terms:
        try:
            term_formulas.append(formulaic.Formula(t.lhs))
        except Exception as exc:
            raise FormulaError(f"Cannot parse the random term {str(t)!r}: {exc}") from exc
    group_cols += [v for f in term_formulas for v in sorted(f.required_variables)]
    position = {c: i for i, c in enumerate(data.columns)}

    def in_data_order(names) -> list[str]:
        return sorted(names, key=lambda c: (position.get(c, len(position)), str(c)))

    needed = list(dict.fromkeys([*in_data_order(fixed_formula.lhs.required_variables),
                                 *in_data_order(fixed_formula.rhs.required_variables),
                                 *group_cols]))
    missing = [c for c in needed if c not in data.columns]
    for term, formula_ in zip(terms, term_formulas):
        absent = [c for c in (*term.columns, *sorted(formula_.required_variables))
                  if c not in data.columns]
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

    if parsed.response in frame.columns:  # a plain column (not a transform of one)
        _check_numeric_response(frame[parsed.response], parsed.response)
    incomplete = frame.isna().any(axis=1)
    if incomplete.all():
        raise DataError("Every row has a missing value in a column the model uses; nothing to fit.")
    if incomplete.any():
        bad_cols = [c for c in needed if frame[c].isna().any()]
        warnings.warn(
            f"Dropped {int(incomplete.sum())} of {len(frame)} rows with missing values "
            f"(NaN/None) in {bad_cols}. Impute or drop them yourself to silence this.",
            UserWarning,
            stacklevel=4,  # user, float64_scope, fit or model_arrays, here
        )
        frame = frame.loc[~incomplete]

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
        raise DataError(f"The response {parsed.response!r} contains infinite values.")

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
            stacklevel=4,  # user, float64_scope, fit or model_arrays, here
        )
        X = X[:, keep]
        fe_names = [fe_names[j] for j in keep]

    n = len(frame)
    factors: dict[str, tuple[np.ndarray, pd.Index]] = {}
    term_designs = []
    for term, formula_ in zip(terms, term_formulas):
        if term.name not in factors:
            c, lev = _factor(frame, term)
            if len(lev) < 2:
                raise DataError(
                    f"Grouping factor {term.name!r} has {len(lev)} level(s); a random effect "
                    "needs at least 2. Drop it from groups= or check the column."
                )
            if len(lev) >= n:
                raise DataError(
                    f"Grouping factor {term.name!r} has {len(lev)} levels for {n} rows: with "
                    "one row per level its variance cannot be told apart from the residual "
                    "variance. Drop it from groups=."
                )
            factors[term.name] = (c, lev)
        c, lev = factors[term.name]
        term_designs.append(_term_design(term, formula_, frame, c, lev))
    for name in factors:
        cols = [col for td in term_designs if td.factor == name for col in td.columns]
        repeated = sorted({col for col in cols if cols.count(col) > 1})
        if repeated:
            raise ModelSpecError(
                f"Grouping factor {name!r} gets column(s) {repeated} from more than one random "
                "term; each column may vary over a factor once."
            )
    if n <= X.shape[1]:
        raise DataError(f"{n} rows are too few for {X.shape[1]} fixed-effect columns.")

    return Design(
        y=y, X=X, fe_names=tuple(fe_names), terms=tuple(term_designs),
        factor_names=tuple(factors), codes=tuple(v[0] for v in factors.values()),
        levels=tuple(v[1] for v in factors.values()), row_index=frame.index,
        model_spec=rhs.model_spec, dropped_fe=dropped, formula=formula,
        response=parsed.response,
    )


def fixed_matrix_for(design: Design, newdata: pd.DataFrame) -> np.ndarray:
    """The fixed-effect matrix of ``newdata`` under the fitted model's coding.

    Raises :class:`DataError` when a categorical predictor has a level not seen in the
    fit (its effect was never estimated).
    """
    absent = [c for c in sorted(design.model_spec.required_variables) if c not in newdata.columns]
    if absent:
        raise MissingColumnError(
            f"newdata lacks column(s) {absent} that the fixed effects need. "
            f"Available columns: {list(newdata.columns)}."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            mm = design.model_spec.get_model_matrix(newdata, na_action="ignore")
        except Warning as w:
            raise DataError(
                f"newdata has a level of a categorical predictor that the model never saw "
                f"({w}). Predictions for it are undefined; remove those rows or refit."
            ) from None
        except Exception as exc:
            raise DataError(f"Cannot build fixed effects for newdata: {exc}") from exc
    cols = [str(c) for c in mm.columns]
    idx = [cols.index(name) for name in design.fe_names]
    return np.asarray(mm, dtype=np.float64)[:, idx]
