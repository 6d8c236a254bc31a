"""``theta`` in lme4's term order (issue 16, ``interlace._model.theta_layout``).

lme4 orders random-effect terms by decreasing number of levels, ties in reverse formula
order once anything moves (``mkReTrms``: ``rev(order(nl))`` if ``any(diff(nl) > 0)``).
References: ``tests/data/lme4_theta_layout_references.json``
(``make_lme4_theta_layout_references.R``: formulas written so that lme4 reorders their
terms) and the Pastes/Penicillin ML fits of the other reference files. lme4's theta,
converted, must give lme4's criterion to 1e-9 relative (the same objective at the same
point: the existing reference tests agree to 1e-10).
"""

from __future__ import annotations

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import theta_from_lme4, theta_to_lme4
from interlace._model.theta_layout import lme4_term_order

from .conftest import DATA

DTYPES = {"batch": str, "cask": str, "sample": str, "plate": str, "subject": str, "item": str}


def _refs(name: str) -> dict:
    with open(DATA / name) as fh:
        return json.load(fh)["fits"]


LAYOUT = _refs("lme4_theta_layout_references.json")
SLOPES = _refs("lme4_slope_references.json")
MAIN = _refs("lme4_references.json")

# (formula, data file, REML, lme4 theta in lme4's order, lme4 criterion)
CASES = {
    name: (r["formula"], r["data_file"], r["REML"], r["theta"], r["criterion"])
    for name, r in LAYOUT.items()
}
for _name, _refs_ in (("pastes_nested_ML", SLOPES), ("penicillin_ML", MAIN)):
    _r = _refs_[_name]
    _formula = _r["formula"]
    if _name == "penicillin_ML":  # lme4 keeps (plate, sample): write it sample first
        _formula = "diameter ~ 1 + (1 | sample) + (1 | plate)"
    CASES[_name] = (
        _formula,
        _r["data_file"],
        _r["REML"],
        list(_r["theta"].values()),
        _r["criterion"],
    )

_arrays: dict = {}


def _model(formula: str, file: str):
    if (formula, file) not in _arrays:
        _arrays[formula, file] = interlace.model_arrays(
            formula, pd.read_csv(DATA / file, dtype=DTYPES)
        )
    return _arrays[formula, file]


@pytest.mark.parametrize(
    "nlevels, order",
    [
        ((10, 30), (1, 0)),  # Pastes (1 | batch/cask)
        ((24, 6), (0, 1)),  # already decreasing: unchanged
        ((24, 40, 40), (2, 1, 0)),  # (1 | item) + (1 + t || subject): ties reversed
        ((40, 40, 24), (0, 1, 2)),  # non-increasing, ties included: unchanged
        ((10, 10, 5, 20), (3, 1, 0, 2)),  # ties reversed among the moved terms
        ((7,), (0,)),
    ],
)
def test_lme4_term_order(nlevels, order):
    """R: ord <- if (any(diff(nl) > 0)) rev(order(nl)) else seq_along(nl)."""
    assert lme4_term_order(nlevels) == order


@pytest.mark.parametrize("name", list(CASES))
def test_lme4_theta_gives_lme4_deviance(name):
    formula, file, reml, theta_lme4, criterion = CASES[name]
    ma = _model(formula, file)
    theta = theta_from_lme4(np.asarray(theta_lme4), ma)
    dev = float(interlace.deviance(theta, ma, reml=reml))
    assert dev == pytest.approx(criterion, rel=1e-9), name  # same objective, same point
    # round trip, exact (a permutation)
    np.testing.assert_array_equal(theta_to_lme4(theta, ma), np.asarray(theta_lme4))


@pytest.mark.parametrize("name", [n for n in LAYOUT if n != "crossed_uncorr_subject_first"])
def test_lme4_order_differs_from_the_formula_order(name):
    """The cases are the ones the issue is about: lme4's theta passed as it is gives
    another, higher deviance (Pastes: 266.62 instead of 246.99; the smallest gap here,
    0.43, is crossed_uncorr_item_first's)."""
    formula, file, reml, theta_lme4, criterion = CASES[name]
    ma = _model(formula, file)
    wrong = float(interlace.deviance(np.asarray(theta_lme4), ma, reml=reml))
    assert wrong > criterion + 0.1  # deviance units: not a rounding difference


@pytest.mark.parametrize("name", list(LAYOUT))
def test_names_follow_lme4(name):
    """interlace's theta names, moved by theta_to_lme4, are lme4's names in its order."""
    formula, file = LAYOUT[name]["formula"], LAYOUT[name]["data_file"]
    ma = _model(formula, file)
    names = pd.Series(np.arange(len(ma.theta_names)), index=list(ma.theta_names))
    assert list(theta_to_lme4(names, ma).index) == LAYOUT[name]["theta_names"]
    back = theta_from_lme4(theta_to_lme4(names, ma), ma)
    pd.testing.assert_series_equal(back, names)


def test_batches_and_jax_arrays():
    formula, file = LAYOUT["crossed_item_first"]["formula"], "crossed_slopes.csv"
    ma = _model(formula, file)
    rng = np.random.default_rng(0)
    batch = rng.uniform(0.1, 1.0, (5, len(ma.theta_names)))
    with jax.enable_x64(True):  # float64 JAX arrays of our own
        lme4 = theta_to_lme4(jnp.asarray(batch), ma)
        assert isinstance(lme4, jnp.ndarray) and lme4.shape == batch.shape
        np.testing.assert_array_equal(np.asarray(theta_from_lme4(lme4, ma)), batch)
    # user order (item, subject block) -> lme4 (subject block, item)
    np.testing.assert_array_equal(np.asarray(lme4), batch[:, [1, 2, 3, 0]])


def test_result_theta_lme4():
    """A fit's theta in lme4's order, with lme4's names; values to lme4's optimum
    (1e-3 relative: the two optimisers stop at slightly different points)."""
    ref = LAYOUT["crossed_uncorr_item_first"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = interlace.fit(ref["formula"], pd.read_csv(DATA / ref["data_file"], dtype=DTYPES))
    t = res.theta_lme4
    assert list(t.index) == ref["theta_names"]  # subject.t, subject.(Intercept), item
    np.testing.assert_allclose(t.to_numpy(), ref["theta"], rtol=1e-3)
    ma = _model(ref["formula"], ref["data_file"])
    np.testing.assert_array_equal(theta_to_lme4(res.theta.to_numpy(), ma), t.to_numpy())
    pd.testing.assert_series_equal(theta_from_lme4(t, res), res.theta)


def test_bad_arguments():
    ma = _model(LAYOUT["pastes_nested"]["formula"], "pastes.csv")
    with pytest.raises(interlace.ModelSpecError, match="2 entries.*got shape \\(3,\\)"):
        theta_from_lme4(np.ones(3), ma)
    with pytest.raises(interlace.ModelSpecError, match="got a scalar"):
        theta_to_lme4(1.0, ma)
    with pytest.raises(interlace.ModelSpecError, match="ModelArrays .* or a fitted"):
        theta_to_lme4(np.ones(2), "strength ~ 1 + (1 | batch/cask)")
