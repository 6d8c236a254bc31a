"""Wald z tests of the fixed effects and statsmodels' names for them, shared by
:class:`~interlace.CrossedLMEResult` and :class:`~interlace.GLMMResult` (a mixin: the
result supplies ``fe_params`` and ``fe_cov``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["FixedEffectsWald"]


class FixedEffectsWald:
    """``fe_bse``, ``fe_zvalues``, ``fe_pvalues``, their :meth:`z_table`, and the aliases ``params``, ``bse``,
    ``pvalues``, ``tvalues``, ``cov_params()`` from ``fe_params`` and ``fe_cov``."""

    fe_params: pd.Series
    fe_cov: pd.DataFrame

    @property
    def fe_bse(self) -> pd.Series:
        """Standard errors: square roots of the diagonal of ``fe_cov``."""
        return pd.Series(np.sqrt(np.diag(self.fe_cov.to_numpy())), index=self.fe_params.index)

    @property
    def fe_zvalues(self) -> pd.Series:
        return self.fe_params / self.fe_bse

    @property
    def fe_pvalues(self) -> pd.Series:
        """Two-sided p-values of the z-test, ``2 (1 - Phi(|beta / se|))`` (glmer's and the
        results page's ``Pr(>|z|)``)."""
        from scipy.special import ndtr  # standard normal cdf; imported on use

        return pd.Series(2.0 * ndtr(-np.abs(self.fe_zvalues)), index=self.fe_params.index)

    def z_table(self) -> pd.DataFrame:
        """The fixed effects' Wald z table in lme4's column names (``coef(summary(fit))``):
        ``Estimate``, ``Std. Error``, ``z value`` (``beta / se``), ``Pr(>|z|)``."""
        return pd.DataFrame(
            {
                "Estimate": self.fe_params,
                "Std. Error": self.fe_bse,
                "z value": self.fe_zvalues,
                "Pr(>|z|)": self.fe_pvalues,
            }
        )

    # --- statsmodels' names -----------------------------------------------------------
    @property
    def params(self) -> pd.Series:
        """Alias of ``fe_params`` (statsmodels' name): the same Series."""
        return self.fe_params

    @property
    def bse(self) -> pd.Series:
        """Alias of ``fe_bse`` (statsmodels' name)."""
        return self.fe_bse

    @property
    def pvalues(self) -> pd.Series:
        """Alias of ``fe_pvalues`` (statsmodels' name): two-sided z-test."""
        return self.fe_pvalues

    @property
    def tvalues(self) -> pd.Series:
        """Alias of ``fe_zvalues`` (statsmodels' name; as in statsmodels' MixedLM they are
        z statistics ``beta / se``, tested against the normal distribution)."""
        return self.fe_zvalues

    def cov_params(self) -> pd.DataFrame:
        """Alias of ``fe_cov`` (statsmodels' name): the fixed effects' covariance,
        labelled by term; the same DataFrame."""
        return self.fe_cov
