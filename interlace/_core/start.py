"""Starting values for ``theta`` from one-way ANOVA moment estimates (one pass, numpy).

For each grouping factor separately, the ANOVA estimator of a random-intercept
variance (Searle, Casella & McCulloch 1992, sec. 3.5) is applied to the OLS residuals
``r``: with ``L`` levels, level sizes ``n_l`` and level means ``m_l``,

    MSB = sum n_l m_l^2 / (L - 1),  MSW = (sum r^2 - sum n_l m_l^2) / (n - L),
    n0 = (n - sum n_l^2 / n) / (L - 1),  tau^2 = max(MSB - MSW, 0) / n0,

and ``theta_j = sqrt(tau_j^2 / MSW)``. In crossed designs each factor's estimate also
absorbs some of the others' variance, so this is only a start: it puts L-BFGS near the
optimum's scale, which saves iterations over lme4's ``theta = 1``. Values are clipped
to ``[0.1, 10]`` so that no factor starts at the (stationary) boundary ``theta = 0``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["moment_start"]


def moment_start(
    codes: list[np.ndarray], nlevels: list[int], X: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """``theta`` start values, one per factor, in the order of ``codes``."""
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ beta
    n = r.shape[0]
    ss_total = float(r @ r)
    theta = np.empty(len(codes))
    for j, (c, q) in enumerate(zip(codes, nlevels)):
        n_l = np.bincount(c, minlength=q).astype(float)
        sums = np.bincount(c, weights=r, minlength=q)
        ss_between = float(np.sum(sums[n_l > 0] ** 2 / n_l[n_l > 0]))
        msb = ss_between / max(q - 1, 1)
        msw = (ss_total - ss_between) / max(n - q, 1)
        n0 = (n - np.sum(n_l**2) / n) / max(q - 1, 1)
        tau2 = max(msb - msw, 0.0) / n0
        theta[j] = np.sqrt(tau2 / msw) if msw > 0 else 1.0
    return np.clip(theta, 0.1, 10.0)
