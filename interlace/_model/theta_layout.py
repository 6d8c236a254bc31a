"""``theta`` in lme4's term order, and back.

interlace lays ``theta`` out term by term in the order of the model's random terms
(the formula's, then ``groups=``), each term's lower triangle column by column
(:mod:`interlace._core.theta`). lme4 uses the same layout within a term but reorders the
terms: ``mkReTrms`` (lme4 ``R/utilities.R``; ``reformulas::mkReTrms`` in lme4 >= 1.1-36)
takes the number of levels ``nl`` of each term's grouping factor and, when
``any(diff(nl) > 0)``, applies ``ord <- rev(order(nl))``: terms by decreasing number of
levels, and terms with equal numbers of levels in *reverse* formula order (R's
``order`` is stable and ``rev`` reverses it); when ``nl`` is already non-increasing
nothing moves. ``getME(fit, "theta")``, ``fit@theta`` and the ``theta`` argument of
lme4's deviance functions are in that order. So, for Pastes,
``(1 | batch/cask)`` is ``theta = (batch, cask:batch)`` here and
``(cask:batch, batch)`` in lme4; ``(1 | item) + (1 + t || subject)`` with more
subjects than items is ``(item, subject.(Intercept), subject.t)`` here and
``(subject.t, subject.(Intercept), item)`` in lme4.

One difference of expansion: interlace expands ``(1 | a/b)`` to ``(1 | a) + (1 | b:a)``
where lme4 writes ``(1 | b:a) + (1 | a)``. The order of the two matters only when
``a`` and ``b:a`` have the same number of levels (each ``a`` has a single ``b``, a
model lme4 cannot identify either); the rule here is then applied to interlace's order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._base.errors import ModelSpecError
from .._core.arrays import ModelArrays, user_ks
from .._core.theta import blocks
from .design import Design

__all__ = ["lme4_term_order", "theta_to_lme4", "theta_from_lme4"]


def lme4_term_order(nlevels: Sequence[int]) -> tuple[int, ...]:
    """lme4's order of the random terms: ``order[j]`` is the (interlace) term at lme4's
    position ``j``, from each term's number of levels (module docstring)."""
    nl = [int(n) for n in nlevels]
    if not any(b > a for a, b in zip(nl, nl[1:])):
        return tuple(range(len(nl)))
    ascending = sorted(range(len(nl)), key=nl.__getitem__)  # stable, as R's order()
    return tuple(reversed(ascending))


def _terms_of(model) -> tuple[list[int], list[int], tuple]:
    """Per term, in interlace's order: columns ``k``, number of levels; and theta's names."""
    if isinstance(model, ModelArrays):
        cp = model.template
        nl = [0] * len(cp.order)
        for pos, term in enumerate(cp.order):
            nl[term] = int(cp.nlevels[pos])
        return user_ks(model), nl, tuple(model.theta_names)
    if isinstance(getattr(model, "design", None), Design):  # a fitted result
        terms = model.design.terms
        return (
            [t.k for t in terms],
            [len(t.levels) for t in terms],
            tuple(model.design.theta_names),
        )
    raise ModelSpecError(
        "model must be a ModelArrays (interlace.model_arrays) or a fitted CrossedLMEResult, "
        f"got {type(model).__name__}."
    )


def _positions(model) -> tuple[np.ndarray, tuple]:
    """``idx`` with ``theta_lme4 = theta[..., idx]``, and interlace's theta names."""
    ks, nl, names = _terms_of(model)
    user = blocks(ks)
    idx = np.concatenate([user[i] for i in lme4_term_order(nl)]).astype(np.int64)
    return idx, names


def _take(theta, idx: np.ndarray, names: tuple | None, n: int):
    if isinstance(theta, pd.Series):
        if len(theta) != n:
            raise ModelSpecError(f"theta has {len(theta)} entries but the model has {n}.")
        return theta.iloc[idx]
    if isinstance(theta, (list, tuple)):
        theta = np.asarray(theta, dtype=np.float64)
    shape = getattr(theta, "shape", None)
    if shape is None or len(shape) == 0 or shape[-1] != n:
        got = "a scalar" if not shape else f"shape {tuple(shape)}"
        raise ModelSpecError(
            f"theta must have {n} entries in its last axis"
            f"{' (' + ', '.join(names) + ')' if names else ''}; got {got}."
        )
    return theta[..., idx]


def theta_to_lme4(theta, model):
    """``theta`` (interlace's order, as ``CrossedLMEResult.theta`` and the functional
    layer use it) in lme4's order, that of ``getME(fit, "theta")`` (module docstring).

    ``model``: a :class:`~interlace.ModelArrays` or a fitted ``CrossedLMEResult``.
    ``theta``: numpy or JAX array (the last axis is theta, so a batch of thetas works;
    JAX arrays stay JAX, differentiable), list, or pandas Series (its labels move with
    its values). Returns the same kind.
    """
    idx, names = _positions(model)
    return _take(theta, idx, names, len(idx))


def theta_from_lme4(theta, model):
    """lme4's ``getME(fit, "theta")`` in interlace's order, e.g. to evaluate
    ``interlace.deviance(theta_from_lme4(lme4_theta, model), model)``: the inverse of
    :func:`theta_to_lme4`, same arguments. A Series from lme4 is taken by position (its
    labels move with its values)."""
    idx, names = _positions(model)
    inverse = np.empty_like(idx)
    inverse[idx] = np.arange(len(idx))
    lme4_names = tuple(names[i] for i in idx) if names else None
    return _take(theta, inverse, lme4_names, len(idx))
