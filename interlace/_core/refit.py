"""The batched refit engine: many refits of one model's arrays in compiled batches.

Every vectorised refit in interlace (``fit_many``, the parametric, cluster and pigeonhole
bootstraps, deletion diagnostics, anova's bootstrap LRT) goes through :func:`refit_all`,
which returns a :class:`RefitBatch`. Each refit is :func:`~interlace._core.fitting.fit_arrays`
with one leaf of the model replaced (the response, or row weights), warm-started and
preconditioned at the original fit. Tails up to ``SEQUENTIAL_ABOVE`` columns run side by
side (``jax.vmap``); wider ones one after another inside the compiled batch
(``lax.map``). Under ``vmap`` the dense factorisations run as plain JAX operations, not as
batched LAPACK kernels (:mod:`interlace._core.linalg`), which on a small CPU thread pool
could wait on each other forever; so no batch or tail size can deadlock.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .arrays import cross_products_of, theta_to_internal, theta_to_user, user_ks
from .centring import Centring
from .crossprod import device_array
from .deviance import SMALL
from .evaluation import host_objective
from .fitting import fit_arrays
from .newton import hessian_by_differences
from .optimize import minimize_rescaled
from .theta import column_scales, diagonal_mask

__all__ = [
    "RefitBatch",
    "refit_all",
    "deviance_statistic",
    "warn_unconverged",
    "default_batch_size",
    "sequential",
    "chunk_rows",
    "chunk_plan",
    "balanced_split",
    "SEQUENTIAL_ABOVE",
    "MAX_BATCH",
    "CHUNK_NUMBERS",
]


class RefitBatch(NamedTuple):
    """One row per refit: ``beta`` (B, p), ``theta`` (B, n_theta, user order), ``sigma``
    (B,), ``converged`` (B,) and ``statistic`` (B, s: the ``statistic`` of each refit,
    s = 0 without one)."""

    beta: np.ndarray
    theta: np.ndarray
    sigma: np.ndarray
    converged: np.ndarray
    statistic: np.ndarray

    @staticmethod
    def concatenate(parts: list[RefitBatch], rows: int | None = None) -> RefitBatch:
        """The batches one after another, the first ``rows`` rows (all by default)."""
        return RefitBatch(*(np.concatenate([p[i] for p in parts])[:rows] for i in range(5)))


@partial(jax.jit, static_argnames=("reml", "maxiter", "statistic", "field", "one_by_one"))
def _fit_batch(
    model, Y, Theta0, P, centring=None, *, reml, maxiter, statistic, field="y", one_by_one=False
):
    """Refit ``model`` with each row of ``Y`` as its ``field`` (``"y"``: a response,
    ``"weights"``: row weights; a tuple of names with a tuple ``Y`` replaces several
    leaves) from the matching row of ``Theta0``. With a ``centring``
    (:class:`~interlace._core.centring.Centring`), ``model`` holds the centred columns and
    ``Theta0`` their ``theta``; each refit's ``theta`` is mapped to the user's columns
    before ``statistic`` sees it."""
    names = (field,) if isinstance(field, str) else field

    def one(y, theta0):
        leaves = dict(zip(names, (y,) if isinstance(field, str) else y))
        out = fit_arrays(
            model.replace(**leaves),
            reml=reml,
            theta0=theta0,
            maxiter=maxiter,
            implicit=False,
            precond=P,
        )
        if centring is not None:
            out = eqx.tree_at(lambda f: f.theta, out, centring.to_user_theta(out.theta))
        extra = jnp.atleast_1d(statistic(out)) if statistic is not None else jnp.zeros(0)
        return RefitBatch(out.beta, out.theta, out.sigma, out.converged, extra)

    if one_by_one:
        return jax.lax.map(lambda args: one(*args), (Y, Theta0))
    return jax.vmap(one)(Y, Theta0)


# Tails wider than this are refitted one after another inside the compiled batch
# (``lax.map``, each refit with unbatched LAPACK) instead of side by side (``vmap``,
# plain-JAX factorisations, :mod:`interlace._core.linalg`). Both are free of batched LAPACK
# kernels, so neither can deadlock; this is a speed choice. Measured (2 shared cores,
# fit_many on y ~ x + (1 | g) + (1 | h), steady-state CPU seconds, vmap vs lax.map):
# t = 43, 64 responses: 0.75 vs 2.02; t = 123, 64: 1.47 vs 2.72; t = 303, 32: 0.75
# vs 2.06; t = 603, 16: 0.62 vs 1.28. Wider tails (InstEval's 1,145) were not measured
# and keep lax.map, as before.
SEQUENTIAL_ABOVE = 640


def sequential(cp) -> bool:
    """Whether refits of this model run one by one in a batch (``SEQUENTIAL_ABOVE``)."""
    return cp.t > SEQUENTIAL_ABOVE


def _preconditioner(model, theta0, reml) -> jnp.ndarray:
    """``P`` with ``P' H P ~ I`` for the Hessian ``H`` of the deviance at the fit
    (internal order), so batched refits start well scaled. Computed in the units a single
    fit searches ``theta`` in (:func:`search_scales`, ``theta' = s theta``), where the
    eigenvalues are floored at 1e-8 of the largest so that a flat (boundary) direction
    cannot blow ``P`` up. In the columns' own units a slope on a covariate of spread 1e6
    has a curvature ~1e12 times its intercept's: the floor then flattened the intercept's
    direction, whose refits crept from their start and stopped unconverged, up to 4
    deviance units short (2 of 16 ``fit_many`` responses of ``y ~ x + (x || g)``)."""
    s = np.asarray(theta_to_internal(search_scales(model), model), np.float64)
    H = preconditioner_hessian(model, theta0, reml=reml, scales=s)
    w, V = np.linalg.eigh(0.5 * (H + H.T))
    w = np.maximum(w, 1e-8 * max(float(w.max()), 1e-300))
    return device_array((V / np.sqrt(w)) / s[:, None])


def preconditioner_hessian(model, theta0, *, reml, scales=None) -> np.ndarray:
    """Hessian of the deviance in ``theta' = scales * theta`` (internal order; ``scales``
    None: in ``theta`` itself) at ``theta0`` (user order): forward differences of the
    exact gradient, ``H e_j = (g(theta' + h_j e_j) - g(theta')) / h_j`` with ``h_j = 1e-5
    max(1, |theta'_j|)`` (relative error ~1e-5, plenty for a preconditioner; in the
    columns' own units that step was 36x a slope's ``theta`` of 3e-7, and the matrix
    garbage). The gradients come from the single fit's evaluation
    (:func:`~interlace._core.evaluation.host_objective`): a model's refits reuse the
    executable its fit, or any fit of its size class, compiled, where a Hessian by
    autodiff compiled for about a second per new model."""
    fun = host_objective(model.template, reml=reml).fun
    th = np.asarray(theta_to_internal(np.asarray(theta0, np.float64), model), np.float64)
    s = np.ones(th.size) if scales is None else np.asarray(scales, np.float64)

    def grad(t):  # d/dtheta' at theta' = t
        return np.asarray(fun(t / s)[1], np.float64) / s

    H = hessian_by_differences(grad, th * s, grad(th * s), th.size)
    if not np.all(np.isfinite(H)):  # a gradient that overflowed: no preconditioning
        return np.eye(th.size)
    return H


def deviance_statistic(out):
    """A refit's deviance, as a batch statistic (module level: jit caches on identity)."""
    return out.deviance


