"""``result.coef()``, lme4's ``coef(fit)``: per grouping factor, each level's fixed effects
plus its conditional modes, for linear models and GLMMs.

References: tests/data/coef_references.json, made by tests/data/make_coef_references.R
(lmer with the helpers' tight nloptwrap control; glmer with bobyqa, rhoend 1e-10,
tolPwrss 1e-12) from the CSVs next to it. Tolerance: each column to 1e-5 of its scale,
the fixed effect's standard error plus the modes' standard deviation across levels
(the fits agree to about 1e-7 of it: sleepstudy's intercepts, near 250, to 1.4e-6).
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
REF = json.loads((DATA / "coef_references.json").read_text())["fits"]
# lme4's column names -> ours (formulaic's fixed-effect names; "cond[a]", lme4's "conda",
# is the random-effect column of (0 + cond | subject) with no fixed effect)
NAMES = {"(Intercept)": "Intercept", "condb": "cond[T.b]", "conda": "cond[a]"}


def _fit(case: str):
    f = REF[case]
    data = pd.read_csv(DATA / f["data_file"])
    family = "gaussian" if f["family"] == "gaussian" else "binomial"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # crossed_factor_slopes is singular, as in lme4
        return interlace.fit(f["formula"], data, family=family)


@pytest.mark.parametrize("case", list(REF))
def test_coef_is_lme4s(case):
    f, res = REF[case], _fit(case)
    coef = res.coef()
    assert list(coef) == list(f["coef"])
    for factor, ref in f["coef"].items():
        ours = coef[factor]
        assert list(ours.columns) == [NAMES.get(c, c) for c in ref["columns"]]
        ours = ours.set_axis(ours.index.astype(str)).reindex(ref["levels"])
        assert not ours.isna().any().any()  # the same levels
        for column in ref["columns"]:
            scale = f["fixef_se"].get(column, 0.0) + ref["ranef_sd"].get(column, 0.0)
            np.testing.assert_allclose(
                ours[NAMES.get(column, column)], ref["values"][column], rtol=0, atol=1e-5 * scale
            )


# per case and factor: coef()'s column -> the random-effect column added to it
MODE_COLUMNS = {
    "crossed_factor_slopes": {
        "subject": {"cond[a]": "cond[a]", "cond[T.b]": "cond[b]"},  # cond[b] is X's cond[T.b]
        "item": {"Intercept": "(Intercept)"},
    },
    "binary_slope": {
        "subject": {"Intercept": "(Intercept)", "x": "x"},
        "item": {"Intercept": "(Intercept)"},
    },
}


@pytest.mark.parametrize("case", list(MODE_COLUMNS))
def test_coef_is_fixed_effects_plus_modes(case):
    """Exactly: a column the factor has modes for is ``beta + b``, any other is ``beta``
    (0 for a column with no fixed effect)."""
    res = _fit(case)
    coef = res.coef()
    assert list(coef) == list(MODE_COLUMNS[case])
    for factor, frame in coef.items():
        modes = res.random_effects[factor]
        modes = modes.to_frame("(Intercept)") if isinstance(modes, pd.Series) else modes
        added = MODE_COLUMNS[case][factor]
        assert sorted(added.values()) == sorted(modes.columns)
        for column in frame.columns:
            beta = res.fe_params.get(column, 0.0)
            expected = beta + modes[added[column]] if column in added else np.full(len(frame), beta)
            np.testing.assert_array_equal(frame[column].to_numpy(), np.asarray(expected))


def test_coef_without_a_fixed_intercept():
    """No fixed intercept: the random intercept comes first with a fixed part of 0, so its
    column is the modes themselves (lme4 adds "(Intercept)" the same way)."""
    data = pd.read_csv(DATA / "sleepstudy.csv")
    res = interlace.fit("Reaction ~ 0 + Days + (1 | Subject)", data)
    coef = res.coef()["Subject"]
    assert list(coef.columns) == ["(Intercept)", "Days"]
    np.testing.assert_array_equal(coef["(Intercept)"], res.random_effects["Subject"])
    np.testing.assert_array_equal(coef["Days"], np.full(len(coef), res.fe_params["Days"]))
