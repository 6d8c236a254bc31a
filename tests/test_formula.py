"""The lme4-style formula parser: ``parse_formula`` and ``parse_random_term``.

Two tables: formulas the parser accepts (with the response, the fixed formula handed to
formulaic and the grouping-factor names it must return), and malformed formulas with
the ``FormulaError`` message they must raise. No data, no JAX: this file is instant.
"""

from __future__ import annotations

import formulaic
import pytest

from interlace import FormulaError
from interlace._model.formula import (
    ParsedFormula,
    RandomTerm,
    formula_variables,
    parse_formula,
    parse_random_term,
)

# --------------------------------------------------------------------------------------
# Accepted formulas: (formula, response, fixed formula, grouping-factor names).
# --------------------------------------------------------------------------------------
VALID = [
    pytest.param("y ~ x + (1 | g)", "y", "y ~ x", ("g",), id="fixed-then-random"),
    pytest.param("y ~ (1|g) + x", "y", "y ~ x", ("g",), id="random-first-no-spaces"),
    pytest.param("y~(1|g)+x", "y", "y ~ x", ("g",), id="no-spaces-at-all"),
    pytest.param("  y   ~   x   +   (  1  |  g  )  ", "y", "y ~ x", ("g",), id="extra-spaces"),
    pytest.param("y ~ x + (1|g) + z", "y", "y ~ x + z", ("g",), id="random-in-the-middle"),
    pytest.param("y ~ 1 + (1 | a) + (1 | b)", "y", "y ~ 1", ("a", "b"), id="two-crossed"),
    pytest.param("y ~ (1 | b) + (1 | a)", "y", "y ~ 1", ("b", "a"), id="order-kept"),
    pytest.param("y ~ (1 | a:b)", "y", "y ~ 1", ("a:b",), id="interaction"),
    pytest.param("y ~ (1 | a/b)", "y", "y ~ 1", ("a", "b:a"), id="nested"),
    pytest.param("y ~ (1 | a/b/c)", "y", "y ~ 1", ("a", "b:a", "c:b:a"), id="nested-3"),
    pytest.param("y ~ (1 | a:b/c)", "y", "y ~ 1", ("a:b", "c:a:b"), id="nested-in-interaction"),
    pytest.param("y ~ (1 | a / b)", "y", "y ~ 1", ("a", "b:a"), id="nested-spaces"),
    pytest.param("y ~ x*z + (1|g)", "y", "y ~ x*z", ("g",), id="fixed-interaction"),
    pytest.param("y ~ (1|g)", "y", "y ~ 1", ("g",), id="random-only"),
    pytest.param("y ~ 0 + x + (1|g)", "y", "y ~ 0 + x", ("g",), id="no-intercept"),
    pytest.param("y ~ x - 1 + (1|g)", "y", "y ~ x - 1", ("g",), id="minus-one"),
    pytest.param(
        "y ~ log(x) + C(f) + (1|g)",
        "y",
        "y ~ log(x) + C(f)",
        ("g",),
        id="parentheses-without-bar-stay-fixed",
    ),
    pytest.param("y ~ (x + z) + (1|g)", "y", "y ~ (x + z)", ("g",), id="grouped-fixed-terms"),
    pytest.param("y ~ (1 || g)", "y", "y ~ 1", ("g",), id="double-bar-intercept"),
    pytest.param("y ~ (0 + 1 | g)", "y", "y ~ 1", ("g",), id="explicit-0+1"),
    pytest.param(
        "score_2 ~ x.1 + (1 | school_id) + (1 | student.id)",
        "score_2",
        "score_2 ~ x.1",
        ("school_id", "student.id"),
        id="underscores-and-dots",
    ),
    pytest.param("y ~ x + ((1 | g))", "y", "y ~ x", ("g",), id="redundant-parentheses"),
    pytest.param(
        "np.log(y) ~ x + (1 | g)", "np.log(y)", "np.log(y) ~ x", ("g",), id="transformed-response"
    ),
    # intercept removal after a random term (issue 16): the sign goes with the fixed part
    pytest.param("y ~ x + (1 | g) - 1", "y", "y ~ x - 1", ("g",), id="minus-one-after-random"),
    pytest.param("y ~ (1 | g) - 1 + x", "y", "y ~ -1 + x", ("g",), id="minus-one-first"),
    pytest.param("y ~ -1 + x + (1 | g)", "y", "y ~ -1 + x", ("g",), id="leading-minus-one"),
    pytest.param("y ~ x + -1 + (1 | g)", "y", "y ~ x - 1", ("g",), id="plus-minus-one"),
    pytest.param("y ~ x*z - x:z + (1 | g)", "y", "y ~ x*z - x:z", ("g",), id="minus-a-term"),
    pytest.param(
        "y ~ I(x - 1) + I(x ** -1) + (1 | g)",
        "y",
        "y ~ I(x - 1) + I(x ** -1)",
        ("g",),
        id="minus-inside-a-term",
    ),
    # quoted column names (formulaic's backticks and Q()), in random and fixed terms
    pytest.param("y ~ x + (1 | `subj id`)", "y", "y ~ x", ("subj id",), id="backticked-group"),
    pytest.param("y ~ x + (1 | Q('subj id'))", "y", "y ~ x", ("subj id",), id="Q-single-quotes"),
    pytest.param('y ~ x + (1 | Q("subj id"))', "y", "y ~ x", ("subj id",), id="Q-double-quotes"),
    pytest.param(
        "y ~ (1 | `a+b` : `c|d`)", "y", "y ~ 1", ("a+b:c|d",), id="quoted-names-with-operators"
    ),
    pytest.param(
        "y ~ `a+b` + Q('c-d') + (1 | g)",
        "y",
        "y ~ `a+b` + Q('c-d')",
        ("g",),
        id="operators-inside-quoted-fixed-names",
    ),
    pytest.param("`my y` ~ x + (1 | g)", "`my y`", "`my y` ~ x", ("g",), id="backticked-response"),
    # transforms (formulaic's stateful transforms included) stay where they are
    pytest.param(
        "y ~ scale(x) + poly(z, 2) + bs(w, df=4) + C(f, contr.sum) + (scale(x) | g)",
        "y",
        "y ~ scale(x) + poly(z, 2) + bs(w, df=4) + C(f, contr.sum)",
        ("g",),
        id="stateful-transforms",
    ),
]


