"""Argument checks shared by the entry points: one sentence per mistake, one home each."""

from __future__ import annotations

import numpy as np

from .errors import ModelSpecError

__all__ = [
    "check_n_bootstrap",
    "check_level",
    "check_positive_int",
    "check_method",
    "confint_method",
    "confint_parm",
]


def check_n_bootstrap(n_bootstrap) -> int:
    """``n_bootstrap`` as an int, or a :class:`ModelSpecError` unless it is an integer >= 2
    (one replicate has no spread)."""
    if (
        isinstance(n_bootstrap, (bool, np.bool_))
        or not isinstance(n_bootstrap, (int, np.integer))
        or n_bootstrap < 2
    ):
        raise ModelSpecError(f"n_bootstrap must be an integer of at least 2, got {n_bootstrap!r}.")
    return int(n_bootstrap)


def check_positive_int(value, name: str) -> int:
    """``value`` as an int, or a :class:`ModelSpecError` unless it is an integer >= 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ModelSpecError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_level(level) -> float:
    """A confidence level strictly between 0 and 1, or a :class:`ModelSpecError`."""
    if not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise ModelSpecError(f"level must be between 0 and 1, got {level!r}.")
    return float(level)


def check_method(method) -> str:
    """``method`` if it is ``"REML"`` or ``"ML"``, else a :class:`ModelSpecError`."""
    if method not in ("REML", "ML"):
        raise ModelSpecError(f"method must be 'REML' or 'ML', got {method!r}.")
    return method


def confint_method(method) -> str:
    """``confint``'s method in lower case, lme4's spellings accepted (``"Wald"``,
    ``"boot"``); anything else is left for the caller to refuse."""
    m = method.lower() if isinstance(method, str) else method
    return "bootstrap" if m == "boot" else m


def confint_parm(parm, var_names: list[str], fe_names: list[str]) -> list[str]:
    """``confint``'s ``parm`` (lme4's): ``None`` for every row (``var_names``, the sd/cor
    and sigma rows, then ``fe_names``), else the rows it names (a name or a list of
    names; ``"theta_"``: the variance rows, ``"beta_"``: the fixed effects, as lme4), in
    that order; an unknown name is a :class:`ModelSpecError` that lists the rows."""
    names = list(var_names) + list(fe_names)
    if parm is None:
        return names
    asked = [parm] if isinstance(parm, str) else list(parm)
    groups = {"theta_": list(var_names), "beta_": list(fe_names)}
    wanted: set[str] = set()
    for name in asked:
        if name in groups:
            wanted.update(groups[name])
        elif name in names:
            wanted.add(name)
        else:
            raise ModelSpecError(
                f"parm={name!r} is not a row of the intervals: use one or a list of {names}, "
                "or 'theta_' (the variance rows) or 'beta_' (the fixed effects)."
            )
    return [n for n in names if n in wanted]
