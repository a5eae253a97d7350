"""Dose schedules and PK: label numbers, exact delivered amounts, differentiable dose times."""

import math

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from scipy.integrate import quad

import tmepde as tp
from tmepde import therapy
from tmepde.models import tme


def test_dose_units():
    assert therapy.dose_to_ng(50, "ug/m2") == pytest.approx(50e3 * 1.73)
    assert therapy.dose_to_ng(2, "mg/kg") == pytest.approx(140e6)
    assert therapy.dose_to_ng(200, "mg") == pytest.approx(2e8)
    assert therapy.dose_to_ng(1, "µg/m²", bsa_m2=2.0) == pytest.approx(2e3)
    with pytest.raises(ValueError):
        therapy.dose_to_ng(1, "IU")


def test_ifng_1b_sc_label_pk_is_the_models_plasma_curve():
    """Actimmune label (section 12.3), 100 µg/m² s.c. in healthy men: Cmax ≈ 0.6 ng/mL at
    ≈ 7 h, terminal t½ 5.9 h; AUC(0-∞) 8.29 ng·h/mL. The one IFN-γ-1b PK definition meets
    them (Cmax and AUC within 15 %, tmax ±1 h, t½ ±2 %), its AUC is the closed form F·D/(V·ke),
    and the model's plasma observable is the same curve."""
    pk = therapy.IFNG_1B_SC
    dose = therapy.dose_to_ng(100, "ug/m2")
    dosing = therapy.SystemicDosing(therapy.Schedule(np.array([0.0]), np.array([dose])), pk)
    t = np.linspace(0, 240, 24001)
    c = np.asarray(therapy.plasma_concentration(t, dosing))
    i = np.argmax(c)
    auc = np.trapezoid(c, t)
    print("IFN-γ-1b 100 µg/m²: Cmax", c[i], "ng/mL at", t[i], "h; AUC", auc, "ng·h/mL")
    assert c[i] == pytest.approx(0.6, rel=0.15)
    assert abs(t[i] - 7.0) <= 1.0
    assert auc == pytest.approx(8.29, rel=0.15)
    assert auc == pytest.approx(pk.bioavailability * dose / (pk.volume_ml * pk.ke), rel=1e-4)
    late = (t >= 40) & (t <= 80)  # terminal phase (ka = 4 ke: the absorption term is gone)
    slope = np.polyfit(t[late], np.log(c[late]), 1)[0]
    assert math.log(2) / -slope == pytest.approx(5.9, rel=0.02)
    # the keyword form gives the same curve (one PK function, one default pulse width)
    np.testing.assert_array_equal(
        c, np.asarray(therapy.pk_concentration(t, [0.0], [dose], **pk._asdict())))
    # ... and so does the TME model's plasma observable for the same dose in its parameters
    model = tme.tme_model(n_doses=1)
    p = model.params(sys_ifng_amounts=[dose])
    obs = {o.name: o for o in model.observables}["plasma_ifng"]
    tm = t[::100]
    model_c = np.asarray(jax.vmap(lambda s: obs.fn(s, None, p, None))(tm))
    np.testing.assert_allclose(model_c, c[::100], rtol=1e-12, atol=1e-15)
    # linear PK: the clinical 50 µg/m² gives half (0.30 ng/mL)
    half = therapy.SystemicDosing(therapy.Schedule(np.array([0.0]), np.array([dose / 2])), pk)
    assert float(np.max(therapy.plasma_concentration(t, half))) == pytest.approx(c[i] / 2, rel=1e-9)


def test_smooth_bolus_matches_bateman_function():
    """Away from the pulse the smoothed response equals the instantaneous-dose Bateman
    function shifted by the lag, to O((k w)²)."""
    ka, ke, V, D, w = 1.3, 0.2, 1000.0, 5e4, 0.25
    lag = therapy.LAG_WIDTHS * w
    t = np.linspace(3, 48, 50)
    c = np.asarray(therapy.pk_concentration(t, [0.0], [D], ke=ke, ka=ka, volume_ml=V, width=w))
    s = t - lag
    bateman = D / V * ka / (ka - ke) * (np.exp(-ke * s) - np.exp(-ka * s))
    np.testing.assert_allclose(c, bateman, rtol=0.03 * (ka * w) ** 2 + 2e-3)
    iv = np.asarray(therapy.pk_concentration(t, [0.0], [D], ke=ke, volume_ml=V, width=w))
    np.testing.assert_allclose(iv, D / V * np.exp(-ke * s) * np.exp((ke * w) ** 2 / 2), rtol=1e-10)


