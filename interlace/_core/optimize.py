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
import numpy as np
import optax
import optax.tree_utils as otu

from .._base.jit import jit
from .crossprod import CrossProducts
from .deviance import deviance_offset, standardized_deviance
from .newton import NEWTON_MAX_DIM, newton_polish

__all__ = [
    "OptimResult",
    "minimize_deviance",
    "minimize_on_host",
    "minimize_rescaled",
    "STOP_REASONS",
    "OFF_ZERO",
    "off_zero",
]


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


@partial(jit, static_argnames=("reml", "maxiter", "patience", "verbose"))
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
    scale: jnp.ndarray | None = None,
) -> OptimResult:
    """L-BFGS minimisation of :func:`profiled_deviance` from ``theta0`` (one jit call).

    ``precond`` (``P``, k x k) optimises over ``phi`` with ``theta = theta0 + P phi``;
    ``P = chol(H)^-T`` from a Hessian ``H`` near the optimum makes the problem
    well-scaled, so that the first L-BFGS steps need no long line searches (used for
    batches of refits near a known fit). The returned ``theta`` and ``grad`` are raw:
    signs of the factors' columns are fixed by the callers (``_core.theta.normalize_signs``).
    ``verbose`` prints each iteration's deviance while the compiled loop runs.
    ``scale`` (without ``precond``): search ``theta' = scale * theta`` (elementwise), as
    :func:`minimize_rescaled` does on the host, so that the first step and the stopping
    rule see the rescaled coordinates (``_core.theta.column_scales``).
    """
    origin = theta0 = off_zero(theta0)  # a start on the boundary could never leave it
    k = theta0.shape[0]

    def deviance(theta):  # the centred and scaled data's: the same scale for every model
        return standardized_deviance(theta, cp, reml=reml)

    # The deviance and gradient are evaluated in two places only, here at the start and
    # in the line search (each place is compiled separately); every other use reads
    # the line search's last evaluation from the solver state.
    value0, grad0 = jax.value_and_grad(deviance)(theta0)
    if precond is None:  # scale the first step (module docstring)
        inverse = jnp.ones(k, theta0.dtype) if scale is None else 1.0 / scale
        gmax = jnp.max(jnp.abs(inverse * grad0))  # d/dtheta'
        c = jnp.where(jnp.isfinite(gmax) & (gmax > 0), jnp.sqrt(0.1 / gmax), 1.0)
        P = c * jnp.diag(inverse)
        # the stopping rule's gradient is d/dtheta' = (d/dphi) / c
        rule = 1.0 / c
    else:
        P, rule = precond, 1.0

    def fun(phi):
        return deviance(origin + P @ phi)

    solver = optax.lbfgs(
        linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=30, initial_guess_strategy="one"
        )
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
            jax.debug.print(
                "iteration {i:4d}  deviance {f:.10g}  max|grad| {g:.3g}",
                i=it + 1,
                f=f_new + offset,
                g=jnp.max(jnp.abs(rule * g_new)),
                ordered=True,
            )
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
    stop = jnp.where(
        ~finite,
        STOP_NONFINITE,
        jnp.where(gradient_small, STOP_GRADIENT, jnp.where(stalled, STOP_STALLED, STOP_MAXITER)),
    )
    value = value + offset  # in the data's units
    return OptimResult(
        theta,
        value,
        grad,
        it,
        evaluations + 1,
        converged,  # + the start
        stop,
    )


# An entry of theta exactly 0 is where the deviance, even in each column of a relative
# factor, can be stationary by symmetry: a gradient method never leaves it, even when
# the optimum lies off it. Searches therefore never evaluate theta_j = 0 exactly but
# this value instead (its deviance differs from the boundary's by ~1e-20 relative).
OFF_ZERO = 1e-10


def off_zero(theta):
    """``theta`` with exact zeros replaced by :data:`OFF_ZERO` (numpy or JAX)."""
    if isinstance(theta, np.ndarray):
        return np.where(theta == 0.0, OFF_ZERO, theta)
    return jnp.where(theta == 0.0, OFF_ZERO, theta)


# Strong Wolfe conditions of the host line search (Nocedal & Wright 2006, eqs. 3.7):
# sufficient decrease c1, curvature c2 (0.9 is the usual choice for quasi-Newton steps).
_C1, _C2 = 1e-4, 0.9
_LINESEARCH_EVALUATIONS = 30
_ROUNDING = 1e-12  # relative: deviances closer than this are equal for the line search
_MEMORY = 10
# A step that moves no coordinate by more than this, relative, moves it by a few units in
# the last place only (not_a_step)
STEP_ROUNDING = 1e-15
# A stalled search is at its optimum when the quasi-Newton model puts that optimum closer
# than this, relative to the deviance (_converged_at): 1e-7 units for a deviance of 1e4
DECREMENT_TOL = 1e-11


