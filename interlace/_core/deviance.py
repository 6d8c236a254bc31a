"""The profiled deviance of a crossed random-effects model, as a pure JAX function.

Notation of Bates, Maechler, Bolker & Walker (2015), JSS 67(1), eqs. (18)-(34): with
``Lambda(theta)`` block diagonal (``I_{q_r} (x) T_r`` per term, ``T_r`` lower
triangular; ``T_r = theta_r`` for an intercept), the penalised system
``[Lambda'Z'Z Lambda + I, Lambda'Z'X, Lambda'Z'y; ...; y'y]`` has the
Cholesky factor ``[L_Z; R_ZX' L_X; r_Zy' r_Xy' r_yy]`` and

    ML:   d(theta) = log|L_Z|^2 + n (1 + log(2 pi r_yy^2 / n))
    REML: d(theta) = log|L_Z|^2 + log|L_X|^2 + (n-p) (1 + log(2 pi r_yy^2 / (n-p)))

Blocked elimination: the first term's block has one ``k1 x k1`` block per level,
``D_l = T1' A1_l T1 + I``, so eliminating it leaves the dense tail Schur complement

    S = Lambda_t' (R'R - sum_l C_l' W_l C_l) Lambda_t + I_z,   W_l = T1 D_l^-1 T1',

with ``R = [Z_tail X y]`` and ``C = Z1'R``; ``log|L_Z|^2 = sum_l log|D_l| + log|S_zz|``
and the other terms come from the diagonal of ``chol(S)``. One dense Cholesky per
evaluation; for an intercept ``W_l = theta_1^2 / (theta_1^2 n_l + 1)``.

Duplicated levels (resampled-levels bootstraps). A bootstrap that draws the levels of a
factor with replacement makes each drawn copy a new level. With ``m_l`` copies of level
``l`` and rows weighted by the product of their levels' copy counts, the model of the
resampled data is evaluated in the original dimensions (matrix determinant lemma and the
push-through identity ``E'(A - E U E')^-1 E = (diag(a/m) - U)^-1`` for a duplication
matrix ``E`` with ``E'E = diag(m)``):

* term 1 (``cp.level_mult``): per-copy blocks ``D_l`` from ``A1_l / m_l``,
  ``log|L_Z|^2`` gets ``sum_l m_l log|D_l|`` and the Schur weights become ``W_l / m_l``;
* a tail intercept factor (``cp.tail_mult``): its columns of ``S`` are scaled by
  ``1 / m_j`` and its identity becomes ``1 / m_j``; ``log|L_Z|^2`` gets
  ``sum_j (m_j - 1) log a_j + log m_j`` with ``a_j = lambda_j^2 (Z'Z)_jj / m_j + 1``
  (levels with ``m_j = 0`` drop out).

Storage: ``S`` is kept as its upper triangle in row-major order, which is the lower
triangle in LAPACK's column-major order, so the Cholesky reads it in place
(``_core.crossprod.flat_index``).

The gradient uses a custom VJP of ``log diag(chol(S))`` (:func:`cholesky_logdiag`): for
cotangent ``g``, ``d/dS sum_i g_i log L_ii = 1/2 L^-T diag(g) L^-1`` (from
``d log|S_k| = tr(S_k^-1 dS_k)`` on the nested leading blocks ``S_k``), which costs one
triangular inverse and one product instead of differentiating through the factorisation.
The deviance needs two sums of those logs, ``a = sum_{i<k} log L_ii`` and
``b = log L_tt`` (:func:`cholesky_logdet_parts`): ``g = (g_a, ..., g_a, 0, ..., 0, g_b)``.
Only the upper triangle of the symmetric product is formed, by column blocks that skip
the zero triangle of ``L^-1`` (:func:`_weighted_gram`: with ``nb`` blocks
``(nb + 1)(nb + 2) / (6 nb^2)`` of the full product's ``t^3`` multiply-adds, 0.31 for
4 blocks); the inverse is one solve against the identity, or recursive halving (a third
of the work) for ``t > 2048`` (:func:`tril_inverse`). ``cho_solve(L, I)`` for ``S^-1``
would cost two full solves.

Every dense factorisation and triangular solve goes through :mod:`interlace._core.linalg`:
LAPACK for one matrix, plain JAX operations for a batch (``vmap``-ed refits, the
per-level blocks of a wide first term), so that no batched LAPACK kernel can wedge
XLA's CPU thread pool.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._base.jit import jit
from . import linalg, standardize
from .crossprod import CrossProducts
from .theta import lower_factor

__all__ = [
    "cholesky_logdiag",
    "cholesky_logdet_parts",
    "tail_cholesky",
    "tail_schur",
    "profiled_deviance",
    "standardized_deviance",
    "deviance_offset",
    "Estimates",
    "estimates",
    "blups_by_term",
    "log_likelihood",
    "deviance_varpar",
    "vcov_beta",
    "SMALL",
    "first_block",
    "lambda_values",
    "factor_logdiag",
    "residual_df",
    "deviance_from_logdiag",
    "estimates_from_factor",
    "first_term_modes",
    "lambda_tail",
    "log_det_z",
]

_LOG_2PI = 1.8378770664093453


# Matrices up to this size are factorised by unrolled elementwise code: under ``vmap``
# (thousands of small refits) that vectorises, where LAPACK would loop per matrix.
# (Larger sizes make compile times explode: the unrolled graph grows as n^3.)
SMALL = 8


def unrolled_cholesky(A: jnp.ndarray) -> jnp.ndarray:
    """Cholesky factor of symmetric ``A`` (``[..., n, n]``, small ``n``), written out
    element by element (Cholesky-Banachiewicz); plain autodiff applies."""
    n = A.shape[-1]
    L = [[None] * n for _ in range(n)]
    for j in range(n):
        L[j][j] = jnp.sqrt(A[..., j, j] - sum(L[j][k] ** 2 for k in range(j)))
        for i in range(j + 1, n):
            L[i][j] = (A[..., i, j] - sum(L[i][k] * L[j][k] for k in range(j))) / L[j][j]
    zero = jnp.zeros_like(A[..., 0, 0])
    return jnp.stack(
        [jnp.stack([L[i][j] if j <= i else zero for j in range(n)], -1) for i in range(n)], -2
    )


def unrolled_tril_inverse(L: jnp.ndarray) -> jnp.ndarray:
    """Inverse of a small lower-triangular ``L`` (``[..., n, n]``) by forward substitution."""
    n = L.shape[-1]
    X = [[None] * n for _ in range(n)]
    zero = jnp.zeros_like(L[..., 0, 0])
    for j in range(n):
        X[j][j] = 1.0 / L[..., j, j]
        for i in range(j + 1, n):
            X[i][j] = -sum(L[..., i, k] * X[k][j] for k in range(j, i)) / L[..., i, i]
    return jnp.stack(
        [jnp.stack([X[i][j] if j <= i else zero for j in range(n)], -1) for i in range(n)], -2
    )


def tail_cholesky(S: jnp.ndarray, *, unrolled: bool = True) -> jnp.ndarray:
    """Lower Cholesky factor ``L`` (``S = L L'``) of a symmetric positive definite ``S``
    given by its stored upper triangle (``_core.crossprod.flat_index``; the strict lower
    triangle is ignored). Differentiable as a function of the symmetric matrix.
    ``unrolled=False``: :func:`~interlace._core.linalg.cholesky` at every size (LAPACK,
    or its plain-JAX loop under ``vmap``), for graphs that hold several factorisations
    and their derivatives, where the unrolled code's compile time outweighs its speed."""
    if unrolled and S.shape[-1] <= SMALL:
        return unrolled_cholesky(_symmetric(S))
    # The upper triangle in row-major order is the lower triangle of the transpose in
    # column-major order, LAPACK's: XLA passes the buffer as it is, no transposing copy.
    return linalg.cholesky(jnp.swapaxes(S, -1, -2))


def _symmetric(S: jnp.ndarray) -> jnp.ndarray:
    """The full symmetric matrix of a stored upper triangle."""
    return jnp.triu(S) + jnp.swapaxes(jnp.triu(S, 1), -1, -2)


def _stored_cotangent(G: jnp.ndarray) -> jnp.ndarray:
    """Cotangent of the stored upper triangle from the upper triangle of ``G = 2 d/dS``
    (``S``, ``G`` symmetric): an off-diagonal stored entry stands for ``S_ab`` and
    ``S_ba``."""
    return jnp.triu(G) - 0.5 * jnp.diag(jnp.diagonal(G))


# Column blocks of the weighted Gram product: more blocks skip more of the zero
# triangle (module docstring) but make smaller, less efficient products and more to
# compile. Measured on InstEval (t = 1,145): 3-6 blocks run alike (~53 ms per
# value + gradient), one block (the full product) takes ~90 ms.
_GRAM_BLOCKS = 4


# L^-1 by one triangular solve against the identity up to this size; above it by
# recursive halving down to blocks of _INVERSE_LEAF (a third of the work, but more to
# compile). Measured: InstEval (t = 1,145) runs no faster with halving and
# compiles three times longer; at t = 4,003 halving takes 0.43 s instead of 0.69 s.
_INVERSE_DIRECT = 2048
_INVERSE_LEAF = 512


def tril_inverse(L: jnp.ndarray) -> jnp.ndarray:
    """``L^-1`` of a lower-triangular ``L`` (see ``_INVERSE_DIRECT``)."""
    if L.shape[0] <= _INVERSE_DIRECT:
        return linalg.tril_inverse(L)
    return _halving_inverse(L)


def _halving_inverse(L: jnp.ndarray) -> jnp.ndarray:
    """``[[A, 0], [B, C]]^-1 = [[A^-1, 0], [-C^-1 B A^-1, C^-1]]``, recursively: two
    triangular solves with full right-hand sides per level."""
    n = L.shape[0]
    if n <= _INVERSE_LEAF:
        return linalg.tril_inverse(L)
    h = n // 2
    A, B, C = L[:h, :h], L[h:, :h], L[h:, h:]
    BA = linalg.tril_solve(A, B.T, transpose=True).T  # B A^-1 = (A^-T B')'
    off = -linalg.tril_solve(C, BA)
    top = jnp.concatenate([_halving_inverse(A), jnp.zeros((h, n - h), L.dtype)], axis=1)
    return jnp.concatenate([top, jnp.concatenate([off, _halving_inverse(C)], axis=1)], axis=0)


def _block_edges(t: int) -> list[int]:
    """Edges of the column blocks of a ``t``-column product (``_GRAM_BLOCKS``, none under
    64 columns each)."""
    nb = max(1, min(_GRAM_BLOCKS, t // 64))
    return [round(j * t / nb) for j in range(nb + 1)]


def _weighted_gram(Linv: jnp.ndarray, g: jnp.ndarray) -> jnp.ndarray:
    """Upper triangle (plus the lower halves of the diagonal blocks) of
    ``Linv' diag(g) Linv`` for lower-triangular ``Linv``: block ``(I, J)``, ``I <= J``,
    sums over rows ``>= J``'s first row only (the rows above are zero in block ``J``):
    0.31 of the full product's work with 4 blocks (module docstring)."""
    edge = _block_edges(Linv.shape[0])
    nb = len(edge) - 1
    Y = Linv.T * g[None, :]  # Y[a, i] = g_i Linv[i, a]
    rows = []
    for I in range(nb):
        lo_i, hi_i = edge[I], edge[I + 1]
        blocks = [jnp.zeros((hi_i - lo_i, lo_i), Linv.dtype)] if lo_i else []
        for J in range(I, nb):
            lo_j, hi_j = edge[J], edge[J + 1]
            blocks.append(Y[lo_i:hi_i, lo_j:] @ Linv[lo_j:, lo_j:hi_j])
        rows.append(jnp.concatenate(blocks, axis=1))
    return jnp.concatenate(rows, axis=0)


def cholesky_logdiag(S: jnp.ndarray) -> jnp.ndarray:
    """``log(diag(chol(S)))`` for a symmetric positive definite ``S`` given by its stored
    upper triangle. Large ``S``: custom VJP (module docstring); small ``S``: unrolled
    code and plain autodiff."""
    if S.shape[-1] <= SMALL:
        return jnp.log(jnp.diagonal(tail_cholesky(S), axis1=-2, axis2=-1))
    return _cholesky_logdiag_large(S)


@jax.custom_vjp
def _cholesky_logdiag_large(S: jnp.ndarray) -> jnp.ndarray:
    return jnp.log(jnp.diagonal(tail_cholesky(S)))


def _cholesky_logdiag_fwd(S):
    L = tail_cholesky(S)
    return jnp.log(jnp.diagonal(L)), L


def _cholesky_logdiag_bwd(L, g):
    return (_stored_cotangent(_weighted_gram(tril_inverse(L), g)),)


_cholesky_logdiag_large.defvjp(_cholesky_logdiag_fwd, _cholesky_logdiag_bwd)


def cholesky_logdet_parts(S: jnp.ndarray, k: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(sum_{i<k} log L_ii, log L_{t,t})`` for ``L = chol(S)``, ``S`` given by its
    stored upper triangle (module docstring; custom VJP for large ``S``)."""
    if S.shape[-1] <= SMALL:
        logdiag = cholesky_logdiag(S)
        return jnp.sum(logdiag[:k]), logdiag[-1]
    return _logdet_parts_large(S, k)


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _logdet_parts_large(S: jnp.ndarray, k: int):
    logdiag = jnp.log(jnp.diagonal(tail_cholesky(S)))
    return jnp.sum(logdiag[:k]), logdiag[-1]


def _logdet_parts_fwd(S, k):
    L = tail_cholesky(S)
    logdiag = jnp.log(jnp.diagonal(L))
    return (jnp.sum(logdiag[:k]), logdiag[-1]), L


def _logdet_parts_bwd(k, L, cotangents):
    ga, gb = cotangents
    t = L.shape[0]
    g = jnp.zeros(t, L.dtype).at[:k].set(ga).at[t - 1].add(gb)
    return (_stored_cotangent(_weighted_gram(tril_inverse(L), g)),)


_logdet_parts_large.defvjp(_logdet_parts_fwd, _logdet_parts_bwd)


def first_block(theta: jnp.ndarray, cp: CrossProducts):
    """Term 1: ``T1``, ``log|D|`` with ``D_l = T1' A1_l T1 + I`` and the Schur weights
    ``W_l = T1 D_l^-1 T1'`` (``k1 x k1`` per level)."""
    k1 = cp.k1
    mult = cp.level_mult
    A1 = cp.A1 if mult is None else cp.A1 / _nonzero(mult)[:, None, None]
    if k1 == 1:
        th = theta[0]
        d = th**2 * A1[:, 0, 0] + 1.0
        W = (th**2 / d)[:, None, None]
        if mult is None:
            return th.reshape(1, 1), jnp.sum(jnp.log(d)), W
        return th.reshape(1, 1), jnp.sum(mult * jnp.log(d)), W / _nonzero(mult)[:, None, None]
    T1 = lower_factor(theta, k1, cp.first_blocks)  # block diagonal: a factor's terms
    D = jnp.einsum("ji,ljk,km->lim", T1, A1, T1) + jnp.eye(k1)
    if k1 <= SMALL:
        L1 = unrolled_cholesky(D)
        M = unrolled_tril_inverse(L1) @ T1.T  # L^-1 T1'
    else:  # one factorisation per level: never batched LAPACK (_linalg)
        L1 = linalg.cholesky(D)
        M = linalg.tril_solve(L1, jnp.broadcast_to(T1.T, D.shape))
    logd = 2.0 * jnp.sum(jnp.log(jnp.diagonal(L1, axis1=1, axis2=2)), axis=1)
    W = jnp.einsum("lji,ljk->lik", M, M)
    if mult is None:
        return T1, jnp.sum(logd), W
    return T1, jnp.sum(mult * logd), W / _nonzero(mult)[:, None, None]


def _nonzero(m: jnp.ndarray) -> jnp.ndarray:
    """``m`` with zeros replaced by ones (a level with no copies has no data either)."""
    return jnp.where(m > 0, m, 1.0)


def _duplication_logdet(theta: jnp.ndarray, cp: CrossProducts) -> jnp.ndarray:
    """The ``log|L_Z|^2`` correction for duplicated tail levels (module docstring)."""
    if cp.tail_mult is None:
        return jnp.zeros((), theta.dtype)
    m = cp.tail_mult
    lam = lambda_values(theta, cp.tail_theta)
    a = lam**2 * jnp.diagonal(cp.tail) / _nonzero(m) + 1.0
    return jnp.sum(jnp.where(m > 0, (m - 1.0) * jnp.log(a) + jnp.log(_nonzero(m)), 0.0))


def lambda_values(theta: jnp.ndarray, index: jnp.ndarray) -> jnp.ndarray:
    """Entries of ``Lambda_t`` from their ``theta`` index (-1: the identity on X, y)."""
    return jnp.where(index >= 0, theta[jnp.maximum(index, 0)], 1.0)


def _heavy_update(W: jnp.ndarray, cp: CrossProducts) -> jnp.ndarray:
    """Upper triangle of ``sum_l C_l' W_l C_l`` over the heavy levels of term 1, from
    their dense rows of ``C`` (``_core.crossprod``)."""
    h, k1, t = cp.heavy_levels.shape[0], cp.k1, cp.t
    if h == 0:
        return jnp.zeros((t, t), W.dtype)
    vec = cp.c_val.reshape(-1, k1)
    cols = cp.c_col.reshape(-1, k1)[:, 0]
    H = (
        jnp.zeros((h, t, k1), W.dtype)
        .at[cp.heavy_slot, cols[cp.heavy_entry]]
        .set(vec[cp.heavy_entry])
    )
    HW = jnp.einsum("stj,sjk->stk", H, W[cp.heavy_levels])
    # rows (level, column of term 1), columns the tail's
    return _upper_product(
        jnp.swapaxes(HW, 1, 2).reshape(h * k1, t), jnp.swapaxes(H, 1, 2).reshape(h * k1, t)
    )


def _upper_product(A: jnp.ndarray, B: jnp.ndarray) -> jnp.ndarray:
    """Upper triangle of ``A'B`` by column blocks: block row ``I`` is one product with
    ``B``'s columns from block ``I`` on, ``(nb + 1) / (2 nb)`` of the full product's work
    (5/8 with 4 blocks), and so of its reverse mode. A GLMM rebuilds this update in every
    PIRLS iteration and differentiates it: on bench_glmm's 10^5-row crossed design
    (t = 404, 1,397 dense rows) value + gradient of the update took 23-29 ms instead of
    33-40 ms (the forward pass alone 9-12 ms either way)."""
    edge = _block_edges(A.shape[1])
    rows = []
    for lo, hi in zip(edge[:-1], edge[1:], strict=True):
        block = A[:, lo:hi].T @ B[:, lo:]
        rows.append(jnp.pad(block, ((0, 0), (lo, 0))) if lo else block)
    return jnp.triu(jnp.concatenate(rows, axis=0))


def tail_schur(theta: jnp.ndarray, cp: CrossProducts) -> jnp.ndarray:
    """The tail Schur complement ``S`` (module docstring), ``(t, t)``, as its stored upper
    triangle (``_core.crossprod.flat_index``).

    ``theta`` is in the internal term order ``cp.order``.
    """
    t = cp.t
    _, _, W = first_block(theta, cp)
    w = W.reshape(W.shape[0], -1)[cp.upd_level]  # (m, k1*k1)
    update = jax.ops.segment_sum(
        jnp.sum(w * cp.upd_prod, axis=1),
        cp.upd_flat,
        num_segments=t * t,
        indices_are_sorted=True,
    ).reshape(t, t)
    M = cp.tail - update - _heavy_update(W, cp)
    if cp.tail_diagonal:
        lam = lambda_values(theta, cp.tail_theta)
        S = M * lam[:, None] * lam[None, :]
    else:  # S = Lambda_t' M Lambda_t with a sparse block-diagonal Lambda_t
        vals = lambda_values(theta, cp.lam_theta)
        M = _symmetric(M)
        ML = jax.ops.segment_sum((M[:, cp.lam_row] * vals).T, cp.lam_col, num_segments=t).T
        S = jnp.triu(
            jax.ops.segment_sum(ML[cp.lam_row, :] * vals[:, None], cp.lam_col, num_segments=t)
        )
    if cp.tail_mult is None:
        return _add_diagonal(S, cp.is_z)
    m = cp.tail_mult  # duplicated tail levels: scale by 1/m (module docstring)
    scale = jnp.where(m > 0, 1.0 / _nonzero(m), 0.0)
    return _add_diagonal(
        S * scale[:, None] * scale[None, :], jnp.where(m > 0, cp.is_z * scale, cp.is_z)
    )


def _add_diagonal(S: jnp.ndarray, d: jnp.ndarray) -> jnp.ndarray:
    """``S + diag(d)`` (an elementwise select that XLA fuses with what made ``S``; a
    scatter onto the diagonal would cost a copy of ``S``)."""
    return S + jnp.diag(d)


def _log_det(theta: jnp.ndarray, cp: CrossProducts, head: jnp.ndarray) -> jnp.ndarray:
    """``log|Lambda'Z'Z Lambda + I|`` (and ``+ log|L_X|^2`` when ``head`` runs over the
    fixed-effect block too): term 1's blocks, the duplicated-level correction and
    ``2 head``, ``head`` the sum of the tail factor's log diagonal over those rows."""
    _, log_d1, _ = first_block(theta, cp)
    return log_d1 + _duplication_logdet(theta, cp) + 2.0 * head


def log_det_z(theta: jnp.ndarray, cp: CrossProducts, logdiag: jnp.ndarray) -> jnp.ndarray:
    """``log|Lambda'Z'WZ Lambda + I|`` from ``log diag(chol(S))`` (its first ``q_tail``
    entries) and term 1's blocks: lme4's ``ldL2``."""
    return _log_det(theta, cp, jnp.sum(logdiag[: cp.q_tail]))


def _profiled(log_det: jnp.ndarray, log_ryy: jnp.ndarray, nu) -> jnp.ndarray:
    """``log_det + nu (1 + log(2 pi r_yy^2 / nu))``: the deviance with ``beta`` and
    ``sigma^2 = r_yy^2 / nu`` profiled out (JSS 67(1), eqs. 34 and 41)."""
    return log_det + nu * (1.0 + _LOG_2PI + 2.0 * log_ryy - jnp.log(nu))


def standardized_deviance(theta: jnp.ndarray, cp: CrossProducts, *, reml: bool) -> jnp.ndarray:
    """The profiled deviance of the centred and scaled data ``(X_s, y_s)`` the
    cross-products hold (module docstring, ``_core.standardize``): what the optimiser
    minimises, on the same scale for every model whatever the units of ``y``."""
    qt, p, n = cp.q_tail, cp.p, cp.n
    nu = n - p if reml else n
    k = qt + p if reml else qt
    head, last = cholesky_logdet_parts(tail_schur(theta, cp), k)
    return _profiled(_log_det(theta, cp, head), last, nu)


def deviance_offset(cp: CrossProducts, *, reml: bool) -> jnp.ndarray:
    """``d(theta) - standardized_deviance(theta)``: a constant in ``theta``
    (:func:`interlace._core.standardize.deviance_offset`)."""
    if cp.standardization is None:
        return jnp.zeros((), cp.n.dtype)
    return standardize.deviance_offset(cp.standardization, cp.n, cp.p, reml)


def profiled_deviance(theta: jnp.ndarray, cp: CrossProducts, *, reml: bool) -> jnp.ndarray:
    """Profiled deviance ``d(theta)`` (REML criterion when ``reml``), module docstring.

    Equals ``-2 log L`` at the profiled fixed effects and residual variance, i.e. lme4's
    ``deviance(fit)`` (ML) or ``REMLcrit(fit)`` (REML), in the units of the data as
    given. Pure: ``jit``/``grad``/``vmap`` it.
    """
    return standardized_deviance(theta, cp, reml=reml) + deviance_offset(cp, reml=reml)


def _to_user_beta(beta_s, cp: CrossProducts):
    if cp.standardization is None:
        return beta_s
    return standardize.back_transform_beta(beta_s, cp.standardization, cp.intercept)


def _to_user_cov(cov_s, cp: CrossProducts):
    if cp.standardization is None:
        return cov_s
    return standardize.back_transform_cov(cov_s, cp.standardization, cp.intercept)


def _y_scale(cp: CrossProducts):
    return 1.0 if cp.standardization is None else cp.standardization.y_scale


class Estimates(NamedTuple):
    """What :func:`estimates` returns at one ``theta``, in the data's units."""

    beta: jnp.ndarray  # (p,) fixed effects
    b1: jnp.ndarray  # (q1, k1) BLUPs of internal term 1
    b_tail: jnp.ndarray  # BLUPs of the other terms, level-major, internal order
    sigma2: jnp.ndarray  # residual variance r_yy^2 / nu
    fe_cov: jnp.ndarray  # sigma2 (L_X L_X')^-1, lme4's vcov
    deviance: jnp.ndarray  # profiled deviance (REML criterion or ML deviance)


def factor_logdiag(S: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(log diag(L), L)`` for ``L = chol(S)``, ``S`` given by its stored upper triangle:
    one factorisation for the deviance (differentiable, through the custom VJP of
    :func:`cholesky_logdiag` for large ``S``) and for the estimates (``L`` is returned
    without a derivative: read values from it, never differentiate through it)."""
    if S.shape[-1] <= SMALL:
        L = tail_cholesky(S)
        return jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), jax.lax.stop_gradient(L)
    logdiag, L = _factor_logdiag_large(S)
    return logdiag, jax.lax.stop_gradient(L)


@jax.custom_vjp
def _factor_logdiag_large(S: jnp.ndarray):
    L = tail_cholesky(S)
    return jnp.log(jnp.diagonal(L)), L


def _factor_logdiag_fwd(S):
    L = tail_cholesky(S)
    return (jnp.log(jnp.diagonal(L)), L), L


def _factor_logdiag_bwd(L, cotangents):
    g, _ = cotangents  # L's cotangent is zero: it leaves factor_logdiag without one
    return _cholesky_logdiag_bwd(L, g)


_factor_logdiag_large.defvjp(_factor_logdiag_fwd, _factor_logdiag_bwd)


def residual_df(n, p: int, reml):
    """``nu``: ``n - p`` for REML, ``n`` for ML (``reml`` a bool or a traced flag)."""
    return jnp.where(reml, n - p, n) if isinstance(reml, jax.Array) else (n - p if reml else n)


def deviance_from_logdiag(
    theta: jnp.ndarray, cp: CrossProducts, logdiag: jnp.ndarray, *, reml, nu
) -> jnp.ndarray:
    """The standardized deviance from ``log diag(chol(S))``: ``log|L_Z|^2`` (+ ``log|L_X|^2``
    for REML) from its first ``q_tail`` (``q_tail + p``) entries and ``r_yy`` from the last
    (module docstring). ``reml`` may be a traced flag and ``nu`` a traced number, so one
    executable serves both methods."""
    qt, p = cp.q_tail, cp.p
    if isinstance(reml, jax.Array):
        head = jnp.sum(jnp.where(jnp.arange(logdiag.shape[0]) < qt + p * reml, logdiag, 0.0))
    else:
        head = jnp.sum(logdiag[: qt + p] if reml else logdiag[:qt])
    return _profiled(_log_det(theta, cp, head), logdiag[-1], nu)


def _offset(cp: CrossProducts, reml, nu) -> jnp.ndarray:
    """:func:`deviance_offset` with ``nu`` given and ``reml`` possibly traced."""
    if cp.standardization is None:
        return jnp.zeros((), cp.n.dtype)
    std = cp.standardization
    return (
        2.0 * nu * jnp.log(std.y_scale)
        + jnp.where(reml, 2.0 * jnp.sum(jnp.log(std.x_scale)), 0.0)
        - standardize.weights_log_det(std)
    )


def estimates_from_factor(
    theta: jnp.ndarray, cp: CrossProducts, L: jnp.ndarray, *, reml, nu, unrolled: bool = True
) -> Estimates:
    """:func:`estimates` from the factor ``L = chol(S)`` at ``theta`` (``reml`` a bool or a
    traced flag, ``nu`` the residual degrees of freedom, :func:`residual_df`).
    ``unrolled=False`` inverts ``L_X`` by one triangular solve, whatever its size: a
    smaller graph to compile for a single fit, where the unrolled inverse only pays under
    ``vmap``."""
    qt, p = cp.q_tail, cp.p
    T1, _, _ = first_block(theta, cp)
    # Tail unknowns x = [u_tail; beta] solve S[:-1,:-1] x = S[:-1,-1]: x = L11^-T l21.
    x = linalg.tril_solve(L[:-1, :-1], L[-1, :-1], transpose=True)
    u1, lam_x = first_term_modes(theta, cp, x, T1)
    sigma2 = L[-1, -1] ** 2 / nu
    LX = L[qt : qt + p, qt : qt + p]
    LXinv = _small_tril_inverse(LX) if unrolled else linalg.tril_inverse(LX)
    fe_cov = sigma2 * (LXinv.T @ LXinv)
    # The deviance from the same factor (no second copy of it to compile).
    deviance = deviance_from_logdiag(theta, cp, jnp.log(jnp.diagonal(L)), reml=reml, nu=nu)
    sy = _y_scale(cp)
    return Estimates(
        beta=_to_user_beta(x[qt:], cp),
        b1=sy * (u1 @ T1.T),
        b_tail=sy * lam_x[:qt],
        sigma2=sy**2 * sigma2,
        fe_cov=_to_user_cov(fe_cov, cp),
        deviance=deviance + _offset(cp, reml, nu),
    )


def lambda_tail(theta: jnp.ndarray, cp: CrossProducts, x: jnp.ndarray) -> jnp.ndarray:
    """``Lambda_t x`` for ``x = [u_tail; beta]`` (the identity on ``beta``), without the
    response's entry: its first ``q_tail`` entries are the tail's ``b = Lambda u``."""
    vals = lambda_values(theta, cp.lam_theta)
    x_ext = jnp.concatenate([x, jnp.zeros(1, x.dtype)])
    return jax.ops.segment_sum(vals * x_ext[cp.lam_col], cp.lam_row, num_segments=cp.t)[:-1]


def first_term_modes(theta: jnp.ndarray, cp: CrossProducts, x: jnp.ndarray, T1: jnp.ndarray):
    """Given the tail unknowns ``x = [u_tail; beta]`` (standardized units), the spherical
    modes ``u1`` of term 1 (``(q1, k1)``) and ``Lambda_t x`` without its last entry
    (``lam_x[:q_tail]`` are the tail BLUPs): ``u1_l = D_l^-1 T1' Z1_l'(y - [Z_tail
    Lambda_t, X] x)``, with ``C = Z1'[Z_tail X y]`` (JSS 67(1), eq. 31 by blocks)."""
    lam_x = lambda_tail(theta, cp, x)
    coef = jnp.concatenate([lam_x, jnp.array([-1.0], dtype=x.dtype)])
    cx = jax.ops.segment_sum(cp.c_val * coef[cp.c_col], cp.c_row, num_segments=cp.q1 * cp.k1)
    rhs = -(cx.reshape(cp.q1, cp.k1) @ T1)  # rows: (T1' r_l)'
    D = jnp.einsum("ji,ljk,km->lim", T1, cp.A1, T1) + jnp.eye(cp.k1)
    return _spd_solve(D, rhs), lam_x


@partial(jit, static_argnames=("reml",))
def estimates(theta: jnp.ndarray, cp: CrossProducts, *, reml: bool) -> Estimates:
    """Fixed effects, BLUPs, residual variance and ``vcov(beta)`` at ``theta``
    (:class:`Estimates`). Back-substitution through the blocked factor (JSS eqs. 31-33), on the
    centred and scaled data, then mapped back to the data's units (``_core.standardize``).
    """
    L = tail_cholesky(tail_schur(theta, cp))
    return estimates_from_factor(theta, cp, L, reml=reml, nu=residual_df(cp.n, cp.p, reml))


def blups_by_term(est: Estimates, cp: CrossProducts) -> list:
    """The BLUPs as one ``(levels, k)`` array per term, in the user's term order (numpy
    or JAX, as ``est``)."""
    internal = [est.b1[:, cols] for cols in cp.first_slices]
    start = 0
    for q, k in cp.tail_terms:
        internal.append(est.b_tail[start : start + q * k].reshape(q, k))
        start += q * k
    out = [None] * len(internal)
    for pos, user in enumerate(cp.order):
        out[user] = internal[pos]
    return out


def _small_tril_inverse(L: jnp.ndarray) -> jnp.ndarray:
    """``L^-1`` of a lower-triangular ``L`` with few rows (``L_X``, ``p x p``)."""
    return unrolled_tril_inverse(L) if L.shape[-1] <= SMALL else linalg.tril_inverse(L)


def _spd_solve(D: jnp.ndarray, rhs: jnp.ndarray) -> jnp.ndarray:
    """``D_l^-1 rhs_l`` per level for the symmetric positive definite blocks ``D``
    (``(q, k, k)``, ``rhs`` ``(q, k)``), through their Cholesky factors."""
    if D.shape[-1] <= SMALL:
        Linv = unrolled_tril_inverse(unrolled_cholesky(D))
    else:
        Linv = linalg.tril_inverse(linalg.cholesky(D))
    return jnp.einsum("lji,ljk,lk->li", Linv, Linv, rhs)


def log_likelihood(
    beta: jnp.ndarray, theta: jnp.ndarray, sigma: jnp.ndarray, cp: CrossProducts
) -> jnp.ndarray:
    """Full (not profiled) ML log-likelihood ``log L(beta, theta, sigma)``.

    ``-2 log L = n log(2 pi sigma^2) + log|L_Z|^2 + (r_yy^2 + |L_X'(beta - beta_hat)|^2)
    / sigma^2`` (JSS 67(1), eqs. 32-33: the penalised residual sum of squares at
    ``beta`` exceeds its minimum ``r_yy^2`` by a quadratic form in ``L_X``). Its maximum
    over ``beta`` and ``sigma`` is ``-profiled_deviance(theta, reml=False) / 2``.
    ``beta`` and ``sigma`` are in the data's units; the cross-products hold the centred
    and scaled data, so ``log L = log L_s(beta_s, sigma / s_y) - n log s_y``
    (``_core.standardize``).
    """
    if cp.standardization is not None:
        std = cp.standardization
        beta = standardize.to_standardized_beta(beta, std, cp.intercept)
        sigma = sigma / std.y_scale
        jacobian = cp.n * jnp.log(std.y_scale) - 0.5 * standardize.weights_log_det(std)
    else:
        jacobian = 0.0
    qt, p = cp.q_tail, cp.p
    L = tail_cholesky(tail_schur(theta, cp))
    logdet_z = _log_det(theta, cp, jnp.sum(jnp.log(jnp.diagonal(L)[:qt])))
    beta_hat = linalg.tril_solve(L[:-1, :-1], L[-1, :-1], transpose=True)[qt:]
    LX = L[qt : qt + p, qt : qt + p]
    excess = jnp.sum((LX.T @ (beta - beta_hat)) ** 2)
    pwrss = L[-1, -1] ** 2 + excess
    return (
        -0.5 * (cp.n * (_LOG_2PI + 2.0 * jnp.log(sigma)) + logdet_z + pwrss / sigma**2) - jacobian
    )


def deviance_varpar(
    theta: jnp.ndarray, sigma: jnp.ndarray, cp: CrossProducts, *, reml: bool
) -> jnp.ndarray:
    """``-2 log L`` at ``(theta, sigma)`` with ``beta`` profiled out, ``sigma`` not:
    ``log|L_Z|^2 [+ log|L_X|^2] + nu log(2 pi sigma^2) + r_yy^2 / sigma^2`` (lmerTest's
    variance-parameter deviance; its minimum over ``sigma`` is :func:`profiled_deviance`).
    ``sigma`` in the data's units (``_core.standardize``)."""
    sy = _y_scale(cp)
    sigma = sigma / sy
    qt, p = cp.q_tail, cp.p
    nu = cp.n - p if reml else cp.n
    k = qt + p if reml else qt
    head, last = cholesky_logdet_parts(tail_schur(theta, cp), k)
    logdet = _log_det(theta, cp, head)
    return (
        logdet
        + nu * (_LOG_2PI + 2.0 * jnp.log(sigma))
        + jnp.exp(2.0 * last) / sigma**2
        + deviance_offset(cp, reml=reml)
    )


def vcov_beta(theta: jnp.ndarray, sigma: jnp.ndarray, cp: CrossProducts) -> jnp.ndarray:
    """``sigma^2 (L_X L_X')^-1``: the covariance of ``beta_hat`` at ``(theta, sigma)``
    (``sigma`` and the result in the data's units, ``_core.standardize``)."""
    sigma = sigma / _y_scale(cp)
    qt, p = cp.q_tail, cp.p
    L = tail_cholesky(tail_schur(theta, cp))
    LXinv = _small_tril_inverse(L[qt : qt + p, qt : qt + p])
    return _to_user_cov(sigma**2 * (LXinv.T @ LXinv), cp)
