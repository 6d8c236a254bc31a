"""L-BFGS written as one evaluation per loop iteration, for compiled, vectorised batches
of expensive objectives (GLMM ``fit_many``).

:func:`~interlace._core.optimize.minimize_deviance` (optax's L-BFGS and zoom line search)
traces the objective at several call sites, and each is compiled: cheap for the profiled
deviance, tens of seconds for a GLMM objective (PIRLS, a Laplace step and its gradient).
Here the ``lax.while_loop`` body evaluates the objective exactly once, at a trial point
``x + a d``: the line search is a state of the loop, not a loop of its own. So the
objective is compiled once, whatever the batch, and ``jax.vmap`` runs many minimisations
side by side (each stops when its own rule says; the batch runs until the last).

Method (Nocedal & Wright 2006): directions by the two-loop recursion (algorithm 7.4,
memory ``m = 10``; a curvature pair is kept only if ``s'y > 0``); the first direction is
the gradient scaled as the host optimiser's (no entry moves by more than 0.1, nor the one
that moves most by more than half its distance to 0). Steps from ``a = 1`` by the weak
Wolfe conditions (sufficient decrease ``c1 = 1e-4``, or no worse than the current value
within rounding, as the host search; curvature ``g(a)'d >= c2 g'd``, ``c2 = 0.9``): a trial
without sufficient decrease shrinks ``a`` by safeguarded quadratic interpolation (into
``[0.1 a, 0.5 a]``), or, after a shorter step that had it, takes that step; a trial with
sufficient decrease but still steeply descending doubles ``a`` (without the expansion,
L-BFGS on a badly scaled GLMM objective crawls: its steps, and so its curvature pairs, stay
short). At most 30 trials a step. Stopping rule as
the host optimiser's: a small gradient (``max |g| <= gtol (1 + |f|)``), a value that
stopped changing (``patience`` steps within ``ftol`` relative) or a step with no decrease
(then converged only if ``max |g| <= 1e3 gtol (1 + |f|)``), or ``maxiter``.

``evaluate(x, aux, start) -> (x_used, value, grad, aux)``: ``aux`` (a pytree) passes
state from the last accepted point to the next evaluation (a GLMM's modes, to start its
PIRLS from); ``start`` is true at the first evaluation only, where ``evaluate`` may move
``x`` (``x_used``; a GLMM puts ``beta`` at the joint modes there).

:func:`minimize_stepwise` runs the loop to the end. Its pieces, :func:`stepwise_start`,
:func:`stepwise_step` (one loop iteration) and :func:`stepwise_result`, let a caller
drive many minimisations in lanes and start new ones as old ones stop
(:mod:`interlace._model.glmm_many`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .optimize import STOP_GRADIENT, STOP_MAXITER, STOP_NONFINITE, STOP_STALLED, not_a_step

__all__ = [
    "StepwiseResult",
    "StepwiseState",
    "is_running",
    "minimize_stepwise",
    "stepwise_result",
    "stepwise_start",
    "stepwise_step",
]

_MEMORY = 10
_C1, _C2 = 1e-4, 0.9
_ROUNDING = 1e-12
_TRIALS = 30
_RUNNING = -1


class StepwiseResult(NamedTuple):
    x: jnp.ndarray
    value: jnp.ndarray
    grad: jnp.ndarray
    aux: object  # evaluate's aux at x
    iterations: jnp.ndarray
    evaluations: jnp.ndarray
    converged: jnp.ndarray
    stop: jnp.ndarray


def _small_grad(f, g, gtol, factor=1.0):
    return jnp.max(jnp.abs(g)) <= factor * gtol * (1.0 + jnp.abs(f))


def _outside(g, block):
    """True on the coordinates outside ``block``'s slice (all of them without a block
    in use)."""
    other = jnp.ones(g.shape, dtype=bool)
    if block is None:
        return other
    sl, _, use = block
    return other.at[sl].set(~use)


def _h0(q, gamma, block):
    """``H0 q``: ``gamma q``; with ``block = (slice, M, use)`` in use, ``M q`` on the
    slice."""
    r = gamma * q
    if block is None:
        return r
    sl, M, use = block
    return r.at[sl].set(jnp.where(use, M @ q[sl], r[sl]))


def _first_direction(g, x, block=None):
    go = jnp.where(_outside(g, block), g, 0.0)
    j = jnp.argmax(jnp.abs(go))
    gmax = jnp.abs(go[j])
    move = jnp.where(x[j] != 0, jnp.minimum(0.1, 0.5 * jnp.abs(x[j])), 0.1)
    return -_h0(g, jnp.where(jnp.isfinite(gmax) & (gmax > 0), move / gmax, 1.0), block)


def _direction(g, x, S, Y, count, head, block=None):
    """``-H g`` by the two-loop recursion over the ``count`` newest pairs of the ring
    ``(S, Y)`` (newest at ``head - 1``), from ``H0 = gamma I`` or, with ``block = (slice,
    M, use)`` where ``use``, ``blockdiag(gamma I, M)`` (the host optimiser's
    ``block_inverse``); the scaled gradient without pairs."""
    q = g
    saved = []
    for j in range(_MEMORY):
        i = (head - 1 - j) % _MEMORY
        valid = j < count
        s, y = S[i], Y[i]
        rho = jnp.where(valid, 1.0 / jnp.where(valid, y @ s, 1.0), 0.0)
        a = rho * (s @ q)
        q = q - a * y
        saved.append((a, rho, s, y))
    newest = (head - 1) % _MEMORY
    s, y = S[newest], Y[newest]
    other = _outside(g, block)
    so, yo = jnp.where(other, s, 0.0), jnp.where(other, y, 0.0)
    sy, yy = so @ yo, yo @ yo
    ok = (sy > 0) & (yy > 0)
    gamma = jnp.where(ok, sy / jnp.where(ok, yy, 1.0), (s @ y) / jnp.where(count > 0, y @ y, 1.0))
    r = _h0(q, gamma, block)
    for a, rho, s, y in reversed(saved):
        r = r + s * (a - rho * (y @ r))
    return jnp.where(count > 0, -r, _first_direction(g, x, block))


class StepwiseState(NamedTuple):
    """One minimisation's loop state (module docstring): the current point ``x`` with its
    value ``f``, gradient ``g`` and ``aux``; the step's direction ``d`` and trial length
    ``a``; the curvature-pair ring ``S, Y`` (``count`` pairs, next slot ``head``); counts
    of trials this step, iterations, evaluations and value-stalled steps; ``stop``
    (``-1`` while running); the best too-short trial of this step (``best``, if
    ``has_best``)."""

    x: jnp.ndarray
    f: jnp.ndarray
    g: jnp.ndarray
    aux: object
    d: jnp.ndarray
    a: jnp.ndarray
    S: jnp.ndarray
    Y: jnp.ndarray
    count: jnp.ndarray
    head: jnp.ndarray
    trials: jnp.ndarray
    it: jnp.ndarray
    nev: jnp.ndarray
    stall: jnp.ndarray
    stop: jnp.ndarray
    best: tuple
    has_best: jnp.ndarray


def stepwise_start(x0: jnp.ndarray, aux0) -> StepwiseState:
    """The state before the first evaluation, at ``x0``."""
    k, dtype = x0.shape[0], x0.dtype
    big = jnp.asarray(jnp.inf, dtype)
    return StepwiseState(
        x=x0,
        f=big,
        g=jnp.zeros(k, dtype),
        aux=aux0,
        d=jnp.zeros(k, dtype),
        a=jnp.asarray(0.0, dtype),
        S=jnp.zeros((_MEMORY, k), dtype),
        Y=jnp.zeros((_MEMORY, k), dtype),
        count=jnp.asarray(0),
        head=jnp.asarray(0),
        trials=jnp.asarray(0),
        it=jnp.asarray(0),
        nev=jnp.asarray(0),
        stall=jnp.asarray(0),
        stop=jnp.asarray(_RUNNING),
        best=(x0, big, jnp.zeros(k, dtype), aux0),
        has_best=jnp.asarray(False),
    )


def is_running(state: StepwiseState) -> jnp.ndarray:
    """Whether the minimisation goes on (no stopping rule has fired)."""
    return state.stop == _RUNNING


def stepwise_step(
    evaluate,
    st: StepwiseState,
    *,
    maxiter=500,
    gtol: float = 1e-10,
    ftol: float = 1e-15,
    patience: int = 3,
    block_inverse=None,
) -> StepwiseState:
    """One evaluation and what follows from it (module docstring): accept the trial and
    choose the next direction, or shrink or expand the step. ``maxiter`` may be traced.
    ``block_inverse = (slice, aux -> M)``: ``M``, an approximate inverse Hessian on the
    slice's coordinates at the point whose ``aux`` it reads, starts the recursion there
    (``_direction``; the host optimiser's ``block_inverse``); where ``M`` is not finite,
    the plain ``gamma I``."""
    dtype = st.x.dtype
    big = jnp.asarray(jnp.inf, dtype)
    start = st.nev == 0
    x_try = st.x + st.a * st.d
    x_used, f_t, g_t, aux_t = evaluate(x_try, st.aux, start)
    finite = jnp.isfinite(f_t) & jnp.all(jnp.isfinite(g_t))
    f_t = jnp.where(finite, f_t, jnp.inf)
    f, g, d, a = st.f, st.g, st.d, st.a
    slope = g @ d
    eps = _ROUNDING * (1.0 + jnp.abs(f))
    decrease = finite & ((f_t <= f + _C1 * a * slope) | (f_t <= f + eps))
    curvature = g_t @ d >= _C2 * slope
    trials = st.trials + 1
    expand = ~start & decrease & ~curvature & (trials < _TRIALS)
    take_trial = start | (decrease & ~expand)
    take_best = ~take_trial & ~decrease & st.has_best
    accept = take_trial | take_best
    better = decrease & (f_t < st.best[1])
    best = jax.tree.map(
        lambda p, q: jnp.where(expand & better, p, q), (x_used, f_t, g_t, aux_t), st.best
    )
    # the point taken: the trial, or the best shorter step
    x_n, f_n, g_n, aux_n = jax.tree.map(
        lambda p, q: jnp.where(take_trial, p, q), (x_used, f_t, g_t, aux_t), st.best
    )

    # accepted: a new point, curvature pair, direction and the stopping rule
    s, y = x_n - st.x, g_n - g
    keep = ~start & (s @ y > 1e-12 * jnp.sqrt((s @ s) * (y @ y)))
    S = jnp.where(keep, st.S.at[st.head].set(s), st.S)
    Y = jnp.where(keep, st.Y.at[st.head].set(y), st.Y)
    head = jnp.where(keep, (st.head + 1) % _MEMORY, st.head)
    count = jnp.where(keep, jnp.minimum(st.count + 1, _MEMORY), st.count)
    block = None
    if block_inverse is not None:
        sl, inverse_of = block_inverse
        M = inverse_of(aux_n)
        use = jnp.all(jnp.isfinite(M))
        block = (sl, jnp.where(use, 0.5 * (M + M.T), 0.0), use)
    d_new = _direction(g_n, x_n, S, Y, count, head, block)
    descent = g_n @ d_new < 0
    count = jnp.where(descent, count, 0)  # not a descent direction: forget the pairs
    d_new = jnp.where(descent, d_new, _first_direction(g_n, x_n, block))
    it = st.it + jnp.where(start, 0, 1)
    stall = jnp.where(~start & (jnp.abs(f - f_n) / (1.0 + jnp.abs(f_n)) <= ftol), st.stall + 1, 0)
    finite_n = jnp.isfinite(f_n) & jnp.all(jnp.isfinite(g_n))
    stop_acc = jnp.where(
        ~finite_n,
        STOP_NONFINITE,
        jnp.where(
            _small_grad(f_n, g_n, gtol),
            STOP_GRADIENT,
            jnp.where(
                # a step that leaves x as it was (too short to move it beyond its last
                # digits, accepted as no worse within rounding) ends the search: as the
                # host's
                (stall >= patience) | (~start & not_a_step(x_n - st.x, st.x, jnp)),
                STOP_STALLED,
                jnp.where(it >= maxiter, STOP_MAXITER, _RUNNING),
            ),
        ),
    )

    # not accepted: expand (a sufficient decrease, still steep), or shrink the step
    # (quadratic through f, f'(0) and f(a)), or give up
    quad = -slope * a * a / (2.0 * (f_t - f - slope * a))
    shrunk = jnp.where(jnp.isfinite(quad), jnp.clip(quad, 0.1 * a, 0.5 * a), 0.1 * a)
    a_new = jnp.where(expand, 2.0 * a, shrunk)
    stop_rej = jnp.where(trials >= _TRIALS, STOP_STALLED, _RUNNING)

    def pick(on_accept, on_reject):
        return jax.tree.map(lambda p, q: jnp.where(accept, p, q), on_accept, on_reject)

    # a fresh step has no best trial yet (its placeholder point is never taken)
    no_best = (x_n, big, jnp.zeros_like(g_n), aux_n)
    return StepwiseState(
        x=pick(x_n, st.x),
        f=pick(f_n, f),
        g=pick(g_n, g),
        aux=pick(aux_n, st.aux),
        d=pick(d_new, d),
        a=pick(jnp.asarray(1.0, dtype), a_new),
        S=pick(S, st.S),
        Y=pick(Y, st.Y),
        count=pick(count, st.count),
        head=pick(head, st.head),
        trials=pick(jnp.asarray(0), trials),
        it=pick(it, st.it),
        nev=st.nev + 1,
        stall=pick(stall, st.stall),
        stop=pick(stop_acc, stop_rej),
        best=pick(no_best, best),
        has_best=pick(jnp.asarray(False), st.has_best | (expand & better)),
    )


def stepwise_result(st: StepwiseState, gtol: float = 1e-10) -> StepwiseResult:
    """The minimisation's outcome from its (stopped) state."""
    f, g, stop = st.f, st.g, st.stop
    finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(g))
    converged = finite & (
        (stop == STOP_GRADIENT) | ((stop == STOP_STALLED) & _small_grad(f, g, gtol, 1e3))
    )
    return StepwiseResult(st.x, f, g, st.aux, st.it, st.nev, converged, stop)


def minimize_stepwise(
    evaluate,
    x0: jnp.ndarray,
    aux0,
    *,
    maxiter: int = 500,
    gtol: float = 1e-10,
    ftol: float = 1e-15,
    patience: int = 3,
    block_inverse=None,
) -> StepwiseResult:
    """Minimise ``evaluate``'s value from ``x0`` (module docstring), inside ``jit`` and
    ``vmap``; ``block_inverse`` as :func:`stepwise_step`'s."""

    def step(st):
        return stepwise_step(
            evaluate,
            st,
            maxiter=maxiter,
            gtol=gtol,
            ftol=ftol,
            patience=patience,
            block_inverse=block_inverse,
        )

    st = jax.lax.while_loop(is_running, step, stepwise_start(x0, aux0))
    return stepwise_result(st, gtol)
