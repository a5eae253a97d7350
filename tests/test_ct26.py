"""CT26 fitting on the radial grid and the optimize CLI.

* Synthetic volumes made with known growth parameters plus noise, fitted per animal by
  tmepde.ct26.fit_cohort (the cohort fitter of `tmepde fit`), recover the parameters within
  their 2σ Gauss–Newton intervals.
* `tmepde optimize` on a tiny config improves the objective (checked by an independent
  simulation of the written schedule) and respects budget, cap, interval and toxicity.
* The shipped data set loads with its documented arms.
"""

import textwrap

import jax.numpy as jnp
import numpy as np
import tomllib

import tmepde as tp
from tmepde import ct26, therapy
from tmepde.cli import main


def test_data_ships_three_arms_of_eight_mice():
    arms = ct26.load_data()
    assert set(arms) == set(ct26.ARMS)
    for arm in arms.values():
        assert len(arm.mice) == 8 and arm.days[0] == 11
    # 215 rows in the csv (header excluded)
    assert sum(int(np.isfinite(a.volumes).sum()) for a in arms.values()) == 215


def test_synthetic_volumes_recover_growth_parameters_within_2_sigma():
    # IMEX Euler: a third of the compiled program of sbdf2 (the scheme is not what is tested here)
    problem = ct26.Ct26Problem(n_shells=16, radius_um=12000.0, dt=2.0, n_days=12, dtype=jnp.float64,
                               scheme="sbdf1")
    truth = {"growth_tumor": 0.03, "D_tumor": 0.5, "v0_mm3": 15.0}
    p_true = problem.base_params(**truth)
    clean = np.asarray(problem.volumes(p_true))
    assert clean[-1] > 3 * clean[0]  # the tumor grows over the 12 days
    rng = np.random.default_rng(7)
    noise = 0.05
    days = ct26.DAY0 + np.arange(len(clean))
    vols = np.stack([(clean + ct26.FLOOR_MM3) * np.exp(noise * rng.standard_normal(clean.shape)) - ct26.FLOOR_MM3
                     for _ in range(2)])
    arm = ct26.Arm("synthetic", np.array([1, 2]), days, vols)
    start = problem.base_params(growth_tumor=0.02, D_tumor=0.5, v0_mm3=12.0)
    res = ct26.fit_cohort(problem, arm, start, ["growth_tumor", "v0_mm3"], prior_sd=3.0,
                          sigma=noise, max_steps=12)
    for name in ("growth_tumor", "v0_mm3"):
        est, se = res.values[name], res.std_error[name]
        err = np.abs(est - truth[name])
        assert np.all(err < 2 * se), (name, est, se)
        assert np.all(se < 0.25 * truth[name]), (name, se)
    assert np.all(res.cost < 3 * len(clean)), res.cost  # χ² ~ n/2 with the right noise


MODEL = '''
import numpy as np
import tmepde as tp
from tmepde import therapy

def model():
    def reactions(t, y, p):
        c = therapy.pk_concentration(t, p["sys_ifng_times"], p["sys_ifng_amounts"], ke=p["pk_ifng_ke"],
                                     volume_ml=p["pk_ifng_V"], bioavailability=p["pk_ifng_F"],
                                     width=p["dose_width_h"])
        T = y["tumor"]
        return {"tumor": p["growth"] * T * (1 - T) - p["kill"] * c / (c + p["ec50"]) * T}
    params = {"growth": 0.03, "kill": 0.1, "ec50": 0.5, "pk_ifng_ke": 0.1, "pk_ifng_V": 1.0,
              "pk_ifng_F": 1.0, "dose_width_h": 1.0,
              "sys_ifng_times": np.array([0.0, 6.0, 12.0]), "sys_ifng_amounts": np.array([1.0, 1.0, 1.0])}
    return tp.Model([tp.Species("tumor")], reactions, params, name="toy_pk")
'''


def test_optimize_cli_improves_and_respects_every_constraint(tmp_path, monkeypatch):
    (tmp_path / "toy_pk_model.py").write_text(MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    cap, budget, gap, limit, t_max = 1.5, 3.0, 12.0, 1.2, 60.0
    cfg = tmp_path / "opt.toml"
    cfg.write_text(textwrap.dedent(f"""
        [grid]
        shape = [2]
        spacing = 10.0
        [time]
        t_end = 96.0
        dt = 0.5
        save_every = 6.0
        [model]
        path = "toy_pk_model:model"
        [initial]
        tumor = {{ type = "uniform", value = 0.5 }}
        [solver]
        dtype = "float64"
        [optimize]
        objective = "both"
        toxicity_limit = {limit}
        steps = 8
        learning_rate = 0.15
        cma_simulations = 20
        output = "{tmp_path / 'opt'}"
        [[optimize.agents]]
        prefix = "sys_ifng"
        max_amount = {cap}
        budget = {budget}
        t_max = {t_max}
        min_interval = {gap}
        """))
    assert main(["optimize", str(cfg)]) == 0
    sched = tomllib.loads((tmp_path / "opt_schedule.toml").read_text())
    t = np.asarray(sched["model"]["params"]["sys_ifng_times"])
    a = np.asarray(sched["model"]["params"]["sys_ifng_amounts"])
    assert np.all(a >= 0) and np.all(a <= cap * (1 + 1e-9)), a
    assert a.sum() <= budget * (1 + 1e-9), a
    assert np.all(np.diff(np.sort(t)) >= gap - 1e-6) and t.min() >= 0 and t.max() <= t_max + 1e-9, t
    tt = np.arange(0, 96.01, 0.05)
    peak = float(np.max(therapy.pk_concentration(tt, t, a, ke=0.1, volume_ml=1.0, width=1.0)))
    assert peak <= limit * (1 + 1e-6), peak
    # independent simulation: the written schedule beats the start (the config's own schedule)
    model = tp.load_model("toy_pk_model:model")

    def objective(times, amounts):
        p = dict(model.default_params(jnp.float64), sys_ifng_times=jnp.asarray(times),
                 sys_ifng_amounts=jnp.asarray(amounts))
        _, f = tp.simulate(model, tp.Grid((2,), 10.0), {"tumor": 0.5}, t_end=96.0, dt=0.5, save_every=6.0,
                           params=p, dtype=jnp.float64)
        b = np.asarray(f["tumor"][:, 0])
        return b

    none, start, best = objective([0, 6, 12], [0, 0, 0]), objective([0, 6, 12], [1, 1, 1]), objective(t, a)
    obj = lambda b: b[-1] / none[-1] + b.mean() / none.mean()  # noqa: E731
    assert obj(best) < obj(start) - 1e-3, (obj(best), obj(start))
    report = (tmp_path / "opt.md").read_text()
    assert "all hold" in report and "CMA-ES" in report
    assert (tmp_path / "opt.png").stat().st_size > 1000
    # the optimize file: `tmepde plot` redraws it, and its schedule equals the written config
    from tmepde.summaries import OPTIMIZE_FORMAT, file_format
    import h5py

    h5 = tmp_path / "opt.h5"
    assert file_format(h5) == OPTIMIZE_FORMAT
    with h5py.File(h5, "r") as f:
        np.testing.assert_allclose(f["schedules/gradient/sys_ifng_amounts"][:], a, rtol=1e-12)
        assert f["history/CMA-ES"].shape[1] == 2
    assert main(["plot", str(h5), "-o", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "opt.png").stat().st_size > 1000
