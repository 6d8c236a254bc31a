"""Conditional standard errors of a GLMM's random effects (lme4's ``ranef(fit, condVar =
TRUE)``) through ``interlace.hlm_resid(result, level=factor)``, against lme4.

References: tests/data/glmm_condvar_references.json, made by
tests/data/make_glmm_condvar_references.R on the data of the glmer reference suite
(tests/test_glmm_references.py's fits and factor levels). lme4 takes the working
weights of its last PIRLS iterate, ours are at the converged modes, and the two
optima differ in the 6th-7th digit: 1e-5 relative on the standard errors (largest seen
1e-6, VerbAgg), 5e-5 absolute on the modes (largest 2e-5, VerbAgg).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import interlace

from .test_glmm_references import fitted

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "glmm_condvar_references.json").read_text())["fits"]


@pytest.mark.parametrize("case", list(REF))
def test_condvar_matches_lme4(case):
    res = fitted(case)
    for factor, term in REF[case]["terms"].items():
        table = interlace.hlm_resid(res, level=factor)
        assert [str(v) for v in table.index] == term["levels"]
        assert table["n_obs"].sum() == res.nobs
        for j, col in enumerate(term["columns"]):
            ours_col = "Intercept" if col == "(Intercept)" else col
            if ours_col not in table.columns:  # our intercept column's name
                ours_col = [c for c in table.columns if not c.endswith("_se")][j]
            k = len(term["columns"])
            var = np.array([np.asarray(b).reshape(k, k)[j, j] for b in term["postvar"]])
            np.testing.assert_allclose(
                table[f"{ours_col}_se"].to_numpy(),
                np.sqrt(var),
                rtol=1e-5,
                err_msg=f"{case} {factor}",
            )
            modes = np.array([m[j] for m in term["modes"]])
            np.testing.assert_allclose(table[ours_col].to_numpy(), modes, atol=5e-5)


def test_row_level_residuals_stay_linear_only():
    res = fitted("cbpp_laplace")
    with pytest.raises(interlace.ModelSpecError, match="linear mixed models"):
        interlace.hlm_resid(res)


def test_caterpillar_plot_of_a_glmm():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from interlace import plots

    ax = plots.caterpillar(fitted("cbpp_laplace"), "herd")
    assert len(ax.get_yticklabels()) == 15
