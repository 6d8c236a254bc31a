"""A linear mixed model's prior weights and offsets (lme4's ``lmer(weights=, offset=)``).

``weights=`` (a column name or one value per row, all > 0) gives row ``i`` the residual
variance ``sigma^2 / w_i``; offsets (``offset(expr)`` terms in the formula, any number,
and an ``offset=`` argument: a column name or one value per row) are a known part of the
mean, ``E[y] = offset + X beta + Z b``. The model fits ``y - offset``
(:attr:`Design.y_model`); fitted values and predictions include the offset. Weights,
offsets and their expressions are read as for GLMMs (:mod:`interlace._model.offsets`).
The caller's frame is never modified; rows with a missing value (NaN) in a column the
model uses, a weight or an offset are dropped with one warning, as lmer's ``na.action``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._base.errors import DataError
from .design import Design, build_design
from .formula import split_offsets
from .offsets import (
    argument_label,
    argument_name,
    formula_and_frame,
    missing_rows,
    offset_parts,
    per_row,
    refuse_infinite,
    row_labels,
)

__all__ = ["build_lmm_design", "build_weighted_design", "has_offset_terms"]


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
    labels = row_labels(data)  # a pandas Series argument is matched to these
    data, frame, (lhs, rhs, offset_terms) = formula_and_frame(formula, data)
    w = None if weights is None else per_row(weights, frame, "weights", labels)
    offsets = offset_parts(offset_terms, offset, frame, labels)
    off = sum((values for _, values in offsets), np.zeros(len(frame))) if offsets else None
    given = [] if w is None else [(argument_name(weights, "weights"), w)]
    design = build_design(
        f"{lhs} ~ {rhs}",
        frame,
        groups,
        stacklevel=stacklevel,
        missing=missing_rows([*given, *offsets]),  # dropped as lmer's na.action
    )
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
        weights_label=argument_label(weights),
        offset_label=argument_label(offset),
    )


def _check(w: np.ndarray | None, off: np.ndarray | None) -> None:
    refuse_infinite(w, off)
    if w is not None:
        if np.any(w <= 0):
            raise DataError(
                f"weights must be > 0 for a linear mixed model; {int(np.sum(w <= 0))} are not "
                "(a weight w gives its row residual variance sigma^2 / w). Drop rows with "
                "weight 0 from the data."
            )
