"""A linear mixed model's prior weights and offsets (lme4's ``lmer(weights=, offset=)``).

``weights=`` (a column name or one value per row, all > 0) gives row ``i`` the residual
variance ``sigma^2 / w_i``; offsets (``offset(expr)`` terms in the formula, any number,
and an ``offset=`` argument: a column name or one value per row) are a known part of the
mean, ``E[y] = offset + X beta + Z b``. The model fits ``y - offset``
(:attr:`Design.y_model`); fitted values and predictions include the offset.
Expressions are evaluated as for GLMMs
(:func:`~interlace._model.glmm_design.evaluate_expression`). The caller's frame is never
modified; rows dropped for missing values are dropped from weights and offsets too.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from .._base.errors import DataError, FormulaError
from .design import Design, build_design
from .formula import split_offsets
from .frames import as_pandas
from .glmm_design import evaluate_expression, per_row

__all__ = ["build_lmm_design", "build_weighted_design", "has_offset_terms", "new_offset"]


def has_offset_terms(formula: Any) -> bool:
    """Whether ``formula`` has ``offset(expr)`` terms (then it needs this module)."""
    return isinstance(formula, str) and bool(split_offsets(formula)[2])


def build_lmm_design(
    formula: str, data: Any, groups, weights=None, offset=None, stacklevel: int = 6
) -> Design:
    """A linear mixed model's design: :func:`build_weighted_design` when it has weights
    or offsets, else :func:`~interlace._model.design.build_design` (``stacklevel``: of
    the design's warnings; the default for a call from ``fit``)."""
    if weights is None and offset is None and not has_offset_terms(formula):
        return build_design(formula, data, groups, stacklevel=stacklevel)
    return build_weighted_design(formula, data, groups, weights, offset, stacklevel + 1)


def build_weighted_design(
    formula: str, data: Any, groups, weights=None, offset=None, stacklevel: int = 7
) -> Design:
    """:func:`~interlace._model.design.build_design` plus the model's prior weights and
    offsets (module docstring); ``stacklevel`` of the design's warnings (the default:
    called from ``fit`` through :func:`build_lmm_design`)."""
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string like 'y ~ x', got {type(formula).__name__}.")
    data = as_pandas(data, "data")
    if data.shape[0] == 0:
        raise DataError("data is empty: the model needs at least a few rows.")
    lhs, rhs, offset_terms = split_offsets(formula)
    frame = data.set_axis(pd.RangeIndex(len(data)), axis=0)  # positions; data untouched
    w = None if weights is None else per_row(weights, frame, "weights")
    off = None
    if offset is not None or offset_terms:
        off = np.zeros(len(frame)) if offset is None else per_row(offset, frame, "offset")
        for expr in offset_terms:
            off = off + evaluate_expression(expr, frame, "the offset")
    design = build_design(f"{lhs} ~ {rhs}", frame, groups, stacklevel=stacklevel)
    rows = np.asarray(design.row_index, dtype=np.int64)
    w = None if w is None else w[rows]
    off = None if off is None else off[rows]
    _check(w, off)
    return dataclasses.replace(
        design,
        formula=formula,
        row_index=data.index[rows],
        weights=w,
        offset=off,
        offset_terms=tuple(offset_terms),
        offset_argument=offset is not None,
    )


def _check(w: np.ndarray | None, off: np.ndarray | None) -> None:
    if w is not None:
        bad = ~np.isfinite(w)
        if bad.any():
            raise DataError(
                f"weights have {int(bad.sum())} missing or infinite values in rows the model "
                "uses; drop those rows or give every row a weight."
            )
        if np.any(w <= 0):
            raise DataError(
                f"weights must be > 0 for a linear mixed model; {int(np.sum(w <= 0))} are not "
                "(a weight w gives its row residual variance sigma^2 / w). Drop rows with "
                "weight 0 from the data."
            )
    if off is not None and not np.all(np.isfinite(off)):
        raise DataError(
            f"the offset has {int(np.sum(~np.isfinite(off)))} missing or infinite values in "
            "rows the model uses (log of 0?); drop those rows or fix the offset."
        )


def new_offset(design: Design, frame: pd.DataFrame, offset=None) -> np.ndarray | float:
    """The offsets of ``design``'s model for new rows ``frame`` (``predict(newdata)``):
    its ``offset(expr)`` terms evaluated there, plus ``offset`` (required, a column
    name or one value per row, when the model was fitted with ``offset=``)."""
    out: np.ndarray | float = 0.0
    for expr in design.offset_terms:
        out = out + evaluate_expression(expr, frame, "the offset")
    if design.offset_argument:
        if offset is None:
            raise DataError(
                "The model was fitted with offset=; pass offset= (one value per row of "
                "newdata) to predict for new data."
            )
        out = out + per_row(offset, frame, "offset")
    elif offset is not None:
        raise DataError("offset= applies to models fitted with offset=; this one was not.")
    return out
