"""Linear mixed models with prior weights and offsets (lme4's ``lmer(weights=, offset=)``).

References: tests/data/lme4_weights_references.json, made by
tests/data/make_lme4_weights_references.R from tests/data/lmm_weights.csv (a crossed
subjects x items design; weights 0.5..2, offsets log(expo)). lme4's criterion was checked
there against a dense -2 log N(y; offset + X beta, sigma^2 (Z Lambda Lambda'Z' + W^-1)).
Tolerances: criterion never above lme4's by more than 1e-8 relative and within 1e-8;
at lme4's own theta 1e-10 relative; fixed effects within 1e-4 of their SE; theta 1e-4
relative; sigma and standard errors 1e-5 relative; fitted values, residuals and
predictions 1e-5 absolute (the response's sd is ~1.6; lme4's own reruns move its
estimates by ~1e-7 relative); conditional modes 1e-4 absolute.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._base.errors import DataError

from .conftest import DATA, fit_quiet

FORMULAS = {
    "w_int": "y ~ cond + t + (1 | subject) + (1 | item)",
    "w_slope": "y ~ cond + t + (1 + t | subject) + (1 | item)",
    "off_formula": "y ~ cond + (1 | subject) + (1 | item) + offset(np.log(expo))",
    "off_arg_w": "y ~ cond + t + (1 | subject) + (1 | item)",
    "w_far": "y_far ~ cond + t + (1 | subject) + (1 | item)",
    "unweighted": "y ~ cond + t + (1 | subject) + (1 | item)",
}
FITS = [
    "w_int_reml",
    "w_int_ml",
    "w_slope_reml",
    "w_slope_ml",
    "off_formula_reml",
    "off_arg_w_ml",
    "w_far_reml",
    "unweighted_reml",
]
_cache: dict = {}


@pytest.fixture(scope="module")
def refs():
    with open(DATA / "lme4_weights_references.json") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA / "lmm_weights.csv", dtype={"subject": str, "item": str})


def _arguments(key, data):
    model, method = key.rsplit("_", 1)
    kwargs = {"method": method.upper()}
    if model.startswith("w_") or model == "off_arg_w":
        kwargs["weights"] = "w"
    if model == "off_arg_w":
        kwargs["offset"] = np.log(data["expo"])
    return FORMULAS[model], kwargs


def _fit(key, data):
    if key not in _cache:
        formula, kwargs = _arguments(key, data)
        _cache[key] = fit_quiet(formula, data, **kwargs)[0]
    return _cache[key]


@pytest.fixture(params=FITS)
def case(request, refs, data):
    return _fit(request.param, data), refs["fits"][request.param], request.param


def _lme4_name(name: str) -> str:
    """formulaic's 'cond[T.b]' and 'Intercept' are lme4's 'condb' and '(Intercept)'."""
    return "(Intercept)" if name == "Intercept" else name.replace("[T.", "").replace("]", "")


def test_criterion_and_fit_statistics(case):
    res, ref, _ = case
    assert res.converged
    assert res.deviance <= ref["criterion"] * (1 + 1e-8)
    assert res.deviance == pytest.approx(ref["criterion"], rel=1e-8)
    assert res.llf == pytest.approx(ref["logLik"], rel=1e-8)
    assert res.aic == pytest.approx(ref["AIC"], rel=1e-8)
    assert res.bic == pytest.approx(ref["BIC"], rel=1e-8)
    assert res.nobs == ref["nobs"] == 960


def test_estimates(case):
    res, ref, _ = case
    names = [_lme4_name(n) for n in res.fe_params.index]
    se = np.array([ref["fixef_se"][n] for n in names])
    beta = np.array([ref["fixef"][n] for n in names])
    np.testing.assert_array_less(np.abs(res.fe_params.to_numpy() - beta), 1e-4 * se)
    np.testing.assert_allclose(res.fe_bse.to_numpy(), se, rtol=1e-5)
    np.testing.assert_allclose(res.theta.to_numpy(), list(ref["theta"].values()), rtol=1e-4)
    assert np.sqrt(res.scale) == pytest.approx(ref["sigma"], rel=1e-5)


def test_fitted_residuals_and_modes(case):
    res, ref, _ = case
    np.testing.assert_allclose(res.fittedvalues.to_numpy(), ref["fitted"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(res.resid.to_numpy(), ref["residuals_response"], atol=1e-5)
    np.testing.assert_allclose(
        res.residuals("pearson").to_numpy(), ref["residuals_pearson"], atol=1e-5
    )
    for factor, columns in ref["ranef"].items():
        ours = res.random_effects[factor]
        for column, by_level in columns.items():
            col = ours[column] if isinstance(ours, pd.DataFrame) else ours
            lme4 = pd.Series(by_level)
            np.testing.assert_allclose(col.loc[lme4.index].to_numpy(), lme4.to_numpy(), atol=1e-4)


def test_predictions_on_new_data(case, data):
    res, ref, key = case
    rows = ref["predict_new"]["rows"]
    new = data.iloc[rows].reset_index(drop=True)
    # lme4's predict(newdata) ignores lmer's offset= argument; ours asks for it, so the
    # comparable call passes a zero offset, and the model's own offset reproduces fitted
    kwargs = {"offset": np.zeros(len(rows))} if key == "off_arg_w_ml" else {}
    np.testing.assert_allclose(
        res.predict(new, **kwargs).to_numpy(), ref["predict_new"]["values"], atol=1e-5
    )
    np.testing.assert_allclose(
        res.predict(new, include_re=False, **kwargs).to_numpy(),
        ref["predict_new"]["values_re_form_NA"],
        atol=1e-5,
    )
    if key == "off_arg_w_ml":
        own = res.predict(new, offset=np.log(new["expo"])).to_numpy()
        np.testing.assert_allclose(own, res.fittedvalues.to_numpy()[rows], atol=1e-12)
    np.testing.assert_allclose(res.predict().to_numpy(), res.fittedvalues.to_numpy(), atol=1e-10)


@pytest.mark.parametrize("key", ["w_int_ml", "w_slope_reml", "off_arg_w_ml"])
def test_criterion_at_lme4_theta(refs, data, key):
    """Our profiled deviance, through the functional API, at lme4's theta: free of either
    optimiser's error."""
    ref = refs["fits"][key]
    formula, kwargs = _arguments(key, data)
    method = kwargs.pop("method")
    model = interlace.model_arrays(formula, data, **kwargs)
    theta = np.array(list(ref["theta"].values()))
    value = float(interlace.deviance(theta, model, reml=method == "REML"))
    assert value == pytest.approx(ref["criterion"], rel=1e-10)


