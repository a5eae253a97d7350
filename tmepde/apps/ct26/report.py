"""Markdown report, JSON summary and fitted run config of the CT26 population fit."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np

from .data import FLOOR_MM3, IL12_ARM, PBS_ARM
from .fitting import CONTROLLED_MM3, PSEUDO, parameter_values
from .model import RHO0, radius_um

Z95 = 1.959963984540054   # standard normal 97.5 % quantile


def plausible_range(name: str, s) -> tuple[float, float] | None:
    """The documented plausible range of a parameter (tmepde.models.tme_parameters); for
    ``v0_mm3`` the range of the first measured volumes."""
    from tmepde.models.tme_parameters import PARAMETERS

    if name == "v0_mm3":
        first = np.concatenate([s.arms[a].volumes[:, 0] for a in (PBS_ARM, IL12_ARM)])
        return float(np.nanmin(first)), float(np.nanmax(first))
    if name in PARAMETERS:
        return float(PARAMETERS[name][2]), float(PARAMETERS[name][3])
    return None


def _interval(lo, hi):
    fmt = lambda b: "–" if b is None else f"{math.exp(b):.3g}"   # noqa: E731
    return f"[{fmt(lo)}, {fmt(hi)}]"


def report(out: dict) -> str:
    s, res = out["setup"], out["fit"]
    values = parameter_values(s, res)
    end = s.data.y.shape[1] - 1
    end_day = s.day0 + end
    n_pbs = s.arm_of.count(PBS_ARM)
    n_il = s.arm_of.count(IL12_ARM)
    settings = out["settings"]
    lines = [
        f"# CT26 population fit (`tmepde fit configs/fit/ct26.toml{' --quick' if out['quick'] else ''}`)",
        "",
        "Nonlinear mixed-effects fit (FOCE Laplace marginal likelihood, `tmepde.fit.population_fit`) of",
        f"{int(s.data.observed.sum())} caliper volumes of {n_pbs} PBS and {n_il} {IL12_ARM} mice, with "
        f"{int(s.data.censored.sum())} right-censored points",
        "(a mouse that left the study with a large tumor: at its arm's next measurement the volume exceeds",
        "its last one). Residual model: log(V + "
        f"{FLOOR_MM3:g} mm³) ~ N(μ, σ²). Model: the **well-mixed reduction** of the TME",
        "model (`tmepde.apps.ct26.model`: its own reaction terms for tumor, CTL, IFN-γ, IL-12 and the IL-12",
        "depot; the other species frozen at the initial infiltrate), because the spherical model is too slow",
        f"for a population fit on 2 CPU cores. dt {settings['dt']:g} h; the IL-12 arm gets "
        f"3 intratumoral IL-12 doses of `il12_dose_ng`.",
        f"Wall time: fit {out['wall_fit_s']:.0f} s, profiles {out['wall_profile_s']:.0f} s, total "
        f"{out.get('wall_s', float('nan')):.0f} s (compile included). −log L = {res.nll:.2f} after "
        f"{res.n_steps} BFGS steps.",
        "",
        "## Fixed effects (typical animal) and their uncertainty",
        "",
        "| parameter | value | Wald 95 % (observed information) | profile-likelihood 95 % | plausible range | flag |",
        "|---|---|---|---|---|---|",
    ]
    for j, n in enumerate(s.names):
        se = res.std_error[j]
        wald = _interval(res.theta[j] - Z95 * se, res.theta[j] + Z95 * se)
        prof = _interval(*out["profiles"][n][2])
        rng = plausible_range(n, s)
        flag = ""
        if rng is not None and not rng[0] <= values[n] <= rng[1]:
            flag = "**outside**"
        rtxt = "–" if rng is None else f"{rng[0]:.3g}–{rng[1]:.3g}"
        lines.append(f"| `{n}` | {values[n]:.4g} | {wald} | {prof} | {rtxt} | {flag} |")
    lines += [
        "",
        "Profile: the other parameters re-optimised at θ̂ ± "
        + ", ".join(f"{abs(o):g}" for o in settings["profile_offsets"] if o > 0)
        + " Wald SE; '–' = the deviance stays below 3.84 on the grid (the likelihood is flatter than",
        "the Wald interval says on that side). 'outside' = the fitted value leaves the documented",
        "plausible range (docs/model.md; v0: the measured first volumes).",
        *(["", f"**Not converged**: the profile found −log L lower by {-min(min(v[1]) for v in out['profiles'].values()) / 2:.3g} "
            "than the fit (raise fit.max_steps; --quick stops early by design)."]
          if min(min(v[1]) for v in out["profiles"].values()) < -0.02 else []),
        "",
        "| random effect (log scale) | ω (s.d.) | SE of log ω |",
        "|---|---|---|",
    ]
    p = len(s.names)
    for k, n in enumerate(s.re_names):
        lines.append(f"| `{n}` | {res.omega[k]:.3g} | {res.std_error[p + k]:.2g} |")
    lines += [
        f"| residual σ (log volume) | {res.sigma:.3g} | {res.std_error[-1]:.2g} |",
        "",
        "## Goodness of fit",
        "",
        f"- log-residual s.d., individual predictions (η̂): **{out['sd_individual']:.3f}** (goal ≤ 0.3)",
        f"- log-residual s.d., population predictions (η = 0): **{out['sd_population']:.3f}** (goal ≤ 0.6)",
    ]
    for arm in (PBS_ARM, IL12_ARM):
        v = out["vpc"][arm]
        lines.append(f"- VPC {arm}: data median inside the model's 90 % prediction band on "
                     f"{v['median_inside']:.0%} of measurement days")
    ratio = math.exp(out["pop_log_ratio_end"])
    lines += [
        "",
        "## Treatment effect",
        "",
        f"Typical animal (η = 0) on day {end_day}: PBS {math.exp(out['vpc'][PBS_ARM]['pop'][end]) - FLOOR_MM3:.4g} mm³, "
        f"{IL12_ARM} {math.exp(out['vpc'][IL12_ARM]['pop'][end]) - FLOOR_MM3:.4g} mm³ "
        f"(ratio of V + {FLOOR_MM3:g} mm³: {ratio:.3g}).",
        "",
        f"Per animal of the {IL12_ARM} arm, fitted volume on day {end_day} with its own random effects, and",
        f"the same animal without IL-12 (counterfactual); regressing = below {CONTROLLED_MM3:g} mm³ on day {end_day}",
        "(data: measured to the last day and below it).",
        "",
        "| mouse | η (" + ", ".join(s.re_names) + ") | V fit | phenotype (fit) | phenotype (data) | V without IL-12 | phenotype without IL-12 |",
        "|---|---|---|---|---|---|---|",
    ]
    cf = out["counterfactual"]
    for c in cf:
        lines.append(f"| {c['mouse']} | " + ", ".join(f"{e:+.2f}" for e in c["eta"])
                     + f" | {c['v_end']:.3g} | {c['phenotype']} | {c['data_phenotype']} | "
                     f"{c['v_end_no_il12']:.3g} | {c['phenotype_no_il12']} |")
    reg = [c for c in cf if c["phenotype"] == "regressing"]
    flipped = [c for c in reg if c["phenotype_no_il12"] == "escaping"]
    lines += [
        "",
        f"Regressing (fit): **{len(reg)} of {len(cf)}**; data: {sum(c['data_phenotype'] == 'regressing' for c in cf)} "
        f"of {len(cf)}; phenotype agreement {sum(c['phenotype'] == c['data_phenotype'] for c in cf)}/{len(cf)}. "
        f"Without IL-12, **{len(flipped)} of {len(reg)}** fitted regressors grow.",
        "",
        f"Figure: {out.get('figure', 'the _fit.png next to this file')} (top: VPC per arm; bottom: "
        "individual fits, dotted = without IL-12, △ = censored). Numbers: the _fit.json next to it.",
        "",
    ]
    return "\n".join(lines)


def write_json(out: dict, path: Path) -> Path:
    s, res = out["setup"], out["fit"]
    doc = {
        "fixed_effects": parameter_values(s, res),
        "theta_log": dict(zip(s.names, map(float, res.theta))),
        "std_error_log": dict(zip(s.names, map(float, res.std_error[:len(s.names)]))),
        "omega": dict(zip(s.re_names, map(float, res.omega))),
        "sigma": res.sigma, "neg_log_likelihood": res.nll, "bfgs_steps": res.n_steps,
        "profile_interval_log": {n: list(v[2]) for n, v in out["profiles"].items()},
        "sd_individual": out["sd_individual"], "sd_population": out["sd_population"],
        "counterfactual": out["counterfactual"], "quick": out["quick"],
        "wall_fit_s": out["wall_fit_s"], "wall_profile_s": out["wall_profile_s"],
    }
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def write_fitted_toml(config, out: dict, path: Path) -> Path:
    """The config with the typical animal's fitted values and without [fit]: ``tmepde run`` runs
    the spherical IL-12 arm with them (initial ball of cell volume v0 at density RHO0)."""
    import tomli_w

    from tmepde.config import loads_config

    values = parameter_values(out["setup"], out["fit"])
    data = copy.deepcopy(config.data)
    data.pop("fit", None)
    mp = data["model"].setdefault("params", {})
    for k, v in values.items():
        if k not in PSEUDO:
            mp[k] = float(v)
    n_inj = len(np.atleast_1d(mp.get("it_il12_amounts", [0.0] * 3)))
    mp["it_il12_amounts"] = [float(values.get("il12_dose_ng", out["setup"].dose_ng))] * n_inj
    v0 = values.get("v0_mm3", float(out["setup"].base["v0_mm3"]))
    for name, frac in (("tumor", 0.98), ("stem", 0.02)):
        data["initial"][name] = [{"type": "disk", "center": [0.0], "radius": round(radius_um(v0, RHO0), 1),
                                  "value": RHO0 * frac}]
    data["output"]["path"] = "ct26_fitted.h5"
    text = ("# Fitted by `tmepde fit` (population fit, well-mixed reduction; typical animal): the\n"
            "# rVSV-mIL12-mGMCSF arm on the spherical grid; `tmepde run` runs it.\n" + tomli_w.dumps(data))
    loads_config(text, base_dir=config.base_dir)  # must load back as a valid run config
    path.write_text(text, encoding="utf-8")
    return path
