"""A fitted result keeps its cross-products and model arrays: bootstraps, Satterthwaite,
deletion diagnostics and anova reuse them instead of another pass over the rows.

Counted by wrapping the one-pass builder (``interlace._core.crossprod.cross_products``)
where each module looks it up; nothing is timed.
"""

from __future__ import annotations

import warnings

import pytest

import interlace
from interlace._core import arrays as core_arrays
from interlace._model import estimate

pytestmark = pytest.mark.filterwarnings("ignore:boundary .singular. fit")


@pytest.fixture()
def passes(monkeypatch):
    """The number of one-pass cross-product builds since the fixture started."""
    calls = {"n": 0}

    def counting(original):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(estimate, "cross_products", counting(estimate.cross_products))
    monkeypatch.setattr(core_arrays, "cross_products", counting(core_arrays.cross_products))
    return calls


@pytest.fixture(scope="module")
def small_fit():
    df = interlace.datasets.exam_scores()
    return interlace.fit("score ~ hours_studied + (1 | student_id) + (1 | school_id)", df)


def test_the_counter_sees_a_fit(passes):
    """The wrapper is where fits look: one fit, one pass."""
    df = interlace.datasets.exam_scores()
    interlace.fit("score ~ hours_studied + (1 | school_id)", df)
    assert passes["n"] == 1


def test_inference_reuses_the_fit(small_fit, passes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small_fit.parametric_bootstrap(8, seed=1)
        small_fit.cluster_bootstrap(8, seed=1)
        small_fit.coef_table(ddf="satterthwaite")
        interlace.hlm_influence(small_fit, level="school_id")
        interlace.leverage(small_fit)
    assert passes["n"] == 0  # exact: the fit's own cross-products served every step
    assert small_fit.model_fit.arrays is small_fit.model_fit.arrays  # built once, kept


def test_anova_refits_only_what_it_must(small_fit, passes):
    """anova of a REML fit refits it by ML (one pass each); an ML fit is used as is."""
    df = interlace.datasets.exam_scores()
    ml = interlace.fit("score ~ 1 + (1 | student_id) + (1 | school_id)", df, method="ML")
    before = passes["n"]
    interlace.anova(ml, small_fit)
    assert passes["n"] - before == 1  # small_fit by ML; ml itself reused
