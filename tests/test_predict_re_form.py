"""Predictions with the random effects of some grouping factors only (lme4's ``re.form =
~ (1 | subject)``): ``include_re="subject"`` or a list of names, for linear and
generalized models, on the fitted rows and on new data that lacks the other factors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import interlace


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 600
    s, it = rng.integers(0, 30, n), rng.integers(0, 20, n)
    d = pd.DataFrame(
        {"x": rng.normal(size=n), "subject": [f"s{k}" for k in s], "item": [f"i{k}" for k in it]}
    )
    u, v = rng.normal(0, 1, 30)[s], rng.normal(0, 0.5, 20)[it]
    d["y"] = (rng.random(n) < 1 / (1 + np.exp(-(0.3 * d["x"] + u + v)))).astype(int)
    d["z"] = 1 + d["x"] + u + v + rng.normal(size=n)
    return d


@pytest.fixture(scope="module", params=["gaussian", "binomial"])
def fitted(request):
    d = _frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if request.param == "gaussian":
            res = interlace.fit("z ~ x + (1 | subject) + (1 | item)", d)
            return res, d, {}
        res = interlace.fit("y ~ x + (1 | subject) + (1 | item)", d, family="binomial")
        return res, d, {"type": "link"}


def test_one_factor_adds_exactly_its_own_effects(fitted):
    """Subject-only predictions are the population ones plus each row's subject effect
    (from ``random_effects``, not from predict), and all factors named equal the default;
    1e-12 absolute."""
    res, d, kw = fitted
    pop = res.predict(include_re=False, **kw)
    subj = res.predict(include_re="subject", **kw)
    b = res.random_effects
    np.testing.assert_allclose(subj - pop, b["subject"].loc[d["subject"]].to_numpy(), atol=1e-12)
    full = res.predict(**kw)
    np.testing.assert_allclose(full - subj, b["item"].loc[d["item"]].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(res.predict(include_re=["item", "subject"], **kw), full, atol=1e-12)
    np.testing.assert_allclose(res.predict(include_re=[], **kw), pop, atol=1e-12)


def test_new_data_needs_only_the_named_factors(fitted):
    res, d, kw = fitted
    new = d[["x", "subject"]].head(7)
    np.testing.assert_allclose(
        res.predict(new, include_re="subject", **kw),
        res.predict(include_re="subject", **kw).head(7),
        atol=1e-12,
    )
    with pytest.raises(interlace.MissingColumnError, match="item"):
        res.predict(new, **kw)


def test_unknown_factor_is_refused(fitted):
    res, _, kw = fitted
    with pytest.raises(interlace.ModelSpecError, match=r"grouping factor name\(s\).*'subject'"):
        res.predict(include_re="school", **kw)
    with pytest.raises(interlace.ModelSpecError, match="got None"):
        res.predict(include_re=None, **kw)