def test_pembrolizumab_half_life_and_peak():
    """Keytruda: t½ 22 d (±1 %); 200 mg into Vss 6 L -> peak 33.3 µg/mL (±1 %)."""
    pk = therapy.PEMBROLIZUMAB_IV
    t = np.linspace(0, 42 * 24, 2000)
    c = np.asarray(therapy.pk_concentration(t, [0.0], [2e8], **pk._asdict()))
    assert c.max() == pytest.approx(2e8 / 6e3, rel=0.01)
    slope = np.polyfit(t[200:], np.log(c[200:]), 1)[0]
    assert math.log(2) / -slope / 24 == pytest.approx(22.0, rel=0.01)


def test_pulse_and_infusion_deliver_the_dose():
    times, amounts = therapy.from_list([(0.0, 3.0), (30.0, 5.0), (31.0, 2.5)])
    lag = therapy.LAG_WIDTHS * therapy.DEFAULT_WIDTH_H
    total, _ = quad(lambda t: float(therapy.pulse_rate(t, times, amounts)), -10, 60, limit=400,
                    points=[lag, 30 + lag, 31 + lag])
    assert total == pytest.approx(10.5, rel=1e-9)
    # a dose given at t_i is (essentially) all delivered after t_i
    after, _ = quad(lambda t: float(therapy.pulse_rate(t, [0.0], [1.0])), 0, 20, points=[lag])
    assert after == pytest.approx(1 - 0.5 * math.erfc(3 / math.sqrt(2)), rel=1e-9)
    inf, _ = quad(lambda t: float(therapy.infusion_rate(t, 2.0, 50.0, 4.0)), -10, 70,
                  points=[2.0, 50.0], limit=200)
    assert inf == pytest.approx(4.0 * 48.0, rel=1e-9)
    rt, ra = therapy.repeated(0.0, 56.0, 6, 1.0)
    np.testing.assert_allclose(rt, [0, 56, 112, 168, 224, 280])
    pt, pa = therapy.pad(*therapy.single(5.0, 2.0), 3)
    np.testing.assert_allclose(pa, [2, 0, 0])


def test_infusion_pk_closed_form_matches_quadrature():
    """The infusion response (closed form) equals a numerical convolution of the input rate."""
    ka, ke, V = 0.8, 0.1, 500.0
    t_eval = 30.0
    c = float(therapy.pk_concentration(t_eval, [0.0], [0.0], ke=ke, ka=ka, volume_ml=V,
                                       inf_start=5.0, inf_stop=20.0, inf_rate=3.0))
    kernel = lambda s: ka / (ka - ke) * (math.exp(-ke * s) - math.exp(-ka * s)) / V
    ref, _ = quad(lambda s: float(therapy.infusion_rate(s, 5.0, 20.0, 3.0)) * kernel(t_eval - s),
                  -5, t_eval, points=[5.0, 20.0], limit=400)
    assert c == pytest.approx(ref, rel=1e-8)


def test_intratumoral_site_integrates_to_one_in_3d():
    grid = tp.Grid((40, 40, 40), 20.0)
    dens = np.asarray(therapy.gaussian_site(grid.coordinates(), (400.0, 400.0, 400.0), 75.0))  # ±5.3 s.d. inside
    assert dens.sum() * grid.cell_volume == pytest.approx(1.0, rel=1e-6)


def test_grad_wrt_dose_time_matches_finite_difference_pk():
    f = lambda tau: therapy.pk_concentration(10.0, jnp.array([tau, 4.0]), jnp.array([1e3, 5e2]),
                                             ke=0.2, ka=1.0, volume_ml=100.0)
    g = float(jax.grad(f)(2.0))
    h = 1e-4
    fd = (float(f(2.0 + h)) - float(f(2.0 - h))) / (2 * h)
    assert g == pytest.approx(fd, rel=1e-5)


@pytest.mark.slow
def test_grad_through_simulation_wrt_intratumoral_dose_time():
    """d(tumor burden at 24 h)/d(injection time) through the full TME simulation vs central FD.

    Under sbdf2 this compiles the reverse pass of the whole model (~100 CPU-s), hence slow;
    the default suite checks every dose time's gradient of the same model under IMEX Euler
    (tests/test_gradients_tme.py) and sbdf2's reverse mode on a small model
    (tests/test_gradients.py)."""
    grid = tp.Grid((2,), 20.0)
    model = tme.tme_model(n_doses=1)
    sim = tp.Simulator(model, grid, dt=0.5, save_every=24.0)
    y0 = model.stack(tme.uniform_conditions(), grid)
    base = model.params(it_ifng_amounts=[2000.0])

    @jax.jit
    def obj(tau):
        p = dict(base, it_ifng_times=jnp.reshape(tau, (1,)))
        ys = sim.run(p, y0, 1)
        return jnp.mean(ys[-1, model.index("tumor")] + ys[-1, model.index("stem")])

    tau = 3.1
    g = float(jax.grad(obj)(tau))
    h = 1e-4  # the FD truncation error at h = 1e-3 is 5e-5 relative (sharp pulse)
    fd = (float(obj(tau + h)) - float(obj(tau - h))) / (2 * h)
    assert abs(g) > 1e-8
    assert g == pytest.approx(fd, rel=1e-5)


