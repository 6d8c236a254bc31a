"""Expressions and per-row arguments over a data frame: the offsets and prior weights of
linear and generalized linear mixed models (lme4's ``offset(expr)``, ``offset=``,
``weights=``).

A pandas ``Series`` given for ``weights=`` or ``offset=`` with pandas ``data`` is matched
to the data's rows by index label, as pandas aligns (``data.assign(w=series)``): a
Series in another row order, or one that covers more rows than ``data`` (a column of the
frame ``data`` was subset from), gives each row its own value. A Series without a label
of some row of ``data`` (or, where the orders differ, with duplicate labels) is refused
with the remedy (``.to_numpy()`` takes its values in row order). Data without labels
(polars, a dict of columns) and numpy arrays take values in row order.

Offsets are ``offset(expr)`` terms of the formula (any number; they add) and an
``offset=`` argument; ``weights=`` and ``offset=`` are a column name or one value per
row. Expressions are evaluated with the data's columns and numpy's ``np`` plus ``log``,
``exp``, ``sqrt``, ``log1p``, ``abs`` and ``I`` (as is) in scope; a row where a column
an expression reads is missing gives NaN (as R's ``NA`` propagates: numpy's
``nan > 0`` would be False). A missing value (NaN) of a weight or offset marks its row
as missing: the model drops it, as lme4's ``na.action``. For new data (``predict``), the
formula's offset terms are evaluated from its columns, and a model fitted with
``offset=`` needs ``offset=`` again.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from .._base.errors import DataError, FormulaError, MissingColumnError
from .formula import split_offsets
from .frames import as_pandas

__all__ = [
    "argument_label",
    "argument_name",
    "evaluate_expression",
    "per_row",
    "row_labels",
    "aligned",
    "formula_and_frame",
    "missing_rows",
    "refuse_infinite",
    "offset_parts",
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
    "I": lambda value: value,  # formulaic's (and R's) I(): the value as is
}


def evaluate_expression(expr: str, frame: pd.DataFrame, what: str) -> np.ndarray:
    """``expr`` evaluated over ``frame``'s columns (module docstring), as float64; NaN
    in rows where a column it reads is missing."""
    names = {}
    text = expr

    def backtick(m: re.Match) -> str:
        key = f"_col{len(names)}_"
        names[key] = m.group(1)
        return key

    text = re.sub(r"`([^`]+)`", backtick, text)
    scope: dict[str, Any] = dict(_FUNCTIONS)
    columns: dict[str, Any] = {}  # name in scope -> column
    for col in frame.columns:
        if isinstance(col, str) and col.isidentifier():
            columns[col] = col
    for key, col in names.items():
        if col not in frame.columns:
            raise MissingColumnError(f"{what} names column {col!r}, which is not in the data.")
        columns[key] = col
    scope.update({key: frame[col].to_numpy() for key, col in columns.items()})
    try:
        value = eval(compile(text, "<formula>", "eval"), {"__builtins__": {}}, scope)  # noqa: S307
    except NameError as exc:
        raise MissingColumnError(
            f"{what} {expr!r} reads a name that is not a column of the data: {exc}. "
            f"Available columns: {list(frame.columns)}."
        ) from exc
    except Exception as exc:
        raise FormulaError(f"Cannot evaluate {what} {expr!r}: {exc}") from exc
    out = np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), (len(frame),)))
    names_read = {n.id for n in ast.walk(ast.parse(text, mode="eval")) if isinstance(n, ast.Name)}
    read = [columns[name] for name in names_read if name in columns]
    if read:
        out[frame[read].isna().any(axis=1).to_numpy()] = np.nan
    return out


def row_labels(data: Any) -> pd.Index | None:
    """The labels a pandas ``Series`` argument is matched to: a pandas frame's index;
    None for data without row labels (polars, a dict of columns: values in row order)."""
    return data.index if isinstance(data, pd.DataFrame) else None


def aligned(value: Any, labels: pd.Index | None, name: str) -> Any:
    """A pandas ``Series`` or ``DataFrame`` ``value`` in the order of the rows labelled
    ``labels`` (module docstring); anything else, or ``labels=None``, as it is."""
    if labels is None or not isinstance(value, (pd.Series, pd.DataFrame)):
        return value
    index = value.index
    if index.equals(labels):
        return value
    absent = labels[~labels.isin(index)]
    if len(absent) == 0 and index.is_unique and labels.is_unique:
        return value.reindex(labels)
    kind = type(value).__name__
    problem = (
        f"{len(absent)} row label(s) of data, e.g. {absent[0]!r}, are not in its index"
        if len(absent)
        else "its index or data's has duplicate labels, in another order"
    )
    raise DataError(
        f"{name} is a pandas {kind} whose index does not match data's rows: {problem}. "
        f"A pandas {kind} is matched to data's rows by index label, as pandas aligns; "
        "index it as data is, or pass .to_numpy() to take its values in row order."
    )


def per_row(value, frame: pd.DataFrame, name: str, labels: pd.Index | None = None) -> np.ndarray:
    """``weights=`` / ``offset=`` as one float per row of ``frame``: a column name or an
    array-like of the frame's length; a pandas ``Series`` matched to the rows labelled
    ``labels`` (:func:`aligned`; None: in row order)."""
    if isinstance(value, str):
        if value not in frame.columns:
            raise MissingColumnError(
                f"{name}={value!r} is not a column of the data. "
                f"Available columns: {list(frame.columns)}."
            )
        value = frame[value]
    else:
        value = aligned(value, labels, f"{name}=")
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


def argument_name(value, name: str) -> str:
    """How the dropped-rows warning names a ``weights=`` / ``offset=`` argument: its
    column name, or ``name``."""
    return value if isinstance(value, str) else name


def missing_rows(named: Iterable[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per name, the rows where its values are missing (NaN): the ``missing`` of
    :func:`~interlace._model.design.build_design` for weights and offsets."""
    out: dict[str, np.ndarray] = {}
    for name, values in named:
        out[name] = out.get(name, np.zeros(len(values), dtype=bool)) | np.isnan(values)
    return out


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


