"""Fit a generalized linear mixed model: the numbers of one fitted GLMM (lme4's ``glmer``).

The two objectives of lme4's ``glmer`` (Bates et al. 2015, JSS 67(1), sec. 5; its
``nAGQ``):

* ``nAGQ = 0``: L-BFGS over ``theta`` of the Laplace deviance at the joint modes of
  ``beta`` and ``u`` (:func:`~interlace._core.pirls.pirls`, ``beta`` inside PIRLS), from
  ``theta = 1`` (identity factors);
* ``nAGQ >= 1``: L-BFGS over ``theta`` and ``beta`` together, the modes of ``u`` only found
  by PIRLS, from ``theta = 1`` and ``beta`` of the joint modes there (lme4 runs a whole
  ``nAGQ = 0`` fit first; with exact gradients that costs more evaluations than it
  saves). The L-BFGS recursion starts from the PIRLS solve's ``(R_X'R_X)^-1 / 2`` on
  ``beta`` (:meth:`GlmmProblem.beta_inverse_hessian`), so ``beta`` takes Newton-scaled
  steps from the first iteration.

The model arrays hold the centred and scaled fixed-effect columns ``X_s = X G``
(``_core.standardize``; the intercept column stays 1), so ``beta`` is searched, and the
linear predictor ``X_s beta_s`` computed, in those coordinates; ``beta = G beta_s`` (and
its covariance) is mapped back once, on the host. A predictor far from zero (a time
stamp near 1.7e9) then neither makes the search ill-conditioned nor loses the linear
predictor's digits to the cancellation of ``X beta``'s large terms.

Each evaluation is one compiled call returning the deviance and its exact gradient
(:func:`~interlace._core.pirls.laplace`). The PIRLS iterations of each evaluation start
at the previous evaluation's modes ``b`` and ``beta`` (its linear predictor), with that
start's penalised deviance (``_core.pirls.PirlsStart``). Standard errors: for ``nAGQ = 0``,
lme4's ``(R_X' R_X)^-1`` of the weighted solve at the modes; for ``nAGQ >= 1``, the
``beta`` block of ``2 H^-1`` with ``H`` the Hessian of the deviance in ``(theta, beta)``
(lme4's default ``use.hessian``), by forward differences of the exact gradient from the
optimum's (one evaluation per parameter).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._base.blas_threads import single_blas_thread
from .._base.errors import DataError, ModelSpecError
from .._base.jit import GLMM_OPTIONS, jit
from .._base.precision import float64_scope
from .._core.arrays import ModelArrays
from .._core.centring import Centring, slope_centring
from .._core.crossprod import device_array, same_factor, tail_width
from .._core.deviance import blups_by_term
from .._core.family import Family
from .._core.glmm_buckets import pad_glmm_arrays, pad_rows, pad_theta, unpad_modes, unpad_theta
from .._core.newton import hessian_by_differences
from .._core.optimize import STOP_REASONS, minimize_rescaled
from .._core.pirls import (
    STEP_TOL,
    GlmmData,
    Laplace,
    PirlsStart,
    cold_start,
    laplace,
    pirls,
    start_eta,
    warm_start,
)
from .._core.singular import SINGULAR_MESSAGE, fit_is_singular
from .._core.standardize import (
    Standardization,
    back_transform_beta,
    back_transform_cov,
    intercept_column,
    standardize,
    to_standardized_beta,
)
from .._core.theta import (
    normalize_signs,
    sign_flips,
    to_internal,
    to_user,
    tril_index,
)
from .design import Design
from .estimate import centred_design, convergence_message, design_arrays, theta_scales
from .glmm_design import GlmmDesign
from .varcorr import term_covariances

__all__ = [
    "GlmmFit",
    "GlmmProblem",
    "fit_glmm_design",
    "deviance_at",
    "laplace_objective",
    "separated_columns",
    "runaway_suspects",
    "RUNAWAY_ETA",
    "shared_fixed_width",
]

# A fitted fixed effect that moves some row's linear predictor by more than this (a
# factor e^10 in odds or mean) is checked for separation (separated_columns). The
# reach, not the coefficient alone, is what runs off: a rare level's dummy has a small
# standard deviation, so its separated coefficient stays small in centred and scaled
# units (23 on a 10% level is 7 there) while it moves that level's rows by 20.
RUNAWAY_ETA = 10.0
_RUNAWAY_EXAMPLE = {True: "a level with only one outcome", False: "a level whose counts are all 0"}


@dataclass(frozen=True, eq=False)
class GlmmFit:
    """One fitted GLMM in arrays (numpy), with its design.

    ``theta``: relative covariance factors (user's term order, lme4's signs; for a
    binomial or Poisson model the scale is 1, so these are the random effects' own
    standard deviations and Cholesky factors). ``minus_two_llf`` is lme4's
    ``-2 logLik``; ``deviance_residual_sum`` lme4's ``deviance()`` (conditional)."""

    design: Design
    family: Family
    nagq: int
    prior_weights: np.ndarray
    offset: np.ndarray
    theta: np.ndarray
    beta: np.ndarray
    fe_cov: np.ndarray
    fe_cov_rx: np.ndarray  # (R_X'R_X)^-1 at the modes: lme4's vcov(use.hessian = FALSE)
    blups: tuple  # per term, (levels, k) conditional modes b = Lambda u
    eta: np.ndarray  # linear predictor at the modes, offset included
    mu: np.ndarray  # fitted means (response scale)
    objective: float  # what was minimised: sum d_i + |u|^2 + ldL2
    minus_two_llf: float
    deviance_residual_sum: float
    u_squared: float
    ld_l2: float
    grad: np.ndarray  # of the objective at the optimum, (theta, beta)
    converged: bool
    n_iterations: int
    n_evaluations: int
    stop_reason: str
    # beta in the fit's own coordinates (X_s = X G, module docstring), for X beta far
    # from zero (fixed_part)
    beta_s: np.ndarray
    xstd: Standardization  # numpy; the intercept column: shift 0, scale 1
    size: float | None = None  # negative binomial's k (estimated or fixed)
    offset_terms: tuple = ()  # offset(expr) of the formula, for predict(newdata)
    offset_argument: bool = False  # whether offset= was given
    # fixed-effect columns that separate the response (quasi-complete separation of a
    # converged fit: infinite maximum-likelihood estimates, reported with a warning)
    separated: tuple = ()
    # the random-slope columns the fit searched centred (_core.centring); None: none
    centring: Centring | None = None

    def fixed_part(self, X: np.ndarray) -> np.ndarray:
        """``X beta`` as ``X_s beta_s``: columns centred and scaled as in the fit, so that a
        predictor far from zero (a time stamp near 1.7e9) keeps the linear predictor's
        digits, which the cancelling large terms of ``X beta`` lose (~1e-7 there)."""
        X = np.asarray(X, dtype=float)
        return ((X - self.xstd.x_shift) / self.xstd.x_scale) @ self.beta_s

    @property
    def nobs(self) -> int:
        return self.design.nobs

    @property
    def ks(self) -> list[int]:
        return [t.k for t in self.design.terms]

    @property
    def n_params(self) -> int:
        """Estimated parameters (lme4's ``df`` of ``logLik``): ``beta`` and ``theta``, and
        a negative binomial's estimated size."""
        return len(self.beta) + len(self.theta) + int(self.family.estimates_size)

    @property
    def llf(self) -> float:
        return -0.5 * self.minus_two_llf

    @property
    def aic(self) -> float:
        return self.minus_two_llf + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return self.minus_two_llf + self.n_params * math.log(self.nobs)

    @property
    def is_singular(self) -> bool:
        return fit_is_singular(self)


