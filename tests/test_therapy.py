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


def test_ifng_sc_label_pk():
    """Actimmune/Imukin s.c. 50 µg/m² (MODEL.md anchor): Cmax 0.6 ng/mL (±5 %) at ~8 h
    (±1 h, incl. the 0.75 h pulse lag), terminal t½ 5.9 h (±2 %)."""
    pk = therapy.IFNG_SC
    t = np.linspace(0, 96, 9601)
    c = np.asarray(therapy.pk_concentration(t, [0.0], [therapy.dose_to_ng(50, "ug/m2")],
                                            ke=pk["ke"], ka=pk["ka"], volume_ml=pk["V"]))
    i = np.argmax(c)
    assert c[i] == pytest.approx(0.6, rel=0.05)
    assert abs(t[i] - 8.0) <= 1.0
    t2 = np.linspace(180, 240, 61)  # terminal phase (ka ≈ ke: the mixture decays late)
    c2 = np.asarray(therapy.pk_concentration(t2, [0.0], [therapy.dose_to_ng(50, "ug/m2")],
                                             ke=pk["ke"], ka=pk["ka"], volume_ml=pk["V"]))
    slope = np.polyfit(t2, np.log(c2), 1)[0]
    assert math.log(2) / -slope == pytest.approx(5.9, rel=0.02)


def test_smooth_bolus_matches_bateman_function():
    """Away from the pulse the smoothed response equals the instantaneous-dose Bateman
    function shifted by the lag, to O((k w)²)."""
    ka, ke, V, D = 1.3, 0.2, 1000.0, 5e4
    lag = therapy.LAG_WIDTHS * therapy.DEFAULT_WIDTH_H
    t = np.linspace(3, 48, 50)
    c = np.asarray(therapy.pk_concentration(t, [0.0], [D], ke=ke, ka=ka, volume_ml=V))
    s = t - lag
    bateman = D / V * ka / (ka - ke) * (np.exp(-ke * s) - np.exp(-ka * s))
    np.testing.assert_allclose(c, bateman, rtol=0.03 * (ka * 0.25) ** 2 + 2e-3)
    iv = np.asarray(therapy.pk_concentration(t, [0.0], [D], ke=ke, volume_ml=V))
    np.testing.assert_allclose(iv, D / V * np.exp(-ke * s) * np.exp((ke * 0.25) ** 2 / 2), rtol=1e-10)


def test_pembrolizumab_half_life_and_peak():
    """Keytruda: t½ 22 d (±1 %); 200 mg into Vss 6 L -> peak 33.3 µg/mL (±1 %)."""
    pk = therapy.PEMBROLIZUMAB_IV
    t = np.linspace(0, 42 * 24, 2000)
    c = np.asarray(therapy.pk_concentration(t, [0.0], [2e8], ke=pk["ke"], volume_ml=pk["V"]))
    assert c.max() == pytest.approx(2e8 / 6e3, rel=0.01)
    slope = np.polyfit(t[200:], np.log(c[200:]), 1)[0]
    assert math.log(2) / -slope / 24 == pytest.approx(22.0, rel=0.01)


def test_pulse_and_infusion_deliver_the_dose():
    times, amounts = therapy.from_list([(0.0, 3.0), (30.0, 5.0), (31.0, 2.5)])
    total, _ = quad(lambda t: float(therapy.pulse_rate(t, times, amounts)), -10, 60, limit=400,
                    points=[0.75, 30.75, 31.75])
    assert total == pytest.approx(10.5, rel=1e-9)
    # a dose given at t_i is (essentially) all delivered after t_i
    after, _ = quad(lambda t: float(therapy.pulse_rate(t, [0.0], [1.0])), 0, 20, points=[0.75])
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
