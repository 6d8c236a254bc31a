"""Fixed-effect formulas (formulaic) and ways of naming random intercepts, each checked
against the dense reference optimum (tests/dense_reference.py) with a design matrix
built independently in numpy. Tolerances: deviance 1e-8 relative (ours may be lower),
fixed effects 1e-5 relative (plus 1e-8 absolute for coefficients near 0)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from .conftest import fit_quiet
from .dense_reference import dense_optimum


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(11)
    n = 150
    df = pd.DataFrame({
        "x": rng.normal(size=n),
        "z": rng.uniform(1, 3, size=n),
        "cond": rng.choice(["a", "b", "c"], size=n),
        "g": rng.choice([f"g{i}" for i in range(12)], size=n),
        "h": rng.choice([f"h{i}" for i in range(5)], size=n),
    })
    ge = dict(zip(sorted(df.g.unique()), rng.normal(size=12)))
    he = dict(zip(sorted(df.h.unique()), rng.normal(scale=0.7, size=5)))
    df["y"] = (1 + 0.5 * df.x - 0.3 * np.log(df.z) + (df.cond == "b") * 0.8
               + df.g.map(ge) + df.h.map(he) + rng.normal(size=n))
    return df


def _codes(s: pd.Series):
    codes, levels = pd.factorize(s, sort=True)
    return codes, len(levels)


def _check(res, X, y, factors, reml=True):
    codes, nlev = zip(*(_codes(f) for f in factors))
    ref = dense_optimum(list(codes), list(nlev), X, y, reml)
    assert res.converged
    assert res.deviance <= ref["deviance"] + 1e-8 * abs(ref["deviance"])
    assert res.deviance == pytest.approx(ref["deviance"], rel=1e-8)
    np.testing.assert_allclose(res.fe_params.to_numpy(), ref["beta"], rtol=1e-5, atol=1e-8)


def test_continuous_categorical_and_transform(frame):
    res, _ = fit_quiet("y ~ x + cond + np.log(z)", frame, groups=["g", "h"])
    assert list(res.fe_params.index) == ["Intercept", "x", "cond[T.b]", "cond[T.c]", "np.log(z)"]
    X = np.column_stack([np.ones(len(frame)), frame.x, frame.cond == "b", frame.cond == "c",
                         np.log(frame.z)]).astype(float)
    _check(res, X, frame.y.to_numpy(), [frame.g, frame.h])


def test_interaction_and_explicit_categorical(frame):
    res, _ = fit_quiet("y ~ x * C(cond)", frame, groups=["g", "h"], method="ML")
    b, c = (frame.cond == "b").astype(float), (frame.cond == "c").astype(float)
    X = np.column_stack([np.ones(len(frame)), frame.x, b, c, frame.x * b, frame.x * c])
    assert len(res.fe_params) == 6
    _check(res, X, frame.y.to_numpy(), [frame.g, frame.h], reml=False)


def test_intercept_only(frame):
    res, _ = fit_quiet("y ~ 1", frame, groups="g")  # groups as a plain string
    assert list(res.fe_params.index) == ["Intercept"]
    _check(res, np.ones((len(frame), 1)), frame.y.to_numpy(), [frame.g])


def test_random_terms_in_formula_equal_groups(frame):
    a, _ = fit_quiet("y ~ x + (1 | g) + (1 | h)", frame)
    b, _ = fit_quiet("y ~ x + (1 | g)", frame, groups=["h"])  # both ways combined
    c, _ = fit_quiet("y ~ x", frame, groups=["g", "h"])
    for other in (b, c):
        assert other.deviance == pytest.approx(a.deviance, rel=1e-12)
        np.testing.assert_allclose(other.fe_params, a.fe_params, rtol=1e-9)
    assert list(a.variance_components) == ["g", "h"] == list(c.variance_components)


def test_interaction_and_nested_factors(frame):
    nested, _ = fit_quiet("y ~ x + (1 | h/g)", frame)  # lme4: (1 | h) + (1 | g:h)
    assert list(nested.variance_components) == ["h", "g:h"]
    hg = frame.g + ":" + frame.h
    assert nested.ngroups["g:h"] == hg.nunique()
    X = np.column_stack([np.ones(len(frame)), frame.x])
    _check(nested, X, frame.y.to_numpy(), [frame.h, hg])
    inter, _ = fit_quiet("y ~ x + (1 | g:h) + (1 | h)", frame)
    assert inter.deviance == pytest.approx(nested.deviance, rel=1e-12)
    assert set(inter.random_effects["g:h"].index) == set(hg)


def test_transformed_response(frame):
    shifted = frame.assign(y=frame.y + 10)
    res, _ = fit_quiet("np.log(y) ~ x", shifted, groups=["g", "h"])
    X = np.column_stack([np.ones(len(frame)), frame.x])
    _check(res, X, np.log(shifted.y.to_numpy()), [frame.g, frame.h])