def test_anova_of_weighted_models(refs, data):
    ref = refs["anova_w_int"]
    small, _ = fit_quiet("y ~ cond + (1 | subject) + (1 | item)", data, method="ML", weights="w")
    table = interlace.anova(small, _fit("w_int_ml", data)).table
    assert table["Chisq"].iloc[1] == pytest.approx(ref["Chisq"], rel=1e-6)
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p_value"], rel=1e-6)
    unweighted, _ = fit_quiet("y ~ cond + (1 | subject) + (1 | item)", data, method="ML")
    with pytest.raises(interlace.ModelSpecError, match="same weights"):
        interlace.anova(unweighted, _fit("w_int_ml", data))


def test_summary_names_weights_and_offset(data):
    """lme4's ``Weights:`` / ``Offset:`` lines under the formula, for the arguments given."""
    lines = _fit("off_arg_w_ml", data).summary().splitlines()
    assert lines[1:5] == [
        "Formula: y ~ cond + t + (1 | subject) + (1 | item)",
        "Weights: w",
        f" Offset: <{len(data)} values>",
        "",
    ]
    plain = _fit("unweighted_reml", data).summary()
    assert "Weights:" not in plain and "Offset:" not in plain


def test_far_from_zero_and_scale_of_weights(data):
    """y + 1e6 changes only the intercept (the weighted centring keeps every digit); the
    weights' scale is not identified (c w: sigma^2 times c, the same criterion, lme4's
    definition)."""
    near, far = _fit("w_int_reml", data), _fit("w_far_reml", data)
    assert far.deviance == pytest.approx(near.deviance, rel=1e-10)
    np.testing.assert_allclose(far.theta.to_numpy(), near.theta.to_numpy(), rtol=1e-6)
    shift = far.fe_params.to_numpy() - near.fe_params.to_numpy()
    np.testing.assert_allclose(shift, [1e6, 0, 0], rtol=0, atol=1e-6)
    scaled, _ = fit_quiet(FORMULAS["w_int"], data, weights=4.0 * data["w"].to_numpy())
    assert scaled.deviance == pytest.approx(near.deviance, rel=1e-10)
    assert scaled.scale == pytest.approx(4.0 * near.scale, rel=1e-6)
    np.testing.assert_allclose(scaled.fe_params.to_numpy(), near.fe_params.to_numpy(), rtol=1e-6)
    ones, _ = fit_quiet(FORMULAS["w_int"], data, weights=np.ones(len(data)))
    plain = _fit("unweighted_reml", data)
    assert ones.deviance == pytest.approx(plain.deviance, rel=1e-12)


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("c", [1e-8, 1e8])
def test_weights_of_any_scale(data, method, c):
    """Weights times 1e-8 or 1e8 (a variance in other units): the same model (1e-9
    relative criterion), ``sigma^2`` times ``c`` and the random effects' variances
    unchanged (1e-6 relative), with a random slope. ``theta = sd_b / sigma`` moves by
    ``1 / sqrt(c)``, so the search runs on it rescaled (``_core.theta.weight_scale``).
    Before, REML at 1e8 stopped 26.5 units above the optimum (flagged unconverged) and
    ML at 1e-8 kept only ~5 digits of the variances."""
    w = data["w"].to_numpy()
    ref, _ = fit_quiet(FORMULAS["w_slope"], data, weights=w, method=method)
    res, caught = fit_quiet(FORMULAS["w_slope"], data, weights=c * w, method=method)
    assert res.converged, caught
    assert res.deviance == pytest.approx(ref.deviance, rel=1e-9)
    assert res.scale == pytest.approx(c * ref.scale, rel=1e-6)
    for g in ("subject", "item"):
        np.testing.assert_allclose(
            np.asarray(res.variance_components[g]),
            np.asarray(ref.variance_components[g]),
            rtol=1e-6,
        )
    np.testing.assert_allclose(res.fe_params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-6)


