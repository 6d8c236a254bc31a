"""Fixed-effect formulas (formulaic, its stateful transforms included) and ways of naming
random intercepts, each checked against the dense reference optimum
(tests/dense_reference.py) with a design matrix built independently in numpy; predict
on new rows with the transform state of the fit. Tolerances: deviance 1e-8 relative (ours
may be lower), fixed effects 1e-5 relative (plus 1e-8 absolute for coefficients near 0)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from .conftest import fit_quiet
from .dense_reference import dense_optimum


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(11)
    n = 150
    df = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "z": rng.uniform(1, 3, size=n),
            "cond": rng.choice(["a", "b", "c"], size=n),
            "g": rng.choice([f"g{i}" for i in range(12)], size=n),
            "h": rng.choice([f"h{i}" for i in range(5)], size=n),
        }
    )
    ge = dict(zip(sorted(df.g.unique()), rng.normal(size=12)))
    he = dict(zip(sorted(df.h.unique()), rng.normal(scale=0.7, size=5)))
    df["y"] = (
        1
        + 0.5 * df.x
        - 0.3 * np.log(df.z)
        + (df.cond == "b") * 0.8
        + df.g.map(ge)
        + df.h.map(he)
        + rng.normal(size=n)
    )
    return df


def _codes(s: pd.Series):
    codes, levels = pd.factorize(s, sort=True)
    return codes, len(levels)


def _check(res, X, y, factors, reml=True):
    codes, nlev = zip(*(_codes(f) for f in factors))
    ref = dense_optimum(list(codes), list(nlev), X, y, reml)
    assert res.converged
    assert res.deviance <= ref["deviance"] + 1e-8 * abs(ref["deviance"])
    assert res.deviance == pytest.approx(ref["deviance"], rel=1e-8)
    np.testing.assert_allclose(res.fe_params.to_numpy(), ref["beta"], rtol=1e-5, atol=1e-8)


def test_continuous_categorical_and_transform(frame):
    res, _ = fit_quiet("y ~ x + cond + np.log(z)", frame, groups=["g", "h"])
    assert list(res.fe_params.index) == ["Intercept", "x", "cond[T.b]", "cond[T.c]", "np.log(z)"]
    X = np.column_stack(
        [np.ones(len(frame)), frame.x, frame.cond == "b", frame.cond == "c", np.log(frame.z)]
    ).astype(float)
    _check(res, X, frame.y.to_numpy(), [frame.g, frame.h])


def test_interaction_and_explicit_categorical(frame):
    res, _ = fit_quiet("y ~ x * C(cond)", frame, groups=["g", "h"], method="ML")
    b, c = (frame.cond == "b").astype(float), (frame.cond == "c").astype(float)
    X = np.column_stack([np.ones(len(frame)), frame.x, b, c, frame.x * b, frame.x * c])
    assert len(res.fe_params) == 6
    _check(res, X, frame.y.to_numpy(), [frame.g, frame.h], reml=False)


def test_intercept_only(frame):
    res, _ = fit_quiet("y ~ 1", frame, groups="g")  # groups as a plain string
    assert list(res.fe_params.index) == ["Intercept"]
    _check(res, np.ones((len(frame), 1)), frame.y.to_numpy(), [frame.g])


def test_random_terms_in_formula_equal_groups(frame):
    a, _ = fit_quiet("y ~ x + (1 | g) + (1 | h)", frame)
    b, _ = fit_quiet("y ~ x + (1 | g)", frame, groups=["h"])  # both ways combined
    c, _ = fit_quiet("y ~ x", frame, groups=["g", "h"])
    for other in (b, c):
        assert other.deviance == pytest.approx(a.deviance, rel=1e-12)
        np.testing.assert_allclose(other.fe_params, a.fe_params, rtol=1e-9)
    assert list(a.variance_components) == ["g", "h"] == list(c.variance_components)


def test_interaction_and_nested_factors(frame):
    nested, _ = fit_quiet("y ~ x + (1 | h/g)", frame)  # lme4: (1 | h) + (1 | g:h)
    assert list(nested.variance_components) == ["h", "g:h"]
    hg = frame.g + ":" + frame.h
    assert nested.ngroups["g:h"] == hg.nunique()
    X = np.column_stack([np.ones(len(frame)), frame.x])
    _check(nested, X, frame.y.to_numpy(), [frame.h, hg])
    inter, _ = fit_quiet("y ~ x + (1 | g:h) + (1 | h)", frame)
    assert inter.deviance == pytest.approx(nested.deviance, rel=1e-12)
    assert set(inter.random_effects["g:h"].index) == set(hg)


def test_transformed_response(frame):
    shifted = frame.assign(y=frame.y + 10)
    res, _ = fit_quiet("np.log(y) ~ x", shifted, groups=["g", "h"])
    X = np.column_stack([np.ones(len(frame)), frame.x])
    _check(res, X, np.log(shifted.y.to_numpy()), [frame.g, frame.h])


# --------------------------------------------------------------------------------------
# Stateful transforms (issue 16): formulaic's scale / center / poly / bs / C(..., contr)
# in the fixed part, each checked against the dense reference with the same columns
# built independently in numpy / scipy (R's definitions: scale with the sd of ddof 1,
# poly orthonormal on the centred powers, bs(df=4) cubic with one interior knot at the
# median).
# --------------------------------------------------------------------------------------
def _ones(frame):
    return np.ones(len(frame))


def _scaled(x):
    return (x - x.mean()) / x.std(ddof=1)


def _poly2(x):
    xc = x - x.mean()
    q, _ = np.linalg.qr(np.column_stack([np.ones(len(x)), xc, xc**2]))
    return q[:, 1:] * np.sign(q[0, 1:])  # orthonormal; signs are immaterial to the fit


def _bs4(x):
    from scipy.interpolate import BSpline

    knots = np.r_[[x.min()] * 4, np.median(x), [x.max()] * 4]
    return BSpline.design_matrix(x, knots, 3).toarray()[:, 1:]


def _sum_contrasts(cond):
    a, b, c = ((cond == lev).to_numpy(dtype=float) for lev in "abc")
    return np.column_stack([a - c, b - c])


STATEFUL = [
    pytest.param(
        "y ~ scale(x) + cond",
        ["Intercept", "scale(x)", "cond[T.b]", "cond[T.c]"],
        lambda f: np.column_stack(
            [_ones(f), _scaled(f.x.to_numpy()), f.cond == "b", f.cond == "c"]
        ),
        id="scale",
    ),
    pytest.param(
        "y ~ center(x) + np.log(z)",
        ["Intercept", "center(x)", "np.log(z)"],
        lambda f: np.column_stack([_ones(f), f.x - f.x.mean(), np.log(f.z)]),
        id="center",
    ),
    pytest.param(
        "y ~ poly(x, 2)",
        ["Intercept", "poly(x, 2)[1]", "poly(x, 2)[2]"],
        lambda f: np.column_stack([_ones(f), _poly2(f.x.to_numpy())]),
        id="poly",
    ),
    pytest.param(
        "y ~ bs(x, df=4)",
        ["Intercept"] + [f"bs(x, df=4)[{i}]" for i in range(1, 5)],
        lambda f: np.column_stack([_ones(f), _bs4(f.x.to_numpy())]),
        id="bs",
    ),
    pytest.param(
        "y ~ C(cond, contr.sum)",
        ["Intercept", "C(cond, contr.sum)[S.a]", "C(cond, contr.sum)[S.b]"],
        lambda f: np.column_stack([_ones(f), _sum_contrasts(f.cond)]),
        id="contr.sum",
    ),
    pytest.param(
        "y ~ C(cond, contr.treatment('b'))",
        ["Intercept", "C(cond, contr.treatment('b'))[T.a]", "C(cond, contr.treatment('b'))[T.c]"],
        lambda f: np.column_stack([_ones(f), f.cond == "a", f.cond == "c"]),
        id="contr.treatment-base-b",
    ),
]


@pytest.mark.parametrize("formula, names, build", STATEFUL)
def test_stateful_transforms(frame, formula, names, build):
    res, messages = fit_quiet(formula + " + (1 | g)", frame, groups=["h"])
    assert not messages
    assert list(res.fe_params.index) == names
    X = build(frame).astype(float)
    # poly's columns may differ from these in sign: that changes neither the deviance nor
    # |beta|. Deviance 1e-8 relative, |beta| 1e-5 relative (1e-8 absolute near 0).
    codes, nlev = zip(*(_codes(f) for f in [frame.g, frame.h]))
    ref = dense_optimum(list(codes), list(nlev), X, frame.y.to_numpy(), True)
    assert res.converged
    assert res.deviance == pytest.approx(ref["deviance"], rel=1e-8)
    np.testing.assert_allclose(
        np.abs(res.fe_params.to_numpy()), np.abs(ref["beta"]), rtol=1e-5, atol=1e-8
    )


@pytest.fixture(scope="module")
def new_rows(frame):
    """Rows to predict for: 5 new x values (two outside the fitted range), known levels."""
    return pd.DataFrame(
        {
            "x": [-3.5, -0.4, 0.0, 0.7, 2.9],
            "z": [1.5, 2.0, 2.5, 1.1, 2.9],
            "cond": ["a", "b", "c", "a", "b"],
            "g": ["g0", "g3", "g7", "g11", "g5"],
            "h": ["h0", "h1", "h2", "h3", "h4"],
        }
    )


@pytest.mark.parametrize(
    "formula", ["y ~ scale(x) + cond", "y ~ poly(x, 2)", "y ~ center(x) + np.log(z)"]
)
def test_predict_uses_the_transform_state_of_the_fit(frame, new_rows, formula):
    """predict(newdata) codes new rows with the state learnt on the fitted data (R's
    predict for scale / poly): predicting a subset of the fitted rows gives their fitted
    values (re-learning the state on 6 rows would not), and new x values are scaled by the
    fitted mean and sd. Tolerance 1e-10 relative."""
    res, _ = fit_quiet(formula + " + (1 | g) + (1 | h)", frame)
    subset = frame.iloc[[3, 50, 51, 99, 120, 149]]
    np.testing.assert_allclose(
        res.predict(subset), res.fittedvalues.iloc[[3, 50, 51, 99, 120, 149]], rtol=1e-10
    )
    if formula.startswith("y ~ scale"):
        b = res.fe_params
        xs = (new_rows.x - frame.x.mean()) / frame.x.std(ddof=1)
        expected = (
            b["Intercept"]
            + b["scale(x)"] * xs
            + b["cond[T.b]"] * (new_rows.cond == "b")
            + b["cond[T.c]"] * (new_rows.cond == "c")
        )
        np.testing.assert_allclose(res.predict(new_rows, include_re=False), expected, rtol=1e-10)
        re_g = res.random_effects["g"].loc[new_rows.g].to_numpy()
        re_h = res.random_effects["h"].loc[new_rows.h].to_numpy()
        np.testing.assert_allclose(res.predict(new_rows), expected + re_g + re_h, rtol=1e-10)
    # one new row at a time gives the same predictions as all together
    one = pd.concat([res.predict(new_rows.iloc[[i]]) for i in range(len(new_rows))])
    np.testing.assert_allclose(one, res.predict(new_rows), rtol=1e-12)


def test_transform_in_a_random_term_only(frame, new_rows):
    """``(scale(x) | g)`` with x nowhere else in the formula equals the fit with a column
    scaled by hand (deviance and theta 1e-8 relative), and predict scales new rows with
    the fitted mean and sd (1e-8 relative)."""
    m, s = frame.x.mean(), frame.x.std(ddof=1)
    res, _ = fit_quiet("y ~ 1 + (scale(x) | g) + (1 | h)", frame)
    manual, _ = fit_quiet("y ~ 1 + (xs | g) + (1 | h)", frame.assign(xs=(frame.x - m) / s))
    assert res.deviance == pytest.approx(manual.deviance, rel=1e-8)
    np.testing.assert_allclose(res.theta, manual.theta, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.fittedvalues, manual.fittedvalues, rtol=1e-8)
    np.testing.assert_allclose(
        res.predict(new_rows), manual.predict(new_rows.assign(xs=(new_rows.x - m) / s)), rtol=1e-8
    )
    np.testing.assert_allclose(res.predict(frame.iloc[:9]), res.fittedvalues.iloc[:9], rtol=1e-10)


def test_quoted_grouping_columns(frame, new_rows):
    """``(1 | `subj id`)`` and ``(1 | Q("subj id"))`` name the column ``subj id``: the
    same fit as ``(1 | g)`` with the same data under that name (deviance 1e-12)."""
    ref, _ = fit_quiet("y ~ x + (1 | g) + (1 | h)", frame)
    spaced = frame.rename(columns={"g": "subj id"})
    for formula in [
        "y ~ x + (1 | `subj id`) + (1 | h)",
        'y ~ x + (1 | Q("subj id")) + (1 | h)',
        "y ~ x + (1 | Q('subj id')) + (1 | h)",
    ]:
        res, _ = fit_quiet(formula, spaced)
        assert res.deviance == pytest.approx(ref.deviance, rel=1e-12)
        assert list(res.random_effects) == ["subj id", "h"]
        pd.testing.assert_series_equal(
            res.random_effects["subj id"], ref.random_effects["g"], check_names=False, rtol=1e-9
        )
        np.testing.assert_allclose(
            res.predict(new_rows.rename(columns={"g": "subj id"})),
            ref.predict(new_rows),
            rtol=1e-10,
        )


def test_intercept_removed_after_the_random_terms(frame):
    """``y ~ x + (1 | g) + (1 | h) - 1`` is lme4's model without a fixed intercept."""
    res, _ = fit_quiet("y ~ x + (1 | g) + (1 | h) - 1", frame)
    assert list(res.fe_params.index) == ["x"]
    _check(res, frame[["x"]].to_numpy(), frame.y.to_numpy(), [frame.g, frame.h])


def test_predict_outside_the_spline_range(frame, new_rows):
    """formulaic's bs() refuses to extrapolate by default (R's warns and extrapolates):
    predict says so as a DataError naming the option; with ``extrapolation="extend"`` the
    rows inside the fitted range predict as their fitted neighbours would (state of the
    fit, 1e-10 relative)."""
    from interlace import DataError

    res, _ = fit_quiet("y ~ bs(x, df=4) + (1 | g) + (1 | h)", frame)
    with pytest.raises(DataError, match=r"fixed effects for newdata.*extrapolation"):
        res.predict(new_rows)  # x = -3.5 and 2.9 lie outside the fitted range
    inside = new_rows.iloc[1:4]
    assert inside.x.between(frame.x.min(), frame.x.max()).all()
    ext, _ = fit_quiet("y ~ bs(x, df=4, extrapolation='extend') + (1 | g) + (1 | h)", frame)
    assert ext.deviance == pytest.approx(res.deviance, rel=1e-10)
    np.testing.assert_allclose(ext.predict(inside), res.predict(inside), rtol=1e-10)
    assert np.all(np.isfinite(ext.predict(new_rows)))
