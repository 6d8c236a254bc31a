"""anova between nested GLMMs against lme4's (tests/data/glmm_anova_reference.json, made by
tests/data/make_glmm_anova_reference.R), and what anova refuses to compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import interlace

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "glmm_anova_reference.json").read_text())


@pytest.fixture(scope="module")
def cbpp():
    d = pd.read_csv(DATA / "cbpp.csv")
    d["period"] = pd.Categorical(d["period"].astype(str), categories=["1", "2", "3", "4"])
    return d


@pytest.fixture(scope="module")
def fits(cbpp):
    small = interlace.fit(REF["small"], cbpp, family="binomial")
    large = interlace.fit(REF["large"], cbpp, family="binomial")
    return small, large


def test_lrt_matches_lme4(fits):
    """npar exact; logLik, AIC, BIC, Chisq to 1e-7 relative (both optima to ~1e-8);
    the p-value to 1e-6 relative."""
    table = interlace.anova(*fits).table
    np.testing.assert_array_equal(table["npar"], REF["npar"])
    for col in ("logLik", "AIC", "BIC", "deviance"):
        np.testing.assert_allclose(table[col], REF[col], rtol=1e-7)
    assert table["Chisq"].iloc[1] == pytest.approx(REF["Chisq"], rel=1e-6)
    assert table["Df"].iloc[1] == REF["Df"]
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(REF["p"], rel=1e-5)
    out = interlace.anova(fits[1], fits[0])  # ordered by npar whatever the call order
    assert list(out.table["npar"]) == REF["npar"] and not out.refitted_ml


def test_refuses_mixed_kinds_and_scales(fits, cbpp):
    small, large = fits
    with pytest.warns(UserWarning, match="singular"):  # herd variance 0 for raw counts
        lmm = interlace.fit("incidence ~ period + (1 | herd)", cbpp)
    with pytest.raises(interlace.ModelSpecError, match="linear mixed models with linear"):
        interlace.anova(small, lmm)
    probit = interlace.fit(REF["small"], cbpp, family=interlace.binomial("probit"))
    with pytest.raises(interlace.ModelSpecError, match="one family and link"):
        interlace.anova(probit, large)
    agq = interlace.fit(REF["small"], cbpp, family="binomial", nAGQ=5)
    with pytest.raises(interlace.ModelSpecError, match="nAGQ > 1"):
        interlace.anova(agq, large)
    with pytest.raises(interlace.ModelSpecError, match="linear mixed models only"):
        interlace.anova(small, large, n_bootstrap=10)


def test_models_on_other_rows_are_named_as_such(fits, cbpp):
    """A GLMM fitted to fewer rows is refused for its rows, not for its trials (the prior
    weights of different row counts differ too, which said nothing useful)."""
    fewer = interlace.fit(REF["small"], cbpp.iloc[:-4], family="binomial")
    with pytest.raises(interlace.ModelSpecError, match="same rows and response"):
        interlace.anova(fewer, fits[1])
