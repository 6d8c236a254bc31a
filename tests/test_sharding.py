"""Sharding across devices: 4 forced CPU devices give the same numbers as one.

Runs tests/scripts/sharding_check.py in a subprocess, because the device count is
fixed when JAX starts. Tolerance 1e-10: relative to each array's largest entry for the
cross-products (sums of up to 1e6 added in another order), absolute for the deviance,
bootstrap estimates and medians.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "sharding_check.py"


@pytest.fixture(scope="module")
def measured():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_arrays_really_are_sharded(measured):
    assert measured["devices"] == 4
    assert measured["y_devices"] == 4
    assert measured["shard_rows"] == [76]  # 302 rows padded to 304, 76 per device
    assert measured["boot_devices"] == 4


def test_sharded_cross_products_equal_one_device(measured):
    assert measured["cp_max_rel"] < 1e-10
    assert measured["dev_diff"] < 1e-10


def test_sharded_bootstrap_equals_one_device(measured):
    assert measured["boot_max_diff"] < 1e-10
    assert measured["median_max_diff"] < 1e-10
