"""``GLMMResult``: a fitted generalized linear mixed model, in pandas (lme4's ``glmerMod``).

The attributes a :class:`~interlace.CrossedLMEResult` user knows, where they make sense
for a binomial or Poisson model, with lme4's definitions:

* ``llf`` is lme4's ``logLik``: ``-(sum_i -2 log p(y_i | u) + |u|^2 + ldL2) / 2`` at the
  modes (the Laplace approximation with every constant of the family's density);
  ``aic``/``bic`` count ``beta`` and ``theta``.
* ``deviance`` is lme4's ``deviance()`` of a GLMM: the sum of the squared deviance
  residuals at the conditional modes; ``summary()`` prints ``-2 llf`` in its
  ``deviance`` column, as glmer's does.
* Fixed-effect tests are Wald z tests; ``fe_cov`` for ``nAGQ = 0`` is
  ``(R_X' R_X)^-1`` of the weighted solve at the modes, for ``nAGQ >= 1`` the ``beta``
  block of the inverse of half the deviance's Hessian in ``(theta, beta)`` (lme4's
  default ``use.hessian = TRUE``).
* ``variance_components`` and ``random_effects`` (the conditional modes) are on the link
  scale; the dispersion is 1 (``scale``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._base.checks import (
    check_level,
    check_n_bootstrap,
    check_positive_int,
    confint_method,
    confint_parm,
)
from ._base.errors import ModelSpecError
from ._base.precision import float64_scope
from ._base.seeds import Seed
from ._core.singular import SINGULAR_TOL, fit_is_singular
from ._inference.glmm_parametric import glmm_parametric_bootstrap, simulate_glmm
from ._inference.glmm_profile import glmm_profile_confint
from ._inference.replicates import BootstrapResult
from ._model.design import Design, fixed_matrix_for
from ._model.frames import as_pandas
from ._model.glmm_estimate import GlmmFit
from ._model.labelled import (
    included_factors,
    level_coefficients,
    random_effects,
    random_part_for,
    variance_components,
)
from ._model.offsets import new_offset, row_labels
from ._model.theta_layout import theta_to_lme4
from ._model.varcorr import sdcor_names
from ._summary import format_glmm_summary
from ._wald import FixedEffectsWald

__all__ = ["GLMMResult"]

_RESIDUAL_TYPES = ("deviance", "pearson", "response", "working")


@dataclass(frozen=True, repr=False)
class GLMMResult(FixedEffectsWald):
    """A fitted binomial, Poisson or negative binomial mixed model, as :func:`interlace.fit` returns it when
    ``family`` is not Gaussian (module docstring for the definitions).

    Attributes: ``fe_params``, ``fe_cov``, ``fe_bse``, ``fe_zvalues``, ``fe_pvalues``,
    ``fe_conf_int``, ``conf_int(level)``, ``variance_components``, ``random_effects``,
    ``theta``, ``fittedvalues`` (response scale), ``linear_predictor``, ``resid``
    (deviance residuals, lme4's default) and ``residuals(type=)``, ``llf``, ``aic``,
    ``bic``, ``deviance``, ``converged``, ``is_singular``, ``nobs``, ``ngroups``,
    ``family``, ``link``, ``nAGQ``, ``size`` (negative binomial); statsmodels' aliases ``params``, ``bse``,
    ``pvalues``, ``tvalues``, ``cov_params()``; ``simulate(n)`` and
    ``parametric_bootstrap(n_bootstrap)``.
    """

    fe_params: pd.Series
    fe_cov: pd.DataFrame
    variance_components: dict[str, float | pd.DataFrame]
    random_effects: dict[str, pd.Series | pd.DataFrame]
    fittedvalues: pd.Series
    linear_predictor: pd.Series
    theta: pd.Series
    llf: float
    deviance: float
    converged: bool
    n_iterations: int
    n_evaluations: int
    stop_reason: str
    formula: str
    model_fit: GlmmFit = field(compare=False)

    @classmethod
    def from_fit(cls, fit: GlmmFit) -> GLMMResult:
        design = fit.design
        fe_index = pd.Index(design.fe_names)
        index = design.row_index
        return cls(
            fe_params=pd.Series(fit.beta, index=fe_index),
            fe_cov=pd.DataFrame(fit.fe_cov, index=fe_index, columns=fe_index),
            variance_components=variance_components(design, fit.theta, 1.0),
            random_effects=random_effects(design, fit.blups),
            fittedvalues=pd.Series(fit.mu, index=index, name="fittedvalues"),
            linear_predictor=pd.Series(fit.eta, index=index, name="linear_predictor"),
            theta=pd.Series(fit.theta, index=pd.Index(design.theta_names), name="theta"),
            llf=fit.llf,
            deviance=fit.deviance_residual_sum,
            converged=fit.converged,
            n_iterations=fit.n_iterations,
            n_evaluations=fit.n_evaluations,
            stop_reason=fit.stop_reason,
            formula=design.formula,
            model_fit=fit,
        )

    @property
    def design(self) -> Design:
        return self.model_fit.design

    @property
    def family(self) -> str:
        return self.model_fit.family.name

    @property
    def size(self) -> float | None:
        """A negative binomial's size ``k`` (``V(mu) = mu + mu^2 / k``; lme4's
        ``getME(fit, "glmer.nb.theta")``), estimated or as given; None otherwise."""
        return self.model_fit.size

    @property
    def family_label(self) -> str:
        """The family as glmer's summary writes it: ``Negative Binomial(2.2531)``."""
        if self.size is not None:
            return f"Negative Binomial({self.size:.4f})"
        return self.family

    @property
    def link(self) -> str:
        return self.model_fit.family.link

    @property
    def nAGQ(self) -> int:  # noqa: N802 (lme4's name)
        return self.model_fit.nagq

    @property
    def scale(self) -> float:
        """The dispersion: 1 for binomial and Poisson models."""
        return 1.0

    @property
    def theta_lme4(self) -> pd.Series:
        """``theta`` in lme4's term order (``getME(fit, "theta")``)."""
        return theta_to_lme4(self.theta, self)

    @property
    def term_blups(self) -> tuple[np.ndarray, ...]:
        return self.model_fit.blups

    @property
    def fe_conf_int(self) -> pd.DataFrame:
        return self.conf_int(0.95)

    def conf_int(self, level: float | None = None, *, alpha: float | None = None) -> pd.DataFrame:
        """Wald intervals ``beta -/+ z_{(1+level)/2} se`` (``level`` 0.95 by default, or
        ``alpha=`` as statsmodels: ``level = 1 - alpha``)."""
        from statistics import NormalDist

        if alpha is not None:
            if level is not None:
                raise ModelSpecError("Give level or alpha, not both.")
            level = 1.0 - float(alpha)
        level = 0.95 if level is None else float(level)
        if not 0.5 <= level < 1.0:
            raise ModelSpecError(
                f"level={level} is not a confidence level in [0.5, 1): conf_int(0.95) or "
                "conf_int(alpha=0.05)."
            )
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        lo, hi = f"{(1 - level) / 2:.1%}", f"{(1 + level) / 2:.1%}"
        se = self.fe_bse
        return pd.DataFrame({lo: self.fe_params - z * se, hi: self.fe_params + z * se})

    # --- model-level ------------------------------------------------------------------
    @property
    def nobs(self) -> int:
        return self.model_fit.nobs

    @property
    def ngroups(self) -> dict[str, int]:
        return {name: len(lev) for name, lev in zip(self.design.factor_names, self.design.levels)}

    @property
    def df_modelwc(self) -> int:
        return self.model_fit.n_params

    @property
    def aic(self) -> float:
        return self.model_fit.aic

    @property
    def bic(self) -> float:
        return self.model_fit.bic

    @property
    def is_singular(self) -> bool:
        return fit_is_singular(self.model_fit, SINGULAR_TOL)

    # --- residuals --------------------------------------------------------------------
    @float64_scope
    def residuals(self, type: str = "deviance") -> pd.Series:  # noqa: A002 (lme4's name)
        """lme4's ``residuals(fit, type)``: ``"deviance"`` (``sign(y - mu) sqrt(d_i)``),
        ``"pearson"`` (``(y - mu) sqrt(w) / sqrt(V(mu))``), ``"response"`` (``y - mu``) or
        ``"working"`` (``(y - mu) / (d mu / d eta)``)."""
        fit = self.model_fit
        fam, y, mu, w = fit.family, fit.design.y, fit.mu, fit.prior_weights
        if type == "deviance":
            d = np.asarray(fam.deviance_residuals(y, mu, w, fit.size))
            r = np.sign(y - mu) * np.sqrt(np.maximum(d, 0.0))
        elif type == "pearson":
            r = (y - mu) * np.sqrt(w) / np.sqrt(np.asarray(fam.variance(mu, fit.size)))
        elif type == "response":
            r = y - mu
        elif type == "working":
            r = (y - mu) / np.asarray(fam.mu_eta(fit.eta))
        else:
            raise ModelSpecError(f"type={type!r}: use one of {_RESIDUAL_TYPES}.")
        return pd.Series(r, index=fit.design.row_index, name=f"{type}_resid")

    @property
    def resid(self) -> pd.Series:
        """Deviance residuals (lme4's default ``residuals`` of a GLMM)."""
        return self.residuals("deviance")

    # --- prediction -------------------------------------------------------------------
    def coef(self) -> dict[str, pd.DataFrame]:
        """lme4's ``coef(fit)``: per grouping factor, each level's coefficients, the fixed
        effects plus that level's conditional modes (its own intercept and slopes), one
        row per level and one column per fixed effect. A random-effect column with no
        fixed effect, such as ``(0 + f | g)``'s first level, comes first with a fixed part
        of 0, as in lme4. ``random_effects`` holds the modes alone."""
        return level_coefficients(self.design, self.fe_params, self.model_fit.blups)

    @float64_scope
    def predict(
        self,
        newdata: Any = None,
        include_re: bool | str | Sequence[str] = True,
        type: str = "response",  # noqa: A002 (lme4's name)
        offset=None,
    ) -> pd.Series:
        """Predictions on the response scale (``type="response"``) or the link scale
        (``type="link"``), with the conditional modes (``include_re``), at the population
        level (``include_re=False``), or with the modes of some grouping factors only
        (``include_re="subject"`` or a list: lme4's ``re.form = ~ (1 | subject)``).
        Levels not seen in the fit (or missing) get 0. ``newdata``'s
        ``offset(...)`` terms are evaluated from its columns; a model fitted with
        ``offset=`` needs ``offset=`` here too (a column of ``newdata`` or one value per
        row)."""
        if type not in ("response", "link"):
            raise ModelSpecError(f"type={type!r}: use 'response' or 'link'.")
        fit = self.model_fit
        if newdata is None and offset is not None:
            raise ModelSpecError(
                "offset= goes with newdata=: without newdata the predictions are for the "
                "fitted rows, with the offset of the fit. Pass newdata (e.g. the fitted data) "
                "together with the new offset."
            )
        factors = included_factors(self.design, include_re)
        if newdata is None:
            # the fit's linear predictor less the random parts of the factors left out
            left_out = [f for f in self.design.factor_names if f not in factors]
            eta = fit.eta
            if left_out:
                eta = eta - random_part_for(self.design, self.term_blups, None, factors=left_out)
            index = self.design.row_index
        else:
            frame = as_pandas(newdata, "newdata")
            eta = fit.fixed_part(fixed_matrix_for(self.design, frame))
            eta = eta + new_offset(
                fit.offset_terms, fit.offset_argument, frame, offset, row_labels(newdata)
            )
            if factors:
                eta = eta + random_part_for(
                    self.design, self.term_blups, frame, stacklevel=5, factors=factors
                )
            index = frame.index
        eta = np.asarray(eta, dtype=float)
        values = eta if type == "link" else np.asarray(fit.family.linkinv(eta))
        return pd.Series(values, index=index, name="predicted")

    # --- simulation and bootstrap ----------------------------------------------------
    def simulate(self, n: int = 1, seed: Seed = None) -> pd.DataFrame:
        """``n`` responses drawn from the fitted model with new random effects (lme4's
        ``simulate(fit)``), on the scale the model reads (binomial: proportions of the
        trials); columns ``sim_1 ... sim_n``."""
        n = check_positive_int(n, "n")
        Y = simulate_glmm(self.model_fit, n, seed)
        return pd.DataFrame(
            Y.T, index=self.design.row_index, columns=[f"sim_{i + 1}" for i in range(n)]
        )

    @float64_scope
    def parametric_bootstrap(self, n_bootstrap: int = 200, seed: Seed = None) -> BootstrapResult:
        """Refit the model to ``n_bootstrap`` simulated responses (lme4's
        ``bootMer(type = "parametric")``), one after another on the fit's compiled
        evaluation, or, for many draws or a large model, side by side in vectorised lanes
        from the fitted ``theta`` (compiled once, ~10 s):
        a :class:`~interlace.BootstrapResult` with the fixed effects,
        ``sd_*``/``cor_*`` and ``theta`` per replicate, ``se()`` and ``conf_int()``."""
        n_bootstrap = check_n_bootstrap(n_bootstrap)
        return glmm_parametric_bootstrap(self.model_fit, n_bootstrap, seed)

    def confint(
        self,
        method: str = "wald",
        level: float = 0.95,
        n_bootstrap: int = 1000,
        seed: Seed = None,
        parm: str | list[str] | None = None,
    ) -> pd.DataFrame:
        """Intervals for ``sd_*``/``cor_*`` and the fixed effects (lme4's ``confint(fit,
        oldNames = FALSE)`` rows, columns ``2.5 %``, ``97.5 %``). ``wald``: fixed effects
        only (NaN for the variance parameters, as lme4); ``bootstrap``: percentile
        intervals of :meth:`parametric_bootstrap`; ``profile``: profile-likelihood
        intervals of the fit's own ``-2 logLik`` (lme4's default for ``glmer``; exact ends
        by root finding, a few hundred constrained refits on the compiled evaluation;
        ``nAGQ >= 1`` only, a negative binomial's size held at its estimate). ``parm``
        (lme4's): a row name or a list of them, ``"theta_"`` (the sd/cor rows) or
        ``"beta_"`` (the fixed effects); a profile then computes only those."""
        level = check_level(level)
        names = sdcor_names(self.design.terms)[:-1]  # no residual sigma
        rows = confint_parm(parm, names, list(self.fe_params.index))
        cols = [f"{100 * (0.5 - level / 2):g} %", f"{100 * (0.5 + level / 2):g} %"]
        method = confint_method(method)
        if method == "wald":
            wald = self.conf_int(level).set_axis(cols, axis=1)
            top = pd.DataFrame(np.nan, index=names, columns=cols)
            return pd.concat([top, wald]).loc[rows]
        if method == "bootstrap":
            boot = self.parametric_bootstrap(n_bootstrap, seed)
            ci = boot.conf_int("percentile", level)
            return ci.loc[rows].set_axis(cols, axis=1)
        if method == "profile":
            return glmm_profile_confint(self.model_fit, level, rows)
        raise ModelSpecError(f"method must be 'wald', 'bootstrap' or 'profile', got {method!r}.")

    def __repr__(self) -> str:
        groups = ", ".join(f"{k}: {v}" for k, v in self.ngroups.items())
        return (
            f"<GLMMResult {self.family}({self.link}) nAGQ={self.nAGQ} {self.formula!r} "
            f"nobs={self.nobs} groups=({groups}) logLik={self.llf:.4f} "
            f"converged={self.converged}>"
        )

    def coef_table(self, ddf: str = "normal") -> pd.DataFrame:
        """glmer's fixed-effect table (``coef(summary(fit))``): ``Estimate``,
        ``Std. Error``, ``z value``, ``Pr(>|z|)`` (Wald z tests, from ``fe_cov``). Only
        ``ddf="normal"``: denominator degrees of freedom (Satterthwaite, Kenward-Roger)
        belong to linear mixed models."""
        if ddf != "normal":
            raise ModelSpecError(
                f"ddf={ddf!r}: a GLMM's fixed effects are tested with z statistics, as "
                "glmer does (ddf='normal'); Satterthwaite and Kenward-Roger degrees of "
                "freedom are defined for linear mixed models. For a test that does not lean "
                "on the normal approximation, compare nested fits with interlace.anova "
                "(likelihood ratio) or use confint(method='profile') or "
                "parametric_bootstrap()."
            )
        return self.z_table()

    def summary(self) -> str:
        """glmer's ``summary()`` layout."""
        return format_glmm_summary(self)
