"""The same fit wherever the data sit: shifting the response, or shifting / scaling a
fixed-effect column that the intercept absorbs, changes nothing in exact arithmetic,
and must change nothing beyond the accuracy of the unshifted fit (``_standardize``).

Data are quantised to multiples of 2^-16, so every shifted value (below 2^30 + 2^20)
is exactly representable: the tests measure the algorithm, not the rounding of the
input. lme4's references for shifted data come from
``tests/data/make_lme4_shift_references.R``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import interlace

DATA = Path(__file__).parent / "data"
QUANTUM = 2.0**-16

# Deviance: 1e-9 relative; fixed effects (mapped back), SEs, variance components: 1e-6
# relative (the bar), with an absolute floor for values near zero.
DEV_RTOL, EST_RTOL, EST_ATOL = 1e-9, 1e-6, 1e-9


def _q(v):
    return np.round(np.asarray(v) / QUANTUM) * QUANTUM


def _crossed(seed=11, n=600):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 40, n), rng.integers(0, 15, n)
    x, z = _q(rng.normal(size=n)), _q(rng.normal(size=n))
    slope = 0.4 * rng.normal(size=40)
    y = (
        0.5 * x
        - 0.3 * z
        + rng.normal(size=40)[a]
        + slope[a] * z
        + 0.6 * rng.normal(size=15)[b]
        + rng.normal(size=n)
    )
    return pd.DataFrame({"y": _q(y), "x": x, "z": z, "a": a, "b": b, "p": a % 8, "s": a // 8})


MODELS = {
    "intercepts": "y ~ x + (1 | a) + (1 | b)",
    "slopes": "y ~ x + z + (1 + z | a) + (1 | b)",
    "nested": "y ~ x + (1 | p/s)",
}


def _fit(formula, df, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits are fine here
        return interlace.fit(formula, df, method=method)


def _components(res) -> np.ndarray:
    out = []
    for v in res.variance_components.values():
        out.extend(np.ravel(v.to_numpy() if hasattr(v, "to_numpy") else v))
    return np.asarray(out + [res.scale])


@pytest.fixture(scope="module")
def data():
    return _crossed()


@pytest.fixture(scope="module")
def base(data):
    return {(m, meth): _fit(f, data, meth) for m, f in MODELS.items() for meth in ("REML", "ML")}


def _assert_same(res, ref, A=None, offset=None, dev_shift=0.0):
    """``res`` is ``ref`` after a change of units: ``ref.beta = A res.beta + offset``.

    ``ref`` is mapped forward, ``beta = A^-1 (ref.beta - offset)`` and
    ``vcov = A^-1 ref.vcov A^-T``: mapping ``res`` back instead would cancel (for a
    shift of 1e6 the intercept's variance is a difference of terms ~1e10 times larger),
    and the comparison would measure the test's rounding, not the fit's."""
    p = len(ref.fe_params)
    Ainv = np.linalg.inv(np.eye(p) if A is None else A)
    offset = np.zeros(p) if offset is None else offset
    assert res.converged, res.stop_reason
    assert res.deviance - dev_shift == pytest.approx(ref.deviance, rel=DEV_RTOL)
    np.testing.assert_allclose(
        res.fe_params.to_numpy(),
        Ainv @ (ref.fe_params.to_numpy() - offset),
        rtol=EST_RTOL,
        atol=EST_ATOL,
    )
    cov = Ainv @ ref.fe_cov.to_numpy() @ Ainv.T
    np.testing.assert_allclose(res.fe_bse.to_numpy(), np.sqrt(np.diag(cov)), rtol=EST_RTOL)
    np.testing.assert_allclose(_components(res), _components(ref), rtol=EST_RTOL, atol=EST_ATOL)


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("shift", [1e2, 1e4, 1e6, 1e8, 1e9])
def test_response_shift(data, base, model, method, shift):
    res = _fit(MODELS[model], data.assign(y=data.y + shift), method)
    offset = np.zeros(len(res.fe_params))
    offset[0] = -shift  # the intercept absorbs the shift
    _assert_same(res, base[model, method], offset=offset)


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("shift", [1e2, 1e4, 1e6])
def test_predictor_shift(data, base, model, method, shift):
    """``x -> x + c``: ``beta_x`` is unchanged and the intercept becomes ``b0 - c b_x``."""
    res = _fit(MODELS[model], data.assign(x=data.x + shift), method)
    A = np.eye(len(res.fe_params))
    A[0, 1] = shift  # b0 = b0' + c b_x'  (column 1 is x)
    _assert_same(res, base[model, method], A=A)


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1e3, 1e6])
def test_predictor_scale(data, base, model, method, scale):
    """``x -> s x``: ``b_x = s b_x'``. The ML deviance is unchanged; lme4's REML criterion
    has ``log|X'V^-1 X|``, which grows by ``2 log s``."""
    res = _fit(MODELS[model], data.assign(x=data.x * scale), method)
    A = np.eye(len(res.fe_params))
    A[1, 1] = scale
    shift = 2.0 * np.log(scale) if method == "REML" else 0.0
    _assert_same(res, base[model, method], A=A, dev_shift=shift)


def test_functional_layer_and_fit_many_are_shift_invariant(data, base):
    """The differentiable deviance and the vectorised refits standardise each response
    of a batch on its own."""
    ref = base["intercepts", "REML"]
    theta = ref.theta.to_numpy()  # numpy float64: the eager functional layer scopes itself
    shifted = data.assign(y=data.y + 1e8)
    model = interlace.model_arrays(MODELS["intercepts"], shifted)
    assert float(interlace.deviance(theta, model)) == pytest.approx(ref.deviance, rel=DEV_RTOL)
    Y = np.column_stack([data.y + 1e8, data.y - 1e6, data.y])
    table = interlace.fit_many(MODELS["intercepts"], data, Y)
    assert table["converged"].all()
    np.testing.assert_allclose(table["deviance"], ref.deviance, rtol=DEV_RTOL)
    np.testing.assert_allclose(table["x"], ref.fe_params["x"], rtol=EST_RTOL)
    np.testing.assert_allclose(
        table["Intercept"] - [1e8, -1e6, 0.0], ref.fe_params.iloc[0], rtol=EST_RTOL, atol=EST_ATOL
    )


REFS = json.loads((DATA / "lme4_shift_references.json").read_text())["fits"]


@pytest.mark.parametrize("name", sorted(REFS))
def test_shifted_fits_match_lme4(name):
    """lme4 (tight optimiser settings) on sleepstudy with ``Reaction`` shifted."""
    ref = REFS[name]
    ss = pd.read_csv(DATA / "sleepstudy.csv")
    df = ss.assign(Reaction=ss.Reaction + ref["shift"])
    res = _fit(ref["formula"], df, ref["method"])
    assert res.converged
    # lme4 loses digits to the shift itself (its own fits at different shifts differ
    # in the 7th-10th digit); 1e-6 relative covers that, not more.
    assert res.deviance == pytest.approx(ref["deviance"], rel=1e-6)
    assert np.sqrt(res.scale) == pytest.approx(ref["sigma"], rel=1e-5)
    beta = res.fe_params.to_numpy() - [ref["shift"], 0.0]  # as stored: relative to the shift
    np.testing.assert_allclose(beta, ref["beta"], rtol=1e-6)


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1e3, 1e6])
def test_random_slope_covariate_scale(data, base, method, scale):
    """``z -> s z`` where ``z`` also has a random slope: ``b_z = b_z' s``, the slope's
    covariance row and column times ``s`` (``D cov' D``, ``D = diag(1, s)``), the ML
    deviance unchanged (REML's grows by ``2 log s``, as above). The slope's ``theta``
    is ``s`` times smaller or larger than in the base fit: from lme4's identity start,
    at ``s = 1e-6`` the fit stopped there (the deviance is flat to 1e-12 around it),
    47 above the optimum and reported converged; lme4 stops as far off, with warnings.
    The search runs on the term's columns rescaled by powers of two
    (``_core.theta.column_scales``)."""
    ref = base["slopes", method]
    res = _fit(MODELS["slopes"], data.assign(z=data.z * scale), method)
    assert res.converged, res.stop_reason
    shift = 2.0 * np.log(scale) if method == "REML" else 0.0
    assert res.deviance - shift == pytest.approx(ref.deviance, rel=DEV_RTOL)
    assert res.fe_params["z"] * scale == pytest.approx(ref.fe_params["z"], rel=EST_RTOL)
    D = np.diag([1.0, scale])
    np.testing.assert_allclose(
        D @ res.variance_components["a"].to_numpy() @ D,
        ref.variance_components["a"].to_numpy(),
        rtol=EST_RTOL,
        atol=EST_ATOL,
    )
    assert res.variance_components["b"] == pytest.approx(ref.variance_components["b"], rel=EST_RTOL)
    assert res.scale == pytest.approx(ref.scale, rel=EST_RTOL)


