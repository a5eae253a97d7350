"""GPU checks (``pytest -m gpu``; skipped where JAX sees no GPU).

The same compiled programs on GPU and CPU must agree: a TME run (transform solves, CG,
chemotaxis, reactions) in float64 to 1e-9 relative, and a vmapped batch member by member.
"""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

import tmepde as tp
from tmepde.models import tme

pytestmark = pytest.mark.gpu


def _run_on(device, grid, n_saves=4):
    model = tme.tme_model(grid=grid, n_doses=2)
    p = model.params(jnp.float64, it_ifng_times=[0.0, 12.0], it_ifng_amounts=[50.0, 50.0],
                     sys_pd1_amounts=[2e8, 0.0])
    y0 = model.stack(tme.initial_conditions(grid, seed=2), grid, jnp.float64)
    with jax.default_device(device):
        sim = tp.Simulator(model, grid, dt=0.5, save_every=6.0, dtype=jnp.float64)
        return np.asarray(sim.run(p, y0, n_saves))


def test_tme_run_gpu_equals_cpu():
    grid = tp.Grid((32, 32), 20.0)
    gpu = _run_on(jax.devices("gpu")[0], grid)
    cpu = _run_on(jax.devices("cpu")[0], grid)
    scale = np.abs(cpu).max(axis=(0, 2, 3), keepdims=True) + 1e-30
    assert np.max(np.abs(gpu - cpu) / scale) < 1e-9


def test_batch_on_gpu_equals_members():
    from tmepde.models.examples import gray_scott
    from tmepde import batch

    model, grid = gray_scott(), tp.Grid((48, 48), 10.0)
    sim = tp.Simulator(model, grid, dt=0.5, save_every=5.0, dtype=jnp.float64)
    y0 = model.stack({"u": 1.0, "v": 0.1}, grid, jnp.float64)
    params, keys = batch.grid_sweep(model.default_params(jnp.float64), {"feed": [0.02, 0.03, 0.04]})
    out = np.asarray(batch.run_batch(sim, params, keys, y0, n_saves=2))
    for i, f in enumerate([0.02, 0.03, 0.04]):
        one = np.asarray(sim.run(dict(params, feed=jnp.asarray(f)), y0, 2))
        np.testing.assert_allclose(out[i], one, rtol=1e-10, atol=1e-12)
