"""Worked example: fitting the TME model to CT26 tumor-regression data (``tmepde fit``).

Data: ``tmepde/data/ct26/ct26_tumor_volumes.csv`` (Ryapolova and Babaev 2026; README there):
caliper volumes (mm³) of subcutaneous CT26 tumors, 8 mice per arm, arms PBS, rVSV-GFP and
rVSV-mIL12-mGMCSF, intratumoral injections on days 11, 14 and 17.

Geometry: a spherically symmetric 3D tumor on a radial grid of shells (``Grid((n,), h,
geometry="spherical")``). Simulated time 0 is day 11 (first measurement). The simulated
tumor volume is

    V(t) [mm³] = 1e-9 · Σ_i  vol_i [µm³] · (tumor_i + stem_i)(t)

(shell volumes times the tumor-cell volume fraction), so it comes from the simulated cell
densities, not from a growth law. The initial state is a ball of tumor cells at density
``RHO0`` whose cell volume is the fitted ``v0_mm3`` (radius ``(3 v0 / 4π RHO0)^(1/3)``,
one-shell smooth edge) in tissue with a uniform vessel density and a sparse immune infiltrate.

Assumption (virus → IL-12): the rVSV-mIL12-mGMCSF injections are modelled as intratumoral
IL-12 deposits at the tumor centre (``it_il12_*``; Gaussian of s.d. ``IL12_WIDTH_UM``) on
days 11, 14 and 17, of an effective amount ``il12_dose_ng`` per injection that is fitted
(it lumps viral expression, its duration and GM-CSF). Oncolysis and GM-CSF are not modelled.

Two pseudo-parameters extend the model's parameter dict for fitting: ``v0_mm3`` (initial
tumor-cell volume) and ``il12_dose_ng`` (IL-12 per injection); :meth:`Ct26Problem.volumes`
maps them to the initial state and the dose schedule.

Residuals are on the log scale, ``(log(V_model + c) − log(V_data + c)) / σ`` with
``c = FLOOR_MM3`` (caliper detection floor, so volumes of 0 enter as ``log c``) and σ
estimated from the residuals (Gauss–Newton covariance scaled by σ²).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

DATA_PATH = Path(__file__).parent / "data" / "ct26" / "ct26_tumor_volumes.csv"
ARMS = ("PBS", "rVSV-GFP", "rVSV-mIL12-mGMCSF")
IL12_ARM = "rVSV-mIL12-mGMCSF"
DAY0 = 11                 # day of the first measurement = simulated t = 0
INJECTION_DAYS = (11, 14, 17)
RHO0 = 0.6                # tumor-cell volume fraction of the initial ball
FLOOR_MM3 = 10.0          # mm³, added inside the log (detection floor of calipers)
IL12_WIDTH_UM = 500.0     # µm, s.d. of the IL-12 deposit (est: injection bleb / infected rim)
PSEUDO = ("v0_mm3", "il12_dose_ng")
CONTROLLED_MM3 = 100.0    # a fitted curve below this at the end of the horizon = regressing


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm: ``volumes[m, d]`` (mm³, NaN = not measured) of mouse ``mice[m]`` on ``days[d]``."""

    name: str
    mice: np.ndarray
    days: np.ndarray
    volumes: np.ndarray

    def mean_log(self) -> np.ndarray:
        """Geometric mean (with the floor) per day over the mice measured that day."""
        with np.errstate(invalid="ignore"):
            return np.exp(np.nanmean(np.log(self.volumes + FLOOR_MM3), axis=0)) - FLOOR_MM3


