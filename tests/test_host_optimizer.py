"""The host-driven L-BFGS (``_core.optimize.minimize_on_host``) a single fit runs: its
method on known functions, its stopping reasons, and its optimum against the compiled
loop (``minimize_deviance``) on real models."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

from interlace._core import buckets
from interlace._core.crossprod import device_array
from interlace._core.evaluation import evaluate
from interlace._core.optimize import (
    OFF_ZERO,
    STOP_GRADIENT,
    STOP_MAXITER,
    STOP_NONFINITE,
    STOP_STALLED,
    minimize_deviance,
    minimize_on_host,
    minimize_rescaled,
)
from interlace._core.theta import to_internal
from interlace._model.design import build_design
from interlace._model.estimate import fit_cross_products, start_values

# Low-level tests of private _core functions on their own JAX arrays.
pytestmark = pytest.mark.usefixtures("float64_throughout")


def _numpy_fun(f, grad):
    calls = []

    def fun(x):
        calls.append(np.array(x))
        return float(f(x)), np.asarray(grad(x), dtype=float), len(calls)

    return fun, calls


def test_quadratic_reaches_its_minimum_and_says_why():
    A = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 2.0]])
    b = np.array([1.0, -2.0, 0.5])
    fun, calls = _numpy_fun(lambda x: 0.5 * x @ A @ x - b @ x, lambda x: A @ x - b)
    opt, aux = minimize_on_host(fun, np.zeros(3))
    np.testing.assert_allclose(opt.theta, np.linalg.solve(A, b), rtol=1e-9)
    assert opt.stop == STOP_GRADIENT and opt.converged
    assert np.max(np.abs(opt.grad)) <= 1e-10 * (1 + abs(opt.deviance))
    assert opt.evaluations == len(calls) and opt.iterations < opt.evaluations
    assert aux == [i for i, x in enumerate(calls, 1) if np.array_equal(x, opt.theta)][-1]


def test_rescaled_search_finds_a_badly_scaled_minimum_and_answers_in_x():
    """``f(x) = (x0 - 1)^2 + (1e6 x1 - 2)^2 / 2`` from ``x1 = 1``, as a slope's ``theta``
    on a covariate in units of 1e-6 starts: searched over ``x' = [1, 2^20] x`` the
    minimum ``x1 = 2e-6`` is found, and ``theta`` and ``grad`` come back in ``x``'s
    coordinates (tolerance 1e-9 relative). A scale of ones is the plain search."""
    c = 1e6

    def f(x):
        return (x[0] - 1.0) ** 2 + 0.5 * (c * x[1] - 2.0) ** 2

    def g(x):
        return np.array([2.0 * (x[0] - 1.0), c * (c * x[1] - 2.0)])

    scale = np.array([1.0, 2.0**20])
    fun, calls = _numpy_fun(f, g)
    opt, _ = minimize_rescaled(fun, np.array([0.0, 2.0**-20]), scale)
    assert opt.converged and opt.stop == STOP_GRADIENT
    np.testing.assert_allclose(opt.theta, [1.0, 2.0 / c], rtol=1e-9)
    np.testing.assert_allclose(opt.grad, g(opt.theta), rtol=1e-9, atol=1e-9)
    assert np.max(np.abs([x[1] for x in calls])) < 1e-3  # fun saw x (~1e-6), never x' (~2)
    plain, plain_calls = _numpy_fun(f, g)
    a, _ = minimize_rescaled(plain, np.array([0.3, 0.2]), np.ones(2))
    b, _ = minimize_on_host(_numpy_fun(f, g)[0], np.array([0.3, 0.2]))
    np.testing.assert_array_equal(a.theta, b.theta)
    assert a.evaluations == b.evaluations == len(plain_calls)


def test_rosenbrock_converges_from_the_classic_start():
    def f(x):
        return 100.0 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2

    def g(x):
        return np.array(
            [-400.0 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]), 200.0 * (x[1] - x[0] ** 2)]
        )

    fun, _ = _numpy_fun(f, g)
    opt, _ = minimize_on_host(fun, np.array([-1.2, 1.0]))
    assert opt.converged
    np.testing.assert_allclose(opt.theta, [1.0, 1.0], rtol=1e-6)


def test_a_first_step_onto_zero_does_not_stick_there():
    """``(theta^2 - 0.03^2)^2`` is even, so its gradient vanishes at 0. From 0.1 the
    scaled first step (0.1) would land exactly on 0, a stationary point that is not the
    minimum; the search must end at +-0.03 instead."""
    c = 0.03**2
    fun, _ = _numpy_fun(
        lambda x: float((x[0] ** 2 - c) ** 2), lambda x: np.array([4 * x[0] * (x[0] ** 2 - c)])
    )
    opt, _ = minimize_on_host(fun, np.array([0.1]))
    assert opt.converged
    np.testing.assert_allclose(np.abs(opt.theta), [0.03], rtol=1e-6)


def test_searches_never_evaluate_an_exact_zero():
    seen = []

    def fun(x):
        seen.append(np.array(x))
        return float(np.sum((x - 0.5) ** 2)), 2 * (x - 0.5), None

    minimize_on_host(fun, np.array([0.0, 1.0]))
    assert all(np.all(x != 0.0) for x in seen)
    assert seen[0][0] == OFF_ZERO


def test_maxiter_stops_unconverged():
    fun, _ = _numpy_fun(lambda x: np.sum((x - 3.0) ** 4), lambda x: 4 * (x - 3.0) ** 3)
    opt, _ = minimize_on_host(fun, np.zeros(2), maxiter=2)
    assert opt.stop == STOP_MAXITER and opt.iterations == 2 and not opt.converged


def test_a_non_finite_start_stops_at_once():
    fun, calls = _numpy_fun(lambda x: np.nan, lambda x: np.zeros_like(x))
    opt, _ = minimize_on_host(fun, np.ones(2))
    assert opt.stop == STOP_NONFINITE and not opt.converged and len(calls) == 1


def test_non_finite_trial_points_shorten_the_step():
    """Outside |x| < 2 the function is NaN; a first step that lands there is shortened,
    and the search still finds the minimum at 1.5."""

    def f(x):
        return np.nan if np.any(np.abs(x) >= 2) else float(np.sum((x - 1.5) ** 2))

    fun, _ = _numpy_fun(f, lambda x: 2 * (x - 1.5))
    opt, _ = minimize_on_host(fun, np.array([-1.9]))
    assert opt.converged and opt.stop == STOP_GRADIENT
    np.testing.assert_allclose(opt.theta, [1.5], rtol=1e-9)


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_host_loop_reaches_the_compiled_loops_optimum(page_df, reml):
    """The page's model, padded: the host loop over ``evaluate`` and the compiled loop
    reach the same deviance (1e-10 relative) and estimates."""
    design = build_design(
        "score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id)", page_df
    )
    cp = fit_cross_products(design)
    padded, padding = buckets.pad_cross_products(cp, reml=reml)
    theta0 = to_internal(start_values(design), [1, 1], cp.order)
    nu = device_array(float(np.asarray(cp.n)) - (cp.p if reml else 0), np.float64)

    def fun(theta):
        out = evaluate(buckets.pad_theta(theta, padding), padded, device_array(reml), nu)
        return float(out.value), buckets.unpad_theta(out.grad, padding), out.est

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        host, est = minimize_on_host(fun, theta0)
        compiled = minimize_deviance(buckets.pad_theta(theta0, padding), padded, reml=reml)
    assert host.converged and bool(compiled.converged)
    assert float(est.deviance) == pytest.approx(float(compiled.deviance), rel=1e-10)
    np.testing.assert_allclose(
        np.abs(host.theta),
        np.abs(buckets.unpad_theta(compiled.theta, padding)),
        rtol=1e-5,
        atol=1e-7,
    )


def test_evaluation_is_the_deviance_and_its_gradient(page_df):
    """``evaluate``'s value and gradient (method as data) equal autodiff of the
    standardized deviance with the method static, and its estimates' deviance is the
    profiled deviance in the data's units (1e-12 relative)."""
    from interlace._core.deviance import profiled_deviance, standardized_deviance

    cp = fit_cross_products(
        build_design(
            "score ~ hours_studied + (hours_studied | school_id) + (1 | student_id)", page_df
        )
    )
    theta = np.array([0.7, 0.2, 0.4, 0.3])[: cp.theta_offsets[-1]]
    for reml in (True, False):
        nu = float(np.asarray(cp.n)) - (cp.p if reml else 0)
        out = evaluate(device_array(theta), cp, device_array(reml), device_array(nu, np.float64))
        value, grad = jax.value_and_grad(standardized_deviance)(device_array(theta), cp, reml=reml)
        assert float(out.value) == pytest.approx(float(value), rel=1e-12)
        np.testing.assert_allclose(out.grad, grad, rtol=1e-10, atol=1e-12)
        assert float(out.est.deviance) == pytest.approx(
            float(profiled_deviance(device_array(theta), cp, reml=reml)), rel=1e-12
        )


