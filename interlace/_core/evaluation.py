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

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._base.jit import jit
from .crossprod import CrossProducts
from .deviance import (
    Estimates,
    deviance_from_logdiag,
    estimates_from_factor,
    factor_logdiag,
    tail_schur,
)

__all__ = ["Evaluation", "evaluate"]


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
