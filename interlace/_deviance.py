"""The profiled deviance of a crossed random-intercept model, as a pure JAX function.

Notation of Bates, Maechler, Bolker & Walker (2015), JSS 67(1), eqs. (18)-(34): with
``Lambda(theta)`` diagonal (one relative standard deviation ``theta_j`` per factor), the
penalised system ``[Lambda'Z'Z Lambda + I, Lambda'Z'X, Lambda'Z'y; ...; y'y]`` has the
Cholesky factor ``[L_Z; R_ZX' L_X; r_Zy' r_Xy' r_yy]`` and

    ML:   d(theta) = log|L_Z|^2 + n (1 + log(2 pi r_yy^2 / n))
    REML: d(theta) = log|L_Z|^2 + log|L_X|^2 + (n-p) (1 + log(2 pi r_yy^2 / (n-p)))

Blocked elimination: the largest factor's block ``D = theta_1^2 diag(counts1) + I`` is
diagonal, so eliminating it leaves the dense tail Schur complement

    S = Lambda_t (R'R - C' diag(w) C) Lambda_t + I_z,   w = theta_1^2 / (theta_1^2 counts1 + 1),

with ``R = [Z_tail X y]`` and ``C = Z1'R``; ``log|L_Z|^2 = sum log D + log|S_zz|`` and the
remaining terms come from the diagonal of ``chol(S)``. One dense Cholesky per evaluation.

The gradient uses a custom VJP of ``log diag(chol(S))`` (:func:`cholesky_logdiag`): for
cotangent ``g``, ``d/dS sum_i g_i log L_ii = 1/2 L^-T diag(g) L^-1`` (from
``d log|S_k| = tr(S_k^-1 dS_k)`` on the nested leading blocks ``S_k``), which costs one
triangular inverse and one product instead of differentiating through the factorisation.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import solve_triangular

from ._crossprod import CrossProducts

__all__ = ["cholesky_logdiag", "tail_schur", "profiled_deviance", "estimates"]

_LOG_2PI = 1.8378770664093453


@jax.custom_vjp
def cholesky_logdiag(S: jnp.ndarray) -> jnp.ndarray:
    """``log(diag(chol(S)))`` for a symmetric positive definite ``S`` given by its lower
    triangle (the strict upper triangle is ignored)."""
    return jnp.log(jnp.diagonal(lax.linalg.cholesky(S, symmetrize_input=False)))


def _cholesky_logdiag_fwd(S):
    L = lax.linalg.cholesky(S, symmetrize_input=False)
    return jnp.log(jnp.diagonal(L)), L


def _cholesky_logdiag_bwd(L, g):
    Linv = solve_triangular(L, jnp.eye(L.shape[0], dtype=L.dtype), lower=True)
    G = Linv.T @ (g[:, None] * Linv)  # = 2 d/dS of sum_i g_i log L_ii, S symmetric
    # S enters through its lower triangle: off-diagonal S_ab stands for S_ab and S_ba.
    return (jnp.tril(G) - 0.5 * jnp.diag(jnp.diagonal(G)),)


cholesky_logdiag.defvjp(_cholesky_logdiag_fwd, _cholesky_logdiag_bwd)


def _tail_scale(theta: jnp.ndarray, cp: CrossProducts) -> jnp.ndarray:
    """Diagonal of ``Lambda_t``: theta of the column's factor, 1 for X and y columns."""
    return jnp.where(cp.tail_factor > 0, theta[cp.tail_factor], 1.0)


def tail_schur(theta: jnp.ndarray, cp: CrossProducts) -> jnp.ndarray:
    """Lower triangle of the tail Schur complement ``S`` (module docstring), ``(t, t)``.

    ``theta`` is in the internal factor order ``cp.order`` (largest factor first).
    """
    t = cp.t
    th1 = theta[0]
    w = th1**2 / (th1**2 * cp.counts1 + 1.0)
    update = jax.ops.segment_sum(
        w[cp.upd_level] * cp.upd_prod, cp.upd_flat, num_segments=t * t, indices_are_sorted=True
    ).reshape(t, t)
    lam = _tail_scale(theta, cp)
    S = (cp.tail - update) * lam[:, None] * lam[None, :]
    return S + jnp.diag((cp.tail_factor > 0).astype(S.dtype))


def profiled_deviance(theta: jnp.ndarray, cp: CrossProducts, *, reml: bool) -> jnp.ndarray:
    """Profiled deviance ``d(theta)`` (REML criterion when ``reml``), module docstring.

    Equals ``-2 log L`` at the profiled fixed effects and residual variance, i.e. lme4's
    ``deviance(fit)`` (ML) or ``REMLcrit(fit)`` (REML). Pure: ``jit``/``grad``/``vmap`` it.
    """
    qt, p, n = cp.q_tail, cp.p, cp.n
    log_d1 = jnp.sum(jnp.log1p(theta[0] ** 2 * cp.counts1))
    logdiag = cholesky_logdiag(tail_schur(theta, cp))
    nu = n - p if reml else n
    k = qt + p if reml else qt
    logdet = log_d1 + 2.0 * jnp.sum(logdiag[:k])
    log_ryy2 = 2.0 * logdiag[-1]
    return logdet + nu * (1.0 + _LOG_2PI + log_ryy2 - jnp.log(nu))


@partial(jax.jit, static_argnames=("reml",))
def estimates(theta: jnp.ndarray, cp: CrossProducts, *, reml: bool) -> dict:
    """Fixed effects, BLUPs, residual variance and ``vcov(beta)`` at ``theta``.

    Returns a dict with ``beta`` (p,), ``b1`` (BLUPs of the largest factor), ``b_tail``
    (BLUPs of the other factors, concatenated in internal order), ``sigma2``
    (``r_yy^2 / nu``), ``fe_cov`` (``sigma2 (L_X L_X')^-1``, lme4's ``vcov``) and
    ``deviance``. Back-substitution through the blocked factor (JSS eqs. 31-33).
    """
    qt, p, n, t = cp.q_tail, cp.p, cp.n, cp.t
    S = tail_schur(theta, cp)
    L = lax.linalg.cholesky(S, symmetrize_input=False)
    # Tail unknowns x = [u_tail; beta] solve S[:-1,:-1] x = S[:-1,-1]: x = L11^-T l21.
    x = solve_triangular(L[:-1, :-1].T, L[-1, :-1], lower=False)
    lam = _tail_scale(theta, cp)
    th1 = theta[0]
    d1 = th1**2 * cp.counts1 + 1.0
    # u1 = D^-1 Lambda_1 Z1' (y - [Z_tail Lambda_t, X] x): C holds Z1'[Z_tail X y].
    coef = jnp.concatenate([lam[:-1] * x, jnp.array([-1.0], dtype=x.dtype)])
    cx = jax.ops.segment_sum(cp.c_val * coef[cp.c_col], cp.c_level, num_segments=cp.q1)
    u1 = -th1 * cx / d1
    nu = n - p if reml else n
    sigma2 = L[-1, -1] ** 2 / nu
    LX = L[qt:qt + p, qt:qt + p]
    LXinv = solve_triangular(LX, jnp.eye(p, dtype=LX.dtype), lower=True)
    fe_cov = sigma2 * (LXinv.T @ LXinv)
    return {
        "beta": x[qt:],
        "b1": th1 * u1,
        "b_tail": lam[:qt] * x[:qt],
        "sigma2": sigma2,
        "fe_cov": fe_cov,
        "deviance": profiled_deviance(theta, cp, reml=reml),
    }