def test_rounding_level_deviances_do_not_stall_the_line_search():
    """Near the optimum the deviance changes by its rounding error only: the derivative
    must decide there (approximate Wolfe), so the search ends on a small gradient in a
    few evaluations instead of bisecting rounding noise (137 evaluations without)."""
    rng = np.random.default_rng(1)

    def f(x):  # a steep, skewed bowl near 1e3 whose value carries 1e-13 relative noise
        d = x - 0.3
        return float(
            1e3
            + 1e6 * (d[0] ** 2 + 30 * d[1] ** 2 + d[0] * d[1] + 50 * d[0] ** 4)
            + rng.uniform(-1e-10, 1e-10)
        )

    def g(x):
        d = x - 0.3
        return 1e6 * np.array([2 * d[0] + d[1] + 200 * d[0] ** 3, 60 * d[1] + d[0]])

    fun, calls = _numpy_fun(f, g)
    opt, _ = minimize_on_host(fun, np.array([0.5, 0.1]))
    assert opt.converged and opt.stop == STOP_GRADIENT
    np.testing.assert_allclose(opt.theta, [0.3, 0.3], rtol=1e-10)
    assert len(calls) <= 30


def _badly_scaled_quadratic():
    """Two coordinates of scale ~1 coupled to two of curvature ~10^4 (a GLMM's ``theta``
    beside ``beta`` of a column with many rows): ``0.5 x'Ax - b'x``."""
    A = np.array(
        [
            [2.0, 0.3, 5.0, 1.0],
            [0.3, 1.0, -2.0, 0.5],
            [5.0, -2.0, 4.0e4, 3.0e3],
            [1.0, 0.5, 3.0e3, 1.0e4],
        ]
    )
    b = np.array([1.0, -1.0, 2.0e3, -5.0e2])
    return A, b


