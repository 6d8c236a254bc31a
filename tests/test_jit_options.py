"""interlace's ``jit`` (``_base.jit``): its compile options stay on its own top-level
executables, calls nested in a caller's transformation work, and an XLA that does not
know the options gets a plain ``jax.jit``."""

from __future__ import annotations

import gc
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interlace._base import jit as jit_module
from interlace._base.jit import jit


@partial(jit, static_argnames=("power",))
def _scaled_power(x, scale, power: int):
    return scale * x**power


def test_top_level_calls_compile_with_the_options():
    x = np.arange(4.0, dtype=np.float32)
    np.testing.assert_allclose(_scaled_power(x, 2.0, power=3), 2.0 * x**3, rtol=0)
    # this JAX and XLA take the option, so the top-level executable is the tuned one
    assert jit_module._options_accepted(jit_module.COMPILER_OPTIONS)
    assert _scaled_power._top_level() is not _scaled_power._plain
    lowered = _scaled_power.lower(x, 2.0, power=3)
    assert lowered.compile()(x, 2.0) is not None


def test_nested_in_a_callers_jit_grad_and_vmap():
    x = jnp.linspace(0.5, 2.0, 5, dtype=jnp.float32)
    outer = jax.jit(lambda v: jnp.sum(_scaled_power(v, 3.0, power=2)))
    assert float(outer(x)) == pytest.approx(float(jnp.sum(3.0 * x**2)), rel=1e-6)
    grad = jax.grad(lambda v: jnp.sum(_scaled_power(v, 3.0, power=2)))(x)
    np.testing.assert_allclose(grad, 6.0 * x, rtol=1e-6)
    batched = jax.vmap(lambda s: _scaled_power(x, s, power=1))(jnp.arange(3.0))
    np.testing.assert_allclose(batched, np.arange(3.0)[:, None] * np.asarray(x), rtol=1e-6)
    # nested without a tracer among the arguments: constants closed over by the caller
    const = jax.jit(lambda: _scaled_power(np.float32(2.0), 1.0, power=2))
    assert float(const()) == pytest.approx(4.0)


def test_no_ynn_options_leave_out_library_fusions():
    """``NO_YNN_FUSIONS`` (``_model.glmm_many``'s executable; ``_base.jit``'s docstring):
    a row sum, which XLA's CPU backend of jaxlib 0.10 gives to a YNNPACK fusion, compiles
    to none."""

    @partial(jit, options=jit_module.NO_YNN_FUSIONS)
    def row_sums(x):
        return jnp.sum(x * x, axis=1)

    x = np.ones((16, 600))
    assert jit_module._options_accepted(jit_module.NO_YNN_FUSIONS)
    np.testing.assert_allclose(row_sums(x), 600.0, rtol=0)
    assert "__ynn_fusion" not in row_sums.lower(x).compile().as_text()


def test_an_unknown_option_falls_back_to_plain_jit():
    unknown = {"xla_no_such_option_exists": True}
    assert not jit_module._options_accepted(unknown)

    @partial(jit, options=unknown)
    def twice(x):
        return 2 * x

    assert float(twice(np.float32(1.5))) == 3.0
    assert twice._top_level() is twice._plain


def test_the_cyclic_gc_pauses_while_a_top_level_call_traces_and_comes_back():
    """Traced Python runs while the call traces: the collector is off there, back on
    after, and a collector the caller switched off stays off."""
    seen = []

    @jit
    def record(x):
        seen.append(gc.isenabled())
        return x + 1.0

    assert gc.isenabled()
    record(np.float32(1.0))
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        record(np.zeros(2, np.float32))  # a new shape: traced again
        assert seen == [False, False] and not gc.isenabled()
    finally:
        gc.enable()