def test_leverage_against_a_dense_hat_matrix(data):
    """``h_i``: the diagonal of ``A (A'A + blockdiag(I_q, 0))^-1 A'`` with
    ``A = W^1/2 [Z Lambda, X]``, formed densely."""
    res = _fit("w_int_ml", data)
    d = res.design
    Z = np.concatenate([np.eye(len(t.levels))[t.codes] for t in d.terms], axis=1)
    lam = np.concatenate([np.full(len(t.levels), th) for t, th in zip(d.terms, res.theta)])
    r = np.sqrt(d.weights)[:, None]
    A = np.concatenate([Z * lam, d.X], axis=1) * r
    M = A.T @ A + np.diag(np.r_[np.ones(Z.shape[1]), np.zeros(d.X.shape[1])])
    hat = np.einsum("ij,ji->i", A, np.linalg.solve(M, A.T))
    np.testing.assert_allclose(interlace.leverage(res)["overall"].to_numpy(), hat, atol=1e-10)


def test_simulated_residual_variance_follows_the_weights(data):
    """Each row's simulated variance is ``sigma_s^2 + sigma_i^2 + sigma^2 / w_i``: per
    weight class, the mean ratio of the empirical variance (4,000 draws) to it lies within
    6% of 1 (the unweighted variance would miss by 25-40% at w = 0.5 and 2)."""
    res = _fit("w_int_ml", data)
    sims = res.simulate(4000, seed=7).to_numpy()
    vc = res.variance_components
    expected = vc["subject"] + vc["item"] + res.scale / data["w"].to_numpy()
    ratio = sims.var(axis=1) / expected
    for w in (0.5, 2.0):
        assert ratio[data["w"].to_numpy() == w].mean() == pytest.approx(1.0, abs=0.06)


def test_bootstrap_and_profile_keep_the_offset(data):
    """Refits of simulated responses are centred on the estimates (an offset lost on the
    way would move the intercept by mean(log expo) ~ 0.96); profile intervals of fixed
    effects lie near Wald's."""
    res = _fit("off_arg_w_ml", data)
    boot = res.parametric_bootstrap(40, seed=3)
    assert boot.converged.all()
    beta = boot.replicates[res.fe_params.index].to_numpy()
    spread = beta.std(axis=0, ddof=1) / np.sqrt(len(beta))
    np.testing.assert_array_less(np.abs(beta.mean(axis=0) - res.fe_params.to_numpy()), 5 * spread)
    ci = res.confint(method="profile").loc[res.fe_params.index]
    wald = res.conf_int(0.95)
    half = (wald.iloc[:, 1] - wald.iloc[:, 0]).to_numpy() / 2
    np.testing.assert_allclose(ci.to_numpy(), wald.to_numpy(), atol=0.05 * half.max())


