"""Exact reductions of the TME model.

1. No immune cells, no cytokines, no vessels and no angiogenesis (so nothing is recruited),
   supply coupling off:
   the tumor obeys logistic growth with random motility (Fisher–KPP), checked against
   ``tmepde.models.examples.fisher_kpp`` run with the same parameters and numerics, and the
   uniform case against the logistic closed form.
2. Uniform state (diffusion and chemotaxis vanish): the full model, with doses, equals its
   well-mixed ODE integrated by scipy ``solve_ivp`` (Radau, rtol 1e-10) from the same
   reaction and local-decay functions at a single point.
"""

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from scipy.integrate import solve_ivp

import tmepde as tp
from tmepde.models import tme
from tmepde.models.examples import fisher_kpp

TUMOR_ONLY = dict(supply_weight=0.0, angiogenesis=0.0)  # no vessel growth -> no influx


def test_tumor_only_is_fisher_kpp():
    grid = tp.Grid((64,), 20.0)
    x = grid.axis_centers(0)
    u0 = 0.8 / (1 + np.exp((x - 300.0) / 40.0))
    model = tme.tme_model()
    p = model.params(**TUMOR_ONLY)
    r, D = float(p["growth_tumor"]), float(p["D_tumor"])
    fk = fisher_kpp(motility=D, growth=r)
    kw = dict(t_end=96.0, dt=0.5, save_every=24.0)
    _, f_tme = tp.simulate(model, grid, {"tumor": u0}, params=p, **kw)
    _, f_fk = tp.simulate(fk, grid, {"tumor": u0}, **kw)
    a, b = np.asarray(f_tme["tumor"]), np.asarray(f_fk["tumor"])
    assert np.max(np.abs(a - b)) < 1e-12
    assert np.max(np.abs(np.asarray(f_tme["stem"]))) == 0.0
    assert np.max(a[-1] - a[0]) > 0.05  # it actually grew/invaded


def test_tumor_only_uniform_is_logistic():
    grid = tp.Grid((2,), 20.0)
    model = tme.tme_model()
    p = model.params(**TUMOR_ONLY)
    r = float(p["growth_tumor"])
    t, f = tp.simulate(model, grid, {"tumor": 0.05}, params=p, t_end=480.0, dt=0.5, save_every=48.0)
    exact = 1 / (1 + (1 / 0.05 - 1) * np.exp(-r * np.asarray(t)))
    np.testing.assert_allclose(np.asarray(f["tumor"])[:, 0], exact, rtol=2e-5)


def _ode_rhs(model, p):
    """dy/dt at one point: reactions - (declared decay + local decay)·y (jit-compiled)."""
    names = model.names
    decay = jnp.array([p[f"decay_{s}"] for s in names])

    @jax.jit
    def rhs(t, y):
        yd = {s: y[i] for i, s in enumerate(names)}
        r = model.reactions(t, yd, p)
        k = model.local_decay(t, yd, p)
        rate = jnp.stack([jnp.asarray(r.get(s, 0.0), y.dtype) for s in names])
        kl = jnp.stack([jnp.maximum(jnp.asarray(k.get(s, 0.0), y.dtype), 0.0) for s in names])
        return rate - (decay + kl) * y

    return lambda t, y: np.asarray(rhs(t, jnp.asarray(y)))


@pytest.mark.parametrize("scheme,dt,rtol", [("rk4", 0.01, 1e-6), ("sbdf2", 0.025, 2e-3)])
def test_uniform_state_equals_wellmixed_ode(scheme, dt, rtol):
    # Huge voxels: the explicit diffusion limit is irrelevant (a uniform state has zero
    # Laplacian anyway); the run is then exactly the ODE of one point.
    grid = tp.Grid((2,), 1e5)
    model = tme.tme_model()
    p = model.params(sys_pd1_times=[1.0, 0, 0, 0], sys_pd1_amounts=[2e8, 0, 0, 0],
                     it_ifng_times=[2.0, 0, 0, 0], it_ifng_amounts=[100.0, 0, 0, 0],
                     sys_ifng_times=[0.5, 0, 0, 0], sys_ifng_amounts=[8.65e4, 0, 0, 0])
    y0d = tme.uniform_conditions()
    y0d.update(ifng=0.2, il2=0.1, il12=0.2, tgfb=1.0, il10=0.1, cxcl=2.0, memory=0.1,
               cd8_ex=0.002)
    t_end = 12.0
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts, f = tp.simulate(model, grid, y0d, params=p, t_end=t_end, dt=dt, save_every=3.0,
                            scheme=scheme)
    y0 = np.array([float(np.asarray(model.stack(y0d, grid))[i, 0]) for i in range(len(model.names))])
    rhs = _ode_rhs(model, p)
    sol = solve_ivp(rhs, (0, t_end), y0, method="Radau", t_eval=np.asarray(ts), rtol=1e-10,
                    atol=1e-13)
    assert sol.success
    for i, s in enumerate(model.names):
        sim = np.asarray(f[s])[:, 0]
        ref = sol.y[i]
        scale = max(np.max(np.abs(ref)), 1e-8)
        err = np.max(np.abs(sim - ref)) / scale
        assert err < rtol, (s, err)
    # the doses really acted
    assert np.max(np.asarray(f["apd1"])) > 10.0
    assert np.max(np.asarray(f["depot_ifng"])) > 100.0
