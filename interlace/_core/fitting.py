"""One fit of a model's arrays: :func:`fit_arrays` and its record :class:`ArrayFit`.

A pure function of :class:`~interlace._core.arrays.ModelArrays`: cross-products (JAX),
L-BFGS over ``theta`` (:mod:`interlace._core.optimize`), then the estimates at the
optimum (:func:`~interlace._core.deviance.estimates`). Every vectorised refit
(:mod:`interlace._core.refit`) and the public functional layer run this function.
"""

from __future__ import annotations

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base.jit import jit
from .._base.precision import float64_functional
from .arrays import ModelArrays, cross_products_of, theta_to_internal, theta_to_user
from .deviance import estimates, profiled_deviance
from .optimize import minimize_deviance
from .theta import normalize_signs

__all__ = ["ArrayFit", "fit_arrays", "fit_values"]


class ArrayFit(eqx.Module):
    """The estimates of one fit of a model's arrays (a pytree: ``vmap`` stacks them).

    ``beta`` (p,), ``theta`` (user order, lme4's signs), ``sigma``, ``deviance``,
    ``fe_cov`` (``vcov(beta)``) and ``converged`` (False also when the deviance or an
    estimate is not finite). Fields read as attributes or, as a mapping, by name
    (``fit["beta"]``), so a ``statistic(fit)`` may use either.
    """

    beta: jnp.ndarray
    theta: jnp.ndarray
    sigma: jnp.ndarray
    deviance: jnp.ndarray
    fe_cov: jnp.ndarray
    converged: jnp.ndarray

    def __getitem__(self, name: str):
        return getattr(self, name)

    def keys(self) -> tuple[str, ...]:
        return ("beta", "theta", "sigma", "deviance", "fe_cov", "converged")


@float64_functional
def fit_arrays(
    model: ModelArrays,
    *,
    reml: bool = True,
    theta0: jnp.ndarray | None = None,
    maxiter: int = 500,
    implicit: bool = True,
    precond=None,
) -> ArrayFit:
    """Fit by L-BFGS and return an :class:`ArrayFit`: a pure function of ``model``'s
    arrays.

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
    start = (
        jnp.ones(model.template.theta_offsets[-1])
        if theta0 is None
        else theta_to_internal(jnp.asarray(theta0), model)
    )
    opt = minimize_deviance(
        start, jax.lax.stop_gradient(cp), reml=reml, maxiter=maxiter, precond=precond
    )
    theta = theta_star = jax.lax.stop_gradient(opt.theta)
    if implicit:

        def grad_theta(th, c):
            return jax.grad(profiled_deviance)(th, c, reml=reml)

        hessian = jax.lax.stop_gradient(jax.jacrev(grad_theta)(theta_star, cp))
        theta = theta_star - jnp.linalg.solve(hessian, grad_theta(theta_star, cp))
    est = estimates(theta, cp, reml=reml)
    internal_ks = list(model.template.ks)
    fit = ArrayFit(
        beta=est.beta,
        theta=theta_to_user(normalize_signs(theta, internal_ks), model),
        sigma=jnp.sqrt(est.sigma2),
        deviance=est.deviance,
        fe_cov=est.fe_cov,
        converged=opt.converged,
    )
    # A fit whose deviance or estimates are not finite has not converged, whatever the
    # optimiser's stopping rule said (a NaN must never pass as a result).
    finite = jnp.all(
        jnp.stack(
            [jnp.all(jnp.isfinite(x)) for x in (fit.beta, fit.theta, fit.sigma, fit.deviance)]
        )
    )
    return eqx.tree_at(lambda f: f.converged, fit, opt.converged & finite)


@partial(jit, static_argnames=("reml",))
def fit_values(model: ModelArrays, *, reml: bool) -> ArrayFit:
    """:func:`fit_arrays` without the implicit step, as one compiled call (op by op, its
    cross-products dispatched dozens of small compiled operations)."""
    return fit_arrays(model, reml=reml, implicit=False)
