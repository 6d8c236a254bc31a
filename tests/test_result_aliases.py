"""statsmodels habits on ``CrossedLMEResult``: aliases of the page's names, a short
``repr``, pickling.

The aliases are the page's attributes under statsmodels' names: the same objects where
the page's attribute is stored (``params``, ``cov_params()``), equal values (tolerance:
exact, ``rtol=0``) where it is computed on access. Every test reuses the session's page
fit; the pickled result must give the same summary text, numbers and predictions.
"""

from __future__ import annotations

import pickle
import time

import numpy as np
import pandas as pd
import pytest

from interlace import ModelSpecError

from .conftest import PAGE_FORMULA


def test_params_and_cov_params_are_the_pages_objects(page_result):
    assert page_result.params is page_result.fe_params
    assert page_result.cov_params() is page_result.fe_cov
    assert list(page_result.cov_params().index) == ["Intercept", "hours_studied", "prior_gpa"]
    assert list(page_result.cov_params().columns) == list(page_result.cov_params().index)


@pytest.mark.parametrize(
    "alias, page_name",
    [
        ("bse", "fe_bse"),
        ("pvalues", "fe_pvalues"),
        ("tvalues", "fe_zvalues"),
    ],
)
def test_computed_aliases_equal_the_pages_attributes(page_result, alias, page_name):
    pd.testing.assert_series_equal(
        getattr(page_result, alias), getattr(page_result, page_name), rtol=0, atol=0
    )


def test_tvalues_are_estimate_over_standard_error(page_result):
    # statsmodels' MixedLM calls beta / se "tvalues" though it tests them as z: 1e-15 rel.
    np.testing.assert_allclose(
        page_result.tvalues, page_result.params / page_result.bse, rtol=1e-15
    )


def test_conf_int_alpha_is_the_level_one_minus_alpha(page_result):
    pd.testing.assert_frame_equal(
        page_result.conf_int(alpha=0.05), page_result.conf_int(0.95), rtol=0, atol=0
    )
    pd.testing.assert_frame_equal(
        page_result.conf_int(alpha=0.05), page_result.conf_int(), rtol=0, atol=0
    )
    ci90 = page_result.conf_int(alpha=0.1)
    assert list(ci90.columns) == ["5 %", "95 %"]
    # 1.644854 se either side (exact normal quantile): 1e-12 relative
    half = (ci90["95 %"] - ci90["5 %"]) / 2
    np.testing.assert_allclose(half / page_result.bse, 1.6448536269514722, rtol=1e-12)


def test_conf_int_at_95_is_the_pages_intervals_with_the_exact_quantile(page_result):
    """The page's fe_conf_int rounds the quantile to 1.96; conf_int uses 1.959964: the
    same labels, each bound (1.96 - 1.959964) se inside the page's (1e-9 relative)."""
    ci, page = page_result.conf_int(alpha=0.05), page_result.fe_conf_int
    assert list(ci.columns) == list(page.columns) == ["2.5 %", "97.5 %"]
    assert list(ci.index) == list(page.index)
    inside = (1.96 - 1.959963984540054) * page_result.bse
    np.testing.assert_allclose(ci["2.5 %"] - page["2.5 %"], inside, rtol=1e-9)
    np.testing.assert_allclose(page["97.5 %"] - ci["97.5 %"], inside, rtol=1e-9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"level": 0.05},
            (
                r"conf_int's argument is a confidence level, got 0.05: for a 95% "
                r"interval write conf_int\(0.95\) or conf_int\(alpha=0.05\)"
            ),
        ),
        ({"level": 0.9, "alpha": 0.1}, r"Give either level= or alpha= to conf_int, not both"),
        ({"alpha": 1.5}, r"alpha must be between 0 and 1, got 1.5"),
        ({"level": 1.5}, r"level must be between 0 and 1, got 1.5"),
    ],
)
def test_conf_int_refuses_an_alpha_given_as_a_level(page_result, kwargs, message):
    with pytest.raises(ModelSpecError, match=message):
        page_result.conf_int(**kwargs)


def test_repr_is_one_short_line_without_arrays(page_result):
    start = time.perf_counter()
    text = repr(page_result)
    assert time.perf_counter() - start < 0.1  # reads stored numbers only (takes ~20 us)
    assert text == (
        f"<CrossedLMEResult REML '{PAGE_FORMULA}' nobs=300 "
        f"groups=(student_id: 30, school_id: 10) "
        f"REML criterion={page_result.deviance:.4f} converged=True>"
    )
    assert "\n" not in text and len(text) < 200
    assert str(page_result) == text


@pytest.fixture(scope="module")
def unpickled(page_result):
    return pickle.loads(pickle.dumps(page_result))


def test_unpickled_result_gives_the_same_summary_and_numbers(page_result, unpickled):
    assert unpickled.summary() == page_result.summary()
    assert repr(unpickled) == repr(page_result)
    pd.testing.assert_series_equal(unpickled.fe_params, page_result.fe_params, rtol=0, atol=0)
    pd.testing.assert_frame_equal(unpickled.fe_cov, page_result.fe_cov, rtol=0, atol=0)
    for name, blups in page_result.random_effects.items():
        pd.testing.assert_series_equal(unpickled.random_effects[name], blups, rtol=0, atol=0)
    assert unpickled.variance_components == page_result.variance_components
    assert unpickled.llf == page_result.llf


def test_unpickled_result_predicts_as_the_original(page_df, page_result, unpickled):
    pd.testing.assert_series_equal(unpickled.predict(), page_result.predict(), rtol=0, atol=0)
    newdata = page_df.head(20).assign(student_id=["s_new"] + list(page_df["student_id"][1:20]))
    for include_re in (True, False):  # formulaic's model spec and the level labels survive
        pd.testing.assert_series_equal(
            unpickled.predict(newdata, include_re=include_re),
            page_result.predict(newdata, include_re=include_re),
            rtol=0,
            atol=0,
        )


def test_pickle_leaves_out_the_rebuildable_arrays_cache(page_result):
    """``model_fit.arrays`` (JAX arrays for refits) is a cache: not pickled, rebuilt on
    use with the same contents."""
    page_result.model_fit.arrays  # noqa: B018 (fill the cache)
    restored = pickle.loads(pickle.dumps(page_result))
    assert "arrays" not in restored.model_fit.__dict__
    np.testing.assert_array_equal(
        np.asarray(restored.model_fit.arrays.y), np.asarray(page_result.model_fit.arrays.y)
    )


def test_model_arrays_cache_is_float64_when_filled_outside_any_scope(page_result):
    """The refit arrays a result keeps are float64 even when first asked for in a process
    with float64 off (a float32 cache would feed float32 into every later refit)."""
    import jax

    assert not jax.config.jax_enable_x64  # the premise: the suite runs with it off
    restored = pickle.loads(pickle.dumps(page_result))  # an empty cache
    assert restored.model_fit.arrays.y.dtype == np.float64
    assert restored.model_fit.arrays.X.dtype == np.float64
