"""Float64 whatever the process's JAX settings.

Mixed-model likelihoods need float64: variance components near the boundary and the
log-determinants of large systems lose too much in float32 (a crossed design of 8,000
rows: deviance 25263.8945 in float32 against 25263.8901). JAX computes in float32
unless ``jax_enable_x64`` is on, and that flag is process-wide: it belongs to the user
(and to the other libraries in the process), so importing interlace leaves it as it is,
and interlace does not rely on it:

* :func:`float64_scope` (the pandas entry points, which build their own arrays:
  ``fit``, ``fit_many``, ``model_arrays``, ``cross_products``, the diagnostics, ``anova``
  and the result's methods that compute) runs the call inside
  ``with jax.enable_x64(True):``, whatever the setting outside. Their results are
  numpy/pandas (or float64 JAX arrays, for ``model_arrays``/``cross_products``; JAX
  keeps an array's dtype, so they stay float64 after the scope; only new arithmetic on
  them with float64 off gives float32, JAX's own rule). jit caches are keyed on the
  flag, so a function compiled inside a scope is found again by the next scoped call.
* :func:`float64_functional` (the pure functions a user may call inside their own
  ``jax.jit``/``grad``/``vmap``: ``deviance``, ``loglik``, ``blups``, ``fit_arrays``,
  ``profiled_deviance``) cannot change the precision of a computation it is traced into:
  an outer ``jit`` traced with float64 off has float32 tracers. So these functions
  check their arguments: every floating-point array must be float64, else they raise
  :class:`PrecisionError`, which says how to turn float64 on. Called eagerly (outside any
  transformation) with float64 arrays while the flag is off, they compute inside
  ``jax.enable_x64(True)`` and return float64 JAX arrays. Python scalars are taken as
  float64.

Never a silent float32 fit: every entry point either computes in float64 or raises.
"""

from __future__ import annotations

import functools
import inspect

import jax
import numpy as np

from .errors import InterlaceError

__all__ = ["PrecisionError", "float64_scope", "float64_functional", "x64_enabled"]

HOW_TO_ENABLE = (
    'turn float64 on with jax.config.update("jax_enable_x64", True) at start-up, '
    "or run the call (and any jax.jit/grad/vmap around it) inside "
    '"with jax.enable_x64(True):"'
)


class PrecisionError(InterlaceError, TypeError):
    """An array given to a functional-layer function is not float64 (JAX's float64 support,
    ``jax_enable_x64``, was off where it was made or where the call is traced)."""


def x64_enabled() -> bool:
    """Whether JAX makes float64 arrays here (the flag, or a ``jax.enable_x64`` scope)."""
    return bool(jax.config.jax_enable_x64)


def _x64_on():
    """A context in which JAX makes float64 arrays (``jax.enable_x64(True)``; older JAX
    versions have it as ``jax.experimental.enable_x64``)."""
    scope = getattr(jax, "enable_x64", None)
    if scope is None:  # pragma: no cover - JAX before the public context manager
        from jax.experimental import enable_x64 as scope
    return scope(True)


_SCOPE_NOTE = """

    Precision: computes in float64 whatever ``jax_enable_x64`` says: the call runs inside
    ``jax.enable_x64(True)`` (see :mod:`interlace._base.precision`)."""

_FUNCTIONAL_NOTE = """

    Precision: every floating-point array argument must be float64, else
    :class:`~interlace.PrecisionError`; so inside your own ``jax.jit``/``grad``/``vmap``,
    turn float64 on (``jax.config.update("jax_enable_x64", True)``, or trace inside
    ``with jax.enable_x64(True):``). Called outside any transformation with float64 off,
    it computes inside ``jax.enable_x64(True)`` and returns float64 arrays."""


def _with_note(wrapper, note: str):
    """Append ``note`` (written with a 4-space indent) to the docstring, indented as the
    docstring's own continuation lines are."""
    doc = wrapper.__doc__
    if doc:
        rest = [ln for ln in doc.splitlines()[1:] if ln.strip()]
        indent = min((len(ln) - len(ln.lstrip()) for ln in rest), default=4)
        wrapper.__doc__ = doc.rstrip() + note.replace("\n    ", "\n" + " " * indent)
    return wrapper


def float64_scope(fn):
    """Decorator: run ``fn`` with ``jax_enable_x64`` on, restoring the caller's setting on
    exit (a no-op when it is on already). The wrapper adds one stack frame: warnings that
    ``fn`` issues for its caller need ``stacklevel`` one higher."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if x64_enabled():
            return fn(*args, **kwargs)
        with _x64_on():
            return fn(*args, **kwargs)

    return _with_note(wrapper, _SCOPE_NOTE)


def _floating_dtype(leaf):
    """The dtype of an array-like leaf if it is a real floating type, else None (Python
    scalars count as float64)."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is None or not hasattr(leaf, "shape"):
        return None
    try:
        if not np.issubdtype(np.dtype(dtype), np.floating):
            return None
    except TypeError:  # extended dtypes (PRNG keys)
        return None
    return np.dtype(dtype)


def _in_transformation(leaves) -> bool:
    """Whether the call is being traced by a JAX transformation: a tracer among the
    arguments, or (arguments closed over) JAX's trace state, where this JAX has it."""
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return True
    try:
        from jax._src import core  # private; absent or changed: rely on the tracers

        return not core.trace_state_clean()
    except Exception:  # pragma: no cover
        return False


def check_float64(name: str, arguments: dict) -> None:
    """Raise :class:`PrecisionError` unless every floating-point array in ``arguments``
    (a mapping of argument names to pytrees) is float64; ``name`` is the function's."""
    for arg, value in arguments.items():
        for leaf in jax.tree.leaves(value):
            dtype = _floating_dtype(leaf)
            if dtype is None or dtype == np.float64:
                continue
            if x64_enabled():
                fix = (
                    f"pass float64 arrays (e.g. jnp.asarray({arg}, dtype=jnp.float64)), or "
                    "rebuild the model with interlace.model_arrays"
                )
            else:
                fix = HOW_TO_ENABLE
            raise PrecisionError(
                f"interlace.{name} computes in float64, but its argument {arg!r} holds a "
                f"{dtype} array{'' if x64_enabled() else ' (JAX float64 support is off)'}; "
                f"{fix}. interlace never fits in float32."
            )


def float64_functional(fn):
    """Decorator for the pure functional layer (module docstring): check that every
    floating-point argument is float64 (else :class:`PrecisionError`), and, when called
    eagerly with float64 off, compute inside ``jax.enable_x64(True)``."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        check_float64(fn.__name__, bound.arguments)
        if x64_enabled():
            return fn(*args, **kwargs)
        if _in_transformation(jax.tree.leaves((args, kwargs))):  # float32 trace: cannot fix
            raise PrecisionError(
                f"interlace.{fn.__name__} is being traced (jax.jit/grad/vmap) with JAX float64 "
                f"support off, so it would compute in float32; {HOW_TO_ENABLE}."
            )
        with _x64_on():
            return fn(*args, **kwargs)

    return _with_note(wrapper, _FUNCTIONAL_NOTE)
