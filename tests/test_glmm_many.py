"""``fit_many`` for GLMMs: many responses on one design, one vectorised compiled fit.

Each batch's first response is a glmer reference model's own response
(tests/data/glmm_references.json, made by tests/data/make_glmm_references.R), held to the
tolerances of tests/test_glmm_references.py: -2 logLik never above glmer's and within
1e-6 relative, fixed effects within 2e-3 of glmer's standard error, theta 2e-4, a
negative binomial's size 1e-6 relative. The other responses are simulated from the fitted
model and compared with ``interlace.fit`` of each (the same objective, optimised on the
host): -2 logLik to 1e-9 relative, estimates to 1e-5 (both optimisers stop at a gradient
of ~1e-10 relative; flat directions move estimates by far less than 1e-5).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import DataError, ModelSpecError
from interlace._model.glmm_many import identity_start, typical_theta

from .test_glmm_references import FITS, lme4_names, load


def simulated_counts(mean: np.ndarray, k: int, seed: int, size: float | None = None) -> np.ndarray:
    """``k`` count responses around ``mean`` (Poisson, or negative binomial of ``size``),
    with a per-response level shift so that they differ."""
    rng = np.random.default_rng(seed)
    shift = np.exp(rng.normal(0.0, 0.3, size=k))[None, :]
    mu = mean[:, None] * shift
    if size is None:
        return rng.poisson(mu).astype(float)
    return rng.negative_binomial(size, size / (size + mu)).astype(float)


def check_against_lme4(row: pd.Series, case: str, fe_names: list[str]) -> None:
    f = FITS[case]
    assert row["converged"]
    assert -2.0 * row["llf"] <= f["minus2logLik"] * (1 + 1e-9)
    assert -2.0 * row["llf"] == pytest.approx(f["minus2logLik"], rel=1e-6)
    ours = row[fe_names].to_numpy(dtype=float)
    theirs = np.array([f["fixef"][n] for n in lme4_names_of(fe_names)])
    se = np.array([f["fixef_se"][n] for n in lme4_names_of(fe_names)])
    assert np.max(np.abs(ours - theirs) / se) < 2e-3
    for name, value in f["theta"].items():
        term = name.split(".")[0]
        col = next(c for c in row.index if c.startswith(term) and "Intercept" in c)
        assert row[col] == pytest.approx(value, abs=2e-4)


def lme4_names_of(fe_names: list[str]) -> list[str]:
    return lme4_names(type("R", (), {"fe_params": pd.Series(0.0, index=fe_names)})())


def check_against_fit(row: pd.Series, res, fe_names: list[str], theta_names) -> None:
    assert row["converged"] and res.converged
    assert row["llf"] == pytest.approx(res.llf, rel=1e-9)
    assert row["deviance"] == pytest.approx(res.deviance, rel=1e-7)  # at the same modes
    np.testing.assert_allclose(row[fe_names].to_numpy(dtype=float), res.fe_params, atol=1e-5)
    np.testing.assert_allclose(row[theta_names].to_numpy(dtype=float), res.theta, atol=1e-5)


@pytest.fixture(scope="module")
def negbin():
    case = "negbin_laplace"
    data = load(case)
    ref = interlace.fit(FITS[case]["formula"], data, family="negative_binomial")
    Y = np.column_stack(
        [
            data["count"].to_numpy(float),
            simulated_counts(np.asarray(ref.fittedvalues), 3, seed=7, size=2.0),
            np.zeros(len(data)),
            np.full(len(data), 3.0),
        ]
    )
    responses = pd.DataFrame(Y, columns=["ref", "g1", "g2", "g3", "zeros", "threes"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = interlace.fit_many(
            FITS[case]["formula"],
            data,
            responses,
            family="negative_binomial",
            batch_size=2,  # lanes: 2 whatever the number of responses (one executable)
        )
    messages = [str(w.message) for w in caught]
    assert any("1 of 6 responses are all 0" in m for m in messages)
    return case, data, responses, table, messages


def test_negative_binomial_matches_glmer_nb(negbin):
    case, _, _, table, _ = negbin
    fe = ["Intercept", "treat[T.stim]"]
    check_against_lme4(table.loc["ref"], case, fe)
    assert table.loc["ref", "size"] == pytest.approx(FITS[case]["nb_theta"], rel=1e-6)


def test_negative_binomial_matches_single_fits(negbin):
    case, data, responses, table, _ = negbin
    fe = ["Intercept", "treat[T.stim]"]
    for name in ["g1", "g3"]:
        res = interlace.fit(
            FITS[case]["formula"], data.assign(count=responses[name]), family="negative_binomial"
        )
        check_against_fit(table.loc[name], res, fe, list(res.theta.index))
        assert table.loc[name, "size"] == pytest.approx(res.size, rel=1e-5)


def test_all_zero_response_is_a_nan_row(negbin):
    _, _, _, table, _ = negbin
    row = table.loc["zeros"]
    assert not row["converged"]
    assert row.drop("converged").isna().all()
    assert table.drop(index="zeros")["converged"].all()


def test_counts_without_overdispersion_fit_and_are_flagged(negbin):
    """Constant counts (3 in every row): the pivot guard of PIRLS lets them fit (mean 3,
    no random variation), and their size runs off toward infinity, which fit_many names
    in one warning. Tolerances: intercept log 3 to 1e-7; the log-likelihood is the
    Poisson one, ``n log dpois(3, 3)``, to 1e-9 relative."""
    _, data, _, table, messages = negbin
    row = table.loc["threes"]
    assert row["converged"]
    assert row["Intercept"] == pytest.approx(np.log(3.0), abs=1e-7)
    assert row["size"] > 1e6 * 3.0
    assert row["llf"] == pytest.approx(len(data) * (3 * np.log(3.0) - 3 - np.log(6.0)), rel=1e-9)
    flagged = [m for m in messages if "no overdispersion" in m]
    assert (
        len(flagged) == 1 and flagged[0].startswith("1 of 6 responses") and "'threes'" in flagged[0]
    )


def test_poisson_with_offset_responses_as_an_array():
    """The formula's response is no column of the data: it stands for the responses."""
    case = "poisson_offset_laplace"
    data = load(case)
    formula = FITS[case]["formula"].replace("count ~", "y ~")
    ref_y = data["count"].to_numpy(float)
    cells = data.drop(columns="count")
    first = interlace.fit(FITS[case]["formula"], data, family="poisson")
    Y = np.column_stack([ref_y, simulated_counts(np.asarray(first.fittedvalues), 2, seed=3)])
    table = interlace.fit_many(formula, cells, Y, family="poisson")
    assert list(table.index) == [0, 1, 2]
    assert "y" not in cells.columns  # the caller's frame is untouched
    fe = ["Intercept", "cover"]
    check_against_lme4(table.loc[0], case, fe)
    res = interlace.fit(FITS[case]["formula"], data.assign(count=Y[:, 2]), family="poisson")
    check_against_fit(table.loc[2], res, fe, list(res.theta.index))


