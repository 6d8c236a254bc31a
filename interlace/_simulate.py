"""Simulation from a fitted model and the parametric bootstrap, vectorised.

``simulate`` draws new random effects and residuals, as lme4's ``simulate(fit)`` does
(``use.u = FALSE``): ``y* = X beta + sum_r Z_r b*_r + e*`` with ``b*_r,l = sigma T_r z``,
``z ~ N(0, I_k)`` per level and ``e* ~ N(0, sigma^2 I)``. The parametric bootstrap
refits the model to every simulated response with one ``jax.vmap`` of
:func:`interlace.fit_arrays` (chunked), warm-started at the fitted ``theta``.

Every vectorised refit in interlace (``fit_many``, the parametric, cluster and pigeonhole
bootstraps, deletion diagnostics, anova's bootstrap LRT) goes through :func:`refit_all`.
Under ``vmap`` the dense factorisations of the deviance run as plain JAX operations, not
as batched LAPACK kernels (:mod:`interlace._linalg`), which on a small CPU thread pool
could wait on each other forever; so no batch or tail size can deadlock.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._errors import ModelSpecError
from ._progress import progress_bar
from ._seeds import key_from_seed
from ._theta import lower_factor, tril_index

__all__ = ["simulate_responses", "sdcor_names", "sdcor_values", "BootstrapResult",
           "parametric_bootstrap"]


_key = key_from_seed  # None, int, numpy Generator/SeedSequence or JAX key: see _seeds


def _simulate(key, X, beta, sigma, theta, codes, term_X, *, n: int, ks: tuple,
              nlevels: tuple) -> jnp.ndarray:
    """``(n, nobs)`` simulated responses (module doc); pure JAX with static sizes."""
    keys = jax.random.split(key, len(ks) + 1)
    out = jnp.broadcast_to(X @ beta, (n, X.shape[0]))
    start = 0
    for k, q, c, Xr, k_ in zip(ks, nlevels, codes, term_X, keys[:-1]):
        size = k * (k + 1) // 2
        T = lower_factor(theta[start:start + size], k)
        start += size
        b = sigma * jax.random.normal(k_, (n, q, k)) @ T.T  # (n, levels, k)
        out = out + jnp.sum(b[:, c, :] * Xr[None], axis=2)
    return out + sigma * jax.random.normal(keys[-1], out.shape)


_simulate_jit = jax.jit(_simulate, static_argnames=("n", "ks", "nlevels"))


def simulate_responses(result, n: int, key) -> jnp.ndarray:
    """``(n, nobs)`` responses simulated from ``result``'s fitted model (module doc)."""
    d = result.design
    return _simulate_jit(key, jnp.asarray(d.X), jnp.asarray(result.fe_params.to_numpy()),
                         jnp.sqrt(result.scale), jnp.asarray(result.theta.to_numpy()),
                         tuple(jnp.asarray(t.codes) for t in d.terms),
                         tuple(jnp.asarray(t.X) for t in d.terms), n=int(n),
                         ks=tuple(t.k for t in d.terms),
                         nlevels=tuple(len(t.levels) for t in d.terms))


def _labels(terms, diagonal: str, below: str, last: str) -> list[str]:
    """Per term, its lower triangle column by column (``theta``'s order), labelled
    ``<diagonal>_x|g`` or ``<below>_y.x|g``; then ``last``."""
    names = []
    for t in terms:
        for i, j in zip(*tril_index(t.k)):
            names.append(f"{diagonal}_{t.columns[i]}|{t.factor}" if i == j
                         else f"{below}_{t.columns[i]}.{t.columns[j]}|{t.factor}")
    return names + [last]


