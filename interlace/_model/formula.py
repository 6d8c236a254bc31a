"""Split an lme4-style formula into its fixed part and its random-effect terms.

formulaic parses only the fixed part: in its grammar ``|`` separates formula parts, so
random terms must be removed before formulaic sees the formula. This module splits the
right-hand side at its top-level ``+`` and ``-`` signs (outside parentheses and quoted
names), parses each parenthesised ``(lhs | group)`` term with lme4's meaning, and returns
the fixed formula (the other terms with their signs: ``y ~ x + (1 | g) - 1`` has the
fixed part ``y ~ x - 1``) plus the list of random terms:

* ``(1 | g)`` intercept; ``(1 + x | g)`` and ``(x | g)`` correlated intercept and slope
  (an intercept is implied, as in R); ``(0 + x | g)`` / ``(x - 1 | g)`` slope only;
  ``(1 + x + z | g)`` several slopes; a factor ``cond`` gives one column per contrast.
* ``(1 + x || g)`` uncorrelated: one term per column, ``(1 | g) + (0 + x | g)``.
* ``(1 | a/b)`` nested = ``(1 | a) + (1 | b:a)`` (lme4's names); ``(1 | a:b)`` the
  interaction factor.
* grouping columns whose names are not identifiers are quoted as formulaic quotes them:
  ``(1 | `subj id`)`` or ``(1 | Q("subj id"))``.

The left-hand side of a term is kept as a formulaic formula string (``scale(x)`` and the
other transforms included) and turned into columns by the design module.
:func:`formula_variables` says which data columns a formulaic formula reads.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from .._base.errors import FormulaError

__all__ = [
    "RandomTerm",
    "ParsedFormula",
    "parse_formula",
    "parse_random_term",
    "formula_variables",
    "split_offsets",
]


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
_QUOTES = "`'\""


def _scan(text: str):
    """Yield ``(position, character, depth)`` for the characters of ``text`` that are
    outside quotes (backticks, ``'...'``, ``"..."``); ``depth`` counts the parentheses
    open before the character. Raises :class:`FormulaError` on an unbalanced ``)`` or an
    unterminated quote."""
    depth, i = 0, 0
    while i < len(text):
        ch = text[i]
        if ch in _QUOTES:
            j = i + 1
            while j < len(text) and text[j] != ch:
                j += 2 if (text[j] == "\\" and ch != "`") else 1
            if j >= len(text):
                raise FormulaError(f"Unterminated {ch} quote at position {i} in {text!r}.")
            i = j + 1
            continue
        if ch == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"Unbalanced ')' at position {i} in {text!r}.")
        yield i, ch, depth + (ch == ")")
        if ch == "(":
            depth += 1
        i += 1
    if depth != 0:
        raise FormulaError(f"Unbalanced '(' in {text!r}: every '(' needs a matching ')'.")


def _split_top_level(text: str, seps: str) -> list[str]:
    """Split ``text`` at the characters of ``seps`` outside parentheses and quotes."""
    cuts = [i for i, ch, depth in _scan(text) if depth == 0 and ch in seps]
    bounds = [-1, *cuts, len(text)]
    return [text[a + 1 : b].strip() for a, b in zip(bounds, bounds[1:])]


def _split_top_level_plus(rhs: str) -> list[str]:
    """Split ``rhs`` at the ``+`` signs that are outside parentheses and quotes."""
    return _split_top_level(rhs, "+")


def _signed_terms(rhs: str, formula: str) -> list[tuple[str, str]]:
    """Split ``rhs`` at its top-level ``+`` and binary/unary ``-`` signs into
    ``(sign, term)`` pairs: ``"x + (1 | g) - 1"`` -> ``[("+", "x"), ("+", "(1 | g)"),
    ("-", "1")]``. A ``-`` after ``*``, ``/``, ``:``, ``^``, ``%`` or in a number's
    exponent (``1e-3``) belongs to its term."""
    cuts = []
    for i, ch, depth in _scan(rhs):
        if depth or ch not in "+-":
            continue
        before = rhs[:i].rstrip()
        if ch == "-" and (
            before[-1:] in ("*", "/", ":", "^", "%")
            or re.search(r"(?<![A-Za-z_.])\d+\.?\d*[eE]$", before)
        ):
            continue
        cuts.append(i)
    signs = ["+"] + [rhs[i] for i in cuts]
    bounds = [-1, *cuts, len(rhs)]
    parts = [(sign, rhs[a + 1 : b].strip()) for sign, a, b in zip(signs, bounds, bounds[1:])]
    out = []
    for k, (sign, part) in enumerate(parts):
        if not part:
            nxt = parts[k + 1][0] if k + 1 < len(parts) else None
            if sign == "+" and nxt == "-":  # "-1 + x" or "x + -1": a unary minus
                continue
            raise FormulaError(
                f"Formula {formula!r} has an empty term: a '+' or '-' with nothing on one side."
            )
        out.append((sign, part))
    return out


def _is_wrapped(part: str) -> bool:
    """True when ``part`` is one parenthesised group: its first '(' closes at the end."""
    if not (part.startswith("(") and part.endswith(")")):
        return False
    for i, ch, depth in _scan(part):
        if ch == ")" and depth == 1 and i < len(part) - 1:
            return False  # e.g. "(a) * (b | g)": not a single group
    return True


def _has_bar(text: str) -> bool:
    """A ``|`` outside quotes (a backticked column name may contain one)."""
    return any(ch == "|" for _, ch, _ in _scan(text))


def _is_random_term(part: str) -> bool:
    """``(lhs | g)``: one parenthesised group, spanning the whole part, with a ``|``."""
    return _is_wrapped(part) and _has_bar(part)


def _column_name(text: str, term: str) -> str:
    """A grouping column as written in a random term: a plain name ``g``, a backticked
    name ```subj id``` or ``Q("subj id")`` (formulaic's two ways of quoting a name)."""
    text = text.strip()
    if re.fullmatch(_NAME, text):
        return text
    quoted = re.fullmatch(r"`([^`]+)`", text) or re.fullmatch(
        r"Q\(\s*(?P<q>['\"])(?P<name>.+?)(?P=q)\s*\)", text
    )
    if quoted:
        return quoted.group(1) if text.startswith("`") else quoted.group("name")
    raise FormulaError(
        f"Random term {term!r}: {text!r} is not a column name. Grouping factors are column "
        "names (quote other names as `subj id` or Q('subj id')), combined with ':' or "
        "nested with '/'."
    )


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


def _split_bar(inner: str, term: str) -> tuple[str, str, bool]:
    """``lhs | group`` or ``lhs || group`` at the top-level bar (outside parentheses
    and quotes) -> ``(lhs, group, correlated)``."""
    bars = [i for i, ch, depth in _scan(inner) if ch == "|" and depth == 0]
    if not bars:
        raise FormulaError(f"Random term {term!r} has no '|': write it as '(1 | g)'.")
    first = bars[0]
    double = len(bars) > 1 and bars[1] == first + 1
    if len(bars) > (2 if double else 1):
        raise FormulaError(f"Random term {term!r} has more than one '|'.")
    width = 2 if double else 1
    return inner[:first].strip(), inner[first + width :].strip(), not double


def parse_random_term(term: str) -> list[RandomTerm]:
    """Parse one ``(lhs | group)`` term into :class:`RandomTerm` s (lme4 semantics).

    ``(1 | a/b)`` expands to ``(1 | a) + (1 | b:a)``; ``(1 | a:b)`` is one factor made of
    the interaction of ``a`` and ``b``; ``(x || g)`` to ``(1 | g) + (0 + x | g)``.
    Grouping columns are names, or quoted as formulaic quotes them: ``(1 | `subj id`)``,
    ``(1 | Q("subj id"))``. The left-hand side may use anything formulaic evaluates
    (``(scale(x) | g)``).
    """
    text = term.strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise FormulaError(f"Random term {term!r} must be written in parentheses, like '(1 | g)'.")
    inner = text[1:-1].strip()
    while _is_wrapped(inner):  # redundant parentheses: ((1 | g))
        inner = inner[1:-1].strip()
    lhs, group, correlated = _split_bar(inner, term)
    while _is_wrapped(lhs):
        lhs = lhs[1:-1].strip()
    if not lhs:
        raise FormulaError(f"Random term {term!r} has nothing before '|': write '(1 | g)'.")
    if lhs.replace(" ", "") in ("0", "-1", "0-1"):
        raise FormulaError(
            f"Random term {term!r} has neither an intercept nor a slope: nothing to estimate. "
            "Write '(1 | g)' for a random intercept."
        )
    if not group:
        raise FormulaError(f"Random term {term!r} names no grouping factor after '|'.")
    lhss = [lhs] if correlated else _uncorrelated(lhs, term)
    parts = [
        [_column_name(col, term) for col in _split_top_level(part, ":")]
        for part in _split_top_level(group, "/")
    ]
    terms, prefix = [], []
    for part in parts:
        # lme4 names a nested factor inner-first: (1 | a/b) gives "a" and "b:a"
        prefix = part + prefix
        terms.extend(RandomTerm(tuple(prefix), side) for side in lhss)
    return terms


def parse_formula(formula: str) -> ParsedFormula:
    """Split ``formula`` into response, fixed formula and random terms.

    The right-hand side is split at its top-level ``+`` and ``-`` signs (outside
    parentheses and quotes); parenthesised ``(lhs | g)`` terms are random terms, the rest
    (with their signs: ``y ~ x + (1 | g) - 1`` has the fixed part ``y ~ x - 1``) is the
    fixed formula handed to formulaic.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string like 'y ~ x', got {type(formula).__name__}.")
    tildes = [i for i, ch, _ in _scan(formula) if ch == "~"]
    if len(tildes) != 1:
        raise FormulaError(f"Formula {formula!r} must have exactly one '~', like 'y ~ x'.")
    lhs, rhs = formula[: tildes[0]].strip(), formula[tildes[0] + 1 :].strip()
    if not lhs:
        raise FormulaError(f"Formula {formula!r} has no response on the left of '~'.")
    random: list[RandomTerm] = []
    fixed_parts: list[tuple[str, str]] = []
    for sign, part in _signed_terms(rhs, formula):
        if _is_random_term(part):
            if sign == "-":
                raise FormulaError(
                    f"Formula {formula!r} subtracts the random term {part!r}; random terms "
                    "can only be added, joined to the rest by '+'."
                )
            random.extend(parse_random_term(part))
        elif _has_bar(part):
            raise FormulaError(
                f"Formula {formula!r}: the term {part!r} has a '|' outside parentheses or a "
                "random term that does not stand alone. Write each random term in "
                "parentheses, joined to the rest by '+': 'y ~ x + (1 | g)'."
            )
        else:
            fixed_parts.append((sign, part))
    if not fixed_parts:
        fixed_rhs = "1"
    else:
        first_sign, first = fixed_parts[0]
        fixed_rhs = (
            ("-" if first_sign == "-" else "")
            + first
            + "".join(f" {sign} {part}" for sign, part in fixed_parts[1:])
        )
    return ParsedFormula(response=lhs, fixed=f"{lhs} ~ {fixed_rhs}", random=tuple(random))


def split_offsets(formula: str) -> tuple[str, str, list[str]]:
    """``(lhs, rhs, offsets)``: the formula's two sides with its top-level ``offset(expr)``
    terms taken out of the right-hand side, and their expressions (lme4's offsets: known
    terms of the linear predictor, with coefficient 1)."""
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string like 'y ~ x', got {type(formula).__name__}.")
    tildes = [i for i, ch, _ in _scan(formula) if ch == "~"]
    if len(tildes) != 1:
        raise FormulaError(f"Formula {formula!r} must have exactly one '~', like 'y ~ x'.")
    lhs, rhs = formula[: tildes[0]].strip(), formula[tildes[0] + 1 :].strip()
    if not lhs:
        raise FormulaError(f"Formula {formula!r} has no response on the left of '~'.")
    offsets, kept = [], []
    for sign, part in _signed_terms(rhs, formula):
        m = re.fullmatch(r"offset\s*\((.*)\)", part, flags=re.S)
        if m and _is_wrapped(part[part.index("(") :]):
            if sign == "-":
                raise FormulaError(
                    f"Formula {formula!r} subtracts an offset; write + offset(-expr)."
                )
            offsets.append(m.group(1).strip())
        else:
            kept.append((sign, part))
    if not kept:
        return lhs, "1", offsets
    text = ("-" if kept[0][0] == "-" else "") + kept[0][1]
    text += "".join(f" {sign} {part}" for sign, part in kept[1:])
    return lhs, text, offsets


def _expression_variables(expr: str) -> list[str]:
    """The names a formulaic Python factor such as ``scale(x)``, ``poly(x, 2)``,
    ``C(f, contr.sum)``, ``Q("a b")``, ``x.fillna(0)`` or ``np.log(`a b`)`` reads,
    in order: function names are left out, ``Q("name")`` gives ``name``, ``a.b`` gives
    ``a``; names of formulaic's transform namespace (``np``, ``contr``, ...) are left out."""
    from formulaic.transforms import TRANSFORMS
    from formulaic.utils.code import sanitize_variable_names

    aliases: dict[str, str] = {}
    tree = ast.parse(sanitize_variable_names(expr, {}, aliases).strip(), mode="eval")
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Name)
                and func.id == "Q"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.append(node.args[0].value)
                return
            if not isinstance(func, ast.Name):  # x.fillna(0): x is data; np.log: not
                visit(func)
            for child in [*node.args, *(k.value for k in node.keywords)]:
                visit(child)
        elif isinstance(node, ast.Attribute):
            visit(node.value)
        elif isinstance(node, ast.Name):
            if node.id not in TRANSFORMS:
                names.append(aliases.get(node.id, node.id))
        else:
            for child in ast.iter_child_nodes(node):
                visit(child)

    visit(tree)
    return names


