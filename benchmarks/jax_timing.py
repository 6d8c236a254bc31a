"""Timing of one call in a benchmark worker: wall seconds, CPU seconds, and the seconds
JAX spent tracing and compiling inside it (summed from jax.monitoring's own events)."""

from __future__ import annotations

import time


def make_timer():
    """Register a compile-time listener and return ``timed(fn) -> (fn(), timings)``."""
    import jax

    compile_s = [0.0]

    def on_event(name, secs, **_):
        if name.startswith("/jax/core/compile/"):
            compile_s[0] += secs

    jax.monitoring.register_event_duration_secs_listener(on_event)

    def timed(fn):
        c0, t0, k0 = time.process_time(), time.perf_counter(), compile_s[0]
        out = fn()
        return out, {"seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                     "compile_s": compile_s[0] - k0}

    return timed
