"""Behaviour harnesses of the TME model (docs/model.md, "Behaviour criteria"), shared by the
tests, the robustness study (scripts/robustness.py) and the spatial virtual cohort
(scripts/cohort.py).

Two harnesses:

* :func:`run_wellmixed` — the treatments of B1–B4, B6–B8 on the well-mixed model (a 2-cell
  uniform grid: the spatial terms vanish exactly for a uniform state), 14 days, dt 1 h; all
  arms of every parameter set in one vmapped batch. :func:`wellmixed_criteria` turns one
  parameter set's arms into the numbers and pass/fail of each behaviour.
* :func:`run_cohort` — virtual patients on a 2D tumor section (a config's grid and
  treatment), log-normal patient factors on parameters and on the baseline immune density,
  one vmapped batch; :func:`best_response` classifies them RECIST-like and
  :func:`separation` names the patient parameters that separate responders from
  non-responders.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

__all__ = ["DAYS", "SAVE", "ARMS", "B7_CV", "B7_PATIENTS", "MECHANISM_STRENGTHS", "wellmixed_setup",
           "run_wellmixed", "wellmixed_criteria", "b5_criteria", "draw_patients", "run_cohort",
           "best_response", "separation", "roc_auc", "PATIENT_CV", "IMMUNE_KEY"]

# -- well-mixed treatments (tests/test_tme_behaviours.py uses the same arms) --------------
DAYS = 14
SAVE = 6.0               # h between saves
IT_DOSE = 50.0           # ng IFN-γ per intratumoral injection (low, acute course)
IT_TIMES = [0.0, 48.0, 96.0, 144.0]

PULSED = dict(it_ifng_times=IT_TIMES, it_ifng_amounts=[IT_DOSE] * 4)
CONTINUOUS = dict(inf_ifng_start=0.0, inf_ifng_stop=DAYS * 24.0,
                  inf_ifng_rate=4 * IT_DOSE / (DAYS * 24.0))          # same total, 14 days
LOW_CONTINUOUS = dict(inf_ifng_start=0.0, inf_ifng_stop=DAYS * 24.0,
                      inf_ifng_rate=40 * IT_DOSE / (DAYS * 24.0))     # 10x: inside P6's window
HIGH_CONTINUOUS = dict(inf_ifng_start=0.0, inf_ifng_stop=DAYS * 24.0,
                       inf_ifng_rate=80 * IT_DOSE / (DAYS * 24.0))    # 20x the total
PD1 = dict(sys_pd1_times=[0.0, 0, 0, 0], sys_pd1_amounts=[2e8, 0, 0, 0])  # 200 mg i.v.
BLOCKER = dict(sys_pdl1i_times=list(np.arange(14) * 24.0), sys_pdl1i_amounts=[2e6] * 14)
TGFBI = dict(sys_tgfbi_times=[0.0, 0, 0, 0], sys_tgfbi_amounts=[7e8, 0, 0, 0])  # 10 mg/kg
P3_OFF = dict(p3_tgfb=0.0)
# the pro-tumor arm P1–P4: PD-L1 induction and its chronic NK inhibition, exhaustion, Treg and
# TGF-β induction (Treg recruitment through CXCR3 included), MDSC recruitment
P1_P4_OFF = dict(p1_induction=0.0, p1_chronic_nk=0.0, p2_exhaustion=0.0, p3_treg=0.0, p3_cxcr3=0.0,
                 p3_tgfb=0.0, p4_mdsc=0.0)
A1_APOPTOSIS_OFF = dict(a1_apoptosis=0.0)
P6_OFF = dict(p6_stemness=0.0)

ARMS = {
    "ctrl": {}, "pulsed": PULSED, "continuous": CONTINUOUS, "high": HIGH_CONTINUOUS,
    "low": LOW_CONTINUOUS, "low|p6off": {**LOW_CONTINUOUS, **P6_OFF},
    "pulsed|p1-p4off": {**PULSED, **P1_P4_OFF}, "continuous|p1-p4off": {**CONTINUOUS, **P1_P4_OFF},
    "pulsed|a1off": {**PULSED, **A1_APOPTOSIS_OFF},
    "continuous|a1off": {**CONTINUOUS, **A1_APOPTOSIS_OFF},
    "high|a1off": {**HIGH_CONTINUOUS, **A1_APOPTOSIS_OFF},
    "pd1": PD1, "pulsed+pd1": {**PULSED, **PD1}, "pulsed+blocker": {**PULSED, **BLOCKER},
    "pd1+tgfbi": {**PD1, **TGFBI}, "ctrl|p3off": P3_OFF, "pd1|p3off": {**PD1, **P3_OFF},
}
# B7 well-mixed: virtual patients, log-normal CV 0.5 on growth, killing, recruitment, TGF-β
B7_CV = {"growth_tumor": 0.5, "kill_cd8": 0.5, "rec_cd8": 0.5, "secr_tgfb": 0.5}
B7_PATIENTS = 48

# Strength parameters of the mechanisms (docs/model.md): the ones a robustness study varies.
MECHANISM_STRENGTHS = (
    "a1_antiprolif", "a1_apoptosis", "a2_mhc", "a3_cxcl", "a3_endothelial", "a3_adhesion",
    "a4_polarize", "a5_nk", "a6_il12_to_ifng", "a6_ifng_to_il12",
    "a7_prolif_cd8", "a8_antiangio", "kill_cd8", "p1_induction", "p1_kill_inhibition",
    "p1_secretion_inhibition", "p1_chronic_nk", "p2_exhaustion", "p2_pd_independent",
    "p2_chronic", "p3_treg", "p3_cxcr3", "p3_tgfb", "p4_mdsc", "mdsc_suppression",
    "treg_suppression", "p5_ido", "p6_stemness", "p7_tgfb_ctl", "p7_tgfb_treg", "p7_il10",
    "uptake_ifng",
)


def wellmixed_setup():
    """(model, simulator, y0, default params) of the well-mixed harness: a 2-cell uniform
    grid of 20 µm, dt 1 h, saves every :data:`SAVE` h, 14 PD-L1-blocker dose slots."""
    import tmepde as tp
    from tmepde.models import tme

    grid = tp.Grid((2,), 20.0)
    model = tme.tme_model(n_doses={"sys_pdl1i": 14})
    sim = tp.Simulator(model, grid, dt=1.0, save_every=SAVE)
    y0 = model.stack(tme.uniform_conditions(), grid)
    return model, sim, y0, model.params()


def _members(base: Mapping, sets: Sequence[Mapping], b7: bool):
    """Parameter dicts: each set's arms (and its B7 patients, untreated and anti-PD-1)."""
    import jax.numpy as jnp

    from tmepde.batch import sample_lognormal

    out = []
    for s in sets:
        p0 = {**base, **{k: jnp.asarray(v, float) for k, v in s.items()}}
        for over in ARMS.values():
            out.append({**p0, **{k: jnp.asarray(v, float) for k, v in over.items()}})
        if b7:
            pats, batched = sample_lognormal(p0, B7_CV, B7_PATIENTS, seed=1)
            for i in range(B7_PATIENTS):
                pi = {k: (v[i] if k in batched else v) for k, v in pats.items()}
                out.append(pi)
                out.append({**pi, **{k: jnp.asarray(v, float) for k, v in PD1.items()}})
    return out


