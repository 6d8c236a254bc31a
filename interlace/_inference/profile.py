"""Profile-likelihood confidence intervals (lme4's ``confint(fit, method = "profile")``).

As lme4 does, the profile is of the ML deviance, also for REML fits (the model is
refitted by ML first). For a parameter ``psi_i`` (a standard deviation, a correlation,
``sigma`` or a fixed effect) the profiled deviance ``d_i(v)`` minimises the deviance
over all other parameters with ``psi_i = v``; the interval is where the signed root
``zeta(v) = sign(v - psi_hat) sqrt(d_i(v) - d_min)`` lies within the normal quantiles
(Bates et al. 2015, sec. 5.1.2). We find the two roots with Brent's method instead of
interpolating a spline through a grid, so the ends are exact to the root tolerance.

Variance parameters are optimised as ``(log sd, atanh cor, log sigma)`` with ``beta``
profiled out analytically (:func:`deviance_varpar`); a fixed effect ``beta_j = v`` is
the ML fit of the model with offset ``v x_j`` and without column ``j``.
"""

from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from .._base.jit import jit
from .._core.arrays import cross_products_of, model_arrays_from, theta_to_internal
from .._core.deviance import deviance_varpar, unrolled_cholesky
from .._core.fitting import search_scale
from .._core.optimize import minimize_deviance
from .._core.theta import blocks, diagonal_mask, to_internal, tril_index
from .._model.estimate import ModelFit, user_theta_scales
from .._model.varcorr import sdcor_names, sdcor_values

__all__ = [
    "profile_confint",
    "theta_from_sdcor",
    "bounded_root",
    "doubling_root",
    "AT_BOUNDARY",
    "REOPEN_SD",
]

# REOPEN: at a variance component's boundary (sd 0) the deviance's gradient in it is 0,
# so a constrained refit started there never leaves it, even where the constrained
# optimum has it well inside: in a singular fit, the other parameters' profiles came
# out too high and their intervals too narrow (a nested model's intercept: a refit with
# it held at the interval's end, started elsewhere, sat 3.30 above the minimum, not
# 3.84; lme4's profile has the same fault). Where the fit has an sd below AT_BOUNDARY
# (relative to sigma; theta entries for the fixed effects' refits) or a correlation
# within it of +-1, every refit also starts with those at REOPEN_SD (a correlation at
# 0), and the lower optimum is kept.
AT_BOUNDARY = 1e-3
REOPEN_SD = 0.5


# scipy is imported on first use, not with interlace (it adds ~0.5 s to the import).
def _normal_quantile(p):
    from scipy.special import ndtri

    return ndtri(p)


def _brentq(*args, **kwargs):
    from scipy.optimize import brentq

    return brentq(*args, **kwargs)


