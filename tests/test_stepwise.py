"""The one-evaluation-per-iteration L-BFGS (``_core.stepwise``) on problems with known
minima: Rosenbrock's valley and a quadratic with condition number 1e6, one at a time and
under ``vmap``. Tolerances: the minimiser to 1e-6 (the stopping rule's gradient of
1e-10 relative puts it far closer); iteration counts bound the crawl that a
backtracking-only search showed on badly scaled GLMMs (550 iterations instead of 29)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interlace._core.stepwise import minimize_stepwise


def _evaluate(fun):
    def evaluate(x, aux, start):
        value, grad = jax.value_and_grad(fun)(x)
        return x, value, grad, aux + 1  # aux counts evaluations

    return evaluate


def rosenbrock(x):
    return 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2


SCALES = jnp.asarray([1e3, 1.0, 1e-3])


def quadratic(x):
    return 0.5 * jnp.sum((SCALES * (x - 2.0)) ** 2)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def test_rosenbrock():
    out = jax.jit(lambda x0: minimize_stepwise(_evaluate(rosenbrock), x0, 0))(
        jnp.asarray([-1.2, 1.0])
    )
    assert bool(out.converged)
    np.testing.assert_allclose(out.x, [1.0, 1.0], atol=1e-6)
    assert int(out.iterations) < 100
    assert int(out.aux) == int(out.iterations) + 1  # aux passed on from each accepted point


def test_badly_scaled_quadratic_under_vmap():
    starts = jnp.asarray([[0.0, 0.0, 0.0], [5.0, -3.0, 10.0], [2.1, 2.0, -50.0]])
    out = jax.jit(jax.vmap(lambda x0: minimize_stepwise(_evaluate(quadratic), x0, 0)))(starts)
    assert bool(jnp.all(out.converged))
    np.testing.assert_allclose(out.x[:, :2], 2.0, atol=1e-6)
    # the flattest direction (curvature 1e-6) is pinned only to gtol / 1e-6
    np.testing.assert_allclose(out.x[:, 2], 2.0, atol=1e-3)
    assert int(jnp.max(out.iterations)) < 60


def test_non_finite_start_stops():
    out = jax.jit(lambda x0: minimize_stepwise(_evaluate(lambda x: jnp.log(x[0])), x0, 0))(
        jnp.asarray([-1.0])
    )
    assert not bool(out.converged)
    assert int(out.iterations) == 0


A_COUPLED = np.array(
    [
        [2.0, 0.3, 5.0, 1.0],
        [0.3, 1.0, -2.0, 0.5],
        [5.0, -2.0, 4.0e4, 3.0e3],
        [1.0, 0.5, 3.0e3, 1.0e4],
    ]
)
B_COUPLED = np.array([1.0, -1.0, 2.0e3, -5.0e2])


def _coupled(x):  # theta-like coordinates (0, 1) beside stiff beta-like ones (2, 3)
    return 0.5 * x @ A_COUPLED @ x - B_COUPLED @ x


def test_an_inverse_block_start_reaches_the_minimum_in_fewer_evaluations():
    # the exact inverse of the stiff block as H0 there (the host optimiser's
    # block_inverse): the same minimiser (1e-8 relative) with fewer evaluations; a
    # non-finite block is not used, and the path is the plain one (equal counts, and x to
    # 1e-14: another compiled graph may round differently)
    M = jnp.asarray(np.linalg.inv(A_COUPLED[2:, 2:]))
    x_star = np.linalg.solve(A_COUPLED, B_COUPLED)

    def run(block):
        return jax.jit(
            jax.vmap(lambda x0: minimize_stepwise(_evaluate(_coupled), x0, 0, block_inverse=block))
        )(jnp.asarray([[0.5, 0.5, 0.5, 0.5], [-2.0, 3.0, 1.0, -1.0]]))

    plain = run(None)
    blocked = run((slice(2, 4), lambda aux: M))
    unusable = run((slice(2, 4), lambda aux: jnp.full((2, 2), jnp.nan)))
    for out in (plain, blocked, unusable):
        assert bool(jnp.all(out.converged))
        np.testing.assert_allclose(out.x, np.broadcast_to(x_star, out.x.shape), rtol=1e-8)
    assert bool(jnp.all(blocked.evaluations < plain.evaluations))
    np.testing.assert_array_equal(unusable.evaluations, plain.evaluations)
    np.testing.assert_allclose(unusable.x, plain.x, rtol=1e-14)
