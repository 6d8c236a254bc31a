"""Cluster and pigeonhole refit bootstraps.

The key check: a replicate evaluated with copy counts (weights plus level
multiplicities, no data rebuilt) is the model of the physically resampled data, in
which every drawn copy of a level is a new level. Deviances must agree to 1e-9
relative at arbitrary theta, and refits must give the same estimates.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._inference.resample import LevelResamples

from .conftest import DATA, PAGE_FORMULA, PAGE_GROUPS, fit_quiet

SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep_fit():
    return fit_quiet(SLEEP, pd.read_csv(DATA / "sleepstudy.csv"))[0]


def _physical(df, design, draws: dict[str, np.ndarray]) -> pd.DataFrame:
    """The resampled data itself: for every combination of drawn copies, the rows of the
    original cell, with each copy relabelled as a new level."""
    keys = list(draws)
    codes = [design.codes[design.factor_names.index(f)] for f in keys]
    parts = []
    for combo in (
        np.array(np.meshgrid(*[np.arange(len(draws[f])) for f in keys], indexing="ij"))
        .reshape(len(keys), -1)
        .T
    ):
        mask = np.ones(len(df), bool)
        for f, c, i in zip(keys, codes, combo):
            mask &= c == draws[f][i]
        if mask.any():
            part = df[mask].copy()
            for f, i in zip(keys, combo):
                part[f] = f"copy{i}"
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _counted_model(result, draws):
    with jax.enable_x64(True):  # private resampling leaves made here: float64 JAX arrays
        reps = LevelResamples(result.model_fit, list(draws))
        counts = {f: np.bincount(v, minlength=reps.nlevels(f))[None] for f, v in draws.items()}
        W, lm, tm = reps.leaves(counts)
        return dataclasses.replace(reps.model, weights=W[0], level_mult=lm[0], tail_mult=tm[0])


CASES = [
    ("page", ["student_id", "school_id"]),  # pigeonhole: first term and tail factor
    ("page", ["school_id"]),  # cluster bootstrap of a tail factor
    ("page", ["student_id"]),  # cluster bootstrap of the first term
    ("sleep", ["Subject"]),  # first term with random slopes
]


@pytest.mark.parametrize("which,factors", CASES)
def test_counted_deviance_equals_the_physically_resampled_data(
    which, factors, page_result, sleep_fit
):
    result = page_result if which == "page" else sleep_fit
    df = (
        interlace.datasets.exam_scores()
        if which == "page"
        else pd.read_csv(DATA / "sleepstudy.csv")
    )
    rng = np.random.default_rng(7)
    d = result.design
    for _ in range(2):
        draws = {
            f: rng.integers(
                0, len(d.levels[d.factor_names.index(f)]), len(d.levels[d.factor_names.index(f)])
            )
            for f in factors
        }
        counted = _counted_model(result, draws)
        formula = PAGE_FORMULA if which == "page" else SLEEP
        physical = interlace.model_arrays(
            formula, _physical(df, d, draws), groups=PAGE_GROUPS if which == "page" else None
        )
        base = result.theta.to_numpy()
        for scale in (0.5, 1.0, 2.0):
            theta = np.maximum(np.abs(base), 0.05) * scale * np.sign(base + 1e-9)
            for reml in (True, False):
                with jax.disable_jit():  # eager: each physical data set has new shapes
                    a = float(interlace.deviance(theta, counted, reml=reml))
                    b = float(interlace.deviance(theta, physical, reml=reml))
                assert a == pytest.approx(b, rel=1e-9)


def test_counted_refit_equals_fit_of_the_resampled_data(page_result):
    d = page_result.design
    rng = np.random.default_rng(3)
    draws = {f: rng.integers(0, len(lv), len(lv)) for f, lv in zip(d.factor_names, d.levels)}
    physical = _physical(interlace.datasets.exam_scores(), d, draws)
    direct = fit_quiet(PAGE_FORMULA, physical, groups=PAGE_GROUPS)[0]
    counted = interlace.fit_arrays(
        _counted_model(page_result, draws), theta0=np.array([0.5, 0.5]), implicit=False
    )
    # both are optima of the same function: 1e-6 relative
    np.testing.assert_allclose(np.asarray(counted["beta"]), direct.fe_params, rtol=1e-6)
    assert float(counted["sigma"]) ** 2 == pytest.approx(direct.scale, rel=1e-6)
    assert float(counted["deviance"]) == pytest.approx(direct.deviance, rel=1e-9)


def test_cluster_and_pigeonhole_bootstraps_run_vectorised(page_result):
    pig = page_result.pigeonhole_bootstrap(64, seed=1)
    assert pig.n_bootstrap == 64 and pig.converged.all()
    again = page_result.pigeonhole_bootstrap(64, seed=1)
    pd.testing.assert_frame_equal(pig.replicates, again.replicates)  # seeded
    se = pig.se()
    assert (se[["Intercept", "hours_studied", "prior_gpa"]] > 0).all()
    # resampling schools as well as students adds variability to the intercept
    cluster = page_result.cluster_bootstrap(64, group="student_id", seed=1)
    assert cluster.converged.all()
    assert cluster.se()["Intercept"] < pig.se()["Intercept"]
    ci = cluster.conf_int()
    assert (ci.iloc[:, 0] <= ci.iloc[:, 1]).all()


def test_resampling_errors_name_the_problem(page_result):
    with pytest.raises(interlace.ModelSpecError, match="not a grouping factor"):
        page_result.cluster_bootstrap(10, group="classroom")
    with pytest.raises(interlace.ModelSpecError, match="at least 2"):
        page_result.pigeonhole_bootstrap(1)
    df = pd.read_csv(DATA / "sleepstudy.csv")
    uncorr = fit_quiet("Reaction ~ Days + (Days || Subject)", df)[0]
    with pytest.raises(interlace.ModelSpecError, match="one term"):
        uncorr.cluster_bootstrap(10)
    pastes = pd.read_csv(DATA / "pastes.csv")
    nested = fit_quiet("strength ~ 1 + (1 | batch/cask)", pastes)[0]
    with pytest.raises(interlace.ModelSpecError, match="nested"):
        nested.cluster_bootstrap(10, group="batch")


def test_one_by_one_refits_equal_vectorised_ones(page_result, monkeypatch):
    """Wide tails are refitted sequentially (lax.map) instead of vmapped: same answers."""
    import interlace._core.refit as sim

    together = page_result.pigeonhole_bootstrap(16, seed=5)
    monkeypatch.setattr(sim, "SEQUENTIAL_ABOVE", 0)  # treat the page's tail as wide
    assert sim.sequential(
        interlace.model_arrays(
            PAGE_FORMULA, interlace.datasets.exam_scores(), groups=PAGE_GROUPS
        ).template
    )
    apart = page_result.pigeonhole_bootstrap(16, seed=5)
    assert apart.converged.all() and together.converged.all()
    # both are converged optima: 1e-5 relative
    np.testing.assert_allclose(
        apart.replicates.to_numpy(), together.replicates.to_numpy(), rtol=1e-5, atol=1e-7
    )
