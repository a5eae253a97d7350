"""Schedules as unconstrained vectors: bounds by construction, constraints by penalty, and
both optimisers reaching a known optimum."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from tmepde.schedules import (ScheduleSpace, SlotAgent, minimize_auglag, minimize_cma, minimize_lbfgs,
                              minimize_multistart, multistart_points)

NOMINAL = tuple(24.0 * np.arange(5))


def _space(budget=np.inf):
    return ScheduleSpace((SlotAgent("a", NOMINAL, cap=10.0, window=6.0, budget=budget),
                          SlotAgent("b", NOMINAL[:3], cap=2.0)))


def test_decode_keeps_every_bound_for_any_vector():
    space = _space()
    assert space.size == 5 * 2 + 3
    z = jnp.asarray(np.random.default_rng(0).normal(scale=30.0, size=(200, space.size)))
    d = jax.vmap(space.decode)(z)
    assert (d["a_amounts"] >= 0).all() and (d["a_amounts"] <= 10.0).all()
    assert (np.abs(d["a_times"] - np.asarray(NOMINAL)) <= 6.0).all()
    assert (np.diff(d["a_times"], axis=1) > 0).all()  # window < half the spacing: order kept
    np.testing.assert_array_equal(d["b_times"], np.broadcast_to(NOMINAL[:3], (200, 3)))


def test_encode_decode_round_trip():
    space = _space()
    z = space.encode({"a": [1.0, 2.0, 3.0, 4.0, 5.0], "b": [0.5, 1.0, 1.5]})
    d = space.decode(jnp.asarray(z))
    np.testing.assert_allclose(d["a_amounts"], [1, 2, 3, 4, 5], rtol=1e-12)
    np.testing.assert_allclose(d["b_amounts"], [0.5, 1.0, 1.5], rtol=1e-12)


def test_penalty_is_zero_when_feasible_and_its_gradient_matches_finite_differences():
    space = _space(budget=12.0)
    J = space.penalized(lambda d: jnp.zeros(()), mu=50.0)
    feasible = space.encode({"a": [2.0] * 5, "b": [1.0] * 3})  # total 10 <= 12
    assert float(J(jnp.asarray(feasible))) == 0.0
    over = jnp.asarray(space.encode({"a": [4.0] * 5, "b": [1.0] * 3}))  # total 20: g = 20/12 - 1
    assert float(J(over)) == pytest.approx(0.5 * 50.0 * (20 / 12 - 1) ** 2, rel=1e-9)
    grad = np.asarray(jax.grad(J)(over))
    h = 1e-6
    for i in range(space.size):
        e = jnp.zeros(space.size).at[i].set(h)
        fd = (float(J(over + e)) - float(J(over - e))) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-9)


MU = 1e4


def _toy():
    """min Σ (a - target)² + Σ (t - nominal - 2)²/100, subject to Σ a ≤ 12 (active: the
    unconstrained optimum sums to 15). With the penalty μ/2 (Σa/12 - 1)² the exact minimiser
    is a = target - c with c = 3μ/(288 + 5μ) (→ 0.6, the constrained optimum, as μ → ∞)."""
    space = ScheduleSpace((SlotAgent("a", NOMINAL, cap=10.0, window=6.0, budget=12.0),))
    target = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])

    def objective(d):
        return jnp.sum((d["a_amounts"] - target) ** 2) + jnp.sum((d["a_times"] - jnp.asarray(NOMINAL) - 2) ** 2) / 100
    return space, space.penalized(objective, mu=MU), target


def test_lbfgs_and_cma_find_the_constrained_optimum():
    space, J, target = _toy()
    z0 = jnp.asarray(space.encode({"a": [5.0] * 5}))
    exact = np.asarray(target) - 3 * MU / (288 + 5 * MU)
    for trace in (minimize_lbfgs(J, z0, max_steps=300, tol=1e-15),
                  minimize_cma(J, z0, seed=0, max_seconds=20.0, max_evaluations=8000)):
        d = space.decode(jnp.asarray(trace.z))
        np.testing.assert_allclose(d["a_amounts"], exact, atol=1e-3)
        np.testing.assert_allclose(d["a_times"], np.asarray(NOMINAL) + 2, atol=1e-2)
        assert trace.history[-1][2] == trace.value
        assert all(a[2] >= b[2] for a, b in zip(trace.history, trace.history[1:]))  # best so far


def test_bad_agents_are_named():
    with pytest.raises(ValueError, match="cap must be > 0"):
        SlotAgent("a", NOMINAL, cap=0.0)
    with pytest.raises(ValueError, match="window must be >= 0"):
        SlotAgent("a", NOMINAL, cap=1.0, window=-1.0)


def test_span_times_keep_order_interval_and_span_for_any_vector():
    ag = SlotAgent("a", (10.0, 35.0, 60.0, 90.0), cap=1.0, span=(5.0, 100.0), min_interval=20.0)
    space = ScheduleSpace((ag,))
    z = jnp.asarray(np.random.default_rng(1).normal(scale=20.0, size=(300, space.size)))
    t = np.asarray(jax.vmap(space.decode)(z)["a_times"])
    assert t.min() >= 5.0 - 1e-9 and t.max() <= 100.0 + 1e-9
    assert np.diff(t, axis=1).min() >= 20.0 - 1e-9
    z0 = space.encode({"a": [0.5] * 4})  # round trip of the nominal times
    np.testing.assert_allclose(space.decode(jnp.asarray(z0))["a_times"], ag.nominal, rtol=1e-10)
    with pytest.raises(ValueError, match="cannot be 40 h apart"):
        SlotAgent("a", (0.0, 1.0, 2.0), cap=1.0, span=(0.0, 50.0), min_interval=40.0)


def test_augmented_lagrangian_reaches_the_exact_constrained_optimum():
    """Same toy: Σa ≤ 12 active, exact constrained optimum a = target − 0.6. The quadratic
    penalty at the largest μ the augmented Lagrangian uses stops short of it (a = target − c,
    c = 3μ/(288 + 5μ)); the multiplier update removes that bias."""
    space = ScheduleSpace((SlotAgent("a", NOMINAL, cap=10.0, window=6.0, budget=12.0),))
    target = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])

    def objective(d):
        return jnp.sum((d["a_amounts"] - target) ** 2) + jnp.sum((d["a_times"] - jnp.asarray(NOMINAL) - 2) ** 2) / 100

    z0 = jnp.asarray(space.encode({"a": [5.0] * 5}))
    tr = minimize_auglag(space.lagrangian(objective), z0, 1, mu=10.0, outer=10, max_steps=200, tol=1e-6,
                         ftol=1e-15)
    a = np.asarray(space.decode(jnp.asarray(tr.z))["a_amounts"])
    np.testing.assert_allclose(a, np.asarray(target) - 0.6, atol=2e-4)
    assert tr.info["lam"][0] == pytest.approx(2 * 0.6 * 12, rel=1e-3)  # KKT: 2(a - target) + λ/12 = 0
    mu = tr.info["mu"]
    c_penalty = 3 * mu / (288 + 5 * mu)  # penalty-only result at that μ: off by > 100× the tolerance
    assert 0.6 - c_penalty > 100 * 2e-4, (mu, c_penalty)


def _double_well(z):
    """Σ (z² − 1)² + 0.3 z: per coordinate a local minimum near +0.96 and the global one
    near −1.04, so from z = +1 a descent method stays in the worst of 2^n basins."""
    return jnp.sum((z ** 2 - 1) ** 2 + 0.3 * z)


def test_multistart_finds_the_global_minimum_a_single_start_misses():
    jax.config.update("jax_enable_x64", True)
    n = 3
    roots = np.roots([4.0, 0.0, -4.0, 0.3])  # stationary points of (z² − 1)² + 0.3 z
    roots = roots[np.isreal(roots)].real
    per = (roots ** 2 - 1) ** 2 + 0.3 * roots
    exact, local = n * per.min(), n * per[np.argmax(roots)]
    z0 = jnp.ones(n)
    single = minimize_lbfgs(_double_well, z0, max_steps=200, tol=1e-15)
    assert single.value == pytest.approx(local, abs=1e-9)  # the basin it started in
    multi = minimize_multistart(_double_well, z0, starts=8, spread=1.0, max_steps=60, seed=0)
    assert multi.value == pytest.approx(exact, abs=1e-8)
    np.testing.assert_allclose(multi.z, roots.min(), atol=1e-4)
    assert multi.evaluations == 60 * 8 and multi.info["calls"] == 60
    assert all(a[2] >= b[2] for a, b in zip(multi.history, multi.history[1:]))  # best so far
    # ablation: one start, no restarts, is plain L-BFGS and stays in the local basin
    alone = minimize_multistart(_double_well, z0, starts=1, max_steps=60, respawn=False)
    assert alone.value == pytest.approx(local, abs=1e-9)


def test_multistart_converges_like_lbfgs_on_the_constrained_toy():
    """Every start of the batch is a proper L-BFGS: on the penalised toy (one basin) the
    batch reaches the exact minimiser a = target − 3μ/(288 + 5μ) as SciPy's L-BFGS does."""
    space, J, target = _toy()
    z0 = jnp.asarray(space.encode({"a": [5.0] * 5}))
    pts = multistart_points(z0, 4, 0.5, seed=3)
    assert pts.shape == (4, space.size) and np.array_equal(pts[0], np.asarray(z0))
    tr = minimize_multistart(J, z0, points=pts, max_steps=150, tol=1e-15, respawn=False)
    exact = np.asarray(target) - 3 * MU / (288 + 5 * MU)
    for p in tr.info["points"]:  # each start on its own, not just the best
        np.testing.assert_allclose(space.decode(jnp.asarray(p))["a_amounts"], exact, atol=1e-3)
    # bookkeeping: without restarts every evaluated trial is a start's first point, an
    # accepted step or a rejected one
    assert tr.info["accepted"] + tr.info["backtracks"] + 4 == tr.info["calls"] * 4
    assert tr.info["accepted"] > 0
    with pytest.raises(ValueError, match="points must be"):
        minimize_multistart(J, z0, points=pts[:, :3])
    # the interpolated first step (Nocedal & Wright eq. 3.60) reaches the same exact minimiser
    tr = minimize_multistart(J, z0, points=pts, max_steps=150, tol=1e-15, respawn=False, initial_step="interpolated")
    for p in tr.info["points"]:
        np.testing.assert_allclose(space.decode(jnp.asarray(p))["a_amounts"], exact, atol=1e-3)
    with pytest.raises(ValueError, match="initial_step"):
        minimize_multistart(J, z0, points=pts, initial_step="cubic")


