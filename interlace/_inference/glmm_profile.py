"""Profile-likelihood confidence intervals of a GLMM (lme4's ``confint(fit, method =
"profile")`` for ``glmer`` fits, its default).

For a parameter ``psi_i`` (a random effect's standard deviation or correlation, or a
fixed effect) the profiled deviance ``d_i(v)`` minimises the fit's own objective (``-2
logLik``: Laplace, or adaptive quadrature) over all other parameters, ``theta`` and
``beta`` alike, with ``psi_i = v``; the interval is where the signed root ``zeta(v) =
sign(v - psi_hat) sqrt(d_i(v) - d_min)`` lies within ``-/+ z_{(1+level)/2}`` (Bates et
al. 2015, sec. 5.1.2), its ends found by Brent's method as for linear models
(:mod:`interlace._inference.profile`), not read off a spline.

Coordinates of the constrained fits:

* a variance parameter: all of them as ``z = (log sd, atanh cor)`` per term (lme4's
  sd/cor scale; ``theta`` is the Cholesky factor of the covariance they give, the scale
  being 1), ``z_i`` pinned, the others and ``beta`` free;
* a fixed effect ``beta_j = g_j' beta_s`` (``beta_s``: the model arrays' centred and
  scaled coordinates, ``g_j``: row ``j`` of their linear map back to the user's):
  ``beta_s = v g_j / |g_j|^2 + N_j c`` with ``N_j`` an orthonormal basis of ``g_j``'s
  complement, ``theta`` and ``c`` free. A start carried from another point moves
  ``beta_j`` to ``v`` either along ``g_j / |g_j|^2`` or with the user's other
  coefficients held (as lme4's profile does), whichever has the lower deviance.

Each constrained fit is the fit's host L-BFGS over the free coordinates, with the fit's
compiled evaluation (gradients by the chain rule through those maps), started from the
nearest profile point already solved. A negative binomial's size stays at its estimate,
as lme4's profile of a ``glmer.nb`` fit does. ``nAGQ = 0`` fits are refused (lme4 stops
too): their ``beta`` is not a parameter of the deviance optimised.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._base.blas_threads import single_blas_thread
from .._base.errors import ModelSpecError
from .._base.precision import float64_scope
from .._core.optimize import minimize_rescaled
from .._core.theta import blocks, diagonal_mask, to_internal, to_user
from .._model.estimate import centred_design, user_theta_scales
from .._model.glmm_design import GlmmDesign
from .._model.glmm_estimate import GlmmFit, GlmmProblem
from .._model.varcorr import sdcor_names, sdcor_values
from .profile import AT_BOUNDARY, REOPEN_SD, bounded_root, doubling_root, theta_from_sdcor

__all__ = ["glmm_profile_confint", "profile_zeta"]

# A constrained optimum below the fit's by more than this (relative) means the fit had
# not reached its optimum: the profile then measures from the wrong minimum.
_LOWER_TOL = 1e-6
# A random effect's sd below AT_BOUNDARY, or a correlation within it of +-1, is at its
# boundary: a constrained refit is started again with it at REOPEN_SD (or 0), as the
# linear models' profiles do (their module's REOPEN note). Both in the units the fit
# searches in: a slope's sd per unit of its column's size (_Profiler.theta_scale), so that a
# covariate in units of 1e6 is profiled as the same covariate in units of 1.


@float64_scope
def glmm_profile_confint(fit: GlmmFit, level: float = 0.95, only=None) -> pd.DataFrame:
    """Profile intervals for the ``sd_*``/``cor_*`` parameters and the fixed effects of
    ``fit`` (module docstring), rows in lme4's ``confint(oldNames = FALSE)`` order
    (``only``: those rows alone, by name; None: all)."""
    _refuse_nagq0(fit)
    from scipy.special import ndtri  # scipy on first use, not at import (~0.5 s)

    zq = float(ndtri(0.5 + level / 2))
    profiler = _Profiler(fit)
    rows = {}
    for i, name in enumerate(profiler.names):
        if only is not None and name not in only:
            continue
        zeta = profiler.variance_zeta(i)
        est = profiler.sdcor[i]
        lo, hi = (0.0, np.inf) if profiler.is_sd[i] else (-1.0, 1.0)
        unit = 1.0 / profiler.theta_scale[i] if profiler.is_sd[i] else 1.0  # the search's
        rows[name] = (
            bounded_root(zeta, est, -zq, lo, unit),
            bounded_root(zeta, est, zq, hi, unit),
        )
    for j, name in enumerate(fit.design.fe_names):
        if only is not None and name not in only:
            continue
        zeta = profiler.fixed_zeta(j)
        est = float(fit.beta[j])
        se = float(np.sqrt(fit.fe_cov[j, j]))
        step = zq * se if np.isfinite(se) and se > 0 else 0.1 * max(abs(est), 1.0)
        ends = [
            np.inf * target
            if str(name) in fit.separated and np.sign(est) == target  # the flat side
            else doubling_root(zeta, est, target * zq, step, str(name))
            for target in (-1.0, 1.0)
        ]
        rows[name] = tuple(ends)
    if any(name in rows for name in fit.separated):
        warnings.warn(
            f"The fixed effect(s) {list(fit.separated)} separate the response: the "
            "likelihood is flat toward an infinite coefficient, so their profile intervals "
            "are open on that side (-inf or inf); the other end is the profile's.",
            UserWarning,
            stacklevel=3,
        )
    profiler.warn_if_lower()
    return pd.DataFrame(
        rows, index=[f"{100 * (0.5 - level / 2):g} %", f"{100 * (0.5 + level / 2):g} %"]
    ).T


@float64_scope
def profile_zeta(fit: GlmmFit, name: str, values) -> np.ndarray:
    """The signed root ``zeta(v)`` of parameter ``name`` (an ``sd_*``/``cor_*`` row or a
    fixed effect of :func:`glmm_profile_confint`) at each of ``values`` (lme4's
    ``as.data.frame(profile(fit))`` columns ``.focal``, ``.zeta``)."""
    _refuse_nagq0(fit)
    profiler = _Profiler(fit)
    if name in profiler.names:
        zeta = profiler.variance_zeta(profiler.names.index(name))
    elif name in list(fit.design.fe_names):
        zeta = profiler.fixed_zeta(list(fit.design.fe_names).index(name))
    else:
        raise ModelSpecError(
            f"{name!r} is not a parameter of the profile: one of {profiler.names} or "
            f"{list(fit.design.fe_names)}."
        )
    return np.array([zeta(v) for v in np.asarray(values, dtype=float)])


def _refuse_nagq0(fit: GlmmFit) -> None:
    if fit.nagq == 0:
        raise ModelSpecError(
            "Profile intervals need a Laplace or quadrature fit (nAGQ >= 1): with nAGQ=0 "
            "the fixed effects are not parameters of the deviance that was optimised. "
            "Refit with nAGQ=1, or use confint('wald') or confint('bootstrap')."
        )


class _Profiler:
    """The fit's problem, its optimum in profile coordinates and the constrained fits."""

    def __init__(self, fit: GlmmFit):
        # a fit that searched centred random-slope columns is profiled on them too (the
        # same objective, well conditioned: _core.centring); theta is the user's outside
        centring = fit.centring
        design = fit.design if centring is None else centred_design(fit.design, centring)
        glmm = GlmmDesign(
            design, fit.prior_weights, fit.offset, fit.offset_terms, fit.offset_argument
        )
        self.fit = fit
        self.prob = prob = GlmmProblem(glmm, fit.family, fit.nagq)
        self.objective = prob.fun(False)
        self.ks = list(prob.ks)
        self.n_theta, self.p = prob.n_theta, prob.p
        terms = fit.design.terms
        self.names = sdcor_names(terms)[:-1]  # no residual sigma
        self.sdcor = sdcor_values(fit.theta[None], np.ones(1), terms)[0][:-1]
        self.is_sd = np.array([nm.startswith("sd_") for nm in self.names])
        # Per theta entry (user order), the scale the fit searched it in (theta' = s
        # theta). The sd/cor parameters come in theta's order (an sd on each diagonal
        # entry), so an sd times its entry's scale is in those units too
        self.theta_scale = user_theta_scales(design.terms)
        self.z_hat = self._z_of(self.sdcor)
        self.extra = np.array([np.log(fit.size)]) if fit.family.estimates_size else np.zeros(0)
        self.beta_s_hat = np.asarray(fit.beta_s, dtype=float)
        # theta as the problem takes it (centred columns' where centring applies)
        self.theta_hat = np.asarray(fit.theta, dtype=float)
        if centring is not None:
            self.theta_hat = centring.to_centred_theta(self.theta_hat)
        # The parameters that centring leaves as they are (all, without centring) are
        # profiled with every free sd/cor on the centred columns (module docstring)
        self.same = np.ones(len(self.names), bool) if centring is None else centring.same_sdcor()
        self.zc_hat = self._z_of(sdcor_values(self.theta_hat[None], np.ones(1), terms)[0][:-1])
        self.d_min = float(fit.objective)
        self.lowest = self.d_min
        # beta = G beta_s: G's rows are the g_j (the map is linear: no response shift)
        self.G = prob.user_beta(np.eye(self.p)).T
        ks = tuple(self.ks)

        def theta_of(z):
            theta = theta_from_sdcor(jnp.concatenate([z, jnp.zeros(1)]), list(ks))[0]
            return theta if centring is None else centring.to_centred_theta(theta)

        def theta_of_centred(z):
            return theta_from_sdcor(jnp.concatenate([z, jnp.zeros(1)]), list(ks))[0]

        self._theta_and_jacobian = jax.jit(lambda z: (theta_of(z), jax.jacfwd(theta_of)(z)))
        self._centred_theta_and_jacobian = jax.jit(
            lambda z: (theta_of_centred(z), jax.jacfwd(theta_of_centred)(z))
        )

    def _z_of(self, sdcor) -> np.ndarray:
        """``(log sd, atanh cor)`` of ``sdcor``, just inside a boundary."""
        with np.errstate(divide="ignore"):
            return np.where(
                self.is_sd,
                np.log(np.maximum(sdcor, 1e-8 / self.theta_scale)),
                np.arctanh(np.clip(sdcor, -1 + 1e-8, 1 - 1e-8)),
            )

    # --- the objective in profile coordinates ------------------------------------------
    def _value(self, theta_user, beta_s):
        """``(value, grad in user theta, grad in beta_s, Laplace record)`` of the fit's
        objective (the record gives the optimiser's block: :meth:`_beta_block`)."""
        order = self.prob.order
        x = np.concatenate([to_internal(theta_user, self.ks, order), beta_s, self.extra])
        value, grad, lp = self.objective(x)
        g_theta = to_user(np.asarray(grad[: self.n_theta]), self.ks, order)
        return value, g_theta, np.asarray(grad[self.n_theta : self.n_theta + self.p]), lp

    def _beta_block(self, lp) -> np.ndarray:
        """The inverse Hessian's ``beta_s`` block the optimiser starts from, once per
        iteration (``GlmmProblem.beta_inverse_hessian``)."""
        return self.prob.beta_inverse_hessian(lp)[1]

    def _minimize(self, fun, start, reopen, block=None, scale=None) -> tuple[float, np.ndarray]:
        """The constrained optimum from ``start``; where ``start`` or that optimum has a
        variance component at its boundary, also from ``reopen(optimum)`` (those
        components moved inside), keeping the lower. At ``sd = 0`` the gradient in
        that component is 0, so a refit started there never leaves it, even where
        the constrained optimum has it well inside (a singular fit's other profiles).
        ``scale``: search ``scale * w`` (:func:`~interlace._core.optimize.minimize_rescaled`;
        ``block`` then on coordinates whose scale is 1)."""
        with single_blas_thread():
            opt, _ = minimize_rescaled(fun, start, scale, block_inverse=block)
            value, x = float(opt.deviance), np.asarray(opt.theta)
            again = reopen(x)
            if again is None:
                again = reopen(np.asarray(start))
            if again is not None:
                opt2, _ = minimize_rescaled(fun, again, scale, block_inverse=block)
                if float(opt2.deviance) < value or not np.isfinite(value):
                    value, x = float(opt2.deviance), np.asarray(opt2.theta)
        if np.isfinite(value):
            self.lowest = min(self.lowest, value)
        return value, x

    def _zeta_function(self, solve, est: float):
        """``zeta(v)`` from ``solve(v, start) -> (deviance, free optimum)``, each
        constrained fit started from the nearest point already solved."""
        solved: dict[float, tuple[float, np.ndarray]] = {}

        def zeta(v):
            v = float(v)
            if v not in solved:
                near = min(solved, key=lambda u: abs(u - v)) if solved else None
                solved[v] = solve(v, None if near is None else solved[near][1])
            dev = solved[v][0]
            if not np.isfinite(dev):
                return float("nan")
            return float(np.sign(v - est) * np.sqrt(max(dev - self.d_min, 0.0)))

        return zeta

    def variance_zeta(self, i: int):
        """``zeta`` of the ``i``-th sd/cor parameter: ``z_i`` pinned, the others on the
        centred columns where the parameter is the same there; a shifted term's intercept
        sd by :meth:`_intercept_sd_zeta`; else the user's."""
        if not self.same[i] and self.is_sd[i]:
            return self._intercept_sd_zeta(i)
        free_z = np.arange(len(self.z_hat)) != i
        nz = int(free_z.sum())
        if self.same[i]:
            z_hat, theta_and_jacobian = self.zc_hat, self._centred_theta_and_jacobian
        else:
            z_hat, theta_and_jacobian = self.z_hat, self._theta_and_jacobian

        def solve(v, start):
            # the boundary itself (sd 0, correlation -/+1) as a point just inside it
            zi = (
                np.log(max(v, 1e-12 / self.theta_scale[i]))
                if self.is_sd[i]
                else np.arctanh(np.clip(v, -1 + 1e-12, 1 - 1e-12))
            )
            if start is None:
                start = np.concatenate([z_hat[free_z], self.beta_s_hat])

            def fun(w):
                z = z_hat.copy()
                z[free_z], z[i] = w[:nz], zi
                theta, jac = theta_and_jacobian(jnp.asarray(z))
                value, g_theta, g_beta, lp = self._value(np.asarray(theta), w[nz:])
                g_z = np.asarray(jac).T @ g_theta
                return value, np.concatenate([g_z[free_z], g_beta]), lp

            # beta_s is among the free coordinates as it is: the block as the fit's
            sl = slice(nz, nz + self.p)
            return self._minimize(fun, start, reopen, block=lambda lp: (sl, self._beta_block(lp)))

        reopen = self._reopen(free_z)
        return self._zeta_function(solve, float(self.sdcor[i]))

    def _reopen(self, free_z: np.ndarray):
        """``reopen(w)`` for a search whose first coordinates are the ``z`` entries
        ``free_z``: ``w`` with sds at 0 moved to ``REOPEN_SD`` (correlations at +-1 to
        0), both in the search's units (module note), or None where none is there."""
        sd_free = np.flatnonzero(self.is_sd[free_z])
        cor_free = np.flatnonzero(~self.is_sd[free_z])
        log_scale = np.log(self.theta_scale[free_z][sd_free])  # the search's units

        def reopen(w):
            at_zero = w[sd_free] + log_scale < np.log(AT_BOUNDARY)
            at_one = cor_free[np.abs(np.tanh(w[cor_free])) > 1.0 - AT_BOUNDARY]
            if not at_zero.any() and at_one.size == 0:
                return None
            out = w.copy()
            out[sd_free[at_zero]] = np.log(REOPEN_SD) - log_scale[at_zero]
            out[at_one] = 0.0
            return out

        return reopen

    def _intercept_sd_zeta(self, i: int):
        """``zeta`` of a shifted term's intercept sd (on the user's columns): the other
        terms' sd/cor on the centred columns, this term's centred factor by its rows but
        the first shifted column's and the direction of its user intercept row, whose
        length is pinned (:meth:`~interlace._core.centring.Centring.factor_with_intercept_row`;
        rows in the search's units, the columns' scales)."""
        centring = self.fit.centring
        blocks_ = blocks(self.ks)
        t = next(j for j, b in enumerate(blocks_) if i in b)
        scales = self.theta_scale[blocks_[t]]
        other = np.ones(len(self.z_hat), bool)
        other[blocks_[t]] = False
        n_other, ks = int(other.sum()), list(self.ks)

        def theta_of(free, log_sd):
            z = jnp.zeros(len(other)).at[np.flatnonzero(other)].set(free[:n_other])
            theta = theta_from_sdcor(jnp.concatenate([z, jnp.zeros(1)]), ks)[0]
            part = centring.factor_with_intercept_row(
                t, free[n_other:], scales, jnp.exp(log_sd), jnp
            )
            return theta.at[blocks_[t]].set(part)

        theta_and_jacobian = jax.jit(
            lambda free, log_sd: (theta_of(free, log_sd), jax.jacfwd(theta_of)(free, log_sd))
        )
        coords = centring.intercept_row_coordinates(t, self.theta_hat[blocks_[t]], scales)
        start0 = np.concatenate([self.zc_hat[other], coords, self.beta_s_hat])
        nf = n_other + coords.size
        reopen = self._reopen(other)

        def solve(v, start):
            log_sd = np.log(max(v, 1e-12 / self.theta_scale[i]))
            start = start0 if start is None else start

            def fun(w):
                theta, jac = theta_and_jacobian(jnp.asarray(w[:nf]), log_sd)
                value, g_theta, g_beta, lp = self._value(np.asarray(theta), w[nf:])
                return value, np.concatenate([np.asarray(jac).T @ g_theta, g_beta]), lp

            sl = slice(nf, nf + self.p)
            return self._minimize(fun, start, reopen, block=lambda lp: (sl, self._beta_block(lp)))

        return self._zeta_function(solve, float(self.sdcor[i]))

    def fixed_zeta(self, j: int):
        """``zeta`` of fixed effect ``j``: ``beta_j = g_j' beta_s`` pinned (module
        docstring)."""
        g = self.G[j]
        a = g / (g @ g)
        # orthonormal basis of g's complement: the last p - 1 right singular vectors
        N = np.linalg.svd(g[None, :])[2][1:].T
        nt = self.n_theta
        # the user's beta_j alone, the others held: G^-1 e_j (g' e = 1)
        e = np.linalg.solve(self.G, np.eye(self.p)[j])

        def solve(v, start):
            """The constrained fit at ``v`` from ``start = [theta, beta_s]`` (a solved
            point's, or the estimate's): ``(deviance, [theta, beta_s])``."""
            theta0, beta0 = (
                (self.theta_hat, self.beta_s_hat) if start is None else (start[:nt], start[nt:])
            )

            def fun(w):
                beta_s = a * v + N @ w[nt:]
                value, g_theta, g_beta, lp = self._value(w[:nt], beta_s)
                return value, np.concatenate([g_theta, N.T @ g_beta]), lp

            # Two ways to move beta_j from the start's value to v, and the lower start is
            # taken: along a = g / |g|^2 (the shortest step in the centred and scaled
            # beta_s, which lets the intercept absorb a column's shift: a predictor near
            # 1e6 moves every row by 1e6 per unit of beta_j otherwise), or along e (the
            # user's beta_j alone, as lme4's profile moves it: along a, pinning a
            # separated dummy at -1000 dragged the intercept until every row's
            # probability was 0 or 1, a plateau with a gradient of exactly 0, where the
            # search stopped 5,750 above the deviance it has with the intercept in place)
            step = v - g @ beta0
            starts = [np.concatenate([theta0, N.T @ (beta0 + d * step)]) for d in (a, e)]
            start = min(starts, key=lambda w: _finite_or_inf(fun(w)[0]))
            # theta searched as the fit searched it (theta' = s theta), c as it is
            value, w = self._minimize(fun, start, reopen, block=block, scale=scale)
            return value, np.concatenate([w[:nt], a * v + N @ w[nt:]])

        scale = np.concatenate([self.theta_scale, np.ones(self.p - 1)])
        sl = slice(nt, nt + self.p - 1)

        def block(lp):
            """The block in the coordinates ``w = N' beta_s``: the inverse of ``N' M^-1 N``
            (the Hessian ``M^-1`` restricted to g's complement); None where ``M`` is
            singular or not finite (then the plain start)."""
            M = self._beta_block(lp)
            if self.p == 1 or not np.all(np.isfinite(M)):
                return None
            try:
                return sl, np.linalg.inv(N.T @ np.linalg.solve(M, N))
            except np.linalg.LinAlgError:
                return None

        diagonal = np.flatnonzero(diagonal_mask(self.ks))
        diagonal_scale = self.theta_scale[diagonal]

        def reopen(w):
            """``w`` with diagonal ``theta`` entries at 0 moved to ``REOPEN_SD``, both in
            the search's units (module note)."""
            at_zero = np.abs(w[diagonal]) * diagonal_scale < AT_BOUNDARY
            if not at_zero.any():
                return None
            out = w.copy()
            out[diagonal[at_zero]] = REOPEN_SD / diagonal_scale[at_zero]
            return out

        return self._zeta_function(solve, float(self.fit.beta[j]))

    def warn_if_lower(self) -> None:
        if self.lowest < self.d_min - _LOWER_TOL * (1.0 + abs(self.d_min)):
            warnings.warn(
                f"Profiling found a lower -2 logLik ({self.lowest:.6f}) than the fit's "
                f"({self.d_min:.6f}): the fit had not reached its optimum, and the intervals "
                "are measured from it. Refit (e.g. from other starting values) and check "
                "convergence.",
                UserWarning,
                stacklevel=4,
            )


def _finite_or_inf(value) -> float:
    """``value`` as a float, ``inf`` where it is not finite (for ``min``)."""
    value = float(value)
    return value if np.isfinite(value) else np.inf
