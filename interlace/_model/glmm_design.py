"""From a GLMM formula and a data frame to a design, prior weights and an offset (the
pandas edge, inbound, for ``glmer``-style models).

Responses as lme4 takes them (``glmer``'s ``family$initialize``):

* binomial: 0/1 numbers, booleans, or a factor / string column (its first level among
  the rows the model uses, in the factor's order or sorted as R sorts a string column's
  levels, is failure, every other level success); a proportion with
  ``weights=`` trial counts; or ``cbind(successes, failures) ~ ...`` (proportion
  ``s / (s + f)``, weights ``s + f``);
* Poisson and negative binomial: non-negative counts.

Offsets: ``offset(expr)`` terms in the formula (any number; they add) and an
``offset=`` argument (a column name or an array with one value per row of ``data``).
``weights=`` likewise. Expressions (``cbind`` arguments, offsets) are evaluated with the
data's columns and numpy's ``np`` plus ``log``, ``exp``, ``sqrt``, ``log1p``, ``abs``
and ``I`` in scope. The caller's frame is never modified. Rows with a missing value
(NaN / None) in a column the model uses, in the response (a ``cbind`` count, an
expression such as ``s / t`` that is 0/0), a weight or an offset are dropped with one
warning that names them (as glmer's ``na.action``); a factor or string response is
coded over the rows left.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .._base.errors import DataError, FormulaError, ModelSpecError
from .._core.family import Family
from .design import Design, build_design
from .offsets import (
    argument_label,
    argument_name,
    evaluate_expression,
    formula_and_frame,
    missing_rows,
    offset_parts,
    per_row,
    refuse_infinite,
    row_labels,
)

__all__ = [
    "GlmmDesign",
    "build_glmm_design",
    "check_responses",
]

_RESPONSE = "_interlace_response_"
_STACK = 5  # user, float64_scope, fit, build_glmm_design, the check


class GlmmDesign(NamedTuple):
    design: Design  # y: binomial proportions or counts; formula as the user wrote it
    prior_weights: np.ndarray  # (n,)
    offset: np.ndarray  # (n,) all offsets summed
    offset_terms: tuple[str, ...]  # offset(expr) expressions, for predict(newdata)
    offset_argument: bool  # whether offset= was given (predict(newdata) then needs it)


def _binary_codes(col: pd.Series, name: str) -> np.ndarray:
    """A boolean, factor or string response as 0/1: the first level that occurs (R's
    factor order; call it with the rows the model uses) is failure, every other level
    success. More than two levels are pooled so, as glm and glmer do, with a warning that
    names them (a response coded with one level too many is a common slip)."""
    if pd.api.types.is_bool_dtype(col):
        return col.astype(float).to_numpy()
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.cat.remove_unused_categories()
        _warn_pooled(list(col.cat.categories), name)
        codes = col.cat.codes.to_numpy()
        return np.where(codes < 0, np.nan, (codes > 0).astype(float))
    levels = sorted(col.dropna().unique(), key=str)
    if len(levels) < 2:
        raise DataError(
            f"The binomial response {name!r} has a single value ({levels[0] if levels else 'none'}"
            "): there is nothing to fit."
        )
    _warn_pooled(levels, name)
    return np.where(col.isna(), np.nan, (col != levels[0]).astype(float))


def _warn_pooled(levels: list, name: str) -> None:
    if len(levels) > 2:
        shown = ", ".join(repr(v) for v in levels[1:6]) + (", ..." if len(levels) > 6 else "")
        warnings.warn(
            f"The binomial response {name!r} has {len(levels)} levels: {levels[0]!r} is "
            f"coded as failure and every other level ({shown}) as success, as glm and glmer "
            "do. Recode it to two levels (or 0/1) if that is not the outcome you mean.",
            UserWarning,
            stacklevel=_STACK + 1,  # user, float64_scope, fit, build_glmm_design, codes, here
        )


def build_glmm_design(
    formula: str,
    data: Any,
    groups,
    family: Family,
    weights=None,
    offset=None,
) -> GlmmDesign:
    """Validate and build a GLMM's design (module docstring)."""
    labels = row_labels(data)  # a pandas Series argument is matched to these
    data, frame, (lhs, rhs, offset_terms) = formula_and_frame(formula, data)
    n = len(frame)
    w = np.ones(n) if weights is None else per_row(weights, frame, "weights", labels)
    offsets = offset_parts(offset_terms, offset, frame, labels)
    off = sum((values for _, values in offsets), np.zeros(n))
    given = [] if weights is None else [(argument_name(weights, "weights"), w)]
    weights_source = "weight in weights="
    cbind = re.fullmatch(r"cbind\s*\((.*)\)", lhs, flags=re.S)
    response, label, coded = lhs, None, None
    if cbind:
        if family.name != "binomial":
            raise FormulaError(
                f"cbind(successes, failures) is a binomial response, not {family.name}."
            )
        args = _split_arguments(cbind.group(1))
        if len(args) != 2:
            raise FormulaError(f"cbind() takes two columns, successes and failures; got {lhs!r}.")
        s, f = (evaluate_expression(a, frame, "the response") for a in args)
        if weights is not None:
            raise ModelSpecError(
                "weights= with a cbind(successes, failures) response: the trials are "
                "successes + failures already; drop weights=."
            )
        if np.any(np.isinf(s) | np.isinf(f)):
            raise DataError(f"The counts of {lhs} must be finite; some are infinite.")
        for what, arg, counts in (("successes", args[0], s), ("failures", args[1], f)):
            negative = np.asarray(counts < 0)  # NaN (a missing count) compares False
            if negative.any():
                raise DataError(
                    f"The {what} of {lhs}, {arg.strip()}, are negative in "
                    f"{int(negative.sum())} row(s) (e.g. {counts[negative][0]:g}): both "
                    "counts must be >= 0"
                    + (
                        " (cbind(successes, failures), not cbind(successes, trials))."
                        if what == "failures"
                        else "."
                    )
                )
        trials = s + f  # NaN where a count is missing: the row is dropped
        y = np.where(trials > 0, s / np.where(trials > 0, trials, 1.0), 0.0)
        y[np.isnan(trials)] = np.nan
        w, weights_source = trials, f"trial count (successes + failures) of {lhs}"
        frame = frame.assign(**{_RESPONSE: y})
        response, label = _RESPONSE, lhs
    elif (
        family.name == "binomial"
        and lhs.strip("`") in frame.columns
        and (
            pd.api.types.is_bool_dtype(frame[lhs.strip("`")])
            or not pd.api.types.is_numeric_dtype(frame[lhs.strip("`")])
        )
    ):
        # coded once the rows the model uses are known: until then it only marks the
        # missing ones
        coded = lhs.strip("`")
        frame = frame.assign(**{_RESPONSE: np.where(frame[coded].isna(), np.nan, 0.0)})
        response, label = _RESPONSE, coded
    elif re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`", lhs) is None:
        # an expression such as incidence / size (formulaic would read "/" as nesting);
        # NaN (0 / 0) marks the row missing, as in R
        with np.errstate(divide="ignore", invalid="ignore"):
            y = evaluate_expression(lhs, frame, "the response")
        frame = frame.assign(**{_RESPONSE: y})
        response, label = _RESPONSE, lhs
    # a factor with a level per row is an observation-level effect: with a fixed
    # dispersion it models overdispersion (lme4 allows it for GLMMs, not for LMMs)
    design = build_design(
        f"{response} ~ {rhs}",
        frame,
        groups,
        observation_level=True,
        stacklevel=6,  # user, float64_scope, fit, build_glmm_design, build_design, the step
        missing=missing_rows([*given, *offsets]),
        response_label=label,
    )
    rows = np.asarray(design.row_index, dtype=np.int64)
    w, off = w[rows], off[rows]
    design = dataclasses.replace(
        design,
        y=design.y if coded is None else _binary_codes(frame[coded].iloc[rows], coded),
        formula=formula,
        response=lhs,
        row_index=data.index[rows],
        weights_label=argument_label(weights),
        offset_label=argument_label(offset),
    )
    _check(design, family, w, off, weights_source)
    return GlmmDesign(design, w, off, tuple(offset_terms), offset is not None)


def _split_arguments(text: str) -> list[str]:
    depth, cuts = 0, []
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            cuts.append(i)
    bounds = [-1, *cuts, len(text)]
    return [text[a + 1 : b].strip() for a, b in zip(bounds, bounds[1:])]


def _check(
    design: Design, family: Family, w: np.ndarray, off: np.ndarray, weights_source: str
) -> None:
    """Refuse what no GLMM can fit; warn where glmer warns (rows with a missing weight or
    offset are dropped already; ``weights_source``: what a weight is, for a message)."""
    y, name = design.y, design.response
    refuse_infinite(w, off)
    if np.any(w < 0):
        raise DataError(f"weights must be >= 0; {int(np.sum(w < 0))} are negative.")
    if not np.any(w > 0):
        raise DataError(
            f"Every {weights_source} is 0 in the rows the model uses, so no row "
            "contributes to the fit; a GLMM needs rows with a positive weight."
        )
    check_responses(y[:, None], family, w, [name], stacklevel=_STACK + 1)
    used = w > 0
    if family.name == "binomial":
        if np.all(y[used] == 0) or np.all(y[used] == 1):
            value = "0" if np.all(y[used] == 0) else "1"
            raise DataError(
                f"Every response of {name!r} is {value}: the intercept would run to "
                f"{'-' if value == '0' else '+'}infinity. A binomial model needs both outcomes."
            )
    else:
        if np.all(y[used] == 0):
            raise DataError(f"Every count of {name!r} is 0: the intercept would run to -infinity.")


def check_responses(
    Y: np.ndarray, family: Family, w: np.ndarray, names, stacklevel: int = _STACK
) -> None:
    """Refuse responses (columns of ``Y``, labelled ``names``) outside the family's
    support; warn, as glmer does, where they are not whole numbers (``stacklevel``: of
    the warning, counted from here)."""
    cols = np.asarray(list(names), dtype=object)
    if family.name == "binomial":
        out = np.any((Y < 0) | (Y > 1), axis=0)
        if out.any():
            j = int(np.argmax(out))
            raise DataError(
                f"The binomial response {cols[j]!r} has values outside [0, 1] (e.g. "
                f"{Y[(Y[:, j] < 0) | (Y[:, j] > 1), j][0]:.15g}): give 0/1 outcomes, proportions "
                "with weights= trials, or cbind(successes, failures)."
            )
        successes = Y * w[:, None]
        odd = np.any(
            np.abs(successes - np.round(successes)) > 1e-7 * np.maximum(1.0, w)[:, None], axis=0
        )
        if odd.any():
            warnings.warn(
                f"non-integer #successes in a binomial GLMM ({cols[odd][0]!r} times the "
                "weights is not a whole number in some rows); the fit treats them as given, "
                "as glmer does.",
                UserWarning,
                stacklevel=stacklevel,
            )
        return
    kind = "Poisson" if family.name == "poisson" else "negative binomial"
    negative = np.any(Y < 0, axis=0)
    if negative.any():
        j = int(np.argmax(negative))
        raise DataError(
            f"The {kind} response {cols[j]!r} has negative values (e.g. "
            f"{Y[Y[:, j] < 0, j][0]:.15g}); counts are >= 0."
        )
    odd = np.any(Y != np.round(Y), axis=0)
    if odd.any():
        warnings.warn(
            f"The {kind} response {cols[odd][0]!r} has non-integer values; the fit treats "
            "them as given, as glmer does (with a warning there too).",
            UserWarning,
            stacklevel=stacklevel,
        )
