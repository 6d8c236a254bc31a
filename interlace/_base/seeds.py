"""Seeds: every ``seed=`` argument of interlace, in one place.

A seed may be

* ``None``: fresh entropy from the operating system (``np.random.SeedSequence()``);
* a non-negative integer (Python or numpy): reproducible. Below ``2**64`` the JAX key is
  exactly ``jax.random.key(seed)``'s (threefry) with ``jax_enable_x64`` on, whatever the
  flag says (with it off, JAX itself keeps only the low 32 bits of a seed of ``2**32``
  or more; interlace keeps all 64); larger integers go through
  ``np.random.SeedSequence(seed)``;
* a ``np.random.SeedSequence``: reproducible (its state, not its spawn counter, is used);
* a ``np.random.Generator``: interlace draws one 64-bit integer from it, so the
  generator advances (as numpy functions that take a generator do); the same generator
  state gives the same replicates;
* a JAX PRNG key: a typed key (``jax.random.key``) or a legacy ``uint32[2]`` key
  (``jax.random.PRNGKey``), used as it is.

Anything else (a float, a negative integer, a string, ``True``) raises
:class:`~interlace.ModelSpecError`. :func:`key_from_seed` gives the JAX key
(simulation, parametric bootstraps, resampling weights); :func:`rng_from_seed` the numpy
generator (the level-resampling bootstraps), with ``np.random.default_rng(seed)``'s
stream for an integer, a SeedSequence or a Generator.
"""

from __future__ import annotations

import numbers

import jax
import numpy as np

from .errors import ModelSpecError

__all__ = ["Seed", "key_from_seed", "rng_from_seed"]

#: What a ``seed=`` argument accepts (module docstring).
Seed = None | int | np.integer | np.random.Generator | np.random.SeedSequence | jax.Array

_MASK32 = 0xFFFFFFFF
_ACCEPTED = (
    "seed must be None, a non-negative integer, a numpy Generator "
    "(np.random.default_rng(...)) or SeedSequence, or a JAX PRNG key "
    "(jax.random.key(...))"
)


def _is_jax_key(seed) -> bool:
    dtype = getattr(seed, "dtype", None)
    if dtype is None or not hasattr(seed, "shape"):
        return False
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    # a legacy raw key: a JAX (not numpy) uint32 array of shape (2,)
    return isinstance(seed, jax.Array) and dtype == np.uint32 and seed.shape == (2,)


def _int_seed(seed) -> int:
    """The value of an integer seed, after checking it is one and is non-negative."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise ModelSpecError(f"{_ACCEPTED}; got {seed!r} ({type(seed).__name__}).")
    value = int(seed)
    if value < 0:
        raise ModelSpecError(f"{_ACCEPTED}; got the negative integer {value}.")
    return value


def _key_from_words(words) -> jax.Array:
    return jax.random.wrap_key_data(np.asarray(words, dtype=np.uint32), impl="threefry2x32")


def _key_from_int(value: int) -> jax.Array:
    if value < 2**64:  # jax.random.key(value): the high and the low 32-bit word
        return _key_from_words([(value >> 32) & _MASK32, value & _MASK32])
    return _key_from_words(np.random.SeedSequence(value).generate_state(2, np.uint32))


def key_from_seed(seed=None) -> jax.Array:
    """A typed JAX PRNG key (shape ``()``) from any accepted seed (module docstring)."""
    if seed is None:
        return _key_from_words(np.random.SeedSequence().generate_state(2, np.uint32))
    if _is_jax_key(seed):
        if jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
            if seed.shape != ():
                raise ModelSpecError(
                    f"seed must be a single JAX PRNG key, got an array of keys of shape "
                    f"{tuple(seed.shape)}; pass one of them (keys[0])."
                )
            return seed
        return jax.random.wrap_key_data(seed, impl="threefry2x32")
    if isinstance(seed, np.random.SeedSequence):
        return _key_from_words(seed.generate_state(2, np.uint32))
    if isinstance(seed, np.random.Generator):
        return _key_from_int(int(seed.integers(0, 2**64, dtype=np.uint64)))
    return _key_from_int(_int_seed(seed))


def rng_from_seed(seed=None) -> np.random.Generator:
    """A numpy Generator from any accepted seed (module docstring): the generator itself,
    ``np.random.default_rng(seed)`` for None, an integer or a SeedSequence, and for a JAX
    key a generator seeded with the key's data."""
    if seed is None or isinstance(seed, (np.random.SeedSequence, np.random.Generator)):
        return np.random.default_rng(seed)
    if _is_jax_key(seed):
        key = key_from_seed(seed)
        words = np.asarray(jax.random.key_data(key), dtype=np.uint32).ravel()
        return np.random.default_rng(np.random.SeedSequence([int(w) for w in words]))
    return np.random.default_rng(_int_seed(seed))
