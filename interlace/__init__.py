"""interlace: linear mixed models with crossed random effects, fast and differentiable on JAX.

>>> import interlace
>>> df = interlace.datasets.exam_scores()
>>> result = interlace.fit("score ~ hours_studied + prior_gpa", data=df,
...                        groups=["student_id", "school_id"])   # doctest: +SKIP

Package map
-----------
Layers import downward only (``tests/test_layout.py`` checks it); the package root is
the public surface and may use every layer.

``_base/`` (no numerics):
    ``errors`` exception classes; ``precision`` float64 scopes; ``compilation_cache`` the
    opt-in persistent compilation cache; ``jit`` ``jax.jit`` with interlace's XLA compile
    options; ``seeds`` seeds to JAX keys and numpy generators; ``checks`` shared argument
    checks; ``progress`` progress bars; ``blas_threads`` one BLAS thread while a fit's
    evaluations run.
``_core/`` (JAX and numpy only, no pandas):
    ``theta`` layout of the covariance parameters and ``T`` from ``theta``; ``centring``
    random-slope columns far from 0 searched centred (the same model, ``theta`` mapped);
    ``linalg`` Cholesky and triangular solves with their derivative and batching rules;
    ``standardize`` centring and scaling of y and X; ``crossprod`` one pass over the rows
    to the cross-products; ``arrays`` the model's row data as a pytree and the
    cross-products as a JAX function of it; ``deviance`` the profiled deviance and the
    estimates at ``theta``; ``evaluation`` the one compiled evaluation (deviance,
    gradient, estimates) a single fit's optimiser calls; ``start`` starting values;
    ``optimize`` L-BFGS over ``theta`` (compiled, or on the host over ``evaluation``);
    ``newton`` Newton steps that finish a single fit whose L-BFGS stalled;
    ``buckets`` size classes (small models padded to shared compiled shapes);
    ``glmm_buckets`` a small GLMM's rows padded to its size class; ``fitting``
    one fit of a model's arrays; ``refit`` the batched refit engine; ``simulate``
    responses drawn from the model; ``sharding`` rows across devices; ``singular`` the
    boundary rule; ``family`` GLMM response families and links; ``pirls`` conditional
    modes (penalised IRLS) and the Laplace / quadrature deviance of a GLMM;
    ``logdet_weights`` the derivative of the Laplace log-determinant in the working
    weights (one factorisation per Laplace step); ``stepwise``
    an L-BFGS with one objective evaluation per loop iteration (vectorised GLMM fits).
``_model/`` (the pandas edge, inbound):
    ``frames`` any data frame (polars, pyarrow, a dict of columns) to pandas, through
    narwhals; ``formula`` lme4 random terms split off the formula; ``design``
    validated arrays and labels of a model; ``offsets`` offsets, prior weights and
    expressions over the data; ``weighted_design`` a linear model's weights and
    offsets; ``estimate`` fitting a design to a ``ModelFit`` record; ``varcorr``
    variance components, sd/cor and their lme4 names; ``theta_layout`` ``theta`` in
    lme4's term order; ``labelled`` variance components, random effects and
    predictions' random part in pandas; ``glmm_design`` a GLMM's
    response forms, weights and offsets; ``glmm_estimate`` fitting a GLMM to a
    ``GlmmFit`` record; ``glmm_many`` many responses on one GLMM design, vectorised.
``_inference/`` (reads a ``ModelFit``):
    ``parametric`` simulation and the parametric bootstrap; ``resample`` cluster and
    pigeonhole refit bootstraps; ``replicates`` the bootstrap result table;
    ``response_bootstrap`` bootstrap of a statistic of the response; ``profile``
    profile-likelihood intervals; ``satterthwaite`` t-tests with Satterthwaite df;
    ``anova`` likelihood-ratio tests; ``glmm_parametric`` simulation from a GLMM and its
    parametric bootstrap; ``glmm_profile`` a GLMM's profile-likelihood intervals.
``_diagnostics/``:
    ``residuals`` residuals, leverage and Cook's distance; ``leverage`` the hat diagonal
    and conditional variances of the BLUPs; ``influence`` exact deletion diagnostics.
root (public):
    ``_fit`` ``fit``; ``_result`` ``CrossedLMEResult`` (pandas view of a ``ModelFit``);
    ``_glmm_result`` ``GLMMResult`` (pandas view of a ``GlmmFit``); ``_wald`` the fixed
    effects' z tests and statsmodels' names both results share;
    ``_summary`` the text summary; ``_functional`` the JAX-native layer (``model_arrays``,
    ``deviance``, ``fit_arrays``, ``fit_many``, ...); ``datasets``; ``plots``;
    ``__main__`` ``python -m interlace warmup``.

From lme4
---------
=====================  ==========================================================
lme4                   interlace
=====================  ==========================================================
``lFormula``           ``_model.design.build_design`` (a ``Design``)
``mkLmerDevfun``       ``_core.deviance.profiled_deviance`` / ``interlace.deviance``
``optimizeLmer``       ``_core.optimize.minimize_on_host`` (``minimize_deviance``)
``mkMerMod``           ``CrossedLMEResult.from_fit``
``lmer``               ``interlace.fit``
``glmer``              ``interlace.fit(..., family="binomial" | "poisson")``
``refit``              ``interlace.fit_many``; ``_core.refit.refit_all``
``refitML``            ``_model.estimate.fit_design(design, "ML")``
``bootMer``            ``result.parametric_bootstrap`` / ``cluster_bootstrap``
``simulate``           ``result.simulate``
``getME(, "theta")``   ``result.theta_lme4``
=====================  ==========================================================
"""