def load_data(path: str | Path | None = None) -> dict[str, Arm]:
    """Read the CT26 csv (columns arm, mouse, day, volume_mm3) -> ``{arm: Arm}``."""
    path = Path(path) if path is not None else DATA_PATH
    if not path.exists():
        raise FileNotFoundError(f"CT26 data file {str(path)!r} not found; fit.data must name a csv "
                                "with columns arm, mouse, day, volume_mm3 (default: the packaged file)")
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = {"arm", "mouse", "day", "volume_mm3"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{path}: needs columns {sorted(need)}, got {sorted(rows[0]) if rows else 'no rows'}")
    out = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        sub = [r for r in rows if r["arm"] == arm]
        mice = np.array(sorted({int(r["mouse"]) for r in sub}))
        days = np.array(sorted({int(r["day"]) for r in sub}))
        vol = np.full((len(mice), len(days)), np.nan)
        for r in sub:
            vol[np.searchsorted(mice, int(r["mouse"])), np.searchsorted(days, int(r["day"]))] = float(r["volume_mm3"])
        out[arm] = Arm(arm, mice, days, vol)
    return out


class Ct26Problem:
    """The TME model on a radial grid, set up to predict CT26 volumes on measurement days.

    n_shells, radius_um: radial grid (shell width radius/n). dt: time step (h).
    n_days: simulated days after day 11 (static: one compiled program per value).
    dtype: float32 or float64. scheme: time stepper (tmepde.stepping). config: a :class:`tmepde.config.Config` (spherical grid, TME
    model with 3 ``it_il12`` slots) whose grid, model, dt, parameters and non-tumor initial
    fields are used instead of the defaults.
    """

    def __init__(self, n_shells: int = 48, radius_um: float = 12000.0, dt: float = 1.0,
                 n_days: int = 28, dtype=None, config=None, scheme: str = "sbdf2"):
        import jax.numpy as jnp

        from .grid import Grid
        from .models.tme import DEFAULTS, tme_model
        from .stepping import Simulator

        self.config = config
        if config is not None:
            if config.grid.geometry != "spherical":
                raise ValueError(f"grid.geometry must be 'spherical' for the CT26 fit, got "
                                 f"{config.grid.geometry!r}; e.g. shape = [48], spacing = 250.0, "
                                 'geometry = "spherical"')
            self.grid, self.model = config.grid, config.model
            dt, dtype = config.data["time"]["dt"], config.dtype
            self._params = config.params(dtype)
            fields = config.initial_fields()
            self._background = {k: v for k, v in fields.items() if k not in ("tumor", "stem")}
        else:
            if n_shells < 8:
                raise ValueError(f"n_shells must be >= 8, got {n_shells}")
            self.grid = Grid((int(n_shells),), radius_um / n_shells, geometry="spherical")
            n_doses = {"sys_ifng": 1, "sys_pd1": 1, "sys_pdl1i": 1, "sys_tgfbi": 1, "it_ifng": 1,
                       "it_il12": len(INJECTION_DAYS)}
            self.model = tme_model(grid=self.grid, n_doses=n_doses)
            self._params = None
            self._background = {"vessel": 0.3, "pdl1": DEFAULTS["pdl1_basal"], "cd8": 0.005,
                                "nk": 0.0025, "treg": 0.0015, "mdsc": 0.0015, "m1": 0.0025,
                                "m2": 0.01}
        if "it_il12_amounts" not in self.model.default_params() or \
                np.shape(self.model.default_params()["it_il12_amounts"]) != (len(INJECTION_DAYS),):
            raise ValueError("the CT26 fit needs the TME model with 3 intratumoral IL-12 slots: "
                             "[model.options] n_doses = { it_il12 = 3, ... }")
        self.dt = float(dt)
        self.n_days = int(n_days)
        if config is not None:
            scheme = config.data["solver"]["scheme"]
        self.sim = Simulator(self.model, self.grid, dt=self.dt, save_every=24.0, dtype=dtype, scheme=scheme)
        self.dtype = self.sim.dtype
        self.shell_mm3 = jnp.asarray(self.grid.cell_volumes() * 1e-9, self.dtype)
        self.r = jnp.asarray(self.grid.axis_centers(0), self.dtype)
        self.i_tumor = self.model.index("tumor")
        self.i_stem = self.model.index("stem")

    # -- parameters --------------------------------------------------------------------
    def base_params(self, il12: bool = False, **overrides) -> dict:
        """Parameters (the config's, else model defaults set up for this geometry) plus the
        pseudo-parameters ``v0_mm3`` (15) and ``il12_dose_ng`` (0, or the config's first IL-12
        amount / 300 ng with ``il12``)."""
        import jax.numpy as jnp

        if self._params is not None:
            p = dict(self._params)
            dose = float(np.asarray(p["it_il12_amounts"])[0]) or 300.0
        else:
            p = self.model.default_params(self.dtype)
            p["it_il12_x"] = jnp.asarray(0.0, self.dtype)           # deposit at the centre
            p["it_il12_width"] = jnp.asarray(IL12_WIDTH_UM, self.dtype)
            p["it_il12_times"] = jnp.asarray([24.0 * (d - DAY0) for d in INJECTION_DAYS], self.dtype)
            p["dose_width_h"] = jnp.asarray(2.0 * self.dt, self.dtype)  # >= 2 dt: exact delivery
            dose = 300.0
        p["v0_mm3"] = jnp.asarray(15.0, self.dtype)
        p["il12_dose_ng"] = jnp.asarray(dose if il12 else 0.0, self.dtype)
        for k, v in overrides.items():
            if k not in p:
                raise KeyError(f"unknown parameter {k!r}; known: {sorted(p)}")
            p[k] = jnp.asarray(v, self.dtype)
        return p

    def initial_state(self, v0_mm3):
        """Stacked ``(S, n)`` initial state of a tumor ball of cell volume ``v0_mm3`` (traced)."""
        import jax.numpy as jnp

        h = self.grid.spacing[0]
        radius = (3.0 * v0_mm3 * 1e9 / (4.0 * math.pi * RHO0)) ** (1.0 / 3.0)
        inside = 0.5 * (1.0 - jnp.tanh((self.r - radius) / h))
        # Rescale so the cell volume is exactly v0 despite the smoothed edge and coarse shells.
        inside = inside * v0_mm3 / (RHO0 * jnp.sum(self.shell_mm3 * inside))
        fields = dict(self._background, tumor=RHO0 * 0.98 * inside, stem=RHO0 * 0.02 * inside)
        return self.model.stack(fields, self.grid, self.dtype)

    def model_params(self, p: Mapping) -> dict:
        """The model's parameter dict from one with the pseudo-parameters."""
        import jax.numpy as jnp

        q = {k: v for k, v in p.items() if k not in PSEUDO}
        q["it_il12_amounts"] = jnp.ones((len(INJECTION_DAYS),), self.dtype) * p["il12_dose_ng"]
        return q

    def volumes(self, p: Mapping):
        """Simulated tumor volume (mm³) on days ``DAY0 .. DAY0 + n_days``: shape (n_days + 1,)."""
        import jax.numpy as jnp

        ys = self.state(p)
        cells = ys[:, self.i_tumor] + ys[:, self.i_stem]
        return jnp.sum(cells * self.shell_mm3, axis=-1)

    def state(self, p: Mapping):
        """All saved states ``(n_days + 1, S, n)`` (for inspection and plots)."""
        return self.sim.run(self.model_params(p), self.initial_state(p["v0_mm3"]), self.n_days)


def log_residuals(volume_fn, arm: Arm, mouse: int | None, sigma: float = 0.3, max_day: int | None = None):
    """Residual function ``p -> (log(V+c) - log(data+c)) / sigma`` over the measured points of
    one mouse (index into ``arm.mice``) or all mice of the arm (``None``; shared parameters)."""
    import jax.numpy as jnp

    rows = range(len(arm.mice)) if mouse is None else [mouse]
    idx, obs = [], []
    for m in rows:
        for d, day in enumerate(arm.days):
            v = arm.volumes[m, d]
            if np.isfinite(v) and (max_day is None or day <= max_day):
                idx.append(int(day) - DAY0)
                obs.append(math.log(v + FLOOR_MM3))
    idx = np.asarray(idx)
    obs = np.asarray(obs)

    def residuals(p):
        v = volume_fn(p)
        return (jnp.log(jnp.maximum(v[idx], 0.0) + FLOOR_MM3) - obs) / sigma

    return residuals


def last_day(arm: Arm, mouse: int | None = None) -> int:
    vols = arm.volumes if mouse is None else arm.volumes[mouse:mouse + 1]
    measured = np.isfinite(vols).any(axis=0)
    return int(arm.days[measured].max())


# -- per-animal fits (virtual cohort) -----------------------------------------------------------
@dataclasses.dataclass
class CohortFit:
    """Per-animal fits of one arm. ``values[name]``/``std_error[name]``: (M,) arrays."""

    arm: str
    mice: np.ndarray
    names: list[str]
    values: dict[str, np.ndarray]
    std_error: dict[str, np.ndarray]
    curves: np.ndarray        # (M, n_days + 1) fitted volumes, mm³
    cost: np.ndarray          # (M,) 0.5 Σ r² (data part)
    n_simulations: int
    phenotype: list[str]      # "regressing" / "escaping" per animal (fitted curve)
    data_phenotype: list[str]  # the same rule applied to the data


def _phenotype(v_end: float) -> str:
    return "regressing" if v_end < CONTROLLED_MM3 else "escaping"


def fit_cohort(problem: Ct26Problem, arm: Arm, base: Mapping, names: Sequence[str], *,
               prior_sd: float = 1.0, sigma: float = 0.3, max_steps: int = 25,
               classify_day: int = 39, mice: Sequence[int] | None = None) -> CohortFit:
    """Fit ``names`` (log-transformed; priors of s.d. ``prior_sd`` at the ``base`` values, the
    initial volume's at the mouse's day-11 measurement) to each animal separately.

    All animals advance together: one vmapped value-and-Jacobian call (forward mode) per
    Levenberg–Marquardt iteration, each animal with its own damping and acceptance.
    Standard errors: Gauss–Newton, σ² pooled over the arm.
    """
    import jax
    import jax.numpy as jnp

    rows = np.arange(len(arm.mice)) if mice is None else np.asarray(mice)
    n_t = problem.n_days + 1
    obs = np.zeros((len(rows), n_t))
    mask = np.zeros((len(rows), n_t))
    for j, m in enumerate(rows):
        for d, day in enumerate(arm.days):
            v = arm.volumes[m, d]
            if np.isfinite(v) and 0 <= day - DAY0 < n_t:
                obs[j, day - DAY0] = math.log(v + FLOOR_MM3)
                mask[j, day - DAY0] = 1.0
    zc = np.tile([math.log(float(base[n])) for n in names], (len(rows), 1))
    if "v0_mm3" in names:
        k = list(names).index("v0_mm3")
        first = np.array([arm.volumes[m, 0] for m in rows])
        zc[:, k] = np.log(np.where(np.isfinite(first) & (first > 0), first, float(base["v0_mm3"])))
    dtype = problem.dtype

    def residuals(z, o, w, c):
        p = dict(base)
        for i, n in enumerate(names):
            p[n] = jnp.exp(z[i]).astype(dtype)
        v = problem.volumes(p)
        r = w * (jnp.log(jnp.maximum(v, 0.0) + FLOOR_MM3) - o) / sigma
        return jnp.concatenate([r, (z - c) / prior_sd]), v

    def value_jac(z, o, w, c):
        def f(zz):
            r, v = residuals(zz, o, w, c)
            return r, (r, v)

        jac, (r, v) = jax.jacfwd(f, has_aux=True)(z)
        return r, v, jac

    batched = jax.jit(jax.vmap(value_jac))
    args = (jnp.asarray(obs, dtype), jnp.asarray(mask, dtype), jnp.asarray(zc, dtype))
    z = zc.copy()
    r, v, J = (np.array(a) for a in batched(jnp.asarray(z, dtype), *args))
    cost = 0.5 * np.sum(r**2, axis=1)
    lam = np.full(len(rows), 1e-2)
    k_par = len(names)
    sims = len(rows) * (1 + k_par)
    for _ in range(max_steps):
        steps = np.zeros_like(z)
        for j in range(len(rows)):
            JtJ = J[j].T @ J[j]
            g = J[j].T @ r[j]
            steps[j] = -np.linalg.solve(JtJ + lam[j] * (np.diag(np.diag(JtJ)) + 1e-9 * np.eye(k_par)), g)
        z_try = z + steps
        r2, v2, J2 = (np.asarray(a) for a in batched(jnp.asarray(z_try, dtype), *args))
        sims += len(rows) * (1 + k_par)
        cost2 = 0.5 * np.sum(r2**2, axis=1)
        ok = np.isfinite(cost2) & (cost2 < cost)
        z[ok], r[ok], v[ok], J[ok], cost[ok] = z_try[ok], r2[ok], v2[ok], J2[ok], cost2[ok]
        lam = np.where(ok, lam / 3, lam * 4)
        if np.all(np.abs(steps).max(axis=1) < 1e-4) or np.all(lam > 1e6):
            break
    n_obs = mask.sum()
    data_cost = 0.5 * np.sum(r[:, :n_t] ** 2, axis=1)
    sigma2 = max(2 * data_cost.sum() / max(n_obs - len(rows) * k_par, 1), 1e-12)
    values = {n: np.exp(z[:, i]) for i, n in enumerate(names)}
    se = {n: np.zeros(len(rows)) for n in names}
    for j in range(len(rows)):
        Jd = J[j][:n_t]
        info = Jd.T @ Jd / sigma2 + np.eye(k_par) / prior_sd**2
        sd_z = np.sqrt(np.clip(np.diag(np.linalg.pinv(info)), 0, None))
        for i, n in enumerate(names):
            se[n][j] = values[n][j] * sd_z[i]
    end = min(classify_day - DAY0, n_t - 1)
    phen = [_phenotype(float(v[j, end])) for j in range(len(rows))]
    data_phen = []
    for m in rows:
        d = np.searchsorted(arm.days, classify_day)
        val = arm.volumes[m, d] if d < len(arm.days) and arm.days[d] == classify_day else np.nan
        data_phen.append(_phenotype(val) if np.isfinite(val) else "escaping")  # removed: too large
    return CohortFit(arm.name, arm.mice[rows], list(names), values, se, v, data_cost, int(sims), phen, data_phen)


# -- the worked example: stages, outputs ------------------------------------------------------------
def _fit_params(names, base, prior_sd):
    from .fit import FitParameter

    return [FitParameter(n, float(base[n]), prior_sd=prior_sd) for n in names]


def run_fit(config, *, quick: bool = False, log=print) -> dict:
    """Run the CT26 example of a config with a ``[fit]`` table; write the outputs.

    Stage 1: ``fit.growth_params`` on the PBS arm (all mice pooled, shared parameters).
    Stage 2: ``fit.immune_params`` on the PBS and rVSV-mIL12-mGMCSF arms jointly (stage-1
    values fixed; PBS keeps the immune parameters honest). Stage 3: per-animal fits of the
    IL-12 arm (``fit.cohort_params``, priors at the stage-2 values) -> virtual cohort and
    regressing/escaping counts. ``quick``: 24 shells, 32 days, IMEX Euler, ≤ 6 steps (CI scale).
    Returns a dict of results; writes ``<output>_fit.md``, ``<output>_fit.png``, ``<output>_fitted.toml``.
    """
    import time

    import jax

    from .fit import fit

    fc = config.data["fit"]
    if quick:
        config = config.replace("grid.shape=[24]", f"grid.spacing={config.grid.spacing[0] * 2}",
                                "solver.scheme=sbdf1")  # IMEX Euler: a third of the compile time
    if config.dtype == np.float64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    data_path = fc.get("data")
    if data_path is not None and not Path(data_path).is_absolute():
        data_path = Path(config.base_dir) / data_path
    arms = load_data(data_path)
    for a in ("PBS", IL12_ARM):
        if a not in arms:
            raise ValueError(f"fit.data: arm {a!r} missing; arms in the file: {sorted(arms)}")
    pbs, il12 = arms["PBS"], arms[IL12_ARM]
    n_pbs = last_day(pbs) - DAY0
    n_il = last_day(il12) - DAY0
    steps = fc["max_steps"]
    if quick:
        n_pbs, n_il, steps = min(n_pbs, 21), min(n_il, 32), min(steps, 6)
    prior, sigma = fc["prior_sd"], fc["sigma"]
    t_start = time.perf_counter()
    prob_pbs = Ct26Problem(config=config, n_days=n_pbs)
    prob_il = Ct26Problem(config=config, n_days=n_il)
    base = prob_pbs.base_params(il12=True)
    base["v0_mm3"] = np.asarray(float(np.nanmean(pbs.volumes[:, 0])), prob_pbs.dtype)
    res_pbs = log_residuals(prob_pbs.volumes, pbs, None, sigma, DAY0 + n_pbs)

    def pbs_only(p):
        return res_pbs(dict(p, il12_dose_ng=p["il12_dose_ng"] * 0.0))

    log(f"stage 1: {fc['growth_params']} on PBS ({np.isfinite(pbs.volumes).sum()} volumes)")
    s1 = fit(pbs_only, base, _fit_params(fc["growth_params"], base, prior), max_steps=steps)
    log(s1.summary())
    p1 = dict(base, **{k: np.asarray(v, prob_pbs.dtype) for k, v in s1.values.items()})

    res_il = log_residuals(prob_il.volumes, il12, None, sigma, DAY0 + n_il)

    def joint(p):
        import jax.numpy as jnp

        return jnp.concatenate([pbs_only(p), res_il(p)])

    log(f"stage 2: {fc['immune_params']} on PBS + {IL12_ARM}")
    s2 = fit(joint, p1, _fit_params(fc["immune_params"], p1, prior), max_steps=steps)
    log(s2.summary())
    p2 = dict(p1, **{k: np.asarray(v, prob_pbs.dtype) for k, v in s2.values.items()})

    log(f"stage 3: per-animal {fc['cohort_params']} on {IL12_ARM}")
    cohort = fit_cohort(prob_il, il12, p2, fc["cohort_params"], prior_sd=prior, sigma=sigma,
                        max_steps=steps)
    log("phenotypes (fit): " + ", ".join(f"{m}:{ph}" for m, ph in zip(cohort.mice, cohort.phenotype)))
    wall = time.perf_counter() - t_start

    import jax.numpy as jnp

    curves = {
        "PBS": np.asarray(jax.jit(prob_il.volumes)(dict(p2, il12_dose_ng=jnp.asarray(0.0, prob_il.dtype)))),
        IL12_ARM: np.asarray(jax.jit(prob_il.volumes)(p2)),
    }
    out = {"stage1": s1, "stage2": s2, "cohort": cohort, "params": p2, "curves": curves,
           "arms": arms, "wall_s": wall, "config": config, "quick": quick}
    prefix = Path(fc["output"])
    prefix.parent.mkdir(parents=True, exist_ok=True)
    write_fitted_toml(config, p2, Path(f"{prefix}_fitted.toml"))
    from .summaries import write_fit

    write_fit(Path(f"{prefix}_fit.h5"), arms={a: arms[a] for a in ARMS if a in arms}, curves=curves,
              curve_days=DAY0 + np.arange(len(curves["PBS"])), cohort=cohort,
              stages={"1_growth_pbs": s1, "2_immune_joint": s2}, config_toml=config.to_toml(),
              floor_mm3=FLOOR_MM3, injection_days=INJECTION_DAYS)
    plot_fit(Path(f"{prefix}_fit.h5"), Path(f"{prefix}_fit.png"))
    Path(f"{prefix}_fit.md").write_text(report(out), encoding="utf-8")
    out["outputs"] = [Path(f"{prefix}_fit.md"), Path(f"{prefix}_fit.png"), Path(f"{prefix}_fitted.toml"),
                      Path(f"{prefix}_fit.h5")]
    return out


def write_fitted_toml(config, params: Mapping, path: Path) -> Path:
    """The config with the fitted values (IL-12 arm: doses = il12_dose_ng; initial ball of
    cell volume v0_mm3), without [fit]: ``tmepde run`` runs it."""
    import copy

    import tomli_w

    from .config import loads_config

    data = copy.deepcopy(config.data)
    data.pop("fit", None)
    mp = data["model"]["params"]
    for k, v in params.items():
        if k in PSEUDO:
            continue
        val = np.asarray(v)
        if k.startswith("D_") and k[2:] in data["species"]:
            data["species"][k[2:]]["diffusivity"] = float(val)
        elif k.startswith("decay_") and k[6:] in data["species"]:
            data["species"][k[6:]]["decay"] = float(val)
        elif k in mp:
            mp[k] = float(val) if val.ndim == 0 else [float(x) for x in val]
    mp["it_il12_amounts"] = [float(np.asarray(params["il12_dose_ng"]))] * len(INJECTION_DAYS)
    radius = (3.0 * float(np.asarray(params["v0_mm3"])) * 1e9 / (4.0 * math.pi * RHO0)) ** (1 / 3)
    for name, frac in (("tumor", 0.98), ("stem", 0.02)):
        data["initial"][name] = [{"type": "disk", "center": [0.0], "radius": round(radius, 1),
                                  "value": RHO0 * frac}]
    data["output"]["path"] = "ct26_fitted.h5"
    text = ("# Fitted by `tmepde fit` (tmepde.ct26): the rVSV-mIL12-mGMCSF arm with the fitted\n"
            "# parameters; `tmepde run` runs it. Initial ball: cell volume v0_mm3 at density 0.6.\n"
            + tomli_w.dumps(data))
    loads_config(text, base_dir=config.base_dir)  # must load back as a valid run config
    path.write_text(text, encoding="utf-8")
    return path


def plot_fit(fit_file: Path, path: Path) -> Path:
    """Data vs fits per arm (from the ``tmepde-fit`` HDF5 file; ``tmepde plot`` draws the same)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .summaries import fit_figure

    fig = fit_figure(fit_file)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _table(res, prefix="") -> list[str]:
    lines = ["| parameter | value | std error (GN) | rel. error | identifiable |", "|---|---|---|---|---|"]
    for n in res.names:
        v, se = res.values[n], res.std_error[n]
        lines.append(f"| `{n}` | {v:.4g} | {se:.3g} | {se / abs(v):.0%} | {'yes' if res.identifiable[n] else 'no'} |")
    return lines


def report(out: Mapping) -> str:
    import jax

    s1, s2, c = out["stage1"], out["stage2"], out["cohort"]
    cfg = out["config"]
    n_reg = c.phenotype.count("regressing")
    n_reg_data = c.data_phenotype.count("regressing")
    lines = [
        "# CT26 fit (tmepde fit configs/fit/ct26.toml)" + (" — QUICK (CI scale)" if out["quick"] else ""),
        "",
        f"Radial grid {cfg.grid.shape[0]} shells × {cfg.grid.spacing[0]:g} µm, dt {cfg.data['time']['dt']:g} h, "
        f"{cfg.data['solver']['dtype']}; wall time {out['wall_s']:.0f} s on {jax.devices()[0].platform} "
        "(compile included). Residuals: log(V + 10 mm³), σ estimated from the residuals.",
        "Tumor volume = Σ shell volume × (tumor + stem volume fraction) (docs/fitting.md).",
        "Assumption: rVSV-mIL12-mGMCSF = intratumoral IL-12 deposits (days 11, 14, 17) of a fitted",
        "effective amount `il12_dose_ng`; oncolysis and GM-CSF not modelled.",
        "",
        "## Stage 1: growth on the PBS arm (8 mice pooled)",
        "",
        *_table(s1),
        "",
        f"cost {s1.cost:.3g} over {s1.n_data} volumes, σ̂(log) = {0.3 * math.sqrt(s1.sigma2):.2f}; "
        f"{s1.n_simulations} simulation-equivalents.",
        "",
        "## Stage 2: IL-12 / immune parameters on PBS + rVSV-mIL12-mGMCSF (jointly)",
        "",
        *_table(s2),
        "",
        f"cost {s2.cost:.3g} over {s2.n_data} volumes, σ̂(log) = {0.3 * math.sqrt(s2.sigma2):.2f}.",
        "Identifiable: the data alone give a marginal s.d. in log space below half the prior width",
        "(tmepde.fit); 'no' means the prior (s.d. 1 in log space) carries the value.",
        "",
        "## Stage 3: per-animal fits of the rVSV-mIL12-mGMCSF arm (virtual cohort)",
        "",
        "| mouse | " + " | ".join(f"`{n}` ± SE" for n in c.names) + " | fitted V(day 39) | phenotype (fit) | phenotype (data) |",
        "|---|" + "---|" * (len(c.names) + 3),
    ]
    end = min(39 - DAY0, c.curves.shape[1] - 1)
    for j, m in enumerate(c.mice):
        cells = " | ".join(f"{c.values[n][j]:.3g} ± {c.std_error[n][j]:.2g}" for n in c.names)
        lines.append(f"| {m} | {cells} | {c.curves[j, end]:.0f} | {c.phenotype[j]} | {c.data_phenotype[j]} |")
    lines += [
        "",
        f"Regressing (fitted volume at day 39 < {CONTROLLED_MM3:g} mm³): **{n_reg}** of {len(c.mice)}; "
        f"escaping: **{len(c.mice) - n_reg}**. The same rule on the data: {n_reg_data} regressing, "
        f"{len(c.mice) - n_reg_data} escaping. {c.n_simulations} simulation-equivalents.",
        "",
        "Figure: results/ct26_fit.png (points: data + 10 mm³; lines: fits). Fitted config:",
        "results/ct26_fitted.toml (`tmepde run results/ct26_fitted.toml`).",
        "",
    ]
    return "\n".join(lines)