def off_the_boundary(model, theta0, floor: float = 0.1) -> np.ndarray:
    """A warm start with every diagonal ``theta`` at least ``floor`` in the units a single
    fit searches (:func:`search_scales`: ``floor / s_j`` for a column of size ``s_j``):
    the deviance is even in each diagonal entry, so ``theta_j = 0`` is a stationary point
    that L-BFGS cannot leave, and a start on the boundary (a singular fit) would pin every
    refit there. Taken in the column's own units, the floor put a slope on a covariate of
    size ~50 (``(x || g)`` with ``x`` near 50) 64x too far from its boundary fit: half the
    refits of such a model stopped unconverged, 1e-3 deviance units short."""
    diag = np.asarray(diagonal_mask(user_ks(model)))
    theta0 = np.asarray(theta0, np.float64)
    least = floor / search_scales(model)
    return np.where(diag & (np.abs(theta0) < least), least, theta0)


def search_scales(model) -> np.ndarray:
    """Per ``theta`` entry (user order): the scale a single fit searches it in
    (:func:`~interlace._core.theta.column_scales` of each random-term column's size: 1
    for an intercept (a column of ones), the standard deviation of a column in a term
    with an intercept, the root mean square otherwise), from ``model``'s term columns."""
    sizes = [None] * len(model.template.order)
    for X, user in zip(model.term_X, model.template.order):
        X = np.asarray(X, dtype=np.float64)
        ones = np.all(X == 1.0, axis=0) if X.shape[0] else np.zeros(X.shape[1], bool)
        rms = np.sqrt(np.mean(X * X, axis=0)) if X.shape[0] else np.ones(X.shape[1])
        spread = np.std(X, axis=0) if X.shape[0] else np.ones(X.shape[1])
        sizes[user] = np.where(ones, 1.0, spread if ones.any() else rms)
    return column_scales(user_ks(model), sizes)


