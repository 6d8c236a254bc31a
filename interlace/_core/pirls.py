"""Conditional modes and the Laplace deviance of a GLMM, on the LMM's blocked factor.

Model (Bates et al. 2015, JSS 67(1), sec. 5; lme4's PIRLS): ``eta = o + X beta + Z Lambda u``,
``u ~ N(0, I)``, ``y_i | u ~ family(mu_i = g^-1(eta_i))`` with prior weights ``a_i``. The
conditional modes minimise the penalised deviance

    F(beta, u) = sum_i d_i(y_i, mu_i) + |u|^2            (d_i: deviance residuals)

over ``u`` (``beta`` given: ``nAGQ = 1``) or over ``beta`` and ``u`` together
(``nAGQ = 0``). Each iteration of penalised iteratively reweighted least squares is
one linear mixed model solve: with working weights ``w`` and working response ``z``
(Fisher scoring, :meth:`Family.working`), the new modes minimise
``|W^1/2 (z - o - X beta - Z Lambda u)|^2 + |u|^2``, which is what the LMM's blocked
factor of ``[Z X z]' W [Z X z]`` gives (:func:`~interlace._core.arrays.cross_products_of`
with ``weights = w``); a step that raises ``F`` is halved (lme4's step-halving). The
Laplace approximation of the deviance at the modes (JSS 67(1), eq. 52) is

    f = sum_i d_i(y_i, mu_i) + |u|^2 + log|Lambda' Z' W Z Lambda + I|

with ``W`` the working weights at the modes (lme4's ``ldL2``). The value returned,
lme4's ``-2 logLik``, takes the family's full density in place of the deviance
residuals (they differ by a constant in the modes and ``theta``, not in a negative
binomial's size).

**Gradients by one Newton step.** The modes are found with no derivative
(``stop_gradient``); the objective is then evaluated after one Newton step of ``F`` from
them (weights ``h = d''/2``, :meth:`Family.newton`), written as a differentiable solve.
At the modes that step moves nothing, so the value is unchanged, and because the
derivative of Newton's map in its argument vanishes at a root, the step's derivative in
``theta`` (and ``beta``) is the modes' own, ``-H^-1 dg/dtheta`` (implicit function theorem):
plain autodiff of the objective is exact, with no derivative through the iterations.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import linalg, logdet_weights
from .arrays import CrossProducts, ModelArrays, cross_products_of
from .deviance import (
    first_block,
    first_term_modes,
    lambda_tail,
    lambda_values,
    log_det_z,
    tail_schur,
)
from .family import Family
from .theta import lower_factor

__all__ = [
    "start_eta",
    "Modes",
    "GlmmData",
    "PirlsStart",
    "STEP_TOL",
    "cold_start",
    "warm_start",
    "solve_modes",
    "pirls",
    "laplace",
    "Laplace",
    "quadrature_correction",
]


class GlmmData(NamedTuple):
    """The response side of a GLMM (row arrays, ``(n,)``)."""

    y: jnp.ndarray  # binomial: proportion of successes; Poisson: counts
    prior_weights: jnp.ndarray  # binomial: trials; else 1 (or the user's weights)
    offset: jnp.ndarray  # known part of eta
    size: jnp.ndarray | float = 1.0  # negative binomial's k (ignored by the others)
    # Family.density_constant(y, prior_weights): the log-density's terms in the data
    # alone, computed once per response (None: in every evaluation)
    density_constant: jnp.ndarray | float | None = None


class Modes(NamedTuple):
    """A solution of the penalised weighted least-squares problem (``eta`` units)."""

    beta: jnp.ndarray  # (p,)
    u1: jnp.ndarray  # (q1, k1) spherical modes of internal term 1
    u_tail: jnp.ndarray  # (q_tail,) of the other terms, level-major
    b1: jnp.ndarray  # (q1, k1) conditional modes Lambda u of term 1
    b_tail: jnp.ndarray  # (q_tail,)
    eta: jnp.ndarray  # (n,) linear predictor, offset included

    @property
    def u_squared(self) -> jnp.ndarray:
        return jnp.sum(self.u1**2) + jnp.sum(self.u_tail**2)


class PirlsStart(NamedTuple):
    """Where :func:`pirls` starts. Warm (``warm`` set): at an earlier evaluation's
    conditional modes ``b`` and ``beta`` (the given ``beta`` where it is fixed), so at
    its linear predictor, with the spherical modes ``u = Lambda(theta)^-1 b`` of the new
    ``theta`` (a zero diagonal entry of ``Lambda`` takes ``u = 0`` and ``b = Lambda u``):
    the start then has a penalised deviance, and a first step that would raise it is
    halved like any other. Cold: from ``eta`` with zero modes (lme4's start from
    ``mustart``, outside the model's span, so with no penalised deviance to compare):
    its first step is taken whole. A warm start whose deviance is not finite falls back
    to the cold one."""

    eta: jnp.ndarray  # (n,) the cold start's linear predictor (a warm start's fallback)
    beta: jnp.ndarray  # (p,)
    b1: jnp.ndarray  # (q1, k1)
    b_tail: jnp.ndarray  # (q_tail,)
    warm: jnp.ndarray  # () bool


def start_eta(family: Family, y, prior_weights, offset):
    """The cold start's linear predictor: lme4's ``offset + g(mu_start)``, with the
    offset's median taken out (numpy or JAX). The modes then absorb that constant: a
    model's intercept does. From lme4's start, every row of a model whose offset is far
    from 0 as a whole (a Poisson exposure in other units, ``log(1e-6 t)``) sits a factor
    ``exp(-offset)`` from its data, and the first PIRLS step lands where ``exp``
    overflows: glmer stops with "Downdated VtV is not positive definite" there, and this
    fit returned NaN, already at ``log(1e-2 t)``. Rows whose offset differs from most
    rows' keep the difference (an offset of -40 on rows of one outcome:
    ``tests/test_glmm_separation.py``). A median within ``_NEAR_ZERO_OFFSET`` of 0 is
    left in: such a start is near the data already, and those fits keep their paths."""
    xp = np if isinstance(offset, np.ndarray) else jnp
    median = xp.median(offset)
    median = xp.where(xp.abs(median) > _NEAR_ZERO_OFFSET, median, 0.0)
    return offset - median + family.linkfun(family.start_mu(y, prior_weights))


# An offset whose median is within this of 0 starts PIRLS as lme4 does (start_eta)
_NEAR_ZERO_OFFSET = 1.0


def cold_start(eta0, ma: ModelArrays) -> PirlsStart:
    """The cold :class:`PirlsStart` from ``eta0`` (numpy in, numpy out: no compile)."""
    xp = np if isinstance(eta0, np.ndarray) else jnp
    cp = ma.template
    zeros = partial(xp.zeros, dtype=eta0.dtype)
    return PirlsStart(
        eta0, zeros(ma.X.shape[1]), zeros((cp.q1, cp.k1)), zeros(cp.q_tail), xp.asarray(False)
    )


def warm_start(modes: Modes, eta0) -> PirlsStart:
    """The warm :class:`PirlsStart` at an evaluation's modes, ``eta0`` its cold start
    (numpy in, numpy out)."""
    xp = np if isinstance(modes.eta, np.ndarray) else jnp
    return PirlsStart(eta0, modes.beta, modes.b1, modes.b_tail, xp.asarray(True))


def _lower_solve(b, diagonal, off_product, k: int):
    """``u`` with ``(D + N) u = b`` for a lower-triangular ``D + N`` whose strictly lower
    part ``N`` is nilpotent of order ``k`` (blocks of at most ``k`` columns):
    ``u <- D^-1 (b - N u)``, ``k`` times, exact. A zero of ``D`` takes ``u = 0``."""
    safe = jnp.where(diagonal != 0, diagonal, 1.0)
    u = jnp.zeros_like(b)
    for _ in range(k):
        u = jnp.where(diagonal != 0, (b - off_product(u)) / safe, 0.0)
    return u


def _first_factor(theta, cp: CrossProducts) -> jnp.ndarray:
    """``T1``, term 1's ``k1 x k1`` relative covariance factor."""
    k1 = cp.k1
    return theta[:1].reshape(1, 1) if k1 == 1 else lower_factor(theta, k1, cp.first_blocks)


