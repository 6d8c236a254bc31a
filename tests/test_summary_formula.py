"""The ``Formula:`` line of ``summary()``: the formula as written, plus exactly the terms
given through ``groups=`` as ``(1 | g)`` (lme4 prints the formula as given; interlace's
``groups=`` shorthand is spelt out so the line describes the whole model)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import interlace
from tests.conftest import fit_quiet

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def pastes():
    df = pd.read_csv(DATA / "pastes.csv")
    df["x"] = (df.groupby("batch").cumcount() % 3).astype(float)  # a slope covariate
    df["subj id"] = df["batch"]
    return df


def _formula_line(res) -> str:
    lines = [ln for ln in res.summary().splitlines() if ln.startswith("Formula: ")]
    assert len(lines) == 1  # exact: one Formula line
    return lines[0][len("Formula: ") :]


@pytest.mark.parametrize(
    "formula, groups, expected",
    [
        # nested and interaction terms written in the formula: printed as written
        ("strength ~ 1 + (1 | batch/cask)", None, "strength ~ 1 + (1 | batch/cask)"),
        ("strength ~ 1 + (1 | batch:cask)", None, "strength ~ 1 + (1 | batch:cask)"),
        (
            "strength ~ 1 + (1 | batch) + (1 | cask:batch)",
            None,
            "strength ~ 1 + (1 | batch) + (1 | cask:batch)",
        ),
        # slopes, with unusual spacing and a quoted column name
        ("strength ~ x + (x | batch)", None, "strength ~ x + (x | batch)"),
        ("strength ~ x + ( 1 | batch )", None, "strength ~ x + ( 1 | batch )"),
        ("strength ~ x + (x || batch)", None, "strength ~ x + (x || batch)"),
        ("strength ~ 1 + (1 | `subj id`)", None, "strength ~ 1 + (1 | `subj id`)"),
        # groups= only, nested written as its two factors
        ("strength ~ 1", ["batch", "cask:batch"], "strength ~ 1 + (1 | batch) + (1 | cask:batch)"),
        # groups= with formula terms: exactly the groups= terms are appended
        (
            "strength ~ 1 + (1 | batch)",
            ["cask:batch"],
            "strength ~ 1 + (1 | batch) + (1 | cask:batch)",
        ),
        (
            "strength ~ x + (0 + x | batch)",
            ["batch"],
            "strength ~ x + (0 + x | batch) + (1 | batch)",
        ),
        (
            "strength ~ 1 + (1 | batch/cask)",
            ["sample"],
            "strength ~ 1 + (1 | batch/cask) + (1 | sample)",
        ),
        (
            "strength ~ 1 + (1 | cask:batch)",
            ["subj id"],
            "strength ~ 1 + (1 | cask:batch) + (1 | `subj id`)",
        ),
    ],
)
def test_summary_formula_line(pastes, formula, groups, expected):
    res, _ = fit_quiet(formula, pastes, groups=groups)
    assert _formula_line(res) == expected  # exact string equality


def test_design_records_groups_terms(pastes):
    res, _ = fit_quiet("strength ~ 1 + (1 | batch/cask)", pastes, groups=["sample"])
    from_groups = [(t.factor, t.from_groups) for t in res.design.terms]
    assert from_groups == [("batch", False), ("cask:batch", False), ("sample", True)]  # exact


def test_summary_of_result_built_by_fit(pastes):
    # the public entry point, not the fixture helper: same line
    res = interlace.fit("strength ~ 1 + (1 | batch/cask)", pastes)
    assert _formula_line(res) == "strength ~ 1 + (1 | batch/cask)"  # exact
