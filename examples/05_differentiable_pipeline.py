"""A neural network inside a mixed model: train an equinox MLP through interlace's likelihood.

Run: python examples/05_differentiable_pipeline.py

Scores depend on hours studied through an unknown nonlinear curve g, plus crossed
student and school effects. We model y = f_phi(hours) + b_student + b_school + e and
train the network f_phi together with the covariance parameters theta by minimising
the profiled ML deviance of the residual y - f_phi(hours): interlace's likelihood is a
pure JAX function, so optax sees its gradients with respect to the network weights.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

import interlace

# interlace's likelihood inside our own jax.grad/jit needs float64 (interlace raises
# PrecisionError otherwise); importing interlace leaves JAX's setting alone, so turn it on.
jax.config.update("jax_enable_x64", True)

rng = np.random.default_rng(0)
n = 600
df = pd.DataFrame(
    {
        "hours": rng.uniform(0, 10, n),
        "student": [f"s{i}" for i in rng.integers(0, 40, n)],
        "school": [f"k{i}" for i in rng.integers(0, 8, n)],
    }
)
student = dict(zip(sorted(df.student.unique()), rng.normal(0, 2.0, 40)))
school = dict(zip(sorted(df.school.unique()), rng.normal(0, 1.0, 8)))


def g(h):  # the curve the network has to find
    return 60 + 8 * np.sin(h / 1.5) + 0.5 * h


df["score"] = g(df.hours) + df.student.map(student) + df.school.map(school) + rng.normal(0, 1.5, n)

# The model's arrays, built once. The network's output replaces the response later.
model = interlace.model_arrays("score ~ 1 + (1 | student) + (1 | school)", df)
hours = jnp.asarray(df.hours.to_numpy())[:, None] / 10.0
y = model.y

net = eqx.nn.MLP(
    in_size=1, out_size=1, width_size=32, depth=2, activation=jax.nn.tanh, key=jax.random.key(1)
)
params = {"net": net, "theta": jnp.ones(2)}


def loss(params):
    curve = jax.vmap(params["net"])(hours)[:, 0] * 10.0
    residual_model = model.replace(y=y - curve)
    return interlace.deviance(params["theta"], residual_model, reml=False) / n


optimizer = optax.adam(3e-3)
state = optimizer.init(eqx.filter(params, eqx.is_array))


@eqx.filter_jit
def step(params, state):
    value, grads = eqx.filter_value_and_grad(loss)(params)
    updates, state = optimizer.update(grads, state, params)
    return eqx.apply_updates(params, updates), state, value


history = []
for i in range(1500):
    params, state, value = step(params, state)
    history.append(float(value))
    if i % 300 == 0:
        print(f"step {i:5d}  deviance / n = {value:.4f}")
print(f"step {len(history):5d}  deviance / n = {history[-1]:.4f}")
assert history[-1] < history[0], "training did not lower the loss"

# Read the trained model: the curve (up to the intercept, which the network absorbs)
# and the variance components, from an ordinary fit of the residual.
curve = np.asarray(jax.vmap(params["net"])(hours)[:, 0] * 10.0)
fit = interlace.fit(
    "residual ~ 1 + (1 | student) + (1 | school)", df.assign(residual=df.score - curve)
)
shape_error = np.std((curve + fit.fe_params["Intercept"]) - g(df.hours))
print(f"\ncurve recovered to within {shape_error:.2f} score points (sd of the error)")
print(
    "variance components:",
    {k: round(v, 2) for k, v in fit.variance_components.items()},
    f"residual: {fit.scale:.2f}  (truth: student 4, school 1, residual 2.25)",
)
