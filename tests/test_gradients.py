"""Reverse-mode gradients through whole runs against central finite differences (x64),
vmap against a loop, float32 against float64, and checkpointed memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tmepde as tp
from tmepde.model import resolve_boundaries
from tmepde.models.examples import chemotaxis_demo, gray_scott
from tmepde.operators import chemotaxis_divergence


def _taxis_setup(n=16, spacing=10.0):
    grid = tp.Grid((n, n), spacing)
    model = chemotaxis_demo()
    X, Y = (c / (spacing / 10.0) for c in grid.coordinates())  # same picture at any spacing
    src = np.exp(-((X - 110) ** 2 + (Y - 100) ** 2) / (2 * 30.0**2))
    cells = 0.2 + 0.1 * np.exp(-((X - 50) ** 2 + (Y - 60) ** 2) / (2 * 25.0**2))
    y0 = model.stack({"cells": cells, "source": src}, grid)
    return grid, model, y0


def _central_difference(fn, params, key, rel=1e-4):
    value = params[key]
    h = rel * max(float(jnp.max(jnp.abs(value))), 1e-3)
    up = dict(params, **{key: value + h})
    down = dict(params, **{key: value - h})
    return (fn(up) - fn(down)) / (2 * h)


@pytest.mark.parametrize("scheme", ["sbdf2", "rk4"])
def test_grad_matches_finite_differences(scheme):
    # rk4 on a coarser grid, so that its stable step still lets the state change measurably.
    grid, model, y0 = _taxis_setup(spacing=10.0 if scheme == "sbdf2" else 40.0)
    dt, steps = (0.1, 4) if scheme == "sbdf2" else (0.004, 25)
    sim = tp.Simulator(model, grid, dt=dt, save_every=dt * steps, scheme=scheme)
    weights = jnp.asarray(np.random.default_rng(0).random(grid.shape))

    def loss(params):
        ys = sim.run(params, y0, n_saves=3)
        # A scalar of the final state: weighted cells plus chemokine total.
        return jnp.sum(ys[-1, 0] * weights) + 10 * jnp.sum(ys[-1, 1])

    params = model.default_params()
    # One jitted program (an eager jax.grad compiles the linearised and transposed start and
    # loop apart: ~25 % more compile time)
    grads = jax.jit(jax.grad(loss))(params)
    for key in ["D_chemokine", "D_cells", "decay_chemokine", "chi_cells", "uptake", "secretion"]:
        fd = _central_difference(loss, params, key)
        np.testing.assert_allclose(float(grads[key]), float(fd), rtol=1e-5, err_msg=key)


def test_grad_through_diffusivity_map_and_krylov_solve():
    grid = tp.Grid((8, 6), 10.0)
    x, y = grid.coordinates()
    d_map = 5.0 + 4.0 * np.tanh((x - 40) / 20)
    # v is made from u but never acts back: the loss's cotangent on v is exactly zero, and so
    # must be the gradient w.r.t. v's parameters. (A CG whose transposed solve starts from the
    # primal first iterate instead of zero returned ~1e-20 here and 0/0 = NaN in the TME model.)
    model = tp.Model([tp.Species("u", diffusivity=d_map, decay=0.2),
                      tp.Species("v", diffusivity=d_map, decay=0.5)],
                     lambda t, y, p: {"u": p["r"] * y["u"] * (1 - y["u"]), "v": p["s"] * y["u"]},
                     {"r": 0.3, "s": 1.0})
    sim = tp.Simulator(model, grid, dt=0.2, save_every=0.6)
    u0 = model.stack({"u": 0.1 + 0.8 * np.exp(-((x - 30) ** 2 + (y - 50) ** 2) / 500), "v": 0.3}, grid)
    probe = jnp.asarray((x > 50).astype(float))

    def loss(params):
        return jnp.sum(sim.run(params, u0, 2)[-1, 0] * probe)

    params = model.default_params()
    g = jax.jit(jax.grad(loss))(params)
    np.testing.assert_allclose(float(g["r"]), float(_central_difference(loss, params, "r")), rtol=1e-5)
    # Directional derivative along a random perturbation of the whole map.
    direction = jnp.asarray(np.random.default_rng(1).random(grid.shape))
    eps = 1e-4
    fd = (loss(dict(params, D_u=params["D_u"] + eps * direction))
          - loss(dict(params, D_u=params["D_u"] - eps * direction))) / (2 * eps)
    np.testing.assert_allclose(float(jnp.sum(g["D_u"] * direction)), float(fd), rtol=1e-5)
    for key in ("s", "D_v", "decay_v"):
        assert np.all(np.asarray(g[key]) == 0.0), (key, g[key])


def _while_loops(jaxpr) -> int:
    from jax._src import core
    return sum((eqn.primitive.name == "while") + sum(_while_loops(j) for j in core.jaxprs_in_params(eqn.params))
               for eqn in jaxpr.eqns)


def test_step_checkpoint_stores_its_solves_instead_of_solving_again(monkeypatch):
    """The step checkpoint keeps the implicit and CG solutions (loop.STEP_RESIDUALS): the
    gradient program has one CG loop fewer in each checkpointed step body (the graded start's
    row and the loop's step; one CG group) than when their derivatives recompute them
    (ablation), and the same gradient."""
    from tmepde.stepping import loop

    grid = tp.Grid((12,), 10.0)
    (x,) = grid.coordinates()
    model = tp.Model([tp.Species("u", diffusivity=5.0 + 4.0 * np.tanh((x - 40) / 20), decay=0.2)],
                     lambda t, y, p: {"u": p["r"] * y["u"] * (1 - y["u"])}, {"r": 0.3})
    u0 = model.stack({"u": 0.1 + 0.5 * np.exp(-((x - 30) ** 2) / 500)}, grid)
    params = model.default_params()
    out = {}
    for label, names in (("stored", loop.STEP_RESIDUALS), ("recomputed", ())):
        monkeypatch.setattr(loop, "STEP_RESIDUALS", names)
        sim = tp.Simulator(model, grid, dt=0.2, save_every=0.6)  # traced under this setting
        loss = lambda p, sim=sim: jnp.sum(sim.run(p, u0, 2)[-1, 0] ** 2)  # noqa: E731
        out[label] = (_while_loops(jax.make_jaxpr(jax.grad(loss))(params).jaxpr), jax.jit(jax.grad(loss))(params))
    (n_stored, g_stored), (n_recomputed, g_recomputed) = out["stored"], out["recomputed"]
    assert n_stored == n_recomputed - 2, (n_stored, n_recomputed)
    for key in g_stored:
        np.testing.assert_allclose(np.asarray(g_stored[key]), np.asarray(g_recomputed[key]), rtol=1e-9, atol=1e-15)


def test_chemotaxis_limiter_finite_next_to_an_empty_negative_cell():
    # Cell 1 holds a round-off negative and, on a flat attractant, has no outflow: the limiter
    # must leave it alone (it was divided by its zero outflow: NaN in the state and gradient).
    grid = tp.Grid((6,), 10.0)
    bcs = resolve_boundaries("neumann", 1)
    c = jnp.asarray([[1.0, 1.0, 1.0, 1.2, 1.5, 2.0]])

    def taxis(u, dt):
        return chemotaxis_divergence(u, c, 2.0, grid, bcs, dt=dt)

    u = jnp.asarray([[0.5, -1e-12, 0.0, 0.3, 0.2, 0.1]])
    limited = taxis(u, 0.1)
    assert np.all(np.isfinite(np.asarray(limited)))
    # dt small enough that no cell needs limiting: the same as the unlimited fluxes
    np.testing.assert_array_equal(np.asarray(limited), np.asarray(taxis(u, None)))
    w = jnp.asarray([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    g = jax.grad(lambda u: jnp.sum(taxis(u, 0.1) * w))(u)
    np.testing.assert_allclose(np.asarray(g), np.asarray(jax.grad(lambda u: jnp.sum(taxis(u, None) * w))(u)))


def test_grad_wrt_initial_condition():
    grid = tp.Grid((10, 10), 10.0)
    model = gray_scott()
    sim = tp.Simulator(model, grid, dt=0.5, save_every=1.0)
    rng = np.random.default_rng(2)
    y0 = jnp.asarray(np.stack([1 - 0.3 * rng.random(grid.shape), 0.3 * rng.random(grid.shape)]))
    params = model.default_params()

    def loss(y):
        return jnp.sum(sim.run(params, y, 2)[-1, 1] ** 2)

    g = jax.jit(jax.grad(loss))(y0)
    direction = jnp.asarray(rng.standard_normal(y0.shape))
    eps = 1e-5
    fd = (loss(y0 + eps * direction) - loss(y0 - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.vdot(g, direction)), float(fd), rtol=1e-5)


def test_vmap_over_parameters_equals_loop_without_recompiling():
    grid, model, y0 = _taxis_setup(12)
    sim = tp.Simulator(model, grid, dt=0.2, save_every=0.4)
    base = model.default_params()
    chis = jnp.asarray([0.0, 0.5, 2.0])
    batched = dict(base, chi_cells=chis)
    axes = {k: (0 if k == "chi_cells" else None) for k in base}
    ys = jax.jit(jax.vmap(lambda p: sim.run(p, y0, 2), in_axes=(axes,)))(batched)
    for i, chi in enumerate(chis):
        single = sim.run(dict(base, chi_cells=chi), y0, 2)
        np.testing.assert_allclose(np.asarray(ys[i]), np.asarray(single), rtol=1e-12, atol=1e-14)
    # New parameter values reuse the compiled program.
    before = sim._advance._cache_size()
    sim.run(dict(base, chi_cells=jnp.asarray(3.0)), y0, 2)
    assert sim._advance._cache_size() == before


def test_float32_matches_float64():
    grid, _, y0 = _taxis_setup(16)
    model = gray_scott()
    y0 = jnp.stack([1 - y0[0], y0[0]])
    out = {}
    for dtype in (jnp.float32, jnp.float64):
        sim = tp.Simulator(model, grid, dt=0.25, save_every=1.0, dtype=dtype)
        out[dtype] = np.asarray(sim.run(model.default_params(dtype), y0.astype(dtype), 4)[-1])
        assert out[dtype].dtype == dtype
    scale = np.abs(out[jnp.float64]).max()
    assert np.abs(out[jnp.float32] - out[jnp.float64]).max() < 1e-4 * scale


def _grad_temp_bytes(steps_per_save, n_saves):
    grid = tp.Grid((16, 16), 10.0)
    model = gray_scott()
    dt = 0.1
    # IMEX Euler: the same checkpointed loop as every scheme, without a graded start to
    # compile (half the compile time of sbdf2 here); its carry is the state alone.
    sim = tp.Simulator(model, grid, dt=dt, save_every=dt * steps_per_save, scheme="sbdf1")
    y0 = model.stack({"u": 1.0, "v": 0.1}, grid)

    def loss(p):
        return jnp.sum(sim.run(p, y0, n_saves)[-1])

    compiled = jax.jit(jax.grad(loss)).lower(model.default_params()).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_reverse_mode_memory_grows_with_saves_not_steps():
    state_bytes = 2 * 16 * 16 * 8
    few = _grad_temp_bytes(steps_per_save=5, n_saves=8)
    many = _grad_temp_bytes(steps_per_save=80, n_saves=8)
    # 16x more steps: memory may grow by a few states per extra step at most within one save
    # interval, never by the stored history of all steps.
    carry_bytes = state_bytes  # IMEX Euler carries the state only
    assert many - few < 40 * carry_bytes, (few, many, (many - few) / carry_bytes)
    more_saves = _grad_temp_bytes(steps_per_save=5, n_saves=64)
    assert more_saves - few > 40 * state_bytes  # the saved history itself does grow
