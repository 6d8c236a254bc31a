"""Bootstrap standard errors: weighted statistics, resampling weights, vectorisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interlace._inference.response_bootstrap import (
    chunked_replicates,
    resample_weights,
    weighted_median,
)


@pytest.mark.parametrize("seed", range(5))
def test_weighted_median_equals_median_of_expanded_sample(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=40)
    w = rng.integers(0, 4, size=40).astype(float)
    w[0] += 1  # at least one row
    expected = np.median(np.repeat(y, w.astype(int)))
    with jax.enable_x64(True):  # a private function on JAX arrays made here
        got = float(weighted_median(jnp.asarray(y), jnp.asarray(w)))
    assert got == pytest.approx(expected, abs=1e-15)


def test_group_weights_resample_whole_levels():
    codes = jnp.asarray(np.repeat(np.arange(6), [1, 2, 3, 4, 5, 6]))
    w = np.asarray(resample_weights(jax.random.key(0), codes, 6, codes.shape[0], 200))
    assert w.shape == (200, 21)
    for row in w:  # every row of a level carries that level's multiplicity
        per_level = [np.unique(row[np.asarray(codes) == lev]) for lev in range(6)]
        assert all(len(u) == 1 for u in per_level)
        assert sum(u[0] for u in per_level) == 6  # six levels drawn with replacement


def test_observation_weights_draw_n_rows():
    w = np.asarray(resample_weights(jax.random.key(1), None, 0, 50, 100))
    np.testing.assert_array_equal(w.sum(axis=1), 50)


def test_page_statistics_and_callables(page_result):
    y = page_result.design.y
    se_median = page_result.bootstrap_se("median", 2000, "observation", seed=3)
    same = page_result.bootstrap_se("median", 2000, "observation", seed=3)
    assert se_median == same  # a seed makes it reproducible
    se_mean = page_result.bootstrap_se("mean", 4000, "observation", seed=3)
    # the SE of a mean is sd/sqrt(n); 4000 replicates estimate it to ~1.1% (sd 1/sqrt(2B))
    assert se_mean == pytest.approx(np.std(y, ddof=0) / np.sqrt(len(y)), rel=0.05)
    custom = page_result.bootstrap_se(
        lambda v, w: jnp.sum(w * v) / jnp.sum(w), 4000, "observation", seed=3
    )
    assert custom == pytest.approx(se_mean, rel=1e-12)  # same draws, same statistic


def test_other_grouping_factor_and_chunking(page_result):
    d = page_result.design
    school = page_result.bootstrap_se("mean", 3000, "group", seed=5, group="school_id")
    assert np.isfinite(school) and school > 0
    codes = d.codes[1]
    with jax.enable_x64(True):  # the private engine of bootstrap_se, called directly
        small = chunked_replicates(9, d.y, codes, 10, weighted_median, 1000, max_elements=300 * 64)
    assert small.shape == (1000,)  # 16 chunks of 64, the last one trimmed
    assert len(np.unique(small)) > 20
