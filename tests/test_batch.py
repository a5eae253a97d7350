"""Batches: vmap + chunking equal single runs; sharded equals single-device; cohort sampling."""

import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import tmepde as tp
from tmepde import batch
from tmepde.models.examples import gray_scott


def _setup():
    grid = tp.Grid((12, 12), 10.0)
    model = gray_scott()
    rng = np.random.default_rng(0)
    y0 = model.stack({"u": 1 - 0.5 * rng.random(grid.shape), "v": 0.25 * rng.random(grid.shape)}, grid)
    sim = tp.Simulator(model, grid, dt=0.5, save_every=1.0)
    return sim, model, y0


def test_chunked_batch_equals_individual_runs():
    sim, model, y0 = _setup()
    params, keys = batch.grid_sweep(model.default_params(), {"feed": [0.02, 0.04], "kill": [0.05, 0.06, 0.07]})
    assert keys == ["feed", "kill"] and params["feed"].shape == (6,)
    out = batch.run_batch(sim, params, keys, y0, n_saves=3, chunk=4)  # 6 members in chunks of 4
    assert out.shape == (6, 4, 2, 12, 12)
    for i in range(6):
        single = sim.run({k: (v[i] if k in keys else v) for k, v in params.items()}, y0, 3)
        np.testing.assert_allclose(out[i], np.asarray(single), rtol=1e-12, atol=1e-14)


def test_lognormal_cohort_has_requested_median_and_cv():
    base = {"growth": jnp.asarray(0.02), "kill": jnp.asarray(1.5)}
    params, keys = batch.sample_lognormal(base, {"growth": 0.3}, n=20000, seed=7)
    g = np.asarray(params["growth"])
    assert keys == ["growth"]
    assert abs(np.median(g) / 0.02 - 1) < 0.02
    assert abs(g.std() / g.mean() - 0.3) < 0.01
    again, _ = batch.sample_lognormal(base, {"growth": 0.3}, n=20000, seed=7)
    np.testing.assert_array_equal(g, np.asarray(again["growth"]))
    with pytest.raises(KeyError, match="unknown parameters \\['nope'\\]"):
        batch.sample_lognormal(base, {"nope": 0.1}, n=3)


def test_auto_chunk_respects_memory_budget():
    sim, _, _ = _setup()
    per = batch.member_bytes(sim, 10)
    state = 2 * 144 * 8
    assert per == state * 11 + 12 * state
    assert batch.auto_chunk(sim, 10, n_members=5) == 5  # small members: the whole batch


SHARDED = textwrap.dedent("""
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import tmepde as tp
    from tmepde import batch
    from tmepde.models.examples import gray_scott
    assert len(jax.devices()) == 4, jax.devices()
    grid = tp.Grid((16, 12), 10.0)
    model = gray_scott()
    rng = np.random.default_rng(0)
    y0 = model.stack({"u": 1 - 0.5 * rng.random(grid.shape), "v": 0.25 * rng.random(grid.shape)}, grid)
    sim = tp.Simulator(model, grid, dt=0.5, save_every=1.0)
    params, keys = batch.grid_sweep(model.default_params(), {"feed": [0.02, 0.03, 0.04, 0.05, 0.06]})
    many = batch.run_batch(sim, params, keys, y0, 2)
    one = batch.run_batch(sim, params, keys, y0, 2, devices=jax.devices()[:1])
    print("batch", np.abs(many - one).max())
    dom = np.asarray(batch.run_domain_sharded(sim, model.default_params(), y0, 2, axis=0))
    ref = np.asarray(sim.run(model.default_params(), y0, 2))
    print("domain", np.abs(dom - ref).max())
""")


def test_sharded_across_four_host_devices_equals_single_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    diffs = dict(line.split() for line in out.stdout.strip().splitlines())
    assert float(diffs["batch"]) < 1e-12, diffs
    assert float(diffs["domain"]) < 1e-12, diffs
