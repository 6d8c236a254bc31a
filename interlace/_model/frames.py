"""Any data frame in, pandas out: the one place user frames are converted (inbound edge).

:func:`as_pandas` accepts a pandas DataFrame (returned as is), any eager frame that
`narwhals <https://narwhals-dev.github.io/narwhals/>`_ reads (a polars DataFrame, a
pyarrow Table, ...), or a dict of equal-length columns, and returns a pandas DataFrame
whose columns behave as the pandas columns of the same values do, so the rest of the
package sees pandas only. polars and pyarrow are never imported here: narwhals
recognises their objects when the user's code has loaded them.

Columns, one by one (nothing is written back to the caller's frame):

* Enum -> pandas categorical with the Enum's categories in their declared order (the
  first is the reference level, as the first category of a pandas categorical).
* Categorical -> pandas categorical. A pyarrow dictionary keeps its dictionary order;
  a polars Categorical has no category list of its own and sorts its values lexically,
  so its categories are sorted (as a string column's levels are).
* everything else -> the column's numpy values as a pandas Series: strings are pandas
  strings, nulls are NaN/None (the missing-value checks then treat them as pandas NaN),
  an integer column with nulls is float64 as in pandas, booleans stay booleans.

A lazy frame (polars LazyFrame, ...) is refused with a sentence that says to
``.collect()`` it: collecting may run a whole query, which is the caller's decision.
"""

from __future__ import annotations

from typing import Any

import narwhals.stable.v2 as nw
import numpy as np
import pandas as pd

from .._base.errors import DataError

__all__ = ["ACCEPTED", "as_pandas", "is_frame"]

ACCEPTED = (
    "a pandas DataFrame, a polars DataFrame, a pyarrow Table (or another eager "
    "frame narwhals supports), or a dict of equal-length columns"
)


def as_pandas(data: Any, name: str = "data") -> pd.DataFrame:
    """``data`` as a pandas DataFrame (a pandas DataFrame itself, not copied), or a
    :class:`DataError` naming what ``data`` is and what ``name`` accepts."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict):
        return _from_dict(data, name)
    frame = nw.from_native(data, pass_through=True)
    if isinstance(frame, nw.LazyFrame):
        raise DataError(
            f"{name} is a lazy frame ({_type_name(data)}); call .collect() on it first and "
            f"pass the collected DataFrame."
        )
    if not isinstance(frame, nw.DataFrame):
        hint = (
            " Name its columns: pandas.DataFrame(array, columns=[...])."
            if isinstance(data, np.ndarray)
            else ""
        )
        raise DataError(f"{name} must be {ACCEPTED}; got {_type_name(data)}.{hint}")
    return pd.DataFrame(
        {c: _column(frame.get_column(c)) for c in frame.columns}, columns=list(frame.columns)
    )


def is_frame(obj: Any) -> bool:
    """Is ``obj`` something :func:`as_pandas` reads as a frame (or refuses as a lazy one)?"""
    return isinstance(obj, (pd.DataFrame, dict)) or isinstance(
        nw.from_native(obj, pass_through=True), (nw.DataFrame, nw.LazyFrame)
    )


def _type_name(obj: Any) -> str:
    """``ndarray`` -> ``numpy.ndarray``, ``LazyFrame`` -> ``polars.LazyFrame``; builtins bare."""
    cls = type(obj)
    package = cls.__module__.split(".")[0]
    return cls.__name__ if package == "builtins" else f"{package}.{cls.__name__}"


def _column(series: nw.Series) -> pd.Series:
    """One narwhals column as the pandas column of the same values."""
    dtype = series.dtype
    values = series.to_numpy()
    if isinstance(dtype, nw.Enum):
        return pd.Series(pd.Categorical(values, categories=list(dtype.categories)))
    if isinstance(dtype, nw.Categorical):
        native = series.to_native()
        categories = (
            None
            if nw.dependencies.is_polars_series(native)
            else series.cat.get_categories().to_list()
        )
        return pd.Series(pd.Categorical(values, categories=categories))
    return pd.Series(values)


def _from_dict(data: dict, name: str) -> pd.DataFrame:
    """A dict of columns (lists, arrays, Series) as a DataFrame; scalars and columns of
    different lengths are refused with their names and lengths."""
    lengths: dict[Any, int] = {}
    for key, column in data.items():
        if isinstance(column, (str, bytes)) or not hasattr(column, "__len__"):
            raise DataError(
                f"{name} is a dict, so each value must be a column (a list or array), but "
                f"{key!r} is a single {type(column).__name__}."
            )
        lengths[key] = len(column)
    if len(set(lengths.values())) > 1:
        raise DataError(f"{name} is a dict whose columns must have equal lengths; got {lengths}.")
    try:
        return pd.DataFrame({k: _dict_column(v) for k, v in data.items()})
    except (ValueError, TypeError) as exc:
        raise DataError(f"{name} is a dict that pandas cannot read as columns: {exc}") from exc


def _dict_column(column: Any) -> Any:
    """A dict value as pandas reads it; a frame library's Series (polars, pyarrow) goes
    through :func:`_column` so that its categories survive."""
    if isinstance(column, (list, tuple, np.ndarray, pd.Series)):
        return column
    series = nw.from_native(column, series_only=True, pass_through=True)
    return _column(series) if isinstance(series, nw.Series) else column
