"""Size classes (``interlace._core.buckets``): padded cross-products are an equivalent
model, so fits are today's to rounding, and models of one class share the compiled fit.

Exactness: the deviance and its gradient at arbitrary ``theta`` agree with the model's
own cross-products to 1e-12 relative (the padded entries' gradient is exactly 0), and
whole fits agree with fits at exact shapes (deviance 1e-10 relative). Compilation is
counted (never timed): after one fit, further models of other formulas and sizes in the
same class and method compile nothing.
"""

from __future__ import annotations

import warnings

import jax
import jax.monitoring
import numpy as np
import pandas as pd
import pytest

import interlace
from interlace._core import buckets
from interlace._core.deviance import profiled_deviance
from interlace._core.evaluation import evaluate
from interlace._model.design import build_design
from interlace._model.estimate import fit_cross_products

from .conftest import DATA

# private _core functions on JAX arrays made here: float64 for the whole module
pytestmark = pytest.mark.usefixtures("float64_throughout")


def _crossed(n: int, levels: tuple[int, ...], seed: int) -> pd.DataFrame:
    """Crossed factors g1, g2, ... with random intercepts and a slope on x in g2."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=n), "x2": rng.normal(size=n)})
    y = 1.0 + 0.5 * df["x"] + rng.normal(size=n)
    for i, q in enumerate(levels):
        codes = np.concatenate([np.arange(q), rng.integers(0, q, n - q)])
        rng.shuffle(codes)
        df[f"g{i + 1}"] = [f"l{c}" for c in codes]
        y = (
            y
            + rng.normal(scale=0.7, size=q)[codes]
            + (i == 1) * 0.3 * rng.normal(size=q)[codes] * df["x"]
        )
    df["y"] = y
    df["cond"] = rng.choice(["a", "b", "c"], size=n)
    return df


SMALL = _crossed(400, (30, 12, 5), seed=1)
MEDIUM = _crossed(3000, (90, 40), seed=2)
MODELS = {  # key -> (formula, data): term structures the padding must get right
    "page": (
        "score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id)",
        pd.read_csv(DATA / "results_page.csv"),
    ),
    "slope in term 1": (
        "Reaction ~ Days + (Days | Subject)",
        pd.read_csv(DATA / "sleepstudy.csv", dtype={"Subject": str}),
    ),
    "slope in the tail": ("y ~ x + (1 | g1) + (x | g2) + (1 | g3)", SMALL),
    "uncorrelated slope, categorical": ("y ~ x + cond + (1 | g1) + (1 + x || g2)", SMALL),
    # one factor's two terms form term 1 together (block-diagonal T1)
    "uncorrelated slope in term 1": ("y ~ x + (1 + x || g1) + (1 | g2) + (1 | g3)", SMALL),
    "no intercept": ("y ~ 0 + x + x2 + (1 | g1) + (1 | g2)", MEDIUM),
}


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("key", list(MODELS))
def test_padded_deviance_and_gradient_are_the_models(key, reml):
    formula, data = MODELS[key]
    cp = fit_cross_products(build_design(formula, data))
    padded, padding = buckets.pad_cross_products(cp, reml=reml)
    rng = np.random.default_rng(0)
    for _ in range(3):
        theta = rng.uniform(-1.5, 1.5, size=cp.theta_offsets[-1])
        own = jax.value_and_grad(lambda t: profiled_deviance(t, cp, reml=reml))(theta)
        pad = jax.value_and_grad(lambda t: profiled_deviance(t, padded, reml=reml))(
            buckets.pad_theta(theta, padding)
        )
        assert float(pad[0]) == pytest.approx(float(own[0]), rel=1e-12)
        np.testing.assert_allclose(
            buckets.unpad_theta(pad[1], padding),
            own[1],
            rtol=1e-9,
            atol=1e-9 * np.abs(own[1]).max(),
        )
        others = np.setdiff1d(np.arange(padding.size.theta), padding.theta_index)
        if cp.first_terms > 1:  # entries of T1 between its terms' blocks: a correlation
            # the model does not have; pad_theta leaves them 0 and fits never move them
            K1 = padded.k1
            others = others[others >= K1 * (K1 + 1) // 2]
        assert np.all(np.asarray(pad[1])[others] == 0.0)  # exactly: they do not matter


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize(
    "key", ["slope in the tail", "no intercept", "uncorrelated slope in term 1"]
)
def test_fits_equal_fits_at_exact_shapes(key, method, monkeypatch):
    formula, data = MODELS[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        padded = interlace.fit(formula, data, method=method)
        assert buckets.size_class(padded.model_fit.cross_products) is not None
        monkeypatch.setattr(buckets, "ENABLED", False)
        exact = interlace.fit(formula, data, method=method)
    assert padded.deviance == pytest.approx(exact.deviance, rel=1e-10)
    np.testing.assert_allclose(padded.fe_params, exact.fe_params, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(padded.fe_bse, exact.fe_bse, rtol=1e-7)
    np.testing.assert_allclose(padded.theta, exact.theta, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(padded.scale, exact.scale, rtol=1e-8)
    for a, b in zip(padded.term_blups, exact.term_blups):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    # The same path of iterates up to rounding; the last steps, taken where the deviance
    # changes by its rounding error only, may stop one or two iterations apart.
    assert abs(padded.n_iterations - exact.n_iterations) <= 2


_COMPILES: list[str] = []


def _count_compiles(event: str, duration: float, **kwargs) -> None:
    if event.endswith("backend_compile_duration"):
        _COMPILES.append(event)


jax.monitoring.register_event_duration_secs_listener(_count_compiles)


def test_models_of_one_class_share_the_compiled_fit():
    """After one fit, other formulas, term structures and sizes in the same class, by
    either method, compile nothing: no executable of any kind, and the fit's own
    evaluation gains no specialisation."""
    page = MODELS["page"][1]
    sleep = MODELS["slope in term 1"][1]
    fits = [
        ("score ~ hours_studied + (1 | student_id) + (1 | school_id)", page),
        ("Reaction ~ Days + (Days | Subject)", sleep),
        ("score ~ prior_gpa + (1 | school_id)", page),
        ("y ~ x + (1 | g1) + (x | g2) + (1 | g3)", _crossed(150, (12, 6, 4), seed=4)),
    ]
    methods = ["REML", "ML", "ML", "REML"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        classes = {buckets.size_class(fit_cross_products(build_design(f, d))) for f, d in fits}
        assert classes == {buckets.SIZE_CLASSES[0]}  # the premise: one class
        interlace.fit("score ~ hours_studied + prior_gpa + (1 | student_id)", page)
        cached = evaluate._cache_size()
        _COMPILES.clear()
        for (formula, data), method in zip(fits, methods):
            interlace.fit(formula, data, method=method)
    assert _COMPILES == []
    assert evaluate._cache_size() == cached


def test_large_or_heavy_models_keep_exact_shapes():
    big = _crossed(12_000, (5000, 20), seed=3)  # more levels than the largest class
    cp = fit_cross_products(build_design("y ~ x + (1 | g1) + (1 | g2)", big))
    assert cp.q1 > buckets.SIZE_CLASSES[-1].q1
    assert buckets.size_class(cp) is None and buckets.pad_cross_products(cp, reml=True) is None


def test_a_model_rebuilt_without_heavy_levels_refits():
    """A medium model whose largest factor has a level meeting many tail columns is
    built without heavy levels so that it pads to a class; its refits (which rebuild the
    JAX arrays from the fit's cross-products) use the same layout."""
    rng = np.random.default_rng(5)
    n = 3000
    g1 = np.where(np.arange(n) < 1000, 0, rng.integers(1, 300, n))  # level 0: 1,000 rows
    df = pd.DataFrame(
        {"x": rng.normal(size=n), "g1": g1.astype(str), "g2": rng.integers(0, 100, n).astype(str)}
    )  # the tail: 100 levels
    df["y"] = df["x"] + rng.normal(size=n)
    design = build_design("y ~ x + (1 | g1) + (1 | g2)", df)
    from interlace._model.estimate import design_cross_products

    assert design_cross_products(design).heavy_levels.shape[0] > 0  # the premise
    cp = fit_cross_products(design)
    assert cp.heavy_levels.shape[0] == 0 and buckets.size_class(cp) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = interlace.fit("y ~ x + (1 | g1) + (1 | g2)", df)
        boot = fit.parametric_bootstrap(4, seed=1)
    assert boot.converged.all()
    assert fit.model_fit.arrays.template.heavy_levels.shape[0] == 0
