"""Centred random-slope columns: the same model, searched where it is well conditioned.

In a term ``(1 + z | g)`` whose covariate sits far from 0 against its spread (a year,
``z ~ 2010 +- 6``), the intercept and slope columns are nearly collinear within every
level: the two variances trade off along a narrow ridge in ``theta`` and the search
stalls on it (or stops at a wrong point). Centring the column, ``z' = z - c`` with the
intercept column ``1``, is an exact reparametrisation of the same model (Bates et al.
2015, JSS 67(1), sec. 2.2, for the factor ``T``):

    Z' = Z A,  A = I - e_0 c'   (row 0: the intercept's; c: the shifts, 0 elsewhere)
    Z b = Z' b'  with  b = A b',  so  T T' = A T_c T_c' A'

for the relative factors ``T`` (original columns) and ``T_c`` (centred). Fits search
``theta`` on the centred columns and report it for the user's: ``T`` is the lower
triangular factor of ``A T_c T_c' A'``, from an LQ factorisation of ``A T_c`` (and the
other way with ``A^-1 = I + e_0 c'``). The deviance, ``beta``, ``sigma`` and the fitted
values are the same; the conditional modes map as ``b = A b'``.

:func:`slope_centring` decides which columns move (only those more than
``FAR_FROM_ZERO`` standard deviations from 0, in terms with an intercept, so ordinary
models keep their exact paths); :class:`Centring` does the rest. Its maps take numpy or
JAX arrays with leading batch axes (plain elementwise operations, so they trace under
``jit`` and ``vmap`` without a LAPACK call).
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import numpy as np

from .._base.jit import jit
from .._base.precision import float64_scope
from .theta import blocks, tril_index

__all__ = ["Centring", "slope_centring", "FAR_FROM_ZERO"]

# Columns whose mean is beyond this many standard deviations from 0 are centred.
FAR_FROM_ZERO = 10.0

# A diagonal entry of the refactorised factor below this fraction of its row of ``M`` is
# rounding (a boundary fit's zero variance, refactorised), not a variance: it is set to 0
_PIVOT_FLOOR = 64 * np.finfo(float).eps


class Centring(eqx.Module):
    """Per random term (user order): its width ``k``, the position of its intercept
    column, the columns it shifts and their shifts ``c`` (``(k,)``, 0 elsewhere);
    ``None`` and ``()`` for a term left as it is. A pytree whose shifts are data, so a
    compiled refit takes it as an argument (no recompile per dataset)."""

    ks: tuple[int, ...] = eqx.field(static=True)
    intercepts: tuple[int | None, ...] = eqx.field(static=True)
    moved: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    shifts: tuple

    def columns(self, X: np.ndarray, term: int) -> np.ndarray:
        """Term ``term``'s ``(n, k)`` columns centred: ``X A = X - X[:, i0] c'``."""
        c = self.shifts[term]
        if c is None:
            return X
        i0 = self.intercepts[term]
        return X - X[:, i0 : i0 + 1] * c[None, :]

    def terms(self, terms: tuple) -> tuple:
        """The random terms (``TermDesign``) with their columns centred."""
        return tuple(
            dataclasses.replace(t, X=self.columns(np.asarray(t.X, float), j))
            for j, t in enumerate(terms)
        )

    def to_user_theta(self, theta_c):
        """``theta`` of the original columns from ``theta_c`` of the centred ones (both
        user order, lme4's signs); leading axes are batch axes."""
        return self._map(theta_c, sign=-1.0)

    def to_centred_theta(self, theta):
        """Inverse of :meth:`to_user_theta`."""
        return self._map(theta, sign=1.0)

    def same_sdcor(self) -> np.ndarray:
        """Per sd/cor parameter (each term's lower triangle, ``sdcor_names`` order, no
        residual): whether it is the same on the centred columns as on the user's. ``b =
        A b'`` changes only the intercept's entry, so every sd and correlation of the
        other columns is; the intercept's sd and its correlations are not in a term
        with shifted columns."""
        out = []
        for k, i0, moved in zip(self.ks, self.intercepts, self.moved):
            rows, cols = tril_index(k)
            out += [not moved or (r != i0 and c != i0) for r, c in zip(rows, cols)]
        return np.array(out, dtype=bool)

    def intercept_row_coordinates(self, term: int, theta_term, scales) -> np.ndarray:
        """The coordinates :meth:`factor_with_intercept_row` takes for a shifted term's
        centred factor ``T`` (``theta_term``, its lower triangle): ``T``'s rows but that of
        the first shifted column ``j*``, each times its column's size (``scales``: the
        term's theta entries' search scales), flattened, then the unit direction of its
        user intercept row ``r = T[i0] - sum_j c_j T[j]``."""
        k, i0 = self.ks[term], self.intercepts[term]
        T = np.zeros((k, k))
        T[tril_index(k)] = np.asarray(theta_term, dtype=float)
        size, kept = self._row_layout(term, scales)
        r = T[i0] - np.asarray(self.shifts[term], dtype=float) @ T
        direction = r / np.linalg.norm(r) if np.any(r) else np.eye(k)[i0]
        return np.concatenate([(T[kept] * size[kept, None]).ravel(), direction])

    def factor_with_intercept_row(self, term: int, coords, scales, sd, xp=np):
        """``theta`` entries (lower triangle) of a shifted term's centred factor ``F``
        whose user intercept row ``r = F[i0] - sum_j c_j F[j]`` (so ``sd = |r|`` is the
        intercept's sd on the user's columns) is ``sd`` along the direction in
        ``coords`` (:meth:`intercept_row_coordinates`' layout), with ``F``'s other rows
        from ``coords`` but that of the first shifted column ``j*``, which follows as
        ``(F[i0] - r - sum_{j != j*} c_j F[j]) / c_j*``.

        With ``sd`` pinned, these coordinates are as well conditioned as the centred
        ones: on the user's columns the intercept sd of a slope 1e6 from 0 is ~1e6 times
        the slope's, and its correlation -1 + 1e-12 (a profile's refits stalled there)."""
        k, i0, moved, c = self.ks[term], self.intercepts[term], self.moved[term], self.shifts[term]
        size, kept = self._row_layout(term, scales)
        rows = coords[: (k - 1) * k].reshape(k - 1, k) / size[kept, None]
        direction = coords[(k - 1) * k :]
        F: list = [None] * k
        for n, r in enumerate(kept):
            F[int(r)] = rows[n]
        r_vec = sd * direction / xp.sqrt(xp.sum(direction * direction))
        rest = F[i0] - r_vec - sum((c[j] * F[j] for j in moved[1:]), xp.zeros_like(r_vec))
        F[moved[0]] = rest / c[moved[0]]
        L = _lower_triangular([[F[i][j] for j in range(k)] for i in range(k)], k, xp)
        rows_t, cols_t = tril_index(k)
        return xp.stack([L[int(r)][int(col)] for r, col in zip(rows_t, cols_t)], axis=-1)

    def _row_layout(self, term: int, scales) -> tuple[np.ndarray, np.ndarray]:
        """Per column of ``term``, its size (the diagonal entries of the term's theta
        ``scales``), and the rows that :meth:`factor_with_intercept_row` takes."""
        k = self.ks[term]
        rows_t, cols_t = tril_index(k)
        size = np.asarray(scales, dtype=float)[rows_t == cols_t]
        return size, np.array([r for r in range(k) if r != self.moved[term][0]])

    def to_user_gradient(self, theta, grad_c) -> np.ndarray:
        """The deviance's gradient in ``theta`` (user columns, numpy) from its gradient
        ``grad_c`` in the centred ``theta_c = h(theta)`` (:meth:`to_centred_theta`):
        ``J_h(theta)' grad_c`` (chain rule; ``J_h`` by forward-mode autodiff). Exact
        where evaluating the deviance on the original columns would lose the digits
        the centring saves."""
        J = np.asarray(_centring_jacobian(self, np.asarray(theta, dtype=float)))
        return J.T @ np.asarray(grad_c, dtype=float)

    def to_user_blups(self, blups_c) -> tuple:
        """Per term, ``(levels, k)`` modes ``b = A b'`` from the centred fit's ``b'``."""
        out = []
        for j, b in enumerate(blups_c):
            c = self.shifts[j]
            if c is None:
                out.append(b)
                continue
            b = np.array(b, dtype=float)
            i0 = self.intercepts[j]
            b[:, i0] = b[:, i0] - b @ c
            out.append(b)
        return tuple(out)

    def _map(self, theta, sign: float):
        """Per term, ``T`` from ``M M'`` with ``M = (I + sign e_i0 c') T_in``."""
        xp = np if isinstance(theta, np.ndarray) else _jnp()
        theta = theta if xp is not np else np.asarray(theta, dtype=float)
        parts = []
        for j, index in enumerate(blocks(list(self.ks))):
            part = theta[..., index]
            if self.moved[j]:
                part = _shifted_factor(
                    part, self.ks[j], self.intercepts[j], self.moved[j], sign * self.shifts[j], xp
                )
            parts.append(part)
        return xp.concatenate(parts, axis=-1) if parts else theta


def _shifted_factor(theta_term, k: int, i0: int, moved, c, xp):
    """``theta`` of the lower-triangular ``L`` with ``L L' = M M'``, ``M = (I + e_i0 c')
    T`` (``c`` nonzero at ``moved`` only), NaN where ``theta_term`` is not finite."""
    rows, cols = tril_index(k)
    zero = xp.zeros_like(theta_term[..., 0])
    T = [[zero] * k for _ in range(k)]
    for n, (r, col) in enumerate(zip(rows, cols)):
        T[int(r)][int(col)] = theta_term[..., n]
    M = [list(row) for row in T]
    M[i0] = [T[i0][j] + sum(c[i] * T[i][j] for i in moved) for j in range(k)]
    L = _lower_triangular(M, k, xp)
    out = xp.stack([L[int(r)][int(col)] for r, col in zip(rows, cols)], axis=-1)
    finite = xp.all(xp.isfinite(theta_term), axis=-1, keepdims=True)
    return xp.where(finite, out, xp.nan)


def _lower_triangular(M: list, k: int, xp) -> list:
    """``L`` (lower triangular, diagonal >= 0) with ``L L' = M M'``: ``M = L Q'`` by
    Householder reflections from the right, row by row (an LQ factorisation; Golub &
    Van Loan, Matrix Computations, 4th ed., sec. 5.2), without forming ``M M'``, whose
    small pivots would lose the digits that a slope far from 0 leaves them. Entries are
    lists of arrays (batch axes), so the steps are elementwise. A diagonal within
    rounding of 0 against its row (a boundary fit's zero variance) is set to 0."""
    M = [list(row) for row in M]
    size = [xp.sqrt(sum(v * v for v in row)) for row in M]
    for j in range(k):
        x = M[j][j:]
        n2 = sum(v * v for v in x)
        nonzero = n2 > 0
        alpha = -xp.where(x[0] >= 0, 1.0, -1.0) * xp.sqrt(xp.where(nonzero, n2, 1.0))
        v = [x[0] - alpha] + x[1:]
        v2 = sum(u * u for u in v)
        scale = xp.where(nonzero, 2.0 / xp.where(nonzero, v2, 1.0), 0.0)
        for i in range(j, k):
            w = scale * sum(M[i][j + m] * v[m] for m in range(len(v)))
            M[i][j:] = [M[i][j + m] - w * v[m] for m in range(len(v))]
    L = [[M[i][j] if j <= i else None for j in range(k)] for i in range(k)]
    for j in range(k):
        flip = xp.where(L[j][j] < 0, -1.0, 1.0)
        tiny = xp.abs(L[j][j]) <= _PIVOT_FLOOR * size[j]
        L[j][j] = xp.where(tiny, 0.0, flip * L[j][j])
        for i in range(j + 1, k):
            L[i][j] = flip * L[i][j]
    return L


@float64_scope
def _centring_jacobian(centring: Centring, theta: np.ndarray):
    """``d to_centred_theta / d theta`` at ``theta``: one compiled call per layout of
    terms (the shifts are data), where running it op by op took ~60 ms a fit."""
    return _compiled_jacobian(centring, theta)


@jit
def _compiled_jacobian(centring: Centring, theta):
    import jax

    return jax.jacfwd(centring.to_centred_theta)(theta)


def _jnp():
    import jax.numpy as jnp

    return jnp


def slope_centring(terms) -> Centring | None:
    """The :class:`Centring` of the random ``terms`` (``TermDesign``, user order): in each
    term with an intercept, the columns whose mean is more than ``FAR_FROM_ZERO``
    standard deviations from 0 are shifted by their mean; None when no column is."""
    ks, intercepts, moved, shifts = [], [], [], []
    for term in terms:
        X = np.asarray(term.X, dtype=float)
        ks.append(X.shape[1])
        names = list(term.columns)
        if "(Intercept)" not in names or X.shape[0] == 0:
            intercepts.append(None)
            moved.append(())
            shifts.append(None)
            continue
        i0 = names.index("(Intercept)")
        mean, sd = X.mean(axis=0), X.std(axis=0)
        far = (sd > 0) & (np.abs(mean) > FAR_FROM_ZERO * sd)
        far[i0] = False
        intercepts.append(i0 if far.any() else None)
        moved.append(tuple(int(i) for i in np.flatnonzero(far)))
        shifts.append(np.where(far, mean, 0.0) if far.any() else None)
    if not any(moved):
        return None
    return Centring(tuple(ks), tuple(intercepts), tuple(moved), tuple(shifts))