def offset_parts(
    offset_terms, offset, frame: pd.DataFrame, labels: pd.Index | None = None
) -> list[tuple[str, np.ndarray]]:
    """Each offset of ``frame``'s rows, named as the dropped-rows warning names it:
    ``offset=`` (:func:`argument_name`; ``labels``: as :func:`per_row`), then each
    ``offset(expr)`` term as written."""
    parts = []
    if offset is not None:
        parts.append((argument_name(offset, "offset"), per_row(offset, frame, "offset", labels)))
    for expr in offset_terms:
        parts.append((f"offset({expr})", evaluate_expression(expr, frame, "the offset")))
    return parts


def summed_offset(
    offset_terms, offset, frame: pd.DataFrame, labels: pd.Index | None = None
) -> np.ndarray | None:
    """The offset of every row of ``frame``: ``offset=`` plus the ``offset(expr)`` terms;
    None when there are neither (``labels``: as :func:`per_row`)."""
    parts = offset_parts(offset_terms, offset, frame, labels)
    return sum((values for _, values in parts), np.zeros(len(frame))) if parts else None


def new_offset(offset_terms, offset_argument: bool, frame: pd.DataFrame, offset=None, labels=None):
    """A fitted model's offsets for new rows ``frame`` (``predict(newdata)``): its
    ``offset(expr)`` terms evaluated there, plus ``offset`` (required when the model was
    fitted with ``offset=``, refused when it was not; ``labels``: as :func:`per_row`);
    0.0 when it has none."""
    if offset_argument and offset is None:
        raise DataError(
            "The model was fitted with offset=; pass offset= (one value per row of newdata) "
            "to predict for new data."
        )
    if offset is not None and not offset_argument:
        raise DataError("offset= applies to models fitted with offset=; this one was not.")
    out = summed_offset(offset_terms, offset, frame, labels)
    return 0.0 if out is None else out


def refuse_infinite(w: np.ndarray | None, off: np.ndarray | None) -> None:
    """A :class:`DataError` for infinite weights or offsets in the rows a model uses
    (missing ones mark their rows missing and are dropped before: :func:`missing_rows`)."""
    if w is not None and not np.all(np.isfinite(w)):
        raise DataError(
            f"weights have {int(np.sum(~np.isfinite(w)))} infinite values in rows the model "
            "uses; give each row a finite weight."
        )
    if off is not None and not np.all(np.isfinite(off)):
        log0 = " (-inf: a log of 0?)" if np.any(off == -np.inf) else ""
        raise DataError(
            f"the offset is infinite in {int(np.sum(~np.isfinite(off)))} rows the model "
            f"uses{log0}; an offset must be finite: fix those values or drop the rows."
        )
