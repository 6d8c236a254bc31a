"""interlace: linear mixed models with crossed random effects, fast and differentiable on JAX.

>>> import interlace
>>> df = interlace.datasets.exam_scores()
>>> result = interlace.fit("score ~ hours_studied + prior_gpa", data=df,
...                        groups=["student_id", "school_id"])   # doctest: +SKIP
"""

import jax as _jax

# Mixed-model likelihoods need float64: variance components near the boundary and
# log-determinants of large systems lose too much in float32. Every entry point also
# scopes float64 itself or refuses float32 arrays (``_precision``), so a user turning the
# flag off later gets no float32 fit; this process-wide flip stays until the test suite
# (which makes JAX arrays of its own) no longer relies on it.
_jax.config.update("jax_enable_x64", True)


def _enable_compilation_cache() -> None:
    """Reuse compiled fits across processes: JAX's persistent compilation cache in
    ``$XDG_CACHE_HOME/interlace/jax`` (default ``~/.cache``), unless the user configured
    one already or set ``INTERLACE_NO_COMPILATION_CACHE=1``."""
    import os

    if os.environ.get("INTERLACE_NO_COMPILATION_CACHE") or _jax.config.jax_compilation_cache_dir:
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "interlace", "jax")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:  # read-only home: run without the cache
        return
    _jax.config.update("jax_compilation_cache_dir", path)
    _jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


_enable_compilation_cache()

from . import datasets  # noqa: E402
from ._inference.anova import AnovaTable, anova  # noqa: E402
from ._core.crossprod import CrossProducts, cross_products  # noqa: E402
from ._diagnostics.residuals import cooks_distance, hlm_resid, leverage, n_influential  # noqa: E402
from ._core.deviance import profiled_deviance as _profiled_deviance  # noqa: E402
from ._base.precision import PrecisionError, float64_functional  # noqa: E402

# The pure deviance, checked for float64 arguments (``_precision``); internal code calls
# ``_deviance.profiled_deviance`` directly.
profiled_deviance = float64_functional(_profiled_deviance)
from ._base.errors import (  # noqa: E402
    DataError,
    FormulaError,
    InterlaceError,
    MissingColumnError,
    ModelSpecError,
)
from ._fit import fit  # noqa: E402
from ._diagnostics.influence import hlm_influence  # noqa: E402
from ._core.arrays import ModelArrays  # noqa: E402
from ._functional import (  # noqa: E402
    blups,
    deviance,
    fit_arrays,
    fit_many,
    loglik,
    model_arrays,
)
from ._result import CrossedLMEResult  # noqa: E402
from ._core.sharding import device_mesh, shard_leading, shard_rows  # noqa: E402
from ._core.singular import isSingular  # noqa: E402
from ._theta_layout import theta_from_lme4, theta_to_lme4  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "fit",
    "CrossedLMEResult",
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
]
