"""The covariance parameters ``theta``: layout, names, bounds and sign convention.

Each random term with ``k`` columns has a lower-triangular relative covariance factor
``T`` (``k x k``): its covariance is ``sigma^2 T T'`` (Bates et al. 2015, JSS 67(1),
sec. 2.2). ``theta`` stacks the lower triangles column by column, as lme4 does: for
``k = 2``, ``(T11, T21, T22)``. Diagonal entries have lower bound 0 in lme4; here they
are unconstrained during optimisation and signs are fixed afterwards (``T`` and ``T D``
with ``D = diag(+-1)`` give the same covariance), as MixedModels.jl does.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "tril_index",
    "block_tril_index",
    "theta_names",
    "normalize_signs",
    "diagonal_mask",
    "lower_factor",
    "relative_covariances",
    "blocks",
    "to_internal",
    "to_user",
    "column_scales",
    "weight_scale",
    "power_of_two_scale",
]


def tril_index(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each ``theta`` entry of a ``k x k`` factor (column-major)."""
    rows, cols = [], []
    for j in range(k):
        for i in range(j, k):
            rows.append(i)
            cols.append(j)
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def block_tril_index(ks) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each ``theta`` entry of a block-diagonal factor whose diagonal
    blocks are lower-triangular factors of sizes ``ks`` (several terms on one grouping
    factor, e.g. ``(1 + x || g)``, taken as one term): the blocks' :func:`tril_index`
    entries one block after the other, so its ``theta`` is theirs, concatenated."""
    rows, cols, start = [], [], 0
    for k in ks:
        r, c = tril_index(int(k))
        rows.append(r + start)
        cols.append(c + start)
        start += int(k)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def theta_names(factor: str, columns: tuple[str, ...]) -> list[str]:
    """lme4's names: ``g.(Intercept)`` on the diagonal, ``g.x.(Intercept)`` below it."""
    rows, cols = tril_index(len(columns))
    return [
        f"{factor}.{columns[i]}" if i == j else f"{factor}.{columns[i]}.{columns[j]}"
        for i, j in zip(rows, cols)
    ]


def diagonal_mask(ks: list[int]) -> np.ndarray:
    """True for the ``theta`` entries on a diagonal (lme4's lower bound 0)."""
    return np.concatenate([r == c for r, c in (tril_index(k) for k in ks)])


def lower_factor(theta_term, k: int, blocks=None):
    """``T`` (``k x k``, lower triangular) from one term's ``theta`` entries; leading
    axes are batch axes. numpy in, numpy out; JAX in (traceable, differentiable), JAX out.
    ``blocks``: sizes of ``T``'s diagonal blocks (:func:`block_tril_index`); None: one."""
    rows, cols = tril_index(k) if blocks is None else block_tril_index(blocks)
    theta_term = theta_term[..., : len(rows)]
    if isinstance(theta_term, np.ndarray):
        T = np.zeros(theta_term.shape[:-1] + (k, k))
        T[..., rows, cols] = theta_term
        return T
    import jax.numpy as jnp

    T = jnp.zeros(theta_term.shape[:-1] + (k, k), theta_term.dtype)
    return T.at[..., rows, cols].set(theta_term)


def relative_covariances(theta, ks: list[int]) -> list:
    """Per term, ``T T'`` (the covariance over ``sigma^2``) from ``theta`` laid out term
    by term; leading axes of ``theta`` are batch axes (numpy or JAX)."""
    out = []
    for k, index in zip(ks, blocks(ks)):
        T = lower_factor(theta[..., index], k)
        out.append(T @ T.swapaxes(-1, -2))
    return out


def sign_flips(theta, ks: list[int]):
    """Per ``theta`` entry, -1 where its column of ``T`` has a negative diagonal, else 1
    (numpy or JAX: ``T`` and ``T D``, ``D = diag(+-1)``, give the same covariance)."""
    diag_of_col, start = [], 0
    for k in ks:
        rows, cols = tril_index(k)
        diag_pos = {int(c): start + n for n, (r, c) in enumerate(zip(rows, cols)) if r == c}
        diag_of_col += [diag_pos[int(c)] for c in cols]
        start += len(rows)
    xp = np if isinstance(theta, np.ndarray) else _jnp()
    return xp.where(theta[..., np.asarray(diag_of_col, dtype=np.int64)] < 0, -1.0, 1.0)


