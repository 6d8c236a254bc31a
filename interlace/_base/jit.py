"""``jax.jit`` for interlace's own functions, with the XLA compile options they are
measured to compile fastest with; never a process-wide setting.

XLA's CPU backend generates code for fused elementwise work either with its MLIR
fusion emitters (the default in recent jaxlib) or with its classic emitters
(``xla_cpu_use_fusion_emitters=False``). On interlace's graphs the classic ones
compile in about half the time and run as fast (2 cores, jaxlib 0.10.2;
``benchmarks/RESULTS.md``, Latency): the results page's evaluation compiles in 0.56
instead of 0.92 s and runs in 0.30 instead of 0.27 ms; a first VerbAgg GLMM fit takes
2.7 instead of 3.9 s, its compiled fit unchanged; InstEval's compiled fit is unchanged.

Batched work is the exception: vmapped over many responses, the classic emitters' code
runs 10-40% slower (Gaussian ``fit_many`` over 1,000 responses 0.26 -> 0.34 s, 500
parametric-bootstrap refits 0.23 -> 0.33 s, Poisson ``fit_many`` over 500 genes 4.1 ->
4.6 s), so the batched engines (``_core.refit``'s refits, ``_model.glmm_many``,
``_inference.response_bootstrap``) keep ``jax.jit``: this ``jit`` is for the single fit,
whose compile is most of a new model's time.

The batched GLMM engine (``_model.glmm_many``) compiles without XLA's YNNPACK library
fusions (:data:`NO_YNN_FUSIONS`: ``xla_cpu_experimental_ynn_fusion_type``, an empty
list). They take the many small batched reductions and products of a vmapped GLMM
evaluation (600 rows x 166 lanes) at a fraction of the speed of XLA's own loops:
bench_glmm_many's 1,024 Poisson genes took 5.9-6.0 s instead of 7.6-8.2 s, with identical
deviances. The single GLMM fit keeps them: without them its compiled fit was 7% faster on
the 10^5-row crossed design and no faster on VerbAgg, but VerbAgg's first fit compiled
1.3-1.6 s longer (5.2-5.8 -> 6.9-7.1 s). Linear models keep them (not re-measured).

The single GLMM fit (``_model.glmm_estimate``'s evaluation) also has LLVM optimise at
level 1 instead of 3 (:data:`GLMM_OPTIONS`: ``xla_backend_optimization_level``). Its graph
(PIRLS, a differentiated Newton step) is mostly fused elementwise loops, gathers and
scatters, on which LLVM's heavier passes cost compile time and buy no speed: VerbAgg's
first fit in a running process 2.14 -> 1.76 s (medians of 5 fresh processes,
alternating), its compiled fit 0.12-0.16 s either way, and the 10^5-row crossed binary
fit 2.6-3.2 s either way (``benchmarks/RESULTS.md``, GLMMs). Level 0 compiles faster
still but runs 2-3x slower (VerbAgg 14 instead of 5 ms per evaluation).

Python's cyclic garbage collector is paused during a top-level call (:func:`_gc_paused`)
and resumed after it, as it was: tracing a large function allocates hundreds of thousands
of short-lived objects, which set off collections of the whole heap (jax, pandas and the
user's objects) while nothing collectable is made (reference counting still frees them).
VerbAgg's evaluation traced in 0.25-0.26 instead of 0.37-0.46 s (two runs each, one full
collection fewer). A compiled call allocates a few objects and is unaffected. The pause
is process-wide while it lasts (Python has one collector): another thread's allocations
wait for the call to end to be collected, and a thread that disables the collector
during the call finds it enabled again after it.

The options are passed per executable (``jax.jit(..., compiler_options=...)``), so a
user's own jitted functions compile as before; other backends ignore CPU options. A JAX
too old to take ``compiler_options``, or an XLA that no longer knows the option, gets a
plain ``jax.jit`` (checked once per process, by compiling a one-operation function).
"""

from __future__ import annotations

import contextlib
import gc
import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import numpy as np

__all__ = ["jit", "COMPILER_OPTIONS", "GLMM_OPTIONS", "NO_YNN_FUSIONS"]

COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}
# LLVM at -O1 for the single GLMM fit (module docstring).
GLMM_OPTIONS = {**COMPILER_OPTIONS, "xla_backend_optimization_level": 1}
# No YNNPACK library fusions (an empty list of fusion kinds).
NO_YNN_FUSIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}

_ACCEPTED: dict[tuple, bool] = {}  # per option set: whether this JAX and XLA take it


def _options_accepted(options: dict[str, Any]) -> bool:
    key = tuple(sorted(options.items()))
    if key not in _ACCEPTED:
        if "compiler_options" not in inspect.signature(jax.jit).parameters:
            _ACCEPTED[key] = False
        else:
            try:
                probe = jax.jit(lambda x: x + 1, compiler_options=options)
                probe.lower(np.float32(0.0)).compile()
                _ACCEPTED[key] = True
            except Exception:  # an unknown option: XLA refuses to compile
                _ACCEPTED[key] = False
    return _ACCEPTED[key]


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector for the block, if it runs (module docstring)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Jitted:
    """A function jitted with :data:`COMPILER_OPTIONS` where they are accepted, plainly
    otherwise; the choice is made at the first call (not at import: JAX's backends are
    not started by importing interlace). Called inside another trace (a caller's
    ``jit``, ``grad`` or ``vmap``), it is a plain ``jax.jit``: JAX takes compile options
    at the top level only, and the caller's executable is compiled as the caller asks."""

    def __init__(self, fun: Callable, kwargs: dict[str, Any], options: dict[str, Any]):
        self._fun, self._kwargs, self._options = fun, kwargs, options
        self._plain = jax.jit(fun, **kwargs)
        self._tuned: Any = None
        self.__wrapped__ = fun
        self.__name__ = getattr(fun, "__name__", "jitted")
        self.__doc__ = fun.__doc__

    def _top_level(self):
        if self._tuned is None:
            accepted = _options_accepted(self._options)
            self._tuned = (
                jax.jit(self._fun, **self._kwargs, compiler_options=self._options)
                if accepted
                else self._plain
            )
        return self._tuned

    def __call__(self, *args, **kwargs):
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            return self._plain(*args, **kwargs)
        try:
            with _gc_paused():
                return self._top_level()(*args, **kwargs)
        except ValueError as err:  # inside a trace after all (no tracer among the args)
            if "compiler_options" not in str(err):
                raise
            return self._plain(*args, **kwargs)

    def __getattr__(self, name: str):  # lower, trace, eval_shape, ...
        if name.startswith("__") or name in ("_fun", "_kwargs", "_options", "_plain", "_tuned"):
            raise AttributeError(name)  # not set up yet (copy, pickle): no recursion
        return getattr(self._top_level(), name)


def jit(fun: Callable | None = None, *, options: dict[str, Any] = COMPILER_OPTIONS, **kwargs):
    """``jax.jit(fun, **kwargs)`` with compile ``options`` (:data:`COMPILER_OPTIONS` unless
    given; module docstring); usable as ``@jit`` and ``@partial(jit, static_argnames=...)``."""
    if fun is None:
        return partial(jit, options=options, **kwargs)
    return _Jitted(fun, kwargs, options)
