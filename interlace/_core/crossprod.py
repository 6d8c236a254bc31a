"""The one pass over the rows: cross-products of ``[Z X y]`` from integer level codes.

Model (Bates et al. 2015, JSS 67(1), sec. 3): ``y = X b + Z Lambda(theta) u + e``. A
profiled-deviance evaluation needs only ``A = [Z X y]' [Z X y]``, computed once here with
segment sums over level codes; after that no evaluation touches the rows again.

Each random term ``r`` has ``q_r`` levels and ``k_r`` columns ``X_r`` (1 for an
intercept); its block of ``Z`` has ``q_r k_r`` columns, level-major (``l k_r + j``). The
grouping factor with the largest ``q_r k_r`` (summed over its terms) goes first
(``order``): its terms together are term 1, their columns side by side and their ``T``
block diagonal (``(1 + x || g)`` is ``(1 | g) + (0 + x | g)``, and both stay out of the
dense tail). Write ``R = [Z_tail X y]`` for the ``t`` columns of everything else:

* ``Z1' Z1`` is block diagonal: ``A1[l] = sum_{i in level l} x_i x_i'`` (``k1 x k1``).
* ``R' R`` is the dense ``t x t`` tail block, stored as its upper triangle (row-major):
  read column-major, that is the lower triangle LAPACK factorises, so the tail goes to
  the Cholesky without a transposing copy (:func:`flat_index`).
* ``C = Z1' R`` is sparse. The Schur complement of the first block needs
  ``sum_l C_l' W_l C_l`` over the ``k1 x t`` row blocks ``C_l`` of ``C``, with a small
  ``k1 x k1`` weight ``W_l(theta)``. Its nonzero products ``C_l[:, a] C_l[:, b]'``
  (``a >= b``, stored at ``flat_index(a, b, t)``) are precomputed as *update entries*,
  so each evaluation is one gather and one scatter-add.

A level of term 1 that meets ``d`` tail columns makes ``d (d + 1) / 2`` update entries,
which explodes for the busiest levels of a skewed design (a level that meets all 4,000
levels of the other factor: 8 million entries). Such *heavy* levels (``d`` above
``max(64, t / 8)``, :func:`heavy_threshold`) keep their rows of ``C`` densely instead
(``(h, k1, t)``, filled from ``C``'s stored entries at each evaluation) and enter the
update as one matrix product ``sum_l C_l' W_l C_l``: ``2 h k1 t^2`` flops instead of
``d^2`` scattered entries each.

Memory: levels, level pairs and update entries of the light levels, never rows; no dense
``n x q`` or ``q1 x q1`` matrix is formed.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base.precision import float64_scope
from .standardize import Standardization, intercept_column, standardize
from .theta import tril_index

__all__ = [
    "CrossProducts",
    "cross_products",
    "flat_index",
    "index_array",
    "host_index",
    "device_array",
    "on_device",
    "update_pairs",
    "outer_products",
    "unique_keys",
]


class CrossProducts(eqx.Module):
    """Sufficient statistics of a crossed random-effects model (a JAX pytree).

    ``theta`` is laid out in the internal term order ``order`` (see ``_core.theta``).
    """

    A1: jnp.ndarray  # (q1, k1, k1) per-level cross-products of term 1
    tail: jnp.ndarray  # (t, t) upper triangle of R'R (flat_index)
    is_z: jnp.ndarray  # (t,) 1.0 for the tail's Z columns, 0.0 for X and y
    tail_theta: jnp.ndarray  # (t,) theta index of each tail column (diagonal tails), -1: X, y
    lam_row: jnp.ndarray  # entries of the tail's block-diagonal Lambda_t: row,
    lam_col: jnp.ndarray  # column,
    lam_theta: jnp.ndarray  # and theta index (-1 for the identity on X and y)
    upd_level: jnp.ndarray  # (m,) level of term 1 of each update entry
    upd_flat: jnp.ndarray  # (m,) flat_index(a, b, t), a >= b, into the tail
    upd_prod: jnp.ndarray  # (m, k1 * k1) products C_l[j, a] C_l[j', b]
    c_row: jnp.ndarray  # COO of C = Z1'R: row l * k1 + j,
    c_col: jnp.ndarray  # tail column,
    c_val: jnp.ndarray  # value
    n: jnp.ndarray  # number of observations (sum of weights), a float scalar
    heavy_levels: jnp.ndarray  # (h,) heavy levels of term 1 (dense rows of C)
    heavy_entry: jnp.ndarray  # stored (level, column) entries of C in heavy levels,
    heavy_slot: jnp.ndarray  # and the heavy row (position in heavy_levels) of each
    p: int = eqx.field(static=True)
    nlevels: tuple[int, ...] = eqx.field(static=True)  # per term, internal order
    ks: tuple[int, ...] = eqx.field(static=True)  # columns per term, internal order
    order: tuple[int, ...] = eqx.field(static=True)  # internal position -> user term
    # Level multiplicities of a resampled-levels bootstrap (None: every level once);
    # see ``_core.deviance`` ("Duplicated levels").
    level_mult: jnp.ndarray | None = None  # (q1,) copies of each level of term 1
    tail_mult: jnp.ndarray | None = None  # (t,) copies of each tail column (1 for X, y)
    # X and y enter centred and scaled (``_core.standardize``); None: as given.
    standardization: Standardization | None = None
    intercept: int = eqx.field(static=True, default=-1)  # column of ones in X, -1: none
    # The first ``first_terms`` terms share one grouping factor and form term 1 together:
    # its columns are theirs side by side, its ``T1`` block diagonal (``_core.theta``)
    first_terms: int = eqx.field(static=True, default=1)

    @property
    def q1(self) -> int:
        return self.nlevels[0]

    @property
    def k1(self) -> int:
        return int(sum(self.ks[: self.first_terms]))

    @property
    def first_blocks(self) -> tuple[int, ...]:
        """Columns of each term that makes up term 1 (its ``T1``'s diagonal blocks)."""
        return self.ks[: self.first_terms]

    @property
    def first_slices(self) -> tuple[slice, ...]:
        """Columns of term 1 that belong to each of its terms."""
        bounds = np.cumsum([0, *self.first_blocks])
        return tuple(slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]))

    @property
    def tail_terms(self) -> tuple[tuple[int, int], ...]:
        """``(levels, columns)`` of each tail term, in internal order."""
        f = self.first_terms
        return tuple(zip(self.nlevels[f:], self.ks[f:]))

    @property
    def q_tail(self) -> int:
        return int(sum(q * k for q, k in self.tail_terms))

    @property
    def t(self) -> int:
        return self.q_tail + self.p + 1

    @property
    def tail_diagonal(self) -> bool:
        """All tail terms are scalar (``k = 1``): ``Lambda_t`` is diagonal."""
        return all(k == 1 for _, k in self.tail_terms)

    @property
    def theta_offsets(self) -> tuple[int, ...]:
        sizes = [k * (k + 1) // 2 for k in self.ks]
        return tuple(int(v) for v in np.concatenate([[0], np.cumsum(sizes)]))


def _segment_sums(codes: np.ndarray, values: np.ndarray, nlev: int) -> np.ndarray:
    """``out[l, j] = sum_{i: codes[i] = l} values[i, j]`` (a Z' V product), shape (nlev, m)."""
    return np.stack(
        [np.bincount(codes, weights=values[:, j], minlength=nlev) for j in range(values.shape[1])],
        axis=1,
    )


def device_array(a, dtype=None) -> jnp.ndarray:
    """A numpy array (or value) on JAX's default device, without compiling anything
    (``jnp.asarray`` of a numpy array compiles a small copy per new shape: ~10 ms each,
    several per model)."""
    return jax.device_put(np.asarray(a, dtype=dtype))


def host_index(a) -> np.ndarray:
    """An integer index array as JAX will take it, still in numpy: int32 when its values
    allow (half the memory traffic of int64 in the gathers and scatters of every
    evaluation), else int64."""
    a = np.asarray(a)
    small = a.size == 0 or (a.min() >= -(2**31) and a.max() < 2**31)
    return a.astype(np.int32 if small else np.int64, copy=False)


def index_array(a) -> jnp.ndarray:
    """:func:`host_index` on JAX's default device."""
    return device_array(host_index(a))


def on_device(tree):
    """A pytree of numpy arrays (e.g. :class:`CrossProducts` as built) on JAX's default
    device in one ``device_put``: one call for all leaves costs a third of a call per
    leaf (~0.1 ms each, a few dozen leaves per model), and compiles nothing."""
    return jax.device_put(tree)


def unique_keys(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)`` for integer keys in ``[0, bound)``: by a
    table of the keys present (linear time) where ``bound`` is at most eight times the
    number of keys (or 2^20), by sorting otherwise. The same arrays either way; the
    table spares building a model's layout the sort of its ``n x m`` keys (5 of a
    VerbAgg GLMM's 40 ms of host set-up)."""
    keys = np.asarray(keys).ravel()
    if bound > max(8 * keys.shape[0], 1 << 20):
        return np.unique(keys, return_inverse=True)
    present = np.zeros(bound, dtype=bool)
    present[keys] = True
    stored = np.flatnonzero(present)
    rank = np.cumsum(present, dtype=np.int64) - 1
    return stored.astype(keys.dtype, copy=False), rank[keys]


def flat_index(a, b, t: int):
    """Position of the symmetric tail's entry ``(a, b)``, ``a >= b``, in its stored
    ``t x t`` array: ``b * t + a``, the upper triangle in row-major order, which is the
    lower triangle in the column-major order of LAPACK's Cholesky (numpy or JAX)."""
    return b * t + a


def update_pairs(indptr: np.ndarray, cols: np.ndarray, t: int):
    """All within-row pairs of a CSR matrix with sorted columns, ``a >= b`` only.

    Returns (row, :func:`flat_index` of ``(a, b)``, k, k2): for every pair of
    stored elements ``k2 <= k`` in one row, ``a = cols[k]`` and ``b = cols[k2]``, sorted
    by flat index, ties in generation order (the scatter targets of the Schur update).
    """
    nnz = cols.shape[0]
    counts = np.diff(indptr)
    m = int(np.sum(counts * (counts + 1) // 2))
    itype = np.int32 if m < 2**31 else np.int64  # 4 bytes per entry where possible
    row_of = np.repeat(np.arange(indptr.shape[0] - 1, dtype=itype), counts)
    reps = (np.arange(1, nnz + 1) - indptr[row_of]).astype(itype)  # 1 + position in row
    k = np.repeat(np.arange(nnz, dtype=itype), reps)
    first = (np.cumsum(reps, dtype=np.int64) - reps - indptr[row_of]).astype(itype)
    k2 = np.arange(m, dtype=itype)
    k2 -= np.repeat(first, reps)  # k2 runs from the row's first element up to k
    del first, reps
    # Sort by flat index, ties in generation order: one in-place sort of the integer
    # keys flat * m + position (numpy's vectorised sort; a stable argsort is ~10x slower).
    if m and t * t * m < 2**63:
        keys = flat_index(cols[k].astype(np.int64), cols[k2].astype(np.int64), t)
        keys *= m
        keys += np.arange(m, dtype=np.int64)
        keys.sort()
        perm = keys % m
        keys //= m
        flat = keys.astype(np.int32) if t * t < 2**31 else keys
    else:
        flat = flat_index(cols[k].astype(np.int64), cols[k2].astype(np.int64), t)
        perm = np.argsort(flat, kind="stable")
        flat = flat[perm]
    k, k2 = k[perm], k2[perm]
    return row_of[k], flat, k, k2


def heavy_threshold(t: int) -> int:
    """A level of term 1 meeting more than this many tail columns is *heavy* (module
    docstring): past ~t/8 its ``d^2 / 2`` scattered update entries cost more time than
    its share ``2 t^2`` of a dense product (measured on InstEval, t = 1,145: per
    value + gradient 62 ms at t/16, 57 ms at t/8, 58 ms with no heavy levels)."""
    return max(64, t // 8)


def same_factor(codes) -> list[int]:
    """Per term, the first term with the same level codes: terms on one grouping factor
    (``(1 + x || g)`` is ``(1 | g) + (0 + x | g)``) share it."""
    codes = [np.asarray(c) for c in codes]
    ids: list[int] = []
    for i, c in enumerate(codes):
        ids.append(
            next(
                (j for j in range(i) if ids[j] == j and np.array_equal(codes[j], c)),
                i,
            )
        )
    return ids


def term_order(nlevels, ks, factor=None) -> tuple[tuple[int, ...], int]:
    """Internal order of the random terms and how many of its first terms form term 1.

    Term 1 is the grouping factor with the largest block (levels x columns of all its
    terms), which stays block-diagonal: its terms go first (a factor's terms together in
    term 1, so that none of its columns lands in the dense tail); then the others by
    decreasing levels. ``factor``: per term, an id shared by terms on one grouping factor
    (:func:`same_factor`); None: every term its own."""
    factor = list(range(len(ks))) if factor is None else [int(f) for f in factor]
    size: dict[int, int] = {}
    for f, q, k in zip(factor, nlevels, ks):
        size[f] = size.get(f, 0) + int(q) * int(k)
    first = max(size, key=lambda f: size[f])  # the first of the largest, in term order
    members = [i for i, f in enumerate(factor) if f == first]
    rest = sorted((i for i in range(len(ks)) if factor[i] != first), key=lambda i: -nlevels[i])
    return (*members, *rest), len(members)


def tail_width(nlevels, ks, p: int, factor=None) -> int:
    """``t`` of a model with terms of ``nlevels`` levels and ``ks`` columns and ``p`` fixed
    effects: the random-effect columns of every term outside term 1 (:func:`term_order`),
    then ``X`` and ``y``."""
    order, f = term_order(nlevels, ks, factor)
    return sum(int(nlevels[i]) * int(ks[i]) for i in order[f:]) + int(p) + 1


def split_update(indptr: np.ndarray, cols: np.ndarray, t: int, heavy_above: int | None = None):
    """Update entries of the light levels and the dense-row layout of the heavy ones.

    ``indptr``/``cols``: the stored (level, column) entries of ``C`` as CSR by level.
    Returns ``(upd_level, upd_flat, upd_k, upd_k2)`` as :func:`update_pairs` (``k``,
    ``k2`` index the stored entries) for light levels, and ``heavy_levels``,
    ``heavy_entry``, ``heavy_slot``.
    """
    limit = heavy_threshold(t) if heavy_above is None else int(heavy_above)
    counts = np.diff(indptr)
    heavy = counts > limit
    level_of = np.repeat(np.arange(counts.shape[0]), counts)
    light_entries = np.flatnonzero(~heavy[level_of])
    light_indptr = np.concatenate([[0], np.cumsum(np.where(heavy, 0, counts))])
    upd_level, upd_flat, k, k2 = update_pairs(light_indptr, cols[light_entries], t)
    heavy_levels = np.flatnonzero(heavy)
    heavy_entry = np.flatnonzero(heavy[level_of])
    slot = np.full(counts.shape[0], -1)
    slot[heavy_levels] = np.arange(heavy_levels.shape[0])
    return (
        upd_level,
        upd_flat,
        light_entries[k],
        light_entries[k2],
        heavy_levels,
        heavy_entry,
        slot[level_of[heavy_entry]],
    )


def outer_products(vec, k, k2):
    """``vec[k] (x) vec[k2]`` flattened to ``k1 * k1`` (numpy or JAX arrays)."""
    return (vec[k][:, :, None] * vec[k2][:, None, :]).reshape(k.shape[0], vec.shape[1] ** 2)


class _Terms(NamedTuple):
    """The random terms in internal order, with the tail's column layout. Lists run over
    internal terms: term 1 (the first ``first_terms`` user terms, columns side by side),
    then the tail terms."""

    order: tuple[int, ...]  # order[pos]: the user term at internal position pos
    first_terms: int  # user terms that form term 1
    codes: list[np.ndarray]
    Zx: list[np.ndarray]  # (n, k) columns of each term
    nlev: list[int]
    ks: list[int]
    offsets: np.ndarray  # first tail column of each tail term (and qt at the end)
    qt: int  # random-effect columns of the tail
    t: int  # tail width: qt + p + 1
    theta_off: np.ndarray  # first theta entry of each term


def _internal_terms(codes, nlevels, term_X, p: int) -> _Terms:
    """The terms in :func:`term_order`, a grouping factor's terms merged into term 1."""
    order, f = term_order(nlevels, [z.shape[1] for z in term_X], same_factor(codes))
    user_ks = [term_X[i].shape[1] for i in order]
    internal = [order[0], *order[f:]]  # a user term per internal term (term 1: its first)
    nlev = [int(nlevels[i]) for i in internal]
    first = term_X[order[0]] if f == 1 else np.concatenate([term_X[i] for i in order[:f]], 1)
    Zx = [first, *(term_X[i] for i in order[f:])]
    ks = [z.shape[1] for z in Zx]
    offsets = np.concatenate([[0], np.cumsum([q * k for q, k in zip(nlev[1:], ks[1:])])])
    qt = int(offsets[-1])
    user_off = np.concatenate([[0], np.cumsum([k * (k + 1) // 2 for k in user_ks])])
    return _Terms(
        order=order,
        first_terms=f,
        codes=[np.asarray(codes[i], dtype=np.int64) for i in internal],
        Zx=Zx,
        nlev=nlev,
        ks=ks,
        offsets=offsets.astype(np.int64),
        qt=qt,
        t=qt + p + 1,
        theta_off=np.concatenate([[0], user_off[f:]]),
    )


def _first_block_sums(tm: _Terms) -> np.ndarray:
    """``A1[l] = Z1_l' Z1_l``: ``(q1, k1, k1)``."""
    q1, k1, c, Z = tm.nlev[0], tm.ks[0], tm.codes[0], tm.Zx[0]
    A1 = np.zeros((q1, k1, k1))
    for j in range(k1):
        for jj in range(k1):
            A1[:, j, jj] = np.bincount(c, weights=Z[:, j] * Z[:, jj], minlength=q1)
    return A1


def _tail_sums(tm: _Terms, XY: np.ndarray) -> np.ndarray:
    """``[Z_tail X y]'[Z_tail X y]``, stored as its upper triangle (:func:`flat_index`)."""
    t, qt = tm.t, tm.qt
    tail = np.zeros((t, t))
    for r in range(1, len(tm.codes)):
        o, q, k, c, Z = tm.offsets[r - 1], tm.nlev[r], tm.ks[r], tm.codes[r], tm.Zx[r]
        for j in range(k):  # block (r, r): one k x k block per level
            for jj in range(j + 1):
                w = np.bincount(c, weights=Z[:, j] * Z[:, jj], minlength=q)
                tail[o + np.arange(q) * k + j, o + np.arange(q) * k + jj] = w
        for s in range(1, r):  # block (r, s), s before r: lower triangle
            os_, qs, ks_ = tm.offsets[s - 1], tm.nlev[s], tm.ks[s]
            for j in range(k):
                for jj in range(ks_):
                    pair = np.bincount(
                        c * qs + tm.codes[s], weights=Z[:, j] * tm.Zx[s][:, jj], minlength=q * qs
                    ).reshape(q, qs)
                    tail[o + j : o + q * k : k, os_ + jj : os_ + qs * ks_ : ks_] = pair
        for j in range(k):
            tail[qt:, o + j : o + q * k : k] = _segment_sums(c, Z[:, [j]] * XY, q).T
    tail[qt:, qt:] = np.tril(XY.T @ XY)
    return np.ascontiguousarray(tail.T)


def _lambda_index(tm: _Terms, p: int):
    """``Lambda_t`` as COO ``(row, col, theta index)`` (-1: the identity on X and y), and
    each tail column's theta entry for scalar terms (-1 otherwise)."""
    lam_row, lam_col, lam_theta = [], [], []
    tail_theta = np.full(tm.t, -1, dtype=np.int64)
    for r in range(1, len(tm.codes)):
        o, q, k = tm.offsets[r - 1], tm.nlev[r], tm.ks[r]
        rows, cols = tril_index(k)
        base = o + np.repeat(np.arange(q) * k, len(rows))
        lam_row.append(base + np.tile(rows, q))
        lam_col.append(base + np.tile(cols, q))
        lam_theta.append(np.tile(tm.theta_off[r] + np.arange(len(rows)), q))
        if k == 1:
            tail_theta[o : o + q] = tm.theta_off[r]
    lam_row.append(np.arange(tm.qt, tm.t))
    lam_col.append(np.arange(tm.qt, tm.t))
    lam_theta.append(np.full(p + 1, -1))
    lam_row, lam_col, lam_theta = (
        np.concatenate(a).astype(np.int64) for a in (lam_row, lam_col, lam_theta)
    )
    return lam_row, lam_col, lam_theta, tail_theta


def _first_by_tail(tm: _Terms, XY: np.ndarray, p: int):
    """``C = Z1'[Z_tail X y]`` as sorted (level of term 1, tail column, ``k1``-vector)
    triples, the stored pairs only."""
    q1, k1 = tm.nlev[0], tm.ks[0]
    lev, col, vec = [], [], []
    for r in range(1, len(tm.codes)):
        o, q, k = tm.offsets[r - 1], tm.nlev[r], tm.ks[r]
        key, inverse = unique_keys(tm.codes[0] * q + tm.codes[r], q1 * q)
        for jj in range(k):
            v = np.stack(
                [
                    np.bincount(
                        inverse, weights=tm.Zx[0][:, j] * tm.Zx[r][:, jj], minlength=key.shape[0]
                    )
                    for j in range(k1)
                ],
                axis=1,
            )
            lev.append(key // q)
            col.append(o + (key % q) * k + jj)
            vec.append(v)
    zxy = np.stack(
        [_segment_sums(tm.codes[0], tm.Zx[0][:, [j]] * XY, q1) for j in range(k1)], axis=2
    )
    lev.append(np.repeat(np.arange(q1), p + 1))
    col.append(np.tile(np.arange(tm.qt, tm.t), q1))
    vec.append(zxy.reshape(q1 * (p + 1), k1))
    lev, col, vec = np.concatenate(lev), np.concatenate(col), np.concatenate(vec)
    perm = np.lexsort((col, lev))
    return lev[perm], col[perm], vec[perm]


@float64_scope
def cross_products(
    codes: list[np.ndarray],
    nlevels: list[int],
    X: np.ndarray,
    y: np.ndarray,
    term_X: list[np.ndarray] | None = None,
    heavy_above: int | None = None,
    weights: np.ndarray | None = None,
) -> CrossProducts:
    """Build :class:`CrossProducts` in one pass over the rows.

    ``codes[r]`` (level codes), ``nlevels[r]`` and ``term_X[r]`` (``n x k_r`` columns;
    default: an intercept) describe random term ``r``; ``X`` and ``y`` the fixed part.
    ``heavy_above`` overrides :func:`heavy_threshold` (tests use it to force a layout).
    ``weights``: prior weights (residual variance ``sigma^2 / w_i``, all > 0): every row
    then enters scaled by ``sqrt(w_i)`` (``_core.standardize``).
    ``X`` and ``y`` are centred and scaled first (``_core.standardize``), so the tail holds
    ``[Z_tail X_s y_s]``; :func:`interlace._core.deviance.estimates` maps results back.
    Steps: order the terms, then term 1's blocks ``A1``, the tail, ``Lambda_t``'s index
    and ``C = Z1'[Z_tail X y]`` with its Schur update entries.
    """
    n, p = X.shape
    intercept = intercept_column(X)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    X, y, std = standardize(
        np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), w, intercept
    )
    if term_X is None:
        term_X = [np.ones((n, 1)) for _ in codes]
    term_X = [np.asarray(z, dtype=np.float64).reshape(n, -1) for z in term_X]
    if w is not None:  # rows scaled by sqrt(w): weighted cross-products
        r = np.sqrt(w)
        X, y, term_X = X * r[:, None], y * r, [z * r[:, None] for z in term_X]
        std = std._replace(log_weights=float(np.sum(np.log(w))))
    else:  # a value (not None) either way, so weighted models share compiled fits
        std = std._replace(log_weights=0.0)
    tm = _internal_terms(codes, nlevels, term_X, p)
    XY = np.column_stack([X, y]).astype(np.float64)
    q1, k1, t = tm.nlev[0], tm.ks[0], tm.t
    A1 = _first_block_sums(tm)
    tail = _tail_sums(tm, XY)
    lam_row, lam_col, lam_theta, tail_theta = _lambda_index(tm, p)
    lev, col, vec = _first_by_tail(tm, XY, p)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(lev, minlength=q1))])
    (upd_level, upd_flat, upd_k, upd_k2, heavy_levels, heavy_entry, heavy_slot) = split_update(
        indptr, col, t, heavy_above
    )
    c_row = (lev[:, None] * k1 + np.arange(k1)[None, :]).ravel()
    c_col = np.repeat(col, k1)
    c_val = vec.ravel()

    # numpy fields, put on the device in one call (on_device)
    return on_device(
        CrossProducts(
            A1=A1,
            tail=tail,
            is_z=(np.arange(t) < tm.qt).astype(np.float64),
            tail_theta=host_index(tail_theta),
            lam_row=host_index(lam_row),
            lam_col=host_index(lam_col),
            lam_theta=host_index(lam_theta),
            upd_level=host_index(upd_level),
            upd_flat=host_index(upd_flat),
            upd_prod=outer_products(vec, upd_k, upd_k2),
            c_row=host_index(c_row),
            c_col=host_index(c_col),
            c_val=c_val,
            n=np.asarray(float(n), np.float64),
            heavy_levels=host_index(heavy_levels),
            heavy_entry=host_index(heavy_entry),
            heavy_slot=host_index(heavy_slot),
            p=int(p),
            nlevels=tuple(int(nlevels[i]) for i in tm.order),
            ks=tuple(int(np.shape(term_X[i])[1]) for i in tm.order),
            order=tm.order,
            first_terms=tm.first_terms,
            standardization=Standardization(
                *(None if v is None else np.asarray(v, np.float64) for v in std)
            ),
            intercept=intercept,
        )
    )
