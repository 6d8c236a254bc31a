"""The persistent compilation cache is opt-in (``interlace._base.compilation_cache``):
importing and fitting write nothing and change no JAX setting; turned on (the environment
variable, ``enable_compilation_cache``, or ``python -m interlace warmup``) compiled fits
are written for the next process and loaded there; a cache directory the user gave JAX
is kept; the off switch wins. Each case runs in a fresh process (JAX opens its cache
once per process). Counts of written files and cache hits are exact; no timing here
(``benchmarks/`` measures the effect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import interlace

# Run in a child: `before` (Python) before importing interlace, `after` after it, then
# one fit; prints the cache directory JAX ended with and the persistent-cache hits.
_CHILD = r"""
import json, sys, warnings
import jax
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event.endswith("/cache_hits") else None)
exec(sys.argv[1])
import interlace
exec(sys.argv[2])
warnings.simplefilter("ignore")
interlace.fit("score ~ hours_studied", interlace.datasets.exam_scores(), groups="student_id")
print("RESULT" + json.dumps({"dir": jax.config.jax_compilation_cache_dir, "hits": len(hits),
                             "min_secs": jax.config.jax_persistent_cache_min_compile_time_secs}))
"""

_ROOT = str(Path(interlace.__file__).resolve().parents[1])


def _env(tmp_path, **extra) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "JAX_COMPILATION_CACHE_DIR",
            "INTERLACE_COMPILATION_CACHE",
            "INTERLACE_NO_COMPILATION_CACHE",
        )
    }
    env.update(
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
        PYTHONPATH=os.pathsep.join(
            [_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
    )
    env.update(extra)
    return env


def _run(env, before: str = "", after: str = "") -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, before, after],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=_ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])


def _files(path: Path) -> set[str]:
    return {p.name for p in path.rglob("*") if p.is_file()} if path.exists() else set()


def test_off_by_default(tmp_path):
    out = _run(_env(tmp_path))
    assert out["dir"] is None and out["hits"] == 0
    assert out["min_secs"] == 1.0  # JAX's default, untouched
    assert not (tmp_path / "xdg").exists()


def test_environment_variable_writes_then_loads(tmp_path):
    env = _env(tmp_path, INTERLACE_COMPILATION_CACHE="1")
    cache = tmp_path / "xdg" / "interlace" / "jax"
    first = _run(env)
    assert first["dir"] == str(cache) and first["min_secs"] == 0.2
    written = _files(cache)
    assert written and first["hits"] == 0
    second = _run(env)  # a new process loads what the first one compiled
    assert second["hits"] >= 1
    assert _files(cache) == written  # nothing recompiled, nothing new written


def test_enable_after_compiling_and_a_path(tmp_path):
    """Turned on after the process has compiled something (JAX opens its cache at the
    first compile that finds a directory), into a directory of the caller's choice."""
    target = tmp_path / "mine"
    after = (
        "import jax.numpy as jnp; jax.jit(lambda x: x + 1)(jnp.ones(3)); "
        f"assert interlace.enable_compilation_cache({str(target)!r}) == {str(target)!r}"
    )
    out = _run(_env(tmp_path), after=after)
    assert out["dir"] == str(target) and _files(target)
    assert not (tmp_path / "xdg").exists()


def test_a_users_cache_directory_is_kept(tmp_path):
    """JAX's own setting wins over interlace's default and over the environment switch;
    interlace writes its fits there."""
    users = tmp_path / "users"
    env = _env(tmp_path, INTERLACE_COMPILATION_CACHE="1", JAX_COMPILATION_CACHE_DIR=str(users))
    out = _run(env, after=f"assert interlace.enable_compilation_cache() == {str(users)!r}")
    assert out["dir"] == str(users)
    assert out["min_secs"] == 1.0  # the user's threshold is theirs too
    assert not (tmp_path / "xdg").exists()
    configured = tmp_path / "configured"
    out = _run(
        _env(tmp_path, INTERLACE_COMPILATION_CACHE="1"),
        before=f"jax.config.update('jax_compilation_cache_dir', {str(configured)!r})",
    )
    assert out["dir"] == str(configured)
    assert not (tmp_path / "xdg").exists()


def test_off_switch_wins(tmp_path):
    env = _env(tmp_path, INTERLACE_COMPILATION_CACHE="1", INTERLACE_NO_COMPILATION_CACHE="1")
    out = _run(env, after="assert interlace.enable_compilation_cache() is None")
    assert out["dir"] is None
    assert not (tmp_path / "xdg").exists()


def test_warmup_fills_the_cache_a_fit_then_loads(tmp_path):
    """``python -m interlace warmup --classes 1`` compiles the smallest class's fits into
    the default directory and says how to turn the cache on; a process with the cache
    on then fits the page's first-class model from it."""
    env = _env(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "interlace", "warmup", "--classes", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=_ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cache = tmp_path / "xdg" / "interlace" / "jax"
    assert "INTERLACE_COMPILATION_CACHE=1" in proc.stdout and str(cache) in proc.stdout
    assert len(_files(cache)) >= 1  # the class's one evaluation (REML and ML alike)
    out = _run(dict(env, INTERLACE_COMPILATION_CACHE="1"))
    assert out["hits"] >= 1  # the padded fit's evaluation, loaded instead of compiled
    off = subprocess.run(
        [sys.executable, "-m", "interlace", "warmup"],
        capture_output=True,
        env=dict(env, INTERLACE_NO_COMPILATION_CACHE="1"),
        text=True,
        timeout=600,
        cwd=_ROOT,
        check=False,
    )
    assert off.returncode == 0 and "cache is off" in off.stderr
