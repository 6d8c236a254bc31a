"""Size classes for a single GLMM fit: a small model's row data padded to shared shapes.

A GLMM's evaluation (``_model.glmm_estimate``: PIRLS, then the differentiated Laplace
step) works on the rows, whose working weights move at every iteration, so it cannot
collapse them to cross-products as the linear model's size classes do
(:mod:`~interlace._core.buckets`). Its compiled evaluation is specialised to the shapes
and index structure of :class:`~interlace._core.arrays.ModelArrays`, so every model with
other rows or levels compiled again (2-5 s on 2 cores): a fit on a subset, a fold, or a
response with other missing rows. Here a small model's arrays are padded to its class
(:func:`glmm_size_class`: rows, levels of term 1 and tail columns rounded up on
:func:`ladder`, at most 1.5x each), so that models of other data and fixed effects with
the same random-effect layout and family share one executable (DESIGN.md section 4).
Padding costs 6-23% of a compiled fit (``benchmarks/RESULTS.md``, GLMM size classes).
The padded arrays are those of an equivalent model:

* **Rows** beyond ``n``: prior weight 0 (so working weights, deviance residuals and
  log-density terms 0: every family multiplies them by the prior weight), response 0,
  offset 0, every column 0, level 0 of term 1.
* **Levels of term 1** beyond ``q1``: no rows, so ``A1 = 0``, ``D_l = I`` (``log 1 = 0``)
  and modes 0.
* **Random-effect columns of the tail** beyond ``q_tail`` (at least one): no values, so
  ``S`` has an identity block there (``log 1 = 0``).
* **Fixed-effect columns**: the model arrays' own shared width
  (``glmm_estimate.shared_fixed_width``), zero columns with 1 on the tail's diagonal.
* ``C = Z1'[Z_tail X z]`` is stored dense, every level of term 1 a dense row of ``C``
  (the heavy-level layout of ``_core.crossprod``) with no scattered update entries, so
  the index structure depends on the class alone. Only models whose levels are all
  dense at their own shapes (``GlmmProblem``'s rule) are padded: for them the layout is
  the same, and only the sizes grow.

Models with one grouping factor (no tail term) keep their exact shapes: padded, they
would carry a tail of empty columns and the code of a model with a tail term. They were
padded at first, and a profile's search far along a separated coefficient then gave NaN
where the exact model's value stayed finite (``tests/test_glmm_profile.py``): the tail's
factorisation failed with the fixed effects' block. That failure is handled now
(``pirls.working_factor``), but padding them has not been brought back and measured.
Term 1's columns ``k1`` and the number of tail terms are kept, and every tail term must
be scalar (``(1 | item)``: the diagonal ``Lambda_t`` that the Laplace step's
one-factorisation log-determinant needs). Larger models (:data:`MAX_ROWS`, ...), tail
slopes, quadrature (``nAGQ > 1``) and the batched engine (``_model.glmm_many``) keep
their exact shapes: for large models the compile is small next to the fit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .arrays import ModelArrays
from .buckets import theta_positions
from .crossprod import CrossProducts, host_index, on_device

__all__ = [
    "GlmmSizeClass",
    "ladder",
    "MAX_ROWS",
    "MAX_LEVELS",
    "MAX_TAIL",
    "GlmmPadding",
    "glmm_size_class",
    "pad_glmm_arrays",
    "pad_rows",
    "pad_theta",
    "unpad_theta",
    "unpad_modes",
]


class GlmmSizeClass(NamedTuple):
    """The shapes of one GLMM size class."""

    n: int  # rows (at least the model's)
    q1: int  # levels of term 1 (at least the model's)
    k1: int  # columns of term 1 (the model's)
    q_tail: int  # random-effect columns of the tail (more than the model's)
    kz: int  # random-effect values per row in the tail: its scalar terms (the model's)
    p: int  # fixed-effect columns (the model arrays')
    theta: int  # theta entries: term 1's k1 (k1 + 1) / 2, then one per tail term


# Whether single GLMM fits pad to size classes at all (tests compare against exact shapes).
ENABLED = True


class GlmmPadding(NamedTuple):
    """How a model's arrays sit in their padded ones."""

    size: GlmmSizeClass
    n: int
    q1: int
    k1: int
    q_tail: int
    p: int  # fixed-effect columns of the model arrays (shared width included)
    theta_index: np.ndarray  # position of each internal theta entry in the padded theta


