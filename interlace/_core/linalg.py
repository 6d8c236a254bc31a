"""Dense triangular factorisations that stay off batched LAPACK under ``jax.vmap``.

A single matrix goes to LAPACK (``potrf``, ``trsm``), the fastest code on a CPU. A
batch of matrices, whether it comes from ``jax.vmap`` (vectorised refits: ``fit_many``,
the bootstraps, deletion diagnostics) or from a leading axis of the argument (one
``k1 x k1`` block per level), is factorised by plain JAX operations instead: jaxlib
0.10.2's batched LAPACK kernels split the batch into tasks on XLA's intra-op CPU thread
pool and block the pool thread they run on until those tasks finish, so a few of them
running at once (one per pool thread: two on a 2-core machine) wait on each other
forever. Plain operations cannot do that. Which path a call takes is decided by
``jax.custom_batching.custom_vmap``: unbatched it runs the LAPACK code, batched it runs
the rule, so ``jit``, ``grad`` and ``vmap`` of the numerical core compose as before.

The plain code is a blocked, left-looking Cholesky (Golub & Van Loan, Matrix
Computations, 4th ed., ch. 4): a ``t x t`` matrix is split into column blocks of
``_BLOCK``; each block is updated by one matrix product with the blocks before it, its
diagonal block is factorised by a column loop (``lax.fori_loop``) and the rest of the
block by a product with the diagonal block's inverse. So nearly all of the ``t^3 / 3``
multiply-adds run as matrix products, ``O(t / _BLOCK)`` of them (static shapes). The
triangular inverse is blocked the same way, by block rows; a batched triangular solve
multiplies by that inverse (refits solve once per fit, outside the optimiser's loop).

Derivatives are custom JVPs written with matrix products of the primal factors only
(``d L = L Phi(L^-1 dA L^-T)``, ``d L^-1 = -L^-1 dL L^-1``, ``d x = L^-1 (db - dL x)``),
so they are linear in the tangents without a solve, and reverse mode (a transpose)
never meets the ``custom_vmap`` primitive, which has no transpose rule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

__all__ = ["cholesky", "cholesky_or_ridged", "tril_inverse", "tril_solve"]


# Column block of the plain (batched) factorisations. Measured with fit_many of
# y ~ x + (1 | g) + (1 | h) on 2 shared cores (best of 5 steady calls, CPU seconds):
# a tail of 123 columns, 64 responses: 1.42 s with 32, 1.67 s with 16, 1.57 s with 64;
# 303 columns, 32 responses: 0.69 s with 32, 1.03 s with 16, 0.77 s with 64.
_BLOCK = 32


def _mT(a):
    return jnp.swapaxes(a, -1, -2)


def _sym_lower(a):
    """The symmetric matrix whose lower triangle is ``a``'s."""
    return jnp.tril(a) + _mT(jnp.tril(a, -1))


def _edges(t: int) -> list[int]:
    return list(range(0, t, _BLOCK)) + [t]


def _unblocked_cholesky(A):
    """Lower Cholesky factor of a small block (lower triangle read), column by column:
    ``L[:, j] = (A[:, j] - L L[j, :]') / sqrt(...)`` with the columns ``>= j`` of ``L``
    still zero (``lax.fori_loop``; rows above ``j`` masked)."""
    n = A.shape[-1]
    rows = jnp.arange(n)

    def body(j, L):
        v = A[..., :, j] - jnp.einsum("...ik,...k->...i", L, L[..., j, :])
        d = jnp.sqrt(v[..., j])
        col = jnp.where(rows > j, v / d[..., None], 0.0)
        col = jnp.where(rows == j, d[..., None], col)
        return L.at[..., :, j].set(col)

    return lax.fori_loop(0, n, body, jnp.zeros_like(A))


def _unblocked_tril_inverse(L):
    """Inverse of a small lower-triangular block by forward substitution, row by row:
    ``X[i, :] = (e_i - L[i, :i] X[:i, :]) / L[i, i]``."""
    n = L.shape[-1]
    eye = jnp.eye(n, dtype=L.dtype)

    def body(i, X):
        row = (eye[i] - jnp.einsum("...k,...kj->...j", L[..., i, :], X)) / L[..., i, i, None]
        return X.at[..., i, :].set(row)

    return lax.fori_loop(0, n, body, jnp.zeros_like(L))


