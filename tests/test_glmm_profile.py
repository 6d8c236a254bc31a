"""Profile-likelihood intervals of GLMMs (``GLMMResult.confint("profile")``) against
lme4's ``profile()`` / ``confint()`` of the same glmer fits.

References: tests/data/glmm_profile_references.json, made by
tests/data/make_glmm_profile_references.R (tight bobyqa fits, lme4's own profile).

What lme4's numbers can and cannot check:

* lme4's profile points (``as.data.frame(profile(fit))``) are constrained refits. At
  every one of them our profiled deviance must be no worse than lme4's (the issue's rule
  for optima: ours never worse); lme4's refits are often looser (up to 0.03 on these
  models), so "better" is bounded only loosely, enough to catch a wrongly pinned
  parameter (whose "optimum" would fall by O(1) far from the estimate).
* lme4's interval ends interpolate a spline through those points: 5e-3 relative.
* The ends themselves are checked exactly by independent refits: a fixed effect's end
  ``v`` by a public-API fit with ``v x_j`` moved into the offset, a standard deviation's
  end by minimising lme4's deviance function (``deviance_at``) over ``beta`` at that
  ``theta``; both must sit ``z_{0.975}^2`` above the fit's minimum, to 1e-6.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._base.errors import ModelSpecError
from interlace._inference.glmm_profile import profile_zeta
from interlace._model.glmm_design import GlmmDesign
from interlace._model.glmm_estimate import deviance_at

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "glmm_profile_references.json").read_text())["models"]
Z975 = 1.959963984540054

FACTORS = {
    "cbpp_laplace": ["herd", "period"],
    "poisson_offset_laplace": ["site", "year", "observer"],
    "binary_slope_laplace": ["subject", "item"],
}


def _frame(key: str) -> pd.DataFrame:
    ref = REF[key]
    return pd.read_csv(DATA / ref["data_file"], dtype={c: str for c in FACTORS[key]})


def _formula(key: str) -> str:
    return REF[key]["formula"].replace("offset(log(", "offset(np.log(")


@pytest.fixture(scope="module")
def fits():
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in FACTORS:
            out[key] = interlace.fit(_formula(key), _frame(key), family=REF[key]["family"])
    return out


@pytest.fixture(scope="module")
def intervals(fits):
    return {key: fit.confint("profile") for key, fit in fits.items()}


def _our_name(key: str, fit, lme4_name: str) -> str:
    """lme4's row name -> ours: sd/cor rows are named alike; fixed effects by position."""
    rows = REF[key]["confint"]["rownames"]
    n_var = sum(r.startswith(("sd_", "cor_")) for r in rows)
    if lme4_name.startswith(("sd_", "cor_")):
        return lme4_name
    return list(fit.fe_params.index)[rows.index(lme4_name) - n_var]


@pytest.mark.parametrize("key", list(FACTORS))
def test_interval_ends_match_lme4_confint(key, fits, intervals):
    """Within 5e-3 relative of lme4's spline-interpolated ends (module docstring)."""
    ref, ci = REF[key]["confint"], intervals[key]
    assert len(ci) == len(ref["rownames"])
    for name, lo, hi in zip(ref["rownames"], ref["lower"], ref["upper"]):
        ours = ci.loc[_our_name(key, fits[key], name)].to_numpy()
        np.testing.assert_allclose(ours, [lo, hi], rtol=5e-3, err_msg=f"{key}: {name}")
        assert ours[0] < ours[1]


@pytest.mark.parametrize("key", list(FACTORS))
def test_profiled_deviance_never_worse_than_lme4_at_its_points(key, fits):
    """At each of lme4's profile points, our constrained optimum is at most 1e-6 above
    lme4's and at most 0.05 below it (module docstring)."""
    fit, ref = fits[key], REF[key]
    d_min = -2 * fit.llf
    for name, pts in ref["points"].items():
        z = profile_zeta(fit.model_fit, _our_name(key, fit, name), pts["focal"])
        ours = d_min + z**2
        lme4 = ref["m2ll"] + np.asarray(pts["zeta"]) ** 2
        assert np.all(np.isfinite(z)), f"{key}: {name}"
        assert np.max(ours - lme4) <= 1e-6, f"{key}: {name} worse than lme4"
        assert np.min(ours - lme4) >= -0.05, f"{key}: {name} far below lme4's profile"
        # and zeta's sign is the side of the estimate
        est = pts["focal"][int(np.argmin(np.abs(pts["zeta"])))]
        side = np.sign(np.asarray(pts["focal"]) - est)
        assert np.all(z * side >= -1e-6), f"{key}: {name}"


def test_fixed_effect_ends_by_offset_refits(fits, intervals):
    """``cover``'s ends: a refit with ``v * cover`` in the offset (the public API, no
    profile code) has -2 logLik = minimum + z^2, to 1e-6."""
    key = "poisson_offset_laplace"
    fit, data = fits[key], _frame(key)
    d_min = -2 * fit.llf
    for v in intervals[key].loc["cover"]:
        formula = (
            f"count ~ 1 + offset(np.log(hours) + {float(v)!r} * cover) "
            "+ (1 | site) + (1 | year) + (1 | observer)"
        )
        refit = interlace.fit(formula, data, family="poisson")
        assert abs(-2 * refit.llf - d_min - Z975**2) < 1e-6