def _tail_values(ma: ModelArrays) -> int:
    return int(sum(x.shape[1] for x in ma.tail_columns))


def ladder(value: int, low: int) -> int:
    """The least of ``low * 2^j`` and ``1.5 low * 2^j`` (``j >= 0``) that is at least
    ``value``: a capacity at most 1.5x (2x below ``low``'s next step) the model's own."""
    cap = low
    while cap < value:
        cap = cap * 3 // 2 if (cap & (cap - 1)) == 0 else cap * 4 // 3
    return cap


# Bounds of the classes: larger models keep their exact shapes (their compile is small
# next to their fit), and so do models whose levels of term 1 are not all dense rows
# of C (a sparse crossing, where the dense layout would cost more than padding saves)
MAX_ROWS, MAX_LEVELS, MAX_TAIL = 1 << 15, 1 << 11, 1 << 8


def glmm_size_class(ma: ModelArrays) -> GlmmSizeClass | None:
    """The class of ``ma`` (each capacity on :func:`ladder`), or None."""
    cp = ma.template
    n, p = ma.X.shape
    kz = _tail_values(ma)
    if (
        not ENABLED
        or not cp.tail_diagonal
        or ma.prior_weights is not None
        or ma.level_mult is not None
        or ma.tail_mult is not None
        or cp.heavy_levels.shape[0] != cp.q1
        or cp.q_tail == 0
        or n > MAX_ROWS
        or cp.q1 > MAX_LEVELS
        or cp.q_tail >= MAX_TAIL
        or kz > 4
    ):
        return None
    return GlmmSizeClass(
        n=ladder(n, 256),
        q1=ladder(cp.q1, 16),
        k1=cp.k1,
        q_tail=ladder(cp.q_tail + 1, 8),
        kz=kz,
        p=p,
        theta=cp.k1 * (cp.k1 + 1) // 2 + kz,
    )


