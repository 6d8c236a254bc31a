"""``CrossedLMEResult``: the fitted model, in pandas (the pandas edge, outbound).

Everything a user reads is a pandas object labelled by term names and level labels.
Inference on fixed effects uses the normal approximation: ``z = beta / se``, two-sided
``p = 2 (1 - Phi(|z|))``, 95% interval ``beta -/+ 1.96 se`` (the results page's
convention; ``conf_int(level)`` or ``conf_int(alpha=)`` gives intervals with the exact
normal quantile). statsmodels' names (``params``, ``bse``, ...) are aliases of the page's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from ._base.seeds import Seed, key_from_seed
from ._core.singular import SINGULAR_TOL, fit_is_singular
from ._glmm_result import GLMMResult
from ._inference.parametric import BootstrapResult, parametric_bootstrap, simulate_from
from ._inference.profile import profile_confint
from ._inference.resample import resampled_levels_bootstrap
from ._inference.response_bootstrap import (
    chunked_replicates,
    weighted_mean,
    weighted_median,
)
from ._inference.satterthwaite import satterthwaite
from ._model.design import Design, fixed_matrix_for
from ._model.estimate import ModelFit, fit_design
from ._model.frames import as_pandas
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
from ._summary import format_summary
from ._wald import FixedEffectsWald

__all__ = ["CrossedLMEResult", "isSingular"]

_STATISTICS = {"median": weighted_median, "mean": weighted_mean}


@dataclass(frozen=True, repr=False)
class CrossedLMEResult(FixedEffectsWald):
    """A fitted linear mixed model with crossed or nested random effects (intercepts and
    slopes), as :func:`interlace.fit` returns it.

    Attributes follow the results page: ``fe_params``, ``fe_bse``, ``fe_pvalues``,
    ``fe_conf_int``, ``fe_cov`` (statsmodels' names are aliases: ``params``, ``bse``,
    ``pvalues``, ``tvalues``, ``conf_int(alpha=)``, ``cov_params()``),
    ``variance_components``, ``scale``, ``random_effects``, ``fittedvalues``, ``resid``,
    ``aic``, ``bic``, ``llf``, ``converged``, ``nobs``, ``ngroups``; plus ``theta``
    (entries of the relative covariance factors, lme4's layout and names within each
    term: ``sigma_g / sigma`` for an intercept; terms in the model's order, where lme4
    orders them by number of levels: ``theta_lme4``),
    ``deviance`` (``-2 llf``: lme4's REML criterion or ML deviance), ``method``,
    ``n_iterations``, ``n_evaluations``, ``stop_reason`` (why the optimiser stopped:
    ``"gradient small"``, ``"deviance stopped changing"``, ``"maximum iterations"`` or
    ``"non-finite deviance"``) and ``grad_theta`` (the deviance's gradient in ``theta``
    at the optimum, a convergence check). ``model_fit`` is the numeric record underneath
    (:class:`~interlace._model.estimate.ModelFit`: arrays, design, cross-products), which
    bootstraps, profiles and diagnostics reuse. A result pickles (``pickle.dumps``).
    """

    fe_params: pd.Series
    fe_cov: pd.DataFrame
    scale: float
    variance_components: dict[str, float | pd.DataFrame]  # DataFrame: a factor with slopes
    random_effects: dict[str, pd.Series | pd.DataFrame]  # DataFrame: a factor with slopes
    fittedvalues: pd.Series
    resid: pd.Series
    theta: pd.Series
    deviance: float
    llf: float
    method: str
    converged: bool
    n_iterations: int
    n_evaluations: int
    stop_reason: str  # why the optimiser stopped: "gradient small", "maximum iterations", ...
    grad_theta: pd.Series
    formula: str
    model_fit: ModelFit = field(compare=False)

    @classmethod
    def from_fit(cls, fit: ModelFit) -> CrossedLMEResult:
        """The pandas view of a :class:`ModelFit` (lme4's ``mkMerMod``)."""
        design = fit.design
        fe_index = pd.Index(design.fe_names)
        names = pd.Index(fit.theta_names)
        return cls(
            fe_params=pd.Series(fit.beta, index=fe_index),
            fe_cov=pd.DataFrame(fit.fe_cov, index=fe_index, columns=fe_index),
            scale=fit.sigma2,
            variance_components=variance_components(design, fit.theta, fit.sigma2),
            random_effects=random_effects(design, fit.blups),
            fittedvalues=pd.Series(fit.fitted, index=design.row_index, name="fittedvalues"),
            resid=pd.Series(design.y - fit.fitted, index=design.row_index, name="resid"),
            theta=pd.Series(fit.theta, index=names, name="theta"),
            deviance=fit.deviance,
            llf=fit.llf,
            method=fit.method,
            converged=fit.converged,
            n_iterations=fit.n_iterations,
            n_evaluations=fit.n_evaluations,
            stop_reason=fit.stop_reason,
            grad_theta=pd.Series(fit.grad, index=names, name="grad_theta"),
            formula=design.formula,
            model_fit=fit,
        )

    @property
    def design(self) -> Design:
        """The model's design (arrays, term structure, level labels)."""
        return self.model_fit.design

    @property
    def term_blups(self) -> tuple[np.ndarray, ...]:
        """Per random term, its BLUPs as a ``(levels, k)`` array."""
        return self.model_fit.blups

    def _ml_fit(self) -> ModelFit:
        """This model fitted by ML (itself if it was): likelihood-ratio tests and profiles
        compare ML deviances, as lme4's ``refitML``."""
        if self.method == "ML":
            return self.model_fit
        return fit_design(self.design, "ML", warn=False)

    # --- fixed-effect inference (normal approximation) --------------------------------
    @property
    def fe_conf_int(self) -> pd.DataFrame:
        """95% Wald intervals ``beta -/+ 1.96 se``, columns ``2.5 %`` and ``97.5 %``."""
        return self._wald(1.96, "2.5 %", "97.5 %")

    def conf_int(self, level: float | None = None, *, alpha: float | None = None) -> pd.DataFrame:
        """Wald intervals of the fixed effects (the page's ``fe_conf_int``) at ``level``,
        or at ``1 - alpha`` with statsmodels' ``alpha=``, with the exact quantile
        ``z = Phi^-1((1+level)/2)`` (as lme4's ``confint(fit, method = "Wald")``; the
        page's ``fe_conf_int`` rounds it to 1.96). Columns ``2.5 %``, ``97.5 %`` at 95%.

        A level below 0.5 is refused: ``conf_int(0.05)`` is statsmodels' ``alpha`` written
        where interlace reads a level."""
        if alpha is not None:
            if level is not None:
                raise ModelSpecError("Give either level= or alpha= to conf_int, not both.")
            if not isinstance(alpha, (int, float, np.floating)) or not 0 < alpha < 1:
                raise ModelSpecError(f"alpha must be between 0 and 1, got {alpha!r}.")
            level = 1 - float(alpha)
        elif level is None:
            level = 0.95
        elif isinstance(level, (int, float, np.floating)) and 0 < level < 0.5:
            raise ModelSpecError(
                f"conf_int's argument is a confidence level, got {level!r}: for a "
                f"{100 * (1 - level):g}% interval write conf_int({1 - level:g}) or "
                f"conf_int(alpha={level!r}) (statsmodels' alpha)."
            )
        return self._exact_wald(level)

    def _exact_wald(self, level: float) -> pd.DataFrame:
        a = (1 - check_level(level)) / 2
        from scipy.special import ndtri

        return self._wald(float(ndtri(1 - a)), f"{100 * a:g} %", f"{100 * (1 - a):g} %")

    def _wald(self, z: float, lo: str, hi: str) -> pd.DataFrame:
        return pd.DataFrame(
            {lo: self.fe_params - z * self.fe_bse, hi: self.fe_params + z * self.fe_bse}
        )

    @property
    def nobs(self) -> int:
        return self.design.nobs

    @property
    def ngroups(self) -> dict[str, int]:
        return {name: len(lev) for name, lev in zip(self.design.factor_names, self.design.levels)}

    @property
    def df_modelwc(self) -> int:
        """Number of estimated parameters ``k``: fixed effects, variances, residual."""
        return self.model_fit.n_params

    @property
    def aic(self) -> float:
        """``-2 llf + 2 k`` (Akaike 1974)."""
        return self.model_fit.aic

    @property
    def bic(self) -> float:
        """``-2 llf + k log(n)`` (Schwarz 1978)."""
        return self.model_fit.bic

    @property
    def is_singular(self) -> bool:
        """lme4's rule: a diagonal ``theta`` (a relative sd) below 1e-4."""
        return self.model_fit.is_singular

    @property
    def theta_lme4(self) -> pd.Series:
        """``theta`` in lme4's term order, as ``getME(fit, "theta")`` (lme4's names):
        :func:`interlace.theta_to_lme4`."""
        return theta_to_lme4(self.theta, self)

    def residuals(self, type: str = "response") -> pd.Series:  # noqa: A002 (lme4's name)
        """lme4's ``residuals(fit, type=)``: ``"response"`` (``y - fitted``, as
        :attr:`resid`) or ``"pearson"`` (``sqrt(w_i) (y_i - fitted_i)`` with prior weights
        ``w``; the response residuals without)."""
        if type not in ("response", "pearson"):
            raise ModelSpecError(f"type={type!r}: use 'response' or 'pearson'.")
        w = self.design.weights
        if type == "response" or w is None:
            return self.resid.rename(type)
        return (self.resid * np.sqrt(w)).rename(type)

    # --- prediction -------------------------------------------------------------------
    def coef(self) -> dict[str, pd.DataFrame]:
        """lme4's ``coef(fit)``: per grouping factor, each level's coefficients, the fixed
        effects plus that level's conditional modes (its own intercept and slopes), one
        row per level and one column per fixed effect. A random-effect column with no
        fixed effect, such as ``(0 + f | g)``'s first level, comes first with a fixed part
        of 0, as in lme4. ``random_effects`` holds the modes alone."""
        return level_coefficients(self.design, self.fe_params, self.model_fit.blups)

    def predict(
        self, newdata: Any = None, include_re: bool | str | Sequence[str] = True, offset: Any = None
    ) -> pd.Series:
        """Predictions ``X beta (+ sum_j b_j[level])``, plus the model's offsets.

        Conditional (with BLUPs, random slopes applied to ``newdata``'s columns) by
        default, marginal with ``include_re=False``, or with the BLUPs of some grouping
        factors only: ``include_re="subject"`` or a list of names (lme4's ``re.form =
        ~ (1 | subject)``; ``newdata`` then needs only those factors' columns).
        ``newdata`` is coded as the fit was:
        stateful transforms keep the state learnt on the fitted data (``scale(x)`` uses
        its mean and sd, ``poly``/``bs`` its basis, as R's ``predict``). Grouping levels
        are matched by their labels across dtypes, as R matches factor levels (``"308"``
        and ``308.0`` are the fitted level ``308``). Levels not seen in the fit get BLUPs
        of 0 (the population mean); so do rows with a missing grouping value, with a
        ``UserWarning`` that counts them. A categorical fixed-effect level not seen in
        the fit raises ``DataError``; a missing predictor gives NaN for its row.
        ``newdata`` may be any frame :func:`interlace.fit` accepts (pandas, polars,
        pyarrow, a dict of columns); the predictions are a pandas Series. Its
        ``offset(...)`` terms are evaluated from its columns; a model fitted with
        ``offset=`` needs ``offset=`` here too (a column of ``newdata`` or one value per
        row).
        """
        beta = self.fe_params.to_numpy()
        design = self.design
        if newdata is None and offset is not None:
            raise ModelSpecError(
                "offset= goes with newdata=: without newdata the predictions are for the "
                "fitted rows, with the offset of the fit. Pass newdata (e.g. the fitted data) "
                "together with the new offset."
            )
        if newdata is None:
            eta = design.X @ beta
            if design.offset is not None:
                eta = eta + design.offset
            frame, index = None, design.row_index
        else:
            labels = row_labels(newdata)  # a pandas Series offset= is matched to these
            newdata = as_pandas(newdata, "newdata")
            eta = fixed_matrix_for(design, newdata) @ beta + new_offset(
                design.offset_terms, design.offset_argument, newdata, offset, labels
            )
            frame, index = newdata, newdata.index
        factors = included_factors(design, include_re)
        if factors:
            eta = eta + random_part_for(design, self.term_blups, frame, factors=factors)
        return pd.Series(eta, index=index, name="predicted")

    # --- bootstrap --------------------------------------------------------------------
    @float64_scope
    def bootstrap_se(
        self,
        statistic: str | Callable = "median",
        n_bootstrap: int = 1000,
        resample_level: str = "group",
        seed: Seed = None,
        group: str | None = None,
    ) -> float:
        """Bootstrap standard error of a scalar statistic of the response.

        ``resample_level="group"`` resamples the levels of ``group`` (default: the first
        grouping factor) with replacement and keeps all rows of each sampled level (the
        cluster bootstrap); ``"observation"`` resamples rows. ``statistic`` is
        ``"median"``, ``"mean"`` or a JAX-traceable ``f(y, weights) -> scalar`` where
        ``weights`` are the multiplicities of the rows. All replicates run in one
        vectorised call. Returns the standard deviation (ddof=1) of the replicates.
        """
        stat = _STATISTICS.get(statistic) if isinstance(statistic, str) else statistic
        if stat is None or not callable(stat):
            raise ModelSpecError(
                "statistic must be 'median', 'mean' or a callable f(y, weights); "
                f"got {statistic!r}."
            )
        n_bootstrap = check_n_bootstrap(n_bootstrap)
        if resample_level == "observation":
            codes, n_levels = None, 0
        elif resample_level == "group":
            names = self.design.factor_names
            group = names[0] if group is None else group
            if group not in names:
                raise ModelSpecError(
                    f"group={group!r} is not a grouping factor of the model {list(names)}."
                )
            codes = self.design.codes[names.index(group)]
            n_levels = len(self.design.levels[names.index(group)])
        else:
            raise ModelSpecError(
                f"resample_level must be 'group' or 'observation', got {resample_level!r}."
            )
        reps = chunked_replicates(seed, self.design.y, codes, n_levels, stat, int(n_bootstrap))
        return float(np.std(reps, ddof=1))

    # --- inference tables ------------------------------------------------------------------
    @float64_scope
    def coef_table(self, ddf: str = "normal") -> pd.DataFrame:
        """Fixed-effect table. ``ddf="normal"``: z-tests (the page's p-values);
        ``ddf="satterthwaite"``: t-tests with Satterthwaite degrees of freedom
        (lmerTest's default), from the autodiff Hessian of the deviance."""
        if ddf == "normal":
            return self.z_table()
        if ddf == "satterthwaite":
            return satterthwaite(self.model_fit)
        raise ModelSpecError(f"ddf must be 'normal' or 'satterthwaite', got {ddf!r}.")

    @float64_scope
    def confint(
        self,
        method: str = "wald",
        level: float = 0.95,
        n_bootstrap: int = 1000,
        seed: Seed = None,
        parm: str | list[str] | None = None,
    ) -> pd.DataFrame:
        """Intervals for ``sd_*``/``cor_*``/``sigma`` and the fixed effects (lme4's
        ``confint(oldNames = FALSE)`` rows). ``wald``: fixed effects only (NaN for the
        variance parameters, as lme4); ``bootstrap``: percentile intervals of a
        parametric bootstrap; ``profile``: profile-likelihood intervals of the ML
        deviance, as lme4 computes them (also for REML fits). ``parm`` (lme4's): a row
        name or a list of them, ``"theta_"`` (the variance rows) or ``"beta_"`` (the
        fixed effects); a profile then computes only those."""
        names = sdcor_names(self.design.terms)
        rows = confint_parm(parm, names, list(self.fe_params.index))
        method = confint_method(method)
        if method == "wald":
            wald = self._exact_wald(level)
            top = pd.DataFrame(np.nan, index=names, columns=wald.columns)
            return pd.concat([top, wald]).loc[rows]
        if method == "bootstrap":
            boot = self.parametric_bootstrap(n_bootstrap, seed)
            ci = boot.conf_int("percentile", level)
            return ci.loc[rows]
        if method == "profile":
            return profile_confint(self._ml_fit(), level, rows)
        raise ModelSpecError(f"method must be 'wald', 'bootstrap' or 'profile', got {method!r}.")

    # --- simulation and parametric bootstrap -------------------------------------------
    @float64_scope
    def simulate(self, n: int = 1, seed: Seed = None) -> pd.DataFrame:
        """``n`` responses drawn from the fitted model with new random effects and
        residuals (lme4's ``simulate(fit)``); columns ``sim_1 ... sim_n``."""
        n = check_positive_int(n, "n")
        Y = np.asarray(simulate_from(self.model_fit, n, key_from_seed(seed)))
        return pd.DataFrame(
            Y.T, index=self.design.row_index, columns=[f"sim_{i + 1}" for i in range(n)]
        )

    @float64_scope
    def parametric_bootstrap(
        self,
        n_bootstrap: int = 1000,
        seed: Seed = None,
        statistic: Callable | None = None,
        progress: bool | None = None,
    ) -> BootstrapResult:
        """Refit the model to ``n_bootstrap`` simulated responses in one vectorised,
        compiled call (lme4's ``bootMer(type = "parametric")``); returns a
        :class:`~interlace.BootstrapResult` with the replicates, ``se()`` and
        ``conf_int(method="percentile"|"basic")``. ``progress``: a progress bar (default:
        only when standard error is a terminal)."""
        return parametric_bootstrap(self.model_fit, n_bootstrap, seed, statistic, progress=progress)

    @float64_scope
    def cluster_bootstrap(
        self,
        n_bootstrap: int = 1000,
        group: str | None = None,
        seed: Seed = None,
        statistic: Callable | None = None,
        progress: bool | None = None,
    ) -> BootstrapResult:
        """Refit the model to ``n_bootstrap`` resamples of the levels of ``group``
        (default: the first grouping factor), each drawn level a new cluster; all refits
        in one vectorised call. Returns a ``BootstrapResult`` as
        :meth:`parametric_bootstrap` does."""
        group = self.design.factor_names[0] if group is None else group
        return resampled_levels_bootstrap(
            self.model_fit, [group], n_bootstrap, seed, statistic, progress=progress
        )

    @float64_scope
    def pigeonhole_bootstrap(
        self,
        n_bootstrap: int = 1000,
        groups: Sequence[str] | None = None,
        seed: Seed = None,
        statistic: Callable | None = None,
        progress: bool | None = None,
    ) -> BootstrapResult:
        """The pigeonhole bootstrap for crossed designs (Owen 2007): the levels of every
        factor in ``groups`` (default: all) are resampled independently and the model is
        refitted to the cells of the drawn levels; vectorised as
        :meth:`cluster_bootstrap`."""
        groups = list(self.design.factor_names) if groups is None else groups
        return resampled_levels_bootstrap(
            self.model_fit, groups, n_bootstrap, seed, statistic, progress=progress
        )

    # --- text -------------------------------------------------------------------------
    def __repr__(self) -> str:
        """One line, no arrays: method, formula, nobs, levels per grouping factor, lme4's
        REML criterion (or ML deviance) and convergence; ``summary()`` has the rest."""
        groups = ", ".join(f"{k}: {v}" for k, v in self.ngroups.items())
        criterion = "REML criterion" if self.method == "REML" else "deviance"
        return (
            f"<CrossedLMEResult {self.method} '{self.formula}' nobs={self.nobs} "
            f"groups=({groups}) {criterion}={self.deviance:.4f} converged={self.converged}>"
        )

    def summary(self) -> str:
        """An lme4-style text summary (``print(result.summary())``)."""
        return format_summary(self)


def isSingular(result: CrossedLMEResult | GLMMResult, tol: float = SINGULAR_TOL) -> bool:  # noqa: N802 (lme4's name)
    """Is the fit on the boundary of the parameter space?

    A fit is singular when a diagonal entry of some relative covariance factor (for
    an intercept, ``sigma_g / sigma``) is below ``tol`` (lme4's ``isSingular``): a
    variance is estimated as (essentially) zero, or for a vector-valued term the
    covariance matrix is rank deficient (e.g. a correlation of +-1). This is a valid
    estimate, not a failure: the data carry no evidence of that variation. Consider
    simplifying the random effects, or keep them for design reasons; inference about
    such a variance (e.g. Wald intervals) is unreliable at the boundary.
    """
    return fit_is_singular(result.model_fit, tol)
