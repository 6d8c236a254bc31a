"""A small GLMM evaluates at its size class's shapes (``_core.glmm_buckets``): rows,
levels and tail columns padded, so that models of other data and random structures
share one compiled evaluation. The padding must change no number: the padded
evaluation equals the exact-shape one, and a model of the same class compiles
nothing."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._core import glmm_buckets
from interlace._core.family import binomial, negative_binomial, poisson
from interlace._model.glmm_design import build_glmm_design
from interlace._model.glmm_estimate import GlmmProblem

from .conftest import backend_compiles, exact_glmm_deviance


def _frame(seed: int = 5, n: int = 600, n1: int = 30, n2: int = 12):
    rng = np.random.default_rng(seed)
    g1, g2 = rng.permutation(np.arange(n) % n1), rng.integers(0, n2, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    u1, u2 = rng.normal(0, 0.8, n1), rng.normal(0, 0.5, n2)
    slope = rng.normal(0, 0.4, n1)
    eta = -0.3 + (0.6 + slope[g1]) * x1 - 0.4 * x2 + u1[g1] + u2[g2]
    trials = rng.integers(1, 6, n)
    hours = rng.uniform(0.5, 3.0, n)
    return pd.DataFrame(
        {
            "y": rng.binomial(1, 1 / (1 + np.exp(-eta))),
            "k": rng.binomial(trials, 1 / (1 + np.exp(-eta))),
            "trials": trials,
            "count": rng.poisson(hours * np.exp(0.5 + 0.3 * x1 + u1[g1] / 2)),
            "nb": rng.negative_binomial(2.0, 2.0 / (2.0 + np.exp(1.0 + 0.3 * x1 + u1[g1]))),
            "hours": hours,
            "x1": x1,
            "x2": x2 + 40.0,  # far from zero: scaled columns beside padded ones
            "g1": [f"s{i}" for i in g1],
            "g2": [f"i{i}" for i in g2],
        }
    )


def test_ladder():
    assert [glmm_buckets.ladder(v, 16) for v in (1, 16, 17, 24, 25, 33, 49, 65, 316)] == [
        16, 16, 24, 24, 32, 48, 64, 96, 384,
    ]  # fmt: skip


MODELS = [
    ("y ~ x1 + x2 + (1 | g1) + (1 | g2)", binomial()),
    ("y ~ x1 + (1 + x1 | g1) + (1 | g2)", binomial()),  # a correlated slope in term 1
    ("y ~ x1 + (1 | g1) + (0 + x1 | g1) + (1 | g2)", binomial()),  # block-diagonal term 1
    ("cbind(k, trials - k) ~ x1 + (1 | g1) + (1 | g2)", binomial(link="probit")),
    ("count ~ x1 + offset(np.log(hours)) + (1 | g1) + (1 | g2)", poisson()),
    ("nb ~ x1 + (1 | g1) + (1 | g2)", negative_binomial()),  # size estimated: log k last
]


@pytest.mark.usefixtures("float64_throughout")
@pytest.mark.parametrize(("formula", "family"), MODELS)
def test_padded_evaluation_equals_the_exact_one(formula, family):
    """Value, gradient, modes and ``(R_X'R_X)^-1`` of the padded evaluation against the
    exact-shape one (``shared=False``), at the same point, for both objectives (``nAGQ
    = 0``: ``beta`` in PIRLS; Laplace: ``beta`` given): 1e-10 relative on the value
    (padded rows and columns add exact zeros, but change the order of some sums), 1e-8
    on the gradient and the modes."""
    glmm = build_glmm_design(formula, _frame(), None, family)
    padded = GlmmProblem(glmm, family, 1)
    exact = GlmmProblem(glmm, family, 1, shared=False)
    assert padded.padding is not None and exact.padding is None
    assert padded.padding.size.n > glmm.design.X.shape[0]
    theta = np.linspace(0.7, 0.3, padded.n_theta)
    beta = np.linspace(-0.3, 0.2, padded.p)
    extra = padded.extra0()
    for joint, x in ((True, np.r_[theta, extra]), (False, np.r_[theta, beta, extra])):
        v1, g1, lp1 = padded.fun(joint)(x)
        v2, g2, lp2 = exact.fun(joint)(x)
        assert v1 == pytest.approx(v2, rel=1e-10)
        assert g1.shape == g2.shape == x.shape
        np.testing.assert_allclose(g1, g2, rtol=1e-8, atol=1e-8 * np.abs(g2).max())
        for name in ("beta", "b1", "u1", "b_tail", "u_tail", "eta"):
            a, b = np.asarray(getattr(lp1.modes, name)), np.asarray(getattr(lp2.modes, name))
            assert a.shape == b.shape, name
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10, err_msg=name)
        np.testing.assert_allclose(lp1.fe_cov, lp2.fe_cov, rtol=1e-8, atol=1e-12)


@pytest.mark.usefixtures("float64_throughout")
def test_models_of_one_class_share_the_compiled_evaluation():
    """After one fit, fits of other data (other rows, other numbers of levels) and other
    fixed effects in the same class, by nAGQ = 0 and Laplace, build no XLA executable;
    each fit's -2 logLik is its exact-shape evaluation's at its estimates (1e-10
    relative)."""
    first = _frame(seed=1, n=600, n1=30, n2=12)
    others = [
        (_frame(seed=2, n=700, n1=26, n2=14), "y ~ x1 + (1 | g1) + (1 | g2)", 0),
        (_frame(seed=3, n=520, n1=32, n2=15), "y ~ x2 + x1 + (1 | g1) + (1 | g2)", 1),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interlace.fit("y ~ x1 + x2 + (1 | g1) + (1 | g2)", first, family="binomial")
        with backend_compiles() as compiles:
            fits = [interlace.fit(f, df, family="binomial", nAGQ=a) for df, f, a in others]
    assert compiles == []
    for fit, (df, formula, nagq) in zip(fits, others):
        assert fit.converged
        value = exact_glmm_deviance(fit, formula, df, binomial(), nagq)
        assert -2.0 * fit.llf == pytest.approx(value, rel=1e-10)


@pytest.mark.parametrize(
    ("formula", "nagq", "why"),
    [
        ("y ~ x1 + (1 | g1) + (1 + x1 | g2)", 1, "a slope outside term 1"),
        ("y ~ x1 + (1 | g1)", 1, "one grouping factor"),
    ],
)
def test_models_outside_the_classes_keep_their_shapes(formula, nagq, why):
    glmm = build_glmm_design(formula, _frame(), None, binomial())
    assert GlmmProblem(glmm, binomial(), nagq).padding is None, why


def test_large_models_keep_their_shapes():
    df = _frame(n=40_000, n1=300, n2=40)
    glmm = build_glmm_design("y ~ x1 + (1 | g1) + (1 | g2)", df, None, binomial())
    assert GlmmProblem(glmm, binomial(), 1).padding is None  # more rows than MAX_ROWS
