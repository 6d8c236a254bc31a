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


def _split_top_level_plus(rhs: str) -> list[str]:
    """Split ``rhs`` at the ``+`` signs that are outside parentheses."""
    parts, depth, current = [], 0, []
    for i, ch in enumerate(rhs):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"Unbalanced ')' at position {i} in {rhs!r}.")
        if ch == "+" and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise FormulaError(f"Unbalanced '(' in {rhs!r}: every '(' needs a matching ')'.")
    parts.append("".join(current).strip())
    return parts


def _is_wrapped(part: str) -> bool:
    """True when ``part`` is one parenthesised group: its first '(' closes at the end."""
    if not (part.startswith("(") and part.endswith(")")):
        return False
    depth = 0
    for i, ch in enumerate(part):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(part) - 1:
            return False  # e.g. "(a) * (b | g)": not a single group
    return True


def _is_random_term(part: str) -> bool:
    """``(lhs | g)``: one parenthesised group, spanning the whole part, with a ``|``."""
    return _is_wrapped(part) and "|" in part


def parse_random_term(term: str) -> list[RandomTerm]:
    """Parse one ``(lhs | group)`` term into random intercepts (lme4 semantics).

    ``(1 | a/b)`` expands to ``(1 | a) + (1 | a:b)``; ``(1 | a:b)`` is one factor made of
    the interaction of ``a`` and ``b``.
    """
    text = term.strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise FormulaError(f"Random term {term!r} must be written in parentheses, like '(1 | g)'.")
    inner = text[1:-1].strip()
    while _is_wrapped(inner):  # redundant parentheses: ((1 | g))
        inner = inner[1:-1].strip()
    if inner.count("|") == 0:
        raise FormulaError(f"Random term {term!r} has no '|': write it as '(1 | g)'.")
    if "||" in inner:
        lhs, group = inner.split("||", 1)
    else:
        lhs, group = inner.split("|", 1)
    lhs, group = lhs.strip(), group.strip()
    while lhs.startswith("(") and lhs.endswith(")"):
        lhs = lhs[1:-1].strip()
    if not lhs:
        raise FormulaError(f"Random term {term!r} has nothing before '|': write '(1 | g)'.")
    if lhs.replace(" ", "") in ("0", "-1", "0-1"):
        raise FormulaError(
            f"Random term {term!r} has neither an intercept nor a slope: nothing to estimate. "
            "Write '(1 | g)' for a random intercept."
        )
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
    random: list[RandomTerm] = []
    fixed_parts = []
    for part in _split_top_level_plus(rhs):
        if not part:
            raise FormulaError(
                f"Formula {formula!r} has an empty term: a '+' with nothing on one side."
            )
        if _is_random_term(part):
            random.extend(parse_random_term(part))
        elif "|" in part:
            raise FormulaError(
                f"Formula {formula!r}: the term {part!r} has a '|' outside parentheses or a "
                "random term that does not stand alone. Write each random term in "
                "parentheses, joined to the rest by '+': 'y ~ x + (1 | g)'."
            )
        else:
            fixed_parts.append(part)
    fixed_rhs = " + ".join(fixed_parts) if fixed_parts else "1"
    return ParsedFormula(response=lhs, fixed=f"{lhs} ~ {fixed_rhs}", random=tuple(random))
