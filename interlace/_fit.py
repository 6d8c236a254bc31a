"""``interlace.fit``: formula and DataFrame in, :class:`CrossedLMEResult` out.

Pipeline: :func:`build_design` (validation, arrays) -> :func:`cross_products` (one pass
over the rows) -> starting values -> :func:`minimize_deviance` (compiled L-BFGS over
``theta``) -> :func:`estimates` (one back-substitution) -> pandas result.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._core.crossprod import cross_products
from ._model.design import Design, build_design
from ._core.deviance import estimates
from ._base.errors import DataError, ModelSpecError
from ._core.optimize import STOP_MAXITER, STOP_NONFINITE, STOP_REASONS, minimize_deviance
from ._base.precision import float64_scope
from ._result import CrossedLMEResult
from ._core.singular import SINGULAR_MESSAGE, theta_is_singular
from ._core.standardize import intercept_column, standardize
from ._core.start import moment_start
from ._core.theta import (
    blocks,
    diagonal_mask,
    normalize_signs,
    theta_names,
    to_internal,
    to_user,
    tril_index,
    unpack_T,
)

__all__ = ["fit", "fit_design"]


@float64_scope
def fit(
    formula: str,
    data: pd.DataFrame,
    groups: str | Sequence[str] | None = None,
    method: str = "REML",
    *,
    maxiter: int = 500,
    verbose: bool = False,
) -> CrossedLMEResult:
    """Fit a linear mixed model with crossed (or nested) random effects.

    Parameters
    ----------
    formula
        ``"y ~ x1 + x2"`` (formulaic syntax for the fixed part: categorical predictors,
        ``C(...)``, interactions, transforms, ``y ~ 1``), optionally with lme4 random
        terms: ``(1 | g)``, ``(1 + x | g)``, ``(x || g)``, ``(0 + x | g)``,
        ``(1 | a:b)``, ``(1 | a/b)``.
    data
        A DataFrame; it is never modified. Rows with a missing value in a column the
        model uses are dropped with a warning that says how many.
    groups
        Column name(s) of crossed grouping factors, one random intercept each
        (shorthand for ``(1 | g)`` terms; may be combined with terms in the formula).
    method
        ``"REML"`` (default, lme4's default) or ``"ML"`` (for likelihood-ratio tests of
        fixed effects).
    maxiter
        Most L-BFGS iterations; a fit that stops there has ``converged=False``.
    verbose
        Print each iteration's deviance as the optimizer runs (for long fits).

    Returns
    -------
    CrossedLMEResult
        Warns ``boundary (singular) fit: see help(interlace.isSingular)`` when a
        variance is estimated at zero or a correlation at +-1 (lme4's rule).
    """
    if method not in ("REML", "ML"):
        raise ModelSpecError(f"method must be 'REML' or 'ML', got {method!r}.")
    return fit_design(build_design(formula, data, groups), method, maxiter=maxiter,
                      stacklevel=4, verbose=verbose)


def fit_design(design: Design, method: str, *, maxiter: int = 500, stacklevel: int = 2,
               verbose: bool = False) -> CrossedLMEResult:
    """Fit the model of an already built :class:`Design` (e.g. to refit by ML)."""
    reml = method == "REML"
    formula = design.formula
    terms = design.terms
    ks = [t.k for t in terms]
    cp = cross_products([t.codes for t in terms], [len(t.levels) for t in terms],
                        design.X, design.y, [t.X for t in terms])

    check_response(design)
    theta0 = to_internal(_start_values(design), ks, cp.order)
    if verbose:
        print(f"interlace: {design.nobs} rows, {cp.t} tail columns, {len(theta0)} theta; "
              f"fitting by {method}")
    opt = minimize_deviance(jnp.asarray(theta0), cp, reml=reml, maxiter=int(maxiter),
                            verbose=bool(verbose))
    est = estimates(opt.theta, cp, reml=reml)

    raw = to_user(np.asarray(opt.theta), ks, cp.order)
    theta = normalize_signs(raw, ks)
    grad = to_user(np.asarray(opt.grad), ks, cp.order) * np.where(raw * theta < 0, -1.0, 1.0)
    blups = _blups_by_term(est, cp)

    sigma2 = float(est["sigma2"])
    fe_index = pd.Index(design.fe_names)
    fitted = design.X @ np.asarray(est["beta"])
    for term, b in zip(terms, blups):
        fitted = fitted + np.sum(term.X * b[term.codes], axis=1)
    names = [name for t in terms for name in theta_names(t.factor, t.columns)]
    deviance = float(opt.deviance)
    beta = np.asarray(est["beta"])
    converged = bool(opt.converged) and bool(  # a NaN never passes as a result
        np.isfinite(sigma2) and np.all(np.isfinite(beta)) and np.all(np.isfinite(raw)))
    singular = theta_is_singular(theta[diagonal_mask(ks)])

    result = CrossedLMEResult(
        fe_params=pd.Series(beta, index=fe_index),
        fe_cov=pd.DataFrame(np.asarray(est["fe_cov"]), index=fe_index, columns=fe_index),
        scale=sigma2,
        variance_components=_variance_components(design, theta, sigma2),
        random_effects=_random_effects(design, blups),
        fittedvalues=pd.Series(fitted, index=design.row_index, name="fittedvalues"),
        resid=pd.Series(design.y - fitted, index=design.row_index, name="resid"),
        theta=pd.Series(theta, index=pd.Index(names), name="theta"),
        deviance=deviance,
        llf=-0.5 * deviance,
        method=method,
        converged=converged,
        n_iterations=int(opt.iterations),
        n_evaluations=int(opt.evaluations),
        stop_reason=STOP_REASONS[int(opt.stop)],
        grad_theta=pd.Series(grad, index=pd.Index(names), name="grad_theta"),
        formula=formula,
        design=design,
        term_blups=tuple(blups),
    )
    if not converged:
        warnings.warn(convergence_message(opt, maxiter), UserWarning, stacklevel=stacklevel)
    if singular:
        warnings.warn(SINGULAR_MESSAGE, UserWarning, stacklevel=stacklevel)
    return result


def convergence_message(opt, maxiter: int) -> str:
    """The warning for a fit that did not converge, naming why the optimiser stopped."""
    g = float(np.max(np.abs(np.asarray(opt.grad)))) if np.size(opt.grad) else 0.0
    stop = int(opt.stop)
    if stop == STOP_MAXITER:
        return (f"The optimizer stopped at maxiter={maxiter} iterations before the deviance's "
                f"gradient was small (max |gradient| = {g:.3g}); estimates may be unreliable. "
                f"Raise maxiter (e.g. maxiter={2 * maxiter}).")
    if stop == STOP_NONFINITE:
        return ("The deviance became NaN or infinite during the fit, so the estimates are not "
                "reliable. Check the random-effect terms for columns that are constant or "
                "zero within every level, and the data for extreme values.")
    return (f"The deviance stopped improving after {int(opt.iterations)} iterations while its "
            f"gradient was still above the convergence tolerance (max |gradient| = {g:.3g}): "
            "the likelihood is nearly flat around the estimates (for example nearly "
            "collinear predictors or a variance near zero), so they may be unreliable. "
            "Check them with result.confint(method='profile') or a simpler model.")


# A column whose spread is below this fraction of its magnitude keeps fewer than ~5 of
# float64's ~16 significant digits for its variation (1e9 + values known to 1e-2 do).
_RESOLUTION = 1e-11


def check_response(design: Design) -> None:
    """Refuse a response with nothing to fit, and warn where float64 cannot resolve the
    variation of the response or of a predictor (far from zero, tiny spread)."""
    y, X = design.y, design.X
    if y.shape[0] and np.all(y == y[0]):
        raise DataError(
            f"The response {design.response!r} is constant (every value is {y[0]:g}): there "
            "is no variance for a mixed model to estimate. Check the response column.")
    X_s, y_s, _ = standardize(X, y, None, intercept_column(X))
    beta, *_ = np.linalg.lstsq(X_s, y_s, rcond=None)
    if np.sqrt(np.mean((y_s - X_s @ beta) ** 2)) < 1e-10:
        raise DataError(
            f"The fixed effects reproduce the response {design.response!r} exactly (no "
            "residual variation is left): there is no variance for the random effects or "
            "the residual to estimate. Check that the response is not computed from the "
            "predictors.")
    columns = [(f"response {design.response!r}", y)] + [
        (f"predictor column {name!r}", X[:, j]) for j, name in enumerate(design.fe_names)]
    for label, v in columns:
        centre = float(np.mean(v))
        spread = float(np.std(v))
        if spread > 0 and spread < _RESOLUTION * abs(centre):
            warnings.warn(
                f"The {label} varies by only {spread:.3g} around {centre:.10g} (a relative "
                f"spread of {spread / abs(centre):.1e}): float64 keeps about 16 significant "
                "digits, so its values carry few digits of variation and the estimates "
                "inherit that rounding. Store it relative to a nearby constant (e.g. "
                "subtract its first value) before it is rounded.",
                UserWarning, stacklevel=5)  # user, float64_scope, fit, fit_design, here


def _start_values(design: Design) -> np.ndarray:
    """ANOVA moment estimates for intercept-only terms, lme4's identity for the others
    (on the centred and scaled data: ``theta`` is relative, the same in any units)."""
    X_s, y_s, _ = standardize(design.X, design.y, None, intercept_column(design.X))
    parts = []
    for term in design.terms:
        if term.columns == ("(Intercept)",):
            parts.append(moment_start([term.codes], [len(term.levels)], X_s, y_s))
        else:
            rows, cols = tril_index(term.k)
            parts.append((rows == cols).astype(float))
    return np.concatenate(parts)


def _blups_by_term(est: dict, cp) -> list[np.ndarray]:
    """BLUPs as one ``(levels, k)`` array per term, in the user's term order."""
    internal = [np.asarray(est["b1"])]
    flat, start = np.asarray(est["b_tail"]), 0
    for q, k in zip(cp.nlevels[1:], cp.ks[1:]):
        internal.append(flat[start:start + q * k].reshape(q, k))
        start += q * k
    out = [None] * len(internal)
    for pos, i in enumerate(cp.order):
        out[i] = internal[pos]
    return out


def _factor_terms(design: Design, name: str) -> list[int]:
    return [i for i, t in enumerate(design.terms) if t.factor == name]


def _intercept_only(design: Design, name: str) -> bool:
    idx = _factor_terms(design, name)
    return len(idx) == 1 and design.terms[idx[0]].columns == ("(Intercept)",)


def _variance_components(design: Design, theta: np.ndarray, sigma2: float) -> dict:
    """Per factor: the variance (intercept only) or the covariance DataFrame
    ``sigma^2 T T'`` over all its terms (block diagonal across terms)."""
    index = blocks([t.k for t in design.terms])
    out: dict = {}
    for name in design.factor_names:
        idx = _factor_terms(design, name)
        covs = [sigma2 * (lambda T: T @ T.T)(unpack_T(theta[index[i]], design.terms[i].k))
                for i in idx]
        if _intercept_only(design, name):
            out[name] = float(covs[0][0, 0])
            continue
        cols = [c for i in idx for c in design.terms[i].columns]
        full = np.zeros((len(cols), len(cols)))
        start = 0
        for cov in covs:
            full[start:start + len(cov), start:start + len(cov)] = cov
            start += len(cov)
        out[name] = pd.DataFrame(full, index=cols, columns=cols)
    return out


def _random_effects(design: Design, blups: list[np.ndarray]) -> dict:
    """Per factor: a Series of BLUPs (intercept only) or a DataFrame, one column per term
    column (lme4's ``ranef``), indexed by level."""
    out: dict = {}
    for name, levels in zip(design.factor_names, design.levels):
        idx = _factor_terms(design, name)
        index = pd.Index(levels.to_numpy())
        if _intercept_only(design, name):
            out[name] = pd.Series(blups[idx[0]][:, 0], index=index, name=name)
        else:
            cols = [c for i in idx for c in design.terms[i].columns]
            out[name] = pd.DataFrame(np.concatenate([blups[i] for i in idx], axis=1),
                                     index=index, columns=cols)
    return out