@pytest.fixture(scope="module")
def glmm_data(data):
    """``data`` with a binary response from ``y`` (its median split)."""
    return data.assign(yb=(data.y > np.median(data.y)).astype(float))


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_glmm_random_slope_covariate_scale(glmm_data, scale):
    """The binomial GLMM's version of :func:`test_random_slope_covariate_scale`: -2
    logLik unchanged (1e-9 relative), ``b_z`` and the slope's covariance rescaled (1e-5
    relative: the GLMM's optimum is looser than the LMM's). Before the rescaled search
    the fit at ``s = 1e-6`` stopped near its start and short of the optimum, reported
    converged (0.25 log-likelihood units short on a 600-row design of 30 x 12 levels)."""
    formula = "yb ~ x + z + (1 + z | a) + (1 | b)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = interlace.fit(formula, glmm_data, family="binomial")
        res = interlace.fit(formula, glmm_data.assign(z=glmm_data.z * scale), family="binomial")
    assert res.converged and ref.converged
    assert res.llf == pytest.approx(ref.llf, rel=1e-9)
    assert res.fe_params["z"] * scale == pytest.approx(ref.fe_params["z"], rel=1e-5)
    D = np.diag([1.0, scale])
    np.testing.assert_allclose(
        D @ res.variance_components["a"].to_numpy() @ D,
        ref.variance_components["a"].to_numpy(),
        rtol=1e-5,
        atol=1e-9,
    )


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("shift", [1e2, 1e4, 1e6])
def test_random_slope_covariate_far_from_zero(data, base, method, shift):
    """``z + s`` with a random slope ``(1 + z | a)``: the same model, whose intercept
    (at ``z + s = 0``) has covariance ``B Sigma B'``, ``B = [1 -s; 0 1]``, and the same
    deviance (1e-9 relative). Within each level the intercept and slope columns are
    nearly collinear; the fit searches the slope centred (``_core.centring``). Before,
    ``s = 1e4`` stopped 48.8 ML deviance units above the optimum (flagged unconverged,
    and singular); ``s = 1e2`` took 129 evaluations."""
    ref = base["slopes", method]
    res = _fit(MODELS["slopes"], data.assign(z=data.z + shift), method)
    assert res.converged, res.stop_reason
    assert not res.is_singular
    assert res.deviance == pytest.approx(ref.deviance, rel=DEV_RTOL)
    assert res.fe_params["z"] == pytest.approx(ref.fe_params["z"], rel=EST_RTOL)
    B = np.array([[1.0, -shift], [0.0, 1.0]])
    expected = B @ ref.variance_components["a"].to_numpy() @ B.T
    # entries up to shift^2 times the slope's variance: 1e-6 relative to each
    np.testing.assert_allclose(res.variance_components["a"].to_numpy(), expected, rtol=1e-6)
    assert res.scale == pytest.approx(ref.scale, rel=EST_RTOL)


