"""Profile intervals do not depend on the units of a covariate.

``x`` in units of 1e6 is the same model as ``x`` in units of 1: the intervals of its
coefficient and of its slope's sd are those of the unit-scale model divided by 1e6, the
others equal. The root searches stopped at an absolute 1e-10 (3e-4 of the coefficient's
interval, 2.5e-4 of the slope's sd) and the fixed-effect refits searched ``theta``
unscaled (an interval end 1e-4 short); each now works in the quantity's own scale.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import interlace

FORMULA = "y ~ x + (x || g)"


def _data(scale: float) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 300
    g = rng.integers(0, 15, n)
    u = rng.normal(size=n)
    y = 2 + 0.5 * u + rng.normal(size=15)[g] + 0.4 * rng.normal(size=15)[g] * u
    return pd.DataFrame({"g": g.astype(str), "x": scale * u, "y": y + rng.normal(size=n)})


@pytest.fixture(scope="module")
def intervals():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            s: interlace.fit(FORMULA, _data(s), method="ML").confint(method="profile")
            for s in (1.0, 1e6)
        }


def test_intervals_in_other_units(intervals):
    unit, huge = intervals[1.0], intervals[1e6].copy()
    huge.loc[["x", "sd_x|g"]] *= 1e6  # back to the units of 1
    # 1e-6 relative: the profiles' own accuracy (refits to 1e-10 in the deviance)
    np.testing.assert_allclose(huge.loc[unit.index].to_numpy(), unit.to_numpy(), rtol=1e-6)
