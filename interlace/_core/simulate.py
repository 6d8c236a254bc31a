"""Responses simulated from a linear mixed model (lme4's ``simulate(fit)``, ``use.u = FALSE``).

``y* = X beta + sum_r Z_r b*_r + e*`` with ``b*_r,l = sigma T_r z``, ``z ~ N(0, I_k)``
per level and ``e*_i ~ N(0, sigma^2 / w_i)`` (prior weights ``w``, 1 without): new
random effects and residuals for every replicate. Pure JAX, one compiled function per model shape.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .._base.jit import jit
from .theta import lower_factor

__all__ = ["simulate_responses"]


@partial(jit, static_argnames=("n", "ks", "nlevels"))
def simulate_responses(
    key,
    X,
    beta,
    sigma,
    theta,
    codes,
    term_X,
    noise_scale=None,
    *,
    n: int,
    ks: tuple,
    nlevels: tuple,
) -> jnp.ndarray:
    """``(n, nobs)`` simulated responses (module doc). ``theta`` in the user's term order;
    ``codes``, ``term_X``, ``ks``, ``nlevels``: per term, in the same order.
    ``noise_scale``: per row, the residual sd relative to ``sigma`` (``1 / sqrt(w_i)``
    for prior weights ``w``; None: 1)."""
    keys = jax.random.split(key, len(ks) + 1)
    out = jnp.broadcast_to(X @ beta, (n, X.shape[0]))
    start = 0
    for k, q, c, Xr, k_ in zip(ks, nlevels, codes, term_X, keys[:-1]):
        size = k * (k + 1) // 2
        T = lower_factor(theta[start : start + size], k)
        start += size
        b = sigma * jax.random.normal(k_, (n, q, k)) @ T.T  # (n, levels, k)
        out = out + jnp.sum(b[:, c, :] * Xr[None], axis=2)
    noise = sigma * jax.random.normal(keys[-1], out.shape)
    return out + (noise if noise_scale is None else noise * noise_scale)
