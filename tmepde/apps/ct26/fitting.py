"""The CT26 population fit: set-up, fit, counterfactuals, predictive checks (``tmepde fit``).

Fixed effects θ: log of ``fit.growth_params + fit.immune_params`` (model parameters of the TME
model, or ``v0_mm3`` / ``il12_dose_ng``; ``il12_response``, the fraction of the IL-12 dose an
animal responds to, on the logit scale, so that as a random effect it is logit-normal: a
regressor can be explained by its response to IL-12 rather than by its own kill rate;
``responder_fraction``, logit scale: the probability that an animal responds to IL-12 at all,
which makes the population a two-class mixture, responders (dose × ``il12_response``) and
non-responders (no IL-12 effect), with each animal's class summed out of the likelihood).
Random effects: ``fit.cohort_params`` (a subset),
one per animal, ``z_i = θ + η_i`` with ``η_i ~ N(0, diag ω²)``. Residuals: log(V + 10 mm³)
~ N(μ, σ²) (proportional error); dropout at large volume right-censored, zero readings
left-censored at the limit of quantification (:func:`tmepde.apps.ct26.data.population_data`). Marginal likelihood by the FOCE Laplace
approximation of :func:`tmepde.fit.population_fit`; optionally (``fit.posterior = "nuts"``) the
joint posterior by :func:`tmepde.fit.posterior_nuts`. Arms: PBS (no IL-12) and
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

from .data import FLOOR_MM3, IL12_ARM, INJECTION_DAYS, PBS_ARM, load_data, population_data, smallest_reading
from .model import IL12_AMOUNTS, MEMORY_PARAMS, WellMixedCt26

CONTROLLED_MM3 = 100.0      # mm³: a tumor below this at the last study day counts as regressing
# not parameters of the spatial TME model: the primed-effector pool (tmepde.apps.ct26.model)
# exists in the well-mixed reduction only
PSEUDO = ("v0_mm3", "il12_dose_ng", "il12_response", "responder_fraction", *MEMORY_PARAMS)
# Fitted on the logit scale (a fraction in 0..1), not the log scale: the animal's IL-12
# response fraction, so a per-animal random effect on it is logit-normal, and the fraction
# of responders of the mixture.
LOGIT = ("il12_response", "responder_fraction")
MIXTURE = "responder_fraction"   # fitted: responder / non-responder mixture
# NUTS: dense mass matrix (the fixed effects a6 and the response fraction trade off along a
# ridge that a diagonal metric cannot follow); tree depth ≤ 5 (≤ 31 leapfrog steps per draw).
# Random effects per class (Carlin and Chib 1995 pseudo-priors) for the IL-12 animals, one for
# the PBS animals (their prediction does not depend on the class); the growth effect, whose ω
# is held fixed, centred (tmepde.fit.posterior_nuts).
NUTS_TREE_DEPTH = 5
# Settings of the reduced model: time step (h), inner Newton and outer BFGS steps, profile grid.
FULL = dict(dt=2.0, inner_steps=20, profile_offsets=(-3.0, -1.5, 1.5, 3.0), profile_steps=5,
            n_vpc=400, n_post=200)
QUICK = dict(dt=6.0, inner_steps=20, profile_offsets=(-2.0, 2.0), profile_steps=4, n_vpc=100, n_post=50,
             nuts_draws=50, nuts_tree_depth=NUTS_TREE_DEPTH)   # at most, whatever the config says
# −log L gain of a profile point over the fit above which the fit is continued from it (below
# it the report notes the gap instead of paying another fit and round of profiles).
REFIT_GAIN = 0.05
# BFGS steps with finite-difference gradients after the analytic ones stop (fit.polish_steps):
# the analytic outer gradient holds η̂ fixed in ½ log det H, and near this mixture's optimum it
# stops finding descent while −log L can still drop (tmepde.fit.population_fit).
POLISH_STEPS = 20
# How each IL-12 animal's class is summed out (tmepde.fit.posterior_nuts): "aligned", one random
# effect per animal mapped per class onto that class's mode (exact; both classes' modes at the
# same point, so the class weight moves continuously); "per-class", Carlin–Chib pseudo-priors.
NUTS_CLASS_EFFECTS = "aligned"
# Starting random-effect s.d. (fitted scale); 0.3 otherwise. A logit-normal response fraction
# starts wide: responders and non-responders sit at opposite ends of the logit scale.
OMEGA0 = {"il12_response": 2.0}


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
    lloq_mm3: float | None = None   # limit of quantification of the zero readings (None: observed)

    @property
    def mixture(self):
        """``theta -> (2,) log weights`` of (non-responder, responder), or None (one class)."""
        if MIXTURE not in self.names:
            return None
        import jax
        import jax.numpy as jnp

        j = self.names.index(MIXTURE)
        return lambda theta: jnp.stack([jax.nn.log_sigmoid(-theta[j]), jax.nn.log_sigmoid(theta[j])])

    def predict(self, theta, eta, dose, responder=1.0):
        """log(V + floor) of one animal on days day0.. (JAX-traceable). responder: the mixture
        class, 1 (responds to IL-12) or 0 (IL-12 has no effect); ignored without a mixture."""
        import jax.numpy as jnp

        import jax

        z = theta + jnp.zeros_like(theta).at[jnp.asarray([self.names.index(n) for n in self.re_names])].set(eta)
        p = dict(self.base)
        for i, n in enumerate(self.names):
            p[n] = jax.nn.sigmoid(z[i]) if n in LOGIT else jnp.exp(z[i])
        v0 = p.pop("v0_mm3")
        # effective IL-12 per injection = dose of the arm x fitted dose scale x response fraction
        # (x the class: a non-responder gets no IL-12 effect)
        scale = p.pop("il12_dose_ng") / self.dose_ng * p.pop("il12_response")
        if p.pop(MIXTURE, None) is not None:
            scale = scale * responder
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
    amounts = raw.pop(IL12_AMOUNTS, [300.0])
    dose = float(np.atleast_1d(amounts)[0]) or 300.0
    day0 = int(min(a.days[0] for a in arms.values()))
    n_days = int(max(arms[a].days.max() for a in (PBS_ARM, IL12_ARM))) - day0
    overrides = {k: v for k, v in raw.items() if np.ndim(v) == 0 and not k.startswith(("it_", "dose_"))}
    model = WellMixedCt26(n_days, dt=settings["dt"],
                          injection_hours=[24.0 * (d - day0) for d in INJECTION_DAYS], params=overrides,
                          pool=fc.get("pool", "antigen"))
    base = {k: np.asarray(v) for k, v in model.params.items()}
    first = np.concatenate([arms[a].volumes[:, 0] for a in (PBS_ARM, IL12_ARM)])
    base["v0_mm3"] = np.asarray(float(np.exp(np.nanmean(np.log(first)))))   # geometric mean day 11
    base["il12_dose_ng"] = np.asarray(dose)
    # not fitted: every animal responds fully; fitted: starts at one half (logit 0)
    base["il12_response"] = np.asarray(0.5 if "il12_response" in names else 1.0)
    base[MIXTURE] = np.asarray(0.5)      # responders among the animals (used only when fitted)
    for n, (start, _, _) in MEMORY_PARAMS.items():   # the primed-effector pool: on when fitted
        if n in names:
            base[n] = np.asarray(start)
    unknown = [n for n in names if n not in base]
    if unknown:
        raise ValueError(f"fit: {unknown} are not parameters of the reduced CT26 model "
                         f"(tmepde.apps.ct26.model; diffusivities have no meaning well mixed)")
    if MIXTURE in re_names or (MIXTURE in names and "il12_response" in re_names):
        raise ValueError(f"fit.cohort_params: with {MIXTURE!r} (a responder / non-responder mixture) "
                         f"neither it nor il12_response can be a random effect; drop them from fit.cohort_params")
    if MIXTURE not in names:
        base.pop(MIXTURE)
    theta0 = np.array([_to_z(n, float(base[n])) for n in names])
    lloq = fc.get("lloq_mm3")
    if lloq is None and fc.get("zeros", "censored") == "censored":
        lloq = smallest_reading([arms[PBS_ARM], arms[IL12_ARM]])
    if fc.get("zeros", "censored") != "censored":
        lloq = None
    data = population_data([arms[PBS_ARM], arms[IL12_ARM]], day0, n_days, [0.0, dose], lloq)
    arm_of = [PBS_ARM] * len(arms[PBS_ARM].mice) + [IL12_ARM] * len(arms[IL12_ARM].mice)
    mouse_of = list(arms[PBS_ARM].mice) + list(arms[IL12_ARM].mice)
    return Ct26Setup(model, base, names, re_names, theta0, data, arms, arm_of, mouse_of, day0, dose, lloq)


def run_fit(config, *, quick: bool = False, log=print) -> dict:
    """Fit, check and write ``<output>_fit.md``, ``_fit.png``, ``_fit.json``, ``_fitted.toml``.

    quick: CI scale (6 h steps, few outer steps, a 2-point profile). Returns a dict of results.
    """
    import jax

    with jax.enable_x64(True):  # the Laplace log-determinants need float64; this block only
        return _run_fit(config, quick=quick, log=log)


def omega_start(s: Ct26Setup, fc: Mapping) -> np.ndarray:
    """(k,) starting random-effect s.d. (fitted scale): ``fit.omega_start``, else ``OMEGA0``."""
    return np.array(fc.get("omega_start") or [OMEGA0.get(n, 0.3) for n in s.re_names], float)


def fit_from(s: Ct26Setup, config, theta, omega, sigma, *, inner_steps: int, max_steps: int,
             polish_steps: int, log=None):
    """:func:`tmepde.fit.population_fit` of this setup from ``(θ, ω, σ)`` with the config's
    priors, held ω (``fit.omega_fixed``) and mixture; ``max_steps = 0`` evaluates the start."""
    from tmepde.fit import population_fit

    fc = config.data["fit"]
    fixed = [s.re_names.index(n) for n in fc.get("omega_fixed", [])]
    return population_fit(s.predict, s.data, theta, omega, sigma, names=s.names, re_names=s.re_names,
                          inner_steps=inner_steps, max_steps=max_steps, prior_sd=fc["prior_sd"],
                          fixed_omega=fixed, mixture=s.mixture, polish_steps=polish_steps,
                          prior_mean=s.theta0, log=log)


def _run_fit(config, *, quick: bool, log) -> dict:
    from tmepde.fit import profile_likelihood, refit

    fc = config.data["fit"]
    settings = QUICK if quick else FULL
    steps = min(fc["max_steps"], 6) if quick else fc["max_steps"]
    t0 = time.perf_counter()
    s = setup(config, quick=quick)
    log(f"population fit: fixed {s.names}, random {s.re_names}, {int(s.data.observed.sum())} volumes, "
        f"{int((s.data.censored > 0).sum())} right-censored, {int((s.data.censored < 0).sum())} left-censored "
        f"(below {s.lloq_mm3} mm³), {len(s.arm_of)} animals" + (", responder mixture" if s.mixture else ""))
    omega0 = omega_start(s, fc)
    polish = 0 if quick else int(fc.get("polish_steps", POLISH_STEPS))
    theta_start, omega_begin, sigma_start = s.theta0, omega0, fc["sigma"]
    if fc.get("start_from") and not quick:
        # start the optimiser at an earlier fit's optimum (the priors stay at the values above)
        theta_start, omega_begin, sigma_start = start_values(s, config, fc["start_from"], omega0)
        log(f"starting at {fc['start_from']}: " + ", ".join(
            f"{n} {from_z(n, v):.4g}" for n, v in zip(s.names, theta_start)))
    res = fit_from(s, config, theta_start, omega_begin, sigma_start, inner_steps=settings["inner_steps"],
                   max_steps=steps, polish_steps=polish, log=log)
    t_fit = time.perf_counter() - t0
    log(f"-log L {res.nll:.2f} after {res.n_steps} BFGS steps ({t_fit:.0f} s)")
    # Profiles of every fitted coordinate [θ, log ω, log σ]; a profile point below the optimum
    # means the outer fit stopped early (its gradient is approximate): continue from there and
    # profile again (once).
    labels = u_names(s)
    for _ in range(2):
        profiles, best = {}, (res.nll, None)
        for j, n in enumerate(labels):
            if not res.free_mask[j]:
                continue
            points = []
            vals, dev, bounds = profile_likelihood(s.predict, s.data, res, j, settings["profile_offsets"],
                                                   max_steps=settings["profile_steps"], points=points)
            profiles[n] = (vals, dev, bounds)
            log(f"profile {n}: deviance {np.round(dev, 2)} interval (fitted scale) {bounds}")
            # continue only for a gain above the profile's own noise (5 BFGS steps per point),
            # from the point and its own inner modes
            u_pt, eta_pt, f_pt = points[int(np.argmin(dev))]
            if f_pt < best[0] - REFIT_GAIN:
                best = (f_pt, (u_pt, eta_pt))
        if best[1] is None or quick:
            break
        log(f"a profile point is lower by {res.nll - best[0]:.3f}: continuing the fit from it")
        new = refit(res, best[1][0], eta0=best[1][1], max_steps=steps, polish_steps=polish, log=log)
        if new is res:     # no better optimum from there (the inner modes differ): keep the profiles
            break
        res = new
        log(f"continued from a profile point: -log L {res.nll:.2f}")
    t_prof = time.perf_counter() - t0 - t_fit
    out = summarise(s, res, n_vpc=settings["n_vpc"])
    out.update(fit=res, setup=s, profiles=profiles, wall_fit_s=t_fit, wall_profile_s=t_prof,
               quick=quick, config=config, settings=settings, posterior=None, wall_nuts_s=0.0)
    if fc.get("posterior", "laplace") == "nuts":
        from tmepde.fit import posterior_nuts

        t1 = time.perf_counter()
        warm, draws = fc.get("nuts_warmup", 200), fc.get("nuts_samples", 200)
        depth = int(fc.get("nuts_tree_depth", NUTS_TREE_DEPTH))
        if quick:
            warm, draws = min(warm, QUICK["nuts_draws"]), min(draws, QUICK["nuts_draws"])
            depth = min(depth, QUICK["nuts_tree_depth"])
        chains = fc.get("nuts_chains", 4)
        log(f"NUTS posterior: {chains} chains, {warm} warm-up + {draws} draws each")
        post = posterior_nuts(s.predict, s.data, res, prior_mean=s.theta0, prior_sd=fc["prior_sd"],
                              omega_prior=(np.log(omega0), 1.0), sigma_prior=(np.log(fc["sigma"]), 1.0),
                              chains=chains, warmup=warm, samples=draws, chunk=min(50, draws),
                              max_tree_depth=depth, dense_mass=True,
                              class_free=np.asarray(s.data.covariates) == 0,
                              class_effects=fc.get("nuts_class_effects", NUTS_CLASS_EFFECTS),
                              target_accept=float(fc.get("nuts_target_accept", 0.8)),
                              metric=fc.get("nuts_metric", "adapt"),
                              centred=nuts_centred(s, res), log=log)
        log(f"NUTS: max R-hat {post.r_hat.max():.3f} (random effects {post.extra['r_hat_eta_max']:.3f}), "
            f"min ESS {post.ess.min():.0f}, {post.divergences} divergences ({post.wall_s:.0f} s)")
        post.extra.update(warmup=warm, max_tree_depth=depth)   # as run (--quick caps them)
        post.extra["omega_fixed"] = {f"omega_{n}": float(res.omega[i]) for i, n in enumerate(s.re_names)
                                     if not res.free_mask[len(s.names) + i]}
        out["posterior"] = post
        out.update(posterior_summary(s, post, n_draws=settings["n_post"]))
        out["wall_nuts_s"] = time.perf_counter() - t1
    from .plot import plot_fit
    from .report import report, write_fit_h5, write_fitted_toml, write_json

    prefix = Path(fc["output"])
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [Path(f"{prefix}_fit.md"), Path(f"{prefix}_fit.png"), Path(f"{prefix}_fit.json"),
             Path(f"{prefix}_fit.h5"), Path(f"{prefix}_fitted.toml")]
    plot_fit(out, paths[1])
    write_json(out, paths[2])
    write_fit_h5(out, paths[3])
    write_fitted_toml(config, out, paths[4])
    out["wall_s"] = time.perf_counter() - t0
    out["figure"] = str(paths[1])
    paths[0].write_text(report(out), encoding="utf-8")
    out["outputs"] = paths
    return out


def start_values(s: Ct26Setup, config, path, omega0):
    """``(θ, ω, σ)`` of an earlier fit's JSON (``theta_log``, ``omega``, ``sigma``; path relative
    to the config), for the names of this fit; a name it lacks starts at this config's value,
    an ω held fixed (fit.omega_fixed) at ``omega0``, the pool's names too when that fit used
    another kill law (``pool``)."""
    import json

    path = Path(path)
    if not path.is_absolute():
        path = Path(config.base_dir) / path
    d = json.loads(path.read_text(encoding="utf-8"))
    start = dict(d["theta_log"])
    if d.get("pool", "ratio") != s.model.pool:
        # the pool's values mean something else under another kill law (kill_memory's units
        # differ): those start at this config's values (fits before the law was recorded: "ratio")
        start = {n: v for n, v in start.items() if n not in MEMORY_PARAMS}
    theta = np.array([start.get(n, s.theta0[i]) for i, n in enumerate(s.names)], float)
    fixed = set(config.data["fit"].get("omega_fixed", []))
    omega = np.array([omega0[j] if n in fixed else d["omega"].get(n, omega0[j])
                      for j, n in enumerate(s.re_names)], float)
    return theta, omega, float(d["sigma"])


def nuts_centred(s: Ct26Setup, res) -> tuple[str, ...]:
    """Random effects NUTS samples centred: those whose ω the fit held fixed."""
    return tuple(n for j, n in enumerate(s.re_names) if not res.free_mask[len(s.names) + j])


def responder_classes(s: Ct26Setup, res) -> np.ndarray:
    """(N,) class of each animal for its individual prediction: 1 responder, 0 non-responder
    (its most probable class under the fit; all 1 without a mixture)."""
    if res.membership is None:
        return np.ones(len(s.arm_of))
    return np.argmax(res.membership, axis=1).astype(float)


def responder_probability(s: Ct26Setup, theta) -> float:
    """Fraction of responders π of the mixture at fixed effects ``theta`` (1 without one)."""
    return float(from_z(MIXTURE, theta[s.names.index(MIXTURE)])) if s.mixture else 1.0


def censor_simulated(s: Ct26Setup, y):
    """Simulated log(V + floor) below the limit of quantification read as the calipers read
    them (0 mm³, i.e. log floor), so that simulated and measured percentiles compare."""
    if s.lloq_mm3 is None:
        return y
    return np.where(y < math.log(s.lloq_mm3 + FLOOR_MM3), math.log(FLOOR_MM3), y)


def summarise(s: Ct26Setup, res, *, n_vpc: int = 400, seed: int = 0) -> dict:
    """Individual/population predictions, residual s.d., per-animal IL-12 counterfactual, VPC.

    Residual s.d. over the quantified volumes only; the left-censored zero readings are
    summarised apart (how many the individual prediction puts below the limit, and the mean
    probability the model gives them). With a mixture, an animal's individual and population
    (η = 0) predictions are those of its most probable class."""
    import jax
    import jax.numpy as jnp

    theta = jnp.asarray(res.theta)
    doses = jnp.asarray(s.data.covariates)
    cls = responder_classes(s, res)
    pred = jax.jit(jax.vmap(s.predict, (None, 0, 0, 0)))
    ipred = np.asarray(pred(theta, jnp.asarray(res.eta), doses, cls))
    ppred = np.asarray(pred(theta, jnp.zeros_like(jnp.asarray(res.eta)), doses, cls))
    no_il12 = np.asarray(pred(theta, jnp.asarray(res.eta), 0.0 * doses, cls))
    obs = s.data.observed > 0
    sd_ind = float(np.std((s.data.y - ipred)[obs]))
    sd_pop = float(np.std((s.data.y - ppred)[obs]))
    # Where the individual misfit sits: per arm, and at the zero readings (no palpable tumor,
    # entered as log FLOOR_MM3 when not censored) against the measured volumes; and a
    # model-free reference.
    zero = obs & np.isclose(s.data.y, math.log(FLOOR_MM3))
    resid = s.data.y - ipred
    arm_of = np.array(s.arm_of)[:, None]
    sd_breakdown = {f"{arm} arm": float(np.std(resid[obs & (arm_of == arm)])) for arm in (PBS_ARM, IL12_ARM)}
    sd_breakdown["measured volumes (> 0)"] = float(np.std(resid[obs & ~zero]))
    if zero.any():
        sd_breakdown[f"{int(zero.sum())} zero readings (rms)"] = float(np.sqrt(np.mean(resid[zero] ** 2)))
    left = s.data.censored < 0
    censored_fit = None
    if left.any():
        z = (s.data.censor[left] - ipred[left]) / res.sigma
        p_below = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in z])
        censored_fit = dict(n=int(left.sum()), lloq_mm3=s.lloq_mm3, below=int(np.sum(z > 0)),
                            mean_p_below=float(p_below.mean()), min_p_below=float(p_below.min()))
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
            data_phenotype=data_ph, eta=[float(e) for e in res.eta[i]],
            p_responder=None if res.membership is None else float(res.membership[i, 1])))
    # VPC: virtual animals η ~ N(0, Ω), class ~ Bernoulli(π), observations with residual
    # noise and the caliper's limit of quantification, per arm.
    rng = np.random.default_rng(seed)
    pi = responder_probability(s, res.theta)
    vpc = {}
    k = len(s.re_names)
    for arm, dose in ((PBS_ARM, 0.0), (IL12_ARM, s.dose_ng)):
        eta = rng.standard_normal((n_vpc, k)) * res.omega
        c = (rng.random(n_vpc) < pi).astype(float)
        mu = np.asarray(pred(theta, jnp.asarray(eta), jnp.full(n_vpc, dose), jnp.asarray(c)))
        ysim = censor_simulated(s, mu + res.sigma * rng.standard_normal(mu.shape))
        sim_q = np.percentile(ysim, [5, 50, 95], axis=0)
        a = s.arms[arm]
        data_q = np.array([np.nanpercentile(np.log(a.volumes[:, d] + FLOOR_MM3), [5, 50, 95])
                           for d in range(len(a.days))]).T
        pop = np.asarray(pred(theta, jnp.zeros((2, k)), jnp.full(2, dose), jnp.array([1.0, 0.0])))
        inside = np.mean([(sim_q[0, day - s.day0] <= data_q[1, d] <= sim_q[2, day - s.day0])
                          for d, day in enumerate(a.days)])
        q_inside = _quantiles_inside(sim_q, data_q, a.days - s.day0)
        vpc[arm] = dict(days=s.day0 + np.arange(mu.shape[1]), sim_q=sim_q, data_days=a.days,
                        data_q=data_q, pop=pop[0], pop_nonresponder=pop[1],
                        n_measured=np.isfinite(a.volumes).sum(axis=0),
                        median_inside=float(inside), quantiles_inside=q_inside)
    pbs_end, il_end = vpc[PBS_ARM]["pop"][end], vpc[IL12_ARM]["pop"][end]
    return dict(ipred=ipred, ppred=ppred, no_il12=no_il12, sd_individual=sd_ind, sd_population=sd_pop,
                sd_breakdown=sd_breakdown, sd_reference=reference_sd(s), censored_fit=censored_fit,
                responder_fraction=pi if s.mixture else None,
                counterfactual=counterfactual, vpc=vpc, pop_log_ratio_end=float(il_end - pbs_end),
                median_log_ratio_end=float(vpc[IL12_ARM]["sim_q"][1, end] - vpc[PBS_ARM]["sim_q"][1, end]))


def reference_sd(s: Ct26Setup, degree: int = 3) -> float:
    """Model-free reference for the individual residual s.d.: a polynomial of ``degree`` in
    time fitted to each animal's log(V + floor) alone, root-mean-square residual with the
    degrees of freedom removed (n − animals × (degree + 1)). It estimates the caliper noise
    around a smooth per-animal trend, a floor for any growth law (log volume units)."""
    ss, dof = 0.0, 0
    days = s.day0 + np.arange(s.data.y.shape[1])
    for i in range(s.data.y.shape[0]):
        o = s.data.observed[i] > 0
        k = min(degree + 1, int(o.sum()))
        coef = np.polyfit(days[o] - s.day0, s.data.y[i, o], k - 1)
        ss += float(np.sum((s.data.y[i, o] - np.polyval(coef, days[o] - s.day0)) ** 2))
        dof += int(o.sum()) - k
    return math.sqrt(ss / max(dof, 1))


def _quantiles_inside(band, data_q, idx) -> list[float]:
    """Fraction of measurement days on which each data percentile (5, 50, 95 %; rows of
    ``data_q``) lies inside the model's band [``band[0]``, ``band[2]``] (log volume)."""
    lo, hi = band[0][idx], band[2][idx]
    return [float(np.mean((lo <= q) & (q <= hi))) for q in data_q]