def test_a_known_inverse_block_starts_the_recursion_and_saves_evaluations():
    # block_inverse gives the exact inverse of A's lower-right block: the first direction
    # is a Newton step there, and the minimum is reached with fewer evaluations than from
    # gamma I alone. Tolerances: 1e-9 relative on the minimiser (gtol 1e-10).
    A, b = _badly_scaled_quadratic()
    sl = slice(2, 4)
    M = np.linalg.inv(A[sl, sl])
    fun, calls = _numpy_fun(lambda x: 0.5 * x @ A @ x - b @ x, lambda x: A @ x - b)
    plain, _ = minimize_on_host(fun, np.full(4, 0.5))
    n_plain = len(calls)
    calls.clear()
    blocked, _ = minimize_on_host(fun, np.full(4, 0.5), block_inverse=lambda aux: (sl, M))
    x_star = np.linalg.solve(A, b)
    for opt in (plain, blocked):
        assert opt.converged and opt.stop == STOP_GRADIENT
        np.testing.assert_allclose(opt.theta, x_star, rtol=1e-9)
    assert len(calls) < n_plain, (len(calls), n_plain)
    # the first trial point: theta moved by the scaled gradient (at most 0.1), the block by
    # its Newton step -M g_block
    x0 = np.full(4, 0.5)
    g0 = A @ x0 - b
    first = calls[1]
    np.testing.assert_allclose(first[sl], x0[sl] - M @ g0[sl], rtol=1e-12)
    assert np.max(np.abs(first[:2] - x0[:2])) == pytest.approx(0.1, rel=1e-12)


def test_an_unusable_inverse_block_falls_back_to_the_plain_start():
    # a non-finite, wrongly sized or indefinite block is ignored: every trial point is the
    # one the plain recursion takes (exact equality)
    A, b = _badly_scaled_quadratic()
    fun, calls = _numpy_fun(lambda x: 0.5 * x @ A @ x - b @ x, lambda x: A @ x - b)
    minimize_on_host(fun, np.full(4, 0.5))
    plain = [c.copy() for c in calls]
    for bad in (
        np.full((2, 2), np.nan),
        np.eye(3),
        np.array([[1.0, 0.0], [0.0, -1.0]]),
    ):
        calls.clear()
        minimize_on_host(fun, np.full(4, 0.5), block_inverse=lambda aux, M=bad: (slice(2, 4), M))
        assert len(calls) == len(plain)
        for got, want in zip(calls, plain):
            np.testing.assert_array_equal(got, want)
    calls.clear()
    minimize_on_host(fun, np.full(4, 0.5), block_inverse=lambda aux: None)
    assert all(np.array_equal(g, w) for g, w in zip(calls, plain)) and len(calls) == len(plain)


def test_a_step_that_cannot_move_x_ends_the_search():
    """A stiff coordinate (curvature 1e12, as a count model's intercept with counts near
    1e5) whose gradient carries rounding of 1e-3 and whose value carries 1e-13 relative:
    near the minimum the line search accepts steps too short to move ``x`` (no worse
    within rounding), and as the value's last digits changed at each one, the stall rule
    never fired: the search ran to ``maxiter`` (500 iterations, 6,052 evaluations). A
    step that leaves ``x`` as it was now stops it, stalled, at the minimum to rounding."""
    rng = np.random.default_rng(3)
    c, h = 12.146337531, 1e12

    def f(x):
        return float(1e3 + 0.5 * h * (x[0] - c) ** 2 + rng.uniform(-1e-10, 1e-10))

    def g(x):
        return np.array([h * (x[0] - c) + rng.uniform(-1e-3, 1e-3)])

    fun, calls = _numpy_fun(f, g)
    opt, _ = minimize_on_host(fun, np.array([12.0]))
    assert opt.stop == STOP_STALLED
    np.testing.assert_allclose(opt.theta, [c], rtol=1e-14)
    assert len(calls) <= 50
