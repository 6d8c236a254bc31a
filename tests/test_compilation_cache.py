"""The persistent compilation cache: compiled fits are written for the next process,
and the opt-out works. (No timing here: benchmarks/ measures the effect.)"""

from __future__ import annotations

import os
import subprocess
import sys

SNIPPET = ("import warnings, interlace; warnings.simplefilter('ignore'); "
           "interlace.fit('score ~ hours_studied', interlace.datasets.exam_scores(), "
           "groups='student_id')")


def _run(env_extra):
    env = dict(os.environ, **env_extra)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_cache_is_written_under_xdg_cache_home(tmp_path):
    _run({"XDG_CACHE_HOME": str(tmp_path)})
    cache = tmp_path / "interlace" / "jax"
    assert cache.is_dir() and any(cache.iterdir())


def test_cache_can_be_turned_off(tmp_path):
    _run({"XDG_CACHE_HOME": str(tmp_path), "INTERLACE_NO_COMPILATION_CACHE": "1"})
    assert not (tmp_path / "interlace").exists()
