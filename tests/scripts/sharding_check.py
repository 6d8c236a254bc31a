"""Run under XLA_FLAGS=--xla_force_host_platform_device_count=4 (tests/test_sharding.py).

Prints one JSON line of measurements; the test asserts on them.
"""

import json
import warnings

import jax
import jax.numpy as jnp

# A program that jits the functional layer turns float64 on at start-up (the documented
# rule; importing interlace leaves it off).
jax.config.update("jax_enable_x64", True)

import interlace  # noqa: E402
from interlace._core.arrays import cross_products_of  # noqa: E402
from interlace._inference.response_bootstrap import resample_weights, weighted_median  # noqa: E402

warnings.simplefilter("ignore")
df = interlace.datasets.exam_scores(n=302)  # not a multiple of 4: exercises the padding
model = interlace.model_arrays(
    "score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id)", df
)
sharded = interlace.shard_rows(model)
out = {
    "devices": len(jax.devices()),
    "y_devices": len(sharded.y.sharding.device_set),
    "shard_rows": sorted({s.data.shape[0] for s in sharded.y.addressable_shards}),
}

one = cross_products_of(model)
many = jax.jit(cross_products_of)(sharded)
out["cp_max_rel"] = max(
    float(jnp.max(jnp.abs(getattr(one, f) - getattr(many, f))) / jnp.max(jnp.abs(getattr(one, f))))
    for f in ("A1", "tail", "upd_prod", "c_val", "n")
)
theta = jnp.array([0.3, 0.1])
out["dev_diff"] = abs(
    float(interlace.deviance(theta, model)) - float(jax.jit(interlace.deviance)(theta, sharded))
)

# bootstrap: 8 cluster resamples of students, refitted; replicates split over devices
codes = jnp.asarray(interlace.fit("score ~ 1", df, groups="student_id").design.codes[0])
W = resample_weights(jax.random.key(0), codes, 30, df.shape[0], 8)
refit = jax.jit(jax.vmap(lambda w: interlace.fit_arrays(model.replace(weights=w))["beta"]))
W_sharded = interlace.shard_leading(W)
b_one, b_many = refit(W), refit(W_sharded)
out["boot_devices"] = len(W_sharded.sharding.device_set)
out["boot_max_diff"] = float(jnp.max(jnp.abs(b_one - b_many)))
med = jax.jit(jax.vmap(weighted_median, in_axes=(None, 0)))
out["median_max_diff"] = float(jnp.max(jnp.abs(med(model.y, W) - med(model.y, W_sharded))))
print(json.dumps(out))