def term_covariances(theta: np.ndarray, sigma: np.ndarray, terms) -> list[np.ndarray]:
    """Per term, ``Sigma_r = sigma^2 T_r T_r'`` of every row (replicate) of ``theta``:
    ``(rows, k, k)`` arrays."""
    theta, sigma = np.atleast_2d(theta), np.atleast_1d(sigma)
    covs, start = [], 0
    for t in terms:
        rows, cc = tril_index(t.k)
        T = np.zeros((theta.shape[0], t.k, t.k))
        T[:, rows, cc] = theta[:, start:start + len(rows)]
        start += len(rows)
        covs.append(sigma[:, None, None] ** 2 * T @ np.swapaxes(T, 1, 2))
    return covs


def sdcor_names(terms) -> list[str]:
    """lme4's ``confint(oldNames = FALSE)`` names, in its order: ``sd_x|g`` on the
    diagonal, ``cor_y.x|g`` below it, then ``sigma``."""
    return _labels(terms, "sd", "cor", "sigma")


def sdcor_values(theta: np.ndarray, sigma: np.ndarray, terms) -> np.ndarray:
    """Standard deviations and correlations (``sdcor_names`` order) from ``theta`` and
    ``sigma``; rows are replicates."""
    cols = []
    for t, cov in zip(terms, term_covariances(theta, sigma, terms)):
        sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
        with np.errstate(invalid="ignore", divide="ignore"):
            cols += [sd[:, i] if i == j else cov[:, i, j] / (sd[:, i] * sd[:, j])
                     for i, j in zip(*tril_index(t.k))]
    return np.column_stack(cols + [np.atleast_1d(sigma)])


@dataclass(frozen=True)
class BootstrapResult:
    """Replicates of a parametric bootstrap: one row per refit.

    ``replicates`` has the fixed effects, ``sd_*``/``cor_*``/``sigma`` (lme4's names),
    ``theta`` entries and any ``statistic`` columns; ``converged`` flags each refit.
    """

    replicates: pd.DataFrame
    converged: np.ndarray
    estimate: pd.Series  # the same quantities at the original fit

    @property
    def n_bootstrap(self) -> int:
        return len(self.replicates)

    def se(self) -> pd.Series:
        """Bootstrap standard errors: sd (ddof=1) of converged replicates."""
        return self.replicates[self.converged].std(ddof=1)

    def conf_int(self, method: str = "percentile", level: float = 0.95) -> pd.DataFrame:
        """``percentile``: quantiles of the replicates; ``basic``: ``2 est - quantiles``
        (Davison & Hinkley 1997, eqs. 5.6 and 5.18)."""
        if not 0 < level < 1:
            raise ModelSpecError(f"level must be between 0 and 1, got {level!r}.")
        a = (1 - level) / 2
        reps = self.replicates[self.converged]
        lo, hi = reps.quantile(a), reps.quantile(1 - a)
        if method == "basic":
            lo, hi = 2 * self.estimate - hi, 2 * self.estimate - lo
        elif method != "percentile":
            raise ModelSpecError(f"method must be 'percentile' or 'basic', got {method!r}.")
        return pd.DataFrame({f"{100 * a:g} %": lo, f"{100 * (1 - a):g} %": hi})