# -- typed dosing: the flat parameter dict <-> pytrees ---------------------------------------
def _dosing_keys(params):
    """Every parameter the dose naming owns, found by its own key functions."""
    keys = set()
    for agent in tme.PK:
        keys |= set(therapy.systemic_params(agent, therapy.systemic(params, agent)))
    for agent in tme.LOCAL:
        keys |= set(therapy.local_params(agent, therapy.local(params, agent)))
    return keys


@pytest.mark.parametrize("grid", [None, tp.Grid((4, 5), 20.0)])
def test_params_round_trip_through_pytrees(grid):
    """params -> SystemicDosing/LocalDosing -> params gives back every dose parameter, value
    and order, and the model's defaults are exactly what the writer makes of the agent
    library (the keys that configs and result files hold)."""
    model = tme.tme_model(grid=grid, n_doses={"sys_ifng": 3, "it_il12": 2})
    p = model.params(sys_ifng_times=[0.0, 56.0, 112.0], sys_ifng_amounts=[8.65e4] * 3,
                     it_il12_amounts=[300.0, 0.0], inf_ifng_rate=2.0)
    expect = {f"{r}_{a}_{s}" for r, agents in (("sys", tme.PK), ("it", tme.LOCAL))
              for a in agents for s in ("times", "amounts")}
    expect |= {f"pk_{a}_{s}" for a in tme.PK for s in ("ke", "V", "F")}
    expect |= {f"pk_{a}_ka" for a in tme.PK if tme.PK[a].ka is not None}
    expect |= {f"inf_{a}_{s}" for a in tme.LOCAL for s in ("start", "stop", "rate")}
    expect |= {"it_volume_ml"}
    if grid is not None:
        expect |= {f"it_{a}_{s}" for a in tme.LOCAL for s in ("x", "y", "width")}
    assert _dosing_keys(p) == expect
    for agent in tme.PK:
        back = therapy.systemic_params(agent, therapy.systemic(p, agent))
        assert list(back) == [k for k in p if k in back]  # the dict's own order
        for k, v in back.items():
            np.testing.assert_array_equal(np.asarray(v), np.asarray(p[k]))
    for agent in tme.LOCAL:
        d = therapy.local(p, agent)
        assert (d.deposit is None) == (grid is None)
        for k, v in therapy.local_params(agent, d).items():
            np.testing.assert_array_equal(np.asarray(v), np.asarray(p[k]))
    ifng = therapy.systemic(p, "ifng")
    np.testing.assert_array_equal(ifng.schedule.amounts, [8.65e4] * 3)
    assert float(ifng.pk.ka) == therapy.IFNG_1B_SC.ka
    assert therapy.systemic(p, "pd1").pk.ka is None  # i.v.: no pk_pd1_ka


def test_naming_is_the_one_the_files_hold():
    """The key functions spell the names that configs, fixtures and result files use."""
    assert therapy.schedule_keys(therapy.systemic_prefix("ifng")) == ("sys_ifng_times", "sys_ifng_amounts")
    assert therapy.schedule_keys(therapy.local_prefix("il12")) == ("it_il12_times", "it_il12_amounts")
    assert therapy.pk_keys("ifng") == {"ke": "pk_ifng_ke", "volume_ml": "pk_ifng_V",
                                       "bioavailability": "pk_ifng_F", "ka": "pk_ifng_ka"}
    assert therapy.infusion_keys(therapy.infusion_prefix("il12")) == (
        "inf_il12_start", "inf_il12_stop", "inf_il12_rate")
    assert therapy.deposit_keys("ifng", 2) == (("it_ifng_x", "it_ifng_y"), "it_ifng_width")
    assert therapy.is_dose_amount_key("sys_pd1_amounts") and not therapy.is_dose_amount_key("sys_pd1_times")
    names = ["a_times", "a_amounts", "b_times", "inf_x_start", "inf_x_stop", "inf_x_rate", "c_rate"]
    assert therapy.schedule_prefixes(names) == ["a"]
    assert therapy.infusion_prefixes(names) == ["inf_x"]
    with pytest.raises(KeyError, match="sys_foo_times"):
        therapy.systemic({}, "foo")


