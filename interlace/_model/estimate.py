"""Fit a built :class:`~interlace._model.design.Design`: the numbers of one fitted model.

Pipeline (lme4's ``mkLmerDevfun`` + ``optimizeLmer``): :func:`cross_products` (one pass
over the rows) -> starting values -> :func:`minimize_deviance` (compiled L-BFGS over
``theta``) -> :func:`estimates` (one back-substitution). :func:`fit_design` returns a
:class:`ModelFit`, the typed record every later step reads: the pandas result wraps it,
and inference and diagnostics reuse its cross-products and model arrays (built once)
instead of rebuilding them.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from .._base.blas_threads import single_blas_thread
from .._base.checks import check_method
from .._base.errors import DataError
from .._base.precision import float64_scope
from .._core import buckets
from .._core.arrays import ModelArrays, model_arrays_from
from .._core.centring import Centring, slope_centring
from .._core.crossprod import CrossProducts, cross_products, device_array
from .._core.deviance import Estimates, blups_by_term, estimates
from .._core.evaluation import host_objective
from .._core.optimize import (
    STOP_MAXITER,
    STOP_NONFINITE,
    STOP_REASONS,
    OptimResult,
    minimize_deviance,
    minimize_rescaled,
)
from .._core.singular import SINGULAR_MESSAGE, fit_is_singular
from .._core.standardize import intercept_column, standardize
from .._core.start import moment_start
from .._core.theta import (
    column_scales,
    normalize_signs,
    sign_flips,
    to_internal,
    to_user,
    tril_index,
    weight_scale,
)
from .design import Design

__all__ = [
    "ModelFit",
    "fit_design",
    "design_arrays",
    "design_cross_products",
    "check_response",
    "convergence_message",
    "start_values",
]


@dataclass(frozen=True, eq=False)
class ModelFit:
    """One fitted model in arrays (numpy), with its design and cross-products.

    ``theta`` and ``grad`` are in the user's term order with lme4's signs; ``blups`` has
    one ``(levels, k)`` array per term; ``deviance`` is lme4's REML criterion or ML
    deviance. :attr:`arrays` (the JAX model arrays, for refits) is built on first use and
    then kept.
    """

    design: Design
    cross_products: CrossProducts
    method: str
    theta: np.ndarray
    grad: np.ndarray
    beta: np.ndarray
    fe_cov: np.ndarray
    sigma2: float
    deviance: float
    blups: tuple
    fitted: np.ndarray
    converged: bool
    n_iterations: int
    n_evaluations: int
    stop_reason: str
    # the random-slope columns the fit searched centred (_core.centring); None: none
    centring: Centring | None = None

    @property
    def reml(self) -> bool:
        return self.method == "REML"

    @property
    def sigma(self) -> float:
        return math.sqrt(self.sigma2)

    @property
    def nobs(self) -> int:
        return self.design.nobs

    @property
    def ks(self) -> list[int]:
        return [t.k for t in self.design.terms]

    @property
    def theta_names(self) -> list[str]:
        return self.design.theta_names

    @property
    def n_params(self) -> int:
        """Estimated parameters: fixed effects, ``theta``, residual (lme4's ``df``)."""
        return len(self.beta) + len(self.theta) + 1

    @property
    def llf(self) -> float:
        return -0.5 * self.deviance

    @property
    def aic(self) -> float:
        """``-2 llf + 2 k`` (Akaike 1974)."""
        return self.deviance + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        """``-2 llf + k log(n)`` (Schwarz 1978)."""
        return self.deviance + self.n_params * math.log(self.nobs)

    @property
    def is_singular(self) -> bool:
        return fit_is_singular(self)

    @cached_property
    def arrays(self) -> ModelArrays:
        """The model's arrays for JAX refits, sharing this fit's cross-products."""
        return design_arrays(self.design, template=self.cross_products)

    @cached_property
    def search_arrays(self) -> ModelArrays:
        """The arrays refits search on (:func:`~interlace._core.refit.refit_all` with
        :attr:`centring`): :attr:`arrays`, or those of the centred columns."""
        if self.centring is None:
            return self.arrays
        return design_arrays(centred_design(self.design, self.centring))

    @property
    def search_cross_products(self) -> CrossProducts:
        """The cross-products of the columns the fit searched: :attr:`cross_products`,
        or those of :attr:`search_arrays` (centred columns)."""
        return self.cross_products if self.centring is None else self.search_arrays.template

    @property
    def search_theta(self) -> np.ndarray:
        """``theta`` of the columns the fit searched (user order): :attr:`theta`, or
        the centred columns' (:attr:`centring`)."""
        return self.theta if self.centring is None else self.centring.to_centred_theta(self.theta)

    def __getstate__(self) -> dict:
        """A pickle holds the fit, not the array caches (they rebuild on use), so its
        size does not depend on whether a bootstrap ran before it was saved."""
        state = dict(self.__dict__)
        state.pop("arrays", None)
        state.pop("search_arrays", None)
        return state


@float64_scope  # JAX arrays kept for refits: float64 whatever the caller's setting
def design_arrays(
    design: Design, template: CrossProducts | None = None, heavy_above: int | None = None
) -> ModelArrays:
    """:class:`ModelArrays` of ``design`` (``template``: its cross-products, if built;
    ``heavy_above``: as :func:`~interlace._core.crossprod.split_update`)."""
    terms = design.terms
    return model_arrays_from(
        [t.codes for t in terms],
        [len(t.levels) for t in terms],
        design.X,
        design.y_model,
        [t.X for t in terms],
        fe_names=design.fe_names,
        theta_names=design.theta_names,
        template=template,
        prior_weights=design.weights,
        heavy_above=heavy_above,
    )


def design_cross_products(design: Design, heavy_above: int | None = None) -> CrossProducts:
    """The cross-products of ``design``'s rows (one pass, numpy)."""
    terms = design.terms
    return cross_products(
        [t.codes for t in terms],
        [len(t.levels) for t in terms],
        design.X,
        design.y_model,
        [t.X for t in terms],
        heavy_above=heavy_above,
        weights=design.weights,
    )


def fit_cross_products(design: Design) -> CrossProducts:
    """The cross-products a fit of ``design`` uses: without heavy levels of term 1 when
    that lets the model pad to a size class (:mod:`interlace._core.buckets`), so that it
    shares its compiled fit with other models."""
    cp = design_cross_products(design)
    if (
        cp.heavy_levels.shape[0]
        and buckets.ENABLED
        and cp.q_tail < buckets.SIZE_CLASSES[-1].q_tail
        and buckets.update_entries_without_heavy(cp) <= buckets.SIZE_CLASSES[-1].entries
    ):
        cp = design_cross_products(design, heavy_above=cp.t)
    return cp


class Optimum(NamedTuple):
    """The optimiser's result, the estimates there, and ``theta`` and its gradient in the
    model's internal order (numpy)."""

    opt: OptimResult
    est: Estimates
    theta: np.ndarray
    grad: np.ndarray


def optimize(
    cp: CrossProducts,
    theta0: np.ndarray,
    *,
    reml: bool,
    maxiter: int,
    verbose: bool = False,
    theta_scale: np.ndarray | None = None,
) -> Optimum:
    """L-BFGS from ``theta0`` and the estimates at the optimum (:class:`Optimum`).

    The loop runs on the host over one compiled evaluation
    (:func:`~interlace._core.evaluation.evaluate`, with the method as data). A model with a
    size class (:mod:`interlace._core.buckets`) runs padded, and its evaluations carry the
    estimates, so that models of a class, REML and ML alike, share one executable; a model
    at its exact shapes (large) evaluates deviance and gradient only and takes the
    estimates once at the optimum. ``verbose`` runs the compiled loop of
    :func:`minimize_deviance`, which prints each iteration as it goes. ``theta_scale``
    (internal order; :func:`~interlace._core.theta.column_scales`): optimise over
    ``theta_scale * theta`` (:func:`~interlace._core.optimize.minimize_rescaled`; the
    compiled loop takes it as its preconditioner)."""
    scaled = theta_scale is not None and not np.all(theta_scale == 1.0)
    if verbose:
        precond = device_array(np.diag(1.0 / theta_scale)) if scaled else None
        opt = minimize_deviance(
            device_array(theta0), cp, reml=reml, maxiter=maxiter, precond=precond, verbose=verbose
        )
        return Optimum(
            opt, estimates(opt.theta, cp, reml=reml), np.asarray(opt.theta), np.asarray(opt.grad)
        )
    fun, padding = host_objective(cp, reml=reml)
    with single_blas_thread():  # LAPACK inside the evaluations (_base.blas_threads)
        opt, est = minimize_rescaled(fun, theta0, theta_scale, maxiter=maxiter, polish=True)
        if padding is None:  # exact shapes: estimates once, at the optimum
            est = estimates(device_array(opt.theta), cp, reml=reml)
    est = Estimates(*(np.asarray(v) for v in est))
    if padding is not None:
        est = buckets.unpad_estimates(est, padding)
    opt = opt._replace(deviance=float(est.deviance))  # in the data's units
    return Optimum(opt, est, np.asarray(opt.theta), np.asarray(opt.grad))


def fit_design(
    design: Design,
    method: str,
    *,
    maxiter: int = 500,
    stacklevel: int = 2,
    verbose: bool = False,
    warn: bool = True,
) -> ModelFit:
    """Fit the model of ``design`` by ``method`` (module doc). With ``warn`` (a new fit),
    checks the response first (:func:`check_response`) and warns when the fit did not
    converge, saying why, and on a boundary (singular) fit; ``warn=False`` is for refits
    of a design already fitted (lme4's ``refitML``), whose fit reported all that.

    Random-slope columns far from 0 against their spread are searched centred
    (:mod:`interlace._core.centring`: the same model), and the fit reported for the
    columns as given."""
    check_method(method)
    if warn:
        check_response(design)
    centring = slope_centring(design.terms)
    if centring is None:
        fit, opt = _fit_searched(design, method, maxiter=maxiter, verbose=verbose)
    else:
        fit, opt = _fit_centred(design, centring, method, maxiter=maxiter, verbose=verbose)
    if warn and not fit.converged:
        warnings.warn(convergence_message(opt, maxiter), UserWarning, stacklevel=stacklevel)
    if warn and fit.is_singular:
        warnings.warn(SINGULAR_MESSAGE, UserWarning, stacklevel=stacklevel)
    return fit


def _fit_searched(
    design: Design, method: str, *, maxiter: int, verbose: bool
) -> tuple[ModelFit, OptimResult]:
    """The fit of :func:`fit_design` on ``design``'s columns as they are, and the
    optimiser's result."""
    reml = method.upper() == "REML"
    terms = design.terms
    ks = [t.k for t in terms]
    cp = fit_cross_products(design)
    # lme4's start on each term's columns scaled to size ~1 and the weights to a mean
    # near 1, and the search there too
    scale = theta_scales(terms, cp.order) * weight_scale(design.weights)
    theta0 = to_internal(start_values(design), ks, cp.order) / scale
    if verbose:
        print(
            f"interlace: {design.nobs} rows, {cp.t} tail columns, {len(theta0)} theta; "
            f"fitting by {method}"
        )
    opt, est, theta_int, grad_int = optimize(
        cp, theta0, reml=reml, maxiter=int(maxiter), verbose=bool(verbose), theta_scale=scale
    )

    raw = to_user(theta_int, ks, cp.order)
    theta = normalize_signs(raw, ks)
    grad = to_user(grad_int, ks, cp.order) * sign_flips(raw, ks)
    blups = tuple(np.asarray(b) for b in blups_by_term(est, cp))
    beta = np.asarray(est.beta)
    sigma2 = float(est.sigma2)
    converged = bool(opt.converged) and bool(  # a NaN never passes as a result
        np.isfinite(sigma2) and np.all(np.isfinite(beta)) and np.all(np.isfinite(raw))
    )
    fit = ModelFit(
        design=design,
        cross_products=cp,
        method=method,
        theta=theta,
        grad=grad,
        beta=beta,
        fe_cov=np.asarray(est.fe_cov),
        sigma2=sigma2,
        deviance=float(opt.deviance),
        blups=blups,
        fitted=fitted_values(design, beta, blups),
        converged=converged,
        n_iterations=int(opt.iterations),
        n_evaluations=int(opt.evaluations),
        stop_reason=STOP_REASONS[int(opt.stop)],
    )
    return fit, opt


def _fit_centred(
    design: Design, centring: Centring, method: str, *, maxiter: int, verbose: bool
) -> tuple[ModelFit, OptimResult]:
    """The fit of :func:`fit_design` searched on centred columns and reported for
    ``design``'s own: ``theta``, its gradient and the modes mapped back
    (:class:`Centring`); deviance, ``beta``, ``sigma`` and
    fitted values are the same model's. The optimiser's result is the centred search's."""
    centred = centred_design(design, centring)
    inner, opt = _fit_searched(centred, method, maxiter=maxiter, verbose=verbose)
    theta = centring.to_user_theta(inner.theta)
    fit = dataclasses.replace(
        inner,
        design=design,
        cross_products=fit_cross_products(design),
        theta=theta,
        grad=centring.to_user_gradient(theta, inner.grad),
        blups=centring.to_user_blups(inner.blups),
        centring=centring,
    )
    return fit, opt


def centred_design(design: Design, centring: Centring) -> Design:
    """``design`` with its random terms' columns centred by ``centring``."""
    return dataclasses.replace(design, terms=centring.terms(design.terms))


def fitted_values(design: Design, beta: np.ndarray, blups) -> np.ndarray:
    """``X beta + offset + sum_t (Z_t b_t)`` at the rows of ``design``."""
    fitted = design.X @ beta if design.offset is None else design.X @ beta + design.offset
    for term, b in zip(design.terms, blups):
        fitted = fitted + np.sum(term.X * b[term.codes], axis=1)
    return fitted


def convergence_message(opt, maxiter: int) -> str:
    """The warning for a fit that did not converge, naming why the optimiser stopped."""
    g = float(np.max(np.abs(np.asarray(opt.grad)))) if np.size(opt.grad) else 0.0
    stop = int(opt.stop)
    if stop == STOP_MAXITER:
        return (
            f"The optimizer stopped at maxiter={maxiter} iterations before the deviance's "
            f"gradient was small (max |gradient| = {g:.3g}); estimates may be unreliable. "
            f"Raise maxiter (e.g. maxiter={2 * maxiter})."
        )
    if stop == STOP_NONFINITE:
        return (
            "The deviance became NaN or infinite during the fit, so the estimates are not "
            "reliable. Check the random-effect terms for columns that are constant or "
            "zero within every level, and the data for extreme values."
        )
    return (
        f"The deviance stopped improving after {int(opt.iterations)} iterations while its "
        f"gradient was still above the convergence tolerance (max |gradient| = {g:.3g}): "
        "the likelihood is nearly flat around the estimates (for example nearly "
        "collinear predictors or a variance near zero), so they may be unreliable. "
        "Check them with result.confint(method='profile') or a simpler model."
    )


# A column whose spread is below this fraction of its magnitude keeps fewer than ~5 of
# float64's ~16 significant digits for its variation (1e9 + values known to 1e-2 do).
RESOLUTION = 1e-11


def check_response(design: Design) -> None:
    """Refuse a response with nothing to fit, and warn where float64 cannot resolve the
    variation of the response or of a predictor (far from zero, tiny spread)."""
    y, X = design.y_model, design.X
    if y.shape[0] and np.all(y == y[0]):
        raise DataError(
            f"The response {design.response!r} is constant (every value is {y[0]:g}): there "
            "is no variance for a mixed model to estimate. Check the response column."
        )
    X_s, y_s, _ = standardize(X, y, None, intercept_column(X))
    beta, *_ = np.linalg.lstsq(X_s, y_s, rcond=None)
    if np.sqrt(np.mean((y_s - X_s @ beta) ** 2)) < 1e-10:
        raise DataError(
            f"The fixed effects reproduce the response {design.response!r} exactly (no "
            "residual variation is left): there is no variance for the random effects or "
            "the residual to estimate. Check that the response is not computed from the "
            "predictors."
        )
    columns = [(f"response {design.response!r}", y)] + [
        (f"predictor column {name!r}", X[:, j]) for j, name in enumerate(design.fe_names)
    ]
    for label, v in columns:
        centre = float(np.mean(v))
        spread = float(np.std(v))
        if spread > 0 and spread < RESOLUTION * abs(centre):
            warnings.warn(
                f"The {label} varies by only {spread:.3g} around {centre:.10g} (a relative "
                f"spread of {spread / abs(centre):.1e}): float64 keeps about 16 significant "
                "digits, so its values carry few digits of variation and the estimates "
                "inherit that rounding. Store it relative to a nearby constant (e.g. "
                "subtract its first value) before it is rounded.",
                UserWarning,
                stacklevel=5,
            )  # user, float64_scope, fit, fit_design, here


def user_theta_scales(terms) -> np.ndarray:
    """:func:`~interlace._core.theta.column_scales` of the random ``terms``, per ``theta``
    entry in the user's term order (a column's spread, and so its scale, is the same
    centred or not)."""
    return column_scales([t.k for t in terms], [column_sizes(t) for t in terms])


def theta_scales(terms, order) -> np.ndarray:
    """:func:`user_theta_scales` in the internal term ``order``: the fits search ``theta``
    times these."""
    return to_internal(user_theta_scales(terms), [t.k for t in terms], order)


def column_sizes(term) -> np.ndarray:
    """The size of each column of a random term (:func:`column_scales`): its standard
    deviation in a term with an intercept, whose column absorbs the mean (scaling a
    shifted covariate by its root mean square, ~ the shift, would make the slope's
    gradient test ~ the shift times more lenient, where the fit is hard already); its
    root mean square otherwise, and for the intercept itself (1)."""
    X = np.asarray(term.X, dtype=float)
    if X.shape[0] == 0:
        return np.ones(X.shape[1])
    size = np.sqrt(np.mean(X * X, axis=0))
    if "(Intercept)" in term.columns:
        spread = np.std(X, axis=0)
        size = np.where(np.asarray(term.columns) == "(Intercept)", size, spread)
    return size


def start_values(design: Design) -> np.ndarray:
    """ANOVA moment estimates for intercept-only terms, lme4's identity for the others
    (on the centred and scaled data: ``theta`` is relative, the same in any units)."""
    X_s, y_s, _ = standardize(design.X, design.y_model, None, intercept_column(design.X))
    parts = []
    for term in design.terms:
        if term.columns == ("(Intercept)",):
            parts.append(moment_start([term.codes], [len(term.levels)], X_s, y_s))
        else:
            rows, cols = tril_index(term.k)
            parts.append((rows == cols).astype(float))
    return np.concatenate(parts)