def minimize_on_host(
    fun,
    theta0,
    *,
    maxiter: int = 500,
    gtol: float = 1e-10,
    ftol: float = 1e-15,
    patience: int = 3,
    block_inverse=None,
    polish: bool = False,
) -> tuple[OptimResult, object]:
    """L-BFGS driven from Python over a compiled ``fun(theta) -> (value, grad, aux)``
    (numpy in, floats/arrays out): ``(OptimResult, aux at the returned theta)``.

    The same method and stopping rule as :func:`minimize_deviance` (module docstring:
    scaled first step, ``max |g| <= gtol (1 + |d|)``, a stalled deviance, ``maxiter``),
    with the loop on the host instead of inside the executable, so that a single fit
    compiles one evaluation (:func:`interlace._core.evaluation.evaluate`), not an
    optimiser with two copies of the deviance. Directions by the two-loop recursion
    (Nocedal & Wright 2006, algorithm 7.4, ``m = 10``); steps by their strong-Wolfe line
    search (algorithms 3.5 and 3.6, cubic interpolation, a non-finite trial deviance
    treated as a step too long). Each evaluation costs one dispatch (tens of microseconds),
    nothing next to the evaluations themselves.

    ``block_inverse(aux) -> (slice, M) or None``: where ``fun`` knows an approximation
    ``M`` of the inverse Hessian on some coordinates (a GLMM's fixed effects:
    ``(R_X'R_X)^-1 / 2`` from its PIRLS solve), the recursion starts from
    ``H0 = blockdiag(gamma I, M)`` instead of ``gamma I`` (N&W section 7.2 leaves ``H0``
    free; :func:`_direction`): those coordinates take Newton-scaled steps from the first
    iteration on, instead of learning their scale from the curvature pairs.

    A step that moves no coordinate beyond its last digits (:func:`not_a_step`), taken
    because the value came out no worse within rounding, ends the search as stalled:
    where the curvature is huge (a count model's intercept with counts near 1e5) the
    gradient cannot get below ``gtol`` and such steps would go on while the values' last
    digits change.

    ``polish``: a search that stalls unconverged goes on by modified Newton steps on the
    Hessian by differences of the gradient (:func:`~interlace._core.newton.newton_polish`;
    up to :data:`~interlace._core.newton.NEWTON_MAX_DIM` coordinates). Searches that
    converge take no such step: their paths are unchanged.
    """
    x = off_zero(np.asarray(theta0, dtype=np.float64))
    f, g, aux = fun(x)
    nev = 1

    def small_grad(value, grad):
        return np.max(np.abs(grad), initial=0.0) <= gtol * (1.0 + abs(value))

    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    it = stall = 0
    stop = None
    while stop is None:
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            stop = STOP_NONFINITE
        elif small_grad(f, g):
            stop = STOP_GRADIENT
        elif stall >= patience:
            stop = STOP_STALLED
        elif it >= maxiter:
            stop = STOP_MAXITER
        if stop is not None:
            break
        block = None if block_inverse is None else _usable_block(block_inverse(aux), x.shape[0])
        d = _direction(g, pairs, x, block)
        if g @ d >= 0:  # not a descent direction: forget the curvature pairs
            pairs.clear()
            d = _direction(g, pairs, x, block)
        step, used = _line_search(fun, x, f, g, d)
        nev += used
        if step is None:  # no decrease along d: the deviance cannot be lowered further
            stop = STOP_STALLED
            break
        x_new, f_new, g_new, aux_new = step
        if not_a_step(x_new - x, x):
            # a step too short to move x beyond its last digits, taken because the value
            # came out no worse within rounding: no step is left. Counted as a change, the
            # values' last digits (an evaluation's PIRLS path) kept a negative-binomial
            # fit with counts near 1e5 "improving" for 500 iterations (14,401 evaluations)
            stop = STOP_STALLED
            break
        s, y = x_new - x, g_new - g
        if s @ y > 1e-12 * np.sqrt((s @ s) * (y @ y)):
            pairs = (pairs + [(s, y)])[-_MEMORY:]
        stall = stall + 1 if abs(f - f_new) / (1.0 + abs(f_new)) <= ftol else 0
        x, f, g, aux = x_new, f_new, g_new, aux_new
        it += 1
    finite = bool(np.isfinite(f) and np.all(np.isfinite(g)))
    converged = _converged_at(stop, finite, g, f, gtol)
    if polish and not converged and finite and stop == STOP_STALLED and x.size <= NEWTON_MAX_DIM:
        rescue = newton_polish(fun, x, f, g, aux, small_grad=small_grad)
        x, f, g, aux = rescue.x, rescue.value, rescue.grad, rescue.aux
        it, nev = it + rescue.steps, nev + rescue.evaluations
        if small_grad(f, g):
            stop = STOP_GRADIENT
        converged = _converged_at(stop, True, g, f, gtol)
    elif not converged and finite and stop == STOP_STALLED and pairs:
        # no polish asked for: the quasi-Newton model's distance to the optimum decides
        block = None if block_inverse is None else _usable_block(block_inverse(aux), x.shape[0])
        decrement = -0.5 * float(g @ _direction(g, pairs, x, block))
        converged = _converged_at(stop, finite, g, f, gtol, decrement)
    return OptimResult(x, f, g, it, nev, converged, stop), aux


