"""The CLI's persistent compilation cache: a second run of a config reuses the compiled
programs of the first and gives the same numbers."""

import os
import subprocess
import sys

import h5py
import numpy as np

CONFIG = """
[grid]
shape = [64]
spacing = 10.0
[time]
t_end = 4.0
dt = 0.25
save_every = 2.0
[model]
path = "tmepde.models.examples:fisher_kpp"
[initial.tumor]
type = "gaussian"
center = [0.0]
width = 40.0
amplitude = 1.0
[solver]
dtype = "float64"
"""


def _run(cfg, out, env):
    cmd = [sys.executable, "-m", "tmepde.cli", "run", str(cfg), "-o", str(out), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out, "r") as f:
        return f["fields/tumor"][...]


def test_second_run_reuses_compiled_programs(tmp_path):
    cfg = tmp_path / "front.toml"
    cfg.write_text(CONFIG)
    cache = tmp_path / "cache"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TMEPDE_CACHE_DIR": str(cache),
           "TMEPDE_CACHE_MIN_COMPILE_SECONDS": "0"}
    first = _run(cfg, tmp_path / "a.h5", env)
    entries = sorted(p.name for p in cache.iterdir())
    assert any("advance" in name for name in entries), entries
    second = _run(cfg, tmp_path / "b.h5", env)
    assert sorted(p.name for p in cache.iterdir()) == entries  # nothing new compiled
    np.testing.assert_array_equal(first, second)


def test_cache_can_be_switched_off(tmp_path):
    cfg = tmp_path / "front.toml"
    cfg.write_text(CONFIG)
    home = tmp_path / "home"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TMEPDE_CACHE_DIR": "off",
           "XDG_CACHE_HOME": str(home), "TMEPDE_CACHE_MIN_COMPILE_SECONDS": "0"}
    _run(cfg, tmp_path / "a.h5", env)
    assert not home.exists()
