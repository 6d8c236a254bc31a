"""One BLAS thread while a fit's compiled evaluations run, the caller's count restored.

On a CPU, JAX runs the Cholesky factorisation or triangular solve of one matrix as a
LAPACK call into the BLAS library scipy ships (OpenBLAS in the wheels). XLA runs the
independent operations of an evaluation side by side on its own thread pool, and a
LAPACK call that splits its work over OpenBLAS's worker threads then competes with
XLA's threads for the same cores. Measured on 2 cores (fresh processes, alternating,
with and without this scope): the 404-column tail factorisation inside a GLMM
evaluation (the 10^5-row crossed binary model of ``benchmarks/bench_glmm.py``) took
43 ms, against 4 ms for the same call alone; with one BLAS thread that model's compiled
fit went from 14.7 to 11.9 s and the 20,000-row Poisson model's from 2.36 to 1.88 s
(VerbAgg, InstEval and sleepstudy moved within noise).

:func:`single_blas_thread` is scoped, as :func:`~interlace._base.precision.float64_scope`
is for precision: it sets the loaded BLAS libraries to one thread (``threadpoolctl``)
for the duration of a fit's optimiser loop and restores their counts on exit. A thread
of the user's process calling BLAS meanwhile runs single-threaded too: a matter of
speed, never of results. Batched work (``vmap``) does not call LAPACK
(:mod:`interlace._core.linalg`) and needs no limit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["single_blas_thread"]

_CONTROLLER: Any = None  # threadpoolctl's view of the BLAS libraries, built once (~15 ms)


def _blas():
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController().select(user_api="blas")
        except Exception:  # no threadpoolctl, or a platform it cannot inspect
            _CONTROLLER = False
    return _CONTROLLER


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
    """Run the block with every loaded BLAS library on one thread (module docstring);
    a no-op where threadpoolctl sees no BLAS library."""
    blas = _blas()
    if not blas:
        yield
        return
    with blas.limit(limits=1):
        yield
