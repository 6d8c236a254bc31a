"""Batched factorisations stay off LAPACK (issue 16), and a NaN refit is never converged.

Vectorised refits used to run jaxlib's batched LAPACK kernels, which can deadlock XLA's
CPU thread pool; :mod:`interlace._core.linalg` runs plain JAX code for batches instead. The
compiled batch of refits must contain no LAPACK custom call at all (checked on the
lowered HLO text), while one unbatched matrix still goes to LAPACK; both paths must
agree, in values and derivatives.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._core import linalg
from interlace._core import refit as sim

# private _core functions on JAX arrays made here: float64 for the whole module
pytestmark = pytest.mark.usefixtures("float64_throughout")


def _custom_calls(text: str) -> list[str]:
    return re.findall(r"custom_call @(\w+)", text) + re.findall(
        r'custom_call_target\s*=\s*"(\w+)"', text
    )


def _spd(rng, shape, t):
    M = rng.normal(size=shape + (t, t))
    return M @ np.swapaxes(M, -1, -2) + t * np.eye(t)


@pytest.fixture(scope="module")
def crossed():
    rng = np.random.default_rng(3)
    n, ng, nh = 400, 40, 17
    g, h = rng.integers(0, ng, n), rng.integers(0, nh, n)
    x = rng.normal(size=n)
    y = (
        1
        + 0.5 * x
        + 0.8 * rng.normal(size=ng)[g]
        + 0.6 * rng.normal(size=nh)[h]
        + rng.normal(size=n)
    )
    df = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h]})
    return interlace.model_arrays("y ~ x + (1 | g) + (1 | h)", df)


def test_vmapped_refits_contain_no_lapack_call(crossed):
    assert crossed.template.t == 20  # a dense tail (above the unrolled size)
    B = 4
    Y = jnp.broadcast_to(crossed.y, (B, crossed.y.shape[0]))
    text = sim._fit_batch.lower(
        crossed,
        Y,
        jnp.ones((B, 2)),
        jnp.eye(2),
        reml=True,
        maxiter=40,
        statistic=sim.deviance_statistic,
    ).as_text()
    assert not [c for c in _custom_calls(text) if "lapack" in c]


def test_one_matrix_still_goes_to_lapack():
    A = jnp.asarray(_spd(np.random.default_rng(0), (), 30))
    text = jax.jit(linalg.cholesky).lower(A).as_text()
    assert any("potrf" in c for c in _custom_calls(text))


@pytest.mark.parametrize("t", [5, 32, 77])
def test_batched_and_single_factorisations_agree(t):
    rng = np.random.default_rng(t)
    A = jnp.asarray(_spd(rng, (3,), t))
    b = jnp.asarray(rng.normal(size=(3, t)))
    L_ref = np.linalg.cholesky(np.asarray(A))
    for L in (jax.vmap(linalg.cholesky)(A), linalg.cholesky(A)):  # vmap, leading axis
        np.testing.assert_allclose(L, L_ref, rtol=0, atol=1e-12 * t)
    L = jax.vmap(linalg.cholesky)(A)
    np.testing.assert_allclose(
        jax.vmap(linalg.tril_inverse)(L), np.linalg.inv(L_ref), rtol=0, atol=1e-13 * t
    )
    x = jax.vmap(lambda L, b: linalg.tril_solve(L, b, transpose=True))(L, b)
    x_ref = np.linalg.solve(np.swapaxes(L_ref, 1, 2), np.asarray(b)[..., None])[..., 0]
    np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e-13 * t)


def test_derivatives_match_jax_cholesky():
    rng = np.random.default_rng(1)
    A = jnp.asarray(_spd(rng, (), 12))

    def f(A, chol):
        L = chol(A)
        return (
            jnp.sum(jnp.log(jnp.diagonal(L)))
            + jnp.sum(linalg.tril_inverse(L)[5:, 2])
            + jnp.sum(linalg.tril_solve(L, A[:, 0], transpose=True) ** 2)
        )

    def ref(A):  # the same function of A's lower triangle
        return jnp.linalg.cholesky(jnp.tril(A) + jnp.tril(A, -1).T)

    grad = jax.jit(jax.grad(f), static_argnums=1)  # compiled: op by op is slow
    np.testing.assert_allclose(grad(A, linalg.cholesky), grad(A, ref), rtol=1e-10, atol=1e-12)
    H = jax.jit(jax.jacrev(jax.grad(f)), static_argnums=1)(A[:6, :6], linalg.cholesky)
    H_ref = jax.jit(jax.jacfwd(jax.grad(f)), static_argnums=1)(A[:6, :6], ref)
    np.testing.assert_allclose(H, H_ref, rtol=1e-9, atol=1e-11)  # reverse over reverse
    Bs = jnp.asarray(_spd(rng, (3,), 12))  # batched gradients: the plain path
    batched = jax.jit(jax.vmap(jax.grad(f), in_axes=(0, None)), static_argnums=1)
    np.testing.assert_allclose(
        batched(Bs, linalg.cholesky), np.stack([grad(a, ref) for a in Bs]), rtol=1e-10, atol=1e-12
    )


def test_a_nan_refit_is_not_converged_and_is_counted(crossed):
    Y = np.tile(np.asarray(crossed.y), (4, 1))
    Y[2, 5] = np.nan
    beta, theta, sigma, conv, dev = sim.refit_all(
        crossed, jnp.asarray(Y), jnp.ones(2), reml=True, statistic=sim.deviance_statistic
    )
    assert conv.tolist() == [True, True, False, True]
    assert np.all(np.isfinite(dev[conv]))
    with pytest.warns(UserWarning, match="1 of 4 refits did not converge"):
        sim.warn_unconverged(conv, "refits")


def _singular_tail(rng, t: int, lead: int) -> np.ndarray:
    """A symmetric ``t x t`` matrix whose leading ``lead`` block is positive definite and
    whose Schur complement there is ``-1e-3`` in its last entry and 0 elsewhere (rank
    ``lead`` less that): indefinite, LAPACK fails on it."""
    V = rng.normal(size=(t, lead))
    A = V @ V.T
    A[-1, -1] -= 1e-3
    return A


def test_cholesky_or_ridged_keeps_the_leading_rows_where_the_tail_is_singular():
    """``cholesky_or_ridged`` (the GLMM working factor's guard, pirls.working_factor): a
    positive definite matrix gets its plain factor, ``failed`` 0; a singular one the
    factor of ``A + diag(ridge)`` (ridge on the trailing rows only), ``failed`` 1, whose
    leading columns are the unridged matrix's exactly (1e-12). Batched (the plain path,
    ``vmap``), lanes that fail and lanes that do not give their single results (1e-10),
    with no LAPACK call; derivatives of the leading block match ``jnp.linalg.cholesky``'s
    (1e-10)."""
    rng = np.random.default_rng(5)
    t, lead = 24, 16
    good = _spd(rng, (), t)
    bad = _singular_tail(rng, t, lead)
    ridge = jnp.where(jnp.arange(t) >= lead, 1.0 + jnp.abs(jnp.diagonal(bad)), 0.0)
    assert not np.all(np.isfinite(np.asarray(linalg.cholesky(jnp.asarray(bad)))))

    L, failed = linalg.cholesky_or_ridged(jnp.asarray(good), ridge)
    assert float(failed) == 0.0
    np.testing.assert_array_equal(L, linalg.cholesky(jnp.asarray(good)))

    L, failed = linalg.cholesky_or_ridged(jnp.asarray(bad), ridge)
    assert float(failed) == 1.0
    L11 = np.linalg.cholesky(bad[:lead, :lead])
    np.testing.assert_allclose(L[:lead, :lead], L11, rtol=0, atol=1e-12)
    L21 = np.linalg.solve(L11, bad[:lead, lead:]).T
    np.testing.assert_allclose(L[lead:, :lead], L21, rtol=0, atol=1e-12)
    np.testing.assert_allclose(L @ L.T, bad + np.diag(ridge), rtol=0, atol=1e-10 * t)

    pair = jnp.asarray(np.stack([good, bad, good]))
    batched = jax.jit(jax.vmap(linalg.cholesky_or_ridged, in_axes=(0, None)))
    assert not any("potrf" in c for c in _custom_calls(batched.lower(pair, ridge).as_text()))
    Lb, fb = batched(pair, ridge)
    np.testing.assert_array_equal(fb, [0.0, 1.0, 0.0])
    for k in range(3):
        Lk, _ = linalg.cholesky_or_ridged(pair[k], ridge)
        np.testing.assert_allclose(Lb[k], Lk, rtol=0, atol=1e-10)

    def leading_logdet(A, chol):
        return jnp.sum(jnp.log(jnp.diagonal(chol(A))[:lead]))

    def ridged(A):
        return linalg.cholesky_or_ridged(A, ridge)[0]

    def ref(A):  # the leading block's factor, as a function of A's lower triangle
        S = jnp.tril(A) + jnp.tril(A, -1).T
        return jnp.linalg.cholesky(S[:lead, :lead])

    grad = jax.jit(jax.grad(leading_logdet), static_argnums=1)
    for A in (good, bad):
        g = grad(jnp.asarray(A), ridged)
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, grad(jnp.asarray(A), ref), rtol=1e-10, atol=1e-12)
