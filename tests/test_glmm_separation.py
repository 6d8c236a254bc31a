"""Separation in GLMMs: a fixed effect that predicts the outcome exactly sends its
coefficient to infinity. Complete separation (the fit cannot converge) is refused with a
DataError naming the column; quasi-complete separation (one level with one outcome: the
fit converges on a flat likelihood at a large finite value) warns, naming the column."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._inference.glmm_profile import profile_zeta
from interlace._model.glmm_design import GlmmDesign
from interlace._model.glmm_estimate import GlmmProblem, deviance_at

DATA = Path(__file__).parent / "data"


def _frame(seed: int = 5, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 20, n)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "f": rng.choice(["a", "b", "c"], n),
            "g": [f"g{k}" for k in g],
            "u": rng.normal(0, 0.5, 20)[g],
        }
    )


def test_complete_separation_is_refused_naming_the_column():
    d = _frame()
    d["y"] = (d["x"] > 0).astype(int)  # x alone predicts every outcome
    with pytest.raises(interlace.DataError, match=r"separated by the fixed effect\(s\) \['x'\]"):
        interlace.fit("y ~ x + z + (1 | g)", d, family="binomial")


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_quasi_separation_warns_naming_the_level(family):
    d = _frame()
    rng = np.random.default_rng(1)
    eta = 0.3 * d["x"] + d["u"]
    if family == "binomial":
        d["y"] = (rng.random(len(d)) < 1 / (1 + np.exp(-eta))).astype(int)
        d.loc[d["f"] == "c", "y"] = 1  # level c: only successes
    else:
        d["y"] = rng.poisson(np.exp(0.5 + eta))
        d.loc[d["f"] == "c", "y"] = 0  # level c: only zeros
    with pytest.warns(UserWarning, match=r"\['f\[T\.c\]'\] separate the") as record:
        res = interlace.fit("y ~ x + f + (1 | g)", d, family=family)
    assert record[0].filename == __file__  # points at the caller
    # the Hessian's standard errors stand (central differences where the forward ones,
    # along the nearly flat direction, are not positive definite): no fallback to R_X
    assert not any("Hessian" in str(w.message) for w in record)
    # the runaway coefficient is large (|beta| > 10); the others are ordinary (< 2)
    beta = res.fe_params
    assert abs(beta["f[T.c]"]) > 10
    assert np.all(np.abs(beta.drop("f[T.c]")) < 2)


def _rare_level_frame() -> pd.DataFrame:
    """Outcomes with a level ``r`` on ~10% of rows that only ever succeeds: its dummy's
    standard deviation is ~0.3, so its runaway coefficient (~20) is only ~7 in centred
    and scaled units, while it moves those rows' linear predictor by ~20."""
    d = _frame(seed=6, n=600)
    rng = np.random.default_rng(6)
    d["h"] = np.where(rng.random(len(d)) < 0.1, "r", "a")
    eta = 0.3 * d["x"] + d["u"]
    d["y"] = (rng.random(len(d)) < 1 / (1 + np.exp(-eta))).astype(int)
    d.loc[d["h"] == "r", "y"] = 1
    return d


def test_quasi_separation_by_a_rare_level_warns():
    d = _rare_level_frame()
    with pytest.warns(UserWarning, match=r"\['h\[T\.r\]'\] separate the binomial") as record:
        res = interlace.fit("y ~ x + h + (1 | g)", d, family="binomial")
    assert record[0].filename == __file__
    assert res.fe_params["h[T.r]"] > 10
    assert res.model_fit.separated == ("h[T.r]",)


def test_runaway_random_effect_variance_warns():
    """4 events in 60 binary rows (12 subjects x 5 items, logit -3 + 0.8 x + effects):
    most subjects have no event, their effects run toward -infinity and the fit stops at
    sds of ~170 with the intercept near -86 (glmer stops elsewhere, warning of a
    degenerate Hessian). A warning names the term and its sd (before: none, converged);
    an ordinary fit of the same design (intercept 0) has none."""
    rng = np.random.default_rng(14)
    s, it = np.repeat(np.arange(12), 5), np.tile(np.arange(5), 12)
    rng.random(60)  # (draws that made this design's pairs, all kept, and another column)
    x = rng.normal(size=60)
    rng.uniform(0.5, 3, 60)
    eta = rng.normal(0, 0.7, 12)[s] + rng.normal(0, 0.5, 5)[it] + 0.8 * x
    d = pd.DataFrame({"x": x, "subj": [f"s{i}" for i in s], "item": [f"i{i}" for i in it]})
    d["y"] = rng.binomial(1, 1 / (1 + np.exp(-(eta - 3.0))))
    d["y0"] = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    assert d["y"].sum() == 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = interlace.fit("y ~ x + (1 | subj) + (1 | item)", d, family="binomial")
    runaway = [str(w.message) for w in caught if "on the logit scale" in str(w.message)]
    assert len(runaway) == 1 and "(1 | subj) have an sd of" in runaway[0], runaway
    assert res.theta.max() > 10
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        interlace.fit("y0 ~ x + (1 | subj) + (1 | item)", d, family="binomial")
    assert not [w for w in caught if "on the logit scale" in str(w.message)]