def test_binomial_proportions_with_weights_nagq0():
    case = "cbpp_nAGQ0"
    data = load(case)
    data = data.assign(p=data["incidence"] / data["size"])
    rng = np.random.default_rng(11)
    herd = data["herd"].cat.codes.to_numpy()
    trials = data["size"].to_numpy()
    prob = 1.0 / (1.0 + np.exp(1.5 - rng.normal(0.0, 0.8, size=(herd.max() + 1, 2))[herd]))
    sim = rng.binomial(trials[:, None], prob) / trials[:, None]
    Y = np.column_stack([data["p"].to_numpy(), sim])
    formula = "p ~ period + (1 | herd)"
    table = interlace.fit_many(formula, data, Y, family="binomial", nAGQ=0, weights="size")
    fe = list(table.columns[:4])
    check_against_lme4(table.loc[0], case, fe)
    res = interlace.fit(formula, data.assign(p=Y[:, 1]), family="binomial", nAGQ=0, weights="size")
    check_against_fit(table.loc[1], res, fe, list(res.theta.index))


def test_every_response_degenerate_gives_nan_rows():
    """No response can be fitted (all zero counts; all one outcome): NaN rows with
    converged=False and the degenerate-responses warning, not an error about the
    formula's placeholder response."""
    data = load("cbpp_nAGQ0")
    n = len(data)
    for family, value in (("poisson", 0.0), ("binomial", 1.0)):
        Y = pd.DataFrame({"a": np.full(n, value), "b": np.full(n, value)})
        with pytest.warns(UserWarning, match="2 of 2 responses are all"):
            table = interlace.fit_many("p ~ period + (1 | herd)", data, Y, family=family)
        assert not table["converged"].any()
        assert table.drop(columns="converged").isna().all().all()
        assert list(table.index) == ["a", "b"]


