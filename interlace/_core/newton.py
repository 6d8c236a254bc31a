"""Newton's method from where L-BFGS stopped short: the rescue of a hard single fit.

L-BFGS learns the curvature from its last few steps. Where the deviance is flat along one
direction and steep across it (a random slope whose variance is ~1e6 times the residual
variance, next to a variance on its boundary), those steps are short, the deviance stops
changing, and the search ends unconverged, deviance units above the optimum that lme4's
derivative-free optimisers reach. A few Newton steps on the Hessian by central differences
of the exact gradient (``2k`` gradients per step for ``k`` entries of ``theta``) take the
curvature in whole and converge in a handful of steps.

Each step (Nocedal & Wright 2006, section 3.4, modified Newton): ``H = V diag(l) V'``
symmetrised, eigenvalues replaced by ``max(|l|, 1e-10 max |l|)`` so that the direction
``d = -V diag(1 / |l|) V' g`` descends also where ``H`` is indefinite (a saddle), then
backtracking from the whole step until the Armijo condition ``f(x + t d) <= f(x) +
1e-4 t g'd`` holds (at most 20 halvings). The steps end when the gradient test passes,
or no step lowers the deviance by more than its rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["NewtonResult", "newton_polish", "hessian_by_differences", "NEWTON_MAX_DIM"]

# Entries of theta up to which a stalled search is polished: each step costs one gradient
# per entry.
NEWTON_MAX_DIM = 20
_ARMIJO = 1e-4
_HALVINGS = 20
# A step that lowers the deviance by less than this, relative, ends the steps: the
# deviance's own rounding (~1e-10 relative where theta is ~1e3) is of that order.
_NEGLIGIBLE = 1e-11
_EIGEN_FLOOR = 1e-10


class NewtonResult(NamedTuple):
    x: np.ndarray
    value: float
    grad: np.ndarray
    aux: object
    steps: int
    evaluations: int


def hessian_by_differences(grad, x: np.ndarray, g0: np.ndarray, k: int, sign: float = 1.0):
    """``H`` (``k x k``) of a function whose exact gradient is ``grad(x)`` (numpy), in its
    first ``k`` coordinates, by one-sided differences of that gradient from ``g0 =
    grad(x)``: ``H e_j = sign (g(x + sign h_j e_j) - g0) / h_j`` with ``h_j = 1e-5
    max(1, |x_j|)``, one evaluation per coordinate; error ``O(h)`` (forward, ``sign = 1``;
    the mean of the forward and backward matrices is the central difference, ``O(h^2)``).
    """
    x = np.asarray(x, dtype=float)
    g0 = np.asarray(g0, dtype=float)[:k]
    H = np.empty((k, k))
    for j in range(k):
        h = 1e-5 * max(1.0, abs(float(x[j])))
        step = x.copy()
        step[j] += sign * h
        H[:, j] = sign * (np.asarray(grad(step), dtype=float)[:k] - g0) / h
    return H


def _central_hessian(fun, x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, int]:
    """Central differences of the exact gradient (the mean of the forward and backward
    :func:`hessian_by_differences`), symmetrised: error ``O(h^2)``, where forward
    differences' ``O(h)`` error drowned the small eigenvalues of an ill-conditioned
    optimum and their Newton steps failed."""
    k = x.shape[0]

    def grad(v):
        return fun(v)[1]

    H = 0.5 * (hessian_by_differences(grad, x, g, k) + hessian_by_differences(grad, x, g, k, -1.0))
    return 0.5 * (H + H.T), 2 * k


def newton_polish(fun, x, value, grad, aux, *, small_grad, maxiter: int = 20) -> NewtonResult:
    """Modified Newton steps (module docstring) on ``fun(x) -> (value, grad, aux)`` from
    ``x`` (with its ``value``, ``grad`` and ``aux``), until ``small_grad(value, grad)``,
    no step lowers the value, or ``maxiter`` steps. Returns the lowest point reached."""
    x = np.asarray(x, dtype=np.float64)
    g = np.asarray(grad, dtype=np.float64)
    f = float(value)
    evaluations = steps = 0
    while steps < maxiter and not small_grad(f, g):
        H, used = _central_hessian(fun, x, g)
        evaluations += used
        if not np.all(np.isfinite(H)):
            break
        lam, V = np.linalg.eigh(H)
        lam = np.maximum(np.abs(lam), _EIGEN_FLOOR * max(float(np.max(np.abs(lam))), 1e-300))
        d = -V @ ((V.T @ g) / lam)
        slope = float(g @ d)
        t, accepted = 1.0, None
        for _ in range(_HALVINGS):
            f_new, g_new, aux_new = fun(x + t * d)
            evaluations += 1
            f_new = float(f_new)
            if np.isfinite(f_new) and f_new <= f + _ARMIJO * t * slope:
                accepted = (x + t * d, f_new, np.asarray(g_new, dtype=np.float64), aux_new)
                break
            t *= 0.5
        if accepted is None or not np.all(np.isfinite(accepted[2])):
            break
        gain = f - accepted[1]
        x, f, g, aux = accepted
        steps += 1
        if gain <= _NEGLIGIBLE * (1.0 + abs(f)):
            break
    return NewtonResult(x, f, g, aux, steps, evaluations)