def _converged_at(
    stop: int, finite: bool, g: np.ndarray, f: float, gtol: float, decrement=None
) -> bool:
    """The host search's verdict: the gradient test passed, or the deviance stalled with
    the gradient within ``1e3`` times the test's bound, or with the quasi-Newton model's
    decrease to its optimum, ``decrement = -g'd / 2`` (``d = -H g``, the search's next
    direction), below :data:`DECREMENT_TOL` ``(1 + |f|)``.

    The last is for a gradient whose rounding exceeds the test's bound: a binomial model
    with 1e7 trials per row sums terms of 1e7 into each gradient entry, whose rounding
    (~1e-13 of their sum, a few 1e-4) is 500 times ``gtol (1 + |f|)``. Its search stalls
    with the optimum 1.6e-10 units away by that model; whether the last gradient came
    out below 1e-3 of it depended on the CPU's rounding (AVX2 against AVX-512 code from
    XLA), and on AVX2 the fit reported ``converged=False``
    (``tests/test_glmm_high_counts.py``). A stalled search whose model still sees a
    decrease beyond that, as along a flat direction it has not learnt, is not converged."""
    gmax = float(np.max(np.abs(g), initial=0.0)) if finite else np.inf
    near = decrement is not None and 0.0 <= decrement <= DECREMENT_TOL * (1.0 + abs(f))
    return finite and (
        stop == STOP_GRADIENT
        or (stop == STOP_STALLED and (gmax <= 1e3 * gtol * (1.0 + abs(f)) or near))
    )


def minimize_rescaled(fun, x0, scale=None, **options) -> tuple[OptimResult, object]:
    """:func:`minimize_on_host` over ``x' = scale * x`` (elementwise; ``x0``, and the
    returned ``theta`` and ``grad``, in ``x``): ``fun'(x') = fun(x' / scale)``, whose
    gradient is ``grad / scale``, so the stopping rule and the first step see the
    rescaled coordinates (``_core.theta.column_scales``). ``scale`` of ones (or None) is
    :func:`minimize_on_host` itself; powers of two change no digit."""
    if scale is None or np.all(np.asarray(scale) == 1.0):
        return minimize_on_host(fun, x0, **options)
    scale = np.asarray(scale, dtype=np.float64)

    def rescaled(x):
        value, grad, aux = fun(x / scale)
        return value, np.asarray(grad) / scale, aux

    opt, aux = minimize_on_host(rescaled, np.asarray(x0, dtype=np.float64) * scale, **options)
    return opt._replace(theta=np.asarray(opt.theta) / scale, grad=np.asarray(opt.grad) * scale), aux


def not_a_step(s, x, xp=np):
    """Whether the step ``s`` from ``x`` moves no coordinate by more than
    :data:`STEP_ROUNDING` of ``max(|x_j|, 1)`` (a few units in the last place): no
    progress, whatever the values say."""
    return xp.all(xp.abs(s) <= STEP_ROUNDING * xp.maximum(xp.abs(x), 1.0))


def _usable_block(block, n: int):
    """``block`` (``(slice, M)``) if ``M`` is a finite symmetric positive semi-definite
    matrix of the slice's size, else None (the plain ``gamma I`` start)."""
    if block is None:
        return None
    sl, M = block
    M = np.asarray(M, dtype=np.float64)
    width = len(range(n)[sl])
    if width == 0 or M.shape != (width, width) or not np.all(np.isfinite(M)):
        return None
    M = 0.5 * (M + M.T)
    if np.min(np.linalg.eigvalsh(M)) < 0:
        return None
    return sl, M