# --------------------------------------------------------------------------------------
# Random slopes, lme4's meaning of each form: (formula, [(factor, lhs), ...]).
# --------------------------------------------------------------------------------------
SLOPES = [
    pytest.param("y ~ t + (1 + t | s)", [("s", "1 + t")], id="correlated"),
    pytest.param("y ~ (t | s)", [("s", "t")], id="implied-intercept"),
    pytest.param("y ~ (0 + t | s)", [("s", "0 + t")], id="slope-only"),
    pytest.param("y ~ (t - 1 | s)", [("s", "t - 1")], id="slope-only-minus-one"),
    pytest.param("y ~ (1 + t + z | s)", [("s", "1 + t + z")], id="two-slopes"),
    pytest.param("y ~ (1 + cond | s)", [("s", "1 + cond")], id="categorical-slope"),
    pytest.param("y ~ (t || s)", [("s", "1"), ("s", "0 + t")], id="uncorrelated"),
    pytest.param(
        "y ~ (1 + t + z || s)",
        [("s", "1"), ("s", "0 + t"), ("s", "0 + z")],
        id="uncorrelated-two-slopes",
    ),
    pytest.param("y ~ (0 + t || s)", [("s", "0 + t")], id="uncorrelated-no-intercept"),
    pytest.param("y ~ (t - 1 || s)", [("s", "0 + t")], id="uncorrelated-minus-one"),
    pytest.param("y ~ (1 + t | a/b)", [("a", "1 + t"), ("b:a", "1 + t")], id="nested-slope"),
    pytest.param(
        "y ~ (1 | s) + (0 + t | s) + (1 | i)",
        [("s", "1"), ("s", "0 + t"), ("i", "1")],
        id="several-terms-one-factor",
    ),
]


@pytest.mark.parametrize("formula, expected", SLOPES)
def test_parse_random_slopes(formula, expected):
    parsed = parse_formula(formula)
    assert [(t.name, t.lhs) for t in parsed.random] == expected
    for t in parsed.random:
        formulaic.Formula(t.lhs)  # each left-hand side is a formulaic formula