def parametric_bootstrap(result, n_bootstrap: int = 1000, seed=None,
                         statistic: Callable | None = None,
                         chunk_size: int | None = None,
                         progress: bool | None = None) -> BootstrapResult:
    """Refit ``result``'s model to ``n_bootstrap`` simulated responses (module doc).

    ``statistic(params) -> array`` is JAX-traceable; ``params`` has ``beta``, ``theta``,
    ``sigma`` of one refit. Chunks keep at most ``chunk_size x nobs`` simulated values in
    memory (default: about 2^22 numbers); they are of equal, balanced sizes
    (:func:`chunk_plan`), so only a few surplus responses are simulated and refitted.
    ``progress``: see :mod:`interlace._progress`.
    """
    from ._functional import _arrays_of

    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 2:
        raise ModelSpecError("n_bootstrap must be an integer of at least 2.")
    d = result.design
    model = _arrays_of(d)
    reml = result.method == "REML"
    theta0 = jnp.asarray(result.theta.to_numpy())
    n = d.nobs
    n_chunks, chunk = chunk_plan(model, n_bootstrap, int(chunk_size or _chunk_rows(
        model, n_bootstrap, n)))

    sim_args = (jnp.asarray(d.X), jnp.asarray(result.fe_params.to_numpy()),
                jnp.sqrt(result.scale), theta0, tuple(jnp.asarray(t.codes) for t in d.terms),
                tuple(jnp.asarray(t.X) for t in d.terms))
    static = dict(ks=tuple(t.k for t in d.terms), nlevels=tuple(len(t.levels) for t in d.terms))
    key = _key(seed)
    parts = []
    with progress_bar(n_bootstrap, "parametric bootstrap", progress) as bar:
        for _ in range(n_chunks):
            key, sub = jax.random.split(key)
            Y = _simulate_jit(sub, *sim_args, n=chunk, **static)
            parts.append(refit_all(model, Y, theta0, reml=reml, statistic=statistic, bar=bar))
    return bootstrap_result(result, parts, statistic, n_bootstrap)


def bootstrap_result(result, parts, statistic, n_bootstrap: int) -> BootstrapResult:
    """A :class:`BootstrapResult` from :func:`refit_all`'s outputs (a list of chunks),
    with the same quantities at the original fit as its ``estimate``."""
    beta, theta, sigma, conv, extra = (np.concatenate([p[i] for p in parts])[:n_bootstrap]
                                       for i in range(5))
    table = _table(result, beta, theta, sigma, extra)
    theta0 = jnp.asarray(result.theta.to_numpy())
    est_extra = (np.atleast_1d(np.asarray(statistic({
        "beta": jnp.asarray(result.fe_params.to_numpy()), "theta": theta0,
        "sigma": jnp.sqrt(result.scale)}))) if statistic is not None else np.zeros(0))
    estimate = _table(result, result.fe_params.to_numpy()[None], result.theta.to_numpy()[None],
                      np.array([np.sqrt(result.scale)]), est_extra[None]).iloc[0]
    warn_unconverged(conv, "bootstrap refits")
    return BootstrapResult(replicates=table, converged=conv.astype(bool), estimate=estimate)


def warn_unconverged(converged, what: str) -> None:
    """Warn with the count of ``False`` in ``converged`` (refits that did not converge or
    gave a non-finite deviance or estimate), if any."""
    converged = np.asarray(converged, dtype=bool)
    bad = int(converged.size - np.count_nonzero(converged))
    if bad:
        warnings.warn(
            f"{bad} of {converged.size} {what} did not converge or gave non-finite estimates "
            "(flagged converged=False); check them before using the results.",
            UserWarning, stacklevel=3)


@partial(jax.jit, static_argnames=("reml", "maxiter", "statistic", "field", "one_by_one"))
def _fit_batch(model, Y, Theta0, P, *, reml, maxiter, statistic, field="y", one_by_one=False):
    """Refit ``model`` with each row of ``Y`` as its ``field`` (``"y"``: a response,
    ``"weights"``: row weights; a tuple of names with a tuple ``Y`` replaces several
    leaves) from the matching row of ``Theta0``."""
    from ._functional import fit_arrays

    names = (field,) if isinstance(field, str) else field

    def one(y, theta0):
        leaves = dict(zip(names, (y,) if isinstance(field, str) else y))
        out = fit_arrays(model.replace(**leaves), reml=reml, theta0=theta0,
                         maxiter=maxiter, implicit=False, precond=P)
        extra = jnp.atleast_1d(statistic(out)) if statistic is not None else jnp.zeros(0)
        return out["beta"], out["theta"], out["sigma"], out["converged"], extra

    if one_by_one:
        return jax.lax.map(lambda args: one(*args), (Y, Theta0))
    return jax.vmap(one)(Y, Theta0)