def _plain_cholesky(A):
    """Blocked left-looking Cholesky (module docstring) of ``A``'s lower triangle."""
    t = A.shape[-1]
    if t == 0:
        return A
    e = _edges(t)
    panels = []  # panels[J]: columns e[J]:e[J+1] of L, rows e[J]: on
    for J in range(len(e) - 1):
        j0, j1 = e[J], e[J + 1]
        C = A[..., j0:, j0:j1]
        if J:
            left = jnp.concatenate(
                [P[..., j0 - e[K] :, :] for K, P in enumerate(panels)], axis=-1
            )  # L[j0:, :j0]
            C = C - left @ _mT(left[..., : j1 - j0, :])
        Ljj = _unblocked_cholesky(C[..., : j1 - j0, :])
        below = C[..., j1 - j0 :, :] @ _mT(_unblocked_tril_inverse(Ljj))
        panels.append(jnp.concatenate([Ljj, below], axis=-2))
    return jnp.concatenate(
        [
            jnp.concatenate(
                [jnp.zeros(A.shape[:-2] + (e[K], e[K + 1] - e[K]), A.dtype), P], axis=-2
            )
            for K, P in enumerate(panels)
        ],
        axis=-1,
    )


def _plain_tril_inverse(L):
    """Blocked ``L^-1``: block row ``I`` is ``[-X_II L[I, :I] X[:I, :I], X_II]``."""
    t = L.shape[-1]
    if t == 0:  # e.g. the tail's random-effect block of a one-term model
        return L
    e = _edges(t)
    rows = []  # rows[I]: rows e[I]:e[I+1] of L^-1, columns :e[I+1]
    for I in range(len(e) - 1):
        i0, i1 = e[I], e[I + 1]
        Xii = _unblocked_tril_inverse(L[..., i0:i1, i0:i1])
        if I:
            top = jnp.concatenate(
                [
                    jnp.concatenate(
                        [r, jnp.zeros(r.shape[:-1] + (i0 - r.shape[-1],), L.dtype)], axis=-1
                    )
                    if r.shape[-1] < i0
                    else r
                    for r in rows
                ],
                axis=-2,
            )
            off = -Xii @ (L[..., i0:i1, :i0] @ top)
            rows.append(jnp.concatenate([off, Xii], axis=-1))
        else:
            rows.append(Xii)
    return jnp.concatenate(
        [
            jnp.concatenate([r, jnp.zeros(r.shape[:-1] + (t - r.shape[-1],), L.dtype)], axis=-1)
            if r.shape[-1] < t
            else r
            for r in rows
        ],
        axis=-2,
    )


def _plain_tril_solve(L, b, transpose: bool):
    """``L^-1 b`` (or ``L^-T b``) for a matrix ``b``, through the blocked inverse."""
    X = _plain_tril_inverse(L)
    return (_mT(X) if transpose else X) @ b


def _safe(lapack, plain):
    """``lapack`` for one matrix, ``plain`` for a batch (leading axes or ``vmap``)."""

    def unbatched(*args):
        return lapack(*args) if args[0].ndim == 2 else plain(*args)

    f = custom_vmap(unbatched)

    @f.def_vmap
    def rule(axis_size, in_batched, *args):
        args = [
            a if b else jnp.broadcast_to(a, (axis_size,) + a.shape)
            for a, b in zip(args, in_batched)
        ]
        out = plain(*args)
        return out, jax.tree.map(lambda _: True, out)

    return f


_cholesky = _safe(lambda A: lax.linalg.cholesky(A, symmetrize_input=False), _plain_cholesky)
_tril_inverse = _safe(
    lambda L: lax.linalg.triangular_solve(
        L, jnp.eye(L.shape[-1], dtype=L.dtype), left_side=True, lower=True
    ),
    _plain_tril_inverse,
)
_tril_solve_n = _safe(
    lambda L, b: lax.linalg.triangular_solve(L, b, left_side=True, lower=True),
    lambda L, b: _plain_tril_solve(L, b, False),
)
_tril_solve_t = _safe(
    lambda L, b: lax.linalg.triangular_solve(L, b, left_side=True, lower=True, transpose_a=True),
    lambda L, b: _plain_tril_solve(L, b, True),
)


@jax.custom_jvp
def cholesky(A: jnp.ndarray) -> jnp.ndarray:
    """Lower Cholesky factor of the symmetric matrix whose lower triangle is ``A``'s
    (``[..., t, t]``; the strict upper triangle is not read)."""
    return _cholesky(A)