def theta_from_sdcor(z: jnp.ndarray, ks: list[int]) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``theta`` (user layout) and ``sigma`` from ``z`` = per term, in lme4's sd/cor order
    (lower triangle column-major: log sd on the diagonal, atanh cor below), then log sigma."""
    sigma = jnp.exp(z[-1])
    parts, start = [], 0
    for k in ks:
        rows, cols = tril_index(k)
        seg = z[start : start + len(rows)]
        start += len(rows)
        sd = jnp.exp(jnp.stack([seg[n] for n, (r, c) in enumerate(zip(rows, cols)) if r == c]))
        R = jnp.eye(k)
        for n, (r, c) in enumerate(zip(rows, cols)):
            if r != c:
                R = R.at[r, c].set(jnp.tanh(seg[n])).at[c, r].set(jnp.tanh(seg[n]))
        T = unrolled_cholesky(R * sd[:, None] * sd[None, :]) / sigma
        parts.append(T[rows, cols])
    return jnp.concatenate(parts), sigma


def _minimize(f, x0, maxiter=300):
    """Unconstrained L-BFGS (optax, zoom line search) of a scalar JAX function."""
    solver = optax.lbfgs()
    vg = optax.value_and_grad_from_state(f)

    def body(carry):
        x, state, i = carry
        v, g = vg(x, state=state)
        u, state = solver.update(g, state, x, value=v, grad=g, value_fn=f)
        return optax.apply_updates(x, u), state, i + 1

    def cond(carry):
        _, state, i = carry
        g = optax.tree_utils.tree_get(state, "grad")
        return (i == 0) | (
            (i < maxiter)
            & (
                jnp.max(jnp.abs(g))
                > 1e-9 * (1 + jnp.abs(optax.tree_utils.tree_get(state, "value")))
            )
        )

    x, _, _ = jax.lax.while_loop(cond, body, (x0, solver.init(x0), 0))
    return x, f(x)


def profile_confint(ml: ModelFit, level: float = 0.95, only=None) -> pd.DataFrame:
    """Profile intervals for ``sd_*``, ``cor_*``, ``sigma`` and the fixed effects, from
    the ML fit ``ml`` of the model (lme4 profiles the ML deviance, module doc);
    ``only``: those rows alone, by name (None: all)."""
    if ml.method != "ML":
        raise AssertionError("internal: profile_confint needs the model's ML fit")
    d = ml.design
    ks = ml.ks
    centring = ml.centring
    # a fit that searched centred random-slope columns is profiled on them too: the
    # same deviance, without the digits the uncentred columns lose (_core.centring)
    cp = ml.search_cross_products
    d_min = ml.deviance
    zq = float(_normal_quantile(0.5 + level / 2))

    def dev_z(z, centred: bool):
        """The ML deviance at ``z`` (sd/cor of the user's columns, or of the centred
        ones where ``centred``)."""
        theta, sigma = theta_from_sdcor(z, ks)
        if centring is not None and not centred:
            theta = centring.to_centred_theta(theta)
        return deviance_varpar(to_internal(theta, ks, cp.order), sigma, cp, reml=False)

    sigma_hat = np.array([ml.sigma])
    sdcor = sdcor_values(ml.theta[None], sigma_hat, d.terms)[0]
    names = sdcor_names(d.terms)
    is_sd = np.array([nm.startswith("sd_") for nm in names[:-1]] + [True])
    nz = sdcor.shape[0]
    # Where centring leaves a parameter as it is (every sd and correlation but those of a
    # shifted term's intercept, and sigma), the other parameters are searched on the
    # centred columns: on the user's, a term's intercept sd and correlation at a slope
    # column 1e6 from 0 are ~1e6 times its sd and -1 + 1e-12, and refits pinning another
    # term's sd (or sigma) stopped short of their optimum (intervals too narrow)
    same = np.ones(nz, bool) if centring is None else np.append(centring.same_sdcor(), True)
    theta_c = ml.theta if centring is None else centring.to_centred_theta(ml.theta)
    sdcor_c = sdcor_values(np.asarray(theta_c)[None], sigma_hat, d.terms)[0]

    @partial(jit, static_argnames=("centred",))
    def profile_var(i, value, start, centred):
        """min over the other z with z_i = value (i traced: one compile for all)."""
        mask = jnp.arange(nz) == i

        def f(free):
            return dev_z(jnp.where(mask, value, free), centred)

        free, val = _minimize(f, start)
        return jnp.where(mask, value, free), val

    def starts_at(values) -> list:
        """The estimate's ``z``, and for a singular fit the same with its zero sds (or
        correlations at +-1) moved inside, a second start of every refit (REOPEN
        docstring)."""
        with np.errstate(divide="ignore"):
            z_hat = np.where(
                is_sd,
                np.log(np.maximum(values, 1e-8)),
                np.arctanh(np.clip(values, -1 + 1e-8, 1 - 1e-8)),
            )
        at_zero = is_sd & (values < AT_BOUNDARY * ml.sigma)
        at_one = ~is_sd & (np.abs(values) > 1.0 - AT_BOUNDARY)
        out = [jnp.asarray(z_hat)]
        if at_zero.any() or at_one.any():
            reopened = np.where(at_zero, np.log(REOPEN_SD * ml.sigma), np.where(at_one, 0.0, z_hat))
            out.append(jnp.asarray(reopened))
        return out

    starts = {False: starts_at(sdcor), True: starts_at(sdcor_c)}
    intercept_sds: dict[int, tuple] = {}  # i -> _intercept_sd_profile's, built once

    rows = {}
    for i, name in enumerate(names):
        if only is not None and name not in only:
            continue

        def zeta(v, i=i, name=name):
            z = np.log(v) if is_sd[i] else np.arctanh(v)
            centred = bool(same[i])
            if not centred and is_sd[i]:  # a shifted term's intercept sd
                if i not in intercept_sds:
                    intercept_sds[i] = _intercept_sd_profile(ml, i, starts[True])
                profile, start = intercept_sds[i]
                val = min(float(profile(z, st)) for st in start)
            else:
                val = min(float(profile_var(i, z, st, centred)[1]) for st in starts[centred])
            return np.sign(v - sdcor[i]) * np.sqrt(max(val - d_min, 0.0))

        lo_bound, hi_bound = (0.0, np.inf) if is_sd[i] else (-1.0, 1.0)
        rows[name] = (
            bounded_root(zeta, sdcor[i], -zq, lo_bound),
            bounded_root(zeta, sdcor[i], zq, hi_bound),
        )

    for j, name in enumerate(d.fe_names):
        if only is not None and name not in only:
            continue
        rows[name] = _fixed_effect_interval(ml, j, zq, d_min)
    return pd.DataFrame(
        rows, index=[f"{100 * (0.5 - level / 2):g} %", f"{100 * (0.5 + level / 2):g} %"]
    ).T


def _intercept_sd_profile(ml: ModelFit, i: int, z_starts: list):
    """``(profile(log_sd, start) -> ML deviance, starts)`` for sd/cor entry ``i``, a
    shifted term's intercept sd: minimised over the other terms' sd/cor and sigma on the
    centred columns (``z_starts``: their starts, as the centred profiles'), this term's
    centred factor by its rows but the first shifted column's (in units of the columns'
    sizes) and the direction of its user intercept row, whose length is pinned
    (:meth:`~interlace._core.centring.Centring.factor_with_intercept_row`)."""
    centring, ks, cp = ml.centring, list(ml.ks), ml.search_cross_products
    blocks_ = blocks(ks)
    t = next(j for j, b in enumerate(blocks_) if i in b)
    scales = user_theta_scales(centring.terms(ml.design.terms))[blocks_[t]]
    nz = sum(len(b) for b in blocks_) + 1  # and log sigma
    other = np.ones(nz, bool)
    other[blocks_[t]] = False
    n_other = int(other.sum())
    # the centred factor in sd units (the coordinates' rows are the covariance's factor)
    theta_c = np.asarray(centring.to_centred_theta(ml.theta))[blocks_[t]] * ml.sigma
    coords = centring.intercept_row_coordinates(t, theta_c, scales)
    starts = [jnp.asarray(np.concatenate([np.asarray(z)[other], coords])) for z in z_starts]

    def deviance(free, log_sd):
        z = jnp.zeros(nz).at[np.flatnonzero(other)].set(free[:n_other])
        theta, sigma = theta_from_sdcor(z, ks)
        part = centring.factor_with_intercept_row(t, free[n_other:], scales, jnp.exp(log_sd), jnp)
        theta = theta.at[blocks_[t]].set(part / sigma)
        return deviance_varpar(to_internal(theta, ks, cp.order), sigma, cp, reml=False)

    @jit
    def profile(log_sd, start):
        return _minimize(lambda free: deviance(free, log_sd), start)[1]

    return profile, starts


def bounded_root(zeta, est: float, target: float, bound: float, unit: float = 1.0) -> float:
    """Where ``zeta(v) = target`` moving from ``est`` towards ``bound``; the bound itself
    (0 for an sd, +-1 for a correlation) if ``zeta`` never gets there. ``unit``: the size
    of the parameter's units where ``est`` is near 0 (the first step is a tenth of
    ``max(|est|, 1e-3 unit)``): ``1 / s`` for the sd of a slope on a column of size ``s``,
    whose sds are ``s`` times smaller than the same model's in units of 1. NaN with a
    warning where ``zeta`` is not finite on the way (its refit failed)."""
    direction = np.sign(target)
    floor = 1e-3 * unit
    step = 0.1 * max(abs(est), floor)
    lo = est
    for _ in range(60):
        hi = lo + direction * step
        if np.isfinite(bound) and (hi - bound) * direction >= 0:
            hi = bound - direction * 1e-9 * max(1.0, abs(bound))
            z = zeta(hi)
            if np.isfinite(z) and (z - target) * direction < 0:
                return float(bound)
            break
        z = zeta(hi)
        if not np.isfinite(z) or (z - target) * direction >= 0:
            break
        lo, step = hi, step * 2
    if not np.isfinite(z):
        warnings.warn(
            f"profile confidence interval: the profiled deviance could not be evaluated at "
            f"{hi:.6g} (between the estimate {est:.6g} and the bound {bound:g}); that end "
            "is returned as NaN. Use a Wald or bootstrap interval for it.",
            UserWarning,
            stacklevel=4,
        )
        return float("nan")
    return float(
        _brentq(
            lambda v: zeta(v) - target,
            min(lo, hi),
            max(lo, hi),
            # 1e-10 of the estimate (of 1e-3 units at 0): 1e-10 absolute was 2.5e-4 of an
            # sd of 4e-7 (a slope on a covariate in units of 1e6)
            xtol=1e-10 * max(floor, abs(est)),
            rtol=1e-12,
        )
    )


def _fixed_effect_interval(ml: ModelFit, j: int, zq: float, d_min: float) -> tuple[float, float]:
    """ML fit with ``beta_j`` fixed at ``v``. With ``X = Q R`` (thin QR) and ``gamma =
    R beta``, ``beta_j = g' gamma`` for ``g = R^-T e_j``; so ``X beta = v Q a + Q N c``
    with ``a = g / |g|^2`` and ``N`` an orthonormal basis of ``g``'s complement: an
    offset ``v Q a`` and the free columns ``Q N``, orthonormal. That is the model with
    offset ``v x_j`` and column ``j`` dropped, but its columns keep their digits where
    the others sit far from 0: with ``x + 1e6``, the intercept's refits (offset ``v`` of
    ~5e5, only the column ``x`` left) had to cancel ~1e11 in the cross-products, and
    its interval came out 0.4% off (and took 140 s for 8)."""
    d = ml.design
    Q, R = np.linalg.qr(np.asarray(d.X, dtype=float))
    g = np.linalg.solve(R.T, np.eye(R.shape[0])[j])
    N = np.linalg.svd(g[None, :])[2][1:].T  # (p, p - 1)
    X = Q @ N
    xj = Q @ (g / (g @ g))
    centring = ml.centring
    terms = d.terms if centring is None else centring.terms(d.terms)  # as profile_confint
    model = model_arrays_from(
        [t.codes for t in terms],
        [len(t.levels) for t in terms],
        X,
        d.y_model,
        [t.X for t in terms],
        prior_weights=d.weights,
    )
    theta = ml.theta if centring is None else centring.to_centred_theta(ml.theta)
    start = theta_to_internal(jnp.asarray(theta), model)
    starts = [start]
    diagonal = diagonal_mask(list(model.template.ks))  # internal order, as start
    if np.any(diagonal & (np.abs(np.asarray(start)) < AT_BOUNDARY)):  # REOPEN docstring
        at_zero = diagonal & (np.abs(np.asarray(start)) < AT_BOUNDARY)
        starts.append(jnp.asarray(np.where(at_zero, REOPEN_SD, np.asarray(start))))
    y = jnp.asarray(d.y_model)
    x = jnp.asarray(xj)

    @jit
    def dev(v, start):
        cp = cross_products_of(model.replace(y=y - v * x))
        # theta searched in a single fit's units: on a slope in units of 1e6 the
        # unscaled refits stopped short and narrowed an interval by 1e-4 relative
        return minimize_deviance(start, cp, reml=False, scale=search_scale(model)).deviance

    est = float(ml.beta[j])

    def zeta(v):
        value = min(float(dev(v, s)) for s in starts)
        return np.sign(v - est) * np.sqrt(max(value - d_min, 0.0))

    seen: dict[float, float] = {}  # each zeta is an ML refit: brentq re-asks for the ends

    def zeta_once(v):
        if v not in seen:
            seen[v] = zeta(v)
        return seen[v]

    # First step: one Wald half-width (the profile's end when the deviance is quadratic).
    se = float(np.sqrt(ml.fe_cov[j, j]))
    step = zq * se if np.isfinite(se) and se > 0 else 0.1 * max(abs(est), 1.0)
    name = str(ml.design.fe_names[j])
    return (
        doubling_root(zeta_once, est, -zq, step, name),
        doubling_root(zeta_once, est, zq, step, name),
    )


# Steps that double from one Wald half-width reach 2^30 half-widths: a profile that has
# not reached the level by then is flat for all practical purposes.
_MAX_DOUBLINGS = 30


def doubling_root(zeta, est: float, target: float, step: float, name: str) -> float:
    """Where ``zeta(v) = target`` moving from ``est`` (``zeta(est) = 0``): steps that
    double (``step``, ``2 step``, ...) until ``zeta`` passes ``target``, then Brent's
    method between the last two points, as :func:`bounded_root` brackets the variance
    parameters. A fixed bracket (``est -/+ 3 z se``) misses the ends of profiles much
    flatter than the Wald approximation (few groups, high levels). NaN with a warning
    when ``zeta`` has not reached ``target`` after ``_MAX_DOUBLINGS`` steps or stops
    being finite (the refit failed)."""
    direction = np.sign(target)
    # the root to 1e-10 of the first step (a Wald half-width): an absolute 1e-10 was 3e-4
    # of an interval for a coefficient of a covariate in units of 1e6
    xtol = 1e-10 * step
    lo, z = est, 0.0
    for _ in range(_MAX_DOUBLINGS):
        hi = lo + direction * step
        z = zeta(hi)
        if not np.isfinite(z):
            break
        if (z - target) * direction >= 0:
            return float(
                _brentq(lambda v: zeta(v) - target, min(lo, hi), max(lo, hi), xtol=xtol, rtol=1e-12)
            )
        lo, step = hi, 2 * step
    side = "lower" if direction < 0 else "upper"
    warnings.warn(
        f"profile confidence interval of {name!r}: the signed root of the profiled deviance "
        f"did not reach {target:+.3g} between the estimate {est:.6g} and {hi:.6g} (last "
        f"value {z:.3g}); its {side} end is returned as NaN. The likelihood is nearly flat "
        "in this direction: check the model (is the effect identifiable?), use a lower "
        "level or a Wald or bootstrap interval.",
        UserWarning,
        stacklevel=4,
    )
    return float("nan")
