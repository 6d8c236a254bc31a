"""Size classes: a small or medium model's cross-products padded to a shared shape.

The compiled fit (:func:`~interlace._core.optimize.minimize_deviance`, then
:func:`~interlace._core.deviance.estimates`) is specialised to the shapes of its
:class:`CrossProducts`. Models of different formulas and data share an executable when
their cross-products are padded to the same size class (``SIZE_CLASSES``): a process
compiles once per class and method, not once per model (DESIGN.md section 4).

The padded cross-products are those of an equivalent model, so the deviance and every
estimate are the model's own (to rounding):

* **Levels of term 1** beyond ``q1``: ``A1 = 0`` gives ``D_l = I`` (``log|D_l| = 0``), and
  they meet no tail column (no update entries, no entries of ``C``).
* **Columns of term 1** beyond ``k1`` (``k1 = 1`` runs as ``k1 = 2``): zero rows of ``A1``
  and ``C``. The deviance does not depend on their ``theta`` entries (their gradient is
  exactly zero), and the BLUPs of the model's own column are unchanged.
* **Tail columns of the random effects** beyond ``q_tail`` (at least one): zero rows of
  the tail, so ``S`` has an identity block there (``log 1 = 0``).
* **Fixed-effect columns** beyond ``p``: an identity block in ``X'X`` (``log 1 = 0``),
  centring 0 and scale 1, so ``beta`` and ``vcov(beta)`` of the model's columns are
  unchanged; for REML, ``n`` grows by the same number so that ``nu = n - p`` stays the
  model's own.
* **Entries** (update products, entries of ``C``, of ``Lambda_t``) beyond the model's:
  zeros, or entries that add zero (a ``Lambda_t`` entry on a padded tail column).
* The tail always takes the block (non-diagonal) ``Lambda_t`` path: one executable
  serves models with and without random slopes outside term 1.

Columns keep their order: the tail is ``[Z_tail, padding, X, padding, y]``. Models with
heavy levels of term 1 (:func:`~interlace._core.crossprod.heavy_threshold`), or larger
than the largest class, keep their exact shapes (their compile is small next to their fit).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from .crossprod import CrossProducts, device_array, host_index, index_array, on_device
from .deviance import Estimates
from .standardize import Standardization
from .theta import block_tril_index, tril_index

__all__ = [
    "SizeClass",
    "SIZE_CLASSES",
    "Padding",
    "size_class",
    "pad_cross_products",
    "pad_theta",
    "unpad_theta",
    "unpad_estimates",
    "update_entries_without_heavy",
    "placeholder",
    "theta_positions",
]


class SizeClass(NamedTuple):
    """Capacities of one size class (each a bound on the model's own size)."""

    q1: int  # levels of term 1
    q_tail: int  # random-effect columns of the tail (strictly more than the model's)
    p: int  # fixed-effect columns
    entries: int  # Schur update entries
    pairs: int  # stored (level of term 1, tail column) pairs of C
    lam: int  # entries of Lambda_t (with the identity on X and y)
    theta: int  # theta entries


# Each class is about 4x the last in levels and 8x in update entries. The dense tail
# costs t^3 / 3 flops per evaluation, so classes stop at 256 tail columns (padded
# evaluations of class 2 take milliseconds); a fourth class (4,096 levels, 1,024 tail
# columns) made a 100-column model's compiled fit 20x slower (benchmarks/RESULTS.md,
# Latency) and was dropped: larger models compile at their own shapes.
SIZE_CLASSES = (
    SizeClass(q1=64, q_tail=32, p=8, entries=1 << 12, pairs=1 << 10, lam=64, theta=8),
    SizeClass(q1=256, q_tail=64, p=8, entries=1 << 15, pairs=1 << 13, lam=128, theta=8),
    SizeClass(q1=1024, q_tail=256, p=16, entries=1 << 18, pairs=1 << 15, lam=512, theta=16),
)

# Whether fits pad to size classes at all (tests compare against exact shapes).
ENABLED = True


class Padding(NamedTuple):
    """How a model's cross-products sit in their padded ones."""

    size: SizeClass
    k1: int  # the model's columns of term 1
    q1: int
    q_tail: int
    p: int
    theta_index: np.ndarray  # position of each internal theta entry in the padded theta


def _k1_padded(k1: int) -> int:
    return max(2, k1)


def _theta_count(cp: CrossProducts) -> tuple[int, int]:
    """``(entries of term 1, entries of the tail terms)`` of ``theta``."""
    n1 = cp.theta_offsets[cp.first_terms]
    return n1, cp.theta_offsets[-1] - n1


def size_class(cp: CrossProducts) -> SizeClass | None:
    """The smallest class that holds ``cp``, or None (heavy levels, too large)."""
    if (
        not ENABLED
        or cp.heavy_levels.shape[0]
        or cp.level_mult is not None
        or cp.tail_mult is not None
        or cp.standardization is None
    ):
        return None
    K1 = _k1_padded(cp.k1)
    n1, n_tail = _theta_count(cp)
    lam = cp.lam_row.shape[0]
    pairs = cp.c_row.shape[0] // cp.k1
    for size in SIZE_CLASSES:
        if (
            cp.q1 <= size.q1
            and cp.q_tail < size.q_tail
            and cp.p <= size.p
            and cp.upd_level.shape[0] <= size.entries
            and pairs <= size.pairs
            and lam + size.p - cp.p <= size.lam
            and K1 * (K1 + 1) // 2 + n_tail <= size.theta
        ):
            return size
    return None


def update_entries_without_heavy(cp: CrossProducts) -> int:
    """Update entries ``cp`` would have if no level of term 1 were heavy: its own plus
    ``d (d + 1) / 2`` for a heavy level meeting ``d`` tail columns."""
    d = np.bincount(np.asarray(cp.heavy_slot), minlength=cp.heavy_levels.shape[0])
    return int(cp.upd_level.shape[0] + np.sum(d * (d + 1) // 2))


def _column_map(cp: CrossProducts, size: SizeClass) -> np.ndarray:
    """New position of each tail column: ``[Z_tail, pad, X, pad, y]``."""
    qt, p, t = cp.q_tail, cp.p, cp.t
    T = size.q_tail + size.p + 1
    cols = np.arange(t)
    return np.where(cols < qt, cols, np.where(cols < qt + p, size.q_tail + (cols - qt), T - 1))


def theta_positions(cp: CrossProducts, K1: int) -> np.ndarray:
    """Position of each internal theta entry in the padded layout (term 1 as ``K1 x K1``;
    a block-diagonal term 1's entries off its blocks are never set, so they stay 0)."""
    n1, n_tail = _theta_count(cp)
    rows, cols = block_tril_index(cp.first_blocks)
    big = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(*tril_index(K1)))}
    first = [big[(int(r), int(c))] for r, c in zip(rows, cols)]
    return np.concatenate([first, K1 * (K1 + 1) // 2 + np.arange(n_tail)]).astype(np.int64)


def _remap_theta(index: np.ndarray, theta_index: np.ndarray) -> np.ndarray:
    """Theta indices (-1: none) moved to the padded layout."""
    index = np.asarray(index)
    return np.where(index >= 0, theta_index[np.maximum(index, 0)], -1)


def _padded(a: np.ndarray, size: int, fill) -> np.ndarray:
    out = np.full((size,) + a.shape[1:], fill, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def pad_cross_products(cp: CrossProducts, *, reml: bool) -> tuple[CrossProducts, Padding] | None:
    """``cp`` padded to its size class (module docstring), or None if it has none."""
    size = size_class(cp)
    if size is None:
        return None
    k1, K1, q1, qt, p, t = cp.k1, _k1_padded(cp.k1), cp.q1, cp.q_tail, cp.p, cp.t
    T = size.q_tail + size.p + 1
    cmap = _column_map(cp, size)
    theta_index = theta_positions(cp, K1)
    pad_x = size.q_tail + np.arange(p, size.p)  # padded fixed-effect columns

    A1 = np.zeros((size.q1, K1, K1))
    A1[:q1, :k1, :k1] = np.asarray(cp.A1)
    tail = np.zeros((T, T))
    tail[np.ix_(cmap, cmap)] = np.asarray(cp.tail)
    tail[pad_x, pad_x] = 1.0
    is_z = (np.arange(T) < size.q_tail).astype(np.float64)
    tail_theta = np.full(T, -1, dtype=np.int64)
    tail_theta[cmap] = _remap_theta(cp.tail_theta, theta_index)

    dummy = size.q_tail - 1  # a padded random-effect column: its rows of the tail are 0
    lam_row = np.concatenate([cmap[np.asarray(cp.lam_row)], pad_x])
    lam_col = np.concatenate([cmap[np.asarray(cp.lam_col)], pad_x])
    lam_theta = np.concatenate([_remap_theta(cp.lam_theta, theta_index), np.full(pad_x.size, -1)])

    flat = np.asarray(cp.upd_flat).astype(np.int64)
    upd_flat = cmap[flat // t] * T + cmap[flat % t]  # column maps keep the order
    prod = np.asarray(cp.upd_prod).reshape(-1, k1, k1)
    upd_prod = np.zeros((prod.shape[0], K1, K1))
    upd_prod[:, :k1, :k1] = prod

    c_row = np.asarray(cp.c_row).astype(np.int64)
    c_row = (c_row // k1) * K1 + c_row % k1

    std = cp.standardization
    standardization = Standardization(
        x_shift=_padded(np.asarray(std.x_shift), size.p, 0.0),
        x_scale=_padded(np.asarray(std.x_scale), size.p, 1.0),
        y_shift=std.y_shift,
        y_scale=std.y_scale,
        log_weights=std.log_weights,
    )
    n = float(np.asarray(cp.n)) + (size.p - p if reml else 0)  # REML: nu = n - p, its own
    pairs = size.pairs * K1
    # numpy fields (cp's others are on the device already), put there in one call
    padded = on_device(
        dataclasses.replace(
            cp,
            A1=A1,
            tail=tail,
            is_z=is_z,
            tail_theta=host_index(tail_theta),
            lam_row=host_index(_padded(lam_row, size.lam, dummy)),
            lam_col=host_index(_padded(lam_col, size.lam, dummy)),
            lam_theta=host_index(_padded(lam_theta, size.lam, -1)),
            upd_level=host_index(_padded(np.asarray(cp.upd_level), size.entries, 0)),
            upd_flat=host_index(_padded(upd_flat, size.entries, T * T - 1)),
            upd_prod=_padded(upd_prod.reshape(-1, K1 * K1), size.entries, 0.0),
            c_row=host_index(_padded(c_row, pairs, 0)),
            c_col=host_index(_padded(cmap[np.asarray(cp.c_col)], pairs, 0)),
            c_val=_padded(np.asarray(cp.c_val), pairs, 0.0),
            n=np.asarray(n, np.float64),
            heavy_levels=host_index(np.zeros(0, np.int64)),
            heavy_entry=host_index(np.zeros(0, np.int64)),
            heavy_slot=host_index(np.zeros(0, np.int64)),
            p=size.p,
            # Nominal layout of the padded model: term 1, then one tail term of 2-column
            # blocks (so that the block Lambda_t path runs for every model of the class).
            nlevels=(size.q1, size.q_tail // 2),
            ks=(K1, 2),
            order=(0, 1),
            first_terms=1,
            standardization=standardization,
        )
    )
    return padded, Padding(size=size, k1=k1, q1=q1, q_tail=qt, p=p, theta_index=theta_index)


def placeholder(size: SizeClass, *, k1: int = 1, intercept: int = 0) -> CrossProducts:
    """Cross-products with the shapes (not the values) of ``size``'s padded models, term 1
    with ``k1`` columns and the intercept in column ``intercept``: what a warm-up compiles
    the class's fit for (``python -m interlace warmup``)."""
    K1, T = _k1_padded(k1), size.q_tail + size.p + 1
    ints = index_array(np.zeros(0, np.int64))
    return CrossProducts(
        A1=device_array(np.zeros((size.q1, K1, K1))),
        tail=device_array(np.eye(T)),
        is_z=device_array((np.arange(T) < size.q_tail).astype(np.float64)),
        tail_theta=index_array(np.full(T, -1)),
        lam_row=index_array(np.zeros(size.lam)),
        lam_col=index_array(np.zeros(size.lam)),
        lam_theta=index_array(np.full(size.lam, -1)),
        upd_level=index_array(np.zeros(size.entries)),
        upd_flat=index_array(np.full(size.entries, T * T - 1)),
        upd_prod=device_array(np.zeros((size.entries, K1 * K1))),
        c_row=index_array(np.zeros(size.pairs * K1)),
        c_col=index_array(np.zeros(size.pairs * K1)),
        c_val=device_array(np.zeros(size.pairs * K1)),
        n=device_array(10.0 * T, np.float64),
        heavy_levels=ints,
        heavy_entry=ints,
        heavy_slot=ints,
        p=size.p,
        nlevels=(size.q1, size.q_tail // 2),
        ks=(K1, 2),
        order=(0, 1),
        standardization=Standardization(
            device_array(np.zeros(size.p)),
            device_array(np.ones(size.p)),
            device_array(0.0, np.float64),
            device_array(1.0, np.float64),
            device_array(0.0, np.float64),
        ),
        intercept=intercept,
    )


def pad_theta(theta, padding: Padding) -> np.ndarray:
    """An internal ``theta`` in the padded layout (padded entries 0: they do not matter);
    numpy, which a jitted call takes as it would a device array, without a ``device_put``
    (~0.1 ms, once per evaluation)."""
    out = np.zeros(padding.size.theta)
    out[padding.theta_index] = np.asarray(theta)
    return out


def unpad_theta(theta_padded, padding: Padding) -> np.ndarray:
    """The model's internal ``theta`` (or its gradient) from the padded layout."""
    return np.asarray(theta_padded)[padding.theta_index]


def unpad_estimates(est: Estimates, padding: Padding) -> Estimates:
    """The model's own :class:`Estimates` from those of its padded cross-products."""
    p = padding.p
    return Estimates(
        beta=np.asarray(est.beta)[:p],
        b1=np.asarray(est.b1)[: padding.q1, : padding.k1],
        b_tail=np.asarray(est.b_tail)[: padding.q_tail],
        sigma2=np.asarray(est.sigma2),
        fe_cov=np.asarray(est.fe_cov)[:p, :p],
        deviance=np.asarray(est.deviance),
    )
