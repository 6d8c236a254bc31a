"""Every ``seed=`` accepts None, an integer (Python or numpy), a numpy Generator or
SeedSequence and a JAX PRNG key, and rejects anything else with a ModelSpecError that
lists what it accepts (issue 16, ``interlace._base.seeds``). Reproducibility checks are exact
(same seed, same replicates)."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._base.seeds import key_from_seed, rng_from_seed

ACCEPTS = "seed must be None, a non-negative integer, a numpy Generator"

REJECTED = [
    pytest.param(1.5, r"got 1\.5 \(float\)", id="float"),
    pytest.param(np.float64(3.0), r"got np\.float64\(3\.0\)|got 3\.0", id="numpy-float"),
    pytest.param(-1, "negative integer -1", id="negative-int"),
    pytest.param(np.int64(-7), "negative integer -7", id="negative-numpy-int"),
    pytest.param("42", r"got '42' \(str\)", id="string"),
    pytest.param(True, r"got True \(bool\)", id="bool"),
    pytest.param([1, 2], r"got \[1, 2\] \(list\)", id="list"),
]


def _data(key) -> np.ndarray:
    return np.asarray(jax.random.key_data(key))


# --- the helper ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 + 5, 2**63 - 1])
def test_integer_seed_is_jax_random_key(seed):
    """Below 2**64 an integer gives jax.random.key(seed)'s key with float64 on (the
    streams interlace always used), Python or numpy integer alike, whatever the flag: with
    it off JAX keeps only the low 32 bits of a seed (2**32 + 5 gives key(5)'s data)."""
    with jax.enable_x64(True):
        want = _data(jax.random.key(seed))
    assert not jax.config.jax_enable_x64  # interlace's key below is made with it off
    np.testing.assert_array_equal(_data(key_from_seed(seed)), want)
    np.testing.assert_array_equal(_data(key_from_seed(np.int64(seed))), want)
    np.testing.assert_array_equal(_data(key_from_seed(np.uint64(seed))), want)


def test_huge_integer_seed_is_reproducible():
    a, b = key_from_seed(2**80 + 3), key_from_seed(2**80 + 3)
    np.testing.assert_array_equal(_data(a), _data(b))
    assert not np.array_equal(_data(a), _data(key_from_seed(2**80 + 4)))


def test_seed_sequence_and_generator_seeds():
    ss = np.random.SeedSequence(2024)
    np.testing.assert_array_equal(_data(key_from_seed(ss)), _data(key_from_seed(ss)))
    np.testing.assert_array_equal(
        _data(key_from_seed(np.random.SeedSequence(2024))), _data(key_from_seed(ss))
    )
    # a Generator: the same state gives the same key, and the generator advances
    g1, g2 = np.random.default_rng(1), np.random.default_rng(1)
    first = _data(key_from_seed(g1))
    np.testing.assert_array_equal(first, _data(key_from_seed(g2)))
    assert not np.array_equal(first, _data(key_from_seed(g1)))


def test_jax_keys_are_used_as_given():
    key = jax.random.key(9)
    assert key_from_seed(key) is key
    legacy = jax.random.PRNGKey(9)  # raw uint32[2]
    np.testing.assert_array_equal(_data(key_from_seed(legacy)), _data(key))
    with pytest.raises(interlace.ModelSpecError, match="single JAX PRNG key"):
        key_from_seed(jax.random.split(key, 3))


def test_none_draws_fresh_entropy():
    assert not np.array_equal(_data(key_from_seed(None)), _data(key_from_seed(None)))
    assert isinstance(rng_from_seed(None), np.random.Generator)


def test_rng_from_seed():
    """Integers, SeedSequences and Generators give np.random.default_rng's streams (the
    level-resampling bootstraps' draws are unchanged for integer seeds)."""
    assert rng_from_seed(5).integers(1 << 30) == np.random.default_rng(5).integers(1 << 30)
    assert rng_from_seed(np.int32(5)).integers(1 << 30) == np.random.default_rng(5).integers(
        1 << 30
    )
    g = np.random.default_rng(3)
    assert rng_from_seed(g) is g
    ss = np.random.SeedSequence(8)
    assert rng_from_seed(ss).integers(1 << 30) == rng_from_seed(ss).integers(1 << 30)
    k = jax.random.key(4)
    assert rng_from_seed(k).integers(1 << 30) == rng_from_seed(k).integers(1 << 30)


@pytest.mark.parametrize("seed, detail", REJECTED)
def test_rejected_seeds_say_what_is_accepted(seed, detail):
    for make in (key_from_seed, rng_from_seed):
        with pytest.raises(interlace.ModelSpecError, match=ACCEPTS) as info:
            make(seed)
        assert info.match(detail)


# --- the entry points ------------------------------------------------------------------
def _sim(result, seed) -> pd.DataFrame:
    return result.simulate(3, seed=seed)


def test_simulate_accepts_every_seed_form(page_result):
    by_int = _sim(page_result, 3)
    pd.testing.assert_frame_equal(_sim(page_result, np.int64(3)), by_int)
    pd.testing.assert_frame_equal(_sim(page_result, jax.random.key(3)), by_int)
    pd.testing.assert_frame_equal(_sim(page_result, jax.random.PRNGKey(3)), by_int)
    pd.testing.assert_frame_equal(
        _sim(page_result, np.random.SeedSequence(11)), _sim(page_result, np.random.SeedSequence(11))
    )
    pd.testing.assert_frame_equal(
        _sim(page_result, np.random.default_rng(1)), _sim(page_result, np.random.default_rng(1))
    )
    assert not _sim(page_result, None).equals(_sim(page_result, None))


def test_bootstrap_se_accepts_a_generator(page_result):
    a = page_result.bootstrap_se("mean", 200, "observation", seed=np.random.default_rng(1))
    b = page_result.bootstrap_se("mean", 200, "observation", seed=np.random.default_rng(1))
    assert a == b  # exact: the same replicates
    ss = page_result.bootstrap_se("mean", 200, "observation", seed=np.random.SeedSequence(1))
    assert ss == page_result.bootstrap_se(
        "mean", 200, "observation", seed=np.random.SeedSequence(1)
    )


def test_refit_bootstraps_accept_generator_and_seed_sequence(page_result):
    # 64 replicates: the shape test_resample_bootstrap compiles for too
    a = page_result.cluster_bootstrap(64, group="student_id", seed=np.random.SeedSequence(4))
    b = page_result.cluster_bootstrap(64, group="student_id", seed=np.random.SeedSequence(4))
    pd.testing.assert_frame_equal(a.replicates, b.replicates)
    g = page_result.cluster_bootstrap(64, group="student_id", seed=np.random.default_rng(4))
    assert g.converged.all()
    p1 = page_result.parametric_bootstrap(8, seed=np.random.default_rng(2))
    p2 = page_result.parametric_bootstrap(8, seed=np.random.default_rng(2))
    pd.testing.assert_frame_equal(p1.replicates, p2.replicates)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda r, s: r.simulate(2, seed=s), id="simulate"),
        pytest.param(lambda r, s: r.bootstrap_se("mean", 10, seed=s), id="bootstrap_se"),
        pytest.param(lambda r, s: r.parametric_bootstrap(4, seed=s), id="parametric_bootstrap"),
        pytest.param(lambda r, s: r.cluster_bootstrap(4, seed=s), id="cluster_bootstrap"),
        pytest.param(lambda r, s: r.pigeonhole_bootstrap(4, seed=s), id="pigeonhole_bootstrap"),
        pytest.param(lambda r, s: r.confint("bootstrap", n_bootstrap=4, seed=s), id="confint"),
        pytest.param(lambda r, s: interlace.anova(r, r, n_bootstrap=4, seed=s), id="anova"),
    ],
)
@pytest.mark.parametrize("seed", [1.5, -1, "x"], ids=["float", "negative", "string"])
def test_entry_points_reject_bad_seeds(page_result, call, seed):
    with pytest.raises(interlace.ModelSpecError, match=ACCEPTS):
        call(page_result, seed)
