"""PIRLS's warm start (``_core.pirls.PirlsStart``): each evaluation starts at the
previous one's modes ``b`` and ``beta`` with their penalised deviance at the new
``theta`` (``u = Lambda^-1 b``), and a first step that would raise it is halved.

Before, the warm start was the previous evaluation's linear predictor alone, whose
first step was taken whole: after an evaluation near ``theta = 0`` (as a line search can
try), the next one at the optimum returned 36,535 for a probit model whose -2 logLik
there is 1,093.8, and a Poisson model's 333,011 for 188.6 (found by a review probe).
A warm start that still stalls (no halving lowers the penalised deviance while the step
would move the linear predictor: a cloglog model's 2,858 for 1,859) starts again cold,
and the lower of the two is kept."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import interlace
from interlace._core.family import binomial, poisson
from interlace._core.pirls import (
    STEP_TOL,
    _penalized_deviance,
    cold_start,
    pirls,
    warm_start,
)
from interlace._core.theta import to_internal
from interlace._model.glmm_design import build_glmm_design
from interlace._model.glmm_estimate import GlmmProblem


def _trials(link="probit", seed=18, groups=30, per=20, trials=50):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=g.size)
    eta = -3.0 + x + rng.normal(scale=3.0, size=groups)[g]
    rng.normal(size=groups)  # the probe's draws, kept: its data
    p = norm.cdf(eta) if link == "probit" else -np.expm1(-np.exp(eta))
    k = rng.binomial(trials, p)
    return pd.DataFrame({"s": k, "f": trials - k, "x": x, "g": g.astype(str)})


def _sparse_counts(seed=24, groups=100, per=3):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=g.size)
    eta = -4.0 + 0.5 * x + rng.normal(scale=2.0, size=groups)[g]
    rng.normal(size=groups)  # the probe's draws, kept: its data
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": g.astype(str)})


CASES = {  # formula, data, family, nAGQ
    "probit, 50 trials": ("cbind(s, f) ~ x + (1 | g)", _trials, binomial("probit"), 1),
    "Poisson, mostly zeros": ("y ~ x + (1 | g)", _sparse_counts, poisson(), 1),
    # a warm start that stalls where the cloglog link saturates: PIRLS starts again cold
    "cloglog, 50 trials, nAGQ=0": (
        "cbind(s, f) ~ x + (1 | g)",
        lambda: _trials("cloglog"),
        binomial("cloglog"),
        0,
    ),
}


@pytest.mark.usefixtures("float64_throughout")
@pytest.mark.parametrize("case", list(CASES))
def test_an_evaluation_after_theta_near_zero_is_the_cold_one(case):
    """At the optimum, after evaluations there and at ``theta = 1e-6``: the value of a fresh
    problem's (cold-started) evaluation there, to 1e-9 relative."""
    formula, make, family, nagq = CASES[case]
    df = make()
    fit = interlace.fit(formula, df, family=family, nAGQ=nagq)
    assert fit.converged

    def problem():
        return GlmmProblem(build_glmm_design(formula, df, None, family), family, nagq)

    prob = problem()
    theta = to_internal(np.asarray(fit.model_fit.theta), prob.ks, prob.order)
    beta_s = prob.standardized_beta(fit.fe_params.to_numpy())
    x = theta if nagq == 0 else np.concatenate([theta, beta_s])
    cold, _, _ = problem().fun(nagq == 0)(x)
    assert cold == pytest.approx(-2.0 * fit.llf, rel=1e-9)
    f = prob.fun(nagq == 0)
    f(x)  # at the optimum, then near theta = 0 (warm from the optimum's modes), then back
    near_zero = x.copy()
    near_zero[0] = 1e-6
    f(near_zero)
    after, _, _ = f(x)
    assert after == pytest.approx(cold, rel=1e-9)


@pytest.mark.usefixtures("float64_throughout")
@pytest.mark.parametrize("case", list(CASES))
def test_pirls_restarted_at_its_modes_stays_there(case):
    """PIRLS started warm at its own converged modes does not raise the penalised
    deviance ``F`` (1e-12 relative) and ends at the same modes (1e-5: PIRLS stops when
    ``F`` changes by less than 1e-10 relative, which leaves the modes that accurate)."""
    formula, make, family, _ = CASES[case]
    df = make()
    glmm = build_glmm_design(formula, df, None, family)
    prob = GlmmProblem(glmm, family, 0, shared=False)  # PIRLS on the model's own arrays
    theta = jnp.array([1.7])
    eta0 = prob.start.eta
    m1, _ = pirls(theta, prob.ma, family, prob.data, cold_start(eta0, prob.ma), None, False)
    m2, _ = pirls(theta, prob.ma, family, prob.data, warm_start(m1, eta0), None, False)
    f1 = float(_penalized_deviance(family, prob.data, m1.eta, m1.u_squared))
    f2 = float(_penalized_deviance(family, prob.data, m2.eta, m2.u_squared))
    assert f2 <= f1 * (1 + 1e-12)
    np.testing.assert_allclose(np.asarray(m2.u1), np.asarray(m1.u1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(m2.beta), np.asarray(m1.beta), rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("float64_throughout")
@pytest.mark.parametrize("link", ["probit", "cloglog"])
def test_warm_started_modes_near_the_last_are_converged(link):
    """The Hessian's forward differences evaluate at ``x + h e_j`` warm from ``x``'s
    modes. For a non-canonical link (linear convergence), a single fit's PIRLS
    (``step_tol=STEP_TOL``) must not stop after a step that changed ``F`` by little while
    the modes are still off: the modes from the warm start equal a cold start's run to
    ``tol = 1e-15`` (and steps below 1e-13) within 1e-8 in the linear predictor (they
    were 1.6e-7 off after the two steps a relative change in ``F`` of 1e-10 allowed, a
    1e-4 to 1e-3 error in the standard errors)."""
    rng = np.random.default_rng(2)
    g = rng.integers(0, 40, 600)
    x = rng.normal(size=600)
    eta = 0.2 + 0.5 * x + rng.normal(0, 0.8, 40)[g]
    p = norm.cdf(eta) if link == "probit" else -np.expm1(-np.exp(eta - 0.5))
    df = pd.DataFrame({"y": (rng.random(600) < p).astype(float), "x": x, "g": g.astype(str)})
    family = binomial(link)
    fit = interlace.fit("y ~ x + (1 | g)", df, family=family)
    prob = GlmmProblem(build_glmm_design("y ~ x + (1 | g)", df, None, family), family, 1)
    theta = to_internal(np.asarray(fit.model_fit.theta), prob.ks, prob.order)
    x0 = np.concatenate([theta, prob.standardized_beta(fit.fe_params.to_numpy())])
    prob.fun(False)(x0)  # its modes become the warm start
    pad = np.zeros(prob.p_arrays - prob.p)
    for j, h in ((0, 1e-5), (1, 1e-5), (2, -1e-5)):
        xj = x0.copy()
        xj[j] += h
        theta_j, beta_j = jnp.asarray(xj[:1]), jnp.asarray(np.concatenate([xj[1:], pad]))
        cold = cold_start(prob.start.eta, prob.ma)
        ref, _ = pirls(
            theta_j,
            prob.ma,
            family,
            prob.data,
            cold,
            beta_j,
            tol=1e-15,
            maxiter=300,
            step_tol=1e-13,
        )
        warm, _ = pirls(theta_j, prob.ma, family, prob.data, prob.start, beta_j, step_tol=STEP_TOL)
        assert float(jnp.max(jnp.abs(warm.eta - ref.eta))) < 1e-8