def run_wellmixed(sets: Sequence[Mapping] = ({},), *, b7: bool = True, chunk: int = 256,
                  progress: bool = False) -> list[dict]:
    """All arms of every parameter set in ``sets`` (overrides of the defaults), vmapped.

    Returns one dict per set: ``{arm: {species: (T,) array}}`` at cell 0 (the state stays
    uniform), plus ``"_patients"``: B7 pairs ``(untreated, anti-PD-1)`` of ``{tumor, stem}``
    curves when ``b7``. T = DAYS·24/SAVE + 1 saves (day 0 included).
    """
    import jax
    import jax.numpy as jnp

    model, sim, y0, base = wellmixed_setup()
    members = _members(base, sets, b7)
    # stacked on the host: jnp.stack of thousands of members compiles one XLA concatenate per
    # leaf shape, minutes each at the 7345 members of a 64-point robustness batch with B7
    stacked = jax.tree_util.tree_map(lambda *x: jnp.asarray(np.stack([np.asarray(a, float) for a in x])), *members)
    n_saves = int(DAYS * 24 / SAVE)
    run = jax.jit(jax.vmap(lambda p: sim.run(p, y0, n_saves)[:, :, 0]))
    n = len(members)
    parts = []
    chunk = min(chunk, n)
    for start in range(0, n, chunk):
        take = np.minimum(np.arange(start, start + chunk), n - 1)  # fixed shape: one compile
        sub = jax.tree_util.tree_map(lambda v: v[take], stacked)
        parts.append(np.asarray(run(sub))[: min(chunk, n - start)])
        if progress:
            print(f"well-mixed members {min(start + chunk, n)}/{n}", flush=True)
    ys = np.concatenate(parts)  # (members, time, species)
    per_set = len(ARMS) + (2 * B7_PATIENTS if b7 else 0)
    out = []
    for j in range(len(sets)):
        block = ys[j * per_set:(j + 1) * per_set]
        res = {name: {s: block[i, :, model.index(s)] for s in model.names} for i, name in enumerate(ARMS)}
        if b7:
            pat = block[len(ARMS):]
            res["_patients"] = [({s: pat[2 * i, :, model.index(s)] for s in ("tumor", "stem")},
                                 {s: pat[2 * i + 1, :, model.index(s)] for s in ("tumor", "stem")})
                                for i in range(B7_PATIENTS)]
        out.append(res)
    return out