def _spherical_modes(theta, cp: CrossProducts, T1, b1, b_tail):
    """``u = Lambda(theta)^-1 b`` by terms (:func:`_lower_solve`), ``T1`` term 1's
    factor."""
    k1 = cp.k1
    N1 = T1 - jnp.diag(jnp.diagonal(T1))
    u1 = _lower_solve(b1, jnp.diagonal(T1), lambda u: u @ N1.T, k1)
    qt = cp.q_tail
    if qt == 0:
        return u1, b_tail
    vals = lambda_values(theta, cp.lam_theta)
    on_diagonal = cp.lam_row == cp.lam_col
    diagonal = jax.ops.segment_sum(
        jnp.where(on_diagonal, vals, 0.0), cp.lam_row, num_segments=cp.t
    )[:qt]
    off = jnp.where(on_diagonal, 0.0, vals)
    pad = jnp.zeros(cp.t - qt, b_tail.dtype)

    def off_product(u):
        u_ext = jnp.concatenate([u, pad])
        return jax.ops.segment_sum(off * u_ext[cp.lam_col], cp.lam_row, num_segments=cp.t)[:qt]

    k_tail = max(cp.ks[cp.first_terms :])
    return u1, _lower_solve(b_tail, diagonal, off_product, k_tail)


def random_part(ma: ModelArrays, b1: jnp.ndarray, b_tail: jnp.ndarray) -> jnp.ndarray:
    """``Z b`` per row: term 1 from its level codes, the other terms from their tail
    columns (``ma.row_cols``)."""
    zb = jnp.sum(ma.first_columns * b1[ma.codes1], axis=1)
    if ma.tail_columns:
        values = jnp.concatenate(ma.tail_columns, axis=1)
        zb = zb + jnp.sum(values * b_tail[ma.row_cols[:, : values.shape[1]]], axis=1)
    return zb


