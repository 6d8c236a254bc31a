"""Expressions and per-row arguments over a data frame: the offsets and prior weights of
linear and generalized linear mixed models (lme4's ``offset(expr)``, ``offset=``,
``weights=``).

Offsets are ``offset(expr)`` terms of the formula (any number; they add) and an
``offset=`` argument; ``weights=`` and ``offset=`` are a column name or one value per
row. Expressions are evaluated with the data's columns and numpy's ``np`` plus ``log``,
``exp``, ``sqrt``, ``log1p``, ``abs`` in scope. For new data (``predict``), the
formula's offset terms are evaluated from its columns, and a model fitted with
``offset=`` needs ``offset=`` again.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from .._base.errors import DataError, FormulaError, MissingColumnError
from .formula import split_offsets
from .frames import as_pandas

__all__ = [
    "argument_label",
    "evaluate_expression",
    "per_row",
    "formula_and_frame",
    "summed_offset",
    "new_offset",
]

_FUNCTIONS = {
    "np": np,
    "log": np.log,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "log1p": np.log1p,
    "abs": np.abs,
}


def evaluate_expression(expr: str, frame: pd.DataFrame, what: str) -> np.ndarray:
    """``expr`` evaluated over ``frame``'s columns (module docstring), as float64."""
    names = {}
    text = expr

    def backtick(m: re.Match) -> str:
        key = f"_col{len(names)}_"
        names[key] = m.group(1)
        return key

    text = re.sub(r"`([^`]+)`", backtick, text)
    scope: dict[str, Any] = dict(_FUNCTIONS)
    for col in frame.columns:
        if isinstance(col, str) and col.isidentifier():
            scope[col] = frame[col].to_numpy()
    for key, col in names.items():
        if col not in frame.columns:
            raise MissingColumnError(f"{what} names column {col!r}, which is not in the data.")
        scope[key] = frame[col].to_numpy()
    try:
        value = eval(compile(text, "<formula>", "eval"), {"__builtins__": {}}, scope)  # noqa: S307
    except NameError as exc:
        raise MissingColumnError(
            f"{what} {expr!r} reads a name that is not a column of the data: {exc}. "
            f"Available columns: {list(frame.columns)}."
        ) from exc
    except Exception as exc:
        raise FormulaError(f"Cannot evaluate {what} {expr!r}: {exc}") from exc
    out = np.broadcast_to(np.asarray(value, dtype=np.float64), (len(frame),))
    return np.array(out, dtype=np.float64)


def per_row(value, frame: pd.DataFrame, name: str) -> np.ndarray:
    """``weights=`` / ``offset=`` as one float per row of ``frame``: a column name or an
    array-like of the frame's length."""
    if isinstance(value, str):
        if value not in frame.columns:
            raise MissingColumnError(
                f"{name}={value!r} is not a column of the data. "
                f"Available columns: {list(frame.columns)}."
            )
        value = frame[value]
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}= must be numeric: {exc}") from exc
    if arr.ndim != 1 or arr.shape[0] != len(frame):
        raise DataError(
            f"{name}= has {arr.size} values in shape {arr.shape}; it needs one per row of the "
            f"data ({len(frame)})."
        )
    return arr


def argument_label(value) -> str | None:
    """How a summary names a ``weights=`` / ``offset=`` argument that :func:`per_row`
    accepted (lme4 prints the call's expression): the column name, or the count of values
    given; None when the argument was not given."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return f"<{np.size(value)} values>"


def formula_and_frame(formula: Any, data: Any) -> tuple[pd.DataFrame, pd.DataFrame, tuple]:
    """``(data, frame, (lhs, rhs, offset_terms))``: ``data`` as pandas (checked non-empty),
    a view of it indexed by row position (the caller's frame untouched) and the formula's
    sides with its offset terms split off (:func:`split_offsets`)."""
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string like 'y ~ x', got {type(formula).__name__}.")
    data = as_pandas(data, "data")
    if data.shape[0] == 0:
        raise DataError("data is empty: the model needs at least a few rows.")
    parts = split_offsets(formula)
    return data, data.set_axis(pd.RangeIndex(len(data)), axis=0), parts


def summed_offset(offset_terms, offset, frame: pd.DataFrame) -> np.ndarray | None:
    """The offset of every row of ``frame``: ``offset=`` plus the ``offset(expr)`` terms;
    None when there are neither."""
    if offset is None and not offset_terms:
        return None
    out = np.zeros(len(frame)) if offset is None else per_row(offset, frame, "offset")
    for expr in offset_terms:
        out = out + evaluate_expression(expr, frame, "the offset")
    return out


def new_offset(offset_terms, offset_argument: bool, frame: pd.DataFrame, offset=None):
    """A fitted model's offsets for new rows ``frame`` (``predict(newdata)``): its
    ``offset(expr)`` terms evaluated there, plus ``offset`` (required when the model was
    fitted with ``offset=``, refused when it was not); 0.0 when it has none."""
    if offset_argument and offset is None:
        raise DataError(
            "The model was fitted with offset=; pass offset= (one value per row of newdata) "
            "to predict for new data."
        )
    if offset is not None and not offset_argument:
        raise DataError("offset= applies to models fitted with offset=; this one was not.")
    out = summed_offset(offset_terms, offset, frame)
    return 0.0 if out is None else out