def burden(f: Mapping, day: float = DAYS) -> float:
    """Tumor + stem-like volume fraction at ``day`` of a well-mixed arm."""
    k = int(day * 24 / SAVE)
    return float(f["tumor"][k] + f["stem"][k])


def _mean(f: Mapping, s: str) -> float:
    return float(np.mean(f[s]))


def wellmixed_criteria(w: Mapping) -> dict:
    """``{behaviour: (numbers, passed)}`` of one parameter set's arms (the criteria of
    tests/test_tme_behaviours.py; B5 is spatial, see :func:`b5_criteria`)."""
    out = {}
    r = burden(w["pulsed"]) / burden(w["ctrl"])
    out["B1"] = ({"burden pulsed/ctrl": r}, r <= 0.95)
    c, p = w["continuous"], w["pulsed"]
    markers = {s: _mean(c, s) / _mean(p, s) for s in ("pdl1", "cd8_ex", "treg", "mdsc")}
    rb = burden(c) / burden(p)
    r_off = burden(w["continuous|p1-p4off"]) / burden(w["pulsed|p1-p4off"])
    out["B2"] = ({**markers, "burden cont/pulsed": rb, "P1-P4 off": r_off},
                 all(v >= 1.10 for v in markers.values()) and rb >= 1.10 and r_off <= 1.02)
    ri = _mean(w["pd1"], "ifng") / _mean(w["ctrl"], "ifng")
    rp = burden(w["pd1"]) / burden(w["ctrl"])
    combo = burden(w["pulsed+pd1"])
    out["B3"] = ({"IFN-γ pd1/ctrl": ri, "burden pd1/ctrl": rp,
                  "combo/min(mono)": combo / min(burden(w["pd1"]), burden(w["pulsed"]))},
                 ri >= 1.5 and rp <= 0.9 and combo < min(burden(w["pd1"]), burden(w["pulsed"])))
    b, p = w["pulsed+blocker"], w["pulsed"]
    rpd, rbb = _mean(b, "pdl1") / _mean(p, "pdl1"), burden(b) / burden(p)
    out["B4"] = ({"PD-L1 blocker/IFN": rpd, "burden blocker/IFN": rbb}, rpd <= 0.8 and rbb <= 0.9)
    frac = lambda f: float(f["stem"][-1] / (f["tumor"][-1] + f["stem"][-1]))
    fl, fo, fc = frac(w["low"]), frac(w["low|p6off"]), frac(w["ctrl"])
    rh = burden(w["high"]) / burden(w["ctrl"])
    rh_off = burden(w["high|a1off"]) / burden(w["ctrl"])
    out["B6"] = ({"stem low": fl, "stem low P6 off": fo, "stem ctrl": fc, "high/ctrl": rh,
                  "high/ctrl A1 off": rh_off},
                 fl >= 1.5 * fc and fl >= 1.5 * fo and rh <= 0.2 and rh_off > 0.2)
    if "_patients" in w:
        ratios = np.array([burden(t) / burden(c) for c, t in w["_patients"]])
        nr, nn = int(np.sum(ratios <= 0.5)), int(np.sum(ratios >= 0.8))
        out["B7"] = ({"responders": nr, "non-responders": nn}, nr >= 3 and nn >= 3)
    e_on = math.log(burden(w["ctrl"]) / burden(w["pd1"]))
    e_off = math.log(burden(w["ctrl|p3off"]) / burden(w["pd1|p3off"]))
    e_res = math.log(burden(w["ctrl"]) / burden(w["pd1+tgfbi"]))
    out["B8"] = ({"efficacy P3 on": e_on, "P3 off": e_off, "rescued": e_res},
                 e_on <= 0.9 * e_off and e_res >= e_off)
    return out


