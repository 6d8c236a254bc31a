"""Simulation from a fitted GLMM and its parametric bootstrap."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import interlace

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def cbpp_fit():
    d = pd.read_csv(DATA / "cbpp.csv")
    d["period"] = pd.Categorical(d["period"].astype(str), categories=["1", "2", "3", "4"])
    return interlace.fit(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", d, family="binomial"
    )


def test_simulate_moments_poisson():
    """Poisson with one random intercept: E[y] = exp(x'beta + o + sd^2 / 2); the mean of
    4,000 draws is within 4 of its standard errors (computed from the draws)."""
    rng = np.random.default_rng(3)
    n = 200
    g = rng.integers(0, 10, n)
    d = pd.DataFrame({"g": [f"g{k}" for k in g], "x": rng.normal(size=n)})
    d["y"] = rng.poisson(np.exp(0.5 + 0.3 * d["x"] + rng.normal(0, 0.4, 10)[g]))
    res = interlace.fit("y ~ x + (1 | g)", d, family="poisson")
    sims = res.simulate(4000, seed=7).to_numpy()  # (rows, draws)
    sd = res.theta.iloc[0]
    expected = np.exp(res.design.X @ res.fe_params.to_numpy() + sd**2 / 2)
    # draws of one row share a level's effect across rows but not across draws: per row,
    # the draws are independent
    mean, se = sims.mean(axis=1), sims.std(axis=1, ddof=1) / np.sqrt(sims.shape[1])
    assert np.all(np.abs(mean - expected) < 4 * se + 1e-12)
    assert np.all(sims >= 0) and np.all(sims == np.round(sims))


def test_simulate_binomial_is_proportions_of_trials(cbpp_fit):
    sims = cbpp_fit.simulate(20, seed=1)
    trials = cbpp_fit.model_fit.prior_weights
    successes = sims.to_numpy() * trials[:, None]
    assert np.allclose(successes, np.round(successes), atol=1e-9)
    assert sims.to_numpy().min() >= 0 and sims.to_numpy().max() <= 1
    assert list(sims.index) == list(cbpp_fit.fittedvalues.index)
    # a seed reproduces the draws exactly
    pd.testing.assert_frame_equal(sims, cbpp_fit.simulate(20, seed=1))


def test_draws_warn_where_prior_weights_cannot_be_honoured(cbpp_fit):
    """As R's simulate: count draws ignore prior weights, and binomial draws need whole
    trials (non-integer ones are rounded), each with a warning naming the departure;
    whole trials (cbpp) draw silently."""
    rng = np.random.default_rng(4)
    n = 120
    g = rng.integers(0, 8, n)
    d = pd.DataFrame({"g": [f"g{k}" for k in g], "x": rng.normal(size=n)})
    d["y"] = rng.poisson(np.exp(0.5 + 0.3 * d["x"]))
    d["w"] = np.resize([1.0, 2.0], n)
    counts = interlace.fit("y ~ x + (1 | g)", d, family="poisson", weights="w")
    with pytest.warns(UserWarning, match="draws ignore the prior weights"):
        counts.simulate(2, seed=1)
    d["b"] = (d["y"] > 1).astype(float)
    d["t"] = np.resize([1.0, 2.5], n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-integer successes, as glmer
        props = interlace.fit("b ~ x + (1 | g)", d, family="binomial", weights="t")
    with pytest.warns(UserWarning, match="not whole numbers of trials"):
        props.simulate(2, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cbpp_fit.simulate(2, seed=1)


def test_parametric_bootstrap(cbpp_fit):
    """60 refits converge; the bootstrap SEs of the fixed effects are within 35% of the
    Wald SEs (a loose statistical check: with 60 replicates an SE estimate has a relative
    sd of ~9%); the same seed gives the same replicates."""
    boot = cbpp_fit.parametric_bootstrap(60, seed=2)
    assert boot.n_bootstrap == 60 and boot.converged.all()
    se = boot.se()[cbpp_fit.fe_params.index]
    np.testing.assert_allclose(se, cbpp_fit.fe_bse, rtol=0.35)
    assert list(boot.estimate.index) == list(boot.replicates.columns)
    np.testing.assert_allclose(boot.estimate[cbpp_fit.fe_params.index], cbpp_fit.fe_params)
    again = cbpp_fit.parametric_bootstrap(60, seed=2)
    pd.testing.assert_frame_equal(boot.replicates, again.replicates)
    ci = boot.conf_int()
    assert np.all(ci.iloc[:, 0] < ci.iloc[:, 1])


def test_refits_in_lanes_equal_refits_one_by_one(cbpp_fit, monkeypatch):
    """The two engines of the bootstrap (``_inference.glmm_parametric``): 20 draws refitted
    one after another and in vectorised lanes from the fitted theta reach the same optima:
    estimates to 1e-6 (both stop at a gradient of ~1e-10 relative)."""
    from interlace._inference import glmm_parametric

    assert not glmm_parametric.vectorise(20, 56) and glmm_parametric.vectorise(1000, 56)
    one_by_one = cbpp_fit.parametric_bootstrap(20, seed=5)
    monkeypatch.setattr(glmm_parametric, "vectorise", lambda n, nobs: True)
    lanes = cbpp_fit.parametric_bootstrap(20, seed=5)
    assert one_by_one.converged.all() and lanes.converged.all()
    np.testing.assert_allclose(lanes.replicates, one_by_one.replicates, atol=1e-6)


def test_pickle_and_is_singular(cbpp_fit):
    """A GLMM result pickles (same numbers and predictions after a round trip) and
    interlace.isSingular reads it as lme4's isSingular does."""
    import pickle

    back = pickle.loads(pickle.dumps(cbpp_fit))
    assert back.llf == cbpp_fit.llf
    pd.testing.assert_series_equal(back.predict(), cbpp_fit.predict())
    assert interlace.isSingular(cbpp_fit) is False
    assert interlace.isSingular(cbpp_fit, tol=1.0) is True  # theta 0.64 < 1