def pad_rows(a, padding: GlmmPadding, fill=0.0) -> np.ndarray:
    """A row array (numpy; rows first) padded to the class's rows with ``fill``."""
    a = np.asarray(a)
    out = np.full((padding.size.n,) + a.shape[1:], fill, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def _template(size: GlmmSizeClass, tail_theta: np.ndarray) -> CrossProducts:
    """The class's index structure: ``C`` dense (every level of term 1 heavy, every
    (level, tail column) pair stored, level-major), ``Lambda_t`` diagonal, and zeros where
    the cross-products go (``_core.arrays.cross_products_of`` fills them)."""
    qt, P, K1 = size.q_tail, size.p, size.k1
    T = qt + P + 1
    stored = np.arange(size.q1 * T)
    level, col = stored // T, stored % T
    diag = np.arange(T)
    return CrossProducts(
        A1=np.zeros((size.q1, K1, K1)),
        tail=np.zeros((T, T)),
        is_z=(diag < qt).astype(np.float64),
        tail_theta=host_index(tail_theta),
        lam_row=host_index(diag),
        lam_col=host_index(diag),
        lam_theta=host_index(tail_theta),
        upd_level=host_index(np.zeros(0, np.int64)),
        upd_flat=host_index(np.zeros(0, np.int64)),
        upd_prod=np.zeros((0, K1 * K1)),
        c_row=host_index((level[:, None] * K1 + np.arange(K1)[None, :]).ravel()),
        c_col=host_index(np.repeat(col, K1)),
        c_val=np.zeros(stored.size * K1),
        n=np.asarray(0.0),
        heavy_levels=host_index(np.arange(size.q1)),
        heavy_entry=host_index(stored),
        heavy_slot=host_index(level),
        p=P,
        nlevels=(size.q1, qt),
        ks=(K1, 1),
        order=(0, 1),
        standardization=None,
        intercept=-1,  # static, and not read by a GLMM's unstandardized cross-products
        first_terms=1,
    )


def pad_glmm_arrays(ma: ModelArrays) -> tuple[ModelArrays, GlmmPadding] | None:
    """``ma`` padded to its class (module docstring), or None if it has none. The
    response side (``GlmmData``) is padded with :func:`pad_rows` by the caller."""
    size = glmm_size_class(ma)
    if size is None:
        return None
    cp = ma.template
    n, p = ma.X.shape
    q1, k1, qt = cp.q1, cp.k1, cp.q_tail
    qtc, P, K1 = size.q_tail, size.p, size.k1
    T = qtc + P + 1
    theta_index = theta_positions(cp, K1)
    padding = GlmmPadding(size, n, q1, k1, qt, p, theta_index)

    # the model's tail theta index of each of its Z columns, in the padded layout; the
    # padded Z columns and X, y take the identity (-1)
    tail_theta = np.full(T, -1, dtype=np.int64)
    own = np.asarray(cp.tail_theta)[:qt]
    tail_theta[:qt] = np.where(own >= 0, theta_index[np.maximum(own, 0)], -1)

    codes1 = pad_rows(np.asarray(ma.codes1), padding, 0)
    # the class keeps the model's k1, kz and fixed-effect width: only rows are added
    x1 = pad_rows(np.asarray(ma.first_columns), padding)
    z = pad_rows(np.concatenate([np.asarray(v) for v in ma.tail_columns], axis=1), padding)
    zcols = pad_rows(np.asarray(ma.row_cols)[:, : size.kz], padding, qt)  # qt: padded Z column
    row_cols = np.concatenate(
        [zcols, np.broadcast_to(qtc + np.arange(P + 1), (size.n, P + 1))], axis=1
    )
    fixed = np.zeros(P) if ma.fixed_padding is None else np.asarray(ma.fixed_padding)
    xy_pos = np.arange(size.q1)[:, None] * T + (qtc + np.arange(P + 1))[None, :]
    padded = ModelArrays(
        y=pad_rows(np.asarray(ma.y, dtype=np.float64), padding),
        X=pad_rows(np.asarray(ma.X, dtype=np.float64), padding),
        term_X=(x1, z),
        weights=pad_rows(np.asarray(ma.weights, dtype=np.float64), padding),
        template=_template(size, tail_theta),
        codes1=host_index(codes1),
        row_cols=host_index(row_cols),
        # every level meets every column of [X z] (xy_pos), so the cross-products are
        # summed by blocks and the per-pair layout is never read
        pair_flat=host_index(np.zeros((size.n, 0), np.int64)),
        pos=host_index(codes1[:, None] * T + row_cols),
        upd_k=host_index(np.zeros(0, np.int64)),
        upd_k2=host_index(np.zeros(0, np.int64)),
        pair_a=(),
        pair_b=(),
        n_stored=size.q1 * T,
        xy_pos=host_index(xy_pos),
        fixed_padding=fixed,
    )
    return on_device(padded), padding


def pad_theta(theta, padding: GlmmPadding) -> np.ndarray:
    """An internal ``theta`` in the padded layout (other entries 0)."""
    out = np.zeros(padding.size.theta)
    out[padding.theta_index] = np.asarray(theta)
    return out


def unpad_theta(theta_padded, padding: GlmmPadding) -> np.ndarray:
    """The model's internal ``theta`` (or its gradient) from the padded layout."""
    return np.asarray(theta_padded)[padding.theta_index]


def unpad_modes(modes, padding: GlmmPadding):
    """The model's own :class:`~interlace._core.pirls.Modes` (numpy) from padded ones."""
    n, q1, k1, qt, p = padding.n, padding.q1, padding.k1, padding.q_tail, padding.p
    return type(modes)(
        beta=np.asarray(modes.beta)[:p],
        u1=np.asarray(modes.u1)[:q1, :k1],
        u_tail=np.asarray(modes.u_tail)[:qt],
        b1=np.asarray(modes.b1)[:q1, :k1],
        b_tail=np.asarray(modes.b_tail)[:qt],
        eta=np.asarray(modes.eta)[:n],
    )