def test_sd_end_by_minimising_lme4s_deviance_function(fits, intervals):
    """cbpp's sd ends: min over ``beta`` of lme4's deviance function at ``theta = v``
    (``deviance_at``, scipy's BFGS from the fit's ``beta``) is minimum + z^2, to 1e-6."""
    from scipy.optimize import minimize

    fit = fits["cbpp_laplace"].model_fit
    glmm = GlmmDesign(
        fit.design, fit.prior_weights, fit.offset, fit.offset_terms, fit.offset_argument
    )
    for v in intervals["cbpp_laplace"].loc["sd_(Intercept)|herd"]:
        res = minimize(
            lambda b, v=v: deviance_at(glmm, fit.family, [v], b),
            np.asarray(fit.beta),
            method="BFGS",
            options={"gtol": 1e-9},
        )
        assert abs(res.fun - fit.objective - Z975**2) < 1e-6


def test_other_methods_and_levels(fits):
    fit = fits["cbpp_laplace"]
    wald = fit.confint("wald", level=0.9)
    assert list(wald.columns) == ["5 %", "95 %"]
    assert wald.loc["sd_(Intercept)|herd"].isna().all()
    np.testing.assert_allclose(
        wald.loc[list(fit.fe_params.index)].to_numpy(), fit.conf_int(0.9).to_numpy(), rtol=1e-12
    )
    boot = fit.confint("bootstrap", n_bootstrap=20, seed=1)
    assert list(boot.index) == ["sd_(Intercept)|herd", *fit.fe_params.index]
    assert np.all(boot.iloc[:, 0] <= boot.iloc[:, 1])
    # a wider level gives a wider profile interval
    narrow = fit.confint("profile", level=0.8)
    wide = fit.confint("profile", level=0.95)
    assert np.all(narrow.iloc[:, 0] > wide.iloc[:, 0])
    assert np.all(narrow.iloc[:, 1] < wide.iloc[:, 1])
    with pytest.raises(ModelSpecError, match="method must be"):
        fit.confint("likelihood")
    # lme4's spellings
    pd.testing.assert_frame_equal(fit.confint("Wald", level=0.9), wald)


def test_nagq0_profile_is_refused():
    data = _frame("cbpp_laplace")
    fit0 = interlace.fit(_formula("cbpp_laplace"), data, family="binomial", nAGQ=0)
    with pytest.raises(ModelSpecError, match="nAGQ >= 1"):
        fit0.confint("profile")
    assert fit0.confint("wald").shape == (5, 2)


def _singular_nested() -> pd.DataFrame:
    """Poisson counts on a (1 | a/b) design where a's variance is estimated at 0."""
    rng = np.random.default_rng(1)
    na, nb, per = 6, 4, 8
    a = np.repeat(np.arange(na), nb * per)
    b = np.tile(np.repeat(np.arange(nb), per), na)
    x = rng.normal(size=a.size)
    y = rng.poisson(np.exp(0.2 + 0.3 * x + rng.normal(0, 0.3, na * nb)[a * nb + b]))
    return pd.DataFrame({"a": [f"a{k}" for k in a], "b": [f"b{k}" for k in b], "x": x, "y": y})


def test_singular_fit_profile_ends_by_independent_minimisation():
    """A fit with a variance component at 0: the other parameters' constrained refits
    must let it leave 0 (its gradient vanishes there). Each end of the intercept's
    interval is checked by minimising lme4's deviance function (``deviance_at``) over
    theta and the slope with Nelder-Mead from several starts: minimum + z^2 to 1e-5."""
    from scipy.optimize import minimize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fit
        res = interlace.fit("y ~ x + (1 | a/b)", _singular_nested(), family="poisson")
    assert res.is_singular
    fit = res.model_fit
    glmm = GlmmDesign(
        fit.design, fit.prior_weights, fit.offset, fit.offset_terms, fit.offset_argument
    )
    ci = res.confint("profile")
    assert ci.loc["sd_(Intercept)|a"].iloc[0] == 0.0
    for v in ci.loc["Intercept"]:
        best = min(
            minimize(
                lambda w, v=v: deviance_at(glmm, fit.family, np.abs(w[:2]), np.array([v, w[2]])),
                start,
                method="Nelder-Mead",
                options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 4000},
            ).fun
            for start in ([0.3, 0.3, fit.beta[1]], [1e-3, 0.4, fit.beta[1]])
        )
        assert abs(best - fit.objective - Z975**2) < 1e-5


def test_separated_column_profile_is_open_on_its_flat_side():
    """A level with one outcome: its coefficient's interval is open toward the flat side
    (-inf here), with a warning naming it; the other end is a finite root."""
    rng = np.random.default_rng(3)
    n = 300
    g = rng.integers(0, 15, n)
    d = pd.DataFrame(
        {"g": [f"g{k}" for k in g], "x": rng.normal(size=n), "f": np.resize(["A", "B", "C"], n)}
    )
    eta = 0.3 * d["x"] + rng.normal(0, 0.8, 15)[g]
    d["y"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    d.loc[d["f"] == "C", "y"] = 0
    with pytest.warns(UserWarning, match="separate"):
        res = interlace.fit("y ~ x + f + (1 | g)", d, family="binomial")
    with pytest.warns(UserWarning, match=r"\['f\[T\.C\]'\] separate the response"):
        ci = res.confint("profile")
    lo, hi = ci.loc["f[T.C]"]
    assert lo == -np.inf and np.isfinite(hi) and hi < 0
    assert np.isfinite(ci.drop(index="f[T.C]").to_numpy()).all()
