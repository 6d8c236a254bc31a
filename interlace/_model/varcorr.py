"""Variance components from ``theta`` (lme4's ``VarCorr``), in the model's terms.

Each random term with ``k`` columns has covariance ``Sigma_r = sigma^2 T_r T_r'``
(:func:`interlace._core.theta.relative_covariances`). This module turns ``theta`` and
``sigma`` into those covariances, their standard deviations and correlations, and
lme4's names for them: ``sd_x|g`` / ``cor_y.x|g`` / ``sigma`` (``confint(oldNames =
FALSE)``) and ``var_x|g`` / ``cov_y.x|g`` / ``sigma2``. Rows of ``theta`` are
replicates (bootstrap refits, deletions).
"""

from __future__ import annotations

import numpy as np

from .._core.theta import relative_covariances, tril_index

__all__ = ["term_covariances", "sdcor_names", "sdcor_values", "variance_names", "variance_values"]


def _labels(terms, diagonal: str, below: str, last: str) -> list[str]:
    """Per term, its lower triangle column by column (``theta``'s order), labelled
    ``<diagonal>_x|g`` or ``<below>_y.x|g``; then ``last``."""
    names = []
    for t in terms:
        for i, j in zip(*tril_index(t.k)):
            names.append(
                f"{diagonal}_{t.columns[i]}|{t.factor}"
                if i == j
                else f"{below}_{t.columns[i]}.{t.columns[j]}|{t.factor}"
            )
    return names + [last]


def term_covariances(theta: np.ndarray, sigma: np.ndarray, terms) -> list[np.ndarray]:
    """Per term, ``Sigma_r = sigma^2 T_r T_r'`` of every row (replicate) of ``theta``:
    ``(rows, k, k)`` arrays."""
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    sigma = np.atleast_1d(np.asarray(sigma, dtype=float))
    return [
        sigma[:, None, None] ** 2 * cov for cov in relative_covariances(theta, [t.k for t in terms])
    ]


def sdcor_names(terms) -> list[str]:
    """lme4's ``confint(oldNames = FALSE)`` names, in its order: ``sd_x|g`` on the
    diagonal, ``cor_y.x|g`` below it, then ``sigma``."""
    return _labels(terms, "sd", "cor", "sigma")


def sdcor_values(theta: np.ndarray, sigma: np.ndarray, terms) -> np.ndarray:
    """Standard deviations and correlations (``sdcor_names`` order) from ``theta`` and
    ``sigma``; rows are replicates."""
    cols = []
    for t, cov in zip(terms, term_covariances(theta, sigma, terms)):
        sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
        with np.errstate(invalid="ignore", divide="ignore"):
            cols += [
                sd[:, i] if i == j else cov[:, i, j] / (sd[:, i] * sd[:, j])
                for i, j in zip(*tril_index(t.k))
            ]
    return np.column_stack(cols + [np.atleast_1d(sigma)])


def variance_names(terms) -> list[str]:
    """``var_<col>|<factor>`` and ``cov_<col>.<col>|<factor>`` per term (lower triangle,
    column by column), then ``sigma2``."""
    return _labels(terms, "var", "cov", "sigma2")


def variance_values(theta: np.ndarray, sigma: np.ndarray, terms) -> np.ndarray:
    """Entries of ``sigma^2 T_r T_r'`` (``variance_names`` order); rows are replicates."""
    cols = [
        cov[:, i, j]
        for t, cov in zip(terms, term_covariances(theta, sigma, terms))
        for i, j in zip(*tril_index(t.k))
    ]
    return np.column_stack(cols + [np.atleast_1d(sigma) ** 2])