# Importing interlace changes no process-wide JAX setting: float64 is scoped to each call
# (``_base.precision``) and the persistent compilation cache is opt-in
# (``_base.compilation_cache``; ``INTERLACE_COMPILATION_CACHE=1`` turns it on here).
from . import datasets
from ._base.compilation_cache import cache_from_environment as _cache_from_environment
from ._base.compilation_cache import enable_compilation_cache
from ._base.errors import (
    DataError,
    FormulaError,
    InterlaceError,
    MissingColumnError,
    ModelSpecError,
)
from ._base.precision import PrecisionError, float64_functional
from ._core.arrays import ModelArrays
from ._core.crossprod import CrossProducts, cross_products
from ._core.deviance import profiled_deviance as _profiled_deviance
from ._core.family import Family, binomial, negative_binomial, poisson
from ._core.sharding import device_mesh, shard_leading, shard_rows
from ._diagnostics.influence import hlm_influence
from ._diagnostics.residuals import cooks_distance, hlm_resid, leverage, n_influential
from ._fit import fit
from ._functional import (
    ArrayFit,
    blups,
    deviance,
    fit_arrays,
    fit_many,
    loglik,
    model_arrays,
)
from ._glmm_result import GLMMResult
from ._inference.anova import AnovaTable, anova
from ._inference.replicates import BootstrapResult
from ._model.theta_layout import theta_from_lme4, theta_to_lme4
from ._result import CrossedLMEResult, isSingular

# The pure deviance, checked for float64 arguments (``_base.precision``); internal code
# calls ``_core.deviance.profiled_deviance`` directly.
profiled_deviance = float64_functional(_profiled_deviance)

_cache_from_environment()

__version__ = "0.1.0"

__all__ = [
    "fit",
    "CrossedLMEResult",
    "GLMMResult",
    "binomial",
    "poisson",
    "negative_binomial",
    "Family",
    "isSingular",
    "hlm_resid",
    "leverage",
    "cooks_distance",
    "hlm_influence",
    "n_influential",
    "anova",
    "AnovaTable",
    "datasets",
    "profiled_deviance",
    "model_arrays",
    "ModelArrays",
    "deviance",
    "loglik",
    "blups",
    "fit_arrays",
    "fit_many",
    "ArrayFit",
    "BootstrapResult",
    "theta_from_lme4",
    "theta_to_lme4",
    "device_mesh",
    "shard_rows",
    "shard_leading",
    "cross_products",
    "CrossProducts",
    "InterlaceError",
    "FormulaError",
    "DataError",
    "MissingColumnError",
    "ModelSpecError",
    "PrecisionError",
    "enable_compilation_cache",
]
