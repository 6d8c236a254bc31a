"""``python -m interlace warmup``: compile the fits of the common size classes once.

A fit pads a small or medium model to a size class (:mod:`interlace._core.buckets`) and
compiles that class's fit on first use in a process; JAX's persistent compilation cache
keeps it for later processes that turn the cache on (opt-in:
:mod:`interlace._base.compilation_cache`). This command turns the cache on for its own
process (``$XDG_CACHE_HOME/interlace/jax``, or JAX's own cache directory if one is
configured) and compiles every class's evaluation (one executable serves REML and ML)
into it once, for example right after installing; processes with the cache on then load
them instead of compiling.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp

from ._base.compilation_cache import ENV_OFF, ENV_ON, enable_compilation_cache
from ._base.precision import float64_scope
from ._core import buckets
from ._core.crossprod import device_array
from ._core.evaluation import evaluate


@float64_scope
def warmup(classes: int = 3, verbose: bool = True) -> float:
    """Compile the evaluation a single fit runs (:func:`interlace._core.evaluation.evaluate`)
    for the first ``classes`` size classes, with an intercept, into the persistent
    compilation cache (turned on here, :func:`enable_compilation_cache`); returns the
    seconds it took (0 when the cache stays off)."""
    start = time.perf_counter()
    if enable_compilation_cache() is None:
        print(
            f"interlace warmup: the persistent compilation cache is off ({ENV_OFF} is "
            "set, or no writable cache directory); compiling would not outlive this "
            "process.",
            file=sys.stderr,
        )
        return 0.0
    for c, size in enumerate(buckets.SIZE_CLASSES[:classes]):
        cp = buckets.placeholder(size)
        t0 = time.perf_counter()
        # The argument types a fit passes (_model.estimate.optimize), so the cache key matches.
        evaluate.lower(
            device_array(jnp.zeros(size.theta)),
            cp,
            device_array(True),
            device_array(1.0, jnp.float64),
        ).compile()
        if verbose:
            print(
                f"size class {c} ({size.q1} levels, {size.q_tail} tail columns): "
                f"{time.perf_counter() - t0:.1f} s",
                flush=True,
            )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interlace", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["warmup"])
    ap.add_argument(
        "--classes",
        type=int,
        default=3,
        help=f"how many size classes (of {len(buckets.SIZE_CLASSES)}), default 3",
    )
    args = ap.parse_args(argv)
    seconds = warmup(args.classes)
    if not seconds:  # the cache is off: said so on stderr
        return
    print(
        f"interlace warmup: {seconds:.1f} s; cache: {jax.config.jax_compilation_cache_dir}\n"
        "Processes load these compiled fits when the cache is on there too: set "
        f"{ENV_ON}=1 in their environment or call interlace.enable_compilation_cache() "
        "before fitting (a JAX cache directory you configured yourself: the same "
        "setting)."
    )


if __name__ == "__main__":
    main()
