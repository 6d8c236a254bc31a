"""The public functional layer: pure JAX functions of a model's arrays.

Build a model's arrays once with :func:`model_arrays` (the pandas/formula edge), then
use plain functions of arrays that compose with ``jax.jit``, ``jax.grad`` and
``jax.vmap``: the profiled deviance of ``theta``, the full log-likelihood of
``(beta, theta, sigma)``, the BLUPs, and :func:`fit_arrays`, a fit whose estimates are
differentiable in the data by the implicit function theorem. ``theta`` is in the
user's term order with lme4's layout (:mod:`interlace._core.theta`), as in
``CrossedLMEResult.theta``.
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._core.arrays import ModelArrays, cross_products_of, model_arrays_from
from ._model.design import build_design
from ._core.deviance import estimates, log_likelihood, profiled_deviance
from ._base.errors import DataError, ModelSpecError
from ._core.optimize import minimize_deviance
from ._base.precision import float64_functional, float64_scope
from ._core.theta import theta_names, to_internal, to_user, tril_index

__all__ = ["model_arrays", "deviance", "loglik", "blups", "fit_arrays", "fit_many"]


@float64_scope
def model_arrays(formula: str, data: pd.DataFrame,
                 groups: str | Sequence[str] | None = None) -> ModelArrays:
    """The arrays of a model (a pytree): response, fixed and random-term columns, unit
    weights and the index structure of its cross-products. Same formula syntax and
    input checks as :func:`interlace.fit`."""
    return _arrays_of(build_design(formula, data, groups))


def _arrays_of(d) -> ModelArrays:
    terms = d.terms
    names = [nm for t in terms for nm in theta_names(t.factor, t.columns)]
    return model_arrays_from([t.codes for t in terms], [len(t.levels) for t in terms], d.X,
                             d.y, [t.X for t in terms], fe_names=d.fe_names, theta_names=names)


def _user_ks(ma: ModelArrays) -> list[int]:
    ks = [0] * len(ma.template.order)
    for pos, user in enumerate(ma.template.order):
        ks[user] = ma.template.ks[pos]
    return ks


def _to_internal(theta: jnp.ndarray, ma: ModelArrays) -> jnp.ndarray:
    return to_internal(theta, _user_ks(ma), ma.template.order)


def _to_user(theta_int: jnp.ndarray, ma: ModelArrays) -> jnp.ndarray:
    return to_user(theta_int, _user_ks(ma), ma.template.order)


def _normalize_signs(theta_int: jnp.ndarray, ma: ModelArrays) -> jnp.ndarray:
    """Flip columns of each ``T`` to a non-negative diagonal (JAX, differentiable)."""
    signs, start = [], 0
    for k in ma.template.ks:
        rows, cols = tril_index(k)
        diag = theta_int[start + np.flatnonzero(rows == cols)]  # one per column
        signs.append(jnp.where(diag[cols] < 0, -1.0, 1.0))
        start += len(rows)
    return theta_int * jnp.concatenate(signs)


@float64_functional
def deviance(theta: jnp.ndarray, model: ModelArrays, *, reml: bool = True) -> jnp.ndarray:
    """Profiled deviance at ``theta`` (lme4's REML criterion or ML deviance)."""
    return profiled_deviance(_to_internal(theta, model), cross_products_of(model), reml=reml)


@float64_functional
def loglik(beta: jnp.ndarray, theta: jnp.ndarray, sigma: jnp.ndarray,
           model: ModelArrays) -> jnp.ndarray:
    """Full ML log-likelihood of ``(beta, theta, sigma)`` (not profiled)."""
    return log_likelihood(beta, _to_internal(theta, model), sigma, cross_products_of(model))


@float64_functional
def blups(theta: jnp.ndarray, model: ModelArrays, *, reml: bool = True) -> list[jnp.ndarray]:
    """BLUPs at ``theta``: one ``(levels, k)`` array per term, in the user's order."""
    cp = cross_products_of(model)
    est = estimates(_to_internal(theta, model), cp, reml=reml)
    internal = [est["b1"]]
    start = 0
    for q, k in zip(cp.nlevels[1:], cp.ks[1:]):
        internal.append(est["b_tail"][start:start + q * k].reshape(q, k))
        start += q * k
    out = [None] * len(internal)
    for pos, i in enumerate(cp.order):
        out[i] = internal[pos]
    return out


@float64_functional
def fit_arrays(model: ModelArrays, *, reml: bool = True, theta0: jnp.ndarray | None = None,
               maxiter: int = 500, implicit: bool = True, precond=None) -> dict:
    """Fit by L-BFGS and return ``beta``, ``theta`` (user order, lme4 signs), ``sigma``,
    ``deviance``, ``fe_cov`` (``vcov(beta)``) and ``converged`` (False also when the deviance or
    an estimate is not finite): a pure function of ``model``'s arrays.

    Gradients of the estimates with respect to the data follow the implicit function
    theorem, not the optimiser's iterations: at the optimum ``grad_theta d = 0``, so
    ``d theta / d data = -H^-1 d(grad_theta d) / d data``. We return
    ``theta* - H^-1 grad_theta d(theta*)`` with ``theta*`` and ``H`` held constant: its
    value is ``theta*`` (plus a negligible Newton correction) and its derivative is
    exactly the implicit one. ``beta`` and ``sigma`` are then differentiable functions
    of ``theta`` and the data. ``implicit=False`` skips that step (no Hessian): use it
    for refits that need values only, such as bootstrap replicates. ``precond`` (in the
    internal term order) rescales the search, see :func:`minimize_deviance`.
    """
    cp = cross_products_of(model)
    start = (jnp.ones(model.template.theta_offsets[-1]) if theta0 is None
             else _to_internal(jnp.asarray(theta0), model))
    opt = minimize_deviance(start, jax.lax.stop_gradient(cp), reml=reml, maxiter=maxiter,
                            precond=precond)
    theta = theta_star = jax.lax.stop_gradient(opt.theta)
    if implicit:
        def grad_theta(th, c):
            return jax.grad(profiled_deviance)(th, c, reml=reml)

        hessian = jax.lax.stop_gradient(jax.jacrev(grad_theta)(theta_star, cp))
        theta = theta_star - jnp.linalg.solve(hessian, grad_theta(theta_star, cp))
    est = estimates(theta, cp, reml=reml)
    out = {
        "beta": est["beta"],
        "theta": _to_user(_normalize_signs(theta, model), model),
        "sigma": jnp.sqrt(est["sigma2"]),
        "deviance": est["deviance"],
        "fe_cov": est["fe_cov"],
    }
    # A fit whose deviance or estimates are not finite has not converged, whatever the
    # optimiser's stopping rule said (a NaN must never pass as a result).
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(out[k]))
                                for k in ("beta", "theta", "sigma", "deviance")]))
    out["converged"] = opt.converged & finite
    return out


