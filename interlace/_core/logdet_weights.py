"""The derivative of lme4's ``ldL2 = log|Lambda'Z'WZ Lambda + I|`` in the row weights.

A GLMM's Laplace deviance carries ``ldL2`` at the working weights ``w(eta)`` of the
conditional modes (:mod:`~interlace._core.pirls`). Its derivative in row ``i``'s weight
is a leverage of the random effects (``d log|M| = tr(M^-1 dM)``):

    d ldL2 / d w_i = v_i' M^-1 v_i,   M = Lambda'Z'WZ Lambda + I,   v_i = Lambda' z_i,

so only the entries of ``M^-1`` on the pattern of ``Z'Z`` are needed (a selected inverse;
Takahashi, Fagan & Chin 1973). With term 1 eliminated as in :mod:`~interlace._core.deviance`
(``D_l = theta_1^2 A1_l + 1`` for an intercept-like term 1, ``B = Lambda_1' C_z
Lambda_t`` its rows of ``M`` against the tail's random-effect columns, and
``P = S_zz^-1`` the inverse of the tail Schur complement's random-effect block):

    (M^-1)_tail = P,   (M^-1)_{l,.} = -Y_l,   (M^-1)_{ll} = 1 / D_l + r_l Y_l',
    r_l = B_l / D_l,   Y_l = r_l P.

``Y_l`` is needed only where ``C`` is stored: for a light level from the pairs of its
stored entries (the Schur update's own pairs, ``ModelArrays.upd_k``/``upd_k2``), for a
heavy level as its dense row times ``P``. The derivative in the raw cross-products is
``Lambda M^-1 Lambda'``, and row ``i`` reads it at its level of term 1 and its tail
columns: ``d_i = x1_i^2 G1_l + 2 x1_i sum_a z_ia Gc_{l a} + sum_ab z_ia z_ib Gt_ab``.

Scope (:func:`supported`): a scalar term 1 (``k1 = 1``), scalar tail terms (diagonal
``Lambda_t``) and each level once (no resampled-levels multiplicities). Other models
differentiate a second factorisation instead (:func:`~interlace._core.pirls.laplace`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import linalg
from .arrays import ModelArrays
from .crossprod import CrossProducts
from .deviance import lambda_values

__all__ = ["supported", "log_det_weight_derivative"]


def supported(cp: CrossProducts) -> bool:
    """Whether :func:`log_det_weight_derivative` covers the model (module docstring)."""
    return (
        cp.k1 == 1
        and cp.q_tail > 0
        and cp.tail_diagonal
        and cp.level_mult is None
        and cp.tail_mult is None
    )


def log_det_weight_derivative(
    theta: jnp.ndarray, ma: ModelArrays, cp: CrossProducts, L: jnp.ndarray
) -> jnp.ndarray:
    """``d ldL2 / d w_i`` per row, ``(n,)`` (module docstring), for the weighted
    cross-products ``cp`` of ``ma``'s rows and the Cholesky factor ``L`` of their tail
    Schur complement (its leading ``q_tail`` block is ``chol(S_zz)``). Not differentiable
    (its inputs are held constant): it is a coefficient of the Laplace gradient."""
    theta, cp, L = jax.lax.stop_gradient((theta, cp, L))
    qt = cp.q_tail
    th = theta[0]
    d = th**2 * cp.A1[:, 0, 0] + 1.0  # D_l
    lam = lambda_values(theta, cp.tail_theta)  # (t,) diagonal of Lambda_t, 1 on X and y
    col, level = cp.c_col, cp.c_row  # of each stored entry of C (k1 = 1: row = level)
    is_z = col < qt
    zcol = jnp.minimum(col, qt - 1)
    r = jnp.where(is_z, th * lam[col] * cp.c_val / d[level], 0.0)  # r_l per stored entry
    Linv = linalg.tril_inverse(L[:qt, :qt])
    P = Linv.T @ Linv  # S_zz^-1
    # Y_l on C's stored pattern. Light levels: each stored pair (a >= b) of a level adds
    # r_b P_ab to Y at a and, off the diagonal, r_a P_ab to Y at b; P_ab is read at the
    # pair's own position in the t x t tail (cp.upd_flat; P is symmetric, zero outside
    # the random-effect block, where r is zero too).
    ka, kb = ma.upd_k, ma.upd_k2
    t = cp.t
    p_ab = jnp.pad(P, ((0, t - qt), (0, t - qt))).reshape(-1)[cp.upd_flat]
    Y = jax.ops.segment_sum(r[kb] * p_ab, ka, num_segments=r.shape[0])
    Y = Y + jax.ops.segment_sum(jnp.where(ka != kb, r[ka] * p_ab, 0.0), kb, num_segments=r.shape[0])
    h = cp.heavy_levels.shape[0]
    if h:  # heavy levels: dense rows r_l (h, q_tail) times P
        entry, slot = cp.heavy_entry, cp.heavy_slot
        R = jnp.zeros((h, qt), r.dtype).at[slot, zcol[entry]].add(r[entry])
        Y = Y.at[entry].set((R @ P)[slot, zcol[entry]])
    Y = jnp.where(is_z, Y, 0.0)
    Q = jax.ops.segment_sum(r * Y, level, num_segments=cp.q1)  # r_l Y_l'
    g1 = th**2 * (1.0 / d + Q)  # (Lambda M^-1 Lambda')_ll
    gc = -th * lam[col] * Y  # (Lambda M^-1 Lambda')_{l, j} at C's stored entries
    lam_z = lam[:qt]
    # row i: its level of term 1, its tail columns (the first kz of row_cols) and values
    x1 = ma.first_columns[:, 0]
    Z = jnp.concatenate(ma.tail_columns, axis=1)  # (n, kz)
    kz = Z.shape[1]
    zc = ma.row_cols[:, :kz]
    out = x1**2 * g1[ma.codes1]
    out = out + 2.0 * x1 * jnp.sum(Z * gc[ma.pos[:, :kz]], axis=1)
    for a in range(kz):
        for b in range(kz):
            pab = P[zc[:, a], zc[:, b]] * lam_z[zc[:, a]] * lam_z[zc[:, b]]
            out = out + Z[:, a] * Z[:, b] * pab
    if ma.prior_weights is not None:  # the weights enter as ma.weights * prior_weights
        out = out * ma.prior_weights
    return out
