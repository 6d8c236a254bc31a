"""Timing helpers shared by the benchmark scripts: a call's wall, CPU and JAX compile
seconds (summed from jax.monitoring's own events), and a worker process's CPU seconds
(to tell a deadlocked worker from a busy one)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def cpu_seconds(pid):
    """User + system CPU seconds of a running process (None once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def accelerator() -> dict:
    """Where JAX runs in this process: backend and device kinds (for RESULTS.md)."""
    import jax

    return {"jax_backend": jax.default_backend(),
            "jax_devices": sorted({d.device_kind for d in jax.devices()})}


def accelerator_line(env: dict) -> str:
    """RESULTS.md's statement of what was (not) measured on a GPU, from ``accelerator()``."""
    backend = env.get("jax_backend")
    if backend is None:
        return "- Accelerator: not recorded for this run."
    if backend == "cpu":
        return ("- Accelerator: none (JAX backend `cpu`). **Nothing here was measured on a "
                "GPU**: no GPU was available to this project's runs. The same code runs "
                "unchanged on one (every operation on the hot path is a JAX/XLA op), but its "
                "GPU speed and memory are untested.")
    return (f"- Accelerator: JAX backend `{backend}` ({', '.join(env.get('jax_devices', []))}): "
            "interlace's timings here ran on it; lme4 ran on the CPU.")
