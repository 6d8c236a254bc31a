"""Many GLMMs that share one design (genes x cells): one response per column, fitted in
compiled, vectorised batches.

Each response's fit minimises the single fit's objective
(:func:`~interlace._model.glmm_estimate.laplace_objective`: PIRLS, then the Laplace or
quadrature deviance with its exact gradient) with the compiled L-BFGS
(:func:`~interlace._core.optimize.minimize_compiled`), under ``jax.vmap`` over the
responses: one executable per batch shape, every response's PIRLS and line search side by
side. As a single fit (``glmm_estimate``'s module docstring): ``nAGQ = 0`` searches
``theta`` with ``beta`` in PIRLS; ``nAGQ >= 1`` searches ``theta`` and ``beta_s``
together from ``theta = 1`` and the joint modes there; a negative binomial's ``log k``
comes last, from each response's moment estimate (``var = m + m^2 / k``). Two differences:
each evaluation's PIRLS starts from the response's modes at its start (the line search
carries no state between evaluations), and no standard errors are computed.

As :func:`~interlace._core.refit.refit_all`: every response gets ``first_maxiter``
iterations together, then only the unconverged ones continue from where they stopped, in
a batch padded to a power of two. Dense factorisations under ``vmap`` take the plain-JAX
path (:mod:`interlace._core.linalg`), so no batch can deadlock.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._core.family import Family
from .._core.optimize import off_zero
from .._core.pirls import laplace, pirls
from .._core.refit import balanced_split
from .._core.standardize import back_transform_beta, to_standardized_beta
from .._core.stepwise import minimize_stepwise
from .._core.theta import normalize_signs, to_user, tril_index
from .glmm_design import GlmmDesign
from .glmm_estimate import GlmmProblem

__all__ = ["GlmmBatch", "fit_glmm_many", "degenerate_responses"]

# Responses per vectorised batch: at most this many, and no more rows in flight than
# _BATCH_ROWS (each row carries a few dozen float64 temporaries per evaluation).
_MAX_BATCH = 256
_BATCH_ROWS = 100_000


class GlmmBatch(NamedTuple):
    """One row per response: ``theta`` (user's order, lme4's signs), ``beta``, ``size``
    (negative binomial's ``k``; NaN for other families), ``minus_two_llf`` (lme4's
    ``-2 logLik``), ``deviance`` (lme4's ``deviance()``, the sum of the squared deviance
    residuals at the modes, as :class:`~interlace.GLMMResult`'s), ``converged``, L-BFGS
    ``iterations`` and ``degenerate`` (not fitted: :func:`degenerate_responses`; NaN
    estimates); ``theta_names`` (lme4's)."""

    theta: np.ndarray
    beta: np.ndarray
    size: np.ndarray
    minus_two_llf: np.ndarray
    deviance: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    degenerate: np.ndarray
    theta_names: tuple


@partial(jax.jit, static_argnames=("family", "n_theta", "ic", "joint"))
def _fit_batch(Y, X0, ma, data, xstd, rule, *, family, n_theta, ic, joint, start_beta, maxiter):
    """Fit each row of ``Y`` from the matching row of ``X0`` (the optimiser's
    coordinates: ``[theta, (beta_s unless joint), (log k)]``). ``start_beta`` (a traced
    flag, as ``maxiter``: both passes share the executable): ``beta_s`` of ``X0`` is
    replaced by the joint modes' at ``X0``'s ``theta`` (a fresh start)."""
    p = xstd.x_scale.shape[0]

    def full(xr):
        if not joint:
            return xr
        return jnp.concatenate([xr[:n_theta], jnp.zeros(p, xr.dtype), xr[n_theta:]])

    def one(y, x0):
        # the log-density's data terms once per response, not in every evaluation
        d = data._replace(y=y, density_constant=family.density_constant(y, data.prior_weights))

        def evaluate(xr, aux, start):
            # PIRLS from the last accepted point's modes; at a fresh start of a Laplace
            # fit with beta among the modes, whose beta then becomes the start's
            eta = aux[0]
            fixed = False if joint else jnp.logical_not(start & start_beta)
            x = full(xr)
            data_x = d._replace(size=jnp.exp(x[-1])) if family.estimates_size else d
            theta = x[:n_theta]
            beta = back_transform_beta(x[n_theta : n_theta + p], xstd, ic)
            modes, _ = pirls(theta, ma, family, data_x, eta, beta, fixed)
            if not joint:
                beta_s = jax.lax.stop_gradient(to_standardized_beta(modes.beta, xstd, ic))
                xr = jnp.where(start & start_beta, xr.at[n_theta : n_theta + p].set(beta_s), xr)

            def value(xr):
                x = full(xr)
                size = jnp.exp(x[-1]) if family.estimates_size else d.size
                theta = x[:n_theta]
                beta = back_transform_beta(x[n_theta : n_theta + p], xstd, ic)
                lp = laplace(
                    theta, ma, family, d._replace(size=size), modes.eta, beta, rule, not joint
                )
                return lp.value, (lp.modes.eta, lp.modes.beta, lp.dev_sum)

            (v, aux_new), grad = jax.value_and_grad(value, has_aux=True)(xr)
            return xr, v, grad, aux_new

        eta0 = family.linkfun(family.start_mu(y, d.prior_weights))
        aux0 = (eta0, jnp.zeros(p, eta0.dtype), jnp.zeros((), eta0.dtype))
        out = minimize_stepwise(evaluate, x0, aux0, maxiter=maxiter)
        return out.x, out.aux[1], out.value, out.aux[2], out.converged, out.iterations

    return jax.vmap(one)(Y, X0)


def degenerate_responses(Y: np.ndarray, family: Family, prior_weights: np.ndarray) -> np.ndarray:
    """Columns of ``Y`` (n, B) no GLMM can fit: all counts 0, or every binomial outcome
    the same (the intercept runs to infinity)."""
    used = prior_weights > 0
    y = Y[used]
    if family.name == "binomial":
        return np.all(y == 0, axis=0) | np.all(y == 1, axis=0)
    return np.all(y == 0, axis=0)


def fit_glmm_many(
    glmm: GlmmDesign,
    family: Family,
    Y: np.ndarray,
    *,
    nagq: int = 1,
    batch_size: int | None = None,
    first_maxiter: int = 50,
    maxiter: int = 500,
) -> GlmmBatch:
    """Fit ``glmm``'s model to every column of ``Y`` (n, B; valid responses of the family)
    in vectorised batches (module docstring); degenerate columns are not fitted."""
    prob = GlmmProblem(glmm, family, nagq)
    n, n_all = Y.shape
    degenerate = degenerate_responses(Y, family, glmm.prior_weights)
    fitted = np.flatnonzero(~degenerate)
    Y = Y[:, fitted]
    B = Y.shape[1]
    joint = nagq == 0
    ks, order, n_theta, p = prob.ks, prob.order, prob.n_theta, prob.p
    theta0 = off_zero(
        np.concatenate([(r == c).astype(float) for r, c in (tril_index(k) for k in ks)])
    )
    X0 = np.tile(np.concatenate([theta0, np.zeros(0 if joint else p)]), (B, 1))
    if family.estimates_size:
        m, v = Y.mean(axis=0), Y.var(axis=0)
        log_k = np.log(np.clip(m**2 / np.maximum(v - m, 1e-2 * m**2), 0.05, 1e3))
        X0 = np.concatenate([X0, log_k[:, None]], axis=1)
    if batch_size is None:
        batch_size = max(8, min(_MAX_BATCH, _BATCH_ROWS // max(n, 1)))
    _, size = balanced_split(max(B, 1), batch_size)

    def run(Ys, Xs, *, start_beta, iterations):
        out = _fit_batch(
            np.asarray(Ys, np.float64),  # numpy into the jitted call: no copy compiled
            np.asarray(Xs, np.float64),
            prob.ma,
            prob.data,
            prob.xstd,
            prob.rule,
            family=family,
            n_theta=n_theta,
            ic=prob.ic,
            joint=joint,
            start_beta=np.bool_(start_beta),
            maxiter=np.asarray(iterations, np.int64),
        )
        return [np.array(a) for a in out]

    x = np.empty_like(X0)
    beta, value, dev = np.empty((B, p)), np.empty(B), np.empty(B)
    ok, its = np.zeros(B, dtype=bool), np.zeros(B, dtype=np.int64)
    for start in range(0, B, size):
        idx = np.arange(start, min(start + size, B))
        pad = np.concatenate([idx, np.full(size - idx.size, idx[0])])
        part = run(Y[:, pad].T, X0[pad], start_beta=True, iterations=first_maxiter)
        for dest, src in zip((x, beta, value, dev, ok, its), part):
            dest[idx] = src[: idx.size]
    todo = np.flatnonzero(~ok)
    for start in range(0, todo.size, size):
        idx = todo[start : start + size]
        # the first pass's executable for small batches; else a power of two
        padded = size if size <= 64 else int(2 ** np.ceil(np.log2(max(idx.size, 8))))
        pad = np.concatenate([idx, np.full(padded - idx.size, idx[0])])
        restart = np.where(np.isfinite(x[pad]).all(axis=1, keepdims=True), x[pad], X0[pad])
        part = run(Y[:, pad].T, restart, start_beta=False, iterations=maxiter)
        for dest, src in zip((x, beta, value, dev, ok), part[:5]):
            dest[idx] = src[: idx.size]
        its[idx] += part[5][: idx.size]
    theta = np.array([normalize_signs(to_user(row[:n_theta], ks, order), ks) for row in x]).reshape(
        B, n_theta
    )
    if family.size is not None:
        size_k = np.full(B, float(family.size))
    else:
        size_k = np.exp(x[:, -1]) if family.estimates_size else np.full(B, np.nan)

    def spread(a, fill):  # the fitted rows back among all responses
        out = np.full((n_all, *a.shape[1:]), fill, dtype=a.dtype)
        out[fitted] = a
        return out

    return GlmmBatch(
        spread(theta, np.nan),
        spread(beta, np.nan),
        spread(size_k, np.nan),
        spread(value, np.nan),
        spread(dev, np.nan),
        spread(ok, False),
        spread(its, 0),
        degenerate,
        prob.ma.theta_names,
    )
