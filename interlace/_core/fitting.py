"""One fit of a model's arrays: :func:`fit_arrays` and its record :class:`ArrayFit`.

A pure function of :class:`~interlace._core.arrays.ModelArrays`: cross-products (JAX),
L-BFGS over ``theta`` (:mod:`interlace._core.optimize`), then the estimates at the
optimum (:func:`~interlace._core.deviance.estimates`). Every vectorised refit
(:mod:`interlace._core.refit`) and the public functional layer run this function.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base.jit import jit
from .._base.precision import float64_functional
from .arrays import ModelArrays, cross_products_of, theta_to_internal, theta_to_user
from .centring import Centring
from .deviance import estimates, profiled_deviance
from .optimize import minimize_deviance
from .theta import normalize_signs, power_of_two_scale, tril_index

__all__ = ["ArrayFit", "fit_arrays", "fit_values", "search_scale"]


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
    internal term order) rescales the search, see :func:`minimize_deviance`; without it,
    ``theta`` is searched in the units a single fit searches it in (:func:`search_scale`),
    from 1 there (``theta0=None``).

    A model whose arrays carry a :class:`~interlace._core.centring.Centring`
    (``model.centring``: random-slope columns far from 0, as ``interlace.model_arrays``
    finds them) is searched on those columns centred at their current means, the same
    model where it is well conditioned (:mod:`interlace._core.centring`), and its
    ``theta`` reported for the columns as given; ``theta0`` is for those columns too
    and ``precond`` for the centred search. The shifts are constants to derivatives:
    the result does not depend on them, so the implicit derivatives stay exact.
    """
    centring = _current_centring(model)
    if centring is not None:
        model = _centred_arrays(model, centring)
        if theta0 is not None:
            theta0 = centring.to_centred_theta(jnp.asarray(theta0))
    cp = cross_products_of(model)
    scale = None if precond is not None else search_scale(model)
    start = (
        jnp.ones(model.template.theta_offsets[-1]) / (1.0 if scale is None else scale)
        if theta0 is None
        else theta_to_internal(jnp.asarray(theta0), model)
    )
    opt = minimize_deviance(
        start,
        jax.lax.stop_gradient(cp),
        reml=reml,
        maxiter=maxiter,
        precond=precond,
        scale=scale,
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
        theta=_user_theta(theta_to_user(normalize_signs(theta, internal_ks), model), centring),
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


def search_scale(model: ModelArrays) -> jnp.ndarray:
    """Per internal ``theta`` entry, the scale ``interlace.fit`` searches it in, from
    ``model``'s current columns (traced; constants to derivatives): the power of two
    nearest each random-term column's size (1 for a column of ones, the standard deviation
    in a term with one, else the root mean square) beyond ``2^+-4``
    (:func:`~interlace._core.theta.column_scales`), times that of ``sqrt(mean w)`` of the
    positive prior weights (:func:`~interlace._core.theta.weight_scale`)."""
    parts = []
    for X, k in zip(model.term_X, model.template.ks):
        ones = jnp.all(X == 1.0, axis=0)
        rms = jnp.sqrt(jnp.mean(X * X, axis=0))
        size = jnp.where(ones, 1.0, jnp.where(jnp.any(ones), jnp.std(X, axis=0), rms))
        rows, _ = tril_index(k)
        parts.append(power_of_two_scale(jnp.log2(jnp.where(size > 0, size, 1.0)), jnp)[rows])
    scale = jnp.concatenate(parts)
    w = model.prior_weights
    if w is not None:
        positive = w > 0
        mean = jnp.sum(jnp.where(positive, w, 0.0)) / jnp.maximum(jnp.sum(positive), 1)
        scale = scale * power_of_two_scale(0.5 * jnp.log2(mean), jnp)
    return jax.lax.stop_gradient(scale)


def _current_centring(model: ModelArrays) -> Centring | None:
    """``model.centring`` with each moved column's shift at its current mean (held
    constant to derivatives), or None."""
    centring = model.centring
    if centring is None:
        return None
    shifts = list(centring.shifts)
    for pos, user in enumerate(model.template.order):
        if shifts[user] is not None:
            moved = np.isin(np.arange(centring.ks[user]), centring.moved[user])
            mean = jax.lax.stop_gradient(jnp.mean(model.term_X[pos], axis=0))
            shifts[user] = jnp.where(moved, mean, 0.0)
    return dataclasses.replace(centring, shifts=tuple(shifts))


def _centred_arrays(model: ModelArrays, centring: Centring) -> ModelArrays:
    """``model`` with its random-term columns centred by ``centring`` (which it then no
    longer carries)."""
    order = model.template.order
    term_X = tuple(centring.columns(x, order[pos]) for pos, x in enumerate(model.term_X))
    return dataclasses.replace(model, term_X=term_X, centring=None)


def _user_theta(theta, centring: Centring | None):
    return theta if centring is None else centring.to_user_theta(theta)


@partial(jit, static_argnames=("reml",))
def fit_values(model: ModelArrays, *, reml: bool) -> ArrayFit:
    """:func:`fit_arrays` without the implicit step, as one compiled call (op by op, its
    cross-products dispatched dozens of small compiled operations)."""
    return fit_arrays(model, reml=reml, implicit=False)
