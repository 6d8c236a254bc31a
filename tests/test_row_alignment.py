"""A pandas Series (weights=, offset=) or a pandas frame of responses (fit_many) is matched
to pandas data's rows by index label, as pandas aligns (``_model.offsets.aligned``).

They were read in row order whatever their labels: a binomial fit of cbpp shuffled, with
``weights=cbpp["size"]`` from the unshuffled frame, gave -2 logLik 200.78 instead of
186.57, with no warning. Each test fits the misordered call and its in-order twin and
compares them (the same rows and values, so the same numbers up to the summation order:
1e-9 relative).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._base.errors import DataError

DATA = Path(__file__).parent / "data"
PROPORTION = "p ~ period + (1 | herd)"
LMM = "y ~ cond + (1 | subject) + (1 | item)"
TOL = dict(rtol=1e-9, atol=1e-10)


@pytest.fixture(scope="module")
def cbpp():
    d = pd.read_csv(DATA / "cbpp.csv", dtype={"herd": str, "period": str})
    return d.assign(p=d["incidence"] / d["size"])


@pytest.fixture(scope="module")
def lmm_data():
    return pd.read_csv(DATA / "lmm_weights.csv", dtype={"subject": str, "item": str})


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interlace.fit(*args, **kwargs)


def _same_fit(a, b):
    np.testing.assert_allclose(-2 * a.llf, -2 * b.llf, **TOL)
    np.testing.assert_allclose(a.fe_params.to_numpy(), b.fe_params.to_numpy(), rtol=1e-7, atol=1e-9)


def test_glmm_weights_series_follow_their_labels(cbpp):
    reference = _quiet(PROPORTION, cbpp, family="binomial", weights="size")
    shuffled = cbpp.sample(frac=1.0, random_state=1)
    with warnings.catch_warnings():
        # in row order these weights made non-integer successes, which glmer warns about
        warnings.simplefilter("error")
        fit = interlace.fit(PROPORTION, shuffled, family="binomial", weights=cbpp["size"])
    _same_fit(fit, reference)


def test_a_series_may_cover_more_rows_than_data(cbpp):
    keep = cbpp["herd"] != "1"
    reference = _quiet(PROPORTION, cbpp[keep], family="binomial", weights="size")
    fit = _quiet(PROPORTION, cbpp[keep], family="binomial", weights=cbpp["size"])
    _same_fit(fit, reference)


def test_lmm_weights_and_offset_series_follow_their_labels(lmm_data):
    reference = interlace.fit(LMM, lmm_data, weights="w", offset=np.log(lmm_data["expo"]))
    shuffled = lmm_data.sample(frac=1.0, random_state=2)
    fit = interlace.fit(LMM, shuffled, weights=lmm_data["w"], offset=np.log(lmm_data["expo"]))
    _same_fit(fit, reference)
    np.testing.assert_allclose(fit.scale, reference.scale, rtol=1e-8)


def test_predict_offset_series_follows_its_labels(cbpp):
    counts = cbpp.assign(logsize=np.log(cbpp["size"]))
    fit = _quiet("incidence ~ period + (1 | herd)", counts, family="poisson", offset="logsize")
    new = counts.sample(frac=1.0, random_state=3)
    by_label = fit.predict(new, offset=counts["logsize"])
    in_order = fit.predict(new, offset=new["logsize"].to_numpy())
    np.testing.assert_allclose(by_label.to_numpy(), in_order.to_numpy(), rtol=1e-12)


def test_fit_many_responses_frame_follows_its_labels(lmm_data):
    rng = np.random.default_rng(5)
    Y = pd.DataFrame(
        {f"r{j}": lmm_data["y"] + rng.normal(0, 0.5, len(lmm_data)) for j in range(3)},
        index=lmm_data.index,
    )
    in_order = interlace.fit_many(LMM, lmm_data, Y)
    permuted = interlace.fit_many(LMM, lmm_data, Y.sample(frac=1.0, random_state=4))
    np.testing.assert_allclose(permuted["deviance"], in_order["deviance"], **TOL)
    np.testing.assert_allclose(permuted["Intercept"], in_order["Intercept"], rtol=1e-7)
    # one response as a pandas Series: aligned too, and named by the Series
    single = interlace.fit_many(LMM, lmm_data, Y["r1"].sample(frac=1.0, random_state=6))
    assert list(single.index) == ["r1"]
    np.testing.assert_allclose(single["deviance"], in_order.loc[["r1"], "deviance"], **TOL)


def test_a_series_without_some_row_labels_is_refused(cbpp):
    relabelled = cbpp["size"].set_axis(cbpp.index + 1000)
    with pytest.raises(DataError, match=r"weights= is a pandas Series whose index.*to_numpy"):
        interlace.fit(PROPORTION, cbpp, family="binomial", weights=relabelled)
    shuffled = cbpp.sample(frac=1.0, random_state=1)
    with pytest.raises(DataError, match=r"responses is a pandas DataFrame whose index"):
        interlace.fit_many(
            "incidence ~ period + (1 | herd)",
            shuffled,
            shuffled[["incidence"]].reset_index(drop=True).set_axis(shuffled.index + 1000),
            family="poisson",
        )


def test_values_in_row_order_where_data_has_no_labels(cbpp):
    # a dict of columns has no index: a Series is read in row order, as an array is
    columns = {c: cbpp[c].to_numpy() for c in cbpp.columns}
    odd_labels = cbpp["size"].set_axis(np.arange(len(cbpp))[::-1])
    fit = _quiet(PROPORTION, columns, family="binomial", weights=odd_labels)
    reference = _quiet(PROPORTION, cbpp, family="binomial", weights="size")
    _same_fit(fit, reference)
