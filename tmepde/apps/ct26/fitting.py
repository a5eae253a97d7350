"""The CT26 population fit: set-up, fit, counterfactuals, predictive checks (``tmepde fit``).

Fixed effects θ: log of ``fit.growth_params + fit.immune_params`` (model parameters of the TME
model, or ``v0_mm3`` / ``il12_dose_ng``). Random effects: ``fit.cohort_params`` (a subset),
one per animal, ``z_i = θ + η_i`` with ``η_i ~ N(0, diag ω²)``. Residuals: log(V + 10 mm³)
~ N(μ, σ²) (proportional error); dropout at large volume right-censored
(:func:`tmepde.apps.ct26.data.population_data`). Marginal likelihood by the FOCE Laplace
approximation of :func:`tmepde.fit.population_fit`. Arms: PBS (no IL-12) and
rVSV-mIL12-mGMCSF (IL-12 deposits on days 11, 14, 17); the arms differ only in the dose, so
the IL-12 effect is what separates them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from .data import FLOOR_MM3, IL12_ARM, INJECTION_DAYS, PBS_ARM, load_data, population_data
from .model import WellMixedCt26

CONTROLLED_MM3 = 100.0      # mm³: a tumor below this at the last study day counts as regressing
PSEUDO = ("v0_mm3", "il12_dose_ng")
# Settings of the reduced model: time step (h), inner Newton and outer BFGS steps, profile grid.
FULL = dict(dt=2.0, inner_steps=20, profile_offsets=(-3.0, -1.5, 1.5, 3.0), profile_steps=8,
            n_vpc=400)
QUICK = dict(dt=6.0, inner_steps=20, profile_offsets=(-2.0, 2.0), profile_steps=4, n_vpc=100)


@dataclasses.dataclass
class Ct26Setup:
    """Everything the fit needs: the reduced model, the data arrays, the parameterisation."""

    model: WellMixedCt26
    base: dict
    names: list[str]          # fixed effects (log-transformed)
    re_names: list[str]       # random effects, a subset of names
    theta0: np.ndarray
    data: object              # tmepde.fit.PopulationData
    arms: dict
    arm_of: list[str]         # arm name per subject
    mouse_of: list[int]
    day0: int
    dose_ng: float

    def predict(self, theta, eta, dose):
        """log(V + floor) of one animal on days day0.. (JAX-traceable)."""
        import jax.numpy as jnp

        z = theta + jnp.zeros_like(theta).at[jnp.asarray([self.names.index(n) for n in self.re_names])].set(eta)
        p = dict(self.base)
        for i, n in enumerate(self.names):
            p[n] = jnp.exp(z[i])
        v0 = p.pop("v0_mm3")
        scale = p.pop("il12_dose_ng") / self.dose_ng
        return self.model.log_volumes(p, v0, dose * scale, FLOOR_MM3)


def setup(config, *, quick: bool = False) -> Ct26Setup:
    """Build the fit from a config with a ``[fit]`` table (configs/fit/ct26.toml)."""
    fc = config.data["fit"]
    settings = QUICK if quick else FULL
    data_path = fc.get("data")
    if data_path is not None and not Path(data_path).is_absolute():
        data_path = Path(config.base_dir) / data_path
    arms = load_data(data_path)
    for a in (PBS_ARM, IL12_ARM):
        if a not in arms:
            raise ValueError(f"fit.data: arm {a!r} missing; arms in the file: {sorted(arms)}")
    names = list(dict.fromkeys(fc["growth_params"] + fc["immune_params"]))
    re_names = list(fc["cohort_params"])
    missing = [n for n in re_names if n not in names]
    if missing:
        raise ValueError(f"fit.cohort_params: {missing} must also be fixed effects (in fit.growth_params "
                         "or fit.immune_params): a random effect is a per-animal deviation from one")
    raw = dict(config.data["model"].get("params", {}))
    amounts = raw.pop("it_il12_amounts", [300.0])
    dose = float(np.atleast_1d(amounts)[0]) or 300.0
    day0 = int(min(a.days[0] for a in arms.values()))
    n_days = int(max(arms[a].days.max() for a in (PBS_ARM, IL12_ARM))) - day0
    overrides = {k: v for k, v in raw.items() if np.ndim(v) == 0 and not k.startswith(("it_", "dose_"))}
    model = WellMixedCt26(n_days, dt=settings["dt"],
                          injection_hours=[24.0 * (d - day0) for d in INJECTION_DAYS], params=overrides)
    base = {k: np.asarray(v) for k, v in model.params.items()}
    first = np.concatenate([arms[a].volumes[:, 0] for a in (PBS_ARM, IL12_ARM)])
    base["v0_mm3"] = np.asarray(float(np.exp(np.nanmean(np.log(first)))))   # geometric mean day 11
    base["il12_dose_ng"] = np.asarray(dose)
    unknown = [n for n in names if n not in base]
    if unknown:
        raise ValueError(f"fit: {unknown} are not parameters of the reduced CT26 model "
                         f"(tmepde.apps.ct26.model; diffusivities have no meaning well mixed)")
    theta0 = np.log([float(base[n]) for n in names])
    data = population_data([arms[PBS_ARM], arms[IL12_ARM]], day0, n_days, [0.0, dose])
    arm_of = [PBS_ARM] * len(arms[PBS_ARM].mice) + [IL12_ARM] * len(arms[IL12_ARM].mice)
    mouse_of = list(arms[PBS_ARM].mice) + list(arms[IL12_ARM].mice)
    return Ct26Setup(model, base, names, re_names, theta0, data, arms, arm_of, mouse_of, day0, dose)


def run_fit(config, *, quick: bool = False, log=print) -> dict:
    """Fit, check and write ``<output>_fit.md``, ``_fit.png``, ``_fit.json``, ``_fitted.toml``.

    quick: CI scale (6 h steps, few outer steps, a 2-point profile). Returns a dict of results.
    """
    import jax

    with jax.enable_x64(True):  # the Laplace log-determinants need float64; this block only
        return _run_fit(config, quick=quick, log=log)


def _run_fit(config, *, quick: bool, log) -> dict:
    from tmepde.fit import population_fit, profile_likelihood, refit

    fc = config.data["fit"]
    settings = QUICK if quick else FULL
    steps = min(fc["max_steps"], 6) if quick else fc["max_steps"]
    t0 = time.perf_counter()
    s = setup(config, quick=quick)
    n_re = len(s.re_names)
    log(f"population fit: fixed {s.names}, random {s.re_names}, {int(s.data.observed.sum())} volumes, "
        f"{int(s.data.censored.sum())} censored, {len(s.arm_of)} animals")
    res = population_fit(s.predict, s.data, s.theta0, np.full(n_re, 0.3), fc["sigma"],
                         names=s.names, re_names=s.re_names, inner_steps=settings["inner_steps"],
                         max_steps=steps, prior_sd=fc["prior_sd"], log=log)
    t_fit = time.perf_counter() - t0
    log(f"-log L {res.nll:.2f} after {res.n_steps} BFGS steps ({t_fit:.0f} s)")
    # Profiles; a profile point below the optimum means the outer fit stopped early (its
    # gradient is approximate): continue from there and profile again (once).
    for _ in range(2):
        profiles, best = {}, (res.nll, None)
        for j, n in enumerate(s.names):
            vals, dev, bounds = profile_likelihood(s.predict, s.data, res, j, settings["profile_offsets"],
                                                   max_steps=settings["profile_steps"])
            profiles[n] = (vals, dev, bounds)
            log(f"profile {n}: deviance {np.round(dev, 2)} interval (log) {bounds}")
            if res.nll + dev.min() / 2 < best[0] - 0.01:
                u = res.u.copy()
                u[j] = vals[int(np.argmin(dev))]
                best = (res.nll + dev.min() / 2, u)
        if best[1] is None or quick:
            break
        new = refit(res, best[1], max_steps=steps)
        if new is res:     # no better optimum from there (the inner modes differ): keep the profiles
            break
        res = new
        log(f"continued from a profile point: -log L {res.nll:.2f}")
    t_prof = time.perf_counter() - t0 - t_fit
    out = summarise(s, res, n_vpc=settings["n_vpc"])
    out.update(fit=res, setup=s, profiles=profiles, wall_fit_s=t_fit, wall_profile_s=t_prof,
               quick=quick, config=config, settings=settings)
    from .plot import plot_fit
    from .report import report, write_fitted_toml, write_json

    prefix = Path(fc["output"])
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [Path(f"{prefix}_fit.md"), Path(f"{prefix}_fit.png"), Path(f"{prefix}_fit.json"),
             Path(f"{prefix}_fitted.toml")]
    plot_fit(out, paths[1])
    write_json(out, paths[2])
    write_fitted_toml(config, out, paths[3])
    out["wall_s"] = time.perf_counter() - t0
    out["figure"] = str(paths[1])
    paths[0].write_text(report(out), encoding="utf-8")
    out["outputs"] = paths
    return out


def summarise(s: Ct26Setup, res, *, n_vpc: int = 400, seed: int = 0) -> dict:
    """Individual/population predictions, residual s.d., per-animal IL-12 counterfactual, VPC."""
    import jax
    import jax.numpy as jnp

    theta = jnp.asarray(res.theta)
    doses = jnp.asarray(s.data.covariates)
    pred = jax.jit(jax.vmap(s.predict, (None, 0, 0)))
    ipred = np.asarray(pred(theta, jnp.asarray(res.eta), doses))
    ppred = np.asarray(pred(theta, jnp.zeros_like(jnp.asarray(res.eta)), doses))
    no_il12 = np.asarray(pred(theta, jnp.asarray(res.eta), 0.0 * doses))
    obs = s.data.observed > 0
    sd_ind = float(np.std((s.data.y - ipred)[obs]))
    sd_pop = float(np.std((s.data.y - ppred)[obs]))
    vol = lambda lv: np.exp(lv) - FLOOR_MM3   # noqa: E731
    end = s.data.y.shape[1] - 1
    counterfactual = []
    for i, arm in enumerate(s.arm_of):
        if arm != IL12_ARM:
            continue
        last = s.arms[arm].last_day(list(s.arms[arm].mice).index(s.mouse_of[i]))
        v_last = float(s.arms[arm].volumes[list(s.arms[arm].mice).index(s.mouse_of[i]),
                                           np.searchsorted(s.arms[arm].days, last)])
        data_ph = ("regressing" if last - s.day0 == end and v_last < CONTROLLED_MM3 else "escaping")
        counterfactual.append(dict(
            mouse=int(s.mouse_of[i]), v_end=float(vol(ipred[i, end])), v_end_no_il12=float(vol(no_il12[i, end])),
            phenotype="regressing" if vol(ipred[i, end]) < CONTROLLED_MM3 else "escaping",
            phenotype_no_il12="regressing" if vol(no_il12[i, end]) < CONTROLLED_MM3 else "escaping",
            data_phenotype=data_ph, eta=[float(e) for e in res.eta[i]]))
    # VPC: virtual animals η ~ N(0, Ω), observations with residual noise, per arm.
    rng = np.random.default_rng(seed)
    vpc = {}
    for arm, dose in ((PBS_ARM, 0.0), (IL12_ARM, s.dose_ng)):
        eta = rng.standard_normal((n_vpc, len(s.re_names))) * res.omega
        mu = np.asarray(pred(theta, jnp.asarray(eta), jnp.full(n_vpc, dose)))
        ysim = mu + res.sigma * rng.standard_normal(mu.shape)
        sim_q = np.percentile(ysim, [5, 50, 95], axis=0)
        a = s.arms[arm]
        data_q = np.array([np.nanpercentile(np.log(a.volumes[:, d] + FLOOR_MM3), [5, 50, 95])
                           for d in range(len(a.days))]).T
        pop = np.asarray(pred(theta, jnp.zeros((1, len(s.re_names))), jnp.full(1, dose)))[0]
        inside = np.mean([(sim_q[0, day - s.day0] <= data_q[1, d] <= sim_q[2, day - s.day0])
                          for d, day in enumerate(a.days)])
        vpc[arm] = dict(days=s.day0 + np.arange(mu.shape[1]), sim_q=sim_q, data_days=a.days,
                        data_q=data_q, pop=pop, n_measured=np.isfinite(a.volumes).sum(axis=0),
                        median_inside=float(inside))
    pbs_end, il_end = vpc[PBS_ARM]["pop"][end], vpc[IL12_ARM]["pop"][end]
    return dict(ipred=ipred, ppred=ppred, no_il12=no_il12, sd_individual=sd_ind, sd_population=sd_pop,
                counterfactual=counterfactual, vpc=vpc, pop_log_ratio_end=float(il_end - pbs_end))


def parameter_values(s: Ct26Setup, res) -> dict:
    """Fitted fixed effects in model units {name: value} (a geometric population typical animal)."""
    return {n: float(math.exp(res.theta[i])) for i, n in enumerate(s.names)}


def fitted_params(s: Ct26Setup, res) -> Mapping:
    return dict(s.base, **parameter_values(s, res))