# Tails wider than this are refitted one after another inside the compiled batch
# (``lax.map``, each refit with unbatched LAPACK) instead of side by side (``vmap``,
# plain-JAX factorisations, :mod:`interlace._linalg`). Both are free of batched LAPACK
# kernels, so neither can deadlock; this is a speed choice. Measured (2 shared cores,
# fit_many on y ~ x + (1 | g) + (1 | h), steady-state CPU seconds, vmap vs lax.map):
# t = 43, 64 responses: 0.75 vs 2.02; t = 123, 64: 1.47 vs 2.72; t = 303, 32: 0.75
# vs 2.06; t = 603, 16: 0.62 vs 1.28. Wider tails (InstEval's 1,145) were not measured
# and keep lax.map, as before.
_SEQUENTIAL_ABOVE = 640


def sequential(cp) -> bool:
    """Whether refits of this model run one by one in a batch (``_SEQUENTIAL_ABOVE``)."""
    return cp.t > _SEQUENTIAL_ABOVE


def _preconditioner(model, theta0, reml) -> jnp.ndarray:
    """``P`` with ``P' H P ~ I`` for the Hessian ``H`` of the deviance at the fit
    (internal order), so batched refits start well scaled. Eigenvalues are floored at
    1e-8 of the largest so that a flat (boundary) direction cannot blow ``P`` up."""
    H = _hessian(model, jnp.asarray(theta0), reml=reml)
    w, V = np.linalg.eigh(np.asarray(0.5 * (H + H.T)))
    w = np.maximum(w, 1e-8 * max(float(w.max()), 1e-300))
    return jnp.asarray(V / np.sqrt(w))


@partial(jax.jit, static_argnames=("reml",))
def _hessian(model, theta0, *, reml):
    """Hessian of the deviance in the internal order at ``theta0`` (user order), as one
    compiled call: run op by op, it and fit_many's first fit dispatched ~330 small
    compiled operations (~11 s of a 256-response fit_many on a 40-column tail)."""
    from ._arrays import cross_products_of
    from ._deviance import profiled_deviance
    from ._functional import _to_internal

    th = _to_internal(theta0, model)
    return jax.jacrev(jax.grad(profiled_deviance))(th, cross_products_of(model), reml=reml)


def _deviance_of(out):
    """A refit's deviance, as a batch statistic (module level: jit caches on identity)."""
    return out["deviance"]


def _off_the_boundary(model, theta0, floor: float = 0.1) -> jnp.ndarray:
    """A warm start with every diagonal ``theta`` at least ``floor``: the deviance is even
    in each diagonal entry, so ``theta_j = 0`` is a stationary point that L-BFGS cannot
    leave, and a start on the boundary (a singular fit) would pin every refit there."""
    from ._functional import _user_ks
    from ._theta import diagonal_mask

    diag = jnp.asarray(diagonal_mask(_user_ks(model)))
    theta0 = jnp.asarray(theta0)
    return jnp.where(diag & (jnp.abs(theta0) < floor), floor, theta0)


# Memory a batch of refits may use for its dense tails: each refit holds a few dozen
# t x t temporaries while it evaluates a deviance and its gradient.
_BATCH_BYTES = 2 << 30
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


