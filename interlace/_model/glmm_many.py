"""Many GLMMs that share one design (genes x cells): one response per column, fitted
side by side in the lanes of one compiled, vectorised loop.

Each response's fit minimises the single fit's objective (``glmm_estimate``'s module
docstring: PIRLS, then the Laplace or quadrature deviance with its exact gradient) with
the one-evaluation-per-iteration L-BFGS of :mod:`interlace._core.stepwise`, under
``jax.vmap`` over lanes. As a single fit: ``nAGQ = 0`` searches ``theta`` with ``beta``
in PIRLS; ``nAGQ >= 1`` searches ``theta`` and ``beta_s`` together, ``beta_s`` from the
joint modes at the start; a negative binomial's ``log k`` comes last, from each
response's moment estimate (``var = m + m^2 / k``). Each evaluation's PIRLS starts from
the modes of the lane's last accepted point. No standard errors are computed.

**Lanes, refilled.** A vmapped loop runs until its slowest lane stops, and fits differ
(21 iterations at the median, 34 at most, on bench_glmm_many's Poisson genes), so
instead of batches that each wait for their slowest response, a fixed number of lanes
(``batch_size``) take responses from a queue: the compiled loop returns to the host once
an eighth of the lanes have stopped, their results are read, and they start the next
responses (``_advance``). One executable serves the whole call. Lanes refill together,
not one by one, because a fit's first evaluations need the most PIRLS iterations and
every lane waits for the slowest lane's.

**Warm starts.** The first ``batch_size`` responses start from lme4's start (``theta``
at the identity). Once eight fits have converged, later responses start from their
typical ``theta`` (:func:`typical_theta`): on a genes x cells design the genes' variance
components are alike, and the median halved bench_glmm_many's Poisson time (median
iterations 21 -> 14). A start changes the path, not the optimum: each fit still stops
by its own gradient (-2 logLik agreed to 1e-14 relative with starts at the identity on
bench_glmm_many's 1,024 Poisson and 512 negative-binomial genes). A response's start,
and so its last digits, depend on the responses fitted before it.

Dense factorisations under ``vmap`` take the plain-JAX path (:mod:`interlace._core.linalg`),
so no lane can deadlock.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._base.jit import NO_YNN_FUSIONS, jit
from .._core.centring import slope_centring
from .._core.family import Family
from .._core.optimize import off_zero
from .._core.pirls import cold_start, laplace, pirls, start_eta, warm_start
from .._core.stepwise import is_running, stepwise_result, stepwise_start, stepwise_step
from .._core.theta import diagonal_mask, normalize_signs, to_internal, to_user
from .estimate import centred_design, theta_scales
from .glmm_design import GlmmDesign
from .glmm_estimate import GlmmProblem, capped_beta_block, runaway_suspects, separated_columns

__all__ = [
    "GlmmBatch",
    "fit_glmm_many",
    "degenerate_responses",
    "runaway_columns",
    "identity_start",
    "typical_theta",
]

# Responses per vectorised batch: at most this many, and no more rows in flight than
# _BATCH_ROWS (each row carries a few dozen float64 temporaries per evaluation).
_MAX_BATCH = 256
_BATCH_ROWS = 100_000
# A lane whose fit has stopped idles until this share of the lanes has (then all take
# new responses together): new fits' first evaluations need the most PIRLS iterations,
# and every lane waits for the slowest one's.
_REFILL_AT = 1 / 8
# Responses fitted after this many have converged start from their typical theta.
_WARM_FROM = 8
# ... with each standard-deviation factor at least this (a start at a boundary crawls).
_WARM_FLOOR = 0.1


class GlmmBatch(NamedTuple):
    """One row per response: ``theta`` (user's order, lme4's signs), ``beta``, ``size``
    (negative binomial's ``k``; NaN for other families), ``minus_two_llf`` (lme4's
    ``-2 logLik``), ``deviance`` (lme4's ``deviance()``, the sum of the squared deviance
    residuals at the modes, as :class:`~interlace.GLMMResult`'s), ``converged``, L-BFGS
    ``iterations``, ``degenerate`` (not fitted: :func:`degenerate_responses`; NaN
    estimates) and ``separated`` (the fixed-effect columns that separate the response,
    :func:`runaway_columns`; such a fit is not ``converged``); ``theta_names`` (lme4's)."""

    theta: np.ndarray
    beta: np.ndarray
    size: np.ndarray
    minus_two_llf: np.ndarray
    deviance: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    degenerate: np.ndarray
    separated: tuple  # per response: a tuple of column names, empty for most
    theta_names: tuple


class _Report(NamedTuple):
    """Each lane's outcome after :func:`_advance` (read once it is not ``running``)."""

    running: jnp.ndarray
    x: jnp.ndarray
    beta: jnp.ndarray
    value: jnp.ndarray
    deviance: jnp.ndarray
    converged: jnp.ndarray
    iterations: jnp.ndarray


def _beta_block(aux) -> jnp.ndarray:
    """A lane's capped ``(R_X'R_X)^-1 / 2`` at its last accepted point (``aux[3]``;
    ``capped_beta_block``, ``GlmmProblem.beta_inverse_hessian``)."""
    return capped_beta_block(aux[3], jnp)


@partial(jit, static_argnames=("family", "n_theta", "joint"), options=NO_YNN_FUSIONS)
def _advance(
    Y, X0, fresh, state, ma, data, rule, scale, *, family, n_theta, joint, maxiter, return_at
):
    """Run the lanes' minimisations side by side until ``return_at`` of them have stopped
    (or all have). Lane ``i`` minimises response ``Y[i]``'s objective in the optimiser's
    coordinates (``scale * [theta, (beta_s unless joint), (log k)]``: ``theta`` on the
    random terms' rescaled columns, ``_core.theta.column_scales``); a ``fresh`` lane
    first starts over from ``X0[i]`` (its ``beta_s`` replaced by the joint modes' there).
    ``maxiter`` and ``return_at`` are traced: one executable per lane count."""
    p = ma.X.shape[1]
    w = data.prior_weights

    def full(xr):
        xr = xr / scale
        if not joint:
            return xr
        return jnp.concatenate([xr[:n_theta], jnp.zeros(p, xr.dtype), xr[n_theta:]])

    def start_lane(y, x0):
        eta0 = start_eta(family, y, w, data.offset)
        aux0 = (
            cold_start(eta0, ma),
            jnp.zeros(p, eta0.dtype),
            jnp.zeros((), eta0.dtype),
            jnp.zeros((p, p), eta0.dtype),
        )
        return stepwise_start(x0, aux0)

    def step_lane(st, y, constant):
        # the log-density's data terms once per call, not in every evaluation
        d = data._replace(y=y, density_constant=constant)

        def evaluate(xr, aux, start):
            # PIRLS from the last accepted point's modes; at the start of a Laplace fit,
            # with beta among the modes, whose beta then becomes the start's
            start_at = aux[0]
            fixed = False if joint else jnp.logical_not(start)
            x = full(xr)
            data_x = d._replace(size=jnp.exp(x[-1])) if family.estimates_size else d
            theta, beta = x[:n_theta], x[n_theta : n_theta + p]
            modes, _ = pirls(theta, ma, family, data_x, start_at, beta, fixed)
            if not joint:
                beta_s = jax.lax.stop_gradient(modes.beta)
                xr = jnp.where(start, xr.at[n_theta : n_theta + p].set(beta_s), xr)

            def value(xr):
                x = full(xr)
                size = jnp.exp(x[-1]) if family.estimates_size else d.size
                theta, beta = x[:n_theta], x[n_theta : n_theta + p]
                lp = laplace(
                    theta, ma, family, d._replace(size=size), modes.eta, beta, rule, not joint
                )
                return lp.value, (
                    warm_start(lp.modes, start_at.eta),
                    lp.modes.beta,
                    lp.dev_sum,
                    lp.fe_cov,
                )

            (v, aux_new), grad = jax.value_and_grad(value, has_aux=True)(xr)
            return xr, v, grad, aux_new

        # a Laplace lane's recursion starts from (R_X'R_X)^-1 / 2 on beta_s, its
        # eigenvalues capped (GlmmProblem.beta_inverse_hessian)
        block = None if joint else (slice(n_theta, n_theta + p), _beta_block)
        return stepwise_step(evaluate, st, maxiter=maxiter, block_inverse=block)

    def lanewise(mask, new, old):
        return jax.tree.map(
            lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b), new, old
        )

    state = lanewise(fresh, jax.vmap(start_lane)(Y, X0), state)
    constant = jax.vmap(lambda y: family.density_constant(y, w))(Y)

    def more(st):
        running = is_running(st)
        return jnp.any(running) & (jnp.sum(~running) < return_at)

    def step(st):
        return lanewise(is_running(st), jax.vmap(step_lane)(st, Y, constant), st)

    state = jax.lax.while_loop(more, step, state)
    out = jax.vmap(stepwise_result)(state)
    report = _Report(
        is_running(state), out.x, out.aux[1], out.value, out.aux[2], out.converged, out.iterations
    )
    return state, report


def identity_start(ks, order) -> np.ndarray:
    """lme4's start, identity factors, in the internal term ``order`` (``ks`` in the
    user's), exact zeros moved off zero (:func:`~interlace._core.optimize.off_zero`)."""
    return off_zero(diagonal_mask([ks[i] for i in order]).astype(float))


def typical_theta(thetas: np.ndarray, ks, diagonal: np.ndarray) -> np.ndarray:
    """A start for new responses' fits: the median, entry by entry, of converged fits'
    ``thetas`` (rows; ``ks`` and ``diagonal`` in their, the internal, term order; signs
    normalised first), with diagonal entries at least ``_WARM_FLOOR``."""
    return floored(np.median(normalize_signs(thetas, ks), axis=0), diagonal)


def floored(theta: np.ndarray, diagonal: np.ndarray) -> np.ndarray:
    """``theta`` with its (signs normalised) diagonal entries at least ``_WARM_FLOOR``."""
    return np.where(diagonal, np.maximum(theta, _WARM_FLOOR), theta)


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
    maxiter: int = 500,
    refill_at: float = _REFILL_AT,
    start_theta: np.ndarray | None = None,
) -> GlmmBatch:
    """Fit ``glmm``'s model to every column of ``Y`` (n, B; valid responses of the family)
    in vectorised lanes (module docstring); degenerate columns are not fitted.
    ``start_theta`` (user's order, e.g. a fitted model's, as lme4's ``refit``): every fit
    starts there (diagonal entries at least ``_WARM_FLOOR``), in place of lme4's start
    and the warm starts. Random-slope columns far from 0 are searched centred, as a
    single fit searches them (:mod:`interlace._core.centring`); ``theta`` in and out is
    the user's."""
    centring = slope_centring(glmm.design.terms)
    if centring is not None:
        start = None if start_theta is None else centring.to_centred_theta(start_theta)
        batch = fit_glmm_many(
            glmm._replace(design=centred_design(glmm.design, centring)),
            family,
            Y,
            nagq=nagq,
            batch_size=batch_size,
            maxiter=maxiter,
            refill_at=refill_at,
            start_theta=start,
        )
        return batch._replace(theta=centring.to_user_theta(batch.theta))
    # exact widths and names: the lanes' compiled loop reads beta and the names
    prob = GlmmProblem(glmm, family, nagq, shared=False)
    n, n_all = Y.shape
    degenerate = degenerate_responses(Y, family, glmm.prior_weights)
    fitted = np.flatnonzero(~degenerate)
    Y = Y[:, fitted]
    B = Y.shape[1]
    if B == 0:
        return _unfitted(prob, n_all, degenerate)
    joint = nagq == 0
    ks, order, n_theta, p = prob.ks, prob.order, prob.n_theta, prob.p
    ks_internal = [ks[i] for i in order]  # x holds theta in the internal term order
    diagonal = diagonal_mask(ks_internal)
    # the lanes search theta' = scale * theta, as a single fit does (glmm_estimate), and
    # start from lme4's identity there; X0, the lanes' x and the warm starts are theta'
    scale_theta = theta_scales(glmm.design.terms, order)
    if start_theta is None:
        theta0 = identity_start(ks, order)
    else:
        theta0 = to_internal(np.asarray(start_theta, dtype=float), ks, order) * scale_theta
        theta0 = floored(theta0, diagonal)
    X0 = np.tile(np.concatenate([theta0, np.zeros(0 if joint else p)]), (B, 1))
    if family.estimates_size:
        m, v = Y.mean(axis=0), Y.var(axis=0)
        log_k = np.log(np.clip(m**2 / np.maximum(v - m, 1e-2 * m**2), 0.05, 1e3))
        X0 = np.concatenate([X0, log_k[:, None]], axis=1)
    scale = np.ones(X0.shape[1])
    scale[:n_theta] = scale_theta
    if batch_size is None:
        batch_size = max(8, min(_MAX_BATCH, _BATCH_ROWS // max(n, 1)))
    lanes = max(1, min(batch_size, B))
    refill = max(1, int(np.ceil(refill_at * lanes)))

    x = np.full_like(X0, np.nan)
    beta, value, dev = np.full((B, p), np.nan), np.full(B, np.nan), np.full(B, np.nan)
    ok, its = np.zeros(B, dtype=bool), np.zeros(B, dtype=np.int64)
    # every lane starts with a response (the surplus of B < lanes: none)
    owner = np.arange(lanes)  # the response each lane fits; -1: none (idle)
    queued = lanes
    Y_lanes = np.ascontiguousarray(Y[:, owner].T, np.float64)
    X_lanes = X0[owner].astype(np.float64)
    fresh = np.ones(lanes, dtype=bool)
    # a placeholder state of the lanes' shapes (every lane is fresh in the first call)
    aux = (cold_start(np.zeros(n), prob.ma), np.zeros(p), np.zeros(()), np.zeros((p, p)))
    shapes = jax.eval_shape(jax.vmap(lambda x0: stepwise_start(x0, aux)), X_lanes)
    state = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes)
    while True:
        state, report = _advance(
            Y_lanes,  # numpy into the jitted call: no copy compiled
            X_lanes,
            fresh,
            state,
            prob.ma,
            prob.data,
            prob.rule,
            scale,
            family=family,
            n_theta=n_theta,
            joint=joint,
            maxiter=np.asarray(maxiter, np.int64),
            return_at=np.asarray(refill if queued < B else lanes, np.int64),
        )
        report = _Report(*(np.asarray(a) for a in report))
        stopped = ~report.running
        done = np.flatnonzero(stopped & (owner >= 0))
        dest = owner[done]
        x[dest], beta[dest], value[dest] = report.x[done], report.beta[done], report.value[done]
        x[dest] /= scale
        dev[dest], ok[dest] = report.deviance[done], report.converged[done]
        its[dest] = report.iterations[done]
        owner[done] = -1
        if not np.any(~stopped) and queued >= B:
            break
        free = np.flatnonzero(stopped)[: B - queued]
        fresh = np.zeros(lanes, dtype=bool)
        fresh[free] = True
        owner[free] = np.arange(queued, queued + free.size)
        Y_lanes[free] = Y[:, owner[free]].T
        X_lanes[free] = X0[owner[free]]
        if start_theta is None and np.count_nonzero(ok) >= _WARM_FROM:
            X_lanes[free, :n_theta] = typical_theta(
                x[ok, :n_theta] * scale_theta, ks_internal, diagonal
            )
        queued += free.size
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

    separated = [()] * n_all
    for j, cols in runaway_columns(
        glmm, family, Y, np.asarray(prob.ma.X), beta, ok, prob.ic
    ).items():
        separated[fitted[j]] = cols
        ok[j] = False

    return GlmmBatch(
        spread(theta, np.nan),
        spread(prob.user_beta(beta), np.nan),  # the model arrays' units to the user's
        spread(size_k, np.nan),
        spread(value, np.nan),
        spread(dev, np.nan),
        spread(ok, False),
        spread(its, 0),
        degenerate,
        tuple(separated),
        prob.ma.theta_names,
    )


def _unfitted(prob: GlmmProblem, n_all: int, degenerate: np.ndarray) -> GlmmBatch:
    """The batch of a call whose every response is degenerate: NaN rows."""
    nan = np.full(n_all, np.nan)
    return GlmmBatch(
        np.full((n_all, prob.n_theta), np.nan),
        np.full((n_all, prob.p), np.nan),
        nan,
        nan,
        nan,
        np.zeros(n_all, dtype=bool),
        np.zeros(n_all, dtype=np.int64),
        degenerate,
        ((),) * n_all,
        prob.ma.theta_names,
    )


def runaway_columns(
    glmm: GlmmDesign,
    family: Family,
    Y: np.ndarray,
    X_s: np.ndarray,
    beta_s: np.ndarray,
    converged: np.ndarray,
    ic: int,
) -> dict[int, tuple[str, ...]]:
    """``{response: separating columns}`` for the responses (columns of ``Y``, fitted
    ``beta_s`` rows in the coordinates of the centred and scaled columns ``X_s``) that a
    fixed effect separates, by the single fit's rule (``glmm_estimate``): a fit that did
    not converge, or one of :func:`~interlace._model.glmm_estimate.runaway_suspects`, is
    checked with :func:`~interlace._model.glmm_estimate.separated_columns`."""
    names = glmm.design.fe_names
    suspects = np.flatnonzero(~converged | runaway_suspects(X_s, beta_s, ic))
    out = {}
    for j in suspects:
        one = glmm._replace(design=dataclasses.replace(glmm.design, y=Y[:, j]))
        cols = separated_columns(glmm.design.X, names, family, one)
        if cols:
            out[int(j)] = tuple(cols)
    return out
