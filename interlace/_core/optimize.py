"""Minimise the profiled deviance over ``theta`` with optax's L-BFGS, in one compiled call.

The whole loop runs inside ``jax.jit`` as a ``lax.while_loop``: ``jax.value_and_grad``
of the deviance feeds ``optax.lbfgs`` with its zoom line search (strong Wolfe). ``theta``
is unconstrained during the search; the deviance does not change when a column of a
relative covariance factor changes sign, so signs are fixed afterwards, as
MixedModels.jl does. A boundary optimum
(``theta_j = 0``, a singular fit) is an ordinary stationary point of that even function.

Stopping rule: the gradient is small (``max |g| <= gtol * (1 + |d|)``), or the deviance
has stopped changing (relative change ``<= ftol`` for ``patience`` consecutive steps),
or ``maxiter`` is reached. Convergence is reported only for the first two, and for the
second only if the gradient is also moderately small (``<= 1e3 gtol (1 + |d|)``).
``d`` is the deviance of the centred and scaled data (``_core.standardize``), so the rule
means the same whatever the units of the response. ``OptimResult.stop`` says which
rule ended the loop (``STOP_REASONS``).

First step: L-BFGS has no curvature yet and tries ``theta - g``; with deviance gradients
in the thousands that overshoots and the line search spends evaluations shrinking it.
A fresh fit therefore searches over ``phi = (theta - theta0) / c`` with
``c^2 = 0.1 / max |g(theta0)|``, so that the first trial step moves ``theta`` by at most
0.1 (on InstEval: 13 evaluations, the start included, instead of 15). The stopping rule
still measures the gradient in ``theta``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu

from .crossprod import CrossProducts
from .deviance import deviance_offset, standardized_deviance

__all__ = ["OptimResult", "minimize_deviance", "STOP_REASONS"]


# Why the optimiser stopped (``OptimResult.stop``), most telling first: a non-finite
# deviance, a small gradient, a deviance that stopped changing, or maxiter.
STOP_NONFINITE, STOP_GRADIENT, STOP_STALLED, STOP_MAXITER = 0, 1, 2, 3
STOP_REASONS = {
    STOP_NONFINITE: "non-finite deviance",
    STOP_GRADIENT: "gradient small",
    STOP_STALLED: "deviance stopped changing",
    STOP_MAXITER: "maximum iterations",
}


class OptimResult(NamedTuple):
    theta: jnp.ndarray  # (k,) internal term order; column signs not yet normalised
    deviance: jnp.ndarray  # scalar, in the data's units (profiled_deviance)
    grad: jnp.ndarray  # (k,) at theta
    iterations: jnp.ndarray  # int
    evaluations: jnp.ndarray  # int: deviance + gradient evaluations (start + line searches)
    converged: jnp.ndarray  # bool
    stop: jnp.ndarray  # int: one of STOP_REASONS


@partial(jax.jit, static_argnames=("reml", "maxiter", "patience", "verbose"))
def minimize_deviance(
    theta0: jnp.ndarray,
    cp: CrossProducts,
    *,
    reml: bool,
    maxiter: int = 500,
    gtol: float = 1e-10,
    ftol: float = 1e-15,
    patience: int = 3,
    precond: jnp.ndarray | None = None,
    verbose: bool = False,
) -> OptimResult:
    """L-BFGS minimisation of :func:`profiled_deviance` from ``theta0`` (one jit call).

    ``precond`` (``P``, k x k) optimises over ``phi`` with ``theta = theta0 + P phi``;
    ``P = chol(H)^-T`` from a Hessian ``H`` near the optimum makes the problem
    well-scaled, so that the first L-BFGS steps need no long line searches (used for
    batches of refits near a known fit). The returned ``theta`` and ``grad`` are raw:
    signs of the factors' columns are fixed by the callers (``_core.theta.normalize_signs``).
    ``verbose`` prints each iteration's deviance while the compiled loop runs.
    """
    origin = theta0
    k = theta0.shape[0]

    def deviance(theta):  # the centred and scaled data's: the same scale for every model
        return standardized_deviance(theta, cp, reml=reml)

    # The deviance and gradient are evaluated in two places only, here at the start and
    # in the line search (each place is compiled separately); every other use reads
    # the line search's last evaluation from the solver state.
    value0, grad0 = jax.value_and_grad(deviance)(theta0)
    if precond is None:  # scale the first step (module docstring)
        gmax = jnp.max(jnp.abs(grad0))
        c = jnp.where(jnp.isfinite(gmax) & (gmax > 0), jnp.sqrt(0.1 / gmax), 1.0)
        P = c * jnp.eye(k, dtype=theta0.dtype)
        rule = 1.0 / c  # the stopping rule's gradient is d/dtheta = (d/dphi) / c
    else:
        P, rule = precond, 1.0

    def fun(phi):
        return deviance(origin + P @ phi)

    solver = optax.lbfgs(
        linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=30,
                                                  initial_guess_strategy="one")
    )

    def small_grad(value, grad):  # grad: d/dphi
        return jnp.max(jnp.abs(rule * grad)) <= gtol * (1.0 + jnp.abs(value))

    def cond(carry):
        _, _, it, stall, _, _, done = carry
        return (~done) & (it < maxiter) & (stall < patience)

    def body(carry):
        theta, state, it, stall, f_prev, nev, _ = carry
        value, grad = otu.tree_get(state, "value"), otu.tree_get(state, "grad")
        updates, state = solver.update(grad, state, theta, value=value, grad=grad, value_fn=fun)
        theta_new = optax.apply_updates(theta, updates)
        f_new = otu.tree_get(state, "value")
        g_new = otu.tree_get(state, "grad")
        rel = jnp.abs(f_prev - f_new) / (1.0 + jnp.abs(f_new))
        stall = jnp.where(rel <= ftol, stall + 1, 0)
        done = small_grad(f_new, g_new) | ~jnp.isfinite(f_new)
        nev = nev + otu.tree_get(state, "num_linesearch_steps")
        if verbose:  # printed from inside the compiled loop as it runs
            jax.debug.print("iteration {i:4d}  deviance {f:.10g}  max|grad| {g:.3g}",
                            i=it + 1, f=f_new + offset, g=jnp.max(jnp.abs(rule * g_new)), ordered=True)
        return theta_new, state, it + 1, stall, f_new, nev, done

    offset = deviance_offset(cp, reml=reml)  # standardised -> the data's units
    phi0 = jnp.zeros_like(theta0)
    state0 = otu.tree_set(solver.init(phi0), value=value0, grad=P.T @ grad0)
    zero = jnp.asarray(0)
    carry0 = (phi0, state0, zero, zero, jnp.asarray(jnp.inf), zero, jnp.asarray(False))
    phi, state, it, stall, _, evaluations, _ = jax.lax.while_loop(cond, body, carry0)
    theta = origin + P @ phi
    value, scaled = otu.tree_get(state, "value"), otu.tree_get(state, "grad")  # at phi
    grad = jnp.linalg.solve(P.T, scaled)  # d/dtheta; scaled = P' grad is what the rule saw
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(scaled))
    gradient_small = small_grad(value, scaled)
    stalled = stall >= patience
    converged = finite & (
        gradient_small
        | (stalled & (jnp.max(jnp.abs(rule * scaled)) <= 1e3 * gtol * (1.0 + jnp.abs(value))))
    )
    stop = jnp.where(~finite, STOP_NONFINITE, jnp.where(
        gradient_small, STOP_GRADIENT, jnp.where(stalled, STOP_STALLED, STOP_MAXITER)))
    value = value + offset  # in the data's units
    return OptimResult(theta, value, grad, it, evaluations + 1, converged,  # + the start
                       stop)
