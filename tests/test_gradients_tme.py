"""Reverse-mode gradients of the TME model against central finite differences (x64).

sbdf2 on a 2D section (the default solver): the gradient of the tumor burden with respect to
every parameter is finite in float64 and float32, and a representative set matches central
differences. IMEX Euler on shells: one scalar of a 1-day run (IMEX Euler, dt 1 h) on a 16-shell radial grid depends on every field; its gradient
(one jax.value_and_grad call, compiled once) is compared, entry by entry, with central
differences of the same scalar for one representative parameter of every parameter group
(tumor, stem, each immune population, each cytokine's production/decay/diffusivity, PD-L1,
exhaustion/memory, Treg/MDSC recruitment, macrophage polarisation, angiogenesis, PK), for
dose amounts and for dose times (systemic and intratumoral).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tmepde as tp
from tmepde.models.tme import DEFAULTS, initial_conditions, tme_model

# (group, parameter): log-parameters (derivative w.r.t. log p)
LOG_PARAMS = [
    ("tumor growth", "growth_tumor"), ("tumor motility", "D_tumor"), ("stem", "p6_stemness"),
    ("A1 IFN-γ antiproliferative", "a1_antiprolif"), ("A2 MHC-I", "a2_mhc"),
    ("CD8 killing", "kill_cd8"), ("CD8 recruitment", "rec_cd8"), ("CD8 death", "death_cd8"),
    ("CD8 chemotaxis", "chi_cd8"), ("CD8 motility", "D_cd8"),
    ("NK killing", "kill_nk"), ("NK recruitment", "rec_nk"),
    ("Treg recruitment", "rec_treg"), ("Treg suppression", "treg_suppression"),
    ("MDSC recruitment", "rec_mdsc"), ("MDSC induction", "p4_mdsc"),
    ("M2->M1 polarisation", "a4_polarize"), ("M1->M2 reversion", "m1_to_m2"),
    ("IFN-γ production", "secr_ifng"), ("IFN-γ decay", "decay_ifng"), ("IFN-γ diffusivity", "D_ifng"),
    ("IFN-γ uptake", "uptake_ifng"),
    ("IL-2 production", "secr_il2"), ("IL-2 decay", "decay_il2"), ("IL-2 diffusivity", "D_il2"),
    ("IL-12 loop", "a6_il12_to_ifng"), ("IL-12 decay", "decay_il12"), ("IL-12 diffusivity", "D_il12"),
    ("TGF-β production", "secr_tgfb"), ("TGF-β decay", "decay_tgfb"), ("TGF-β diffusivity", "D_tgfb"),
    ("IL-10 production", "secr_il10"), ("IL-10 decay", "decay_il10"), ("IL-10 diffusivity", "D_il10"),
    ("CXCL production", "a3_cxcl"), ("CXCL diffusivity", "D_cxcl"),
    ("PD-L1 induction", "p1_induction"), ("PD-L1 EC50", "ec50_pdl1"), ("checkpoint", "p1_kill_inhibition"),
    ("exhaustion", "p2_exhaustion"), ("memory", "ec50_memory"),
    ("angiogenesis", "a8_antiangio"),
    ("PK IFN-γ elimination", "pk_ifng_ke"), ("PK IFN-γ absorption", "pk_ifng_ka"),
    ("PK IFN-γ vessel exchange", "perm_ifng"), ("PK anti-PD-1 volume", "pk_pd1_V"),
    ("anti-PD-1 occupancy", "ec50_apd1"),
]
# (group, parameter, slot): dose amounts (log) and dose times (h, linear)
DOSE_AMOUNTS = [("IFN-γ s.c. amount", "sys_ifng_amounts", 0), ("IL-12 i.t. amount", "it_il12_amounts", 0),
                ("anti-PD-1 i.v. amount", "sys_pd1_amounts", 0)]
DOSE_TIMES = [("IFN-γ s.c. time", "sys_ifng_times", 0), ("IL-12 i.t. time", "it_il12_times", 0),
              ("anti-PD-1 i.v. time", "sys_pd1_times", 0), ("IFN-γ depot time", "it_ifng_times", 0)]


def _setup():
    grid = tp.Grid((16,), 40.0, geometry="spherical")
    model = tme_model(grid=grid, n_doses=1)
    p = model.default_params(jnp.float64)
    p["it_il12_x"] = p["it_ifng_x"] = jnp.asarray(0.0)
    p["dose_width_h"] = jnp.asarray(2.0)  # >= 2 dt
    p["sys_ifng_times"], p["sys_ifng_amounts"] = jnp.array([1.0]), jnp.array([8.65e4])
    p["sys_pd1_times"], p["sys_pd1_amounts"] = jnp.array([2.0]), jnp.array([2.0e8])
    p["it_il12_times"], p["it_il12_amounts"] = jnp.array([3.0]), jnp.array([5.0])
    p["it_ifng_times"], p["it_ifng_amounts"] = jnp.array([4.0]), jnp.array([5.0])
    r = grid.axis_centers(0)
    inside = 0.5 * (1 - np.tanh((r - 300.0) / 40.0))
    fields = {"tumor": 0.55 * inside + 0.01, "stem": 0.02 * inside + 0.001, "vessel": 0.3 + 0.2 * (1 - inside),
              "pdl1": DEFAULTS["pdl1_basal"]}
    for k, v in {"cd8": 0.02, "cd8_ex": 0.002, "nk": 0.01, "treg": 0.004, "mdsc": 0.004,
                 "m1": 0.01, "m2": 0.02}.items():
        fields[k] = v * (0.4 + 0.6 * (1 - inside))
    for k in ("ifng", "il2", "il12", "tgfb", "il10", "cxcl", "memory"):
        fields[k] = 0.05 + 0.05 * inside
    y0 = model.stack(fields, grid, jnp.float64)
    # IMEX Euler: every model term (reactions, uptake, transport, chemotaxis, PK, dose pulses) is
    # the same as under sbdf2, at a third of its compile time; sbdf2's own reverse mode is
    # checked against differences in tests/test_gradients.py.
    sim = tp.Simulator(model, grid, dt=1.0, save_every=12.0, dtype=jnp.float64, scheme="sbdf1")
    weights = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, len(model.names)))
    vol = jnp.asarray(grid.cell_volumes()) / grid.cell_volumes().sum()
    # every field at both saves, normalised by its initial total: all groups matter
    scale = jnp.maximum(jnp.sum(y0 * vol, axis=-1), 1e-3)
    return model, sim, p, y0, weights, vol, scale


def test_tme_gradients_match_central_differences_for_every_parameter_group():
    model, sim, p0, y0, weights, vol, scale = _setup()
    entries = [(g, k, None, "log") for g, k in LOG_PARAMS] + \
              [(g, k, i, "log") for g, k, i in DOSE_AMOUNTS] + [(g, k, i, "lin") for g, k, i in DOSE_TIMES]
    for g, k, _, _ in entries:
        assert k in p0, (g, k)
    theta0 = jnp.asarray([jnp.log(p0[k] if i is None else p0[k][i]) if kind == "log" else p0[k][i]
                          for _, k, i, kind in entries])

    def scalar(theta):
        p = dict(p0)
        for j, (_, k, i, kind) in enumerate(entries):
            v = jnp.exp(theta[j]) if kind == "log" else theta[j]
            p[k] = v if i is None else p[k].at[i].set(v)
        ys = sim.run(p, y0, 2)  # 24 h, 24 steps
        totals = jnp.sum(ys[1:] * vol, axis=-1) / scale  # (2, S)
        return jnp.sum(weights * jnp.log(totals + 1e-3))

    vg = jax.jit(jax.value_and_grad(scalar))
    value, grad = vg(theta0)
    grad = np.asarray(grad)
    bad = []
    for j, (group, k, i, kind) in enumerate(entries):
        h = 1e-4 if kind == "log" else 1e-3  # log units / hours
        e = jnp.zeros_like(theta0).at[j].set(h)
        fd = (float(vg(theta0 + e)[0]) - float(vg(theta0 - e)[0])) / (2 * h)
        if not abs(grad[j] - fd) <= 1e-4 * abs(fd) + 1e-7 * abs(float(value)) + 1e-9:
            bad.append((group, k, float(grad[j]), fd))
        # the scalar must actually depend on the parameter, or the check says nothing
        assert abs(fd) > 1e-9, (group, k, fd)
    assert not bad, bad


# -- sbdf2 on a 2D section ---------------------------------------------------------------------
# A 640 µm section with the default model: a tumor disk, four vessel clusters, the default
# infiltrate; IFN-γ s.c. at 1 h and 14 h and anti-PD-1 i.v. at 4 h inside the 24 h window.
# IFN-γ, IL-2, IL-12, CXCL and the drugs have state-dependent uptake: their implicit solves
# are the conjugate-gradient (krylov) groups, started from the extrapolated state.
# Each dtype is one compile of the sbdf2 gradient of the full model: 5-8 CPU minutes on a
# 2-core CPU, hence slow (pytest -m slow); the default suite checks the conjugate-gradient
# gradients on a small model (tests/test_gradients.py) and this model under IMEX Euler above.
# (key, slot, step): central differences, step relative to the value, or in h for times
# (truncation error ~h²/6 relative: ~2e-7 for both kinds; pulses are 1 h wide).
FD_SET = [("kill_cd8", None, 1e-3), ("D_ifng", None, 1e-3), ("D_cd8", None, 1e-3),
          ("decay_ifng", None, 1e-3), ("decay_tgfb", None, 1e-3), ("ec50_pdl1", None, 1e-3),
          ("uptake_ifng", None, 1e-3), ("sys_ifng_amounts", 0, 1e-3), ("sys_ifng_times", 0, 1e-3),
          ("sys_pd1_amounts", 0, 1e-3), ("sys_pd1_times", 0, 1e-3)]


@functools.lru_cache(maxsize=None)
def _section(dtype_name):
    """(compiled value_and_grad of the day-1 burden, default params) for one dtype."""
    dtype = jnp.dtype(dtype_name)
    grid = tp.Grid((16, 16), 40.0)
    model = tme_model(grid=grid, n_doses=2)
    p = model.default_params(dtype)
    p["sys_ifng_times"], p["sys_ifng_amounts"] = jnp.asarray([1.0, 14.0], dtype), jnp.asarray([8.65e4] * 2, dtype)
    p["sys_pd1_times"], p["sys_pd1_amounts"] = jnp.asarray([4.0, 0.0], dtype), jnp.asarray([2.0e8, 0.0], dtype)
    y0 = model.stack(initial_conditions(grid, vessel_spots=4), grid, dtype)
    # cg_tol far below the differences' round-off (the default 1e-10 leaves ~1e-6 noise)
    sim = tp.Simulator(model, grid, dt=0.5, save_every=24.0, dtype=dtype, scheme="sbdf2",
                       cg_tol=1e-13 if dtype == jnp.float64 else None)
    vol = jnp.asarray(grid.cell_volumes(), dtype)
    it, ist = model.index("tumor"), model.index("stem")

    def burden(params):
        y = sim.run(params, y0, 1)[-1]
        return jnp.sum((y[it] + y[ist]) * vol)  # µm² of tumor + stem cells

    return jax.jit(jax.value_and_grad(burden)), p


def _nonfinite(grad):
    return [f"{k}{list(np.flatnonzero(~np.isfinite(np.asarray(v))))}" for k, v in grad.items()
            if not np.all(np.isfinite(np.asarray(v)))]


@pytest.mark.slow
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_sbdf2_burden_gradient_is_finite_for_every_parameter(dtype_name):
    vg, p = _section(dtype_name)
    value, grad = vg(p)
    assert np.isfinite(float(value)) and float(value) > 0
    assert set(grad) == set(p)
    assert not _nonfinite(grad), _nonfinite(grad)
    # the window is long enough that the doses reach the burden at all
    for k, i, _ in FD_SET:
        assert float(grad[k] if i is None else grad[k][i]) != 0.0, k
    if dtype_name == "float32":  # and float32 is the same gradient, not just a finite one
        vg64, p64 = _section("float64")
        g64 = vg64(p64)[1]
        for k, i, _ in FD_SET:
            a, b = (float(g[k] if i is None else g[k][i]) for g in (grad, g64))
            assert abs(a - b) <= 2e-2 * abs(b), (k, a, b)


@pytest.mark.slow
def test_sbdf2_burden_gradient_matches_central_differences():
    vg, p0 = _section("float64")
    value, grad = vg(p0)
    bad = []
    for k, i, rel in FD_SET:
        x = p0[k] if i is None else p0[k][i]
        h = rel if k.endswith("_times") else rel * abs(float(x))

        def at(dx):
            return float(vg(dict(p0, **{k: x + dx if i is None else p0[k].at[i].set(x + dx)}))[0])

        fd = (at(h) - at(-h)) / (2 * h)
        g = float(grad[k] if i is None else grad[k][i])
        # the step must move the burden well above round-off (~1e-15), or fd is noise
        if not (abs(fd * h) > 1e-10 * abs(float(value)) and abs(g - fd) <= 1e-5 * abs(fd)):
            bad.append((k, i, g, fd, fd * h / float(value)))
    assert not bad, bad
