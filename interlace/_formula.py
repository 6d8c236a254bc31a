"""Split an lme4-style formula into its fixed part and its random-effect terms.

formulaic parses only the fixed part: in its grammar ``|`` separates formula parts, so
``(1 | g)`` must be removed before formulaic sees the formula. This module finds the
parenthesised random terms, checks each one, and returns the fixed formula plus the list
of grouping factors that carry a random intercept.

Supported here: random intercepts ``(1 | g)``, including interactions ``(1 | a:b)`` and
nesting ``(1 | a/b)`` (lme4: ``(1 | a) + (1 | a:b)``). Random slopes are recognised and
rejected with a clear error until they are implemented.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import FormulaError

__all__ = ["RandomTerm", "ParsedFormula", "parse_formula", "parse_random_term"]


@dataclass(frozen=True)
class RandomTerm:
    """A random intercept for the grouping factor made of ``columns`` (joined by ``:``)."""

    columns: tuple[str, ...]

    @property
    def name(self) -> str:
        return ":".join(self.columns)


@dataclass(frozen=True)
class ParsedFormula:
    response: str
    fixed: str  # a formulaic formula "y ~ ..." with the random terms removed
    random: tuple[RandomTerm, ...]


_NAME = r"[A-Za-z_.][A-Za-z0-9_.]*"


def _find_random_terms(rhs: str) -> list[tuple[int, int]]:
    """Spans (start, end) of top-level parenthesised groups that contain a ``|``."""
    spans, stack = [], []
    for i, ch in enumerate(rhs):
        if ch == "(":
            stack.append(i)
        elif ch == ")":
            if not stack:
                raise FormulaError(f"Unbalanced ')' at position {i} in {rhs!r}.")
            start = stack.pop()
            if not stack and "|" in rhs[start:i]:
                spans.append((start, i + 1))
    if stack:
        raise FormulaError(f"Unbalanced '(' in {rhs!r}: every '(' needs a matching ')'.")
    return spans


def parse_random_term(term: str) -> list[RandomTerm]:
    """Parse one ``(lhs | group)`` term into random intercepts (lme4 semantics).

    ``(1 | a/b)`` expands to ``(1 | a) + (1 | a:b)``; ``(1 | a:b)`` is one factor made of
    the interaction of ``a`` and ``b``.
    """
    text = term.strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise FormulaError(f"Random term {term!r} must be written in parentheses, like '(1 | g)'.")
    inner = text[1:-1]
    if inner.count("|") == 0:
        raise FormulaError(f"Random term {term!r} has no '|': write it as '(1 | g)'.")
    if "||" in inner:
        lhs, group = inner.split("||", 1)
    else:
        lhs, group = inner.split("|", 1)
    lhs, group = lhs.strip(), group.strip()
    if "|" in group:
        raise FormulaError(f"Random term {term!r} has more than one '|'.")
    if not group:
        raise FormulaError(f"Random term {term!r} names no grouping factor after '|'.")
    if lhs.replace(" ", "") not in ("1", "+1", "1+0", "0+1"):
        raise FormulaError(
            f"Random term {term!r}: only random intercepts '(1 | g)' are supported so far; "
            "random slopes such as '(1 + x | g)' are not implemented yet."
        )
    parts = [p.strip() for p in group.split("/")]
    for part in parts:
        for col in part.split(":"):
            if not re.fullmatch(_NAME, col.strip()):
                raise FormulaError(
                    f"Random term {term!r}: {col.strip()!r} is not a column name. Grouping "
                    "factors are column names, combined with ':' or nested with '/'."
                )
    terms, prefix = [], []
    for part in parts:
        prefix = prefix + [c.strip() for c in part.split(":")]
        terms.append(RandomTerm(tuple(prefix)))
    return terms


def parse_formula(formula: str) -> ParsedFormula:
    """Split ``formula`` into response, fixed formula and random-intercept terms."""
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string like 'y ~ x', got {type(formula).__name__}.")
    if formula.count("~") != 1:
        raise FormulaError(f"Formula {formula!r} must have exactly one '~', like 'y ~ x'.")
    lhs, rhs = (s.strip() for s in formula.split("~"))
    if not lhs:
        raise FormulaError(f"Formula {formula!r} has no response on the left of '~'.")
    spans = _find_random_terms(rhs)
    random: list[RandomTerm] = []
    fixed_rhs = rhs
    for start, end in reversed(spans):
        random[:0] = parse_random_term(rhs[start:end])
        fixed_rhs = fixed_rhs[:start] + fixed_rhs[end:]
    # Tidy the '+' signs left behind by removed terms.
    fixed_rhs = re.sub(r"\+\s*(\+\s*)+", "+ ", fixed_rhs)
    fixed_rhs = re.sub(r"^\s*\+\s*|\s*\+\s*$", "", fixed_rhs).strip()
    if "|" in fixed_rhs:
        raise FormulaError(
            f"Formula {formula!r}: a '|' outside parentheses; write random terms as '(1 | g)'."
        )
    if not fixed_rhs:
        fixed_rhs = "1"
    return ParsedFormula(response=lhs, fixed=f"{lhs} ~ {fixed_rhs}", random=tuple(random))