def working_factor(theta: jnp.ndarray, cp: CrossProducts) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(L, fixed_ok)``: ``L = chol(S)`` of the weighted system ``[Z_tail X z]`` (``S`` the
    Schur complement of term 1's blocks), with the working response's own pivot kept
    positive, and the random-effect rows kept where the ``X`` block is singular.

    PIRLS reads only ``L``'s last row left of its diagonal (the modes) and the ``Z`` and
    ``X`` pivots; the last pivot is the residual sum of squares of ``z``, which is 0 up to
    rounding, and can come out negative, where ``z`` lies in the span of the columns: a
    constant count response starts PIRLS at a constant ``z``. LAPACK then fails and the
    whole factor is NaN. Doubling ``S``'s last diagonal entry ``z'z`` (plus the smallest
    normal number, for ``z = 0``) makes that pivot ``z'z + rss >= z'z > 0`` and changes no
    other entry of ``L`` (row ``j`` of a Cholesky factor depends on ``S``'s entries up to
    ``j``). Gaussian fits, which use the last pivot, never call this.

    The random-effect block ``S_zz = I + ...`` is positive definite at any weights, but
    ``X' W X`` need not be: where the working weights of a column's rows underflow (a
    coefficient far along a separating direction, as a profile's search goes), its pivot
    is 0 or rounds negative, LAPACK fails, and the whole factor would be NaN. Then ``S``
    is factorised again with ``diag(S) + 1`` added on the ``X`` and ``z`` rows
    (``fixed_ok`` false; :func:`~interlace._core.linalg.cholesky_or_ridged`). Rows of
    ``L`` left of column ``q_tail`` depend only on ``S``'s entries up to them, so the
    modes for a given ``beta`` and ``ldL2``, which read only those, stay exact and
    differentiable, and :func:`solve_modes` reports ``beta`` with the modes as NaN."""
    S = tail_schur(theta, cp)
    tiny = jnp.finfo(S.dtype).tiny
    S = S.at[..., -1, -1].set(2.0 * S[..., -1, -1] + tiny)
    fixed_rows = jnp.arange(S.shape[-1]) >= cp.q_tail
    ridge = jnp.where(fixed_rows, 1.0 + jnp.abs(jnp.diagonal(S, axis1=-2, axis2=-1)), 0.0)
    # LAPACK (linalg's plain loop under vmap) at every tail width: an evaluation holds
    # four factorisations and the derivatives of two, and unrolled small tails made its
    # graph 1.7x as large (a 600-row Poisson model: 5,881 against 3,481 ops), twice as
    # slow to compile, and ran no faster. The stored upper triangle in row-major order
    # is LAPACK's column-major lower triangle (deviance.tail_cholesky).
    L, failed = linalg.cholesky_or_ridged(jnp.swapaxes(S, -1, -2), jax.lax.stop_gradient(ridge))
    return L, failed == 0.0


def solve_modes(
    theta: jnp.ndarray,
    ma: ModelArrays,
    weights: jnp.ndarray,
    z: jnp.ndarray,
    offset: jnp.ndarray,
    beta: jnp.ndarray | None = None,
    fixed=True,
):
    """The modes of ``|W^1/2 (z - o - X beta - Z Lambda u)|^2 + |u|^2`` (module docstring),
    over ``beta`` and ``u``, or over ``u`` with ``beta`` given (``fixed``, a bool or a
    traced flag, so that one executable serves both): ``(Modes, cp, L, fixed_ok)`` with the
    weighted cross-products and the tail factor ``L = chol(S)`` they came from
    (:func:`working_factor`; ``fixed_ok`` false: the weighted ``X`` is singular, and
    ``beta`` with the modes is NaN).

    ``ma``'s columns enter the factor as they are: the caller centres and scales ``X``
    once, on the host (``_model.glmm_estimate``), and PIRLS never reads the residual sum
    of squares of ``z`` (the last pivot, whose cancellation for a response far from zero
    is what the LMM's standardization of every solve guards against), so the weighted
    solve skips it (``cross_products_of(standardized=False)``: 13% fewer operations in a
    VerbAgg evaluation). With ``L11 = [[L_zz, 0], [L_Xz, L_XX]]``
    the tail modes for a given ``beta`` solve ``L_zz' u_tail = l_zy - L_Xz' beta`` (the
    first block row of the joint system ``L11' [u_tail; beta] = l_21``)."""
    cp = cross_products_of(ma.replace(y=z - offset, weights=weights), standardized=False)
    L, fixed_ok = working_factor(theta, cp)
    qt, p = cp.q_tail, cp.p
    if beta is None or fixed is not True:
        # a singular weighted X (working_factor) leaves beta with the modes undefined
        x_free = jnp.where(
            fixed_ok, linalg.tril_solve(L[:-1, :-1], L[-1, :-1], transpose=True), jnp.nan
        )
        beta_free = x_free[qt:]
    if beta is not None:
        rhs = L[-1, :qt] - L[qt : qt + p, :qt].T @ beta
        x_fixed = jnp.concatenate([linalg.tril_solve(L[:qt, :qt], rhs, transpose=True), beta])
    if beta is None:
        x, beta_out = x_free, beta_free
    elif fixed is True:
        x, beta_out = x_fixed, beta
    else:
        x = jnp.where(fixed, x_fixed, x_free)
        beta_out = jnp.where(fixed, beta, beta_free)
    T1, _, _ = first_block(theta, cp)
    u1, lam_x = first_term_modes(theta, cp, x, T1)
    b1 = u1 @ T1.T
    b_tail = lam_x[:qt]
    eta = offset + ma.X @ beta_out + random_part(ma, b1, b_tail)
    # the internal order of ma puts term 1 first: cp and ma agree (one template)
    return Modes(beta_out, u1, x[:qt], b1, b_tail, eta), cp, L, fixed_ok


def _penalized_deviance(family: Family, data: GlmmData, eta, u_squared):
    mu = family.linkinv(eta)
    d = family.deviance_residuals(data.y, mu, data.prior_weights, data.size)
    return jnp.sum(d) + u_squared


def _start_modes(theta, ma: ModelArrays, offset, start: PirlsStart, beta, fixed) -> Modes:
    """The warm start's modes at ``theta`` (:class:`PirlsStart`): ``u = Lambda^-1 b`` of
    its ``b``, ``beta`` (the given one where ``fixed``), ``b = Lambda u`` again and their
    linear predictor (the start's, where ``Lambda`` is invertible)."""
    cp = ma.template
    if beta is None:
        b = start.beta
    elif fixed is True:
        b = beta
    else:
        b = jnp.where(fixed, beta, start.beta)
    T1 = _first_factor(theta, cp)
    u1, u_tail = _spherical_modes(theta, cp, T1, start.b1, start.b_tail)
    b1 = u1 @ T1.T
    b_tail = lambda_tail(theta, cp, jnp.concatenate([u_tail, b]))[: cp.q_tail]
    eta = offset + ma.X @ b + random_part(ma, b1, b_tail)
    return Modes(b, u1, u_tail, b1, b_tail, eta)


_HALVINGS = 10
# A rejected step that would move some row's linear predictor by more than this is a
# stall (pirls), not rounding at the modes
_STALL_ETA = 1e-3
# With step_tol (pirls), a non-canonical link's PIRLS goes on while a step moves some
# row's linear predictor by more than this
STEP_TOL = 1e-9


def pirls(
    theta: jnp.ndarray,
    ma: ModelArrays,
    family: Family,
    data: GlmmData,
    start: PirlsStart,
    beta: jnp.ndarray | None = None,
    fixed=True,
    *,
    maxiter: int = 100,
    tol: float = 1e-10,
    step_tol: float | None = None,
) -> tuple[Modes, jnp.ndarray]:
    """Penalised IRLS from ``start`` (module docstring; :class:`PirlsStart`):
    ``(modes, iterations)``. No derivatives flow through it (the inputs are
    ``stop_gradient``-ed): differentiate :func:`laplace` instead. Stops when ``F``
    changes by less than ``tol`` relative; a step that raises ``F`` is halved up to ten
    times, and rejected after that. A warm start whose run stalls (a rejected step that
    would move the linear predictor by more than ``_STALL_ETA``, as where a link
    saturates) runs once more from the cold start, and the lower ``F`` is kept.
    ``step_tol`` (e.g. :data:`STEP_TOL`): for a non-canonical link, also go on while a
    step moves the linear predictor by more than this. ``beta`` and ``fixed``: as
    :func:`solve_modes`."""
    theta, start = jax.lax.stop_gradient(theta), jax.tree.map(jax.lax.stop_gradient, start)
    data = jax.tree.map(jax.lax.stop_gradient, data)  # e.g. an estimated size
    beta = None if beta is None else jax.lax.stop_gradient(beta)

    def step(eta):
        w, z = family.working(data.y, eta, data.prior_weights, data.size)
        return solve_modes(theta, ma, w, z, data.offset, beta, fixed)[0]

    # The loop takes the first step too (one copy of the solve in the compiled graph).
    # A warm start carries its penalised deviance, and its first step is halved like any
    # other: taken whole, a step from an earlier evaluation's modes to a distant theta
    # (from theta ~ 0 to 10) could land where the link saturates and stall there, and
    # PIRLS restarted at its own result could raise F. The start keeps b, not lme4's u:
    # as theta moves, the modes b move less than u = Lambda^-1 b (189 against 289 PIRLS
    # iterations in all on bench_glmm's Poisson model). A cold start (zero modes, lme4's
    # eta from mustart) has an infinite F and its first step is taken whole. The modes
    # travel as their tuple of arrays: packed into one vector (a concatenation), XLA
    # fused the new linear predictor's gathers into that concatenation, which its CPU
    # backend runs element by element (2 ms per step on a 20,000-row Poisson model).
    inf = jnp.asarray(jnp.inf, start.eta.dtype)
    warm = _start_modes(theta, ma, data.offset, start, beta, fixed)
    f_warm = _penalized_deviance(family, data, warm.eta, warm.u_squared)
    use_warm = start.warm & jnp.isfinite(f_warm)
    cold = jax.tree.map(jnp.zeros_like, warm)._replace(eta=start.eta)
    first = jax.tree.map(lambda a, b: jnp.where(use_warm, a, b), warm, cold)
    f_first = jnp.where(use_warm, f_warm, inf)

    def cond(carry):
        _, f, f_old, it, restart, _, _, moved = carry
        change = jnp.abs(f_old - f) / (0.1 + jnp.abs(f))
        more = change > tol
        if step_tol is not None and not family.canonical:
            # F's change is quadratic in the modes' error, and Fisher scoring converges
            # only linearly for a non-canonical link, so tol alone can stop one step
            # from a warm start with the modes still off (a probit model's Hessian by
            # differences then carried 1e-4 to 1e-3 errors into its standard errors).
            # Canonical links take Newton steps: the error squares. A single fit asks
            # for it (its SEs); fit_many's lanes, which report no SEs, do not (a
            # negative binomial fit_many over 2,000 genes took 32 s with it, 19 s without)
            more = more | (moved > step_tol)
        return (it == 0) | restart | ((it < maxiter) & more & jnp.isfinite(f))

    def body(carry):
        cur, f, _, it, _, best, f_best, _ = carry
        new = step(cur.eta)

        def point(s):  # a whole step is the new modes exactly
            return jax.tree.map(lambda a, b: jnp.where(s == 1.0, b, a + s * (b - a)), cur, new)

        def f_at(s):
            m = point(s)
            return _penalized_deviance(family, data, m.eta, m.u_squared)

        def halve_cond(c):
            s, fs, k = c
            return (f < inf) & (k < _HALVINGS) & ~(fs <= f * (1.0 + 1e-15))

        def halve_body(c):
            s, _, k = c
            return s / 2.0, f_at(s / 2.0), k + 1

        s, fs, _ = jax.lax.while_loop(halve_cond, halve_body, (1.0, f_at(1.0), 0))
        ok = (f == inf) | (fs <= f * (1.0 + 1e-15))  # a cold start's first step: whole
        kept = jax.tree.map(lambda a, b: jnp.where(ok, a, b), point(s), cur)
        f_kept = jnp.where(ok, fs, f)
        moved = jnp.max(jnp.abs(kept.eta - cur.eta), initial=0.0)
        # A stall: no halving lowers F, yet the step would move the linear predictor
        # (at the modes, a rejected step moves it by rounding only). From a warm start,
        # once: keep that point and start again cold; the lower F of the two is returned
        stall = ~ok & (jnp.max(jnp.abs(new.eta - cur.eta)) > _STALL_ETA) & use_warm
        restart = stall & (f_best == inf)
        best = jax.tree.map(lambda a, b: jnp.where(restart, a, b), kept, best)
        f_best = jnp.where(restart, f_kept, f_best)
        kept = jax.tree.map(lambda a, b: jnp.where(restart, a, b), cold, kept)
        f_kept = jnp.where(restart, inf, f_kept)
        f_old = jnp.where(restart, inf, f)
        return (kept, f_kept, f_old, it + 1, restart, best, f_best, moved)

    carry = (first, f_first, inf, 0, jnp.asarray(False), first, inf, inf)
    modes, f, _, it, _, best, f_best, _ = jax.lax.while_loop(cond, body, carry)
    better = jnp.isfinite(f_best) & ~(f <= f_best)  # the stalled warm run's point
    modes = jax.tree.map(lambda a, b: jnp.where(better, a, b), best, modes)
    return modes, it


class Laplace(NamedTuple):
    """The Laplace deviance at ``theta`` (and ``beta``) and what it was computed from."""

    value: jnp.ndarray  # lme4's objective, -2 logLik: -2 sum log p(y_i | u) + |u|^2 + ldL2
    # (nAGQ > 1: sum d_i + |u|^2 + ldL2 - 2 sum_l log m_l, quadrature_correction; with a
    # negative binomial's size estimated, -2 sum log p(y_i | u) in place of sum d_i)
    modes: Modes
    dev_sum: jnp.ndarray  # sum of deviance residuals at the modes
    log_density: jnp.ndarray  # -2 sum log p(y_i | u) with all constants
    u_squared: jnp.ndarray
    ld_l2: jnp.ndarray  # log|Lambda'Z'WZ Lambda + I|
    fe_cov: jnp.ndarray  # (R_X'R_X)^-1 of the weighted solve (lme4's vcov for nAGQ = 0)


def laplace(
    theta: jnp.ndarray,
    ma: ModelArrays,
    family: Family,
    data: GlmmData,
    modes_eta: jnp.ndarray,
    beta: jnp.ndarray | None = None,
    quadrature: tuple[jnp.ndarray, jnp.ndarray] | None = None,
    fixed=True,
) -> Laplace:
    """The Laplace deviance at ``theta`` (``beta`` given for ``nAGQ = 1``, profiled by the
    joint modes for ``nAGQ = 0``), from the linear predictor at the converged modes
    ``modes_eta`` (from :func:`pirls`): one Newton step from there, then ``f`` (module
    docstring). Differentiable in ``theta`` and ``beta``, exactly. ``quadrature``
    (standard-normal Gauss-Hermite nodes and weights) adds the adaptive quadrature
    correction of a single scalar term (:func:`quadrature_correction`); ``fixed``: as
    :func:`solve_modes` (with a traced flag, the correction applies where it is set)."""
    eta_star = jax.lax.stop_gradient(modes_eta)
    h, zn = family.newton(data.y, eta_star, data.prior_weights, data.size)
    modes, cp, L, fixed_ok = solve_modes(theta, ma, h, zn, data.offset, beta, fixed)
    mu = family.linkinv(modes.eta)
    if quadrature is None and family.canonical and logdet_weights.supported(cp):
        ld_l2 = _ld_l2_from_newton_factor(theta, ma, family, data, modes.eta, eta_star, cp, L)
    else:
        w, z = family.working(data.y, modes.eta, data.prior_weights, data.size)
        cp = cross_products_of(ma.replace(y=z - data.offset, weights=w), standardized=False)
        L, _ = working_factor(theta, cp)  # ldL2 reads only its random-effect block
        ld_l2 = log_det_z(theta, cp, jnp.log(jnp.diagonal(L)))
    dev = jnp.sum(family.deviance_residuals(data.y, mu, data.prior_weights, data.size))
    log_density = family.minus_two_log_likelihood(
        data.y, mu, data.prior_weights, data.size, data.density_constant
    )
    usq = modes.u_squared
    qt, p = cp.q_tail, cp.p
    LX = jax.lax.stop_gradient(L[qt : qt + p, qt : qt + p])
    LXinv = linalg.tril_inverse(LX)
    # the solve's columns are ma.X's as they are; undefined where the weighted X is singular
    fe_cov = jnp.where(fixed_ok, LXinv.T @ LXinv, jnp.nan)
    value = log_density + usq + ld_l2
    if quadrature is not None:
        correction = quadrature_correction(theta, ma, family, data, modes, cp, quadrature)
        # lme4's quadrature deviance is on the deviance residuals. Those leave out the
        # terms of the density in y and a negative binomial's size alone, so with the size
        # estimated they have no optimum in it (the size runs to 0, the value to 0;
        # glmer.nb's size stops at its search bound): then the full density, the
        # quadrature approximation of -2 log L itself (the correction depends on the
        # densities' ratios only, the same on either scale)
        base = log_density if family.estimates_size else dev
        agq = base + usq + ld_l2 + correction
        value = agq if fixed is True else jnp.where(fixed, agq, value)
    return Laplace(value, modes, dev, log_density, usq, ld_l2, fe_cov)


def _ld_l2_from_newton_factor(theta, ma, family, data, eta, eta_star, cp, L):
    """``ldL2`` at the working weights ``w(eta)`` of the Newton step's modes ``eta``,
    from the Newton step's own factor (``cp``, ``L``: weights ``h(eta*)``), for a
    canonical link, where ``h = w``:

        ldL2(w(eta)) = ldL2(w(eta*)) + sum_i (d ldL2 / d w_i) w_i'(eta*_i) (eta_i - eta*_i)

    to first order in ``eta - eta*`` (which vanishes at the modes). Its gradient is the
    exact one: ``theta``'s direct part through ``L``, and the modes' part through
    ``eta`` with the constant coefficients ``d ldL2 / d w_i``
    (:func:`~interlace._core.logdet_weights.log_det_weight_derivative`). That spares a
    second weighted cross-product pass and factorisation, and their reverse mode: on
    bench_glmm's crossed 10^5-row design ~120 of an evaluation's ~260 ms."""
    ld = log_det_z(theta, cp, jnp.log(jnp.diagonal(L)))

    def weights_at(e):
        return family.working(data.y, e, data.prior_weights, data.size)[0]

    _, dw = jax.jvp(weights_at, (eta_star,), (jnp.ones_like(eta_star),))
    coef = jax.lax.stop_gradient(logdet_weights.log_det_weight_derivative(theta, ma, cp, L) * dw)
    return ld + jnp.sum(coef * (eta - eta_star))


def quadrature_correction(theta, ma: ModelArrays, family: Family, data: GlmmData, modes, cp, rule):
    """``-2 sum_l log m_l``: adaptive Gauss-Hermite quadrature for one scalar random term
    (lme4's ``glmerAGQ``; Pinheiro & Bates 1995). Level ``l``'s integral is taken around
    its mode ``u_l`` with scale ``s_l = (theta^2 sum_i w_i x_i^2 + 1)^-1/2`` (the inverse
    of its diagonal entry of ``L``): with nodes ``z_k`` and weights ``w_k`` of the standard
    normal (``sum w_k = 1``),

        m_l = sum_k w_k exp(-(c_l(u_l + z_k s_l) - c_l(u_l)) / 2 + z_k^2 / 2),

    ``c_l(v) = v^2 + sum_{i in l} d_i`` with ``eta_i`` moved by ``theta x_i (v - u_l)``.
    With one node (``z = 0``, ``w = 1``) the correction is 0: the Laplace deviance."""
    nodes, weights = rule
    th = theta[0]
    a1 = cp.A1[:, 0, 0]  # sum_i w_i x_i^2 per level, working weights at the modes
    s = 1.0 / jnp.sqrt(th**2 * a1 + 1.0)
    u = modes.u1[:, 0]
    x = ma.term_X[0][:, 0]
    level = ma.codes1
    shift = (th * x * s[level])[:, None] * nodes[None, :]  # (n, K)
    mu = family.linkinv(modes.eta[:, None] + shift)
    d = family.deviance_residuals(data.y[:, None], mu, data.prior_weights[:, None], data.size)
    d0 = family.deviance_residuals(data.y, family.linkinv(modes.eta), data.prior_weights, data.size)
    q1 = u.shape[0]
    dev_k = jax.ops.segment_sum(d - d0[:, None], level, num_segments=q1)  # (q1, K)
    v = u[:, None] + s[:, None] * nodes[None, :]
    delta = dev_k + v**2 - u[:, None] ** 2
    log_m = jax.scipy.special.logsumexp(
        -0.5 * delta + 0.5 * nodes[None, :] ** 2, b=weights[None, :], axis=1
    )
    return -2.0 * jnp.sum(log_m)
