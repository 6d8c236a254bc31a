"""Diagnostic plots of a fitted model (optional: ``pip install interlace[plot]``).

Every function takes a :class:`~interlace.CrossedLMEResult` and an optional matplotlib
``ax``, draws with the object API (a new figure only when ``ax`` is None, never
``plt.show()``) and returns the Axes; :func:`diagnostic_panel` returns the Figure.

>>> from interlace import plots
>>> ax = plots.caterpillar(result, "subject")            # doctest: +SKIP
>>> plots.diagnostic_panel(result, "subject", path="diagnostics.png")  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ._base.checks import check_level
from ._base.errors import ModelSpecError
from ._diagnostics.residuals import cooks_distance, hlm_resid

try:
    import matplotlib.pyplot as plt
except ImportError as exc:  # pragma: no cover - exercised by monkeypatching sys.modules
    raise ImportError("interlace.plots needs matplotlib: pip install interlace[plot]") from exc

__all__ = [
    "caterpillar",
    "cooks_index",
    "diagnostic_panel",
    "qq_blups",
    "qq_residuals",
    "residuals_vs_fitted",
    "shrinkage",
]


def _axes(ax):
    return plt.subplots()[1] if ax is None else ax


def _resid_label(type: str, standardized: bool) -> str:
    return f"{'Standardized ' if standardized else ''}{type} residuals".capitalize()


def _qq(ax, values: np.ndarray, label: str):
    """Normal QQ plot: sorted values against ``Phi^-1((i - 0.5) / n)``, with a line
    through the quartiles (R's ``qqline``)."""
    y = np.sort(np.asarray(values, dtype=float))
    x = stats.norm.ppf((np.arange(1, y.size + 1) - 0.5) / y.size)
    ax.scatter(x, y, s=12)
    tq = stats.norm.ppf([0.25, 0.75])
    sq = np.quantile(y, [0.25, 0.75])
    slope = (sq[1] - sq[0]) / (tq[1] - tq[0])
    ends = x[[0, -1]]
    ax.plot(ends, sq[0] + slope * (ends - tq[0]), color="C1", lw=1)
    ax.set_xlabel("Theoretical normal quantiles")
    ax.set_ylabel(label)
    return ax


def _blup_column(blups: pd.Series | pd.DataFrame, column: str | None) -> tuple[pd.Series, str]:
    if isinstance(blups, pd.Series):
        if column not in (None, "(Intercept)"):
            raise ModelSpecError(f"column={column!r}: this factor has only a random intercept.")
        return blups, "(Intercept)"
    column = blups.columns[0] if column is None else column
    if column not in blups.columns:
        raise ModelSpecError(f"column={column!r} is not one of {list(blups.columns)}.")
    return blups[column], column


def residuals_vs_fitted(result, type: str = "conditional", standardized: bool = False, ax=None):
    """Scatter of residuals against fitted values (``interlace.hlm_resid``), line at 0."""
    ax = _axes(ax)
    res = hlm_resid(result, type=type, standardized=standardized)
    ax.scatter(res["fitted"], res["resid"], s=12)
    ax.axhline(0.0, color="grey", lw=1, ls="--")
    ax.set_xlabel("Fitted values")
    ax.set_ylabel(_resid_label(type, standardized))
    ax.set_title("Residuals vs fitted")
    return ax


def qq_residuals(result, type: str = "conditional", standardized: bool = True, ax=None):
    """Normal QQ plot of the residuals of ``interlace.hlm_resid``."""
    ax = _axes(ax)
    res = hlm_resid(result, type=type, standardized=standardized)
    _qq(ax, res["resid"].to_numpy(), _resid_label(type, standardized))
    ax.set_title("Normal QQ: residuals")
    return ax


def qq_blups(result, factor: str, column: str | None = None, ax=None):
    """Normal QQ plot of the BLUPs of ``factor`` (``column``: default the first)."""
    ax = _axes(ax)
    blup, column = _blup_column(result.random_effects[factor], column)
    _qq(ax, blup.to_numpy(), f"BLUP {column}")
    ax.set_title(f"Normal QQ: {factor} {column}")
    return ax


def cooks_index(
    result,
    threshold: float | None = None,
    influence: pd.DataFrame | None = None,
    ax=None,
    max_labels: int | None = 10,
):
    """Index plot of Cook's distance: ``interlace.cooks_distance(result)`` (lme4's one-step
    formula) or the ``"cooksd"`` column of ``influence`` (from ``interlace.hlm_influence``).
    The cut-off line is at ``threshold`` (default ``4 / n``); points above it are labelled
    with their index labels (the ``max_labels`` largest of them; None: all)."""
    ax = _axes(ax)
    d = influence["cooksd"] if influence is not None else cooks_distance(result)
    d = pd.Series(d)
    values = d.to_numpy(dtype=float)
    cut = 4.0 / values.size if threshold is None else float(threshold)
    x = np.arange(values.size)
    ax.vlines(x, 0.0, values, color="C0", lw=0.8)
    ax.scatter(x, values, s=10, color="C0", zorder=3)
    ax.axhline(cut, color="C3", lw=1, ls="--")
    above = np.flatnonzero(values > cut)
    above = above[np.argsort(-values[above], kind="stable")][:max_labels]
    for i in np.sort(above):
        ax.annotate(
            str(d.index[i]),
            (x[i], values[i]),
            textcoords="offset points",
            xytext=(2, 3),
            fontsize=7,
        )
    ax.set_xlabel("Observation")
    ax.set_ylabel("Cook's distance")
    ax.set_title(f"Cook's distance (cut-off {cut:.3g})")
    ax.margins(y=0.08)
    return ax


def caterpillar(result, factor: str, column: str | None = None, level: float = 0.95, ax=None):
    """Sorted BLUPs of ``factor`` with intervals ``blup -/+ z se`` (conditional standard
    errors from ``interlace.hlm_resid(result, level=factor)``); levels on the y axis
    (labelled when there are at most 50)."""
    check_level(level)
    ax = _axes(ax)
    frame = hlm_resid(result, level=factor)
    cols = [c for c in frame.columns if f"{c}_se" in frame.columns]
    column = cols[0] if column is None else column
    if column not in cols:
        raise ModelSpecError(f"column={column!r} is not one of {cols}.")
    frame = frame.sort_values(column)
    z = stats.norm.ppf(0.5 + level / 2)
    y = np.arange(len(frame))
    ax.errorbar(
        frame[column].to_numpy(float),
        y,
        xerr=z * frame[f"{column}_se"].to_numpy(float),
        fmt="o",
        ms=3,
        capsize=0,
        lw=1,
    )
    ax.axvline(0.0, color="grey", lw=1, ls="--")
    if len(frame) <= 50:
        ax.set_yticks(y, [str(v) for v in frame.index], fontsize=7)
    else:
        ax.set_yticks([])
    ax.set_xlabel(f"BLUP {column} ({100 * level:g}% interval)")
    ax.set_ylabel(factor)
    ax.set_title(f"Caterpillar: {factor}")
    return ax


def shrinkage(result, factor: str, ax=None):
    """Shrinkage: per level of ``factor``, x = the unshrunk deviation, y = the BLUP, with
    the line y = x.

    x is the group mean of the partial residuals ``resid + own BLUP`` (the group's mean
    residual before its own random effect is removed). The group mean of ``resid`` alone,
    as in the results page's snippet, would be raw-minus-BLUP. For a factor with slopes
    the intercept column is used (without one, the first column, and x is the per-group
    least-squares coefficient of the partial residuals on that column).
    """
    ax = _axes(ax)
    d = result.design
    found = [(t, b) for t, b in zip(d.terms, result.term_blups) if t.factor == factor]
    if not found:
        raise ModelSpecError(
            f"{factor!r} is not a grouping factor of the model {list(d.factor_names)}."
        )
    term, blup = next(((t, b) for t, b in found if "(Intercept)" in t.columns), found[0])
    j = term.columns.index("(Intercept)") if "(Intercept)" in term.columns else 0
    xc, b = term.X[:, j], np.asarray(blup)[:, j]
    partial = result.resid.to_numpy() + xc * b[term.codes]
    m = len(term.levels)
    num = np.bincount(term.codes, weights=xc * partial, minlength=m)
    den = np.bincount(term.codes, weights=xc * xc, minlength=m)
    x = num / den
    ax.scatter(x, b, s=14)
    lo, hi = np.nanmin(np.r_[x, b]), np.nanmax(np.r_[x, b])
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("Group mean of partial residuals (unshrunk)")
    ax.set_ylabel(f"BLUP {term.columns[j]}")
    ax.set_title(f"Shrinkage: {factor}")
    return ax


def diagnostic_panel(result, factor: str, path=None):
    """All six plots in a 2 x 3 figure (``factor`` for the BLUP plots); saved to ``path``
    when given. Returns the Figure."""
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    residuals_vs_fitted(result, ax=axes[0, 0])
    qq_residuals(result, ax=axes[0, 1])
    cooks_index(result, ax=axes[0, 2])
    qq_blups(result, factor, ax=axes[1, 0])
    caterpillar(result, factor, ax=axes[1, 1])
    shrinkage(result, factor, ax=axes[1, 2])
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