def test_glmm_fit_many_random_slope_covariate_scale(glmm_data):
    """fit_many's lanes search the same rescaled coordinates as a single fit: with the
    slope covariate in units of 1e-6, each response's -2 logLik equals its single fit's
    (1e-9 relative; the third lane had stopped 0.33 log-likelihood units short,
    reported converged, on a Poisson design before)."""
    scaled = glmm_data.assign(z=glmm_data.z * 1e-6)
    Y = np.column_stack([scaled.yb, (scaled.y > np.quantile(scaled.y, 0.3)).astype(float)])
    formula = "resp ~ x + z + (1 + z | a) + (1 | b)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = interlace.fit_many(formula, scaled, Y, family="binomial")
        singles = [
            interlace.fit(formula, scaled.assign(resp=Y[:, j]), family="binomial").llf
            for j in range(Y.shape[1])
        ]
    assert table["converged"].all()
    np.testing.assert_allclose(table["llf"].to_numpy(), singles, rtol=1e-9)


def test_verbose_fit_searches_the_rescaled_coordinates_too(data, base, capfd):
    """``verbose=True`` runs the compiled loop instead of the host one, from the same
    rescaled start and with the rescaling as its preconditioner: the same ML deviance at
    ``z * 1e-6`` (1e-9 relative)."""
    res = interlace.fit(MODELS["slopes"], data.assign(z=data.z * 1e-6), method="ML", verbose=True)
    assert "iteration" in capfd.readouterr().out
    assert res.converged
    assert res.deviance == pytest.approx(base["slopes", "ML"].deviance, rel=DEV_RTOL)


