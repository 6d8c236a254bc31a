"""Split an lme4-style formula into its fixed part and its random-effect terms.

formulaic parses only the fixed part: in its grammar ``|`` separates formula parts, so
random terms must be removed before formulaic sees the formula. This module splits the
right-hand side at top-level ``+``, parses each parenthesised ``(lhs | group)`` term with
lme4's meaning, and returns the fixed formula plus the list of random terms:

* ``(1 | g)`` intercept; ``(1 + x | g)`` and ``(x | g)`` correlated intercept and slope
  (an intercept is implied, as in R); ``(0 + x | g)`` / ``(x - 1 | g)`` slope only;
  ``(1 + x + z | g)`` several slopes; a factor ``cond`` gives one column per contrast.
* ``(1 + x || g)`` uncorrelated: one term per column, ``(1 | g) + (0 + x | g)``.
* ``(1 | a/b)`` nested = ``(1 | a) + (1 | b:a)`` (lme4's names); ``(1 | a:b)`` the
  interaction factor.

The left-hand side of a term is kept as a formulaic formula string and turned into
columns by the design module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import FormulaError

__all__ = ["RandomTerm", "ParsedFormula", "parse_formula", "parse_random_term"]


@dataclass(frozen=True)
class RandomTerm:
    """Random effects ``lhs`` (a formulaic right-hand side such as ``"1 + x"``) varying
    over the levels of the grouping factor made of ``columns`` (joined by ``:``)."""

    columns: tuple[str, ...]
    lhs: str = "1"

    @property
    def name(self) -> str:
        return ":".join(self.columns)

    def __str__(self) -> str:
        return f"({self.lhs} | {self.name})"


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


def _uncorrelated(lhs: str, term: str) -> list[str]:
    """``1 + x + z`` under ``||`` -> ``["1", "0 + x", "0 + z"]`` (lme4's expansion)."""
    parts = [p.strip() for p in _split_top_level_plus(lhs)]
    if any(not p for p in parts):
        raise FormulaError(f"Random term {term!r} has an empty term before '||'.")
    intercept = True
    others = []
    for p in parts:
        compact = p.replace(" ", "")
        if compact == "1":
            continue
        if compact in ("0", "-1"):
            intercept = False
        elif compact.endswith("-1"):
            intercept = False
            others.append(compact[:-2])
        else:
            others.append(p)
    return (["1"] if intercept else []) + [f"0 + {o}" for o in others]


def parse_random_term(term: str) -> list[RandomTerm]:
    """Parse one ``(lhs | group)`` term into :class:`RandomTerm` s (lme4 semantics).

    ``(1 | a/b)`` expands to ``(1 | a) + (1 | b:a)``; ``(1 | a:b)`` is one factor made of
    the interaction of ``a`` and ``b``; ``(x || g)`` to ``(1 | g) + (0 + x | g)``.
    """
    text = term.strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise FormulaError(f"Random term {term!r} must be written in parentheses, like '(1 | g)'.")
    inner = text[1:-1].strip()
    while _is_wrapped(inner):  # redundant parentheses: ((1 | g))
        inner = inner[1:-1].strip()
    if inner.count("|") == 0:
        raise FormulaError(f"Random term {term!r} has no '|': write it as '(1 | g)'.")
    correlated = "||" not in inner
    if not correlated:
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
    lhss = [lhs] if correlated else _uncorrelated(lhs, term)
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
        # lme4 names a nested factor inner-first: (1 | a/b) gives "a" and "b:a"
        prefix = [c.strip() for c in part.split(":")] + prefix
        terms.extend(RandomTerm(tuple(prefix), side) for side in lhss)
    return terms


def parse_formula(formula: str) -> ParsedFormula:
    """Split ``formula`` into response, fixed formula and random terms."""
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