@partial(jax.jit, static_argnames=("reml",))
def _fit_values(model: ModelArrays, *, reml: bool) -> dict:
    """:func:`fit_arrays` without the implicit step, as one compiled call (op by op, its
    cross-products dispatched dozens of small compiled operations; see
    ``_simulate._hessian``)."""
    return fit_arrays(model, reml=reml, implicit=False)


@float64_scope
def fit_many(formula: str, data: pd.DataFrame, responses, groups=None, method: str = "REML",
             *, batch_size: int | None = None) -> pd.DataFrame:
    """Fit one model per response column, all sharing ``formula``'s design, with one
    compiled, vectorised call per batch (``jax.vmap`` of :func:`fit_arrays`), warm-started
    and preconditioned at the fit of the first response. ``batch_size`` defaults to all
    responses for small models, else at most ``_simulate._MAX_BATCH`` and fewer for large
    tails (see ``_simulate.default_batch_size``); any batch size is safe.

    ``responses`` is an ``(n, B)`` array or DataFrame whose rows align with ``data``
    (rows ``data`` drops for missing values are dropped from it too). Returns a
    DataFrame with one row per response: fixed effects, theta (lme4's names), sigma,
    deviance and converged.
    """
    if method not in ("REML", "ML"):
        raise ModelSpecError(f"method must be 'REML' or 'ML', got {method!r}.")
    design = build_design(formula, data, groups)
    model = _arrays_of(design)
    frame = responses if isinstance(responses, pd.DataFrame) else pd.DataFrame(
        np.asarray(responses), index=data.index)
    if len(frame) != len(data):
        raise DataError(f"responses has {len(frame)} rows but data has {len(data)}.")
    frame = frame.set_axis(data.index, axis=0)
    Y = frame.loc[design.row_index].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(Y)):
        raise DataError("responses contain NaN or infinite values in rows the model uses.")

    from ._core.refit import _deviance_of, refit_all, warn_unconverged

    reml = method == "REML"
    theta0 = _fit_values(model.replace(y=jnp.asarray(Y[:, 0])),
                         reml=reml)["theta"]  # a warm start shared by the batch
    beta, theta, sigma, conv, dev = refit_all(model, jnp.asarray(Y.T), theta0, reml=reml,
                                              statistic=_deviance_of, batch_size=batch_size)
    out = {"beta": beta, "theta": theta, "sigma": sigma, "converged": conv,
           "deviance": dev[:, 0]}
    table = pd.DataFrame(out["beta"], columns=list(model.fe_names), index=frame.columns)
    for j, name in enumerate(model.theta_names):
        table[name] = out["theta"][:, j]
    table["sigma"] = out["sigma"]
    table["deviance"] = out["deviance"]
    table["converged"] = out["converged"]
    warn_unconverged(out["converged"], "fits")
    return table

