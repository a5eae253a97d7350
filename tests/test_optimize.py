"""Dose optimisation of a run (tmepde.optimize, ``tmepde optimize``): the gradient of the
augmented Lagrangian against finite differences, constraints holding at the end (checked
with closed-form PK outside the library), and the command writing where -o says."""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tmepde as tp
from tmepde import therapy
from tmepde.cli import main
from tmepde.config import ConfigError, loads_config
from tmepde.schedules import minimize_multistart, multistart_points

MODEL = '''
import numpy as np
import jax.numpy as jnp
import tmepde as tp
from tmepde import therapy


def plasma(t, p):
    return therapy.pk_concentration(t, p["sys_ifng_times"], p["sys_ifng_amounts"], ke=p["pk_ifng_ke"],
                                    volume_ml=p["pk_ifng_V"], bioavailability=p["pk_ifng_F"],
                                    width=p["dose_width_h"])


def model():
    def reactions(t, y, p):
        c = plasma(t, p)
        T = y["tumor"]
        return {"tumor": p["growth"] * T * (1 - T) - p["kill"] * c / (c + p["ec50"]) * T}
    params = {"growth": 0.03, "kill": 0.1, "ec50": 0.5, "pk_ifng_ke": 0.1, "pk_ifng_V": 1.0,
              "pk_ifng_F": 1.0, "dose_width_h": 1.0,
              "sys_ifng_times": np.array([0.0, 6.0, 12.0]), "sys_ifng_amounts": np.array([1.0, 1.0, 1.0])}
    obs = [tp.Observable("tumor_burden", lambda t, y, p, g: jnp.sum(y["tumor"] * g.cell_volumes()), "µm"),
           tp.Observable("plasma_ifng", lambda t, y, p, g: plasma(t, p), "ng/mL")]
    return tp.Model([tp.Species("tumor")], reactions, params, name="toy_pk", observables=obs)
'''
CAP, BUDGET, GAP, LIMIT, T_MAX = 1.5, 3.0, 12.0, 1.2, 60.0
KE = 0.1


def _config(tmp_path, extra=""):
    (tmp_path / "toy_pk_model.py").write_text(MODEL)
    text = textwrap.dedent(f"""
        [grid]
        shape = [2]
        spacing = 10.0
        [time]
        t_end = 96.0
        dt = 1.0
        save_every = 12.0
        [model]
        path = "toy_pk_model:model"
        [initial]
        tumor = {{ type = "uniform", value = 0.5 }}
        [solver]
        scheme = "sbdf1"
        dtype = "float64"
        [optimize]
        objective = "both"
        exposure = 0.02
        toxicity_limit = {LIMIT}
        steps = 15
        rounds = 6
        cma_factor = 0.5
        [[optimize.agents]]
        prefix = "sys_ifng"
        max_amount = {CAP}
        budget = {BUDGET}
        t_max = {T_MAX}
        min_interval = {GAP}
        """) + extra
    cfg = tmp_path / "opt.toml"
    cfg.write_text(text)
    return cfg


@pytest.fixture
def toy(tmp_path, monkeypatch):
    jax.config.update("jax_enable_x64", True)
    cfg_path = _config(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return cfg_path


def _problem(cfg_path):
    from tmepde.optimize import schedule_problem
    from tmepde.runner import build

    from tmepde.config import load_config

    cfg = load_config(cfg_path)
    s = build(cfg)
    return cfg, schedule_problem(cfg.model, s.simulator, cfg.grid, s.params, s.y0, s.n_saves,
                                 cfg.data["optimize"], cfg.data["time"]["t_end"])


def test_lagrangian_gradient_matches_central_differences(toy):
    """d/dz of L(z, λ, μ) (objective through the whole run + plasma AUC + budget and peak
    constraints, both active) by reverse mode equals central differences."""
    _, prob = _problem(toy)
    space = prob.space
    L = space.lagrangian(prob.f, prob.extra)
    vg = jax.jit(jax.value_and_grad(lambda z: L(z, jnp.array([0.3, 0.2]), 10.0)[0]))  # one compile
    z = jnp.asarray(space.encode({"sys_ifng": [1.4, 1.3, 1.2]})) + jnp.array([0.0, 0.1, -0.2, 0.3, -0.1, 0.2])
    g = np.asarray(space.constraints(z, prob.extra))
    assert g[0] > 0 and g[1] > 0  # both constraints active: their terms are in the gradient
    grad = np.asarray(vg(z)[1])
    h = 1e-5
    for i in range(space.size):
        e = jnp.zeros(space.size).at[i].set(h)
        fd = (float(vg(z + e)[0]) - float(vg(z - e)[0])) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=2e-5, abs=1e-8), (i, grad[i], fd)
    # the multi-start step: one vmapped call gives every start's value and gradient (λ, μ
    # shared); each row against the scalar program's central differences above
    Z = jnp.asarray(multistart_points(np.asarray(z), 3, 0.3, seed=1))
    F, G = jax.jit(jax.vmap(jax.value_and_grad(lambda z: L(z, jnp.array([0.3, 0.2]), 10.0)[0])))(Z)
    for k in range(3):
        assert float(F[k]) == pytest.approx(float(vg(Z[k])[0]), rel=1e-12)
        fd = [(float(vg(Z[k] + e)[0]) - float(vg(Z[k] - e)[0])) / (2 * h) for e in h * jnp.eye(space.size)]
        np.testing.assert_allclose(np.asarray(G[k]), fd, rtol=2e-5, atol=1e-8)