@pytest.mark.parametrize("formula, response, fixed, groups", VALID)
def test_parse_formula(formula, response, fixed, groups):
    parsed = parse_formula(formula)
    assert isinstance(parsed, ParsedFormula)
    assert parsed.response == response
    assert parsed.fixed == fixed
    assert tuple(t.name for t in parsed.random) == groups
    assert all(isinstance(t, RandomTerm) for t in parsed.random)
    # The fixed part is what formulaic must be able to read.
    assert "|" not in parsed.fixed
    formulaic.Formula(parsed.fixed)


def test_nested_terms_keep_their_columns():
    parsed = parse_formula("y ~ (1 | a/b/c)")
    assert [t.columns for t in parsed.random] == [("a",), ("b", "a"), ("c", "b", "a")]


def test_quoted_grouping_columns_are_the_raw_names():
    parsed = parse_formula("y ~ (1 | `school id`/Q('class:id')) + (scale(x) | `subj id`)")
    assert [t.columns for t in parsed.random] == [
        ("school id",),
        ("class:id", "school id"),
        ("subj id",),
    ]
    assert [t.lhs for t in parsed.random] == ["1", "1", "scale(x)"]
    assert str(parsed.random[2]) == "(scale(x) | subj id)"


# --------------------------------------------------------------------------------------
# parse_random_term on its own.
# --------------------------------------------------------------------------------------
RANDOM_TERMS = [
    pytest.param("(1 | g)", [("g",)], id="simple"),
    pytest.param("  (1|g)  ", [("g",)], id="padded"),
    pytest.param("(1 | a:b)", [("a", "b")], id="interaction"),
    pytest.param("(1 | a : b)", [("a", "b")], id="interaction-spaces"),
    pytest.param("(1 | a/b)", [("a",), ("b", "a")], id="nested"),
    pytest.param("(+1 | g)", [("g",)], id="plus-one"),
    pytest.param("(1 + 0 | g)", [("g",)], id="one-plus-zero"),
]


@pytest.mark.parametrize("term, columns", RANDOM_TERMS)
def test_parse_random_term(term, columns):
    terms = parse_random_term(term)
    assert [t.columns for t in terms] == columns
    assert [t.name for t in terms] == [":".join(c) for c in columns]


@pytest.mark.parametrize(
    "term, pattern",
    [
        pytest.param("1 | g", r"must be written in parentheses", id="no-parentheses"),
        pytest.param("(1 + g)", r"has no '\|'", id="no-bar"),
        pytest.param("(1 | )", r"names no grouping factor after '\|'", id="no-group"),
        pytest.param("(1 | g | h)", r"more than one '\|'", id="two-bars"),
        pytest.param("(1 | g:)", r"'' is not a column name", id="dangling-colon"),
        pytest.param("(1 | a//b)", r"'' is not a column name", id="double-slash"),
    ],
)
def test_parse_random_term_rejects(term, pattern):
    with pytest.raises(FormulaError, match=pattern):
        parse_random_term(term)


