"""Exact case- and group-deletion influence, all deletions in one vectorised refit.

Deleting row ``i`` (or every row of one level) is a refit with that row's weight set to
zero: same index structure, so every deletion runs through one compiled
``jax.vmap``-ed fit, warm-started at the full fit (:func:`refit_all`). A level left
without rows contributes nothing to the likelihood, exactly as if it were dropped.

With ``beta``, ``V = vcov(beta)`` from the full fit and ``beta_(i)``, ``V_(i)`` from the
fit without case ``i`` (Christensen, Pearson & Johnson 1992; Schabenberger 2004;
HLMdiag's ``hlm_influence``; ``p`` fixed effects):

* Cook's distance as lme4's ``cooks.distance(influence(fit))``:
  ``D_i = (m - p) / (m p) (beta - beta_(i))' V^-1 (beta - beta_(i))`` with ``m`` the
  number of deleted units (rows, or levels for group deletion); HLMdiag omits the
  factor ``(m - p) / m``;
* MDFFITS ``(beta - beta_(i))' V_(i)^-1 (beta - beta_(i)) / p`` (HLMdiag);
* COVTRACE ``|tr(V^-1 V_(i)) - p|`` and COVRATIO ``det(V_(i)) / det(V)``;
* ``rvc_*``: the relative change ``(c_(i) - c) / c`` of each variance component ``c``
  (the entries of ``sigma^2 T_r T_r'`` and ``sigma^2``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._base.errors import ModelSpecError
from .._base.precision import float64_scope
from .._base.progress import progress_bar
from .._core.refit import RefitBatch, default_batch_size, refit_all, warn_unconverged
from .._model.varcorr import variance_names, variance_values
from .residuals import require_linear

__all__ = ["hlm_influence"]

# Deletions per call of the vectorised refit (bounds the deletions x rows weights).
_DELETIONS_PER_CALL = 512


def _fe_cov_of(out):
    """A refit's ``vcov(beta)``, flattened (a batch statistic; module level so that the
    compiled batch is cached)."""
    return out.fe_cov.ravel()


def _deletion_sets(result, level) -> tuple[pd.Index, np.ndarray]:
    """Labels of the deletions and, per deletion, the code that the rows' key must not
    equal (rows: their position; groups: their level code)."""
    d = result.design
    if level == 1:
        return d.row_index, np.arange(d.nobs)
    if level not in d.factor_names:
        raise ModelSpecError(
            f"level must be 1 (single rows) or a grouping factor of the model "
            f"({', '.join(map(repr, d.factor_names))}), got {level!r}."
        )
    i = d.factor_names.index(level)
    return pd.Index(d.levels[i].to_numpy(), name=level), d.codes[i]


def _padded(chunk: np.ndarray, model) -> np.ndarray:
    """``chunk`` padded (with deletions of nothing, key -1) to a size that recurs, so
    that row and group deletions of one model share one compiled batch: a multiple of
    :func:`default_batch_size` for models with a dense tail, else a power of two of at
    least 64 (small refits cost microseconds; a compile costs seconds)."""
    batch = default_batch_size(model.template)
    size = (
        batch * -(-chunk.size // batch)
        if batch is not None
        else int(2 ** np.ceil(np.log2(max(chunk.size, 64))))
    )
    return np.concatenate([chunk, np.full(size - chunk.size, -1)])


@float64_scope
def hlm_influence(result, level=1, progress: bool | None = None) -> pd.DataFrame:
    """Exact deletion diagnostics of ``result`` (module docstring), one row per deleted
    case (``level=1``) or per deleted level of the grouping factor ``level``.

    Columns: ``cooksd``, ``mdffits``, ``covtrace``, ``covratio``, ``rvc_*`` and
    ``converged`` (the refit's flag). Each refit uses the fit's method (REML or ML).
    ``progress``: a progress bar (default: only on an interactive terminal).
    """
    require_linear(result, "hlm_influence")
    fit = result.model_fit
    labels, key = _deletion_sets(result, level)
    d = fit.design
    model = fit.search_arrays
    theta0 = jnp.asarray(fit.theta)
    targets = np.arange(len(labels))
    parts = []
    with progress_bar(len(targets), "deletion refits", progress) as bar:
        for s in range(0, len(targets), _DELETIONS_PER_CALL):
            chunk = _padded(targets[s : s + _DELETIONS_PER_CALL], model)
            weights = (key[None, :] != chunk[:, None]).astype(np.float64)
            parts.append(
                refit_all(
                    model,
                    jnp.asarray(weights),
                    theta0,
                    reml=fit.reml,
                    statistic=_fe_cov_of,
                    field="weights",
                    bar=bar,
                    centring=fit.centring,
                )
            )
    beta, theta, sigma, conv, cov = RefitBatch.concatenate(parts, len(targets))
    warn_unconverged(conv, "deletion refits")
    p = beta.shape[1]
    V = fit.fe_cov
    Vdel = cov.reshape(-1, p, p)
    delta = fit.beta[None, :] - beta
    m = len(labels)
    cooksd = (m - p) / (m * p) * np.einsum("bi,ij,bj->b", delta, np.linalg.inv(V), delta)
    mdffits = np.einsum("bi,bi->b", delta, np.linalg.solve(Vdel, delta[..., None])[..., 0]) / p
    ratio = np.linalg.solve(V[None], Vdel)
    covtrace = np.abs(np.trace(ratio, axis1=1, axis2=2) - p)
    covratio = np.linalg.det(Vdel) / np.linalg.det(V)
    out = pd.DataFrame(
        {"cooksd": cooksd, "mdffits": mdffits, "covtrace": covtrace, "covratio": covratio},
        index=labels,
    )
    full = variance_values(fit.theta[None], np.array([fit.sigma]), d.terms)
    deleted = variance_values(theta, sigma, d.terms)
    with np.errstate(divide="ignore", invalid="ignore"):
        rvc = (deleted - full) / full
    for j, name in enumerate(variance_names(d.terms)):
        out[f"rvc_{name}"] = rvc[:, j]
    out["converged"] = conv.astype(bool)
    return out
