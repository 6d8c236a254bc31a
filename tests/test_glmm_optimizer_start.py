"""The Laplace fit's host L-BFGS starts its recursion on ``beta`` from the PIRLS
solve's ``(R_X'R_X)^-1 / 2`` (``GlmmProblem.beta_inverse_hessian``). That is a choice of
the optimiser's path, not of its optimum: the fit must reach the optimum the plain
recursion reaches, in fewer evaluations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._model.glmm_estimate import GlmmProblem


def _frame(seed: int = 11, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g1, g2 = rng.integers(0, 30, n), rng.integers(0, 12, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    eta = -0.3 + 0.6 * x1 - 0.4 * x2 + rng.normal(0, 0.8, 30)[g1] + rng.normal(0, 0.5, 12)[g2]
    hours = rng.uniform(0.5, 4.0, n)
    mu = hours * np.exp(0.5 + 0.3 * x1 + rng.normal(0, 0.4, 30)[g1] + rng.normal(0, 0.3, 12)[g2])
    return pd.DataFrame(
        {
            "y": rng.binomial(1, 1 / (1 + np.exp(-eta))),
            "count": rng.poisson(mu),
            "hours": hours,
            "x1": x1,
            "x2": x2 * 50.0 + 2_000.0,  # far from zero and wide: beta's scales differ
            "cond": rng.choice(["a", "b", "c"], n),
            "g1": [f"s{i}" for i in g1],
            "g2": [f"i{i}" for i in g2],
        }
    )


@pytest.mark.parametrize(
    ("formula", "family"),
    [
        ("y ~ x1 + x2 + cond + (1 | g1) + (1 | g2)", "binomial"),
        ("count ~ x1 + x2 + offset(np.log(hours)) + (1 | g1) + (1 | g2)", "poisson"),
    ],
)
def test_the_beta_block_start_reaches_the_same_optimum_in_fewer_evaluations(
    formula, family, monkeypatch
):
    """Tolerances: -2 logLik 1e-9 relative, fixed effects 1e-5 absolute and their
    standard errors 1e-4 relative (both fits stop at max |g| <= 1e-10 (1 + |f|))."""
    df = _frame()
    blocked = interlace.fit(formula, df, family=family)
    with monkeypatch.context() as m:
        m.setattr(GlmmProblem, "beta_inverse_hessian", lambda self, lp: None)
        plain = interlace.fit(formula, df, family=family)
    for fit in (blocked, plain):
        assert fit.converged, fit.model_fit.stop_reason
    assert -2 * blocked.llf == pytest.approx(-2 * plain.llf, rel=1e-9)
    np.testing.assert_allclose(blocked.fe_params, plain.fe_params, rtol=0, atol=1e-5)
    np.testing.assert_allclose(blocked.fe_bse, plain.fe_bse, rtol=1e-4)
    np.testing.assert_allclose(blocked.theta, plain.theta, rtol=0, atol=1e-4)
    assert blocked.n_evaluations < plain.n_evaluations, (
        blocked.n_evaluations,
        plain.n_evaluations,
    )