def test_dose_events_from_the_pytree_naming():
    p = {"sys_ifng_times": np.array([0.0, 56.0, 500.0, 0.0]),
         "sys_ifng_amounts": np.array([1.0, 1.0, 1.0, 0.0]),
         "inf_il12_start": 10.0, "inf_il12_stop": 20.0, "inf_il12_rate": 3.0,
         "inf_ifng_start": 1.0, "inf_ifng_stop": 2.0, "inf_ifng_rate": 0.0, "growth": 1.0}
    ev = therapy.dose_events(p, t_end=100.0)
    assert list(ev) == ["sys_ifng", "inf_il12"]
    np.testing.assert_array_equal(ev["sys_ifng"], [0.0, 56.0])
    np.testing.assert_array_equal(ev["inf_il12"], [10.0, 20.0])


def test_pytrees_pass_through_jit_and_grad_of_plasma_auc():
    """d(plasma AUC over 0-72 h)/d(amounts, dose times, ke) through jax.jit with the dosing
    pytree as the argument, each against a central finite difference."""
    t = jnp.linspace(0.0, 72.0, 1441)

    @jax.jit
    def auc(d):
        return jnp.trapezoid(therapy.plasma_concentration(t, d), t)

    d0 = therapy.SystemicDosing(
        therapy.Schedule(jnp.array([2.0, 30.0]), jnp.array([8.65e4, 4.0e4])),
        therapy.PK(*map(jnp.asarray, therapy.IFNG_1B_SC)))
    g = jax.grad(auc)(d0)
    assert isinstance(g, therapy.SystemicDosing) and g.pk.ka.shape == ()
    h = {"amounts": 1.0, "times": 1e-4, "ke": 1e-6}
    checks = [("amounts", i, lambda d, v, i=i: d._replace(schedule=d.schedule._replace(
                  amounts=d.schedule.amounts.at[i].add(v))), g.schedule.amounts[i]) for i in range(2)]
    checks += [("times", i, lambda d, v, i=i: d._replace(schedule=d.schedule._replace(
                  times=d.schedule.times.at[i].add(v))), g.schedule.times[i]) for i in range(2)]
    checks += [("ke", 0, lambda d, v: d._replace(pk=d.pk._replace(ke=d.pk.ke + v)), g.pk.ke)]
    for name, i, shift, grad in checks:
        fd = (float(auc(shift(d0, h[name]))) - float(auc(shift(d0, -h[name])))) / (2 * h[name])
        assert abs(float(grad)) > 0
        assert float(grad) == pytest.approx(fd, rel=1e-6), (name, i)
    # linear PK: the AUC gradient w.r.t. an amount is the AUC of a unit dose (0-72 h)
    unit = d0._replace(schedule=therapy.Schedule(jnp.array([2.0]), jnp.array([1.0])))
    assert float(g.schedule.amounts[0]) == pytest.approx(float(auc(unit)), rel=1e-12)


def test_local_input_deposits_the_dose():
    """Well mixed: ∫ input dt · volume = the dose; on a grid: ∑ input · cell volume / 1e12 µm³
    per mL = the input rate (ng/h)."""
    d = therapy.LocalDosing(therapy.Schedule(np.array([1.0]), np.array([500.0])),
                            therapy.Infusion(2.0, 12.0, 30.0), None, 0.1)
    t = np.linspace(-5.0, 30.0, 3501)
    rate = np.asarray(jax.vmap(lambda s: therapy.local_input(s, d))(t))
    assert np.trapezoid(rate, t) * 0.1 == pytest.approx(500.0 + 300.0, rel=1e-6)
    grid = tp.Grid((30, 30, 30), 20.0)
    site = d._replace(deposit=therapy.Deposit((300.0, 300.0, 300.0), 50.0), volume_ml=None)  # ±6 s.d.
    coords = tuple(jnp.asarray(c) for c in grid.coordinates())
    dens = np.asarray(therapy.local_input(7.0, site, coords=coords))
    ng_per_h = float(therapy.local_input(7.0, d)) * 0.1  # pulse tail + infusion, ≈ 32.2 ng/h
    assert ng_per_h > 30.0
    assert dens.sum() * grid.cell_volume / therapy.UM3_PER_ML == pytest.approx(ng_per_h, rel=1e-6)
    with pytest.raises(ValueError, match="it_volume_ml"):
        therapy.local_input(7.0, d._replace(volume_ml=None))