def u_names(s: Ct26Setup) -> list[str]:
    """Names of the coordinates of ``[θ, log ω, log σ]``."""
    return list(s.names) + [f"omega_{n}" for n in s.re_names] + ["sigma"]


def u_value(s: Ct26Setup, j: int, z):
    """Model-unit value of coordinate ``j`` of ``[θ, log ω, log σ]`` (ω, σ: exp)."""
    return from_z(s.names[j], z) if j < len(s.names) else np.exp(np.asarray(z, float))


def post_u(s: Ct26Setup, post) -> np.ndarray:
    """(chains × draws, p + k + 1) pooled draws of ``[θ, log ω, log σ]`` in the order of
    :func:`u_names`; an ω held fixed by the fit enters at its fixed value."""
    names = u_names(s)
    out = np.empty((post.flat.shape[0], len(names)))
    for j, n in enumerate(names):
        out[:, j] = (post.flat[:, post.names.index(n)] if n in post.names
                     else np.log(post.extra["omega_fixed"][n]))
    return out


def posterior_summary(s: Ct26Setup, post, *, n_draws: int = 200, seed: int = 1) -> dict:
    """Posterior predictive checks from NUTS draws: per arm, the 5/50/95 % band of new
    animals' observations (each draw: its own θ, ω, σ, a new η ~ N(0, Ω), with a mixture a
    class drawn with the draw's responder fraction, residual noise and the limit of
    quantification); per IL-12 animal, the probability that it is regressing on the last day
    and that it escapes without IL-12 (each draw: the animal's own sampled η and, with a
    mixture, a class drawn from its class probabilities given that η)."""
    import jax
    import jax.numpy as jnp

    p, k = len(s.names), len(s.re_names)
    flat = post_u(s, post)
    eta = post.extra["eta"].reshape(-1, *post.extra["eta"].shape[2:])
    rng = np.random.default_rng(seed)
    pick = rng.choice(flat.shape[0], size=min(n_draws, flat.shape[0]), replace=False)
    theta, omega, sigma = flat[pick, :p], np.exp(flat[pick, p:p + k]), np.exp(flat[pick, -1])
    pred = jax.jit(jax.vmap(s.predict, (0, 0, 0, 0)))
    n = pick.size
    pi = np.array([responder_probability(s, th) for th in theta])
    member = post.extra.get("membership")
    member = None if member is None else member.reshape(-1, *member.shape[2:])[pick]   # (n, N, C)
    drawn = None if member is None else post.extra["class"].reshape(-1, post.extra["class"].shape[-1])
    bands, inside = {}, {}
    for arm, dose in ((PBS_ARM, 0.0), (IL12_ARM, s.dose_ng)):
        reps = max(1, 800 // n)     # several new animals per draw: a smooth band
        new_eta = rng.standard_normal((n * reps, k)) * np.repeat(omega, reps, axis=0)
        th = np.repeat(theta, reps, axis=0)
        c = (rng.random(n * reps) < np.repeat(pi, reps)).astype(float)
        mu = np.asarray(pred(jnp.asarray(th), jnp.asarray(new_eta), jnp.full(n * reps, dose), jnp.asarray(c)))
        ysim = censor_simulated(s, mu + np.repeat(sigma, reps)[:, None] * rng.standard_normal(mu.shape))
        bands[arm] = np.percentile(ysim, [5, 50, 95], axis=0)
        a = s.arms[arm]
        data_q = np.array([np.nanpercentile(np.log(a.volumes[:, d] + FLOOR_MM3), [5, 50, 95])
                           for d in range(len(a.days))]).T
        inside[arm] = _quantiles_inside(bands[arm], data_q, a.days - s.day0)
    end = s.data.y.shape[1] - 1
    vol = lambda lv: np.exp(lv) - FLOOR_MM3   # noqa: E731
    per_animal = []
    for i, arm in enumerate(s.arm_of):
        if arm != IL12_ARM:
            continue
        e = jnp.asarray(eta[pick, i])
        # the class drawn with the draw's η (posterior_nuts: each draw's class from its class
        # probabilities, and that class's random effect)
        c = jnp.ones(n) if member is None else jnp.asarray(drawn[pick, i].astype(float))
        on = vol(np.asarray(pred(jnp.asarray(theta), e, jnp.full(n, s.dose_ng), c))[:, end])
        off = vol(np.asarray(pred(jnp.asarray(theta), e, jnp.zeros(n), c))[:, end])
        reg = on < CONTROLLED_MM3
        per_animal.append(dict(mouse=int(s.mouse_of[i]), p_regressing=float(reg.mean()),
                               p_escape_without_il12=float((off >= CONTROLLED_MM3).mean()),
                               p_attributed=float((reg & (off >= CONTROLLED_MM3)).sum() / max(reg.sum(), 1)),
                               p_responder=None if member is None else float(member[:, i, 1].mean()),
                               r_hat_p_responder=None if member is None else float(post.extra["r_hat_membership"][i]),
                               ess_p_responder=None if member is None else float(post.extra["ess_membership"][i]),
                               r_hat_eta=np.asarray(post.extra["r_hat_eta"][i]).tolist(),
                               v_end_q=np.percentile(on, [5, 50, 95]).tolist(),
                               v_end_no_il12_q=np.percentile(off, [5, 50, 95]).tolist()))
    return dict(post_bands=bands, post_animals=per_animal, post_inside=inside)


def _to_z(name: str, value: float) -> float:
    return math.log(value / (1.0 - value)) if name in LOGIT else math.log(value)


def from_z(name: str, z):
    """Model-unit value of a fixed effect from its fitted scale (log, or logit for LOGIT)."""
    z = np.asarray(z, float)
    return 1.0 / (1.0 + np.exp(-z)) if name in LOGIT else np.exp(z)


def parameter_values(s: Ct26Setup, res) -> dict:
    """Fitted fixed effects in model units {name: value} (a geometric population typical animal)."""
    return {n: float(from_z(n, res.theta[i])) for i, n in enumerate(s.names)}


def fitted_params(s: Ct26Setup, res) -> Mapping:
    return dict(s.base, **parameter_values(s, res))