# Memory a batch of refits may use for its dense tails: each refit holds a few dozen
# t x t temporaries while it evaluates a deviance and its gradient.
_BATCH_BYTES = 2 << 30
# Numbers (rows x replicates, or rows x tail columns) one chunk of simulated responses or
# per-row work holds in memory: 32 MiB of float64.
CHUNK_NUMBERS = 1 << 22
_TAIL_COPIES = 24


def balanced_split(n: int, most: int) -> tuple[int, int]:
    """``(count, size)``: ``n`` items in ``count = ceil(n / most)`` parts of ``size =
    ceil(n / count) <= most`` each, so that the last part's surplus, ``count * size - n``,
    is below ``count`` (parts of ``most`` would waste up to ``most - 1``)."""
    count = -(-int(n) // max(1, int(most)))
    return count, -(-int(n) // count)


def chunk_plan(model, n_bootstrap: int, most: int) -> tuple[int, int]:
    """``(count, size)`` of the chunks of a bootstrap of ``n_bootstrap`` replicates with
    at most about ``most`` per chunk: balanced (:func:`balanced_split`), and each chunk a
    whole number of equal refit batches (what :func:`refit_all` cuts it into), so every
    chunk and batch has one compiled shape and fewer replicates than there are batches
    are simulated and refitted in surplus (and thrown away)."""
    count, size = balanced_split(n_bootstrap, most)
    batch = default_batch_size(model.template)
    if batch is None or size <= batch:
        return count, size
    per_chunk, _ = balanced_split(size, batch)  # batches per chunk
    batch_size = -(-int(n_bootstrap) // (count * per_chunk))  # <= batch
    return count, per_chunk * batch_size


def chunk_rows(model, n_bootstrap: int, nobs: int) -> int:
    """Replicates per chunk: about 2^22 simulated numbers, rounded down to a multiple of
    the refit batch (so every batch has one compiled shape)."""
    chunk = max(1, min(n_bootstrap, CHUNK_NUMBERS // max(nobs, 1)))
    batch = default_batch_size(model.template)
    return chunk if batch is None or chunk < batch else batch * (chunk // batch)


# Most refits per vectorised batch of a model with a dense tail. Not a safety limit
# (batches of any size are safe, module docstring): a batch runs until its slowest
# member stops, and larger batches did not run faster per refit. Measured (2 shared
# cores, fit_many of 256 responses, t = 43, steady-state CPU seconds): batches of 64
# 2.43, of 128 1.85, of 256 1.91.
MAX_BATCH = 128


def default_batch_size(cp) -> int | None:
    """Refits per vectorised batch: None (all at once) for models small enough for the
    unrolled factorisations, else at most ``MAX_BATCH`` and no more than fit in about
    2 GiB of ``t x t`` temporaries (which binds only up to ``SEQUENTIAL_ABOVE``: wider
    tails are refitted one at a time)."""
    if cp.t <= SMALL and cp.k1 <= SMALL:
        return None
    if sequential(cp):
        return MAX_BATCH  # one refit's temporaries at a time
    return int(max(1, min(MAX_BATCH, _BATCH_BYTES // (_TAIL_COPIES * 8 * cp.t * cp.t))))


def refit_all(
    model,
    Y,
    theta0,
    *,
    reml,
    statistic=None,
    first_maxiter: int = 40,
    batch_size: int | None = None,
    field: str = "y",
    bar=None,
    centring: Centring | None = None,
) -> RefitBatch:
    """Refit every row of ``Y`` (responses, or row weights with ``field="weights"``) in
    two vectorised passes.

    Under ``vmap`` a batch iterates until its slowest member stops, and a few refits
    near the boundary can need 100+ L-BFGS iterations. So all rows get
    ``first_maxiter`` iterations together, then only the unconverged ones continue,
    warm-started, in a small batch (padded to a power of two to limit recompiles).
    ``bar`` (a progress bar) is advanced as batches finish.
    ``centring``: ``model`` holds a fit's centred random-slope columns
    (:mod:`interlace._core.centring`; ``ModelFit.search_arrays``); ``theta0`` and the
    refits' ``theta`` stay in the user's columns.
    Rows go through in batches of ``batch_size`` (:func:`default_batch_size`: models
    small enough for the unrolled factorisations in one batch, others in batches whose
    ``t x t`` temporaries fit in bounded memory). A refit that does not converge, or
    whose deviance or estimates are not finite, gets ``converged = False``; non-finite
    ones restart the second pass from ``theta0``.
    """
    rows = _leading(Y)
    if batch_size is None:
        batch_size = default_batch_size(model.template) or rows
    one_by_one = sequential(model.template)
    if one_by_one:
        first_maxiter = 500  # one refit at a time: each stops when it converges
    if rows > batch_size:
        # Batches of balanced sizes (ceil(rows / batches) each, at most batch_size); the
        # last, partial batch is padded (with copies of its first row) to the same size, so
        # that it runs in the batches' compiled call instead of compiling its own, with
        # fewer padded refits than there are batches.
        _, batch_size = balanced_split(rows, batch_size)
        parts = []
        for i in range(0, rows, batch_size):
            idx = np.arange(i, min(i + batch_size, rows))
            idx = np.concatenate([idx, np.full(batch_size - idx.size, i)])
            part = refit_all(
                model,
                _take(Y, idx),
                theta0,
                reml=reml,
                statistic=statistic,
                first_maxiter=first_maxiter,
                batch_size=batch_size,
                field=field,
                bar=None,
                centring=centring,
            )
            parts.append(RefitBatch(*(a[: min(batch_size, rows - i)] for a in part)))
            if bar is not None:
                bar.update(min(batch_size, rows - i))
        return RefitBatch.concatenate(parts)
    B = rows
    if centring is not None:
        theta0 = centring.to_centred_theta(np.asarray(theta0, np.float64))
    theta0 = off_the_boundary(model, theta0)
    Theta0 = np.broadcast_to(theta0, (B, theta0.shape[0]))
    P = _preconditioner(model, theta0, reml)
    out = RefitBatch(
        *(
            np.array(a)
            for a in _fit_batch(
                model,
                Y,
                Theta0,
                P,
                centring=centring,
                reml=reml,
                maxiter=first_maxiter,
                statistic=statistic,
                field=field,
                one_by_one=one_by_one,
            )
        )
    )
    todo = np.flatnonzero(~out.converged)
    if todo.size:
        size = int(2 ** np.ceil(np.log2(max(todo.size, 8))))
        start = out.theta[todo]
        if centring is not None:
            start = centring.to_centred_theta(start)
        start = np.where(
            np.isfinite(start).all(axis=1, keepdims=True), start, np.asarray(theta0)[None, :]
        )
        batch = dict(
            centring=centring, reml=reml, statistic=statistic, field=field, one_by_one=one_by_one
        )
        again = _refit_rows(model, Y, todo, start, size, P, batch)
        for a, b in zip(out, again):
            a[todo] = b
        # the second pass's batch size: its compiled call serves the last pass too
        _finish_on_host(model, Y, out, theta0, P, size, batch)
    if bar is not None:
        bar.update(B)
    return out


# Refits left unconverged by both batched passes that are finished one by one on the host
# (each costs a single fit); beyond this many, the rest keep their flag.
HOST_FINISH_MOST = 64


def _finish_on_host(model, Y, out, theta0, P, size: int, batch: dict) -> None:
    """Refits still unconverged after the batched passes (``out``, updated in place),
    searched again one by one as a single fit searches (:func:`host_objective` of the
    refit's own cross-products, L-BFGS on the host with its Newton finish), then passed
    once more through the batch from that optimum, so that every output (and
    ``statistic``) comes from the same compiled refit. Near a variance on its boundary
    the batched L-BFGS stalls a few 1e-6 deviance units short (20-30% of the refits of a
    three-factor intercept model with one variance at 0), where the host search
    converges. At most :data:`HOST_FINISH_MOST` refits per batch, none for models whose
    refits run one by one (wide tails: each already ran to its own end, and a host fit
    of such a model costs seconds); a refit whose batched pass from the host optimum
    does not converge keeps its earlier result."""
    todo = np.flatnonzero(~out.converged)[: min(HOST_FINISH_MOST, size)]
    if todo.size == 0 or batch["one_by_one"]:  # wide tails: each refit ran to its end
        return
    field, centring = batch["field"], batch["centring"]
    names = (field,) if isinstance(field, str) else field
    scales = theta_to_internal(search_scales(model), model)
    starts = []
    for j in todo:
        row = jax.tree.map(lambda a, j=j: a[j], Y)
        leaves = dict(zip(names, (row,) if isinstance(field, str) else row))
        cp = _cross_products(model.replace(**leaves))
        fun = host_objective(cp, reml=batch["reml"]).fun
        if np.all(np.isfinite(out.theta[j])):  # the user's columns: to the model's
            start = out.theta[j] if centring is None else centring.to_centred_theta(out.theta[j])
        else:
            start = np.asarray(theta0)  # the model's columns already
        opt, _ = minimize_rescaled(
            fun, theta_to_internal(np.asarray(start), model), scales, polish=True
        )
        found = np.asarray(theta_to_user(opt.theta, model))
        starts.append(found if opt.converged and np.all(np.isfinite(found)) else start)
    again = _refit_rows(model, Y, todo, np.asarray(starts), size, P, batch)
    fixed = again.converged
    for a, b in zip(out, again):
        a[todo[fixed]] = b[fixed]


def _refit_rows(model, Y, rows, starts, size: int, P, batch: dict) -> RefitBatch:
    """Refits of ``Y``'s ``rows`` from ``starts`` (one per row, the model's columns) with
    up to 500 iterations, in one batch padded to ``size`` (with copies of the first row,
    so that passes of one size share a compiled call); numpy, one row per refit."""
    pad = size - rows.size
    idx = np.concatenate([rows, np.full(pad, rows[0])])
    Theta = np.concatenate([starts, np.repeat(starts[:1], pad, axis=0)])
    again = _fit_batch(model, _take(Y, idx), jnp.asarray(Theta), P, maxiter=500, **batch)
    return RefitBatch(*(np.asarray(a)[: rows.size] for a in again))


@jax.jit
def _cross_products(model):
    """The cross-products of a refit's model arrays (one compile per model shape)."""
    return cross_products_of(model)


def _leading(Y) -> int:
    return int(jax.tree.leaves(Y)[0].shape[0])


def _take(Y, index):
    """Rows ``index`` of every array in ``Y`` (an array or a tuple of arrays)."""
    return jax.tree.map(lambda a: a[index], Y)


def warn_unconverged(converged, what: str) -> None:
    """Warn with the count of ``False`` in ``converged`` (refits that did not converge or
    gave a non-finite deviance or estimate), if any."""
    converged = np.asarray(converged, dtype=bool)
    bad = int(converged.size - np.count_nonzero(converged))
    if bad:
        warnings.warn(
            f"{bad} of {converged.size} {what} did not converge or gave non-finite estimates "
            "(flagged converged=False); check them before using the results.",
            UserWarning,
            stacklevel=3,
        )