@pytest.mark.parametrize("nagq", [0, 1])
def test_glmm_offset_in_other_units(nagq):
    """A Poisson exposure offset in other units, ``log(c t)``, is the same model with
    the intercept moved by ``-log c``: -2 logLik unchanged (1e-9 relative), the other
    estimates too (1e-6), single fits and fit_many's lanes. Before, PIRLS started every
    row a factor ``1 / c`` from its data (lme4's ``offset + g(mu_start)``) and returned
    NaN already at ``c = 1e-2``; glmer stops there with "Downdated VtV is not positive
    definite"."""
    rng = np.random.default_rng(12)
    n, g = 500, 30
    a = rng.integers(0, g, n)
    z = rng.normal(size=n)
    t = rng.uniform(0.5, 2, n)
    y = rng.poisson(np.exp(0.3 + 0.4 * z + rng.normal(size=g)[a] + np.log(t))).astype(float)
    d = pd.DataFrame({"a": a, "z": z, "t": t, "y": y})
    formula = "y ~ z + (1 | a)"
    ref = interlace.fit(formula, d, family="poisson", nAGQ=nagq, offset=np.log(t))
    Y = np.column_stack([y, rng.poisson(y + 1.0)])
    many_ref = interlace.fit_many(
        "r ~ z + (1 | a)", d, Y, family="poisson", nAGQ=nagq, offset=np.log(t)
    )
    for c in (1e-2, 1e-6):
        res = interlace.fit(formula, d, family="poisson", nAGQ=nagq, offset=np.log(c * t))
        assert res.converged
        assert res.llf == pytest.approx(ref.llf, rel=1e-9)
        assert res.fe_params["Intercept"] + np.log(c) == pytest.approx(
            ref.fe_params["Intercept"], rel=1e-6
        )
        assert res.fe_params["z"] == pytest.approx(ref.fe_params["z"], rel=1e-6)
        assert res.variance_components["a"] == pytest.approx(ref.variance_components["a"], rel=1e-6)
        many = interlace.fit_many(
            "r ~ z + (1 | a)", d, Y, family="poisson", nAGQ=nagq, offset=np.log(c * t)
        )
        assert many["converged"].all()
        np.testing.assert_allclose(many["llf"], many_ref["llf"], rtol=1e-9)
