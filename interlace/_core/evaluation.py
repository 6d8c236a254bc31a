"""One compiled evaluation of a model at ``theta``: the deviance, its gradient and the
estimates, with the method (REML or ML) as data.

What a single fit's optimiser calls (:func:`~interlace._core.optimize.minimize_on_host`):
one executable per cross-product shape, i.e. per size class (:mod:`~interlace._core.buckets`)
for small and medium models, serving both methods, because ``reml`` and the residual
degrees of freedom ``nu`` are arguments, not static parameters. Its graph holds one
copy of the deviance and its gradient (``jax.value_and_grad``), and the estimates are
read from the same Cholesky factor of the tail (``deviance.factor_logdiag``), so the
separate estimates step needs no executable of its own (DESIGN.md section 4).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._base.jit import jit
from . import buckets
from .crossprod import CrossProducts, device_array
from .deviance import (
    Estimates,
    deviance_from_logdiag,
    estimates_from_factor,
    factor_logdiag,
    residual_df,
    tail_schur,
)

__all__ = ["Evaluation", "evaluate", "HostObjective", "host_objective"]


class Evaluation(NamedTuple):
    value: jnp.ndarray  # standardized deviance (what the optimiser minimises)
    grad: jnp.ndarray  # its gradient in theta (internal term order)
    est: Estimates | None  # at theta, data's units (est.deviance: lme4's criterion)


@partial(jit, static_argnames=("with_estimates",))
def evaluate(
    theta: jnp.ndarray,
    cp: CrossProducts,
    reml: jnp.ndarray,
    nu: jnp.ndarray,
    with_estimates: bool = True,
) -> Evaluation:
    """:class:`Evaluation` at ``theta`` (``reml``: a boolean scalar; ``nu``: ``n - p`` for
    REML, ``n`` for ML, the model's own when ``cp`` is padded). ``with_estimates=False``
    leaves ``est`` None: for a large model, whose evaluations cost seconds and whose
    compile is small next to them, one :func:`~interlace._core.deviance.estimates` call at
    the optimum costs less than estimates at every evaluation."""

    def standardized(th):
        logdiag, L = factor_logdiag(tail_schur(th, cp))
        return deviance_from_logdiag(th, cp, logdiag, reml=reml, nu=nu), L

    (value, L), grad = jax.value_and_grad(standardized, has_aux=True)(theta)
    if not with_estimates:
        return Evaluation(value, grad, None)
    return Evaluation(
        value, grad, estimates_from_factor(theta, cp, L, reml=reml, nu=nu, unrolled=False)
    )


class HostObjective(NamedTuple):
    """``fun(theta) -> (value, grad, est)`` for a loop on the host (``theta`` and ``grad``
    numpy, internal term order; ``est`` padded, or None at exact shapes) and the
    :class:`~interlace._core.buckets.Padding` it runs under (None: exact shapes)."""

    fun: Callable[[np.ndarray], tuple[float, np.ndarray, Estimates | None]]
    padding: buckets.Padding | None


def host_objective(cp: CrossProducts, *, reml: bool) -> HostObjective:
    """:func:`evaluate` of ``cp`` as a host function of ``theta``: padded to its size class
    where it has one (so that it shares the class's executable, estimates included),
    else at exact shapes without estimates (a large model: module docstring)."""
    nu = device_array(residual_df(float(np.asarray(cp.n)), cp.p, reml), np.float64)
    flag = device_array(bool(reml))
    padded = buckets.pad_cross_products(cp, reml=reml)
    target, padding = (cp, None) if padded is None else padded

    def fun(theta):
        if padding is None:
            # numpy straight in: the jitted call takes it as it would a device array
            # (same executable), without device_put's ~0.1 ms per evaluation
            out = evaluate(np.asarray(theta, np.float64), target, flag, nu, with_estimates=False)
            return float(out.value), np.asarray(out.grad), None
        out = evaluate(buckets.pad_theta(theta, padding), target, flag, nu)
        return float(out.value), buckets.unpad_theta(out.grad, padding), out.est

    return HostObjective(fun, padding)