def test_fit_many_flags_separated_responses():
    """A response that a fixed effect separates is converged=False in fit_many, with one
    warning naming it and the column; the other responses are untouched and agree with
    their single fits (-2 logLik to 1e-8 relative)."""
    d = _rare_level_frame()
    rng = np.random.default_rng(7)
    eta = 0.3 * d["x"] + d["u"]
    ordinary = (rng.random(len(d)) < 1 / (1 + np.exp(-eta))).astype(int)
    responses = pd.DataFrame({"ordinary": ordinary, "separated": d["y"].to_numpy()})
    data = d.drop(columns="y")
    with pytest.warns(
        UserWarning, match=r"1 of 2 responses are separated .*'separated' by \['h\[T\.r\]'\]"
    ):
        table = interlace.fit_many("y ~ x + h + (1 | g)", data, responses, family="binomial")
    assert table["converged"].tolist() == [True, False]
    single = interlace.fit("y ~ x + h + (1 | g)", data.assign(y=ordinary), family="binomial")
    assert table.loc["ordinary", "llf"] == pytest.approx(single.llf, rel=1e-8)


def test_large_offset_on_rows_of_one_outcome_fits():
    """An offset of -40 on a level whose outcomes are all 0 is a legitimate model (those
    rows' probabilities are fixed near 0): it fits, without a false separation error,
    to the same optimum as the model where that level's coefficient runs off to -inf
    (-2 logLik and the shared coefficients to 1e-4). PIRLS used to start those rows at
    eta = g(mu_start), without the offset (lme4 starts at offset + g(mu_start)), and
    stalled in the link's saturated region: a false error at -30, 2,208 instead of 209
    with an intercept of -3.6e7 at -40."""
    rng = np.random.default_rng(11)
    n_g, per = 30, 12
    g = np.repeat(np.arange(n_g), per)
    f = np.tile(np.array(["A", "B", "C"]), n_g * per // 3)
    x = rng.normal(size=g.size)
    eta = -0.3 + 0.5 * x + 0.6 * (f == "B") + rng.normal(0, 1.2, n_g)[g]
    y = (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int)
    y[f == "C"] = 0
    d = pd.DataFrame({"g": [f"g{k}" for k in g], "f": f, "x": x, "y": y})
    d["isB"] = (d["f"] == "B").astype(float)
    with pytest.warns(UserWarning, match="separate"):
        runaway = interlace.fit("y ~ x + f + (1 | g)", d, family="binomial")
    for v in (-30.0, -40.0):
        res = interlace.fit(
            "y ~ x + isB + (1 | g)", d, family="binomial", offset=v * (d["f"] == "C").to_numpy()
        )
        assert res.converged and not res.is_singular
        assert -2 * res.llf == pytest.approx(-2 * runaway.llf, abs=1e-4)
        shared = runaway.fe_params[["Intercept", "x", "f[T.B]"]].to_numpy()
        np.testing.assert_allclose(res.fe_params.to_numpy(), shared, atol=1e-4)


# A crossed binary model with a separated level (tests/data/make_glmm_data.py), and
# lme4's Laplace deviance function far along that level's coefficient
# (tests/data/make_glmm_separation_references.R)
SEPARATED_REF = json.loads((DATA / "glmm_separation_references.json").read_text())


@pytest.fixture(scope="module")
def separated_crossed():
    d = pd.read_csv(DATA / SEPARATED_REF["data_file"], dtype={"g": str, "h": str, "f": str})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the separation warning (tested above)
        res = interlace.fit(SEPARATED_REF["formula"], d, family="binomial")
    fit = res.model_fit
    glmm = GlmmDesign(
        fit.design, fit.prior_weights, fit.offset, fit.offset_terms, fit.offset_argument
    )
    return res, glmm


def test_laplace_deviance_far_along_a_separated_column_matches_lme4(separated_crossed):
    """At f[T.C] from -25 to -1000 (there every row of level C has a working weight of 0:
    the weighted X is singular), lme4's Laplace deviance at a given beta stands, and ours
    equals it to 1e-9 relative. It used to be NaN from -100 on: the tail factor held X's
    block too, and its failed pivot made LAPACK return the whole factor as NaN."""
    res, glmm = separated_crossed
    for point in SEPARATED_REF["points"]:
        ours = deviance_at(glmm, res.model_fit.family, point["theta"], np.array(point["beta"]))
        assert ours == pytest.approx(point["deviance"], rel=1e-9), point["beta"][-1]


@pytest.mark.usefixtures("float64_throughout")  # GlmmProblem, a private class
def test_gradient_far_along_a_separated_column_is_finite_and_exact(separated_crossed):
    """Where X's weighted block is singular the optimiser's gradient (in theta and the
    standardized beta) is finite and equals central differences of the deviance (1e-6
    relative, 1e-7 absolute)."""
    res, glmm = separated_crossed
    fit = res.model_fit
    prob = GlmmProblem(glmm, fit.family, 1)
    fun = prob.fun(False)
    beta = np.array(fit.beta, dtype=float)
    beta[-1] = -400.0
    theta = np.asarray(SEPARATED_REF["points"][-1]["theta"])  # the order is internal too
    x = np.concatenate([theta, prob.standardized_beta(beta)])
    _, grad, _ = fun(x)
    assert np.all(np.isfinite(grad))
    for j in range(x.size):
        step = np.zeros_like(x)
        step[j] = 1e-5
        central = (fun(x + step)[0] - fun(x - step)[0]) / 2e-5
        assert grad[j] == pytest.approx(central, rel=1e-6, abs=1e-7), j


def test_separated_column_profile_of_a_crossed_model_is_open_on_its_flat_side(
    separated_crossed,
):
    """The crossed counterpart of test_glmm_profile's one-factor case: the interval of
    f[T.C] is (-inf, finite root) (its upper end was NaN: the deviance on the way was
    NaN, above); the root's signed profile deviance is 1.96 (1e-4)."""
    res, _ = separated_crossed
    with pytest.warns(UserWarning, match=r"\['f\[T\.C\]'\] separate the response"):
        ci = res.confint("profile")
    lo, hi = ci.loc["f[T.C]"]
    assert lo == -np.inf and np.isfinite(hi) and hi < 0
    assert np.isfinite(ci.drop(index="f[T.C]").to_numpy()).all()
    # one call: -100 starts from the root's optimum, -1000 from -100's
    zeta = profile_zeta(res.model_fit, "f[T.C]", [hi, -100.0, -1000.0])
    assert zeta[0] == pytest.approx(1.959963984540054, abs=1e-4)
    # the flat side: the deviance there is the fit's (lme4's, above), so zeta is ~0. Its
    # constrained fits used to start with the intercept dragged along until every row
    # saturated (glmm_profile.fixed_zeta), and stopped there: zeta -75.8
    assert np.all(np.abs(zeta[1:]) < 1e-3)


def test_profile_of_a_crossed_model_does_not_depend_on_a_predictors_shift(separated_crossed):
    """The same model with x moved to near 1e6: every profile interval equals the
    unshifted fit's (1e-6 absolute; x's and the separated column's ends included). A
    start that moved x's coefficient with the intercept held made every row's linear
    predictor jump by 1e6 per unit, and x's interval collapsed to [0.2938, 0.2939]
    (glmm_profile.fixed_zeta takes the lower of two starts)."""
    res, _ = separated_crossed
    d = pd.read_csv(DATA / SEPARATED_REF["data_file"], dtype={"g": str, "h": str, "f": str})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # separation, open interval
        shifted = interlace.fit(
            SEPARATED_REF["formula"], d.assign(x=d["x"] + 1e6), family="binomial"
        )
        ci_shifted = shifted.confint("profile")
        ci = res.confint("profile")
    rows = ["sd_(Intercept)|g", "sd_(Intercept)|h", "x", "f[T.B]"]
    np.testing.assert_allclose(ci_shifted.loc[rows], ci.loc[rows], rtol=0, atol=1e-6)
    assert ci_shifted.loc["f[T.C]"].iloc[0] == -np.inf
    assert ci_shifted.loc["f[T.C]"].iloc[1] == pytest.approx(ci.loc["f[T.C]"].iloc[1], abs=1e-6)
