"""The derivative of lme4's ``ldL2 = log|Lambda'Z'WZ Lambda + I|`` in the row weights.

A GLMM's Laplace deviance carries ``ldL2`` at the working weights ``w(eta)`` of the
conditional modes (:mod:`~interlace._core.pirls`). Its derivative in row ``i``'s weight
is a leverage of the random effects (``d log|M| = tr(M^-1 dM)``):

    d ldL2 / d w_i = v_i' M^-1 v_i,   M = Lambda'Z'WZ Lambda + I,   v_i = Lambda' z_i,

so only the entries of ``M^-1`` on the pattern of ``Z'Z`` are needed (a selected inverse;
Takahashi, Fagan & Chin 1973). With term 1 eliminated as in :mod:`~interlace._core.deviance`
(``D_l = T1' A1_l T1 + I``, ``B_l = T1' C_lz Lambda_z`` its rows of ``M`` against the
tail's random-effect columns, ``P = S_zz^-1`` the inverse of the tail Schur complement's
random-effect block):

    (M^-1)_tail = P,   (M^-1)_{l,tail} = -D_l^-1 B_l P,
    (M^-1)_{ll} = D_l^-1 + D_l^-1 B_l P B_l' D_l^-1.

The derivative in the raw cross-products is ``G = Lambda M^-1 Lambda'``. With the Schur
weights ``W_l = T1 D_l^-1 T1'``, ``rho_l = W_l C_lz Lambda_z`` (``k1 x q_z``) and
``Y_l = rho_l P``, its blocks are

    G_ll = W_l + Y_l rho_l',   G_{l,j} = -Y_l[:, j] lambda_j,   G_tail = Lambda_z P Lambda_z.

``Y_l`` is needed only where ``C`` is stored: for a light level from the pairs of its
stored entries (the Schur update's own pairs, ``ModelArrays.upd_k``/``upd_k2``), for a
heavy level as its dense row times ``P``. Row ``i`` reads ``G`` at its level ``l`` of
term 1 and its tail columns ``a``:
``d_i = x1_i' G_ll x1_i + 2 sum_a z_ia x1_i' G_{l,a} + sum_ab z_ia z_ib G_ab``.

Scope (:func:`supported`): scalar tail terms (diagonal ``Lambda_t``; term 1 may have
random slopes, and a model of term 1 alone has ``G_ll = W_l``), and each level once (no
resampled-levels multiplicities). Other models differentiate a second factorisation
instead (:func:`~interlace._core.pirls.laplace`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import linalg
from .arrays import ModelArrays
from .crossprod import CrossProducts
from .deviance import first_block, lambda_values

__all__ = ["supported", "log_det_weight_derivative"]


def supported(cp: CrossProducts) -> bool:
    """Whether :func:`log_det_weight_derivative` covers the model (module docstring)."""
    return cp.tail_diagonal and cp.level_mult is None and cp.tail_mult is None


def log_det_weight_derivative(
    theta: jnp.ndarray, ma: ModelArrays, cp: CrossProducts, L: jnp.ndarray
) -> jnp.ndarray:
    """``d ldL2 / d w_i`` per row, ``(n,)`` (module docstring), for the weighted
    cross-products ``cp`` of ``ma``'s rows and the Cholesky factor ``L`` of their tail
    Schur complement (its leading ``q_tail`` block is ``chol(S_zz)``). Not differentiable
    (its inputs are held constant): it is a coefficient of the Laplace gradient."""
    theta, cp, L = jax.lax.stop_gradient((theta, cp, L))
    qt, t, k1 = cp.q_tail, cp.t, cp.k1
    _, _, W = first_block(theta, cp)  # (q1, k1, k1) W_l = T1 D_l^-1 T1'
    x1 = ma.first_columns  # (n, k1)
    if qt == 0:  # term 1 alone: G_ll = W_l
        return _prior_weighted(jnp.einsum("ij,ijk,ik->i", x1, W[ma.codes1], x1), ma)
    lam = lambda_values(theta, cp.tail_theta)  # (t,) diagonal of Lambda_t, 1 on X and y
    vec = cp.c_val.reshape(-1, k1)  # stored entries of C: (level, tail column) pairs
    col = cp.c_col.reshape(-1, k1)[:, 0]
    level = cp.c_row.reshape(-1, k1)[:, 0] // k1
    is_z = col < qt
    zcol = jnp.minimum(col, qt - 1)
    # rho = T1 r_l per stored entry: W_l C_l[:, j] lambda_j (0 on the X and y columns)
    rho = jnp.einsum("ejk,ek->ej", W[level], vec) * jnp.where(is_z, lam[col], 0.0)[:, None]
    Linv = linalg.tril_inverse(L[:qt, :qt])
    P = Linv.T @ Linv  # S_zz^-1
    # Y = T1 Y_l on C's stored pattern. Light levels: each stored pair (a >= b) of a level
    # adds rho_b P_ab to Y at a and, off the diagonal, rho_a P_ab to Y at b; P_ab is read
    # at the pair's own position in the t x t tail (cp.upd_flat; zero outside the
    # random-effect block, where rho is zero too).
    ka, kb = ma.upd_k, ma.upd_k2
    p_ab = jnp.pad(P, ((0, t - qt), (0, t - qt))).reshape(-1)[cp.upd_flat][:, None]
    m = vec.shape[0]
    Y = jax.ops.segment_sum(rho[kb] * p_ab, ka, num_segments=m)
    Y = Y + jax.ops.segment_sum(
        jnp.where((ka != kb)[:, None], rho[ka] * p_ab, 0.0), kb, num_segments=m
    )
    h = cp.heavy_levels.shape[0]
    if h:  # heavy levels: dense rows (h, q_tail, k1) times P
        entry, slot = cp.heavy_entry, cp.heavy_slot
        R = jnp.zeros((h, qt, k1), rho.dtype).at[slot, zcol[entry]].add(rho[entry])
        Y = Y.at[entry].set(jnp.einsum("hmk,mj->hjk", R, P)[slot, zcol[entry]])
    Y = jnp.where(is_z[:, None], Y, 0.0)
    # Lambda M^-1 Lambda' on the pattern of the raw cross-products: term 1's blocks
    # W_l + sum_j Y_lj rho_lj', C's entries -Y_lj lambda_j, and the tail's Lambda_t P Lambda_t
    g1 = W + jax.ops.segment_sum(Y[:, :, None] * rho[:, None, :], level, num_segments=cp.q1)
    gc = -Y * lam[col][:, None]
    lam_z = lam[:qt]
    # row i: its level of term 1, its tail columns (the first kz of row_cols) and values
    Z = jnp.concatenate(ma.tail_columns, axis=1)  # (n, kz)
    kz = Z.shape[1]
    zc = ma.row_cols[:, :kz]
    out = jnp.einsum("ij,ijk,ik->i", x1, g1[ma.codes1], x1)
    out = out + 2.0 * jnp.einsum("ia,iak,ik->i", Z, gc[ma.pos[:, :kz]], x1)
    for a in range(kz):
        for b in range(kz):
            pab = P[zc[:, a], zc[:, b]] * lam_z[zc[:, a]] * lam_z[zc[:, b]]
            out = out + Z[:, a] * Z[:, b] * pab
    return _prior_weighted(out, ma)


def _prior_weighted(d: jnp.ndarray, ma: ModelArrays) -> jnp.ndarray:
    """``d`` per unit of ``ma.weights``, which enter the cross-products times the prior
    weights (if any)."""
    return d if ma.prior_weights is None else d * ma.prior_weights