# --------------------------------------------------------------------------------------
# Malformed formulas: (formula, regex of the FormulaError message).
# --------------------------------------------------------------------------------------
MALFORMED = [
    pytest.param("y ~ x + (1 | g", r"Unbalanced '\('", id="unbalanced-open"),
    pytest.param("y ~ x + 1 | g)", r"Unbalanced '\)'", id="unbalanced-close"),
    pytest.param("y ~ x + ((1 | g)", r"Unbalanced '\('", id="unbalanced-nested-open"),
    pytest.param("y ~ x + (1 | g))", r"Unbalanced '\)'", id="unbalanced-extra-close"),
    pytest.param("y x + (1 | g)", r"'y x \+ \(1 \| g\)' must have exactly one '~'", id="no-tilde"),
    pytest.param("y ~ x ~ z + (1 | g)", r"must have exactly one '~'", id="two-tildes"),
    pytest.param(" ~ x + (1 | g)", r"no response on the left of '~'", id="empty-response"),
    pytest.param("~ (1 | g)", r"no response on the left of '~'", id="one-sided"),
    pytest.param("y ~ (1 | )", r"'\(1 \| \)' names no grouping factor", id="empty-group"),
    pytest.param("y ~ (| g)", r"(?i)(nothing|empty)[^.]*'\|'", id="empty-lhs"),
    pytest.param("y ~ ( | g)", r"(?i)(nothing|empty)[^.]*'\|'", id="blank-lhs"),
    pytest.param("y ~ (1 | g | h)", r"'\(1 \| g \| h\)' has more than one '\|'", id="two-bars"),
    pytest.param("y ~ x | g", r"'\|' outside parentheses", id="bar-outside-parentheses"),
    pytest.param("y ~ x + (1|g) + z | h", r"'\|' outside parentheses", id="bar-outside-too"),
    pytest.param("y ~ (0 | g)", r"neither an intercept nor a slope", id="zero-term"),
    pytest.param("y ~ (1 + x || )", r"names no grouping factor", id="uncorrelated-no-group"),
    pytest.param("y ~ (1 + + x || g)", r"empty term before '\|\|'", id="uncorrelated-empty"),
    pytest.param("y ~ (1 | g + h)", r"'g \+ h' is not a column name", id="group-is-a-sum"),
    pytest.param("y ~ (1 | log(g))", r"'log\(g\)' is not a column name", id="group-is-a-call"),
    pytest.param("y ~ (1 | 2g)", r"'2g' is not a column name", id="group-starts-with-digit"),
    # A random term must be a top-level '+' summand; the message should say so.
    pytest.param("y ~ x (1 | g)", r"'\+'", id="juxtaposed-after"),
    pytest.param("y ~ (1 | g) x", r"'\+'", id="juxtaposed-before"),
    pytest.param("y ~ (1 | g)(1 | h)", r"'\+'", id="juxtaposed-terms"),
    pytest.param("y ~ (1 | g) * x", r"'\+'", id="random-term-times-x"),
    pytest.param("y ~ x:(1 | g)", r"'\+'", id="random-term-in-interaction"),
    pytest.param("y ~ x + (1 | g) +", r"'\+'", id="dangling-plus"),
    pytest.param("y ~ x + (1 | g) -", r"'-' with nothing", id="dangling-minus"),
    pytest.param(
        "y ~ x - (1 | g)", r"subtracts the random term '\(1 \| g\)'", id="subtracted-random-term"
    ),
    pytest.param("y ~ x + (1 | `subj id)", r"Unterminated ` quote", id="unterminated-backtick"),
    pytest.param(
        "y ~ x + (1 | Q(subj))",
        r"'Q\(subj\)' is not a column name.*`subj id`",
        id="Q-without-quotes",
    ),
    pytest.param("y ~ (1 | ``)", r"'``' is not a column name", id="empty-backticks"),
]


@pytest.mark.parametrize("formula, pattern", MALFORMED)
def test_parse_formula_rejects(formula, pattern):
    with pytest.raises(FormulaError, match=pattern) as info:
        parse_formula(formula)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("formula", [None, 3, ["y ~ x"], b"y ~ x + (1|g)"])
def test_formula_must_be_a_string(formula):
    with pytest.raises(FormulaError, match=r"formula must be a string"):
        parse_formula(formula)


# --------------------------------------------------------------------------------------
# formula_variables: the data columns a formulaic formula reads. formulaic's own
# required_variables misses the arguments of stateful transforms (scale(x) -> nothing),
# which made the design subset the data without them (issue 16).
# --------------------------------------------------------------------------------------
VARIABLES = [
    pytest.param("y ~ scale(x)", ["y", "x"], id="scale"),
    pytest.param(
        "y ~ center(x) + poly(z, 2) + bs(w, df=4)", ["y", "x", "z", "w"], id="center-poly-bs"
    ),
    pytest.param(
        "y ~ C(f, contr.sum) + C(h, contr.treatment('b'))", ["y", "f", "h"], id="contrasts"
    ),
    pytest.param("np.log(y) ~ I(abs(x)) + log(z)", ["y", "x", "z"], id="functions-not-columns"),
    pytest.param(
        "y ~ Q('a b') + `c d` + scale(`e f`)", ["y", "a b", "c d", "e f"], id="quoted-names"
    ),
    pytest.param("y ~ x.fillna(0) + x:z", ["y", "x", "z"], id="method-and-interaction"),
    pytest.param("1 + scale(x)", ["x"], id="random-term-lhs"),
    pytest.param("y ~ 1", ["y"], id="intercept-only"),
]


@pytest.mark.parametrize("formula, expected", VARIABLES)
def test_formula_variables(formula, expected):
    assert formula_variables(formula) == expected
    assert formula_variables(formulaic.Formula(formula)) == expected
