"""The numerical core against a naive dense implementation (tests/dense_reference.py).

Sizes are small so that ``V`` (n x n) can be built; the blocked core never builds it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import interlace
from interlace._core.crossprod import cross_products
from interlace._core.deviance import (
    SMALL,
    cholesky_logdet_parts,
    cholesky_logdiag,
    estimates,
    profiled_deviance,
    tail_schur,
)
from interlace._core.optimize import minimize_deviance

from .dense_reference import dense_fit_at

# private _core functions on JAX arrays made here: float64 for the whole module
pytestmark = pytest.mark.usefixtures("float64_throughout")

N, NLEVELS = 120, [9, 17, 4]  # the largest factor is not first: exercises the reordering


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    codes = [rng.integers(0, q, N) for q in NLEVELS]
    X = np.column_stack([np.ones(N), rng.normal(size=N), rng.uniform(size=N)])
    effects = [rng.normal(scale=s, size=q) for s, q in zip((1.0, 0.5, 0.8), NLEVELS)]
    y = X @ [1.0, 0.5, -2.0] + sum(e[c] for e, c in zip(effects, codes)) + rng.normal(size=N)
    cp = cross_products(codes, NLEVELS, X, y)
    return codes, X, y, cp


THETAS = [np.array([0.7, 0.4, 1.3]), np.array([1e-3, 2.0, 0.2]), np.array([0.0, 0.5, 0.5])]


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("theta", THETAS, ids=["interior", "small", "boundary"])
def test_deviance_and_estimates_match_dense(problem, theta, reml):
    codes, X, y, cp = problem
    ref = dense_fit_at(theta, codes, NLEVELS, X, y, reml)
    th = jnp.asarray(theta[list(cp.order)])
    assert float(profiled_deviance(th, cp, reml=reml)) == pytest.approx(ref["deviance"], rel=1e-12)
    est = estimates(th, cp, reml=reml)
    np.testing.assert_allclose(est.beta, ref["beta"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.fe_cov, ref["fe_cov"], rtol=1e-10, atol=1e-14)
    assert float(est.sigma2) == pytest.approx(ref["sigma2"], rel=1e-11)
    internal = [np.asarray(est.b1)[:, 0]] + np.split(
        np.asarray(est.b_tail), np.cumsum(cp.nlevels[1:])[:-1]
    )
    for pos, user in enumerate(cp.order):
        np.testing.assert_allclose(internal[pos], ref["blups"][user], rtol=1e-9, atol=1e-12)


def _central_differences(th, cp, reml, h=1e-6):
    """The deviance's gradient in ``theta`` by central differences (error O(h^2))."""
    return [
        (
            profiled_deviance(th.at[i].add(h), cp, reml=reml)
            - profiled_deviance(th.at[i].add(-h), cp, reml=reml)
        )
        / (2 * h)
        for i in range(th.shape[0])
    ]


@pytest.mark.parametrize("reml", [True, False])
def test_gradient_matches_central_differences(problem, reml):
    *_, cp = problem
    th = jnp.array([0.6, 0.3, 1.1])
    grad = jax.grad(profiled_deviance)(th, cp, reml=reml)
    # central differences: O(h^2) ~ 1e-8
    np.testing.assert_allclose(grad, _central_differences(th, cp, reml), rtol=1e-6)