def _chunk_rows(model, n_bootstrap: int, nobs: int) -> int:
    """Replicates per chunk: about 2^22 simulated numbers, rounded down to a multiple of
    the refit batch (so every batch has one compiled shape)."""
    chunk = max(1, min(n_bootstrap, (1 << 22) // max(nobs, 1)))
    batch = default_batch_size(model.template)
    return chunk if batch is None or chunk < batch else batch * (chunk // batch)


# Most refits per vectorised batch of a model with a dense tail. Not a safety limit
# (batches of any size are safe, module docstring): a batch runs until its slowest
# member stops, and larger batches did not run faster per refit. Measured (2 shared
# cores, fit_many of 256 responses, t = 43, steady-state CPU seconds): batches of 64
# 2.43, of 128 1.85, of 256 1.91.
_MAX_BATCH = 128


def default_batch_size(cp) -> int | None:
    """Refits per vectorised batch: None (all at once) for models small enough for the
    unrolled factorisations, else at most ``_MAX_BATCH`` and no more than fit in about
    2 GiB of ``t x t`` temporaries (which binds only up to ``_SEQUENTIAL_ABOVE``: wider
    tails are refitted one at a time)."""
    from ._deviance import _SMALL

    if cp.t <= _SMALL and cp.k1 <= _SMALL:
        return None
    if sequential(cp):
        return _MAX_BATCH  # one refit's temporaries at a time
    return int(max(1, min(_MAX_BATCH, _BATCH_BYTES // (_TAIL_COPIES * 8 * cp.t * cp.t))))


def refit_all(model, Y, theta0, *, reml, statistic=None, first_maxiter: int = 40,
              batch_size: int | None = None, field: str = "y", bar=None):
    """Refit every row of ``Y`` (responses, or row weights with ``field="weights"``) in
    two vectorised passes.

    Under ``vmap`` a batch iterates until its slowest member stops, and a few refits
    near the boundary can need 100+ L-BFGS iterations. So all rows get
    ``first_maxiter`` iterations together, then only the unconverged ones continue,
    warm-started, in a small batch (padded to a power of two to limit recompiles).
    ``bar`` (a progress bar) is advanced as batches finish.
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
            part = refit_all(model, _take(Y, idx), theta0, reml=reml, statistic=statistic,
                             first_maxiter=first_maxiter, batch_size=batch_size, field=field,
                             bar=None)
            parts.append([a[:min(batch_size, rows - i)] for a in part])
            if bar is not None:
                bar.update(min(batch_size, rows - i))
        return [np.concatenate([p[j] for p in parts]) for j in range(5)]
    B = rows
    theta0 = _off_the_boundary(model, theta0)
    Theta0 = jnp.broadcast_to(theta0, (B, theta0.shape[0]))
    P = _preconditioner(model, theta0, reml)
    out = [np.array(a) for a in _fit_batch(model, Y, Theta0, P, reml=reml,
                                              maxiter=first_maxiter, statistic=statistic,
                                              field=field, one_by_one=one_by_one)]
    todo = np.flatnonzero(~out[3])
    if todo.size:
        size = int(2 ** np.ceil(np.log2(max(todo.size, 8))))
        idx = np.concatenate([todo, np.full(size - todo.size, todo[0])])
        start = out[1][idx]
        start = np.where(np.isfinite(start).all(axis=1, keepdims=True), start,
                         np.asarray(theta0)[None, :])
        again = _fit_batch(model, _take(Y, idx), jnp.asarray(start), P, reml=reml, maxiter=500,
                           statistic=statistic, field=field, one_by_one=one_by_one)
        for a, b in zip(out, again):
            a[todo] = np.asarray(b)[: todo.size]
    if bar is not None:
        bar.update(B)
    return out


def _leading(Y) -> int:
    return int(jax.tree.leaves(Y)[0].shape[0])


def _take(Y, index):
    """Rows ``index`` of every array in ``Y`` (an array or a tuple of arrays)."""
    return jax.tree.map(lambda a: a[index], Y)


def _table(result, beta, theta, sigma, extra) -> pd.DataFrame:
    d = result.design
    table = pd.DataFrame(beta, columns=list(result.fe_params.index))
    sdcor = sdcor_values(theta, sigma, d.terms)
    for j, name in enumerate(sdcor_names(d.terms)):
        table[name] = sdcor[:, j]
    for j, name in enumerate(result.theta.index):
        table[f"theta_{name}"] = theta[:, j]
    for j in range(extra.shape[1] if extra.ndim == 2 else 0):
        table[f"statistic_{j}"] = extra[:, j]
    return table
