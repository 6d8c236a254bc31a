"""Centring and scaling of the response and the fixed-effect columns, and its inverse.

The profiled deviance reads the residual sum of squares ``r_yy^2`` off the Cholesky
factor of ``[Z X y]'[Z X y]``, i.e. as ``y'y`` minus its projections. With ``y`` (or a
column of ``X``) near ``1e6`` that difference cancels almost every digit float64 has.
So cross-products are formed from

    X_s = X G,   y_s = (y - a_y) / s_y,

where, with an intercept column ``c`` (all ones), ``G`` centres every other column at
its weighted mean ``a_j`` and divides it by its root mean square ``s_j`` about it
(``G = diag(1/s) - e_c (a/s)'``); without an intercept nothing is centred (that would
change the model) and columns are only scaled. ``X_s`` spans the same space as ``X``
and ``y_s`` differs from ``y`` by an element of it times a scale, so the fit is the
same model in other units:

* ``beta = s_y G beta_s + a_y e_c`` and ``vcov(beta) = s_y^2 G vcov(beta_s) G'``;
* BLUPs scale by ``s_y``; ``sigma^2`` by ``s_y^2``; ``theta`` (relative) not at all;
* ML deviance: ``d = d_s + n log s_y^2``; REML criterion:
  ``d = d_s + (n - p) log s_y^2 + 2 sum_j log s_j`` (``log|X'V^-1 X| = log|X_s'V^-1 X_s|
  - 2 log|det G|``, and ``det G = prod 1/s_j``).

Prior weights ``w_i`` (residual variance ``sigma^2 / w_i``, lme4's ``weights=``) use the
weighted means and root mean squares, and then every row of ``[Z X_s y_s]`` is scaled by
``sqrt(w_i)``: an unweighted model of the scaled rows, whose deviance is the weighted
model's plus ``sum_i log w_i`` (the Jacobian of the scaling; lme4's ``ldW``), with ``n``
still the number of rows.

A constant error in ``a`` (rounding in the mean of values near 1e9) only shifts
``X_s`` or ``y_s`` by a constant, which the intercept absorbs, and the inverse uses the
same stored ``a``: the transformation is exact whatever rounding ``a`` has. Random-term
columns (``Z``, slopes) are not transformed.

:func:`standardize` takes ``xp`` (numpy or ``jax.numpy``): the numpy path builds the
fit's cross-products, the JAX path (:func:`interlace._core.arrays.cross_products_of`) keeps the
deviance differentiable in the data and lets ``vmap`` standardise every response of a
batch on its own. The maps back are JAX (they run inside the compiled estimates).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = [
    "Standardization",
    "intercept_column",
    "standardize",
    "back_transform_beta",
    "back_transform_cov",
    "to_standardized_beta",
    "deviance_offset",
    "weights_log_det",
]


class Standardization(NamedTuple):
    """``X_s = X G`` and ``y_s = (y - y_shift) / y_scale`` (module docstring)."""

    x_shift: object  # (p,) a_j; 0 for the intercept column and without an intercept
    x_scale: object  # (p,) s_j; 1 for the intercept column
    y_shift: object  # scalar a_y; 0 without an intercept
    y_scale: object  # scalar s_y
    # sum_i log w_i of prior weights (rows scaled by sqrt(w_i)); None: unweighted
    log_weights: object = None


def intercept_column(X: np.ndarray, weights: np.ndarray | None = None) -> int:
    """Index of the first column that is 1 in every row with positive weight, else -1."""
    X = np.asarray(X)
    rows = slice(None) if weights is None else np.asarray(weights) > 0
    for j in range(X.shape[1]):
        if X.shape[0] and np.all(X[rows, j] == 1.0):
            return j
    return -1


def _mean_and_rms(v, w, n, centre: bool, xp):
    """Weighted mean (0 unless ``centre``) and root mean square about it (1 where it is
    zero or not finite: a constant column stays as it is)."""
    a = xp.sum(w[:, None] * v, axis=0) / n if centre else xp.zeros(v.shape[1], v.dtype)
    ms = xp.sum(w[:, None] * (v - a) ** 2, axis=0) / n
    ok = (ms > 0) & xp.isfinite(ms)
    return a, xp.sqrt(xp.where(ok, ms, 1.0))


def standardize(X, y, weights, intercept: int, xp=np):
    """``(X_s, y_s, Standardization)`` for data ``X`` (n, p), ``y`` (n,), row weights."""
    w = xp.ones(y.shape[0], y.dtype) if weights is None else weights
    n = xp.sum(w)
    n = xp.where(n > 0, n, 1.0)
    centre = intercept >= 0
    a, s = _mean_and_rms(X, w, n, centre, xp)
    if centre:
        is_c = xp.arange(X.shape[1]) == intercept
        a, s = xp.where(is_c, 0.0, a), xp.where(is_c, 1.0, s)
    ay, sy = _mean_and_rms(y[:, None], w, n, centre, xp)
    ay, sy = ay[0], sy[0]
    return (X - a) / s, (y - ay) / sy, Standardization(a, s, ay, sy)


def back_transform_beta(beta_s, std: Standardization, intercept: int):
    """``beta = s_y G beta_s + a_y e_c`` (module docstring), along the last axis; numpy
    in, numpy out (no per-operation compiles outside compiled code), JAX otherwise."""
    xp = np if isinstance(beta_s, np.ndarray) else jnp
    v = beta_s / xp.asarray(std.x_scale)
    beta = std.y_scale * v
    if intercept >= 0:
        shift = std.y_shift - std.y_scale * xp.sum(
            xp.asarray(std.x_shift) * v, axis=-1, keepdims=True
        )
        beta = beta + (xp.arange(v.shape[-1]) == intercept) * shift
    return beta


def to_standardized_beta(beta, std: Standardization, intercept: int):
    """Inverse of :func:`back_transform_beta`: ``beta_s = G^-1 (beta - a_y e_c) / s_y``
    with ``G^-1 = diag(s) + e_c a'``, along the last axis (numpy in, numpy out)."""
    xp = np if isinstance(beta, np.ndarray) else jnp
    v = beta / std.y_scale
    out = xp.asarray(std.x_scale) * v
    if intercept >= 0:
        shift = xp.sum(xp.asarray(std.x_shift) * v, axis=-1, keepdims=True)
        shift = shift - std.y_shift / std.y_scale
        out = out + (xp.arange(v.shape[-1]) == intercept) * shift
    return out


