"""``interlace.fit``: formula and data frame in, :class:`CrossedLMEResult` out.

Pipeline (lme4's ``lmer``): :func:`build_design` (formula, validation, arrays; lme4's
``lFormula``) -> :func:`fit_design` (cross-products, L-BFGS, estimates: a
:class:`ModelFit`) -> :meth:`CrossedLMEResult.from_fit` (pandas; lme4's ``mkMerMod``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._base.checks import check_method
from ._base.precision import float64_scope
from ._model.design import build_design
from ._model.estimate import fit_design
from ._result import CrossedLMEResult

__all__ = ["fit"]


@float64_scope
def fit(
    formula: str,
    data: Any,  # a pandas, polars or pyarrow frame, or a dict of columns
    groups: str | Sequence[str] | None = None,
    method: str = "REML",
    *,
    maxiter: int = 500,
    verbose: bool = False,
) -> CrossedLMEResult:
    """Fit a linear mixed model with crossed (or nested) random effects.

    Parameters
    ----------
    formula
        ``"y ~ x1 + x2"`` (formulaic syntax for the fixed part: categorical predictors,
        ``C(...)``, interactions, transforms, ``y ~ 1``), optionally with lme4 random
        terms: ``(1 | g)``, ``(1 + x | g)``, ``(x || g)``, ``(0 + x | g)``,
        ``(1 | a:b)``, ``(1 | a/b)``.
    data
        A pandas or polars DataFrame, a pyarrow Table (any eager frame narwhals reads) or
        a dict of equal-length columns; it is never modified. Rows with a missing value in a column the
        model uses are dropped with a warning that says how many.
    groups
        Column name(s) of crossed grouping factors, one random intercept each
        (shorthand for ``(1 | g)`` terms; may be combined with terms in the formula).
    method
        ``"REML"`` (default, lme4's default) or ``"ML"`` (for likelihood-ratio tests of
        fixed effects).
    maxiter
        Most L-BFGS iterations; a fit that stops there has ``converged=False``.
    verbose
        Print each iteration's deviance as the optimizer runs (for long fits).

    Returns
    -------
    CrossedLMEResult
        Warns ``boundary (singular) fit: see help(interlace.isSingular)`` when a
        variance is estimated at zero or a correlation at +-1 (lme4's rule).
    """
    check_method(method)
    return CrossedLMEResult.from_fit(
        fit_design(
            build_design(formula, data, groups),
            method,
            maxiter=maxiter,
            stacklevel=4,
            verbose=verbose,
        )
    )
