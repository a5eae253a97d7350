"""The CLI's persistent compilation cache: a second run of a config reuses the compiled
programs of the first and gives the same numbers."""

import os
import shutil
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
    """XLA cache alone: the second run compiles nothing new. Then the program store in the
    same folder, built while the XLA cache already holds the programs (an executable XLA:CPU
    loaded from its cache serialises without some kernels: the stored copy failed with
    "Function ... not found" in the next process): the third run loads the stored programs,
    stores nothing new, and all three give the same numbers."""
    cfg = tmp_path / "front.toml"
    cfg.write_text(CONFIG)
    cache = tmp_path / "cache"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TMEPDE_CACHE_DIR": str(cache),
           "TMEPDE_CACHE_MIN_COMPILE_SECONDS": "0", "TMEPDE_PROGRAM_STORE": "off"}
    first = _run(cfg, tmp_path / "a.h5", env)
    entries = sorted(p.name for p in cache.iterdir())
    assert any("advance" in name for name in entries), entries
    second = _run(cfg, tmp_path / "b.h5", env)
    assert sorted(p.name for p in cache.iterdir()) == entries  # nothing new compiled
    env["TMEPDE_PROGRAM_STORE"] = "on"
    third = _run(cfg, tmp_path / "c.h5", env)
    stored = sorted(p.name for p in (cache / "programs").iterdir())
    assert len(stored) == 2, stored  # the graded start and the chunk loop, whole
    shutil.rmtree(cache / "programs")  # stored again while the XLA cache holds all it has seen
    fourth = _run(cfg, tmp_path / "d.h5", env)
    stamps = {p.name: p.stat().st_mtime_ns for p in (cache / "programs").iterdir()}
    fifth = _run(cfg, tmp_path / "e.h5", env)
    # loaded from the program store, not compiled and stored again
    assert {p.name: p.stat().st_mtime_ns for p in (cache / "programs").iterdir()} == stamps
    for other in (second, third, fourth, fifth):
        np.testing.assert_array_equal(first, other)


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


def test_stored_loop_equals_the_simulator_and_keys_on_the_chunk_length(tmp_path):
    """``tmepde run``'s stored start and chunk loop: bit-identical to Simulator.init/advance,
    loaded by a fresh simulator of the same set-up, and a different number of saves per call
    (another program) is not served the stored one."""
    import jax.numpy as jnp

    from tmepde import Grid
    from tmepde.stepping.simulator import Simulator

    grid = Grid((24,), 10.0)
    y0 = np.exp(-((np.arange(24) - 12.0) / 4.0) ** 2)[None]
    store = tmp_path / "programs"
    model = _closure_model(np.ones(24))
    params = model.default_params(jnp.float32)

    def chunks(n_saves, calls=2):
        sim = Simulator(model, grid, dt=0.5, save_every=2.0, scheme="sbdf2", dtype=jnp.float32)
        loop = sim.stored_loop(n_saves, store)
        carry = loop.init(y0, params)
        out = []
        for _ in range(calls):
            carry, ys = loop.advance(carry, params)
            out.append(np.asarray(ys))
        return np.concatenate(out), loop.loaded, np.asarray(sim.run(params, y0, n_saves * calls)[1:])

    first, loaded, reference = chunks(2)
    assert loaded == {"start": False, "advance": False} and len(list(store.iterdir())) == 2
    np.testing.assert_array_equal(first, reference)
    again, loaded, _ = chunks(2)
    assert loaded == {"start": True, "advance": True}
    np.testing.assert_array_equal(again, reference)
    other, loaded, other_reference = chunks(1, calls=4)
    assert loaded == {"start": True, "advance": False} and len(list(store.iterdir())) == 3
    np.testing.assert_array_equal(other, other_reference)
    np.testing.assert_array_equal(other, reference)  # same saves, other chunking


def test_stored_program_runs_when_the_xla_cache_already_held_it(tmp_path):
    """XLA:CPU executables loaded from the XLA cache serialise without some kernels (the
    stored copy then fails with "Function ... not found"): a program compiled for the store
    while the XLA cache holds it must still run from the store, with the same numbers."""
    import jax
    import jax.numpy as jnp

    from tmepde.compile_cache import load_or_compile

    def f(x):
        return jnp.cumsum(jnp.sin(x.astype(jnp.float32)) * 2).astype(x.dtype)

    x = jnp.linspace(0.0, 3.0, 64)
    saved = {k: getattr(jax.config, k) for k in ("jax_compilation_cache_dir",
                                                  "jax_persistent_cache_min_compile_time_secs")}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    try:
        expected = np.asarray(jax.jit(f).lower(x).compile()(x))  # into the XLA cache
        jax.clear_caches()  # so that the next compile reads the XLA cache on disk
        stored, loaded = load_or_compile(tmp_path / "programs", "f", jax.jit(f), x)
        assert not loaded
        np.testing.assert_array_equal(np.asarray(stored(x)), expected)
        again, loaded = load_or_compile(tmp_path / "programs", "f", jax.jit(f), x)
        assert loaded
        np.testing.assert_array_equal(np.asarray(again(x)), expected)
    finally:
        for k, v in saved.items():
            jax.config.update(k, v)


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
