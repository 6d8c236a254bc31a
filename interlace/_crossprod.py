"""The one pass over the rows: cross-products of ``[Z X y]`` from integer level codes.

Model (Bates et al. 2015, JSS 67(1), sec. 3): ``y = X b + Z Lambda(theta) u + e``. A
profiled-deviance evaluation needs only ``A = [Z X y]' [Z X y]``, which we compute once
here with segment sums over the level codes and then never touch the rows again.

Factors are ordered by number of levels, largest first (``order``). Writing ``Z1`` for
the largest factor and ``R = [Z_tail X y]`` for everything else (``t`` columns):

* ``Z1' Z1`` is diagonal: ``counts1`` (one count per level of factor 1).
* ``R' R`` is the dense ``t x t`` tail block (stored as its lower triangle).
* ``C = Z1' R`` is sparse (``q1 x t``). The Schur complement of the first block needs
  ``C' diag(w) C = sum_l w_l c_l c_l'`` over the rows ``c_l`` of ``C``; its nonzero
  products ``C[l,a] C[l,b]`` (``a >= b``) are precomputed as *update entries* so that
  each evaluation is one gather and one scatter-add of length ``m``.

Memory: O(levels + level pairs + update entries), never O(rows) beyond the inputs, and
no dense ``n x q`` or ``q1 x q1`` matrix is ever formed.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

__all__ = ["CrossProducts", "cross_products"]


class CrossProducts(eqx.Module):
    """Sufficient statistics of a crossed random-intercept model (a JAX pytree)."""

    counts1: jnp.ndarray  # (q1,) rows per level of the largest factor
    tail: jnp.ndarray  # (t, t) lower triangle of [Z_tail X y]'[Z_tail X y]
    tail_factor: jnp.ndarray  # (t,) factor position (1..k-1) of each tail column, 0 for X, y
    upd_level: jnp.ndarray  # (m,) level of factor 1 of each update entry
    upd_flat: jnp.ndarray  # (m,) flat index a * t + b (a >= b) into the tail
    upd_prod: jnp.ndarray  # (m,) C[l, a] * C[l, b]
    c_level: jnp.ndarray  # (nnz,) COO of C = Z1' [Z_tail X y]: row (level of factor 1)
    c_col: jnp.ndarray  # (nnz,) column in the tail
    c_val: jnp.ndarray  # (nnz,) value
    n: int = eqx.field(static=True)
    p: int = eqx.field(static=True)
    nlevels: tuple[int, ...] = eqx.field(static=True)  # in internal (sorted) order
    order: tuple[int, ...] = eqx.field(static=True)  # internal position -> user factor

    @property
    def q1(self) -> int:
        return self.nlevels[0]

    @property
    def q_tail(self) -> int:
        return int(sum(self.nlevels[1:]))

    @property
    def t(self) -> int:
        return self.q_tail + self.p + 1


def _segment_sums(codes: np.ndarray, values: np.ndarray, nlev: int) -> np.ndarray:
    """``out[l, j] = sum_{i: codes[i] = l} values[i, j]`` (a Z' V product), shape (nlev, m)."""
    return np.stack(
        [np.bincount(codes, weights=values[:, j], minlength=nlev) for j in range(values.shape[1])],
        axis=1,
    )


def _update_entries(indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, t: int):
    """All within-row products of a CSR matrix with sorted columns, lower triangle only.

    Returns (row, flat index a * t + b with a >= b, product) for every pair of nonzeros
    (k', k) in one row with k' <= k.
    """
    nnz = cols.shape[0]
    row_of = np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr))
    pos = np.arange(nnz) - indptr[row_of]  # position of each nonzero within its row
    reps = pos + 1
    k = np.repeat(np.arange(nnz), reps)
    within = np.arange(k.shape[0]) - np.repeat(np.cumsum(reps) - reps, reps)
    k2 = indptr[row_of[k]] + within
    a, b = cols[k], cols[k2]
    return row_of[k], a.astype(np.int64) * t + b, vals[k] * vals[k2]


def cross_products(
    codes: list[np.ndarray], nlevels: list[int], X: np.ndarray, y: np.ndarray
) -> CrossProducts:
    """Build :class:`CrossProducts` for crossed random intercepts in one pass over rows."""
    k = len(codes)
    order = tuple(int(i) for i in np.argsort(-np.asarray(nlevels), kind="stable"))
    codes = [np.asarray(codes[i], dtype=np.int64) for i in order]
    nlev = [int(nlevels[i]) for i in order]
    n, p = X.shape
    XY = np.column_stack([X, y]).astype(np.float64)
    q1 = nlev[0]
    offsets = np.concatenate([[0], np.cumsum(nlev[1:])]).astype(np.int64)
    qt = int(offsets[-1])
    t = qt + p + 1

    counts1 = np.bincount(codes[0], minlength=q1).astype(np.float64)

    tail = np.zeros((t, t))
    for j in range(1, k):
        oj, qj = offsets[j - 1], nlev[j]
        tail[oj:oj + qj, oj:oj + qj] = np.diag(np.bincount(codes[j], minlength=qj))
        for i in range(1, j):  # factor j sits below factor i: lower triangle
            oi, qi = offsets[i - 1], nlev[i]
            pair = np.bincount(codes[j] * qi + codes[i], minlength=qj * qi)
            tail[oj:oj + qj, oi:oi + qi] = pair.reshape(qj, qi)
        tail[qt:, oj:oj + qj] = _segment_sums(codes[j], XY, qj).T
    tail[qt:, qt:] = np.tril(XY.T @ XY)
    tail_factor = np.concatenate(
        [np.full(nlev[j], j) for j in range(1, k)] + [np.zeros(p + 1, dtype=np.int64)]
    ).astype(np.int64)

    # C = Z1' [Z_tail X y] in COO: sparse pair counts, then the dense Z1' [X y] block.
    rows, cols, vals = [], [], []
    for j in range(1, k):
        key, cnt = np.unique(codes[0] * nlev[j] + codes[j], return_counts=True)
        rows.append(key // nlev[j])
        cols.append(offsets[j - 1] + key % nlev[j])
        vals.append(cnt.astype(np.float64))
    zxy = _segment_sums(codes[0], XY, q1)
    rows.append(np.repeat(np.arange(q1), p + 1))
    cols.append(np.tile(np.arange(qt, t), q1))
    vals.append(zxy.ravel())
    rows, cols, vals = (np.concatenate(a) for a in (rows, cols, vals))
    perm = np.lexsort((cols, rows))
    rows, cols, vals = rows[perm], cols[perm], vals[perm]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=q1))])
    upd_level, upd_flat, upd_prod = _update_entries(indptr, cols, vals, t)
    perm = np.argsort(upd_flat, kind="stable")  # sorted scatter targets

    return CrossProducts(
        counts1=jnp.asarray(counts1),
        tail=jnp.asarray(tail),
        tail_factor=jnp.asarray(tail_factor),
        upd_level=jnp.asarray(upd_level[perm]),
        upd_flat=jnp.asarray(upd_flat[perm]),
        upd_prod=jnp.asarray(upd_prod[perm]),
        c_level=jnp.asarray(rows),
        c_col=jnp.asarray(cols),
        c_val=jnp.asarray(vals),
        n=int(n),
        p=int(p),
        nlevels=tuple(nlev),
        order=order,
    )