def _n_theta(ks) -> int:
    return sum(k * (k + 1) // 2 for k in ks)


def laplace_objective(
    x, fixed, start: PirlsStart, ma: ModelArrays, data: GlmmData, rule, *, family, n_theta
):
    """The deviance at ``x = [theta, beta_s]`` (``beta_s`` in the coordinates of
    ``ma``'s fixed-effect columns), and ``log k`` last for a negative binomial whose size
    is estimated, after PIRLS from ``start``: ``(value, (Laplace record, PIRLS
    iterations))``.
    ``fixed`` (a bool or a traced flag, so that both stages can share one executable):
    ``beta`` given (``nAGQ >= 1``) or found with the modes (``nAGQ = 0``; then the
    gradient in ``beta_s`` is 0 and ``rule`` is not applied). Differentiable in ``x``:
    PIRLS is not differentiated, the Laplace step from its modes carries the exact
    gradient (:func:`~interlace._core.pirls.laplace`)."""
    p = ma.X.shape[1]
    data_x = data._replace(size=jnp.exp(x[-1])) if family.estimates_size else data
    theta, beta = x[:n_theta], x[n_theta : n_theta + p]
    # modes converged in eta too (STEP_TOL): the Hessian's differences need them
    modes, iterations = pirls(theta, ma, family, data_x, start, beta, fixed, step_tol=STEP_TOL)
    lp = laplace(theta, ma, family, data_x, modes.eta, beta, rule, fixed)
    return lp.value, (lp, iterations)


@partial(jit, options=GLMM_OPTIONS, static_argnames=("family", "n_theta"))
def _evaluate(x, fixed, start, ma: ModelArrays, data: GlmmData, rule, *, family, n_theta):
    """:func:`laplace_objective` with its gradient in ``x``: ``(value, grad, Laplace,
    iterations)``, one compiled call per evaluation of the host optimiser."""
    (value, (lp, iterations)), grad = jax.value_and_grad(laplace_objective, has_aux=True)(
        x, fixed, start, ma, data, rule, family=family, n_theta=n_theta
    )
    return value, grad, lp, iterations


# The largest eigenvalue of the beta block the optimiser starts from
# (GlmmProblem.beta_inverse_hessian), in the standardized coordinates (beta_s per column
# standard deviation): a direction with more variance than this is one the data hardly
# identify, such as a coefficient that separates a binary response, along which the
# deviance flattens out. A Newton step there runs the coefficient off ever further: on
# tests/test_glmm_profile.py's separated design, uncapped, the fit took 58 evaluations
# and stopped with the Hessian not positive definite (the coefficient at -30.9); capped at
# 10 (or 1), 12 evaluations, the plain recursion's estimate (-24.9) and its Hessian
BETA_VARIANCE_CAP = 10.0


def capped_beta_block(fe_cov, xp=np):
    """``(R_X'R_X)^-1 / 2`` with its eigenvalues capped at :data:`BETA_VARIANCE_CAP`
    (numpy, or ``xp=jnp`` inside a compiled lane); a non-finite ``fe_cov`` gives a
    non-finite block, which the optimisers ignore."""
    M = 0.5 * fe_cov
    lam, V = xp.linalg.eigh(0.5 * (M + M.T))
    return (V * xp.minimum(lam, BETA_VARIANCE_CAP)) @ V.T


def shared_fixed_width(p: int) -> int:
    """Fixed-effect columns the model arrays of a ``p``-column model hold: ``p`` rounded
    up to 4, 8, 16 or 32, or to a multiple of 16 beyond. The extra columns are zero
    (``ModelArrays.fixed_padding``), so models that differ only in their fixed effects,
    within one width, share one compiled evaluation (a new VerbAgg formula: ~1.5 s of
    compile saved); an evaluation holds at most 2x the columns, 16 more beyond 32."""
    for width in (4, 8, 16, 32):
        if p <= width:
            return width
    return -(-p // 16) * 16


def _fixed_standardization(X: np.ndarray) -> tuple[np.ndarray, Standardization, int]:
    """``(X_s, G, ic)``: ``X_s = X G`` (``_core.standardize``, response untouched), the
    columns the model arrays hold (module docstring), and the intercept column ``ic``."""
    ic = intercept_column(X)
    X_s, _, std = standardize(X, np.zeros(X.shape[0]), None, ic)
    return X_s, std, ic


class GlmmProblem:
    """One GLMM's arrays and its compiled evaluation, for the host optimiser: ``fun(x)``
    with ``x = theta`` (stage 1, ``beta`` with the modes) or ``[theta, beta_s]`` (stage 2),
    ``theta`` in the internal term order, each followed by ``log k`` for a negative
    binomial whose size is estimated; ``beta_s`` and the modes' ``beta`` in the
    coordinates of ``ma``'s columns ``X_s`` (module docstring; :meth:`user_beta` maps
    back). Each evaluation's PIRLS starts from the last finite evaluation's modes
    (a warm :class:`~interlace._core.pirls.PirlsStart`)."""

    def __init__(self, glmm: GlmmDesign, family: Family, nagq: int, *, shared: bool = True):
        design = glmm.design
        self.ks = [t.k for t in design.terms]
        if nagq > 1 and (len(self.ks) != 1 or self.ks[0] != 1):
            raise ModelSpecError(
                f"nAGQ={nagq}: adaptive Gauss-Hermite quadrature is defined for a model with "
                "a single scalar random-effects term, such as (1 | g), as in lme4; this model "
                f"has {len(self.ks)} term(s) with {self.ks} column(s). Use nAGQ=1 (Laplace)."
            )
        self.family = family
        # Each evaluation rebuilds C and its Schur update and differentiates them: a level
        # of term 1 that meets more than an eighth of the tail columns costs less as a
        # dense row of C (one matrix product) than as its d(d+1)/2 scattered update
        # entries. Measured per value + gradient (2 cores; binary, subjects x items):
        # 20% dense (1,000 x 200) 117 ms scattered vs 46 ms dense; 12% (2,000 x 400,
        # bench_glmm's crossed design) 370 vs 280 ms; 4% (2,000 x 1,200) 1.0 s scattered
        # vs 1.3 s dense, which t / 8 keeps scattered. Linear models, whose update
        # products are computed once per fit (only their weights move with theta), keep
        # the general rule and its floor of 64.
        self.p = p = design.X.shape[1]
        # the width the model arrays hold (shared_fixed_width; with their names left out,
        # a model with other fixed effects then reuses the compiled evaluation)
        self.p_arrays = shared_fixed_width(p) if shared else p
        t = tail_width(
            [len(term.levels) for term in design.terms],
            self.ks,
            self.p_arrays,
            same_factor([term.codes for term in design.terms]),
        )
        self.X_s, self.xstd, self.ic = _fixed_standardization(design.X)
        X_arrays = np.concatenate(
            [self.X_s, np.zeros((self.X_s.shape[0], self.p_arrays - p))], axis=1
        )
        self.ma = design_arrays(dataclasses.replace(design, X=X_arrays), heavy_above=t // 8)
        if shared:  # names are static fields: they would key a compile of their own
            self.ma = dataclasses.replace(
                self.ma,
                fe_names=(),
                theta_names=(),
                fixed_padding=device_array(np.arange(self.p_arrays) >= p, np.float64),
            )
        self.order = self.ma.template.order
        self.n_theta = _n_theta(self.ks)
        y = np.asarray(design.y, dtype=float)
        self.data = GlmmData(
            device_array(y),
            device_array(glmm.prior_weights, np.float64),
            device_array(glmm.offset, np.float64),
            device_array(1.0 if family.size is None else family.size, np.float64),
            device_array(family.density_constant(y, np.asarray(glmm.prior_weights, float))),
        )
        # a negative binomial's size starts at its moment estimate (var = m + m^2 / k)
        m, v = float(np.mean(y)), float(np.var(y))
        self.log_size0 = np.log(np.clip(m**2 / max(v - m, 1e-2 * m**2), 0.05, 1e3))
        self.n_extra = 1 if family.estimates_size else 0
        self.rule = gauss_hermite(nagq) if nagq > 1 else None
        # numpy: no per-operation compiles for a new model's shapes
        w = np.asarray(glmm.prior_weights, dtype=float)
        # lme4's start, eta = offset + g(mu_start) (mkRespMod's updateMu), less the
        # offset's median (start_eta). Without the offset, rows whose offset is far from
        # the others' start far from their data, and the first step can throw PIRLS into
        # the saturated region of the link, where it stalls
        eta0 = np.asarray(start_eta(family, y, w, np.asarray(glmm.offset, dtype=float)), float)
        # A small model evaluates at its size class's shapes, shared with other models
        # (_core.glmm_buckets); quadrature (nAGQ > 1) keeps the exact ones
        padded = pad_glmm_arrays(self.ma) if shared and nagq <= 1 else None
        self.padding = None if padded is None else padded[1]
        if padded is None:
            self.ma_eval, self.data_eval = self.ma, self.data
        else:
            self.ma_eval, pad = padded[0], padded[1]
            self.data_eval = self.data._replace(
                y=device_array(pad_rows(y, pad)),
                prior_weights=device_array(pad_rows(w, pad)),
                offset=device_array(pad_rows(np.asarray(glmm.offset, dtype=float), pad)),
            )
            eta0 = pad_rows(eta0, pad)
        self.start = cold_start(eta0, self.ma_eval)

    def fun(self, joint: bool):
        """``x -> (value, gradient, Laplace record)``: ``x`` is ``theta`` (``joint``,
        ``nAGQ = 0``) or ``[theta, beta_s]``, then ``log k`` if estimated; the record's
        ``beta`` and ``fe_cov`` are the model's own ``p`` columns (numpy)."""
        flag = np.bool_(not joint)  # numpy into the jitted call: nothing compiled for it
        n_theta, p, padding = self.n_theta, self.p, self.padding
        # theta entries and fixed-effect columns of the evaluated arrays
        n_eval = n_theta if padding is None else padding.size.theta
        p_eval = self.p_arrays  # a size class keeps the model arrays' width

        def fun(x):
            x = np.asarray(x, dtype=float)
            beta = np.zeros(p) if joint else x[n_theta : n_theta + p]
            rest = x[n_theta:] if joint else x[n_theta + p :]
            theta = x[:n_theta] if padding is None else pad_theta(x[:n_theta], padding)
            full = np.concatenate([theta, beta, np.zeros(p_eval - p), rest])
            value, grad, lp, _ = _evaluate(
                full,
                flag,
                self.start,
                self.ma_eval,
                self.data_eval,
                self.rule,
                family=self.family,
                n_theta=n_eval,
            )
            value = float(value)
            if np.isfinite(value):  # PIRLS of the next evaluation starts from these modes
                self.start = warm_start(jax.tree.map(np.asarray, lp.modes), self.start.eta)
            # numpy from here: slicing JAX arrays would compile per shape
            grad = np.asarray(grad)
            g_theta = grad[:n_theta] if padding is None else unpad_theta(grad[:n_eval], padding)
            g_beta = grad[n_eval : n_eval + (0 if joint else p)]
            grad = np.concatenate([g_theta, g_beta, grad[n_eval + p_eval :]])  # then log k
            modes = lp.modes if padding is None else unpad_modes(lp.modes, padding)
            modes = modes._replace(beta=np.asarray(modes.beta)[:p])
            return value, grad, lp._replace(modes=modes, fe_cov=np.asarray(lp.fe_cov)[:p, :p])

        return fun

    def beta_inverse_hessian(self, lp: Laplace) -> tuple[slice, np.ndarray]:
        """``(slice of beta_s in x, (R_X'R_X)^-1 / 2)``: the inverse of the deviance's
        Hessian in ``beta_s`` at fixed ``theta``, as the PIRLS solve at the modes gives it
        (``-2 logLik`` is ``|R_X (beta - beta_hat)|^2`` plus terms in ``theta`` to second
        order, ``ldL2``'s dependence on ``beta`` aside; lme4's ``nAGQ = 0`` vcov is the
        same matrix). The host L-BFGS starts its recursion from it
        (:func:`~interlace._core.optimize.minimize_on_host`): VerbAgg's Laplace fit took
        15 evaluations instead of 23, bench_glmm's Poisson model 43 instead of 72, with
        the same optima. Its eigenvalues are capped at :data:`BETA_VARIANCE_CAP`."""
        fe_cov = np.asarray(lp.fe_cov)
        # a non-finite block is passed on as it is: the optimiser ignores it
        M = capped_beta_block(fe_cov) if np.all(np.isfinite(fe_cov)) else 0.5 * fe_cov
        return slice(self.n_theta, self.n_theta + self.p), M

    def extra0(self) -> np.ndarray:
        """Start of the parameters after ``theta`` and ``beta``: ``log k`` or none."""
        return np.array([self.log_size0])[: self.n_extra]

    def standardized_beta(self, beta: np.ndarray) -> np.ndarray:
        """``beta_s = G^-1 beta``: from the user's units to the model arrays'."""
        return to_standardized_beta(np.asarray(beta, dtype=float), self.xstd, self.ic)

    def user_beta(self, beta_s) -> np.ndarray:
        """``beta = G beta_s`` (along the last axis): the model arrays' units to the
        user's."""
        return back_transform_beta(np.asarray(beta_s, dtype=float), self.xstd, self.ic)

    def user_cov(self, cov_s) -> np.ndarray:
        """``G cov_s G'``: a covariance of ``beta_s`` in the user's units."""
        return back_transform_cov(np.asarray(cov_s, dtype=float), self.xstd, self.ic)


@float64_scope
def deviance_at(glmm: GlmmDesign, family: Family, theta, beta=None, *, nagq: int = 1) -> float:
    """lme4's ``-2 logLik`` of ``glmm`` at ``theta`` (user's term order) and ``beta``
    (None: ``beta`` with the modes, ``nAGQ = 0``'s deviance function), as lme4's
    ``devFunOnly`` evaluates it."""
    prob = GlmmProblem(glmm, family, nagq)
    theta_int = to_internal(np.asarray(theta, dtype=float), prob.ks, prob.order)
    if family.estimates_size:
        raise ModelSpecError("deviance_at needs a fixed size: pass negative_binomial(size=k).")
    if beta is None:
        _, _, lp = prob.fun(True)(theta_int)
    else:
        x = np.concatenate([theta_int, prob.standardized_beta(beta)])
        _, _, lp = prob.fun(False)(x)
    return float(lp.value)


@float64_scope
def fit_glmm_design(
    glmm: GlmmDesign,
    family: Family,
    *,
    nagq: int = 1,
    maxiter: int = 500,
    stacklevel: int = 2,
    hessian: bool = True,
) -> GlmmFit:
    """Fit ``glmm``'s model by ``nAGQ = 0``, Laplace (``nagq = 1``) or adaptive
    Gauss-Hermite quadrature (``nagq > 1``: one scalar random term only, as lme4);
    module docstring. ``hessian=False`` (bootstrap refits) keeps the ``R_X`` standard
    errors instead of the Hessian's.

    Random-slope columns far from 0 against their spread are searched centred
    (:mod:`interlace._core.centring`: the same model; ``beta``'s block of the Hessian's
    inverse does not depend on how ``theta`` is parametrised), and the fit reported for
    the columns as given."""
    options = dict(nagq=nagq, maxiter=maxiter, stacklevel=stacklevel + 1, hessian=hessian)
    design = glmm.design
    centring = slope_centring(design.terms)
    if centring is None:
        return _fit_glmm_searched(glmm, family, **options)
    centred = glmm._replace(design=centred_design(design, centring))
    fit = _fit_glmm_searched(centred, family, **options)
    theta = centring.to_user_theta(fit.theta)
    grad = np.array(fit.grad, dtype=float)
    grad[: theta.size] = centring.to_user_gradient(theta, grad[: theta.size])
    return dataclasses.replace(
        fit,
        design=design,
        theta=theta,
        grad=grad,
        blups=centring.to_user_blups(fit.blups),
        centring=centring,
    )


def _fit_glmm_searched(
    glmm: GlmmDesign, family: Family, *, nagq: int, maxiter: int, stacklevel: int, hessian: bool
) -> GlmmFit:
    """The fit of :func:`fit_glmm_design` on ``glmm``'s columns as they are."""
    design, prior_weights, offset = glmm.design, glmm.prior_weights, glmm.offset
    terms = design.terms
    ks = [t.k for t in terms]
    prob = GlmmProblem(glmm, family, nagq)
    order, n_theta = prob.order, prob.n_theta
    # lme4's identity start on each term's columns scaled to size ~1, and the search
    # there too (_core.theta.column_scales; beta_s and log k are scaled already)
    scale = theta_scales(terms, order)
    theta0 = (
        to_internal(
            np.concatenate([(r == c).astype(float) for r, c in (tril_index(k) for k in ks)]),
            ks,
            order,
        )
        / scale
    )
    p, extra = prob.p, prob.extra0()
    ones = np.ones(len(extra))
    with single_blas_thread():  # LAPACK inside the evaluations (_base.blas_threads)
        if nagq >= 1:
            # Laplace and quadrature start from the joint modes at the starting theta: a
            # full nAGQ = 0 stage first (lme4's default) costs more evaluations than it
            # saves here, where every evaluation has a gradient (measured on the glmer
            # references: 131 evaluations in all instead of 156, the same optima)
            _, _, lp = prob.fun(True)(np.concatenate([theta0, extra]))
            x0 = np.concatenate([theta0, np.asarray(lp.modes.beta), extra])
            opt, lp = minimize_rescaled(
                prob.fun(False),
                x0,
                np.concatenate([scale, np.ones(p), ones]),
                maxiter=maxiter,
                block_inverse=prob.beta_inverse_hessian,
            )
            x_opt = np.asarray(opt.theta)
            fe_cov = (
                _hessian_cov(prob.fun(False), x_opt, opt.grad, scale, p, prob.xstd, prob.ic)
                if hessian
                else prob.user_cov(lp.fe_cov)
            )
            if fe_cov is None:
                warnings.warn(
                    "The variance-covariance matrix from the deviance's Hessian is not positive "
                    "definite; the fixed effects' standard errors fall back to the estimate "
                    "from R_X at the modes (lme4's rule). Check the fit for a boundary or "
                    "near-flat likelihood.",
                    UserWarning,
                    stacklevel=stacklevel,
                )
                fe_cov = prob.user_cov(lp.fe_cov)
            size_x = x_opt[n_theta + p :]
        else:
            opt, lp = minimize_rescaled(
                prob.fun(True),
                np.concatenate([theta0, extra]),
                np.concatenate([scale, ones]),
                maxiter=maxiter,
            )
            fe_cov = prob.user_cov(lp.fe_cov)
            size_x = np.asarray(opt.theta)[n_theta:]
    iterations, evaluations = int(opt.iterations), int(opt.evaluations)
    if family.estimates_size:
        size = float(np.exp(size_x[0]))
    else:
        size = family.size
    theta_int = np.asarray(opt.theta)[:n_theta]
    raw = to_user(theta_int, ks, order)
    theta = normalize_signs(raw, ks)
    grad = np.asarray(opt.grad).copy()
    grad[:n_theta] = to_user(grad[:n_theta], ks, order) * sign_flips(raw, ks)  # then beta, log k
    modes = jax.tree.map(np.asarray, lp.modes)  # numpy: slicing JAX arrays would compile
    blups = tuple(blups_by_term(modes, prob.ma.template))
    beta_s = np.asarray(modes.beta)
    beta = prob.user_beta(beta_s)
    converged = bool(opt.converged) and bool(np.all(np.isfinite(beta)))
    fit = GlmmFit(
        design=design,
        family=family,
        nagq=int(nagq),
        prior_weights=np.asarray(prior_weights, dtype=float),
        offset=np.asarray(offset, dtype=float),
        theta=theta,
        beta=beta,
        fe_cov=fe_cov,
        fe_cov_rx=prob.user_cov(lp.fe_cov),
        blups=blups,
        eta=np.asarray(modes.eta),
        mu=family.linkinv(np.asarray(modes.eta)),
        objective=float(lp.value),
        # lme4's logLik: Laplace with the family's full density; quadrature (nAGQ > 1)
        # with the deviance residuals, i.e. without the density's constant (glmerAGQ)
        minus_two_llf=float(lp.value),
        size=size,
        deviance_residual_sum=float(lp.dev_sum),
        u_squared=float(lp.u_squared),
        ld_l2=float(lp.ld_l2),
        grad=grad,
        converged=converged,
        n_iterations=iterations,
        n_evaluations=evaluations,
        stop_reason=STOP_REASONS[int(opt.stop)],
        offset_terms=glmm.offset_terms,
        offset_argument=glmm.offset_argument,
        beta_s=beta_s,
        xstd=prob.xstd,
    )
    if not converged:
        runaway = separated_columns(design.X, design.fe_names, family, glmm)
        if runaway:
            raise DataError(
                f"The {family.name} response is separated by the fixed effect(s) {runaway}: "
                "without random effects, a fit sends their coefficients toward +-infinity "
                "(the outcome is predicted exactly on one side of them: fitted "
                f"{'probabilities' if family.name == 'binomial' else 'means'} reach "
                f"{'0 or 1' if family.name == 'binomial' else '0'}), so the mixed model's "
                "estimates run off too. Drop or coarsen those columns, or merge the levels "
                "that have only one outcome."
            )
        warnings.warn(convergence_message(opt, maxiter), UserWarning, stacklevel=stacklevel)
    elif runaway_suspects(prob.X_s, beta_s, prob.ic):
        runaway = separated_columns(design.X, design.fe_names, family, glmm)
        if runaway:  # quasi-complete separation: a flat likelihood toward infinity
            fit = dataclasses.replace(fit, separated=tuple(runaway))
            warnings.warn(
                f"The fixed effect(s) {runaway} separate the {family.name} response (fitted "
                f"{'probabilities' if family.name == 'binomial' else 'means'} reach "
                f"{'0 or 1' if family.name == 'binomial' else '0'} on one side: for example "
                f"{_RUNAWAY_EXAMPLE[family.name == 'binomial']}): their maximum-likelihood "
                "estimates are "
                "infinite, and the large finite values reported, with their standard "
                "errors, are not reliable. Drop or coarsen those columns, or merge levels.",
                UserWarning,
                stacklevel=stacklevel,
            )
    if fit.is_singular:
        warnings.warn(SINGULAR_MESSAGE, UserWarning, stacklevel=stacklevel)
    runaway_terms = runaway_random_effects(design.terms, theta)
    if runaway_terms and converged:
        term, sd = runaway_terms[0]
        warnings.warn(
            f"The random effects of ({term}) have an sd of {sd:.3g} on the {family.link} "
            f"scale (more than {RUNAWAY_SD:g}): levels of {term.split('|')[-1].strip()} "
            "are predicted as if with only one outcome, as where every response of a level "
            "is 0 (few events), and the likelihood flattens out toward an infinite variance. "
            "The variance and the fixed effects reported are where the optimizer stopped, "
            "not reliable estimates (glmer warns too, or stops elsewhere). Check the counts "
            "of events per level; drop or merge levels, or simplify the random effects.",
            UserWarning,
            stacklevel=stacklevel,
        )
    if family.estimates_size and no_overdispersion(size, design.y):
        warnings.warn(
            f"The negative binomial's size was estimated at {size:.3g}: the counts show no "
            "overdispersion beyond a Poisson's (the variance mu + mu^2 / size exceeds mu "
            "by less than a millionth at the mean count). The likelihood keeps rising "
            "toward an infinite size, where the model is a Poisson GLMM, so the size "
            "reported is wherever the optimizer stopped. Fit family='poisson' instead.",
            UserWarning,
            stacklevel=stacklevel,
        )
    return fit


# A random term whose effects on the linear predictor have an sd above this is running
# off (module docstring of runaway_random_effects): e^10 is a factor of 22,000 in the odds
# or the mean between levels one sd apart
RUNAWAY_SD = 10.0


def runaway_random_effects(terms, theta: np.ndarray) -> list[tuple[str, float]]:
    """``(term, sd)`` of the random terms whose effects on the linear predictor have an sd
    above :data:`RUNAWAY_SD` (the root mean over rows of ``z_i' Sigma z_i``, ``Sigma`` the
    term's covariance, ``z_i`` its columns at row ``i``): a binary or count response that
    separates the levels of a factor (levels with a single outcome, all-zero counts)
    sends their variance toward infinity, where the Laplace deviance keeps falling slowly,
    and the fit stops far out (4 events in 60 rows: sds of ~170 with the intercept at -86)."""
    out = []
    for term, cov in zip(terms, term_covariances(theta[None], np.ones(1), terms)):
        X = np.asarray(term.X, dtype=float)
        sd = float(np.sqrt(np.mean(np.einsum("ij,jk,ik->i", X, cov[0], X))))
        if sd > RUNAWAY_SD:
            out.append((f"{term.lhs} | {term.factor}", sd))
    return out


def no_overdispersion(size: float | None, y) -> bool:
    """Whether an estimated negative-binomial size ``k`` is off toward infinity:
    ``m / k < 1e-6`` at the mean count ``m`` (variance ``m + m^2 / k``), which Poisson or
    underdispersed counts give (their likelihood rises monotonically in ``k``)."""
    if size is None:
        return False
    m = float(np.mean(np.asarray(y, dtype=float)))
    return m < 1e-6 * size


def runaway_suspects(X_s: np.ndarray, beta_s: np.ndarray, ic: int) -> np.ndarray:
    """Whether each fit (rows of ``beta_s``, ``(..., p)``, in the coordinates of the
    centred and scaled columns ``X_s``) has a coefficient other than the intercept ``ic``
    that moves some row's linear predictor by more than :data:`RUNAWAY_ETA`, or one that
    is not finite: the fits worth a :func:`separated_columns` check."""
    reach = np.max(np.abs(X_s), axis=0, initial=0.0) * np.abs(beta_s)
    if ic >= 0:
        reach[..., ic] = 0.0
    return np.any(~(reach <= RUNAWAY_ETA), axis=-1)


def separated_columns(X: np.ndarray, names, family: Family, glmm: GlmmDesign) -> list[str]:
    """Fixed-effect columns whose coefficients run off in the fit without random effects
    (complete or quasi-complete separation; a level of counts that are all 0): IRLS
    (``Family.working``) on the centred and scaled columns, and the columns whose
    coefficient, above 8 (a factor of e^8 per standard deviation), still grows over the
    last 10 of 50 iterations by more than 1 and by at least a tenth of the fastest one
    (the others drift along with it by rounding). Only called for a fit that did not
    converge, to name the cause."""
    ic = intercept_column(X)
    Xs, _, _ = standardize(X, np.zeros(X.shape[0]), None, ic)
    y, w, off = glmm.design.y, glmm.prior_weights, glmm.offset
    size = 1.0 if family.size is None else family.size
    eta = np.asarray(start_eta(family, y, w, np.asarray(off, dtype=float)))  # the fits' start
    history = []
    with np.errstate(all="ignore"):
        for _ in range(50):
            ww, z = (np.asarray(v) for v in family.working(y, eta, w, size))
            ok = np.isfinite(ww) & np.isfinite(z)
            sw = np.sqrt(np.where(ok, ww, 0.0))
            beta = np.linalg.lstsq(Xs * sw[:, None], np.where(ok, z - off, 0.0) * sw, rcond=None)[0]
            eta = Xs @ beta + off
            history.append(beta)
    grow = np.abs(history[-1]) - np.abs(history[-11])
    runaway = (grow > max(1.0, 0.1 * float(np.max(grow)))) & (np.abs(history[-1]) > 8.0)
    if ic >= 0:
        runaway[ic] = False
    return [str(names[j]) for j in np.flatnonzero(runaway)]


def gauss_hermite(n: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Nodes and weights of ``n``-point Gauss-Hermite quadrature against the standard
    normal density (weights sum to 1), made exactly symmetric as lme4's ``GHrule``."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    z, w = (z - z[::-1]) / 2.0, (w + w[::-1]) / 2.0
    return device_array(z), device_array(w)


def _hessian_cov(fun, x: np.ndarray, grad, theta_scale, p: int, std: Standardization, ic: int):
    """``vcov(beta)``: the ``beta`` block of ``2 H^-1``, ``H`` by finite differences of
    the exact gradient in ``(theta, beta_s)`` (a negative binomial's size held at its
    estimate, as lme4's ``glmer.nb`` reports), mapped to ``beta``'s units; None when that
    block is not positive definite (lme4 then falls back to ``R_X``).

    The differences are taken where the fit searched: ``theta' = s theta``
    (``theta_scale``: :func:`~interlace._model.estimate.theta_scales`, each column's
    size), ``beta_s`` as it is. With ``S = diag(s, 1)``, ``H' = S^-1 H S^-1`` and the
    ``beta`` block of ``H^-1`` is that of ``H'^-1``: the same matrix, now with steps in
    units of each ``theta`` entry's own size. In ``theta``'s raw units a slope on a
    covariate in units of 1e6 has ``theta ~ 5e-7``, 20 times below the step: its
    differences were noise, and a Poisson intercept's standard error came out 0.156
    instead of 0.096 (``tests/test_glmm_units.py``).

    Forward differences from ``grad``, the gradient at ``x``:
    ``H' e_j ~ (g'(x' + h_j e_j) - g'(x')) / h_j``, ``h_j = 1e-5 max(1, |x'_j|)``, one
    evaluation per parameter; error ``O(h)``. On the glmer
    reference models the standard errors agree with central differences to 4e-6
    relative or better (lme4's own finite-difference Hessian is good to about 1e-4).
    Where that matrix is not positive definite (a nearly flat direction, such as a
    coefficient running off under quasi-separation), the backward differences are added:
    their mean with the forward ones is the central-difference Hessian (error
    ``O(h^2)``), which decides."""
    n_theta = len(theta_scale)
    k = n_theta + p
    s = np.ones(np.asarray(x).shape[0])
    s[:n_theta] = theta_scale

    def scaled_grad(v):  # g'(x') = g(x' / s) / s
        return np.asarray(fun(v / s)[1]) / s

    def differences(sign: float) -> np.ndarray:
        return hessian_by_differences(scaled_grad, x * s, np.asarray(grad) / s, k, sign)

    forward = differences(1.0)
    cov_s = _beta_block_cov(forward, n_theta)
    if cov_s is None:
        cov_s = _beta_block_cov(0.5 * (forward + differences(-1.0)), n_theta)
    if cov_s is None:
        return None  # not positive definite: the caller falls back to R_X
    std_np = Standardization(np.asarray(std.x_shift), np.asarray(std.x_scale), 0.0, 1.0)
    return back_transform_cov(cov_s, std_np, ic)


def _beta_block_cov(H: np.ndarray, n_theta: int) -> np.ndarray | None:
    """The ``beta`` block of ``2 H^-1`` (``H`` symmetrised), or None when it is not
    positive definite."""
    H = 0.5 * (H + H.T)
    try:
        cov_s = 2.0 * np.linalg.inv(H)[n_theta:, n_theta:]
        np.linalg.cholesky(cov_s)
    except np.linalg.LinAlgError:
        return None
    return cov_s
