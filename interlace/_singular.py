"""Boundary (singular) fits: lme4's ``isSingular`` rule and its warning text."""

from __future__ import annotations

import numpy as np

__all__ = ["SINGULAR_MESSAGE", "isSingular", "theta_is_singular"]

SINGULAR_MESSAGE = "boundary (singular) fit: see help(interlace.isSingular)"


def theta_is_singular(theta, tol: float = 1e-4) -> bool:
    """lme4's rule: a fit is singular when a ``theta`` with lower bound 0 is below ``tol``.

    For random intercepts every ``theta_j = sigma_j / sigma`` has lower bound 0.
    """
    return bool(np.any(np.asarray(theta) < tol))


def isSingular(result, tol: float = 1e-4) -> bool:  # noqa: N802 (lme4's name)
    """Is the fit on the boundary of the parameter space?

    A fit is singular when some relative standard deviation ``theta_j = sigma_j / sigma``
    is below ``tol`` (lme4's ``isSingular``): that grouping factor's variance is
    estimated as (essentially) zero. This is a valid estimate, not a failure: the
    groups of that factor look homogeneous after conditioning on the rest of the model.
    Consider dropping the factor, or keep it for design reasons; inference about its
    variance (e.g. Wald intervals) is unreliable at the boundary.
    """
    return theta_is_singular(result.theta.to_numpy(), tol)
