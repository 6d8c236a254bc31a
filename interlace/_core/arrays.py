"""A model's data as a JAX pytree, and its cross-products as a JAX function of the data.

:func:`cross_products` (numpy) is the fast one-pass builder for fitting. This module
gives the same :class:`CrossProducts` as a pure JAX function of the row data
``(weights, X, y, term columns)``, with the index structure (which depends only on the
level codes) precomputed once. That makes the deviance differentiable in ``y`` and
``X``, lets ``jax.vmap`` run many responses or many weight vectors (bootstrap
resamples, case deletions) through one compiled fit, and lets the row sums shard
across devices.

Row ``i`` touches ``m = sum_{tail} k_r + p + 1`` tail columns (``row_cols[i]``), with
values ``v_i = [x_{r,i} ..., x_i, y_i]``. Then, with weights ``w``:

* ``A1[l] = sum_{i in l} w_i x1_i x1_i'``;
* ``R'R = sum_i w_i v_i v_i'`` scattered to ``(row_cols[i, a], row_cols[i, b])``;
* ``C = Z1'R``: ``sum_i w_i x1_i v_ia`` scattered to the stored ``(level, column)`` pair
  ``pos[i, a]``; the Schur update products are ``C``'s outer products (``_core.crossprod``).
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .centring import Centring
from .crossprod import (
    CrossProducts,
    cross_products,
    device_array,
    flat_index,
    index_array,
    outer_products,
    split_update,
    unique_keys,
)
from .standardize import Standardization, standardize
from .theta import to_internal, to_user

__all__ = [
    "ModelArrays",
    "model_arrays_from",
    "cross_products_of",
    "user_ks",
    "theta_to_internal",
    "theta_to_user",
]


class ModelArrays(eqx.Module):
    """Row data of a model plus the static index structure of its cross-products.

    Differentiable leaves: ``y`` (n,), ``X`` (n, p), ``term_X`` (per term, internal
    order, (n, k)), ``weights`` (n,). Replace them with :meth:`replace` (e.g. a
    response produced by upstream JAX code); the structure stays valid as long as the
    level codes do not change.
    """

    y: jnp.ndarray
    X: jnp.ndarray
    term_X: tuple
    weights: jnp.ndarray
    template: CrossProducts  # index arrays (values of the original data)
    codes1: jnp.ndarray  # (n,) level of term 1
    row_cols: jnp.ndarray  # (n, m) tail column of each row value
    pair_flat: jnp.ndarray  # (n, m(m+1)/2) flat tail index of each within-row pair
    pos: jnp.ndarray  # (n, m) stored (level, column) pair of C for each row value
    upd_k: jnp.ndarray  # (entries,) first factor of each Schur update product
    upd_k2: jnp.ndarray  # (entries,) second factor
    pair_a: tuple = eqx.field(static=True)  # within-row value pairs (a >= b)
    pair_b: tuple = eqx.field(static=True)
    n_stored: int = eqx.field(static=True)  # stored (level, column) pairs of C
    fe_names: tuple = eqx.field(static=True, default=())  # labels for results
    theta_names: tuple = eqx.field(static=True, default=())
    # Copies of each level in a resampled-levels bootstrap (``CrossProducts``' fields of
    # the same names; None: each level once). Rows then carry, as ``weights``, the
    # product of their levels' copy counts.
    level_mult: jnp.ndarray | None = None
    tail_mult: jnp.ndarray | None = None
    # Prior weights (residual variance sigma^2 / w_i; ``_core.standardize``), apart from
    # ``weights`` (row multiplicities: how many times a row counts). None: all 1.
    prior_weights: jnp.ndarray | None = None
    # (q1, p + 1) stored (level, column) pair of C for each level of term 1 and each
    # column of [X y] (every level meets them all); None: a level has no rows
    xy_pos: jnp.ndarray | None = None
    # (p,) 1 for a column of ``X`` that is padding (zero in every row), else 0; added to
    # the tail's diagonal, so that padded coefficients are 0 and add ``log 1 = 0`` to
    # every determinant. Data, not a static count: a GLMM's fit shares its executable
    # across fixed-effect widths (``_model.glmm_estimate``). None: no padding
    fixed_padding: jnp.ndarray | None = None
    # Random-slope columns far from 0 that :func:`~interlace._core.fitting.fit_arrays`
    # searches centred (:mod:`interlace._core.centring`; user term order). Set by the
    # public ``interlace.model_arrays``; the shifts are recomputed from ``term_X`` at each
    # fit, so arrays with replaced columns stay exact. None: searched as they are
    centring: Centring | None = None

    @property
    def first_columns(self) -> jnp.ndarray:
        """``(n, k1)`` columns of term 1 (its terms' side by side, ``CrossProducts``)."""
        f = self.template.first_terms
        return self.term_X[0] if f == 1 else jnp.concatenate(self.term_X[:f], axis=1)

    @property
    def tail_columns(self) -> tuple:
        """``(n, k)`` columns of each tail term, in internal order."""
        return tuple(self.term_X[self.template.first_terms :])

    def replace(self, **leaves) -> ModelArrays:
        """A copy with some of ``y``, ``X``, ``term_X``, ``weights`` replaced."""
        names = list(leaves)
        return eqx.tree_at(
            lambda m: [getattr(m, k) for k in names], self, [leaves[k] for k in names]
        )


def model_arrays_from(
    codes,
    nlevels,
    X,
    y,
    term_X,
    weights=None,
    fe_names=(),
    theta_names=(),
    heavy_above: int | None = None,
    template: CrossProducts | None = None,
    prior_weights=None,
) -> ModelArrays:
    """Precompute the structure for ``codes`` and wrap the data (term order as given;
    stored internally in :class:`CrossProducts`' order). ``template``: the
    :func:`cross_products` of the same data (unit weights), if already built."""
    n, p = X.shape
    if template is None:
        template = cross_products(
            codes, nlevels, X, y, term_X, heavy_above=heavy_above, weights=prior_weights
        )
    elif heavy_above is None and template.heavy_levels.shape[0] == 0:
        heavy_above = template.t  # a template built without heavy levels (size classes)
    order = template.order
    codes = [np.asarray(codes[i], dtype=np.int64) for i in order]
    term_X = [np.asarray(term_X[i], dtype=np.float64).reshape(n, -1) for i in order]
    nlev, ks, t, f = template.nlevels, template.ks, template.t, template.first_terms
    qt = template.q_tail
    cols, offset = [], 0
    for c, q, k in zip(codes[f:], nlev[f:], ks[f:]):
        cols.append(offset + c[:, None] * k + np.arange(k)[None, :])
        offset += q * k
    cols.append(np.broadcast_to(np.arange(qt, t), (n, p + 1)))
    row_cols = np.concatenate(cols, axis=1).astype(np.int64)
    m = row_cols.shape[1]
    pair_a, pair_b = (np.asarray(v) for v in zip(*[(a, b) for a in range(m) for b in range(a + 1)]))
    keys = codes[0][:, None] * t + row_cols
    stored, pos = unique_keys(keys, nlev[0] * t)
    lev, col = stored // t, stored % t
    indptr = np.concatenate([[0], np.cumsum(np.bincount(lev, minlength=nlev[0]))])
    upd_level, upd_flat, upd_k, upd_k2, _, heavy_entry, _ = split_update(
        indptr, col, t, heavy_above
    )
    if not (
        np.array_equal(upd_flat, np.asarray(template.upd_flat))
        and np.array_equal(upd_level, np.asarray(template.upd_level))
        and np.array_equal(heavy_entry, np.asarray(template.heavy_entry))
    ):
        raise AssertionError("internal: JAX and numpy cross-product layouts differ")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    xy_keys = np.arange(nlev[0])[:, None] * t + np.arange(qt, t)[None, :]
    xy_pos = np.minimum(np.searchsorted(stored, xy_keys), stored.shape[0] - 1)
    all_met = bool(np.array_equal(stored[xy_pos], xy_keys))
    return ModelArrays(
        y=device_array(y, np.float64),
        X=device_array(X, np.float64),
        term_X=tuple(device_array(z) for z in term_X),
        weights=device_array(w),
        template=template,
        codes1=index_array(codes[0]),
        row_cols=index_array(row_cols),
        pair_flat=index_array(flat_index(row_cols[:, pair_a], row_cols[:, pair_b], t)),
        pos=index_array(pos.reshape(n, m)),
        upd_k=index_array(upd_k),
        upd_k2=index_array(upd_k2),
        pair_a=tuple(int(a) for a in pair_a),
        pair_b=tuple(int(b) for b in pair_b),
        n_stored=int(stored.shape[0]),
        fe_names=tuple(fe_names),
        theta_names=tuple(theta_names),
        prior_weights=None if prior_weights is None else device_array(prior_weights, np.float64),
        xy_pos=index_array(xy_pos) if all_met else None,
    )


def cross_products_of(ma: ModelArrays, standardized: bool = True) -> CrossProducts:
    """:class:`CrossProducts` of ``ma``'s current data: pure JAX, so ``grad`` (in ``y``,
    ``X``, term columns, weights), ``vmap`` and sharding over rows apply.

    ``standardized=False``: ``X`` and ``y`` enter as they are (an identity
    :class:`Standardization`), for callers whose columns are centred and scaled already
    and that never read the residual sum of squares of ``y`` (a GLMM's PIRLS,
    ``_core.pirls``)."""
    cp = ma.template
    q1 = cp.q1
    n = jnp.sum(ma.weights)  # rows, each counted as often as its multiplicity
    w = ma.weights if ma.prior_weights is None else ma.weights * ma.prior_weights
    if standardized:
        # ``_core.standardize``. Its shifts and scales are constants to derivatives: the
        # transformation is exact for any of them (every result maps back with the same
        # ones), so the derivatives are too, without the costly reverse pass through the
        # weighted means (4x the cross-products' own under ``vmap``)
        _, _, std = standardize(*jax.lax.stop_gradient((ma.X, ma.y, w)), cp.intercept, xp=jnp)
        X = (ma.X - std.x_shift) / std.x_scale
        y = (ma.y - std.y_shift) / std.y_scale
    else:
        p = ma.X.shape[1]
        std = Standardization(np.zeros(p), np.ones(p), 0.0, 1.0)
        X, y = ma.X, ma.y
    if ma.prior_weights is not None:
        std = std._replace(log_weights=jnp.sum(ma.weights * jnp.log(ma.prior_weights)))
    x1 = ma.first_columns
    A1 = jax.ops.segment_sum(
        w[:, None, None] * x1[:, :, None] * x1[:, None, :], ma.codes1, num_segments=q1
    )
    if ma.xy_pos is None:
        tail, vec = _sums_by_pairs(ma, w, X, y)
    else:
        tail, vec = _sums_by_blocks(ma, ma.xy_pos, w, X, y)
    if ma.fixed_padding is not None:
        cols = np.arange(cp.q_tail, cp.q_tail + cp.p)
        tail = tail.at[cols, cols].add(ma.fixed_padding)
    return dataclasses.replace(
        cp,
        A1=A1,
        tail=tail,
        upd_prod=outer_products(vec, ma.upd_k, ma.upd_k2),
        c_val=vec.ravel(),
        n=n,
        level_mult=ma.level_mult,
        tail_mult=ma.tail_mult,
        standardization=std,
    )


def _sums_by_pairs(ma: ModelArrays, w, X, y):
    """The tail ``[Z_tail X y]' W [Z_tail X y]`` and ``C``'s stored values, row by row:
    every within-row pair of values scattered to its entry."""
    cp = ma.template
    V = jnp.concatenate([*ma.tail_columns, X, y[:, None]], axis=1)  # (n, m)
    pa, pb = np.asarray(ma.pair_a), np.asarray(ma.pair_b)
    tail = jax.ops.segment_sum(
        (w[:, None] * V[:, pa] * V[:, pb]).ravel(), ma.pair_flat.ravel(), num_segments=cp.t**2
    ).reshape(cp.t, cp.t)
    contrib = w[:, None, None] * V[:, :, None] * ma.first_columns[:, None, :]  # (n, m, k1)
    vec = jax.ops.segment_sum(contrib.reshape(-1, cp.k1), ma.pos.ravel(), num_segments=ma.n_stored)
    return tail, vec


def _sums_by_blocks(ma: ModelArrays, xy_pos: jnp.ndarray, w, X, y):
    """:func:`_sums_by_pairs` with the columns every row has, ``XY = [X y]``, as dense
    blocks: ``XY' W XY`` a matrix product, ``Z_tail' W XY`` and ``Z1' W XY`` sums of rows
    by level; only pairs within ``Z_tail`` and ``C``'s ``Z_tail`` part are scattered
    entry by entry. The same numbers, with far fewer scattered values (and a cheap
    reverse mode: matrix products and gathers)."""
    cp = ma.template
    qt, t, k1 = cp.q_tail, cp.t, cp.k1
    XY = jnp.concatenate([X, y[:, None]], axis=1)  # (n, p + 1)
    wXY = w[:, None] * XY
    tail = jnp.zeros((t, t), XY.dtype).at[qt:, qt:].set(jnp.triu(XY.T @ wXY))
    x1 = ma.first_columns
    c_xy = jax.ops.segment_sum(
        wXY[:, :, None] * x1[:, None, :], ma.codes1, num_segments=cp.q1
    )  # (q1, p + 1, k1)
    vec = jnp.zeros((ma.n_stored, k1), XY.dtype).at[xy_pos.ravel()].set(c_xy.reshape(-1, k1))
    if qt:
        Z = jnp.concatenate(ma.tail_columns, axis=1)  # (n, kz) values of the tail terms
        kz = Z.shape[1]
        zc = ma.row_cols[:, :kz]  # their tail columns, increasing along each row
        wZ = w[:, None] * Z
        z_xy = jax.ops.segment_sum(
            (wZ[:, :, None] * XY[:, None, :]).reshape(-1, XY.shape[1]),
            zc.ravel(),
            num_segments=qt,
        )  # (qt, p + 1)
        tail = tail.at[:qt, qt:].set(z_xy)
        ja, jb = np.tril_indices(kz)  # pairs within Z_tail, ja >= jb
        tail = tail.at[zc[:, jb], zc[:, ja]].add(wZ[:, ja] * Z[:, jb])
        vec = vec.at[ma.pos[:, :kz].ravel()].add((wZ[:, :, None] * x1[:, None, :]).reshape(-1, k1))
    return tail, vec


def user_ks(ma: ModelArrays) -> list[int]:
    """Columns ``k`` of each random term, in the user's term order."""
    ks = [0] * len(ma.template.order)
    for pos, user in enumerate(ma.template.order):
        ks[user] = ma.template.ks[pos]
    return ks


def theta_to_internal(theta, ma: ModelArrays):
    """``theta`` from the user's term order to ``ma``'s internal one."""
    return to_internal(theta, user_ks(ma), ma.template.order)


def theta_to_user(theta_int, ma: ModelArrays):
    """``theta`` from ``ma``'s internal term order to the user's."""
    return to_user(theta_int, user_ks(ma), ma.template.order)