def test_fit_many_with_weights_and_offset(data):
    one = _fit("off_arg_w_ml", data)
    y = data["y"].to_numpy()
    table = interlace.fit_many(
        FORMULAS["off_arg_w"],
        data,
        np.column_stack([y, y[::-1]]),
        method="ML",
        weights="w",
        offset=np.log(data["expo"]),
    )
    assert table["deviance"].iloc[0] == pytest.approx(one.deviance, rel=1e-9)
    np.testing.assert_allclose(
        table[list(one.fe_params.index)].iloc[0].to_numpy(), one.fe_params.to_numpy(), atol=1e-6
    )


def test_bad_weights_and_offsets(data):
    f = FORMULAS["w_int"]
    snapshot = data.copy()
    for bad, match in [
        (-data["w"], "must be > 0"),
        (np.where(np.arange(len(data)) == 5, 0.0, data["w"]), "must be > 0"),
        (np.where(np.arange(len(data)) == 5, np.inf, data["w"]), "infinite values"),
        (data["w"].to_numpy()[:10], "one per row"),
    ]:
        with pytest.raises(DataError, match=match):
            interlace.fit(f, data, weights=bad)
    with pytest.raises(interlace.MissingColumnError, match="not a column"):
        interlace.fit(f, data, weights="wt")
    with pytest.raises(DataError, match="offset"):
        interlace.fit(f, data, offset=np.full(len(data), np.inf))
    res = _fit("off_arg_w_ml", data)
    with pytest.raises(DataError, match="pass offset="):
        res.predict(data.head(3))
    with pytest.raises(DataError, match="not"):
        _fit("w_int_ml", data).predict(data.head(3), offset=np.zeros(3))
    with pytest.raises(interlace.ModelSpecError, match="offset= goes with newdata="):
        res.predict(offset=np.zeros(len(data)))
    pd.testing.assert_frame_equal(data, snapshot)


def test_missing_weight_or_offset_drops_the_row(data):
    """A NaN weight or offset marks its row missing, as lmer's na.action: the fit equals
    the fit without that row (REML criterion to 1e-10 relative), with the dropped-rows
    warning naming the argument."""
    f = FORMULAS["w_int"]
    keep = np.arange(len(data)) != 5
    w = np.where(keep, data["w"], np.nan)
    with pytest.warns(UserWarning, match=r"Dropped 1 of .*\['weights'\]"):
        dropped = interlace.fit(f, data, weights=w)
    reference = interlace.fit(f, data[keep], weights=data["w"][keep].to_numpy())
    assert dropped.nobs == reference.nobs == len(data) - 1
    assert dropped.deviance == pytest.approx(reference.deviance, rel=1e-10)
    off = np.where(keep, 0.1, np.nan)
    with pytest.warns(UserWarning, match=r"Dropped 1 of .*\['offset'\]"):
        dropped = interlace.fit(f, data, offset=off)
    reference = interlace.fit(f, data[keep], offset=np.full(keep.sum(), 0.1))
    assert dropped.deviance == pytest.approx(reference.deviance, rel=1e-10)


def test_group_deletion_keeps_weights_and_offset(data):
    """Deleting item I01 by a zero row multiplicity (one vectorised refit per item) equals
    refitting without its rows, prior weights and offsets kept: MDFFITS and the relative
    change of sigma^2 to 1e-6 relative."""
    res = _fit("off_arg_w_ml", data)
    first = interlace.hlm_influence(res, level="item").loc["I01"]
    keep = data["item"] != "I01"
    refit, _ = fit_quiet(
        FORMULAS["off_arg_w"],
        data[keep],
        method="ML",
        weights="w",
        offset=np.log(data.loc[keep, "expo"]),
    )
    diff = res.fe_params.to_numpy() - refit.fe_params.to_numpy()
    mdffits = diff @ np.linalg.solve(refit.fe_cov.to_numpy(), diff) / len(diff)
    assert first["mdffits"] == pytest.approx(mdffits, rel=1e-6)
    assert first["rvc_sigma2"] == pytest.approx(refit.scale / res.scale - 1.0, rel=1e-6)