def normalize_signs(theta, ks: list[int]):
    """Flip columns of each ``T`` so that its diagonal is non-negative (lme4's bounds);
    numpy or JAX (differentiable)."""
    return theta * sign_flips(theta, ks)


def _jnp():
    import jax.numpy as jnp

    return jnp


def blocks(ks: list[int]) -> list[np.ndarray]:
    """Index arrays of each term's ``theta`` entries in a vector laid out term by term."""
    sizes = [k * (k + 1) // 2 for k in ks]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [np.arange(a, b) for a, b in zip(starts[:-1], starts[1:])]


def to_internal(theta, ks: list[int], order: tuple[int, ...]):
    """``theta`` from the user's term order to the internal one (``order[pos]`` is the
    user term at internal position ``pos``); numpy or JAX arrays."""
    user = blocks(ks)
    return theta[np.concatenate([user[i] for i in order])]


def to_user(theta_int, ks: list[int], order: tuple[int, ...]):
    """Inverse of :func:`to_internal`; ``ks`` in the user's order."""
    internal = blocks([ks[i] for i in order])
    user = blocks(ks)
    inverse = np.empty(sum(len(b) for b in user), dtype=int)
    for pos, i in enumerate(order):
        inverse[user[i]] = internal[pos]
    return theta_int[inverse]


# Columns whose size is within 2^+-4 of 1 are searched as they are (column_scales)
_ORDINARY_SIZE = 4


def column_scales(ks: list[int], sizes: list[np.ndarray]) -> np.ndarray:
    """Per entry of ``theta`` (user order, :func:`tril_index` within each term): ``2^e``,
    the power of two nearest the size ``sizes[t][i]`` of its term's column ``i`` (its
    row of ``Lambda``), where that power is below 2^-4 or above 2^4 (a size below
    ~0.044 or above ~22.6); 1 otherwise, and for a column of zeros.

    The relative factor ``Lambda`` of a term whose columns are ``Z S^-1`` (each column
    divided by its scale) is ``S Lambda``: row ``i`` of ``theta`` times ``s_i``, the same
    model. Optimising over ``theta' = S theta`` makes a covariate measured in tiny or
    huge units (a slope on ``x * 1e-6``) as well-scaled as one near 1, where the slope's
    ``theta`` would otherwise have to travel 1e6 from lme4's identity start across a
    deviance flat to 1e-12 (the gradient test then stops at the start). Powers of two
    make the change exact; columns of ordinary sizes (an intercept, covariates with
    spreads of 0.044 to 22.6) keep a scale of exactly 1, and their fits their paths."""
    out = []
    for k, size in zip(ks, sizes):
        rows, _ = tril_index(k)
        size = np.asarray(size, dtype=float)
        out.append(power_of_two_scale(np.log2(np.where(size > 0, size, 1.0)))[rows])
    return np.concatenate(out) if out else np.zeros(0)


def power_of_two_scale(log2_size, xp=np):
    """``2^e`` with ``e = round(log2_size)`` (elementwise), where ``|e| > 4``, else 1: the
    rule of :func:`column_scales` and :func:`weight_scale` (numpy, or ``xp=jax.numpy``
    inside a traced fit), from the size's base-2 logarithm as each computes it."""
    e = xp.round(log2_size)
    return xp.exp2(xp.where(xp.abs(e) > _ORDINARY_SIZE, e, 0.0))


def weight_scale(weights) -> float:
    """``2^e``, the power of two nearest ``sqrt(mean w)`` over the positive prior
    ``weights`` of a linear mixed model, where that power is beyond 2^+-4 (a mean
    weight above 256 or below 1/256); 1 otherwise, and without weights.

    Scaling every weight by ``c`` leaves the model as it is (``sigma^2 / w_i``:
    ``sigma^2`` absorbs ``c``), and ``theta = sd_b / sigma`` becomes ``theta / sqrt(c)``:
    weights of 1e8 put the optimum 1e4 below lme4's identity start. Searching
    ``theta`` times this scale (with :func:`column_scales`) starts every fit at the same
    place in the model's own units."""
    if weights is None:
        return 1.0
    w = np.asarray(weights, dtype=float)
    w = w[w > 0]
    if w.size == 0:
        return 1.0
    return float(power_of_two_scale(0.5 * np.log2(np.mean(w))))
