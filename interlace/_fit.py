"""``interlace.fit``: formula and DataFrame in, :class:`CrossedLMEResult` out.

Pipeline: :func:`build_design` (validation, arrays) -> :func:`cross_products` (one pass
over the rows) -> :func:`moment_start` (ANOVA start values) ->
:func:`minimize_deviance` (compiled L-BFGS over ``theta``) ->
:func:`estimates` (one back-substitution) -> pandas result.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._crossprod import cross_products
from ._design import build_design
from ._deviance import estimates
from ._errors import ModelSpecError
from ._optimize import minimize_deviance
from ._result import CrossedLMEResult
from ._singular import SINGULAR_MESSAGE, theta_is_singular
from ._start import moment_start

__all__ = ["fit"]


def fit(
    formula: str,
    data: pd.DataFrame,
    groups: str | Sequence[str] | None = None,
    method: str = "REML",
    *,
    maxiter: int = 500,
) -> CrossedLMEResult:
    """Fit a linear mixed model with crossed random intercepts.

    Parameters
    ----------
    formula
        ``"y ~ x1 + x2"`` (formulaic syntax for the fixed part: categorical predictors,
        ``C(...)``, interactions, transforms, ``y ~ 1``). Random intercepts may also be
        written in the formula as lme4 terms: ``(1 | g)``, ``(1 | a:b)``, ``(1 | a/b)``.
    data
        A DataFrame; it is never modified. Rows with a missing value in a column the
        model uses are dropped with a warning that says how many.
    groups
        Column name(s) of crossed grouping factors, one random intercept each.
    method
        ``"REML"`` (default, lme4's default) or ``"ML"`` (for likelihood-ratio tests of
        fixed effects).
    maxiter
        Most L-BFGS iterations; a fit that stops there has ``converged=False``.

    Returns
    -------
    CrossedLMEResult
        Warns ``boundary (singular) fit: see help(interlace.isSingular)`` when a variance
        component is estimated at zero (lme4's rule, :func:`interlace.isSingular`).
    """
    if method not in ("REML", "ML"):
        raise ModelSpecError(f"method must be 'REML' or 'ML', got {method!r}.")
    reml = method == "REML"
    design = build_design(formula, data, groups)
    nlev = [len(lev) for lev in design.levels]
    cp = cross_products(list(design.codes), nlev, design.X, design.y)

    k = len(nlev)
    theta0 = moment_start(list(design.codes), nlev, design.X, design.y)[list(cp.order)]
    opt = minimize_deviance(jnp.asarray(theta0), cp, reml=reml, maxiter=int(maxiter))
    est = estimates(opt.theta, cp, reml=reml)

    # Back from the internal order (largest factor first) to the user's order.
    theta_int = np.asarray(opt.theta)
    theta = np.empty(k)
    theta[list(cp.order)] = theta_int
    grad = np.empty(k)
    grad[list(cp.order)] = np.asarray(opt.grad)
    blup_int = [np.asarray(est["b1"])]
    offset = 0
    for q in cp.nlevels[1:]:
        blup_int.append(np.asarray(est["b_tail"])[offset:offset + q])
        offset += q
    blups = [None] * k
    for pos, user in enumerate(cp.order):
        blups[user] = blup_int[pos]

    names = design.factor_names
    sigma2 = float(est["sigma2"])
    fe_index = pd.Index(design.fe_names)
    fe_params = pd.Series(np.asarray(est["beta"]), index=fe_index)
    fe_cov = pd.DataFrame(np.asarray(est["fe_cov"]), index=fe_index, columns=fe_index)
    random_effects = {
        name: pd.Series(b, index=pd.Index(lev.to_numpy()), name=name)
        for name, b, lev in zip(names, blups, design.levels)
    }
    fitted = design.X @ fe_params.to_numpy()
    for b, codes in zip(blups, design.codes):
        fitted = fitted + b[codes]
    fittedvalues = pd.Series(fitted, index=design.row_index, name="fittedvalues")
    resid = pd.Series(design.y - fitted, index=design.row_index, name="resid")
    deviance = float(opt.deviance)
    converged = bool(opt.converged)

    result = CrossedLMEResult(
        fe_params=fe_params,
        fe_cov=fe_cov,
        scale=sigma2,
        variance_components={n: float(t**2 * sigma2) for n, t in zip(names, theta)},
        random_effects=random_effects,
        fittedvalues=fittedvalues,
        resid=resid,
        theta=pd.Series(theta, index=pd.Index(names), name="theta"),
        deviance=deviance,
        llf=-0.5 * deviance,
        method=method,
        converged=converged,
        n_iterations=int(opt.iterations),
        n_evaluations=int(opt.evaluations),
        grad_theta=pd.Series(grad, index=pd.Index(names), name="grad_theta"),
        formula=formula,
        design=design,
    )
    if not converged:
        warnings.warn(
            f"The optimizer did not converge in {int(opt.iterations)} iterations (max |gradient| "
            f"= {float(np.max(np.abs(np.asarray(opt.grad)))):.3g}); estimates may be unreliable. "
            "Try rescaling predictors or raising maxiter.",
            UserWarning,
            stacklevel=2,
        )
    if theta_is_singular(theta):
        warnings.warn(SINGULAR_MESSAGE, UserWarning, stacklevel=2)
    return result
