"""The persistent compilation cache, opt-in: compiled fits kept on disk across processes.

JAX can keep compiled executables on disk (its persistent compilation cache), so a new
process loads a fit's compiled code (~0.1 s) instead of compiling it (2-5 s per size
class and method). JAX has one such cache per process, configured by
``jax_compilation_cache_dir``, and it serves every ``jax.jit`` in the process, the
user's own included; JAX builds its cache object once, from that setting, at the
first compile that consults it. It cannot be scoped to interlace's own calls without
replacing private JAX state (a scope that switched the directory around interlace's
calls would also catch other threads' compiles). So interlace changes nothing at
import, and the cache is opt-in, process-wide:

* :func:`enable_compilation_cache` (``interlace.enable_compilation_cache()``), or
* ``INTERLACE_COMPILATION_CACHE=1`` in the environment (at import; a value other than
  ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` is taken as the
  directory), or
* JAX's own setting (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.update("jax_compilation_cache_dir", ...)``), which interlace then uses
  as it is and never overrides.

``INTERLACE_NO_COMPILATION_CACHE=1`` overrides the first two (benchmarks use it to time
real compiles). ``python -m interlace warmup`` turns the cache on for its own process.
"""

from __future__ import annotations

import os
import warnings

import jax

__all__ = [
    "ENV_OFF",
    "ENV_ON",
    "MIN_COMPILE_SECS",
    "cache_from_environment",
    "default_cache_dir",
    "enable_compilation_cache",
]

ENV_ON = "INTERLACE_COMPILATION_CACHE"
ENV_OFF = "INTERLACE_NO_COMPILATION_CACHE"
# JAX writes only executables that took at least this long to compile (its default is
# 1 s). A small model's compiled fit takes 0.2-1 s on 2 cores; below 0.2 s, loading
# from disk saves too little.
MIN_COMPILE_SECS = 0.2

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/interlace/jax`` (``XDG_CACHE_HOME`` defaults to ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "interlace", "jax")


def _off() -> bool:
    return os.environ.get(ENV_OFF, "").strip().lower() not in _FALSE


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache for this process, so that compiled fits
    outlive it; returns the directory in use, or None if the cache stays off.

    Process-wide (JAX has one cache per process): every ``jax.jit`` that takes at least
    ``jax_persistent_cache_min_compile_time_secs`` to compile is written there, yours
    included; this sets that threshold to 0.2 s (JAX's default: 1 s). ``path`` defaults
    to ``$XDG_CACHE_HOME/interlace/jax`` (``~/.cache/interlace/jax``; the six fits that
    ``python -m interlace warmup`` compiles take 1.6 MB). A cache directory configured in JAX already
    (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is kept as it is, and returned:
    interlace then uses yours. ``INTERLACE_NO_COMPILATION_CACHE=1`` makes this a no-op
    (None), as does a directory that cannot be created (with a warning). Turning it on
    after something was compiled works: JAX opens its cache at the first compile that
    finds a directory configured.

    Only point it at a directory that only you can write to: JAX loads and runs what
    it finds there.
    """
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        if path is not None and os.path.abspath(os.fspath(path)) != os.path.abspath(configured):
            warnings.warn(
                f"JAX's compilation cache is configured already ({configured}); "
                f"interlace keeps it and does not use {os.fspath(path)}.",
                UserWarning,
                stacklevel=2,
            )
        return configured
    if _off():
        return None
    path = os.path.abspath(os.fspath(path) if path is not None else default_cache_dir())
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        warnings.warn(
            f"interlace: no compilation cache ({path}: {exc}).", UserWarning, stacklevel=2
        )
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
    return path


def cache_from_environment() -> str | None:
    """At import: :func:`enable_compilation_cache` if ``INTERLACE_COMPILATION_CACHE`` asks
    for it (``1``/``true``/``yes``/``on``: the default directory; another non-false value:
    that directory); otherwise nothing is changed."""
    value = os.environ.get(ENV_ON, "").strip()
    if value.lower() in _FALSE:
        return None
    return enable_compilation_cache(None if value.lower() in _TRUE else value)