# -- B5: bystander reach (1D, 2 mm, 5 µm voxels) ------------------------------------------
def b5_profiles(sets: Sequence[Mapping] = ({},)):
    """Steady IFN-γ and PD-L1 with IFN-γ held at 1 ng/mL at x = 0, in frozen sparse (0.5 %
    cells) and dense (100 %) tissue, for every parameter set in ``sets`` (one vmapped batch).
    Returns ``x`` (µm), ``h`` (µm), the list of parameter dicts and ``ys`` (sets, 2, S, 400)."""
    import jax
    import jax.numpy as jnp

    import tmepde as tp
    from tmepde.models import tme

    h = 5.0
    grid = tp.Grid((400,), h)
    model = tme.tme_model(boundaries={"ifng": {"x_lo": ("dirichlet", 1.0)}})
    plist = [model.params(growth_tumor=0.0, growth_stem=0.0, angiogenesis=0.0, **s) for s in sets]
    sim = tp.Simulator(model, grid, dt=2.0, save_every=200.0)
    y0s = jnp.stack([model.stack({"tumor": phi, "pdl1": tme.DEFAULTS["pdl1_basal"]}, grid)
                     for phi in (0.005, 1.0)])
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack([jnp.asarray(a, float) for a in x]), *plist)
    run = jax.jit(jax.vmap(lambda p: jax.vmap(lambda y0: sim.run(p, y0, 1)[-1])(y0s)))
    ys = np.asarray(run(stacked))
    return grid.axis_centers(0), h, plist, ys, model


def _local_lambda(u, h, m):
    """Decay length from u(x-mh) + u(x+mh) = 2 cosh(mh/λ) u(x), exact for any combination of
    e^{±x/λ} (so independent of the far boundary)."""
    c = (u[:-2 * m] + u[2 * m:]) / (2 * u[m:-m])
    return m * h / np.arccosh(c)


def b5_criteria(sets: Sequence[Mapping] = ({},)) -> list:
    """``[(numbers, passed)]`` per parameter set: sparse PD-L1 half-induction reach ≥ 800 µm,
    dense decay length ≤ 40 µm (median over 20–150 µm)."""
    x, h, _, ys, model = b5_profiles(sets)
    out = []
    for y in ys:
        sparse, dense = model.unstack(y[0]), model.unstack(y[1])
        reach = float(np.interp(0.5, sparse["pdl1"][::-1], x[::-1]))
        n, m = 40, 2
        sel = (x[m:n - m] >= 20) & (x[m:n - m] <= 150)
        lam = float(np.median(_local_lambda(dense["ifng"][:n], h, m)[sel]))
        out.append(({"sparse reach µm": reach, "dense λ µm": lam}, reach >= 800 and lam <= 40))
    return out


# -- B7 in space: a virtual cohort on a tumor section --------------------------------------
IMMUNE_KEY = "immune_density"  # factor on the initial CD8 and NK fields (baseline infiltrate)
# Inter-patient coefficients of variation (log-normal, median = the config's value).
PATIENT_CV = {
    "growth_tumor": 0.5,   # tumor growth-rate constants span ~10-fold across patients (Stein 2011)
    "rec_cd8": 0.7,        # CD8 infiltration (Immunoscore) spans > 10-fold (Galon 2006): est
    "kill_cd8": 0.5,       # per-CTL killing 2–16 /day (Halle 2016): est
    "ec50_pdl1": 0.5,      # PD-L1 inducibility (IFN-γ EC50): est
    IMMUNE_KEY: 0.7,       # baseline CD8/NK density, as rec_cd8: est
}


def draw_patients(n: int, cv: Mapping[str, float] = PATIENT_CV, seed: int = 0) -> dict:
    """Log-normal patient factors ``{key: (n,) array}`` with median 1 and coefficient of
    variation ``cv[key]`` (the draws of :func:`tmepde.batch.sample_lognormal`, so a
    ``[sweep.cohort]`` with the same seed and keys gives the same factors)."""
    from tmepde.batch import sample_lognormal

    drawn, _ = sample_lognormal({k: np.ones(()) for k in cv}, dict(cv), n, seed)
    return {k: np.asarray(drawn[k], np.float64) for k in cv}


