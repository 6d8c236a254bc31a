"""Spread the work over devices with JAX's own sharding (``jax.sharding``).

Two axes parallelise: the rows of the one-pass cross-product (a sum over rows: each
device sums its rows, XLA adds the partial sums) and the replicates of a bootstrap or
of many responses (independent fits). Both are plain ``NamedSharding`` placements of
the inputs; the computation is unchanged and ``jit`` partitions it. On one host this
spans ``jax.devices()``; across hosts, call ``jax.distributed.initialize()`` first and
the same placements span every process's devices.

Test on CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._base.precision import float64_scope
from .arrays import ModelArrays

__all__ = ["device_mesh", "shard_rows", "shard_leading"]

_ROW_FIELDS = ("y", "X", "weights", "codes1", "row_cols", "pair_flat", "pos")


def device_mesh(devices=None, axis: str = "data") -> Mesh:
    """A one-dimensional mesh over ``devices`` (default: all of ``jax.devices()``)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (axis,))


def _pad_rows(x: jnp.ndarray, extra: int) -> jnp.ndarray:
    """Append ``extra`` copies of row 0 (their weight is set to 0 by the caller)."""
    return jnp.concatenate([x, jnp.repeat(x[:1], extra, axis=0)]) if extra else x


@float64_scope
def shard_rows(model: ModelArrays, mesh: Mesh | None = None) -> ModelArrays:
    """``model`` with its row arrays split across ``mesh``'s devices.

    Rows are padded to a multiple of the device count with zero-weight copies of row 0,
    which change no cross-product; :func:`interlace.deviance` and friends then give the
    same numbers as on one device.
    """
    mesh = device_mesh() if mesh is None else mesh
    ndev = mesh.devices.size
    n = model.y.shape[0]
    extra = (-n) % ndev
    sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    leaves = {}
    for name in _ROW_FIELDS:
        value = _pad_rows(getattr(model, name), extra)
        if name == "weights" and extra:
            value = value.at[n:].set(0.0)
        leaves[name] = jax.device_put(value, sharding)
    term_X = tuple(jax.device_put(_pad_rows(z, extra), sharding) for z in model.term_X)
    out = model.replace(y=leaves["y"], X=leaves["X"], weights=leaves["weights"], term_X=term_X)
    if model.prior_weights is not None:  # padded rows: multiplicity 0, so any prior weight
        prior = jax.device_put(_pad_rows(model.prior_weights, extra), sharding)
        out = eqx.tree_at(lambda m: m.prior_weights, out, prior)
    return eqx.tree_at(
        lambda m: (m.codes1, m.row_cols, m.pair_flat, m.pos),
        out,
        (leaves["codes1"], leaves["row_cols"], leaves["pair_flat"], leaves["pos"]),
    )


@float64_scope
def shard_leading(x, mesh: Mesh | None = None):
    """Place ``x`` with its leading axis (replicates, responses) split across devices;
    the leading size must be a multiple of the device count."""
    mesh = device_mesh() if mesh is None else mesh
    if x.shape[0] % mesh.devices.size:
        raise ValueError(
            f"leading axis {x.shape[0]} is not a multiple of "
            f"{mesh.devices.size} devices; pad or choose another size."
        )
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec(mesh.axis_names[0])))