@pytest.mark.slow
def test_multistart_from_the_config_keeps_every_constraint(toy):
    """optimize.starts = 3, coordinates = "sine": the augmented Lagrangian's rounds run on a
    batch of three starts in Box's coordinates;
    the result keeps budget, cap, spacing and peak plasma (closed-form PK, finer grid) and
    beats the start."""
    from tmepde.optimize import run_optimize

    cfg, prob = _problem(toy)
    prob.table.update(starts=3, spread=0.5, steps=25, rounds=5, coordinates="sine")
    out = run_optimize(prob, cma=False, log=None)
    assert out.gradient.info["starts"] == 3 and not out.violations
    d = out.schedules["gradient"]
    t, a = np.asarray(d["sys_ifng_times"]), np.asarray(d["sys_ifng_amounts"])
    tol = 1e-3
    assert np.all(a > 0) and np.all(a <= CAP) and a.sum() <= BUDGET * (1 + tol), a
    assert np.all(np.diff(t) >= GAP - 1e-9) and t.min() >= 0 and t.max() <= T_MAX, t
    tt = np.arange(0, 96.01, 0.01)
    peak = float(np.max(therapy.pk_concentration(tt, t, a, ke=KE, volume_ml=1.0, width=1.0)))
    assert peak <= LIMIT * (1 + tol), peak
    assert out.terms["gradient"]["objective"] < out.terms["start (config)"]["objective"] - 0.02
    with pytest.raises(ConfigError, match="optimize.starts"):
        loads_config(toy.read_text().replace("rounds = 6", "rounds = 6\nstarts = 0"), base_dir=toy.parent)
    with pytest.raises(ConfigError, match="optimize.coordinates"):
        loads_config(toy.read_text().replace("rounds = 6", "rounds = 6\ncoordinates = \"log\""), base_dir=toy.parent)