def run_cohort(config, factors: Mapping[str, np.ndarray], overrides: Mapping | None = None,
               chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Burden curves of virtual patients on ``config``'s grid and treatment, one vmapped batch.

    factors: ``{parameter or IMMUNE_KEY: (n,)}`` multiplying the config's value (IMMUNE_KEY
    scales the initial CD8 and NK fields). overrides: parameter values for every patient
    (an ablation). Returns save times ``(T,)`` in h and burdens ``(n, T)``: Σ (tumor + stem)
    × cell volume (µm² on a 2D grid).
    """
    import jax.numpy as jnp

    from tmepde.batch import iter_batch
    from tmepde.runner import build, precision

    with precision(config.dtype):
        setup = build(config)
        sim, model = setup.simulator, config.model
        dt = sim.dtype
        keys = [k for k in factors if k != IMMUNE_KEY]
        n = len(next(iter(factors.values())))
        params = {k: jnp.asarray(v, dt) for k, v in setup.params.items()}
        for k, v in (overrides or {}).items():
            params[k] = jnp.asarray(v, dt)
        for k in keys:
            params[k] = jnp.asarray(np.asarray(params[k], np.float64)[None] * factors[k], dt)
        y0 = np.repeat(setup.y0[None].astype(np.float64), n, axis=0)
        if IMMUNE_KEY in factors:
            for s in ("cd8", "nk"):
                y0[:, model.index(s)] *= factors[IMMUNE_KEY].reshape((n,) + (1,) * (y0.ndim - 2))
        y0 = y0.astype(dt)
        it, st = model.index("tumor"), model.index("stem")
        vol = float(np.prod(config.grid.spacing))
        out = np.zeros((n, setup.n_saves + 1))
        for sl, ys in iter_batch(sim, params, keys, y0, setup.n_saves, chunk=chunk, y0_batched=True, n=n):
            tot = ys[:, :, it] + ys[:, :, st]
            out[sl] = np.asarray(tot.reshape(tot.shape[0], tot.shape[1], -1).sum(-1), np.float64) * vol
        times = np.arange(setup.n_saves + 1) * config.data["time"]["save_every"]
    return times, out


def best_response(burden: np.ndarray, exponent: float) -> dict:
    """RECIST-like best response (:func:`tmepde.sweep.classify`: diameter-equivalent change
    −30 % = PR, +20 % = PD) of burden curves ``(n, T)``; adds ``responder`` (CR or PR: the
    objective response) and ``best_ratio`` = min over t ≥ 1 of burden(t)/burden(0)."""
    from tmepde.sweep import classify

    c = classify(burden, exponent)
    c["responder"] = np.isin(c["best"], ("CR", "PR"))
    c["best_ratio"] = np.min(burden[:, 1:] / burden[:, :1], axis=1)
    return c


def _spearman(x, y) -> float:
    rx = np.argsort(np.argsort(x)).astype(float)
    ry = np.argsort(np.argsort(y)).astype(float)
    return float(np.corrcoef(rx, ry)[0, 1])


def separation(factors: Mapping[str, np.ndarray], responder: np.ndarray, best_change: np.ndarray,
               ridge: float = 1.0) -> dict:
    """Which patient factors separate responders from non-responders.

    Per key: ``rho`` (Spearman rank correlation of the factor with the best change: negative =
    higher value, deeper response), ``smd`` (mean of ln factor in responders minus
    non-responders, in units of the pooled s.d.) and ``logit`` (coefficient of a ridge
    logistic regression of response on the standardised ln factors, fitted by Newton's
    method; ``ridge`` the L2 penalty, which keeps it finite when the classes separate).
    """
    keys = list(factors)
    X = np.column_stack([np.log(factors[k]) for k in keys])
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    y = responder.astype(float)
    A = np.column_stack([np.ones(len(y)), X])
    w = np.zeros(A.shape[1])
    pen = np.full(A.shape[1], ridge)
    pen[0] = 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-A @ w))
        g = A.T @ (y - p) - pen * w
        H = A.T @ (A * (p * (1 - p))[:, None]) + np.diag(pen) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(H, g)
        w += step
        if np.max(np.abs(step)) < 1e-10:
            break
    out = {}
    for j, k in enumerate(keys):
        lx = np.log(factors[k])
        auc = roc_auc(lx, responder)
        r, nr = lx[responder], lx[~responder]
        sd = math.sqrt((r.var(ddof=1) * (len(r) - 1) + nr.var(ddof=1) * (len(nr) - 1)) / max(len(lx) - 2, 1)) \
            if len(r) > 1 and len(nr) > 1 else float("nan")
        out[k] = {"rho": _spearman(lx, best_change),
                  "smd": float((r.mean() - nr.mean()) / sd) if sd and sd > 0 else float("nan"),
                  "logit": float(w[j + 1]), "auc": auc}
    return out


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the classes ``positive`` (Mann–Whitney U /
    (n₁ n₀), ties counted half): 1 = higher score always means positive, 0.5 = no information."""
    score, positive = np.asarray(score, float), np.asarray(positive, bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    gt = (score[positive][:, None] > score[~positive][None, :]).sum()
    eq = (score[positive][:, None] == score[~positive][None, :]).sum()
    return float((gt + 0.5 * eq) / (n1 * n0))
