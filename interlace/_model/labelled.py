"""A fit's numbers labelled for pandas: variance components, random effects by level,
and the random part of a prediction for new data (shared by the LMM and GLMM results).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._base.errors import MissingColumnError, ModelSpecError
from .design import Design, match_levels, term_matrix_for
from .varcorr import term_covariances

__all__ = [
    "variance_components",
    "random_effects",
    "level_coefficients",
    "random_part_for",
    "included_factors",
]


def included_factors(design: Design, include_re) -> tuple[str, ...]:
    """The grouping factors whose random effects a prediction adds: all of them
    (``True``), none (``False``), or those named (a factor's name or a list of names:
    lme4's ``re.form = ~ (1 | g)``, every term of ``g`` included)."""
    if isinstance(include_re, (bool, np.bool_)):
        return tuple(design.factor_names) if include_re else ()
    if isinstance(include_re, str):
        names = [include_re]
    elif isinstance(include_re, (list, tuple, set, pd.Index, np.ndarray)):
        names = list(include_re)
    else:
        names = [None]  # refused below
    unknown = [n for n in names if n not in design.factor_names]
    if unknown or not all(isinstance(n, str) for n in names):
        raise ModelSpecError(
            f"include_re must be True, False or grouping factor name(s) of the model "
            f"({', '.join(map(repr, design.factor_names))}); got {include_re!r}."
        )
    return tuple(names)


def random_part_for(
    design: Design,
    blups: Sequence[np.ndarray],
    frame: pd.DataFrame | None,
    stacklevel: int = 4,
    factors: Sequence[str] | None = None,
):
    """``sum_j Z_j b_j`` per row, over the terms of ``factors`` (None: every term): of the
    fitted rows (``frame`` None), or of ``frame`` coded as the fit was, with the BLUPs of
    each row's level matched by label (levels not seen in the fit, or missing, get 0: the
    population level, with a warning at ``stacklevel`` (of the warning call) for missing
    ones: 4 reaches the caller of a ``predict`` that calls this)."""
    chosen = [(t, b) for t, b in zip(design.terms, blups) if factors is None or t.factor in factors]
    if frame is None:
        n = design.nobs
        return sum((np.sum(t.X * b[t.codes], axis=1) for t, b in chosen), np.zeros(n))
    out = np.zeros(len(frame))
    positions: dict[str, np.ndarray] = {}
    for term, blup in chosen:
        if term.factor not in positions:
            positions[term.factor] = _level_positions(
                frame,
                term.factor,
                term.group_columns or tuple(term.factor.split(":")),
                term.levels,
                stacklevel,
            )
        Xr = term_matrix_for(term, frame)
        pos = positions[term.factor]
        b = np.where((pos >= 0)[:, None], blup[np.maximum(pos, 0)], 0.0)
        out = out + np.sum(Xr * b, axis=1)
    return out


def _level_positions(
    frame: pd.DataFrame, name: str, cols: Sequence[str], levels: pd.Index, stacklevel: int
) -> np.ndarray:
    """Each row's position in ``levels`` of factor ``name`` (made of columns ``cols``),
    matched by label across int / float / str / category; -1 for a level not seen in the
    fit (BLUP 0, no warning: the results page's rule) or a missing value (BLUP 0 and a
    ``UserWarning`` that counts the rows)."""
    cols = list(cols)
    absent = [c for c in cols if c not in frame.columns]
    if absent:
        raise MissingColumnError(
            f"newdata lacks grouping column(s) {absent}; add them, or use include_re=False "
            "for population-level predictions."
        )
    pos, missing = match_levels(frame, cols, levels)
    if missing.any():
        warnings.warn(
            f"{int(missing.sum())} of {len(frame)} rows of newdata have a missing value "
            f"(NaN/None) in grouping column(s) {cols}: their random effects for {name!r} "
            "are set to 0 (population level).",
            UserWarning,
            stacklevel=stacklevel,
        )
    return pos


def _factor_terms(design: Design, name: str) -> list[int]:
    return [i for i, t in enumerate(design.terms) if t.factor == name]


def _intercept_only(design: Design, name: str) -> bool:
    idx = _factor_terms(design, name)
    return len(idx) == 1 and design.terms[idx[0]].columns == ("(Intercept)",)


def variance_components(
    design: Design, theta: np.ndarray, sigma2: float
) -> dict[str, float | pd.DataFrame]:
    """Per factor: the variance (intercept only) or the covariance DataFrame
    ``sigma^2 T T'`` over all its terms (block diagonal across terms)."""
    covs = [c[0] for c in term_covariances(theta, np.sqrt(sigma2), design.terms)]
    out: dict[str, float | pd.DataFrame] = {}
    for name in design.factor_names:
        idx = _factor_terms(design, name)
        if _intercept_only(design, name):
            out[name] = float(covs[idx[0]][0, 0])
            continue
        cols = [c for i in idx for c in design.terms[i].columns]
        full = np.zeros((len(cols), len(cols)))
        start = 0
        for i in idx:
            k = len(covs[i])
            full[start : start + k, start : start + k] = covs[i]
            start += k
        out[name] = pd.DataFrame(full, index=cols, columns=cols)
    return out


def level_coefficients(
    design: Design, fe_params: pd.Series, blups: Sequence[np.ndarray]
) -> dict[str, pd.DataFrame]:
    """lme4's ``coef(fit)``: per grouping factor, one row per level and one column per
    fixed effect, ``beta_j + b_lj``: the fixed effect plus the level's conditional mode
    of the random-effect column that is the same model column (equal in every row, or,
    lme4's rule, of the same name), and ``beta_j`` alone where the factor has no such
    column. A random-effect column with no fixed counterpart (``(0 + f | g)``'s ``fa``
    where the fixed part codes ``f[T.b]``) comes first, with a fixed part of 0, in every
    factor's frame, as lme4 adds it."""
    fe_names = list(fe_params.index)
    extra: list[str] = []  # random-effect columns with no fixed counterpart, in order
    target: dict[tuple[int, int], str] = {}  # (term, column) -> output column
    for i, term in enumerate(design.terms):
        for j, column in enumerate(term.columns):
            name = _fixed_counterpart(design, term.X[:, j], column, fe_names)
            if name is None:
                name = column
                if name not in extra:
                    extra.append(name)
            target[i, j] = name
    columns = extra + fe_names
    position = {name: c for c, name in enumerate(columns)}
    fixed = np.concatenate([np.zeros(len(extra)), fe_params.to_numpy(dtype=float)])
    out: dict[str, pd.DataFrame] = {}
    for name, levels in zip(design.factor_names, design.levels):
        values = np.tile(fixed, (len(levels), 1))
        for i in _factor_terms(design, name):
            for j in range(design.terms[i].k):
                values[:, position[target[i, j]]] += np.asarray(blups[i])[:, j]
        out[name] = pd.DataFrame(values, index=pd.Index(levels.to_numpy()), columns=columns)
    return out


def _fixed_counterpart(
    design: Design, z: np.ndarray, column: str, fe_names: list[str]
) -> str | None:
    """The fixed effect whose column of ``X`` is the random-effect column ``z`` (the same
    values in every row, to 1e-12 relative: both parts evaluate the same expression);
    else the fixed effect of the same name, lme4's rule; else None."""
    for m, name in enumerate(fe_names):
        x = design.X[:, m]
        if np.array_equal(x, z) or np.allclose(x, z, rtol=1e-12, atol=0.0):
            return name
    return column if column in fe_names else None


def random_effects(
    design: Design, blups: Sequence[np.ndarray]
) -> dict[str, pd.Series | pd.DataFrame]:
    """Per factor: a Series of BLUPs (intercept only) or a DataFrame, one column per term
    column (lme4's ``ranef``), indexed by level."""
    out: dict[str, pd.Series | pd.DataFrame] = {}
    for name, levels in zip(design.factor_names, design.levels):
        idx = _factor_terms(design, name)
        index = pd.Index(levels.to_numpy())
        if _intercept_only(design, name):
            out[name] = pd.Series(blups[idx[0]][:, 0], index=index, name=name)
        else:
            cols = [c for i in idx for c in design.terms[i].columns]
            out[name] = pd.DataFrame(
                np.concatenate([blups[i] for i in idx], axis=1), index=index, columns=cols
            )
    return out
