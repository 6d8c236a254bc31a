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

__all__ = ["variance_components", "random_effects", "random_part_for", "included_factors"]


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
