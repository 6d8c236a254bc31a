"""Random slopes on a covariate far from 0 (``interlace._core.centring``).

``(1 + z | g)`` with ``z`` a calendar year or a time stamp: the fits search the slope's
column centred and report the user's parametrisation. Checked here: the maps
themselves (exact identities, derivatives, boundaries, NaN, JAX tracing), lme4's fit of
the centred model mapped to the shifted columns (``make_lme4_centring_references.R``:
lme4 on the shifted data itself stops 42 deviance units short, silently), and every
path beside the single fit that searches ``theta`` again: ``fit_many``, the bootstraps,
profile intervals, Satterthwaite, anova, GLMMs.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._core.centring import Centring, slope_centring
from interlace._core.theta import lower_factor, normalize_signs, relative_covariances

DATA = Path(__file__).parent / "data"
REFS = json.loads((DATA / "lme4_centring_references.json").read_text())["fits"]
SLEEP = "Reaction ~ Days + (Days | Subject)"


def _term(columns, X, factor="g"):
    """A stand-in for a ``TermDesign``: what slope_centring reads."""
    return SimpleNamespace(columns=tuple(columns), X=np.asarray(X, float), factor=factor)


def _random_theta(rng, ks, batch=()):
    return rng.normal(size=(*batch, sum(k * (k + 1) // 2 for k in ks)))


@pytest.fixture(scope="module")
def centring():
    """Two terms: ``(1 + u + v | g)`` with the intercept second and both slopes far from
    0, then ``(1 | h)`` (left alone)."""
    rng = np.random.default_rng(3)
    n = 200
    X = np.column_stack([3e3 + rng.normal(size=n), np.ones(n), -50.0 + 0.1 * rng.normal(size=n)])
    terms = [_term(["u", "(Intercept)", "v"], X), _term(["(Intercept)"], np.ones((n, 1)), "h")]
    out = slope_centring(terms)
    assert out is not None
    return SimpleNamespace(c=out, X=X, terms=terms)


def test_only_columns_far_from_zero_are_centred(centring):
    """Shifts are the means of the far columns (here both slopes), 0 for the intercept;
    terms without an intercept, ordinary covariates (sleepstudy's Days: mean 4.5, sd
    2.9) and constant columns are left alone."""
    c = centring.c
    assert c.intercepts == (1, None) and c.moved == ((0, 2), ())
    np.testing.assert_allclose(c.shifts[0], [centring.X[:, 0].mean(), 0.0, centring.X[:, 2].mean()])
    days = np.tile(np.arange(10.0), 18)
    one = np.ones_like(days)
    assert slope_centring([_term(["(Intercept)", "Days"], np.column_stack([one, days]))]) is None
    no_intercept = _term(["Days"], days[:, None] + 1e4)
    assert slope_centring([no_intercept]) is None
    constant = _term(["(Intercept)", "c"], np.column_stack([one, one * 7.0]))
    assert slope_centring([constant]) is None


def test_the_maps_are_inverse_and_keep_the_covariance(centring):
    """``T T' = A T_c T_c' A'`` (1e-12 relative to the largest entry of each) and the
    two maps are inverse (1e-9), for 50 random centred factors with a leading batch
    axis; a term left alone passes through unchanged (exactly)."""
    c, ks = centring.c, [3, 1]
    theta_c = normalize_signs(_random_theta(np.random.default_rng(0), ks, (50,)), ks)
    theta = c.to_user_theta(theta_c)
    A = np.eye(3)
    A[1, :] -= c.shifts[0]  # row i0 = 1 of I - e_i0 c'
    cov, cov_c = relative_covariances(theta, ks)[0], relative_covariances(theta_c, ks)[0]
    expected = A @ cov_c @ A.T
    scale = np.abs(expected).max(axis=(1, 2), keepdims=True)
    assert np.all(np.abs(cov - expected) <= 1e-12 * scale)
    np.testing.assert_allclose(c.to_centred_theta(theta), theta_c, rtol=1e-9, atol=1e-12)
    assert np.array_equal(theta[:, 6], theta_c[:, 6])
    diagonal = lower_factor(theta[:, :6], 3)[:, [0, 1, 2], [0, 1, 2]]
    assert np.all(diagonal >= 0)  # lme4's signs


def test_modes_map_so_that_the_random_part_is_unchanged(centring):
    """``Z_c b' = Z b`` with ``b = A b'`` (row by row; 1e-9 relative)."""
    c = centring.c
    Xc = c.columns(centring.X, 0)
    np.testing.assert_allclose(Xc.mean(axis=0)[[0, 2]], 0.0, atol=1e-9)
    b_c = np.random.default_rng(1).normal(size=(5, 3))
    (b,) = c.to_user_blups((b_c,))[:1]
    # rows of size ~1 from terms of size ~3e3 * |b|: 1e-12 of those
    np.testing.assert_allclose(centring.X @ b.T, Xc @ b_c.T, rtol=0, atol=1e-12 * 3e3 * 3)


def test_the_gradient_follows_the_chain_rule(centring):
    """``to_user_gradient`` is ``J_h' g_c`` for ``h`` the map to the centred ``theta``:
    checked against central differences of ``f(h(theta))`` with ``f`` quadratic
    (1e-6 relative)."""
    c = centring.c
    rng = np.random.default_rng(2)
    theta = c.to_user_theta(np.abs(_random_theta(rng, [3, 1])) + 0.2)
    W = rng.normal(size=(7, 7))
    W = W @ W.T

    def f(th):
        return 0.5 * th @ W @ th

    g = c.to_user_gradient(theta, W @ c.to_centred_theta(theta))
    eps = 1e-6 * np.maximum(1.0, np.abs(theta))
    numeric = [
        (f(c.to_centred_theta(theta + e)) - f(c.to_centred_theta(theta - e))) / (2 * e[j])
        for j, e in enumerate(np.diag(eps))
    ]
    np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8 * np.abs(numeric).max())


def test_boundaries_stay_on_the_boundary_and_nan_stays_nan(centring):
    """A rank-deficient factor (a zero variance) maps to one: its zero pivot is exactly
    0, not a rounding residue that would read as a small variance; a NaN factor (a failed
    refit) maps to NaN, never to a number."""
    c = centring.c
    theta_c = np.array([0.8, 0.3, -0.2, 0.0, 0.0, 0.0, 1.0])  # T_c of rank 1
    T = lower_factor(c.to_user_theta(theta_c)[:6], 3)
    assert np.linalg.matrix_rank(T @ T.T, tol=1e-9 * np.abs(T).max() ** 2) == 1
    assert np.count_nonzero(np.diag(T) == 0.0) == 2
    bad = c.to_user_theta(np.array([np.nan, 0.3, -0.2, 0.1, 0.5, 0.2, 1.0]))
    assert np.all(np.isnan(bad[:6])) and bad[6] == 1.0


def test_the_maps_trace_under_jit_and_vmap(centring):
    """As the batched refits call them: shifts as traced data, a batch by ``vmap``; the
    same numbers as the numpy path (1e-12)."""
    c = centring.c
    theta_c = np.abs(_random_theta(np.random.default_rng(4), [3, 1], (6,)))
    with jax.enable_x64(True):
        mapped = jax.jit(jax.vmap(lambda cc, t: cc.to_user_theta(t), in_axes=(None, 0)))(
            c, jnp.asarray(theta_c)
        )
    np.testing.assert_allclose(np.asarray(mapped), c.to_user_theta(theta_c), rtol=1e-12)
    assert isinstance(c, Centring)


# --- lme4 -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sleep():
    return pd.read_csv(DATA / "sleepstudy.csv")


def _quiet_fit(formula, data, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = interlace.fit(formula, data, **kwargs)
    return res, [str(w.message) for w in caught]


@pytest.mark.parametrize("name", sorted(REFS))
def test_shifted_days_match_lme4s_centred_fit(sleep, name):
    """Days + 2000 and + 1e5: lme4's optimum of the centred model (its criterion 1e-9
    relative; sigma, beta 1e-6; the random effects' sds 1e-5; theta of the centred
    columns 1e-5), no warning at all, and below lme4's own fit of the shifted data,
    which stops 37-43 units short without a warning."""
    ref = REFS[name]
    res, caught = _quiet_fit(
        SLEEP, sleep.assign(Days=sleep.Days + ref["shift"]), method=ref["method"]
    )
    assert caught == [] and res.converged
    assert res.deviance == pytest.approx(ref["deviance"], rel=1e-9)
    assert res.deviance < ref["direct_deviance"] - 30.0
    assert np.sqrt(res.scale) == pytest.approx(ref["sigma"], rel=1e-6)
    np.testing.assert_allclose(res.fe_params.to_numpy(), ref["beta"], rtol=1e-6)
    sds = np.sqrt(np.diag(res.variance_components["Subject"].to_numpy()))
    np.testing.assert_allclose(sds, ref["sd"], rtol=1e-5)
    fit = res.model_fit
    assert fit.centring.shifts[0][1] == pytest.approx(ref["mean"], rel=1e-15)
    np.testing.assert_allclose(fit.search_theta, ref["theta_centred"], rtol=1e-5)
    if ref["shift"] < 1e4:  # beyond, theta's last entry is ~1e-5 of the others
        np.testing.assert_allclose(res.theta.to_numpy(), ref["theta"], rtol=1e-5)


# --- the paths beside the single fit --------------------------------------------------


@pytest.fixture(scope="module")
def year_fits(sleep):
    """REML fits of sleepstudy with Days as given and as ``Days + 2000``."""
    base, _ = _quiet_fit(SLEEP, sleep, method="REML")
    shifted, _ = _quiet_fit(SLEEP, sleep.assign(Days=sleep.Days + 2000), method="REML")
    return base, shifted


def test_gradient_and_singularity_are_the_fits_own(year_fits):
    """``grad_theta`` is the deviance's gradient at the reported ``theta`` (small: below
    1e-3), and the fit is not called singular: in the shifted columns the slope's
    relative sd is ~5e-4 (below lme4's 1e-4 rule at larger shifts), but the covariance
    is not near singular, as the centred columns show."""
    _, res = year_fits
    assert np.max(np.abs(res.grad_theta.to_numpy())) < 1e-3
    assert not res.is_singular and not interlace.isSingular(res)


def test_refits_search_centred_too(year_fits, sleep):
    """fit_many and the parametric bootstrap refit from the shifted fit: all converge
    (before: 0 of 4 fit_many responses and 1 of 40 bootstrap refits did), with the
    unshifted refits' deviances (1e-8 relative) and slopes."""
    base, res = year_fits
    rng = np.random.default_rng(7)
    Y = sleep.Reaction.to_numpy()[:, None] + rng.normal(0, 20, (len(sleep), 3))
    shifted = sleep.assign(Days=sleep.Days + 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unconverged refit must fail the asserts
        many = interlace.fit_many("r ~ Days + (Days | Subject)", shifted, Y)
        ref = interlace.fit_many("r ~ Days + (Days | Subject)", sleep, Y)
        boot = res.parametric_bootstrap(16, seed=5)
    assert many["converged"].all() and ref["converged"].all()
    np.testing.assert_allclose(many["deviance"], ref["deviance"], rtol=1e-8)
    np.testing.assert_allclose(many["Days"], ref["Days"], rtol=1e-6)
    assert np.all(boot.converged)


def test_satterthwaite_and_profile_do_not_depend_on_the_shift(year_fits):
    """Satterthwaite's df of the slope and the profile intervals of the slope, its sd
    and sigma at ``Days + 2000`` are lmerTest's and lme4's for sleepstudy itself (1e-3
    relative, as ``test_inference``'s: lme4 interpolates its profile); the intercept's
    profile interval is the shifted intercept's, near its Wald interval (within 2%).
    Before, the fixed effects' profile refits stalled (an intercept interval 25% too
    wide at ``Days + 1e4``) and the variance profile failed on NaN at ``+ 1e5``;
    Satterthwaite's df was 161 for 17."""
    _, res = year_fits
    refs = json.loads((DATA / "lme4_inference_references.json").read_text())
    satt = refs["satterthwaite"]["sleepstudy_REML"]["coefficients"]["df"]["Days"]
    assert res.coef_table(ddf="satterthwaite").loc["Days", "df"] == pytest.approx(satt, rel=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = res.confint(method="profile")
    prof = refs["confint_profile"]["sleepstudy_REML"]
    for name in ("sd_Days|Subject", "sigma", "Days"):
        j = prof["rownames"].index(name)
        np.testing.assert_allclose(ci.loc[name], [prof["lower"][j], prof["upper"][j]], rtol=1e-3)
    wald = res.fe_params["Intercept"] + np.array([-1.96, 1.96]) * res.fe_bse["Intercept"]
    np.testing.assert_allclose(ci.loc["Intercept"], wald, rtol=0.02)


def test_glmm_slope_far_from_zero():
    """Poisson and binomial GLMMs (nAGQ 0 and 1) with the slope covariate at ``z + 1e4``:
    the unshifted log-likelihood (1e-9 relative) and the slope covariance mapped by
    ``B = [1 -s; 0 1]`` (1e-6 relative); GLMM fit_many's lanes too."""
    rng = np.random.default_rng(12)
    n, g = 500, 30
    a = rng.integers(0, g, n)
    z = rng.normal(size=n)
    eta = 0.3 + 0.4 * z + rng.normal(size=g)[a] + 0.3 * rng.normal(size=g)[a] * z
    d = pd.DataFrame({"a": a, "z": z, "yc": rng.poisson(np.exp(eta)).astype(float)})
    d["yb"] = (d.yc > np.median(d.yc)).astype(float)
    s = 1e4
    B = np.array([[1.0, -s], [0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for family, resp in (("poisson", "yc"), ("binomial", "yb")):
            for nagq in (0, 1):
                f = f"{resp} ~ z + (1 + z | a)"
                ref = interlace.fit(f, d, family=family, nAGQ=nagq)
                res = interlace.fit(f, d.assign(z=d.z + s), family=family, nAGQ=nagq)
                assert res.converged and not res.is_singular
                assert res.llf == pytest.approx(ref.llf, rel=1e-9)
                expected = B @ ref.variance_components["a"].to_numpy() @ B.T
                np.testing.assert_allclose(
                    res.variance_components["a"].to_numpy(), expected, rtol=1e-6
                )
        Y = np.column_stack([d.yc, rng.poisson(d.yc + 1.0)])
        many = interlace.fit_many("r ~ z + (1 + z | a)", d.assign(z=d.z + s), Y, family="poisson")
        ref = interlace.fit_many("r ~ z + (1 + z | a)", d, Y, family="poisson")
    assert many["converged"].all()
    np.testing.assert_allclose(many["llf"], ref["llf"], rtol=1e-9)


def _crossed_slope_data() -> pd.DataFrame:
    """40 subjects x 15 items (85% of the pairs), x ~ N(0, 1): a Gaussian response ``yg``
    with a by-subject slope, and a binary one ``yb`` without (its slope sd's interval
    reaches 0)."""
    rng = np.random.default_rng(16)
    s, it = np.repeat(np.arange(40), 15), np.tile(np.arange(15), 40)
    keep = rng.random(s.size) > 0.15
    s, it = s[keep], it[keep]
    x = rng.normal(size=s.size)
    re = rng.normal(0, 0.7, 40)[s] + rng.normal(0, 0.5, 15)[it]
    slope = rng.normal(0, 0.3, 40)[s] * x
    yg = 0.2 + 0.6 * x + re + slope + rng.normal(0, 0.75, s.size)
    yb = rng.binomial(1, 1 / (1 + np.exp(-(0.2 + 0.6 * x + re))))
    subj = np.array([f"s{i:02d}" for i in s])
    return pd.DataFrame(
        {"x": x, "subj": subj, "item": [f"i{i:02d}" for i in it], "yg": yg, "yb": yb}
    )


@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_profiles_do_not_depend_on_a_slope_shift(family):
    """With a random slope on ``x + m`` (m = 1e6), the profile intervals of the
    parameters that centring leaves as they are (the other term's sd, the slope's sd,
    sigma) equal the unshifted fit's to 1e-6 relative. The intercept's sd is that of
    ``b0 - m b1`` (b: the centred term's effects), so its ends lie within the centred
    intercept's sd (< 2) of ``m`` times the slope sd's ends, and at 0 where those reach 0.
    Before, the refits searched the user's sd/cor of the shifted term (an intercept sd
    ~1e5, a correlation -1 + 1e-12) and stopped short: item sd [0.478, 0.813] for
    [0.373, 0.813] and sigma [0.708, 0.757] for [0.708, 0.812] (Gaussian), item sd
    [0, 0.371] for [0, 0.402] and the intercept sd's lower end 1.1e5 for 0 (binary); the
    linear model's fixed intercept, -m times x's ends within b0's spread, was 0.4% off
    (its refits dropped the intercept column, leaving ``x`` at 1e6 and an offset of
    ~5e5). ``parm`` keeps it to those rows (lme4's argument)."""
    d = _crossed_slope_data()
    y = "yg" if family == "gaussian" else "yb"
    f = f"{y} ~ x + (1 + x | subj) + (1 | item)"
    same = ["sd_x|subj", "sd_(Intercept)|item"] + (["sigma"] if family == "gaussian" else [])
    same += ["x"]
    kwargs = {"method": "ML"} if family == "gaussian" else {"family": family}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = interlace.fit(f, d, **kwargs).confint("profile", parm=same)
        shifted = interlace.fit(f, d.assign(x=d.x + 1e6), **kwargs)
        ci_m = shifted.confint("profile", parm=same + ["sd_(Intercept)|subj", "Intercept"])
    assert list(ci_m.index) == ["sd_(Intercept)|subj"] + same[:-1] + ["Intercept", "x"]
    np.testing.assert_allclose(ci_m.loc[same].to_numpy(), ci.to_numpy(), rtol=1e-6, atol=1e-9)
    slope = ci.loc["sd_x|subj"].to_numpy()
    ends = ci_m.loc["sd_(Intercept)|subj"].to_numpy()
    np.testing.assert_allclose(ends, np.where(slope > 0, 1e6 * slope, 0.0), atol=2.0)
    # the intercept at x = 0, b0 - m b1: its ends are -m times x's, within b0's spread
    x_ends = ci.loc["x"].to_numpy()
    np.testing.assert_allclose(ci_m.loc["Intercept"], -1e6 * x_ends[::-1], atol=2.0)