@cholesky.defjvp
def _cholesky_jvp(primals, tangents):
    # dL = L Phi(L^-1 dA L^-T), Phi = lower triangle with the diagonal halved
    # (Murray 2016, Differentiation of the Cholesky decomposition, arXiv:1602.07527),
    # dA the symmetric tangent.
    (A,), (dA,) = primals, tangents
    L = cholesky(A)
    Linv = tril_inverse(L)
    X = Linv @ _sym_lower(dA) @ _mT(Linv)
    phi = jnp.tril(X) - 0.5 * jnp.tril(jnp.triu(X))
    return L, L @ phi


def _ridged_on_failure(factor, fallback):
    """``(A, ridge) -> (L, failed)`` (:func:`cholesky_or_ridged`) with ``factor`` (LAPACK's
    or the blocked plain one, on a batch), and ``fallback`` for the ridged matrices, in a
    ``lax.cond`` on whether any matrix of the call failed. Under ``vmap`` a cond on a
    batched flag would run both branches for every lane, so the batched call decides
    once for its whole batch (``_safe``'s rule sees the batch axis as an ordinary one);
    its fallback is the column loop, a small graph to compile for a branch that rarely
    runs."""

    def factor_or_ridged(A, ridge):
        L = factor(A)
        failed = ~jnp.all(jnp.isfinite(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)

        def ridged():
            L2 = fallback(A + ridge[..., :, None] * jnp.eye(A.shape[-1], dtype=A.dtype))
            return jnp.where(failed[..., None, None], L2, L)

        return lax.cond(jnp.any(failed), ridged, lambda: L), failed.astype(A.dtype)

    return factor_or_ridged


def _lapack_cholesky(A):
    return lax.linalg.cholesky(A, symmetrize_input=False)


_cholesky_or_ridged = _safe(
    _ridged_on_failure(_lapack_cholesky, _lapack_cholesky),
    _ridged_on_failure(_plain_cholesky, _unblocked_cholesky),
)


@jax.custom_jvp
def cholesky_or_ridged(A: jnp.ndarray, ridge: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(L, failed)``: the lower Cholesky factor of ``A`` (lower triangle read) or, where
    that fails (``A`` not positive definite in floating point), of ``A + diag(ridge)``;
    ``failed`` is 1.0 where the ridge was added, else 0.0. The second factorisation runs
    only when a first one fails (:func:`_ridged_on_failure`). Differentiable in ``A`` as
    the factor returned (``ridge`` is held constant)."""
    return _cholesky_or_ridged(A, ridge)


@cholesky_or_ridged.defjvp
def _cholesky_or_ridged_jvp(primals, tangents):
    # the Cholesky derivative (_cholesky_jvp) at the factor returned
    (A, ridge), (dA, _) = primals, tangents
    L, failed = cholesky_or_ridged(A, ridge)
    Linv = tril_inverse(L)
    X = Linv @ _sym_lower(dA) @ _mT(Linv)
    phi = jnp.tril(X) - 0.5 * jnp.tril(jnp.triu(X))
    return (L, failed), (L @ phi, jnp.zeros_like(failed))


@jax.custom_jvp
def tril_inverse(L: jnp.ndarray) -> jnp.ndarray:
    """``L^-1`` of a lower-triangular ``L`` (``[..., t, t]``)."""
    return _tril_inverse(L)


@tril_inverse.defjvp
def _tril_inverse_jvp(primals, tangents):
    (L,), (dL,) = primals, tangents
    X = tril_inverse(L)
    return X, -(X @ jnp.tril(dL) @ X)


def tril_solve(L: jnp.ndarray, b: jnp.ndarray, *, transpose: bool = False) -> jnp.ndarray:
    """``x`` with ``L x = b`` (``L' x = b`` if ``transpose``) for lower-triangular ``L``
    (``[..., t, t]``) and ``b`` (``[..., t]`` or ``[..., t, m]``, same batch axes)."""
    vector = b.ndim == L.ndim - 1
    B = b[..., None] if vector else b
    x = (_solve_t if transpose else _solve_n)(L, B)
    return x[..., 0] if vector else x


@jax.custom_jvp
def _solve_n(L, B):
    return _tril_solve_n(L, B)


@_solve_n.defjvp
def _solve_n_jvp(primals, tangents):
    (L, B), (dL, dB) = primals, tangents
    x = _solve_n(L, B)
    return x, tril_inverse(L) @ (dB - jnp.tril(dL) @ x)


@jax.custom_jvp
def _solve_t(L, B):
    return _tril_solve_t(L, B)


@_solve_t.defjvp
def _solve_t_jvp(primals, tangents):
    (L, B), (dL, dB) = primals, tangents
    x = _solve_t(L, B)
    return x, _mT(tril_inverse(L)) @ (dB - _mT(jnp.tril(dL)) @ x)
