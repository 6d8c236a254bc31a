"""Leverage, marginal residual variances and conditional variances of the BLUPs.

All from the blocked factor of the penalised system, never an ``n x n`` (or ``q x q``)
matrix. With ``a_i' = [(Lambda' z_i)', x_i']`` the ``i``-th row of ``[Z Lambda, X]``
and ``M = [Lambda'Z'Z Lambda + I, Lambda'Z'X; X'Z Lambda, X'X]``, the conditional
fitted values are ``H y`` with ``H = [Z Lambda, X] M^-1 [Z Lambda, X]'`` (lme4's
``hatvalues``). Eliminating term 1 (``D_l = T1' A1_l T1 + I``, ``W_l = T1 D_l^-1 T1'``)
leaves the tail Schur complement ``S`` (``_core.deviance``), so

    h_i = x1_i' W_l x1_i + |L_S^-1 v_i|^2,   v_i = Lambda_t' ([z_t,i; x_i] - C_l' W_l x1_i)

for row ``i`` in level ``l`` of term 1, where ``C_l = Z1_l' [Z_tail X]`` and ``L_S`` is
the Cholesky factor of ``S`` (without the response). The ``X`` part of
``w = L_S^-1 v_i`` is ``L_X^-1 (V^-1 X)_i'`` with ``V = I + Z Lambda Lambda' Z'``, which
gives the fixed-effect part of the hat matrix ``H1 = X (X'V^-1 X)^-1 X' V^-1``
(Nobre & Singer 2007; HLMdiag's ``leverage``): ``H1_ii = (L_X^-1 x_i)' w_X``.

The marginal residual ``y - X beta_hat`` has variance
``sigma^2 (V - X (X'V^-1 X)^-1 X')``, whose diagonal is
``sigma^2 (1 + |Lambda' z_i|^2 - |L_X^-1 x_i|^2)``.

lme4's conditional variance of the BLUPs (``ranef(fit, condVar = TRUE)``) is
``sigma^2 Lambda (Lambda'Z'Z Lambda + I)^-1 Lambda'``; its diagonal blocks are
``sigma^2 (W_l + G_l' S_zz^-1 G_l)`` with ``G_l = Lambda_z' C_lz' W_l`` for term 1 and
those of ``sigma^2 Lambda_t S_zz^-1 Lambda_t'`` for the other terms.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from .._base.jit import jit
from .._core.crossprod import CrossProducts, cross_products
from .._core.deviance import first_block, lambda_values, tail_cholesky, tail_schur
from .._core.refit import CHUNK_NUMBERS
from .._core.theta import lower_factor, to_internal
from .._model.estimate import ModelFit
from .._model.glmm_estimate import GlmmFit

__all__ = ["RowLeverage", "row_leverage", "blup_condvar", "glmm_mode_condvar"]


class RowLeverage(NamedTuple):
    """Per row: ``hat`` (conditional hat diagonal), ``hat_fixef`` (``H1_ii``) and
    ``marginal_var`` (``Var(y_i - x_i' beta_hat) / sigma^2``)."""

    hat: np.ndarray
    hat_fixef: np.ndarray
    marginal_var: np.ndarray


def _system(fit: ModelFit):
    """Cross-products (the fit's), internal ``theta`` and the per-row arrays in internal
    order."""
    terms = fit.design.terms
    cp = fit.cross_products
    theta = jnp.asarray(to_internal(fit.theta, fit.ks, cp.order))
    codes = tuple(jnp.asarray(terms[i].codes) for i in cp.order)
    term_X = tuple(jnp.asarray(terms[i].X) for i in cp.order)
    return cp, theta, codes, term_X


def _dense_c(cp: CrossProducts) -> jnp.ndarray:
    """``C = Z1' [Z_tail X y]`` as a dense ``(q1, k1, t)`` array."""
    C = jnp.zeros((cp.q1 * cp.k1, cp.t)).at[cp.c_row, cp.c_col].add(cp.c_val)
    return C.reshape(cp.q1, cp.k1, cp.t)


def _tail_rows(cp: CrossProducts, codes, term_X, X) -> jnp.ndarray:
    """Rows of ``[Z_tail X 0]`` as a dense ``(n, t)`` array (the response column zeroed)."""
    n = X.shape[0]
    R = jnp.zeros((n, cp.t))
    offset, f = 0, cp.first_terms
    for c, Xr, (q, k) in zip(codes[f:], term_X[f:], cp.tail_terms):
        cols = offset + c[:, None] * k + jnp.arange(k)[None, :]
        R = R.at[jnp.arange(n)[:, None], cols].set(Xr)
        offset += q * k
    return R.at[:, cp.q_tail : cp.q_tail + cp.p].set(X)


def _lambda_t_transpose(cp: CrossProducts, theta, U) -> jnp.ndarray:
    """``U Lambda_t`` for rows ``U`` (``(m, t)``), i.e. ``Lambda_t' u`` per row."""
    vals = lambda_values(theta, cp.lam_theta)
    return jax.ops.segment_sum((U[:, cp.lam_row] * vals).T, cp.lam_col, num_segments=cp.t).T


@jit
def _leverage_chunk(cp, theta, L, C, codes, term_X, X):
    qt, p = cp.q_tail, cp.p
    _, _, W = first_block(theta, cp)
    l, x1 = codes[0], jnp.concatenate(term_X[: cp.first_terms], axis=1)
    Wx = jnp.einsum("njk,nk->nj", W[l], x1)
    quad1 = jnp.sum(x1 * Wx, axis=1)
    U = _tail_rows(cp, codes, term_X, X) - jnp.einsum("nk,nkt->nt", Wx, C[l])
    V = _lambda_t_transpose(cp, theta, U)[:, :-1]
    w = solve_triangular(L[:-1, :-1], V.T, lower=True)  # (t - 1, n)
    LX = L[qt : qt + p, qt : qt + p]
    lx = solve_triangular(LX, X.T, lower=True)  # L_X^-1 x_i, (p, n)
    hat = quad1 + jnp.sum(w**2, axis=0)
    hat_fixef = jnp.sum(lx * w[qt : qt + p], axis=0)
    vz = sum(
        jnp.sum((Xr @ _term_T(theta, cp, r)) ** 2, axis=1) for r, Xr in enumerate(term_X)
    )  # |Lambda' z_i|^2
    return hat, hat_fixef, 1.0 + vz - jnp.sum(lx**2, axis=0)


def _term_T(theta, cp: CrossProducts, r: int) -> jnp.ndarray:
    """``T_r`` of internal term ``r`` (lower triangular, ``k x k``)."""
    start = cp.theta_offsets[r]
    return lower_factor(theta[start : start + cp.ks[r] * (cp.ks[r] + 1) // 2], cp.ks[r])


def row_leverage(fit: ModelFit) -> RowLeverage:
    """Hat diagonal, its fixed-effect part and the marginal residual variances of
    ``fit``'s rows (module docstring), in chunks of rows. With prior weights ``w`` the
    system is that of the rows scaled by ``sqrt(w_i)`` (``_core.standardize``): ``h_i``
    is its hat diagonal (lme4's ``hatvalues``) and the marginal variance of row ``i``
    is the scaled row's divided by ``w_i``."""
    cp, theta, codes, term_X = _system(fit)
    L = tail_cholesky(tail_schur(theta, cp))
    C = _dense_c(cp)
    std = cp.standardization  # the factor is of the centred and scaled X (_standardize);
    X = (fit.design.X - np.asarray(std.x_shift)) / np.asarray(std.x_scale)  # same span
    w = fit.design.weights
    if w is not None:
        r = jnp.asarray(np.sqrt(w))[:, None]
        X, term_X = X * np.sqrt(w)[:, None], tuple(x * r for x in term_X)
    n = X.shape[0]
    chunk = max(1, min(n, CHUNK_NUMBERS // max(cp.t, 1)))
    parts = []
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        parts.append(
            _leverage_chunk(
                cp,
                theta,
                L,
                C,
                tuple(c[sl] for c in codes),
                tuple(x[sl] for x in term_X),
                jnp.asarray(X[sl]),
            )
        )
    hat, fixef, mvar = (np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(3))
    if w is not None:
        mvar = mvar / w
    return RowLeverage(hat=hat, hat_fixef=fixef, marginal_var=mvar)


@jit
def _condvar_internal(cp, theta, L, C):
    qt = cp.q_tail
    _, _, W = first_block(theta, cp)
    Lzz = L[:qt, :qt]
    # Term 1: G_l = Lambda_z' C_lz' W_l, stacked as (qt, q1 k1).
    CW = jnp.einsum("ljt,ljk->lkt", C, W)  # rows of W_l C_l, (q1, k1, t)
    G = _lambda_t_transpose(cp, theta, CW.reshape(-1, cp.t))[:, :qt]
    F1 = solve_triangular(Lzz, G.T, lower=True).reshape(qt, cp.q1, cp.k1)
    first = W + jnp.einsum("cli,clj->lij", F1, F1)
    # Tail: Lambda_t S_zz^-1 Lambda_t' = F'F with F = L_zz^-1 Lambda_z'.
    lam = _lambda_t_transpose(cp, theta, jnp.eye(cp.t))[:qt, :qt]  # Lambda_t (rows) -> Lambda
    F = solve_triangular(Lzz, lam.T, lower=True)
    per_term, offset = [first[:, c, c] for c in cp.first_slices], 0  # term 1's diagonal blocks
    for q, k in cp.tail_terms:
        Fr = F[:, offset : offset + q * k].reshape(qt, q, k)
        per_term.append(jnp.einsum("cli,clj->lij", Fr, Fr))
        offset += q * k
    return per_term


def blup_condvar(fit: ModelFit) -> list[np.ndarray]:
    """lme4's ``condVar``: per term (user order) the ``(levels, k, k)`` conditional
    covariance of the BLUPs, ``sigma^2 Lambda (Lambda'Z'Z Lambda + I)^-1 Lambda'``."""
    cp, theta, _, _ = _system(fit)
    return _condvar(cp, theta, fit.sigma2)


def glmm_mode_condvar(fit: GlmmFit) -> list[np.ndarray]:
    """lme4's ``condVar`` of a GLMM: per term (user order) the ``(levels, k, k)``
    blocks of ``Lambda (Lambda'Z'WZ Lambda + I)^-1 Lambda'`` (no residual scale), ``W``
    the IRLS working weights ``w_i mu'(eta_i)^2 / V(mu_i)`` at the conditional modes
    (``Family.working``): the Laplace approximation's covariance of the random effects
    given the data, at the estimates."""
    d = fit.design
    terms = d.terms
    W, _ = fit.family.working(d.y, fit.eta, fit.prior_weights, fit.size)
    cp = cross_products(
        [t.codes for t in terms],
        [len(t.levels) for t in terms],
        d.X,
        d.y,
        [t.X for t in terms],
        weights=np.asarray(W, dtype=float),
    )
    theta = jnp.asarray(to_internal(np.asarray(fit.theta, dtype=float), fit.ks, cp.order))
    return _condvar(cp, theta, 1.0)


def _condvar(cp: CrossProducts, theta, scale: float) -> list[np.ndarray]:
    """``scale Lambda (Lambda'Z'Z Lambda + I)^-1 Lambda'`` blocks of ``cp``'s system
    (the module docstring's formula), per term in the user's order."""
    L = tail_cholesky(tail_schur(theta, cp))
    internal = _condvar_internal(cp, theta, L, _dense_c(cp))
    out = [None] * len(internal)
    for pos, user in enumerate(cp.order):
        out[user] = scale * np.asarray(internal[pos])
    return out