def formula_variables(formula: Any) -> list[str]:
    """The data columns a formulaic formula (or formula string) reads, in order of
    appearance, without duplicates.

    formulaic's own ``required_variables`` misses the arguments of its stateful
    transforms (``scale(x)``, ``center(x)``, ``poly(x, 2)``, ``bs(x, df=4)`` report no
    variable) and counts builtins (``abs``) as variables; this walks each factor's
    expression instead. Names of Python builtins are kept (a column may be called
    ``min``): the caller drops those that are not columns of its data.
    """
    import formulaic
    from formulaic.parser.types import Factor

    if isinstance(formula, str):
        formula = formulaic.Formula(formula)
    parts = (
        [formula]
        if isinstance(formula, formulaic.formula.SimpleFormula)
        else [
            p
            for p in (getattr(formula, "lhs", None), getattr(formula, "rhs", None))
            if p is not None
        ]
    )
    found: dict[str, None] = {}
    for part in parts:
        for term in part:
            for factor in term.factors:
                if factor.eval_method == Factor.EvalMethod.LOOKUP:
                    found.setdefault(str(factor.expr))
                elif factor.eval_method == Factor.EvalMethod.PYTHON:
                    try:
                        names = _expression_variables(str(factor.expr))
                    except Exception:  # formulaic will report it when it evaluates
                        names = sorted(str(v) for v in factor.required_variables)
                    for name in names:
                        found.setdefault(name)
    return list(found)
