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

import functools

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from scipy.integrate import solve_ivp

import tmepde as tp
from tmepde.models import tme
from tmepde.models.examples import fisher_kpp

TUMOR_ONLY = dict(supply_weight=0.0, angiogenesis=0.0)  # no vessel growth -> no influx
# Both tumor-only checks run the same grid and time loop, so the TME program (the slow part:
# its compile) is built once per session (tests/conftest.py keeps compiled programs).
TUMOR_ONLY_GRID = dict(shape=(64,), spacing=20.0)
TUMOR_ONLY_RUN = dict(t_end=480.0, dt=0.5, save_every=48.0)


def test_tumor_only_is_fisher_kpp():
    grid = tp.Grid(**TUMOR_ONLY_GRID)
    x = grid.axis_centers(0)
    u0 = 0.8 / (1 + np.exp((x - 300.0) / 40.0))
    model = tme.tme_model()
    p = model.params(**TUMOR_ONLY)
    r, D = float(p["growth_tumor"]), float(p["D_tumor"])
    fk = fisher_kpp(motility=D, growth=r)
    _, f_tme = tp.simulate(model, grid, {"tumor": u0}, params=p, **TUMOR_ONLY_RUN)
    _, f_fk = tp.simulate(fk, grid, {"tumor": u0}, **TUMOR_ONLY_RUN)
    a, b = np.asarray(f_tme["tumor"]), np.asarray(f_fk["tumor"])
    assert np.max(np.abs(a - b)) < 1e-12
    assert np.max(np.abs(np.asarray(f_tme["stem"]))) == 0.0
    assert np.max(a[-1] - a[0]) > 0.05  # it actually grew/invaded


def test_tumor_only_uniform_is_logistic():
    grid = tp.Grid(**TUMOR_ONLY_GRID)
    model = tme.tme_model()
    p = model.params(**TUMOR_ONLY)
    r = float(p["growth_tumor"])
    t, f = tp.simulate(model, grid, {"tumor": 0.05}, params=p, **TUMOR_ONLY_RUN)
    exact = 1 / (1 + (1 / 0.05 - 1) * np.exp(-r * np.asarray(t)))
    # every cell (the state stays uniform: zero-flux walls)
    np.testing.assert_allclose(np.asarray(f["tumor"]), np.broadcast_to(exact[:, None], (len(t), 64)),
                               rtol=2e-5)


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


def _wellmixed_case():
    """The uniform-state case: (grid, model, params, initial fields) — rebuilt per test."""
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
    return grid, model, p, y0d


WELLMIXED_T_END, WELLMIXED_SAVE_EVERY = 12.0, 3.0


@functools.lru_cache(maxsize=None)
def _wellmixed_reference():
    """The well-mixed ODE by Radau at rtol 1e-10, at the save times: (S, T). Both schemes
    are checked against this one solution (~10 CPU-s of scipy steps: solved once)."""
    grid, model, p, y0d = _wellmixed_case()
    y0 = np.array([float(np.asarray(model.stack(y0d, grid))[i, 0]) for i in range(len(model.names))])
    t_eval = WELLMIXED_SAVE_EVERY * np.arange(round(WELLMIXED_T_END / WELLMIXED_SAVE_EVERY) + 1)
    sol = solve_ivp(_ode_rhs(model, p), (0, WELLMIXED_T_END), y0, method="Radau", t_eval=t_eval,
                    rtol=1e-10, atol=1e-13)
    assert sol.success
    return t_eval, sol.y


@pytest.mark.parametrize("scheme,dt,rtol", [("rk4", 0.01, 1e-6), ("sbdf2", 0.025, 2e-3)])
def test_uniform_state_equals_wellmixed_ode(scheme, dt, rtol):
    grid, model, p, y0d = _wellmixed_case()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts, f = tp.simulate(model, grid, y0d, params=p, t_end=WELLMIXED_T_END, dt=dt,
                            save_every=WELLMIXED_SAVE_EVERY, scheme=scheme)
    t_ref, y_ref = _wellmixed_reference()
    np.testing.assert_allclose(np.asarray(ts), t_ref, rtol=0, atol=1e-12)
    for i, s in enumerate(model.names):
        sim = np.asarray(f[s])[:, 0]
        ref = y_ref[i]
        scale = max(np.max(np.abs(ref)), 1e-8)
        err = np.max(np.abs(sim - ref)) / scale
        assert err < rtol, (s, err)
    # the doses really acted
    assert np.max(np.asarray(f["apd1"])) > 10.0
    assert np.max(np.asarray(f["depot_ifng"])) > 100.0