def test_cholesky_logdiag_vjp_against_autodiff_of_the_factorisation(problem):
    *_, cp = problem
    S = tail_schur(jnp.array([0.6, 0.3, 1.1]), cp)
    g = jnp.linspace(0.5, 2.0, S.shape[0])

    def plain(S):  # differentiate straight through LAPACK's factorisation
        Sym = jnp.triu(S) + jnp.triu(S, 1).T  # S is stored as its upper triangle
        return jnp.sum(g * jnp.log(jnp.diagonal(jnp.linalg.cholesky(Sym))))

    ours = jax.grad(lambda S: jnp.sum(g * cholesky_logdiag(S)))(S)
    np.testing.assert_allclose(ours, jnp.triu(jax.grad(plain)(S)), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("tail_rows", [1, 4])  # REML: k = t - 1; ML: the X block skipped
def test_logdet_parts_vjp_against_autodiff_of_the_factorisation(problem, tail_rows):
    *_, cp = problem
    S = tail_schur(jnp.array([0.6, 0.3, 1.1]), cp)
    assert S.shape[0] > SMALL  # the custom-VJP path
    k = S.shape[0] - tail_rows

    def ours(S):
        head, last = cholesky_logdet_parts(S, k)
        return 2.0 * head + 37.0 * last

    def plain(S):  # differentiate straight through LAPACK's factorisation
        Sym = jnp.triu(S) + jnp.triu(S, 1).T  # S is stored as its upper triangle
        logdiag = jnp.log(jnp.diagonal(jnp.linalg.cholesky(Sym)))
        return 2.0 * jnp.sum(logdiag[:k]) + 37.0 * logdiag[-1]

    assert float(ours(S)) == pytest.approx(float(plain(S)), rel=1e-14)
    np.testing.assert_allclose(
        jax.grad(ours)(S), jnp.triu(jax.grad(plain)(S)), rtol=1e-9, atol=1e-12
    )
    # Second derivatives go through the factor's custom JVP (a Hessian-vector product).
    v = jnp.triu(jnp.cos(jnp.arange(S.size).reshape(S.shape)))
    hvp = jax.jvp(jax.grad(ours), (S,), (v,))[1]
    np.testing.assert_allclose(
        hvp, jnp.triu(jax.jvp(jax.grad(plain), (S,), (v,))[1]), rtol=1e-8, atol=1e-10
    )


def test_only_the_stored_upper_triangle_is_read(problem):
    *_, cp = problem
    S = tail_schur(jnp.array([0.6, 0.3, 1.1]), cp)
    np.testing.assert_array_equal(S, jnp.triu(S))  # the strict lower triangle is empty
    junk = jnp.tril(jnp.full_like(S, 7.0), -1)
    np.testing.assert_array_equal(cholesky_logdiag(S), cholesky_logdiag(S + junk))


def test_cross_products_never_store_rows(problem):
    codes, X, y, cp = problem
    leaves = jax.tree_util.tree_leaves(cp)
    assert all(N not in leaf.shape for leaf in leaves)  # memory is levels and pairs only
    assert cp.order == (1, 0, 2) and cp.nlevels == (17, 9, 4)
    assert cp.tail.shape == (9 + 4 + 3 + 1,) * 2  # the largest factor never enters a dense block


def test_optimizer_reaches_the_dense_optimum(problem):
    from .dense_reference import dense_optimum

    codes, X, y, cp = problem
    ref = dense_optimum(codes, NLEVELS, X, y, reml=True)
    opt = minimize_deviance(jnp.ones(3), cp, reml=True)
    assert bool(opt.converged)
    assert float(opt.deviance) <= ref["deviance"] + 1e-9 * abs(ref["deviance"])
    theta_user = np.empty(3)
    theta_user[list(cp.order)] = np.asarray(opt.theta)
    # minimize_deviance leaves signs to its callers (the deviance is even in each theta)
    np.testing.assert_allclose(np.abs(theta_user), ref["theta"], rtol=1e-4, atol=1e-6)


def test_deviance_composes_with_jit_grad_and_vmap(problem):
    *_, cp = problem
    thetas = jnp.array([[0.6, 0.3, 1.1], [0.2, 0.9, 0.4]])
    value_and_grad = jax.value_and_grad(lambda t, c: profiled_deviance(t, c, reml=True))
    batched = jax.jit(jax.vmap(value_and_grad, in_axes=(0, None)))
    vals, grads = batched(thetas, cp)
    for i in range(2):
        v, g = value_and_grad(thetas[i], cp)
        assert float(vals[i]) == pytest.approx(float(v), rel=1e-12)
        np.testing.assert_allclose(grads[i], g, rtol=1e-10)
    # public name: the same function behind the float64 check (_precision)
    assert interlace.profiled_deviance.__wrapped__ is profiled_deviance


def _assert_matches_dense(th, cp, reml, dense):
    """Deviance (1e-12), beta and sigma^2 (1e-10) and BLUPs (1e-9) at ``th`` against the
    dense reference's ``(deviance, beta, sigma2, blups)``, and the gradient against
    central differences (1e-5)."""
    from interlace._core.deviance import blups_by_term

    dev, beta, sigma2, blups = dense
    assert float(profiled_deviance(th, cp, reml=reml)) == pytest.approx(dev, rel=1e-12)
    est = estimates(th, cp, reml=reml)
    np.testing.assert_allclose(est.beta, beta, rtol=1e-10)
    assert float(est.sigma2) == pytest.approx(sigma2, rel=1e-10)
    for ours, ref in zip(blups_by_term(est, cp), blups):
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
    grad = jax.grad(profiled_deviance)(th, cp, reml=reml)
    np.testing.assert_allclose(grad, _central_differences(th, cp, reml), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reml", [True, False])
def test_vector_valued_terms_in_first_block_and_tail_match_dense(reml):
    """Slopes everywhere: a 2-column term first (block diagonal), a 2-column and a
    3-column term in the tail (non-diagonal Lambda_t), and an intercept."""
    from .dense_reference import dense_terms_deviance

    rng = np.random.default_rng(8)
    n, nlev = 90, [12, 7, 5, 4]
    codes = [rng.integers(0, q, n) for q in nlev]
    t1, t2 = rng.normal(size=n), rng.uniform(size=n)
    term_X = [
        np.column_stack([np.ones(n), t1]),
        np.column_stack([np.ones(n), t2]),
        np.column_stack([np.ones(n), t1, t2]),
        np.ones((n, 1)),
    ]
    X = np.column_stack([np.ones(n), t1])
    y = rng.normal(size=n) + codes[0] * 0.1 + t1 * codes[1] * 0.2
    cp = cross_products(codes, nlev, X, y, term_X)
    assert cp.order == (0, 1, 2, 3) and not cp.tail_diagonal
    theta_user = np.array([0.8, 0.3, 0.5, 0.6, -0.2, 0.4, 0.7, 0.1, 0.2, 0.5, -0.3, 0.4, 0.9])
    from interlace._core.theta import to_internal as _to_internal

    th = jnp.asarray(_to_internal(theta_user, [2, 2, 3, 1], cp.order))
    dense = dense_terms_deviance(theta_user, codes, nlev, term_X, X, y, reml)
    _assert_matches_dense(th, cp, reml, dense)


@pytest.mark.parametrize("reml", [True, False])
def test_terms_on_one_factor_form_term_1_together(reml):
    """``(1 + t1 || g) + (0 + t2 | g)``-like terms on the largest factor (three terms, one
    factor) are term 1 together, with a block-diagonal ``T1``; two terms on a tail factor
    stay separate tail terms. Deviance, estimates, BLUPs and gradient against the dense
    reference (which treats every term on its own), through both cross-product builders."""
    from interlace._core.arrays import cross_products_of, model_arrays_from
    from interlace._core.theta import to_internal as _to_internal

    from .dense_reference import dense_terms_deviance

    rng = np.random.default_rng(11)
    n, q_big, q_small, q_other = 150, 20, 6, 15
    g, h, o = rng.integers(0, q_big, n), rng.integers(0, q_small, n), rng.integers(0, q_other, n)
    t1, t2 = rng.normal(size=n), rng.uniform(size=n)
    # user order: a tail term first, then the big factor's terms interleaved with others
    codes = [h, g, o, g, h, g]
    nlev = [q_small, q_big, q_other, q_big, q_small, q_big]
    term_X = [
        np.ones((n, 1)),
        np.ones((n, 1)),
        np.ones((n, 1)),
        t1[:, None],
        t2[:, None],
        np.column_stack([t2, t1 * t2]),
    ]
    ks = [1, 1, 1, 1, 1, 2]
    X = np.column_stack([np.ones(n), t1])
    y = rng.normal(size=n) + 0.3 * g * t1 / q_big + 0.2 * h
    cp = cross_products(codes, nlev, X, y, term_X)
    assert cp.order[: cp.first_terms] == (1, 3, 5) and cp.first_blocks == (1, 1, 2)
    assert cp.k1 == 4 and cp.q_tail == q_other + 2 * q_small  # h's two terms in the tail
    theta_user = np.array([0.6, 0.9, 0.4, 0.5, 0.3, 0.7, -0.2, 0.4])
    th = jnp.asarray(_to_internal(theta_user, ks, cp.order))
    dense = dense_terms_deviance(theta_user, codes, nlev, term_X, X, y, reml)
    ma = model_arrays_from(codes, nlev, X, y, term_X)  # the JAX builder too
    assert float(profiled_deviance(th, cross_products_of(ma), reml=reml)) == pytest.approx(
        dense[0], rel=1e-12
    )
    _assert_matches_dense(th, cp, reml, dense)


@pytest.mark.parametrize(
    "formula,file,groups",
    [
        ("score ~ hours_studied + prior_gpa", "results_page.csv", ["student_id", "school_id"]),
        ("y ~ t + (1 + t | subject) + (1 + t | item)", "crossed_slopes.csv", None),
    ],
)
def test_heavy_levels_as_dense_rows_give_the_same_deviance(formula, file, groups):
    """Every level heavy (dense rows of C, one product) vs none (update entries only),
    through both cross-product builders: same deviance and gradient (1e-10 relative)."""
    import pandas as pd

    from interlace._core.arrays import cross_products_of, model_arrays_from
    from interlace._core.crossprod import cross_products
    from interlace._model.design import build_design

    from .conftest import DATA

    d = build_design(formula, pd.read_csv(DATA / file), groups)
    args = (
        [t.codes for t in d.terms],
        [len(t.levels) for t in d.terms],
        d.X,
        d.y,
        [t.X for t in d.terms],
    )
    dense, sparse = cross_products(*args, heavy_above=0), cross_products(*args, heavy_above=10**9)
    assert dense.heavy_levels.shape[0] == dense.q1 and dense.upd_flat.shape[0] == 0
    assert sparse.heavy_levels.shape[0] == 0
    jax_dense = cross_products_of(model_arrays_from(*args, heavy_above=0))
    theta = jnp.linspace(0.4, 0.9, dense.theta_offsets[-1])
    for reml in (True, False):
        ref = profiled_deviance(theta, sparse, reml=reml)
        ref_grad = jax.grad(profiled_deviance)(theta, sparse, reml=reml)
        for cp in (dense, jax_dense):
            assert float(profiled_deviance(theta, cp, reml=reml)) == pytest.approx(
                float(ref), rel=1e-12
            )
            np.testing.assert_allclose(
                jax.grad(profiled_deviance)(theta, cp, reml=reml), ref_grad, rtol=1e-10, atol=1e-10
            )


@pytest.mark.parametrize("n", [5, 40, 1100])
def test_tril_inverse_by_halving_and_the_weighted_gram(n, monkeypatch):
    """The gradient's pieces against dense numpy: L^-1 by halving (forced with small
    blocks) and the upper triangle of L^-T diag(g) L^-1 by column blocks."""
    from interlace._core import deviance as _deviance

    rng = np.random.default_rng(n)
    A = rng.normal(size=(n, n))
    L = np.linalg.cholesky(A @ A.T / n + np.eye(n))
    monkeypatch.setattr(_deviance, "_INVERSE_DIRECT", 16)
    monkeypatch.setattr(_deviance, "_INVERSE_LEAF", 8)
    Linv = np.asarray(_deviance.tril_inverse(jnp.asarray(L)))
    np.testing.assert_allclose(Linv, np.linalg.inv(L), rtol=1e-10, atol=1e-12)
    g = rng.normal(size=n)
    G = np.asarray(_deviance._weighted_gram(jnp.asarray(Linv), jnp.asarray(g)))
    ref = Linv.T @ (g[:, None] * Linv)
    np.testing.assert_allclose(np.triu(G), np.triu(ref), rtol=1e-10, atol=1e-12)


def test_update_pairs_against_brute_force():
    """Every within-level pair (k2 <= k), sorted by flat index with ties in generation
    order, exactly as a triple loop lists them (the integer-key sort must be stable)."""
    from interlace._core.crossprod import update_pairs

    rng = np.random.default_rng(7)
    t, q = 30, 40
    counts = rng.integers(0, 12, q)
    counts[::5] = 0  # empty levels
    cols = np.concatenate([np.sort(rng.choice(t, c, replace=False)) for c in counts])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    ref = [
        (cols[k2] * t + cols[k], i, level, k, k2)
        for i, (level, k, k2) in enumerate(
            (lv, k, k2)
            for lv in range(q)
            for k in range(indptr[lv], indptr[lv + 1])
            for k2 in range(indptr[lv], k + 1)
        )
    ]
    ref = np.array([(lv, f, k, k2) for f, _, lv, k, k2 in sorted(ref)])
    for got, want in zip(update_pairs(indptr, cols, t), ref.T):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bound, n", [(10, 5), (1_000, 50_000), (5_000, 300), (1 << 22, 1_000)])
def test_unique_keys_equal_numpys_unique(bound, n):
    """The table of present keys (small ``bound``) and the sort (large ``bound``: the last
    case) give ``np.unique(keys, return_inverse=True)`` exactly, for 1-d and 2-d keys of
    either integer width: layouts built from them are unchanged."""
    from interlace._core.crossprod import unique_keys

    keys = np.random.default_rng(bound).integers(0, bound, n)
    for k in (keys, keys.astype(np.int32), keys.reshape(-1, 5)):
        got_keys, got_inverse = unique_keys(k, bound)
        want_keys, want_inverse = np.unique(k.ravel(), return_inverse=True)
        assert got_keys.dtype == want_keys.dtype
        np.testing.assert_array_equal(got_keys, want_keys)
        np.testing.assert_array_equal(got_inverse, want_inverse)


def test_cross_products_of_by_blocks_and_by_pairs_agree():
    """``cross_products_of`` forms ``[X y]``'s blocks densely when every level of term 1
    meets them (``ModelArrays.xy_pos``) and scatters every within-row pair otherwise:
    slopes in term 1 and in the tail, prior weights and row multiplicities; the same
    cross-products (1e-12 relative) as each other and as the numpy builder, and the same
    deviance gradient in ``y`` and the weights (1e-10 relative)."""
    import dataclasses

    from interlace._core.arrays import cross_products_of, model_arrays_from

    rng = np.random.default_rng(11)
    n, nlev = 150, [10, 6, 4]
    codes = [rng.integers(0, q, n) for q in nlev]
    t1 = rng.normal(size=n)
    term_X = [np.column_stack([np.ones(n), t1]), np.column_stack([np.ones(n), t1]), np.ones((n, 1))]
    X = np.column_stack([np.ones(n), t1, rng.uniform(size=n)])
    y = 50.0 + X @ [1.0, 0.5, -2.0] + 0.3 * codes[0] + rng.normal(size=n)
    prior = rng.uniform(0.5, 2.0, n)
    ma = model_arrays_from(codes, nlev, X, y, term_X, prior_weights=prior)
    assert ma.xy_pos is not None
    by_pairs = dataclasses.replace(ma, xy_pos=None)
    ref = cross_products(codes, nlev, X, y, term_X, weights=prior)
    blocks, pairs = cross_products_of(ma), cross_products_of(by_pairs)
    for field in ("A1", "tail", "c_val", "upd_prod"):
        want = np.asarray(getattr(ref, field))
        scale = np.max(np.abs(want))
        for got in (blocks, pairs):
            np.testing.assert_allclose(
                np.asarray(getattr(got, field)), want, rtol=0, atol=1e-12 * scale
            )
    theta = jnp.linspace(0.3, 0.9, ref.theta_offsets[-1])

    def deviance_in(arrays):
        def f(y, multiplicities, prior):
            cp = cross_products_of(arrays.replace(y=y, weights=multiplicities, prior_weights=prior))
            return profiled_deviance(theta, cp, reml=True)

        return jax.grad(f, argnums=(0, 1, 2))(ma.y, ma.weights * 2.0, ma.prior_weights)

    for g_blocks, g_pairs in zip(deviance_in(ma), deviance_in(by_pairs)):
        np.testing.assert_allclose(
            g_blocks, g_pairs, rtol=1e-10, atol=1e-10 * np.max(np.abs(g_pairs))
        )

    # the standardization's shifts and scales are constants to derivatives
    # (cross_products_of): the gradient is still the deviance's, by central differences
    def dev(y, prior):
        arrays = ma.replace(y=y, weights=ma.weights * 2.0, prior_weights=prior)
        return float(profiled_deviance(theta, cross_products_of(arrays), reml=True))

    g_y, _, g_prior = deviance_in(ma)
    for i in (0, 7, 42):
        h = 1e-5 * abs(float(ma.y[i]))
        e = jnp.zeros(n).at[i].set(h)
        fd_y = (dev(ma.y + e, ma.prior_weights) - dev(ma.y - e, ma.prior_weights)) / (2 * h)
        e = jnp.zeros(n).at[i].set(1e-5)
        fd_w = (dev(ma.y, ma.prior_weights + e) - dev(ma.y, ma.prior_weights - e)) / 2e-5
        assert float(g_y[i]) == pytest.approx(fd_y, rel=1e-6, abs=1e-6)
        assert float(g_prior[i]) == pytest.approx(fd_w, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("reml", [True, False])
def test_cross_products_of_unstandardized_data_match_dense(problem, reml):
    """``cross_products_of(standardized=False)`` (a GLMM's PIRLS: columns centred and
    scaled on the host, the working response as it is) takes ``X`` and ``y`` as given,
    with an identity standardization: the deviance (1e-12 relative), ``beta`` and
    ``vcov(beta)`` (1e-10) are the dense reference's, as through the standardized path."""
    from interlace._core.arrays import cross_products_of, model_arrays_from

    codes, X, y, _ = problem
    ma = model_arrays_from(codes, NLEVELS, X, y, [np.ones((N, 1))] * len(NLEVELS))
    cp = cross_products_of(ma, standardized=False)
    assert np.all(np.asarray(cp.standardization.x_scale) == 1.0)
    assert float(cp.standardization.y_shift) == 0.0
    for theta in THETAS:
        ref = dense_fit_at(theta, codes, NLEVELS, X, y, reml)
        th = jnp.asarray(theta[list(cp.order)])
        assert float(profiled_deviance(th, cp, reml=reml)) == pytest.approx(
            ref["deviance"], rel=1e-12
        )
        est = estimates(th, cp, reml=reml)
        np.testing.assert_allclose(est.beta, ref["beta"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(est.fe_cov, ref["fe_cov"], rtol=1e-10, atol=1e-14)
