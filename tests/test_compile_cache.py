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


def _closure_model(weights):
    """Logistic growth whose rate map is a closed-over array (as a vessel map would be)."""
    import jax.numpy as jnp

    from tmepde.model import Model, Species

    rate = jnp.asarray(weights)

    def rates(t, y, p):
        u = y["u"]
        return {"u": p["growth"] * rate * u * (1 - u)}

    return Model([Species("u", diffusivity=0.5)], rates, {"growth": 0.3}, name="closure")


def test_program_store_reloads_the_same_program_and_misses_on_changed_data(tmp_path):
    """A stored program is loaded (not recompiled) for the same set-up and gives bit-identical
    states to Simulator.run; a model that closes over different data must not hit it."""
    import jax.numpy as jnp

    from tmepde import Grid
    from tmepde.stepping.simulator import Simulator

    grid = Grid((24,), 10.0)
    y0 = np.exp(-((np.arange(24) - 12.0) / 4.0) ** 2)[None]
    store = tmp_path / "programs"

    def solve(weights):
        model = _closure_model(weights)
        sim = Simulator(model, grid, dt=0.5, save_every=2.0, scheme="sbdf2", dtype=jnp.float32)
        params = model.default_params(jnp.float32)
        run, loaded = sim.program(params, y0, 3, store=store)
        return np.asarray(run(params, y0)), loaded, np.asarray(sim.run(params, y0, 3))

    ones = np.ones(24)
    first, loaded_first, reference = solve(ones)
    assert not loaded_first and len(list(store.iterdir())) == 1
    again, loaded_again, _ = solve(ones.copy())
    assert loaded_again and len(list(store.iterdir())) == 1
    np.testing.assert_array_equal(first, reference)
    np.testing.assert_array_equal(again, reference)
    changed, loaded_changed, changed_reference = solve(np.linspace(0.5, 2.0, 24))
    assert not loaded_changed and len(list(store.iterdir())) == 2
    np.testing.assert_array_equal(changed, changed_reference)
    assert np.abs(changed - first).max() > 1e-3  # the data matter, so a stale hit would show


def test_fingerprint_follows_code_and_refuses_what_it_cannot_read():
    from tmepde.compile_cache import Unfingerprintable, fingerprint

    def a(x):
        return x + 1

    def b(x):
        return x + 2

    assert fingerprint(a) == fingerprint(a) and fingerprint(a) != fingerprint(b)
    assert fingerprint({"k": np.arange(3)}) != fingerprint({"k": np.arange(1, 4)})
    import threading

    try:
        fingerprint(threading.Lock())
    except Unfingerprintable:
        pass
    else:
        raise AssertionError("a lock has no content to hash; the store must not be used")
