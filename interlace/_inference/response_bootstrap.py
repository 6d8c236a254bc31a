"""Bootstrap standard errors of a scalar statistic of the response, vectorised.

A resample is a vector of multiplicity weights: ``w_i`` = how many times row ``i`` is in
the resample. For the cluster bootstrap, the levels of one grouping factor are drawn
with replacement and each row inherits the multiplicity of its level, so every sampled
group brings all of its rows. Shapes stay static (``n`` rows, ``B`` replicates), so one
``jax.vmap`` evaluates all replicates in a single compiled call.

For crossed designs, resampling one factor alone understates the variance of statistics
that depend on the other factor too (Owen 2007, "The pigeonhole bootstrap").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._base.seeds import key_from_seed

__all__ = [
    "weighted_median",
    "weighted_mean",
    "resample_weights",
    "bootstrap_replicates",
    "chunked_replicates",
]

Statistic = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def weighted_median(y: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """Median of the sample in which ``y[i]`` appears ``w[i]`` times (integer weights).

    Matches ``np.median(np.repeat(y, w))``: the mean of the order statistics at
    positions ``floor((W-1)/2)`` and ``floor(W/2)`` (0-based) of the expanded sample,
    ``W = sum(w)``.
    """
    order = jnp.argsort(y)
    ys, cw = y[order], jnp.cumsum(w[order])
    total = cw[-1]

    def at(k):  # value at 0-based position k of the expanded, sorted sample
        return ys[jnp.searchsorted(cw, k, side="right")]

    return 0.5 * (at(jnp.floor((total - 1) / 2)) + at(jnp.floor(total / 2)))


def weighted_mean(y: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """Mean of the resample: ``sum(w y) / sum(w)``."""
    return jnp.sum(w * y) / jnp.sum(w)


def resample_weights(key, codes: jnp.ndarray | None, n_levels: int, n: int, n_rep: int):
    """``(n_rep, n)`` multiplicity weights of ``n_rep`` bootstrap resamples.

    With ``codes`` (row -> level of the resampled factor), ``n_levels`` levels are drawn
    with replacement and broadcast to rows; with ``codes=None``, ``n`` rows are drawn.
    """
    units = n if codes is None else n_levels
    draws = jax.random.randint(key, (n_rep, units), 0, units)
    counts = jax.vmap(lambda d: jnp.zeros(units).at[d].add(1.0))(draws)
    return counts if codes is None else counts[:, codes]


@partial(jax.jit, static_argnames=("statistic", "n_levels", "n_rep"))
def bootstrap_replicates(
    key,
    y: jnp.ndarray,
    codes: jnp.ndarray | None,
    *,
    statistic: Statistic,
    n_levels: int,
    n_rep: int,
) -> jnp.ndarray:
    """``statistic(y, w)`` for ``n_rep`` resamples, all in one vectorised call."""
    w = resample_weights(key, codes, n_levels, y.shape[0], n_rep)
    return jax.vmap(statistic, in_axes=(None, 0))(y, w)


def chunked_replicates(
    seed,
    y: np.ndarray,
    codes: np.ndarray | None,
    n_levels: int,
    statistic: Statistic,
    n_bootstrap: int,
    max_elements: int = 1 << 24,
) -> np.ndarray:
    """All ``n_bootstrap`` replicates, in chunks of at most ``max_elements`` weights so
    memory stays bounded for large ``n``; chunks share one compiled function."""
    key = key_from_seed(seed)
    chunk = int(max(1, min(n_bootstrap, max_elements // max(1, y.shape[0]))))
    yj = jnp.asarray(y, dtype=jnp.float64)
    cj = None if codes is None else jnp.asarray(codes)
    out, done = [], 0
    while done < n_bootstrap:
        key, sub = jax.random.split(key)
        reps = bootstrap_replicates(
            sub, yj, cj, statistic=statistic, n_levels=n_levels, n_rep=chunk
        )
        out.append(np.asarray(reps)[: n_bootstrap - done])
        done += chunk
    return np.concatenate(out)