def test_cli_writes_to_o_and_the_result_keeps_every_constraint(toy, tmp_path, capsys):
    out = tmp_path / "sub" / "run.h5"
    assert main(["optimize", str(toy), "-o", str(out)]) == 0
    log = capsys.readouterr().out
    assert "AL round 1 (mu 10) iteration   1: J" in log and "CMA-ES seed 0 generation   1" in log
    for p in (out, tmp_path / "sub" / "run.md", tmp_path / "sub" / "run_schedule.toml", tmp_path / "sub" / "run.png"):
        assert p.stat().st_size > 200, p
    assert not (tmp_path / "results").exists()
    import tomllib

    sched = tomllib.loads((tmp_path / "sub" / "run_schedule.toml").read_text())["model"]["params"]
    t, a = np.asarray(sched["sys_ifng_times"]), np.asarray(sched["sys_ifng_amounts"])
    tol = 1e-3  # optimize.tolerance, relative
    assert np.all(a > 0) and np.all(a <= CAP), a
    assert a.sum() <= BUDGET * (1 + tol), a
    assert np.all(np.diff(t) >= GAP - 1e-9) and t.min() >= 0 and t.max() <= T_MAX, t
    tt = np.arange(0, 96.01, 0.01)  # a finer grid than the library's 0.25 h
    peak = float(np.max(therapy.pk_concentration(tt, t, a, ke=KE, volume_ml=1.0, width=1.0)))
    assert peak <= LIMIT * (1 + tol), peak
    assert peak >= LIMIT * (1 - 0.05) or a.sum() >= BUDGET * (1 - 0.05)  # a constraint is active
    # independent simulation: the written schedule beats the start (the config's own schedule)
    model = tp.load_model("toy_pk_model:model")

    def burden(times, amounts):
        p = dict(model.default_params(jnp.float64), sys_ifng_times=jnp.asarray(times, float),
                 sys_ifng_amounts=jnp.asarray(amounts, float))
        _, f = tp.simulate(model, tp.Grid((2,), 10.0), {"tumor": 0.5}, t_end=96.0, dt=1.0, save_every=12.0,
                           params=p, dtype=jnp.float64, scheme="sbdf1")
        return np.asarray(f["tumor"][:, 0])

    none, start, best = burden([0, 6, 12], [0, 0, 0]), burden([0, 6, 12], [1, 1, 1]), burden(t, a)

    def auc(times, amounts):
        return np.trapezoid(therapy.pk_concentration(tt, times, amounts, ke=KE, volume_ml=1.0, width=1.0), tt)

    def obj(b, times, amounts):
        return b[-1] / none[-1] + b.mean() / none.mean() + 0.02 * auc(times, amounts) / auc([0, 6, 12], [1, 1, 1])

    assert obj(best, t, a) < obj(start, [0, 6, 12], [1, 1, 1]) - 0.02, (obj(best, t, a), obj(start, [0, 6, 12], [1] * 3))
    report = (tmp_path / "sub" / "run.md").read_text()
    assert "all hold" in report and "CMA-ES" in report
    import h5py

    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["schedules/gradient/sys_ifng_amounts"][:], a)
        assert f.attrs["objective_name"] == "both"
        assert f["burden/gradient"].attrs["objective"] == pytest.approx(obj(best, t, a), rel=1e-3)
    assert main(["info", str(out)]) == 0
    assert "tmepde-optimize" in capsys.readouterr().out
    assert main(["plot", str(out), "-o", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "run.png").stat().st_size > 1000


def test_bad_optimize_values_are_named(tmp_path, monkeypatch):
    (tmp_path / "toy_pk_model.py").write_text(MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = _config(tmp_path).read_text()
    with pytest.raises(ConfigError, match=r"optimize.agents\[0\].min_interval.*cannot be 50 h apart"):
        loads_config(text.replace(f"min_interval = {GAP}", "min_interval = 50.0"), base_dir=tmp_path)
    with pytest.raises(ConfigError, match="optimize.tolerance"):
        loads_config(text.replace("rounds = 6", "rounds = 6\ntolerance = -1"), base_dir=tmp_path)


def _valley_then_plateau(z):
    """50 x² − exp(−y²/2): minimum −1 at the origin. From (1, 3) the first pairs carry the
    x-curvature (100, so H0 ≈ 1/100) while y sits where J is concave (|y| > 1): every later
    pair has s·y ≤ 0 and is not stored, so plain L-BFGS keeps the 1/100 scale on a
    gradient of ~0.03 and crawls."""
    return 50 * z[0] ** 2 - jnp.exp(-z[1] ** 2 / 2)


def test_stale_memory_floor_escapes_the_short_step_crawl():
    jax.config.update("jax_enable_x64", True)
    z0 = jnp.array([1.0, 3.0])
    kw = dict(starts=1, max_steps=60, tol=1e-15, respawn=False)
    floor = minimize_multistart(_valley_then_plateau, z0, stale_after=3, **kw)
    assert floor.value == pytest.approx(-1.0, abs=1e-9)  # the analytic minimum
    np.testing.assert_allclose(floor.z, [0.0, 0.0], atol=1e-4)
    assert floor.info["stale_resets"] >= 1
    calls = next(n for _, n, v in floor.history if v <= -1 + 1e-6)
    assert calls <= 40, calls
    # ablation: without the floor the same 60 calls stay on the plateau (J > −0.02, the
    # minimum is −1) with every step accepted
    crawl = minimize_multistart(_valley_then_plateau, z0, stale_after=None, **kw)
    assert crawl.value > -0.02 and crawl.info["stale_resets"] == 0
    assert crawl.info["backtracks"] == 0 and crawl.info["accepted"] == 59
    with pytest.raises(ValueError, match="stale_after"):
        minimize_multistart(_valley_then_plateau, z0, stale_after=0, **kw)


def test_stale_memory_floor_keeps_lbfgs_on_rosenbrock():
    """Where the pairs keep positive curvature the floor must not get in the way: Rosenbrock's
    minimum (1, …, 1), J = 0, in 8 dimensions within 120 batched calls, both first steps."""
    jax.config.update("jax_enable_x64", True)

    def rosenbrock(z):
        return jnp.sum(100 * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2)

    z0 = jnp.asarray(np.tile([-1.2, 1.0], 4))
    for step in ("unit", "interpolated"):
        tr = minimize_multistart(rosenbrock, z0, starts=1, max_steps=120, tol=1e-15, respawn=False,
                                 initial_step=step, stale_after=3)
        assert tr.value < 1e-12, (step, tr.value)
        np.testing.assert_allclose(tr.z, np.ones(8), atol=1e-5)
