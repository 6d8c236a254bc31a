"""A GLMM's model arrays hold its fixed effects padded to a shared width
(``glmm_estimate.shared_fixed_width``), so that models differing only in their fixed
effects share one compiled evaluation. The padded columns must change no number: the
evaluation equals the exact-width one, and a second formula on the same rows compiles
nothing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import interlace
from interlace._core.family import binomial, poisson
from interlace._model.glmm_design import build_glmm_design
from interlace._model.glmm_estimate import GlmmProblem, shared_fixed_width

from .conftest import backend_compiles, exact_glmm_deviance


def _frame(seed: int = 11, n: int = 600):
    import pandas as pd

    rng = np.random.default_rng(seed)
    g1, g2 = rng.integers(0, 30, n), rng.integers(0, 12, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    cond = rng.choice(["a", "b", "c"], n)
    eta = -0.3 + 0.6 * x1 - 0.4 * x2 + rng.normal(0, 0.8, 30)[g1] + rng.normal(0, 0.5, 12)[g2]
    return pd.DataFrame(
        {
            "y": rng.binomial(1, 1 / (1 + np.exp(-eta))),
            "count": rng.poisson(np.exp(0.5 + 0.3 * x1 + 0.3 * rng.normal(0, 1, 30)[g1])),
            "x1": x1,
            "x2": x2 + 40.0,  # far from zero: the padded columns sit beside a scaled one
            "cond": cond,
            "g1": [f"s{i}" for i in g1],
            "g2": [f"i{i}" for i in g2],
        }
    )


def test_shared_widths():
    assert [shared_fixed_width(p) for p in (1, 4, 5, 8, 9, 17, 32, 33, 48, 49)] == [
        4, 4, 8, 8, 16, 32, 32, 48, 48, 64,
    ]  # fmt: skip


@pytest.mark.usefixtures("float64_throughout")
@pytest.mark.parametrize(
    ("formula", "family"),
    [
        ("y ~ x1 + x2 + cond + (1 | g1) + (1 | g2)", binomial()),  # p = 5: 3 padded columns
        ("count ~ x1 + (1 | g1) + (1 | g2)", poisson()),  # p = 2: 2 padded
    ],
)
def test_padded_evaluation_equals_the_exact_width_one(formula, family):
    """Value, gradient, modes and ``(R_X'R_X)^-1`` of the padded evaluation against the
    exact-width one, at the same point: 1e-10 relative (different column counts change
    the order of some sums), for both objectives (``nAGQ = 0``: ``beta`` in PIRLS; Laplace:
    ``beta`` given)."""
    glmm = build_glmm_design(formula, _frame(), None, family)
    shared = GlmmProblem(glmm, family, 1)
    exact = GlmmProblem(glmm, family, 1, shared=False)
    assert shared.p_arrays > shared.p == exact.p_arrays
    theta = np.array([0.7, 0.4])
    beta = np.linspace(-0.3, 0.2, shared.p)
    for joint, x in ((True, theta), (False, np.concatenate([theta, beta]))):
        v1, g1, lp1 = shared.fun(joint)(x)
        v2, g2, lp2 = exact.fun(joint)(x)
        assert v1 == pytest.approx(v2, rel=1e-10)
        np.testing.assert_allclose(g1, g2, rtol=1e-8, atol=1e-8 * np.abs(g2).max())
        np.testing.assert_allclose(lp1.modes.beta, lp2.modes.beta, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(lp1.fe_cov, lp2.fe_cov, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(lp1.modes.eta, lp2.modes.eta, rtol=1e-8, atol=1e-10)


@pytest.mark.usefixtures("float64_throughout")
def test_other_fixed_effects_reuse_the_compiled_evaluation():
    """After one fit, fits with other fixed effects of the same width (other names,
    other counts of columns, a factor for a numeric column), by nAGQ = 0 and Laplace,
    build no XLA executable; each fit's -2 logLik is its exact-width evaluation's at
    its estimates (1e-10 relative)."""
    df = _frame(seed=3)
    others = [
        ("y ~ x2 + cond + x1:x2 + (1 | g1) + (1 | g2)", 1),  # p = 5
        ("y ~ x1 * cond + (1 | g1) + (1 | g2)", 0),  # p = 6
        ("y ~ cond + x1 + x2 + I(x1**2) + x1:x2 + (1 | g1) + (1 | g2)", 1),  # p = 7
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interlace.fit("y ~ x1 + x2 + cond + (1 | g1) + (1 | g2)", df, family="binomial", nAGQ=0)
        with backend_compiles() as compiles:
            fits = [interlace.fit(f, df, family="binomial", nAGQ=a) for f, a in others]
    assert compiles == []
    for fit, (formula, nagq) in zip(fits, others):
        assert fit.converged and len(fit.fe_params) == 5 + others.index((formula, nagq))
        value = exact_glmm_deviance(fit, formula, df, binomial(), nagq)
        assert -2.0 * fit.llf == pytest.approx(value, rel=1e-10)