def test_bad_responses_are_refused():
    data = load("cbpp_nAGQ0")
    ok = np.tile((np.arange(len(data)) % 2.0)[:, None], (1, 2))
    data = data.assign(p=ok[:, 0])
    with pytest.raises(DataError, match="outside \\[0, 1\\]"):
        interlace.fit_many(
            "p ~ period + (1 | herd)",
            data,
            np.column_stack([ok[:, 0], ok[:, 1] * 3]),
            family="binomial",
        )
    with pytest.raises(DataError, match="negative values"):
        interlace.fit_many(
            "p ~ period + (1 | herd)",
            data,
            np.column_stack([ok[:, 0], -ok[:, 1]]),
            family="poisson",
        )
    with pytest.raises(DataError, match=r"1 response\(s\) have NaN .*\['r1'\] \(first at row 0\)"):
        interlace.fit_many(
            "p ~ period + (1 | herd)",
            data,
            pd.DataFrame({"r0": ok[:, 0], "r1": ok[:, 1] * np.nan}),
            family="poisson",
        )
    with pytest.raises(DataError, match="rows but data has"):
        interlace.fit_many("p ~ period + (1 | herd)", data, ok[:-1], family="poisson")


@pytest.mark.parametrize("family", ["poisson", "gaussian"])
def test_the_first_response_is_checked_under_its_own_name(family):
    """The formula's placeholder response (``y``, not a column of data) stands for the
    responses while the design is built: a missing value or a negative count in the
    first response is refused naming that response, as in any other (it used to drop the
    row for every response with a warning about 'y', or name 'y'); a non-integer one is
    warned about once, by its name."""
    data = load("cbpp_nAGQ0")
    ok = np.tile((np.arange(len(data)) % 2.0)[:, None], (1, 2))
    nan_first = pd.DataFrame(
        {"r0": np.where(np.arange(len(data)) == 3, np.nan, ok[:, 0]), "r1": ok[:, 1]}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no dropped-rows warning
        with pytest.raises(
            DataError, match=r"1 response\(s\) have NaN .*\['r0'\] \(first at row 3\)"
        ):
            interlace.fit_many("y ~ period + (1 | herd)", data, nan_first, family=family)
    if family == "poisson":
        negative_first = pd.DataFrame({"r0": -ok[:, 0], "r1": ok[:, 1]})
        with pytest.raises(DataError, match="Poisson response 'r0' has negative values"):
            interlace.fit_many("y ~ period + (1 | herd)", data, negative_first, family=family)
        # a non-integer first response: one warning, naming it (it also named 'y')
        half_first = pd.DataFrame({"r0": ok[:, 0] + 0.5, "r1": ok[:, 1]})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            interlace.fit_many("y ~ period + (1 | herd)", data, half_first, family=family)
        odd = [str(w.message) for w in caught if "non-integer" in str(w.message)]
        assert len(odd) == 1 and "Poisson response 'r0'" in odd[0], odd


def test_argument_errors():
    data = load("cbpp_nAGQ0")
    ok = np.tile((np.arange(len(data)) % 2.0)[:, None], (1, 2))
    data = data.assign(p=ok[:, 0])
    for bad in (0, -1, 2.5, True):  # were taken as one lane, or as "all at once"
        with pytest.raises(ModelSpecError, match="batch_size must be a positive integer"):
            interlace.fit_many("p ~ period + (1 | herd)", data, ok, batch_size=bad)
    with pytest.raises(ModelSpecError, match="REML is not defined"):
        interlace.fit_many("p ~ period + (1 | herd)", data, ok, "herd", "REML", family="poisson")
    with pytest.raises(DataError, match="weights must be > 0"):  # Gaussian: prior weights
        interlace.fit_many("p ~ period + (1 | herd)", data, ok, weights=-data["size"])
    with pytest.raises(ModelSpecError, match="nAGQ applies to GLMMs"):
        interlace.fit_many("p ~ period + (1 | herd)", data, ok, nAGQ=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="one column per response"):
            interlace.fit_many("p ~ period + (1 | herd)", data, ok[:, :0], family="poisson")
    with pytest.raises(ModelSpecError, match="single scalar random-effects term"):
        interlace.fit_many(
            "y ~ period + (1 | herd) + (1 | period)", data, ok, family="binomial", nAGQ=5
        )
    with pytest.raises(ModelSpecError, match="not cbind"):
        interlace.fit_many(
            "cbind(incidence, size - incidence) ~ period + (1 | herd)",
            data,
            ok,
            family="binomial",
        )


def test_refilled_warm_started_lanes_agree_with_one_batch():
    """Two lanes for fourteen responses: each lane takes the next response when its fit
    stops, and the four after the eighth converged one start from the typical theta
    (``glmm_many``'s docstring). Every response reaches the optimum that one batch of
    fourteen lanes, all from lme4's start, reaches: -2 logLik to 1e-9 relative, estimates
    to 1e-5 (the optimiser's stopping rule)."""
    case = "poisson_offset_laplace"
    data = load(case)
    first = interlace.fit(FITS[case]["formula"], data, family="poisson")
    Y = simulated_counts(np.asarray(first.fittedvalues), 14, seed=5)
    formula = FITS[case]["formula"].replace("count ~", "y ~")
    cells = data.drop(columns="count")
    lanes = interlace.fit_many(formula, cells, Y, family="poisson", batch_size=2)
    batch = interlace.fit_many(formula, cells, Y, family="poisson")
    assert lanes["converged"].all() and batch["converged"].all()
    np.testing.assert_allclose(lanes["llf"], batch["llf"], rtol=1e-9)
    estimates = [c for c in batch.columns if c not in ("deviance", "llf", "converged")]
    np.testing.assert_allclose(lanes[estimates], batch[estimates], atol=1e-5)


def test_typical_theta_is_a_sign_normalised_median_off_the_boundary():
    # one correlated 2x2 term (internal order: T11, T21, T22) and one scalar term
    ks, diagonal = [2, 1], np.array([True, False, True, True])
    thetas = np.array(
        [
            [0.5, 0.2, 0.3, 0.0],
            [-0.7, -0.4, 0.5, 0.0],  # T's first column negated: the same covariance
            [0.6, 0.1, -0.1, 0.02],
        ]
    )
    typical = typical_theta(thetas, ks, diagonal)
    # columns flipped to a non-negative diagonal: T11 {0.5, 0.7, 0.6}, T21 {0.2, 0.4, 0.1},
    # T22 {0.3, 0.5, 0.1}; the scalar's median 0 is lifted to the floor
    np.testing.assert_allclose(typical, [0.6, 0.2, 0.3, 0.1], atol=1e-15)


def test_identity_start_is_in_the_internal_term_order():
    """``(1 | item) + (1 + x | subject)`` with more subjects: the subject term goes first
    internally (``_core.crossprod.term_order``), so the start is ``[T11, T21, T22, item]``
    = ``[1, 0, 1, 1]`` (0 moved to 1e-10), not the user order's ``[1, 1, 0, 1]``."""
    np.testing.assert_array_equal(identity_start([1, 2], (1, 0)), [1.0, 1e-10, 1.0, 1.0])
    np.testing.assert_array_equal(identity_start([1, 2], (0, 1)), [1.0, 1.0, 1e-10, 1.0])