def test_augmented_lagrangian_with_batched_starts_reaches_the_exact_optimum():
    space = ScheduleSpace((SlotAgent("a", NOMINAL, cap=10.0, window=6.0, budget=12.0),))
    target = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])

    def objective(d):
        return jnp.sum((d["a_amounts"] - target) ** 2) + jnp.sum((d["a_times"] - jnp.asarray(NOMINAL) - 2) ** 2) / 100

    z0 = jnp.asarray(space.encode({"a": [5.0] * 5}))
    tr = minimize_auglag(space.lagrangian(objective), z0, 1, mu=10.0, outer=10, max_steps=150, tol=1e-6,
                         ftol=1e-15, starts=4, spread=0.5)
    a = np.asarray(space.decode(jnp.asarray(tr.z))["a_amounts"])
    np.testing.assert_allclose(a, np.asarray(target) - 0.6, atol=2e-4)
    assert tr.info["lam"][0] == pytest.approx(2 * 0.6 * 12, rel=1e-3)  # KKT, as for one start
    assert tr.info["starts"] == 4 and np.isfinite(tr.value)
    # the same in Box's sine coordinates, one start (SciPy's L-BFGS on w)
    tr = minimize_auglag(space.lagrangian(objective), z0, 1, mu=10.0, outer=10, max_steps=200, tol=1e-6,
                         ftol=1e-15, chart=space.sine_chart())
    a = np.asarray(space.decode(jnp.asarray(tr.z))["a_amounts"])
    np.testing.assert_allclose(a, np.asarray(target) - 0.6, atol=2e-4)


def test_sine_chart_maps_the_same_schedules_and_its_jacobian_matches_differences():
    space = _space()
    to_w, to_z, dz_dw = space.sine_chart()
    z = np.random.default_rng(2).normal(scale=3.0, size=(4, space.size))
    np.testing.assert_allclose(to_z(to_w(z)), z, rtol=1e-9, atol=1e-9)  # round trip
    w = to_w(z)
    d = space.decode(jnp.asarray(to_z(w[0])))
    mask = space.amount_mask()
    caps = np.concatenate([np.full(5, 10.0), np.full(3, 2.0)])
    np.testing.assert_allclose(np.concatenate([d["a_amounts"], d["b_amounts"]]),
                               caps * (1 + np.sin(w[0][mask])) / 2, rtol=1e-12)  # Box's map
    h = 1e-6
    fd = (to_z(w + h) - to_z(w - h)) / (2 * h)  # the map is diagonal: one difference per entry
    np.testing.assert_allclose(dz_dw(w), fd, rtol=1e-6)
    assert mask.sum() == 8 and not mask[5:10].any()  # a's time coordinates follow its amounts