def _direction(g: np.ndarray, pairs, x: np.ndarray, block=None) -> np.ndarray:
    """``-H g`` by the two-loop recursion over the curvature ``pairs``, from
    ``H0 = gamma I`` (``gamma = s'y / y'y`` of the latest pair), or, with ``block =
    (slice, M)``, from ``H0 = blockdiag(gamma I, M)`` (:func:`minimize_on_host`; ``gamma``
    then from the pair's coordinates outside the slice). With no pairs, ``gamma`` scales
    the gradient so that no entry of ``theta`` outside the slice moves by more than 0.1,
    nor the entry that moves most by more than half its distance to 0: a step onto
    ``theta_j = 0`` (a start of 0.1 moved by 0.1) would land where the gradient in
    ``theta_j`` vanishes by symmetry, and stay there."""
    other = np.ones(g.shape[0], dtype=bool)
    if block is not None:
        other[block[0]] = False

    def h0(q, gamma):
        r = gamma * q
        if block is not None:
            sl, M = block
            r[sl] = M @ q[sl]
        return r

    if not pairs:
        go = np.where(other, g, 0.0)
        j = int(np.argmax(np.abs(go)))
        gmax = abs(go[j])
        move = min(0.1, 0.5 * abs(x[j])) if x[j] != 0 else 0.1
        return -h0(g, move / gmax if np.isfinite(gmax) and gmax > 0 else 1.0)
    q = g.copy()
    saved = []
    for s, y in reversed(pairs):
        rho = 1.0 / (y @ s)
        a = rho * (s @ q)
        q -= a * y
        saved.append((a, rho, s, y))
    s, y = pairs[-1]
    so, yo = s[other], y[other]
    sy, yy = so @ yo, yo @ yo
    gamma = sy / yy if sy > 0 and yy > 0 else (s @ y) / (y @ y)
    r = h0(q, gamma)
    for a, rho, s, y in reversed(saved):
        r += s * (a - rho * (y @ r))
    return -r


def _cubic_minimum(a1, f1, d1, a2, f2, d2):
    """Minimiser of the cubic through ``(a, f, f')`` at two points (N&W eq. 3.59), or
    None where it is not defined."""
    e = d1 + d2 - 3.0 * (f1 - f2) / (a1 - a2)
    disc = e * e - d1 * d2
    if not np.isfinite(disc) or disc < 0:
        return None
    r = np.sign(a2 - a1) * np.sqrt(disc)
    den = d2 - d1 + 2.0 * r
    if den == 0 or not np.isfinite(den):
        return None
    return a2 - (a2 - a1) * (d2 + r - e) / den


def _line_search(fun, x, f0, g0, d):
    """A step along ``d`` meeting the strong Wolfe conditions (N&W algorithms 3.5, 3.6):
    ``((x, f, g, aux) of the step or None, evaluations used)``. If the budget runs out,
    the best point with sufficient decrease is taken; None if there is none."""
    dphi0 = g0 @ d
    used = 0
    # Deviances within rounding of each other cannot rank points: there the derivative
    # decides (Hager & Zhang's approximate Wolfe conditions, SIAM J. Optim. 16, 2005).
    eps = _ROUNDING * (1.0 + abs(f0))

    def phi(a):
        nonlocal used
        used += 1
        xa = off_zero(x + a * d)
        f, g, aux = fun(xa)
        ok = np.isfinite(f) and np.all(np.isfinite(g))
        return (a, f if ok else np.inf, g @ d if ok else np.nan, (xa, f, g, aux))

    def armijo(point):  # sufficient decrease, or no worse than f0 within rounding
        return point[1] <= f0 + _C1 * point[0] * dphi0 or point[1] <= f0 + eps

    def curvature(point):
        return abs(point[2]) <= -_C2 * dphi0

    def zoom(lo, hi):
        while used < _LINESEARCH_EVALUATIONS:
            a_lo, a_hi = lo[0], hi[0]
            width = a_hi - a_lo
            if abs(width) <= 1e-16 * max(1.0, abs(a_lo)):
                break
            a = None
            if np.isfinite(hi[1]) and np.isfinite(lo[2]) and np.isfinite(hi[2]):
                a = _cubic_minimum(a_lo, lo[1], lo[2], a_hi, hi[1], hi[2])
            inner = sorted((a_lo + 0.1 * width, a_hi - 0.1 * width))
            if a is None or not inner[0] <= a <= inner[1]:
                a = a_lo + 0.5 * width
            trial = phi(a)
            if not armijo(trial) or trial[1] > lo[1] + eps:
                hi = trial
            else:
                if curvature(trial):
                    return trial
                if trial[2] * (a_hi - a_lo) >= 0:
                    hi = lo
                lo = trial
        return lo if lo[0] > 0 else None

    prev = (0.0, f0, dphi0, None)
    a = 1.0
    found = None
    while used < _LINESEARCH_EVALUATIONS:
        trial = phi(a)
        if not armijo(trial) or (prev[0] > 0 and trial[1] > prev[1] + eps):
            found = zoom(prev, trial)
            break
        if curvature(trial):
            found = trial
            break
        if trial[2] >= 0:
            found = zoom(trial, prev)
            break
        prev, a = trial, 2.0 * a
    else:
        found = prev if prev[0] > 0 else None
    return (None if found is None else found[3]), used
