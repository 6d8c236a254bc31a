"""Profile intervals of a linear model whose fit is singular (a variance component at
0). At the boundary the deviance's gradient in that component vanishes, so a refit
started there never leaves it: the other parameters' profiles used to come out too high
and their intervals too narrow (lme4's confint(method = "profile") gives the same too
narrow intercept interval on this model). Each end is checked by an independent
public-API refit with the parameter held there through the offset: -2 logLik there is
the minimum + z_{0.975}^2, to 1e-6."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import interlace

Z975 = 1.959963984540054


@pytest.fixture(scope="module")
def singular():
    rng = np.random.default_rng(7)
    na, nb, per = 6, 4, 8
    a = np.repeat(np.arange(na), nb * per)
    b = np.tile(np.repeat(np.arange(nb), per), na)
    x = rng.normal(size=a.size)
    y = 0.2 + 0.3 * x + rng.normal(0, 0.5, na * nb)[a * nb + b] + rng.normal(size=a.size)
    d = pd.DataFrame({"a": [f"a{k}" for k in a], "b": [f"b{k}" for k in b], "x": x, "y": y})
    with pytest.warns(UserWarning, match="singular"):
        res = interlace.fit("y ~ x + (1 | a/b)", d, method="ML")
    assert res.is_singular and res.theta["a.(Intercept)"] < 1e-6
    return d, res, res.confint("profile")


def test_fixed_effect_ends_by_offset_refits(singular):
    d, res, ci = singular
    d_min = -2 * res.llf
    for v in ci.loc["Intercept"]:
        refit = interlace.fit(
            f"y ~ 0 + x + offset({float(v)!r} + 0 * x) + (1 | a/b)", d, method="ML"
        )
        assert abs(-2 * refit.llf - d_min - Z975**2) < 1e-6
    for v in ci.loc["x"]:
        with pytest.warns(UserWarning, match="singular"):  # as the fit: a's sd stays 0
            refit = interlace.fit(f"y ~ 1 + offset({float(v)!r} * x) + (1 | a/b)", d, method="ML")
        assert abs(-2 * refit.llf - d_min - Z975**2) < 1e-6


def test_zero_sd_interval_starts_at_zero(singular):
    _, _, ci = singular
    lo, hi = ci.loc["sd_(Intercept)|a"]
    assert lo == 0.0 and hi > 0.1