def back_transform_cov(cov_s, std: Standardization, intercept: int):
    """``s_y^2 G cov_s G'`` (rows and columns of ``vcov(beta_s)`` mapped like ``beta``);
    numpy in, numpy out (no per-operation compiles outside compiled code), JAX otherwise."""
    xp = np if isinstance(cov_s, np.ndarray) else jnp
    x_scale, x_shift = xp.asarray(std.x_scale), xp.asarray(std.x_shift)
    G = xp.diag(1.0 / x_scale)
    if intercept >= 0:  # row c of G: e_c' / s_c - x_shift' / x_scale
        G = G - (xp.arange(G.shape[0]) == intercept)[:, None] * (x_shift / x_scale)[None, :]
    return std.y_scale**2 * (G @ cov_s @ G.T)


def deviance_offset(std: Standardization, n, p: int, reml: bool):
    """``d - d_s``: ``nu log s_y^2``, plus ``2 sum_j log s_j`` for REML (module
    docstring), with ``nu = n - p`` (REML) or ``n`` (ML)."""
    nu = n - p if reml else n
    out = 2.0 * nu * jnp.log(std.y_scale)
    if reml:
        out = out + 2.0 * jnp.sum(jnp.log(std.x_scale))
    return out - weights_log_det(std)


def weights_log_det(std: Standardization):
    """``sum_i log w_i`` of the prior weights (0 without): rows enter scaled by
    ``sqrt(w_i)``, so ``-2 log L`` of the data as given is that of the scaled rows minus
    ``sum_i log w_i`` (lme4's ``ldW``; residual variances ``sigma^2 / w_i``)."""
    return 0.0 if std.log_weights is None else std.log_weights
