"""Residuals, leverage and one-step Cook's distance (the pandas edge of diagnostics).

The numbers come from :mod:`interlace._diagnostics.leverage` (hat diagonal, marginal residual
variances, conditional variances of the BLUPs); exact deletion diagnostics are in
:mod:`interlace._diagnostics.influence`. Notation: ``e = y - X beta_hat - Z b_hat`` (conditional
residuals), ``r = y - X beta_hat`` (marginal), ``h_i`` the diagonal of the conditional hat
matrix, ``sigma^2`` the residual variance, ``p`` the number of fixed effects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._base.errors import ModelSpecError
from .._base.precision import float64_scope
from .._model.estimate import ModelFit
from .leverage import blup_condvar, glmm_mode_condvar, row_leverage

__all__ = ["hlm_resid", "leverage", "cooks_distance", "n_influential", "require_linear"]

_TYPES = ("conditional", "marginal")


def require_linear(result, name: str) -> None:
    """Refuse a GLMM result (these diagnostics are those of a linear mixed model)."""
    if not isinstance(getattr(result, "model_fit", None), ModelFit):
        raise ModelSpecError(
            f"{name} is defined for linear mixed models (a CrossedLMEResult); for a GLMM use "
            "result.residuals(type='deviance' | 'pearson' | 'response' | 'working')."
        )


@float64_scope
def hlm_resid(
    result, type: str = "conditional", standardized: bool = False, level=1
) -> pd.DataFrame:
    """Residuals and fitted values of ``result``.

    ``level=1`` (rows): a DataFrame aligned with the fitted rows with ``resid`` and
    ``fitted`` of the requested ``type`` plus all four raw columns
    (``resid_conditional``, ``fitted_conditional``, ``resid_marginal``,
    ``fitted_marginal``). ``standardized=True`` divides ``resid`` by its estimated
    standard deviation: ``e_i / (sigma sqrt(1 - h_i))`` (conditional: ``Var(e) =
    sigma^2 (I - H)``) or ``r_i / sd(r_i)`` with ``Var(r) = sigma^2 (V - X (X'V^-1 X)^-1
    X')`` (marginal).

    ``level="<factor>"``: the group-level residuals, i.e. the BLUPs of that factor with
    their conditional standard errors (lme4's ``ranef(fit, condVar = TRUE)``): one row
    per level, columns ``<col>`` and ``<col>_se`` per random-effect column, and
    ``n_obs``. This level also takes a GLMM (a :class:`~interlace.GLMMResult`): its
    conditional modes, with the standard errors of the Laplace approximation at them
    (link scale); the row-level residuals are those of linear models only.
    """
    if level != 1:
        return _group_resid(result, level)
    require_linear(result, "hlm_resid")
    if type not in _TYPES:
        raise ModelSpecError(f"type must be 'conditional' or 'marginal', got {type!r}.")
    d = result.design
    fitted_m = d.X @ result.fe_params.to_numpy()
    if d.offset is not None:
        fitted_m = fitted_m + d.offset
    out = pd.DataFrame(
        {
            "resid_conditional": result.resid.to_numpy(),
            "fitted_conditional": result.fittedvalues.to_numpy(),
            "resid_marginal": d.y - fitted_m,
            "fitted_marginal": fitted_m,
        },
        index=d.row_index,
    )
    resid = out[f"resid_{type}"].to_numpy()
    if standardized:
        lev = row_leverage(result.model_fit)
        var = (1.0 - lev.hat) if type == "conditional" else lev.marginal_var
        if type == "conditional" and d.weights is not None:
            var = var / d.weights  # Var(e_i) = sigma^2 (1 - h_i) / w_i
        resid = resid / np.sqrt(result.scale * var)
    out.insert(0, "fitted", out[f"fitted_{type}"].to_numpy())
    out.insert(0, "resid", resid)
    return out


def _group_resid(result, factor) -> pd.DataFrame:
    d = result.design
    if factor not in d.factor_names:
        raise ModelSpecError(
            f"level must be 1 (rows) or a grouping factor of the model "
            f"({', '.join(map(repr, d.factor_names))}), got {factor!r}."
        )
    fit = result.model_fit
    condvar = blup_condvar(fit) if isinstance(fit, ModelFit) else glmm_mode_condvar(fit)
    fi = d.factor_names.index(factor)
    levels = d.levels[fi]
    out = pd.DataFrame(index=pd.Index(levels.to_numpy(), name=factor))
    for term, blup, cv in zip(d.terms, result.term_blups, condvar):
        if term.factor != factor:
            continue
        se = np.sqrt(np.diagonal(cv, axis1=1, axis2=2))
        for j, col in enumerate(term.columns):
            out[col] = blup[:, j]
            out[f"{col}_se"] = se[:, j]
    out["n_obs"] = np.bincount(d.codes[fi], minlength=len(levels))
    return out


@float64_scope
def leverage(result) -> pd.DataFrame:
    """Diagonal of the conditional hat matrix ``H`` (fitted ``= H y``; lme4's
    ``hatvalues``), without forming ``H``: column ``overall``, split as HLMdiag does
    (Nobre & Singer 2007) into ``fixef``, the diagonal of ``H1 = X (X'V^-1 X)^-1 X'V^-1``,
    and ``ranef = overall - fixef``, the diagonal of ``Z D Z' V^-1 (I - H1)``."""
    require_linear(result, "leverage")
    lev = row_leverage(result.model_fit)
    return pd.DataFrame(
        {"overall": lev.hat, "fixef": lev.hat_fixef, "ranef": lev.hat - lev.hat_fixef},
        index=result.design.row_index,
    )


@float64_scope
def cooks_distance(result) -> pd.Series:
    """lme4's one-step Cook's distance (``cooks.distance(fit)``):
    ``D_i = e_i^2 h_i / (p sigma^2 (1 - h_i)^2)``, a cheap approximation to the exact
    case-deletion distance of :func:`hlm_influence` (with prior weights, ``e_i`` the
    Pearson residual ``sqrt(w_i) (y_i - fitted_i)``)."""
    require_linear(result, "cooks_distance")
    h = row_leverage(result.model_fit).hat
    e = result.resid.to_numpy()
    if result.design.weights is not None:
        e = e * np.sqrt(result.design.weights)  # Pearson residuals: variance sigma^2
    p = len(result.fe_params)
    return pd.Series(
        e**2 * h / (p * result.scale * (1.0 - h) ** 2), index=result.design.row_index, name="cooksd"
    )


@float64_scope
def n_influential(
    result, threshold: float | None = None, influence: pd.DataFrame | None = None
) -> int:
    """How many cases have Cook's distance above ``threshold`` (default ``4 / n``, the
    usual rule of thumb): the one-step distances, or the ``cooksd`` column of an
    :func:`hlm_influence` table when ``influence`` is given."""
    require_linear(result, "n_influential")
    d = (influence["cooksd"] if influence is not None else cooks_distance(result)).to_numpy()
    cut = 4.0 / len(d) if threshold is None else float(threshold)
    return int(np.sum(d > cut))
