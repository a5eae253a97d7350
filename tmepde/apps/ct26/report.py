"""Markdown report, JSON summary and fitted run config of the CT26 population fit."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Mapping

import numpy as np

from .data import FLOOR_MM3, IL12_ARM, PBS_ARM
from .fitting import (CONTROLLED_MM3, PSEUDO, parameter_values, responder_classes, u_names,
                      u_value)
from .model import IL12_AMOUNTS, RHO0, radius_um

Z95 = 1.959963984540054   # standard normal 97.5 % quantile
NOT_IDENTIFIED = "not identified"   # the observed information is singular along the coordinate


def plausible_range(name: str, s) -> tuple[float, float] | None:
    """The documented plausible range of a parameter (tmepde.models.tme_parameters); for
    ``v0_mm3`` the range of the first measured volumes."""
    from tmepde.models.tme_parameters import PARAMETERS

    from .model import MEMORY_PARAMS

    if name in ("il12_response", "responder_fraction"):
        return 0.0, 1.0
    if name in MEMORY_PARAMS:
        return MEMORY_PARAMS[name][1:]
    if name == "v0_mm3":
        first = np.concatenate([s.arms[a].volumes[:, 0] for a in (PBS_ARM, IL12_ARM)])
        return float(np.nanmin(first)), float(np.nanmax(first))
    if name in PARAMETERS:
        return float(PARAMETERS[name][2]), float(PARAMETERS[name][3])
    return None


def _interval(lo, hi, to_value=math.exp):
    fmt = lambda b: "–" if b is None else f"{float(to_value(b)):.3g}"   # noqa: E731
    return f"[{fmt(lo)}, {fmt(hi)}]"


def comparison_rows(out: dict) -> list[dict]:
    """Per fitted coordinate of [θ, log ω, log σ]: estimate and 95 % intervals (model units)
    from the observed information (Wald), the profile likelihood and the NUTS posterior."""
    s, res, post = out["setup"], out["fit"], out.get("posterior")
    rows = []
    lo_p, hi_p = post.interval(0.95) if post is not None else (None, None)
    for j, n in enumerate(u_names(s)):
        val = lambda z, j=j: float(u_value(s, j, z))   # noqa: E731
        se = res.std_error[j]
        prof = out["profiles"].get(n, (None, None, (None, None)))[2]
        row = dict(name=n, estimate=val(res.u[j]), wald=[val(res.u[j] - Z95 * se), val(res.u[j] + Z95 * se)],
                   profile=[None if b is None else val(b) for b in prof], identified=True)
        if not res.identified_mask[j]:      # no finite Wald interval, not a zero-width one
            row.update(wald=[None, None], identified=False)
        if not res.free_mask[j]:
            row.update(wald=[None, None], fixed=True)
        if post is not None and n in post.names:
            i = post.names.index(n)
            x = post.flat[:, i]
            row.update(posterior_median=val(np.median(x)), posterior=[val(lo_p[i]), val(hi_p[i])],
                       r_hat=float(post.r_hat[i]), ess=float(post.ess[i]))
        rows.append(row)
    return rows


def population_floor(s, classes) -> dict:
    """Lowest population log-residual s.d. any model can reach: {"all", PBS_ARM, IL12_ARM: s.d.}.

    A population prediction (η = 0) is the same for every animal of a group, the arm and, in a
    dosed arm with a mixture, the animal's class (``classes`` (N,): 1 responder, 0 not), so per
    day no prediction beats the group's mean of the quantified log(V + floor); the residuals
    about those means give the floor (same volumes and s.d. as ``sd_population``)."""
    obs = s.data.observed > 0
    dosed = np.asarray(s.data.covariates) > 0
    group = [(a, float(c) if d else 0.0) for a, c, d in zip(s.arm_of, np.asarray(classes), dosed)]
    resid = np.zeros_like(s.data.y)
    for g in set(group):
        rows = np.array([x == g for x in group])
        o = obs[rows]
        mean = np.where(o, s.data.y[rows], 0.0).sum(axis=0) / np.maximum(o.sum(axis=0), 1)
        resid[rows] = s.data.y[rows] - mean
    arm = np.array(s.arm_of)[:, None]
    return {"all": float(np.std(resid[obs])),
            **{a: float(np.std(resid[obs & (arm == a)])) for a in (PBS_ARM, IL12_ARM)}}


def report(out: dict) -> str:
    s, res = out["setup"], out["fit"]
    values = parameter_values(s, res)
    end = s.data.y.shape[1] - 1
    end_day = s.day0 + end
    n_pbs = s.arm_of.count(PBS_ARM)
    n_il = s.arm_of.count(IL12_ARM)
    settings = out["settings"]
    floor = population_floor(s, responder_classes(s, res))
    lines = [
        f"# CT26 population fit (`{command(out)}`)",
        "",
        "Nonlinear mixed-effects fit (FOCE Laplace marginal likelihood, `tmepde.fit.population_fit`) of",
        f"{int(s.data.observed.sum())} quantified caliper volumes of {n_pbs} PBS and {n_il} {IL12_ARM} mice, with "
        f"{int((s.data.censored > 0).sum())} right-censored points",
        "(a mouse that left the study with a large tumor: at its arm's next measurement the volume exceeds",
        "its last one)"
        + (f" and {int((s.data.censored < 0).sum())} zero readings left-censored below the limit of quantification "
           f"{s.lloq_mm3:g} mm³ (the smallest non-zero reading unless fit.lloq_mm3 is set; likelihood "
           "Φ((log LOQ − μ)/σ), Beal 2001 method M3)" if s.lloq_mm3 is not None else "") + ". Residual model: log(V + "
        f"{FLOOR_MM3:g} mm³) ~ N(μ, σ²). Model: the **well-mixed reduction** of the TME",
        "model (`tmepde.apps.ct26.model`: its own reaction terms for tumor, CTL, IFN-γ, IL-12 and the IL-12",
        "depot; the other species frozen at the initial infiltrate), because the spherical model is too slow",
        f"for a population fit on 2 CPU cores. dt {settings['dt']:g} h; the IL-12 arm gets "
        "3 intratumoral IL-12 doses of `il12_dose_ng`"
        + (" times the animal's response fraction `il12_response` (logit-normal across animals when a "
           "random effect: an animal regresses because it responds to IL-12, not because of its own kill "
           "rate)." if "il12_response" in s.names else ".")
        + (" Responders and non-responders: a two-class mixture, a responder gets the IL-12 dose's effect, a "
           "non-responder none, the fraction of responders `responder_fraction` is fitted and each animal's "
           "class is summed out of the likelihood (Laplace per class; in NUTS the potential sums it out, so "
           "no discrete parameter is sampled)." if s.mixture else "")
        + (" IL-12-primed effector pool (`kill_memory`, `memory_delay_h`, `memory_ks_mm3`; the reduction only): "
           "IL-12 primes CTLs that expand after a lag into a pool E (0–1) that persists after the doses and "
           + ("kills a fraction `kill_memory` × E × V / (V + `memory_ks_mm3`) of the tumor per hour (its activity "
              "needs antigen; kill law `pool = \"antigen\"`: the plateau it holds a tumor on is stable)."
              if s.model.pool == "antigen" else
              "kills `kill_memory` × E / (V + `memory_ks_mm3`) of the tumor per hour (a fixed volume per hour; "
              "kill law `pool = \"ratio\"`: the plateau is unstable).") if "kill_memory" in s.names else ""),
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
        to_value = lambda z, j=j: u_value(s, j, z)   # noqa: E731
        wald = (_interval(res.theta[j] - Z95 * se, res.theta[j] + Z95 * se, to_value)
                if res.identified_mask[j] else NOT_IDENTIFIED)
        prof = _interval(*out["profiles"][n][2], to_value)
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
        "| random effect (fitted scale: log; logit for `il12_response`) | ω (s.d.) | SE of log ω |",
        "|---|---|---|",
    ]
    p = len(s.names)
    for k, n in enumerate(s.re_names):
        lines.append(f"| `{n}` | {res.omega[k]:.3g} | {_se_text(res, p + k)} |")
    lines += [
        f"| residual σ (log volume) | {res.sigma:.3g} | {_se_text(res, -1)} |",
        "",
        *_uncertainty_section(out),
        "## Goodness of fit",
        "",
        f"- log-residual s.d. over the {int(s.data.observed.sum())} quantified volumes, individual predictions (η̂"
        + (", animal's most probable class" if s.mixture else "") + f"): **{out['sd_individual']:.3f}** (goal ≤ 0.3)",
        "- log-residual s.d. over the quantified volumes, population predictions (η = 0"
        + (", animal's most probable class" if s.mixture else "") + f"): **{out['sd_population']:.3f}** (goal ≤ 0.6)",
        "- floor of that population s.d.: every animal predicted by the per-day mean of its group (arm"
        + (", and in the IL-12 arm its most probable class" if s.mixture else "") + ") leaves "
        + "**{all:.3f}** ({p} arm {pbs:.3f}, {il} arm {il12:.3f}); a population prediction is one curve per "
          "group, so no model does better under this definition".format(
              p=PBS_ARM, il=IL12_ARM, pbs=floor[PBS_ARM], il12=floor[IL12_ARM], all=floor["all"]),
        *_censored_lines(out),
        "- where the individual misfit sits (s.d. of individual residuals): "
        + "; ".join(f"{k} {v:.3f}" for k, v in out["sd_breakdown"].items())
        + f". Model-free reference: a cubic in time fitted to each animal alone leaves "
        f"{out['sd_reference']:.3f} (degrees of freedom removed), the caliper noise around a smooth trend.",
    ]
    for arm in (PBS_ARM, IL12_ARM):
        v = out["vpc"][arm]
        lines.append(f"- VPC {arm}: data 5 / 50 / 95 % inside the 90 % prediction band on "
                     + " / ".join(f"{x:.0%}" for x in v["quantiles_inside"]) + " of measurement days"
                     + (" (posterior predictive band: "
                        + " / ".join(f"{x:.0%}" for x in out["post_inside"][arm]) + ")" if out.get("post_inside") else ""))
    ratio = math.exp(out["pop_log_ratio_end"])
    lines += [
        "",
        "## Treatment effect",
        "",
        f"Typical animal (η = 0) on day {end_day}: PBS {math.exp(out['vpc'][PBS_ARM]['pop'][end]) - FLOOR_MM3:.4g} mm³, "
        f"{IL12_ARM} {math.exp(out['vpc'][IL12_ARM]['pop'][end]) - FLOOR_MM3:.4g} mm³"
        + (" (responder)" if s.mixture else "")
        + f" (ratio of V + {FLOOR_MM3:g} mm³: {ratio:.3g})"
        + (f"; a non-responder {math.exp(out['vpc'][IL12_ARM]['pop_nonresponder'][end]) - FLOOR_MM3:.4g} mm³. "
           f"Fitted fraction of responders {out['responder_fraction']:.3g}. Arm medians of the VPC (the mixture "
           f"included): ratio {math.exp(out['median_log_ratio_end']):.3g}." if s.mixture else "."),
        "",
        f"Per animal of the {IL12_ARM} arm, fitted volume on day {end_day} with its own random effects, and",
        f"the same animal without IL-12 (counterfactual); regressing = below {CONTROLLED_MM3:g} mm³ on day {end_day}",
        "(data: measured to the last day and below it).",
        "",
        "| mouse | η (" + ", ".join(s.re_names) + ") |" + (" P(responder) |" if s.mixture else "")
        + " V fit | phenotype (fit) | phenotype (data) | V without IL-12 | phenotype without IL-12 |",
        "|---|---|---|---|---|---|---|" + ("---|" if s.mixture else ""),
    ]
    cf = out["counterfactual"]
    for c in cf:
        lines.append(f"| {c['mouse']} | " + ", ".join(f"{e:+.2f}" for e in c["eta"])
                     + (f" | {c['p_responder']:.2f}" if s.mixture else "")
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
        *_attribution_section(out),
        f"Figure: {out.get('figure', 'the _fit.png next to this file')} (top: VPC per arm; bottom: "
        "individual fits, dotted = without IL-12, △ = right-, ▽ = left-censored). Numbers: the _fit.json next to it.",
        "",
    ]
    return "\n".join(lines)


def _censored_lines(out: dict) -> list[str]:
    """The left-censored zero readings against the individual predictions (not in the s.d.)."""
    c = out.get("censored_fit")
    if not c:
        return []
    return [f"- {c['n']} zero readings, left-censored below {c['lloq_mm3']:g} mm³ (not in the s.d. above): the "
            f"individual prediction lies below the limit at {c['below']} of them; model probability of a reading "
            f"below the limit there: mean {c['mean_p_below']:.2f}, lowest {c['min_p_below']:.2f}."]


def _se_text(res, j: int) -> str:
    """Standard error of coordinate ``j`` for the report: 'fixed', 'not identified' or a number."""
    if not res.free_mask[j]:
        return "fixed"
    return f"{res.std_error[j]:.2g}" if res.identified_mask[j] else NOT_IDENTIFIED


def command(out: dict) -> str:
    """The command line that makes this report (for the committed results: ``-o results/ct26``)."""
    return ("tmepde fit configs/fit/ct26.toml" + (" --quick" if out["quick"] else "")
            + (" --nuts" if out.get("posterior") is not None else "") + " -o results/ct26")


def _fmt_iv(iv):
    return "[" + ", ".join("–" if b is None else f"{b:.3g}" for b in iv) + "]"


def _class_text(mode) -> str:
    """How the report's NUTS summed each IL-12 animal's class out."""
    if mode == "aligned":
        return ("Each IL-12 animal has one sampled random effect ζ, mapped per class (responder, "
                "non-responder) onto that class's mode, which follows the population coordinates u = [θ, log ω, "
                "log σ] to first order, η̂_c + G_c (u − û) + L_c ζ (G_c = dη̂_c/du by the implicit function "
                "theorem at the Laplace fit; L_c L_c' the Gauss–Newton covariance there, 1.5² x), and the class "
                "summed out with the "
                "Jacobian |L_c|: a class-wise change of variables of (class, η), so the posterior of θ, ω, σ and "
                "of (class, η) is exactly the model's, while both classes' modes sit at ζ ≈ 0 and an animal "
                "that both classes explain moves between them continuously (tmepde.fit.posterior_nuts, "
                "class_effects \"aligned\"); a PBS animal, whose prediction does not depend on the class, has "
                "one non-centred random effect. ")
    if mode == "shared":
        return "Each animal has one random effect for both classes, the class summed out. "
    return ("Each IL-12 animal has one random effect per class (responder, non-responder), the class "
            "summed out with Carlin–Chib (1995) pseudo-priors (Gaussians at the fit's per-class modes, "
            "1.5 x the Laplace s.d.) for the class it is not in: an exact augmentation, the posterior of "
            "θ, ω, σ and of (class, η) unchanged; a PBS animal, whose prediction does not "
            "depend on the class, has one. ")


def _metric_text(metric) -> str:
    return {"laplace": "dense mass matrix fixed at the inverse Hessian of the posterior at the start "
                       "(central differences of its gradient; only the step size adapted in warm-up)",
            "laplace-adapt": "dense mass matrix adapted in warm-up from the inverse Hessian of the posterior "
                             "at the start"}.get(metric, "dense mass matrix adapted in warm-up")


def _uncertainty_section(out: dict) -> list[str]:
    post = out.get("posterior")
    fc = out["config"].data["fit"]
    rows = comparison_rows(out)
    lines = ["## Uncertainty: Laplace, profile likelihood and posterior", ""]
    if post is None:
        lines += ["No posterior sample (`fit.posterior = \"laplace\"`; `tmepde fit --nuts` adds one).", ""]
    else:
        lines += [
            f"NUTS (`tmepde.fit.posterior_nuts`, numpyro): {post.samples.shape[0]} chains x {post.samples.shape[1]} "
            f"draws after {post.extra['warmup']} warm-up steps, "
            f"joint over θ, log ω, log σ and all {post.extra['eta'].shape[2]} x {post.extra['eta'].shape[3]} "
            "random effects, exact likelihood (no Laplace). "
            + (_class_text(post.extra.get("class_effects")) if "membership" in post.extra else "")
            + (f"{', '.join(post.extra['centred'])} (ω fixed) sampled centred, the others non-centred. "
               if post.extra.get("centred") else "Non-centred. ")
            + "Gradients: each animal's prediction and its Jacobian in (θ, η) by forward-mode AD, "
            f"then the chain rule; {_metric_text(fc.get('nuts_metric', 'adapt'))}, tree depth "
            f"≤ {post.extra['max_tree_depth']}, target acceptance {fc.get('nuts_target_accept', 0.8):g}. "
            + ("**Not converged** (goal R-hat ≤ 1.01): its intervals are indicative only. "
               if post.r_hat.max() > 1.01 or post.extra["r_hat_eta_max"] > 1.01 else "")
            + f"Max R-hat **{post.r_hat.max():.3f}** over θ, ω, σ; per animal, over its η (of the class drawn "
            f"in each draw) and its P(responder): **{post.extra['r_hat_eta_max']:.3f}** "
            + (f"(η {np.nanmax(post.extra['r_hat_eta']):.3f}, P(responder) "
               f"{np.nanmax(post.extra['r_hat_membership']):.3f}, every sampled coordinate "
               f"{post.extra['r_hat_xi_max']:.3f})" if "r_hat_membership" in post.extra else "")
            + f"; min ESS **{post.ess.min():.0f}** (per animal: {post.extra['ess_eta_min']:.0f}), "
            f"{post.divergences} divergent transitions, mean acceptance "
            f"{post.accept:.2f}, {out.get('wall_nuts_s', post.wall_s):.0f} s. Priors: the fit's on θ "
            "(normal, s.d. `fit.prior_sd` on the fitted scale); log ω and log σ normal, s.d. 1, at the "
            "fit's starting values.",
            "",
        ]
    head = "| parameter | estimate | Laplace / Wald 95 % | profile 95 % |"
    sep = "|---|---|---|---|"
    if post is not None:
        head += " posterior median | posterior 95 % | R-hat | ESS |"
        sep += "---|---|---|---|"
    lines += [head, sep]
    for r in rows:
        wald = _fmt_iv(r["wald"]) if r["identified"] else NOT_IDENTIFIED
        line = f"| `{r['name']}` | {r['estimate']:.4g} | {wald} | {_fmt_iv(r['profile'])} |"
        if r.get("fixed"):
            line = f"| `{r['name']}` | {r['estimate']:.4g} (fixed: fit.omega_fixed) | – | – |" + (" – | – | – | – |" if post is not None else "")
        elif post is not None:
            line += f" {r['posterior_median']:.4g} | {_fmt_iv(r['posterior'])} | {r['r_hat']:.3f} | {r['ess']:.0f} |"
        lines.append(line)
    lines += ["", "Model units (ω: s.d. of the random effect on its fitted scale, log or logit; σ: of log "
              "volume). '–': the profile did not reach the 95 % deviance on that side of its grid. "
              f"'{NOT_IDENTIFIED}': the observed information is singular or not positive along that "
              "coordinate (tmepde.fit.information_covariance), so there is no Wald interval.", ""]
    return lines


def _attribution_section(out: dict) -> list[str]:
    pa = out.get("post_animals")
    if not pa:
        return []
    mix = pa[0].get("p_responder") is not None
    lines = ["Posterior attribution: over the NUTS draws (each with the animal's own sampled random "
             "effects" + (" and a class drawn from its class probabilities" if mix else "")
             + "), the probability that the animal regresses with IL-12, that it escapes without it, "
             "and of escaping without IL-12 given regression with it.", "",
             "| mouse |" + (" P(responder) (R-hat, ESS) |" if mix else "") + " P(regressing) | P(escaping without IL-12) | "
             "P(escape without \\| regress with) | V day-end 5–95 % | V without IL-12 5–95 % |",
             "|---|---|---|---|---|---|" + ("---|" if mix else "")]
    for a in pa:
        lines.append(f"| {a['mouse']} |" + (f" {a['p_responder']:.2f} ({a['r_hat_p_responder']:.3f}, "
                                            f"{a['ess_p_responder']:.0f}) |" if mix else "")
                     + f" {a['p_regressing']:.2f} | {a['p_escape_without_il12']:.2f} | "
                     f"{a['p_attributed']:.2f} | {a['v_end_q'][0]:.3g}–{a['v_end_q'][2]:.3g} | "
                     f"{a['v_end_no_il12_q'][0]:.3g}–{a['v_end_no_il12_q'][2]:.3g} |")
    return lines + [""]


def write_json(out: dict, path: Path) -> Path:
    s, res = out["setup"], out["fit"]
    doc = {
        "fixed_effects": parameter_values(s, res),
        "theta_log": dict(zip(s.names, map(float, res.theta))),
        "pool": s.model.pool,     # kill law of the primed pool: the meaning of kill_memory
        # null: not identified (singular observed information), not an infinite number
        "std_error_log": {n: float(res.std_error[j]) if res.identified_mask[j] else None
                          for j, n in enumerate(s.names)},
        "omega": dict(zip(s.re_names, map(float, res.omega))),
        "sigma": res.sigma, "neg_log_likelihood": res.nll, "bfgs_steps": res.n_steps,
        "profile_interval_fitted_scale": {n: list(v[2]) for n, v in out["profiles"].items()},
        "uncertainty": comparison_rows(out),
        "posterior_attribution": out.get("post_animals"),
        "vpc_quantiles_inside": {a: v["quantiles_inside"] for a, v in out["vpc"].items()},
        "command": command(out),
        "posterior_vpc_quantiles_inside": out.get("post_inside"),
        "nuts": None if out.get("posterior") is None else dict(
            chains=int(out["posterior"].samples.shape[0]), draws=int(out["posterior"].samples.shape[1]),
            max_r_hat=float(out["posterior"].r_hat.max()), min_ess=float(out["posterior"].ess.min()),
            r_hat_eta_max=out["posterior"].extra["r_hat_eta_max"], ess_eta_min=out["posterior"].extra["ess_eta_min"],
            **{key: np.asarray(out["posterior"].extra[key]).tolist() for key in
               ("r_hat_eta", "ess_eta", "r_hat_membership", "ess_membership", "r_hat_xi_max", "ess_xi_min",
                "centred") if key in out["posterior"].extra},
            divergences=int(out["posterior"].divergences), accept=float(out["posterior"].accept),
            wall_s=float(out.get("wall_nuts_s", out["posterior"].wall_s))),
        "sd_individual": out["sd_individual"], "sd_population": out["sd_population"],
        "sd_population_floor": population_floor(s, responder_classes(s, res)),
        "sd_individual_breakdown": out["sd_breakdown"], "sd_reference_cubic_per_animal": out["sd_reference"],
        "sd_over": "quantified volumes (zero readings left-censored)" if s.lloq_mm3 is not None else "all volumes",
        "left_censored": out.get("censored_fit"), "responder_fraction": out.get("responder_fraction"),
        "median_log_ratio_end": out.get("median_log_ratio_end"),
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
    n_inj = len(np.atleast_1d(mp.get(IL12_AMOUNTS, [0.0] * 3)))
    # the typical animal's effective dose: dose scale x response fraction (η = 0)
    mp[IL12_AMOUNTS] = [float(values.get("il12_dose_ng", out["setup"].dose_ng))
                             * float(values.get("il12_response", 1.0))] * n_inj
    v0 = values.get("v0_mm3", float(out["setup"].base["v0_mm3"]))
    for name, frac in (("tumor", 0.98), ("stem", 0.02)):
        data["initial"][name] = [{"type": "disk", "center": [0.0], "radius": round(radius_um(v0, RHO0), 1),
                                  "value": RHO0 * frac}]
    data["output"]["path"] = "ct26_fitted.h5"
    text = ("# Fitted by `tmepde fit` (population fit, well-mixed reduction; typical animal): the\n"
            "# rVSV-mIL12-mGMCSF arm on the spherical grid; `tmepde run` runs it.\n"
            + _reduction_only_note(values) + tomli_w.dumps(data))
    loads_config(text, base_dir=config.base_dir)  # must load back as a valid run config
    path.write_text(text, encoding="utf-8")
    return path


def _reduction_only_note(values: Mapping) -> str:
    """Header lines naming the fitted primed-effector pool, which the spatial model lacks: a
    run of the fitted config has no such kill, so it does not reproduce a responder's late
    regression (empty when the pool was not fitted)."""
    from .model import MEMORY_PARAMS

    pool = {n: values[n] for n in MEMORY_PARAMS if n in values}
    if not pool:
        return ""
    listed = ", ".join(f"{n} = {v:.4g}" for n, v in pool.items())
    return ("# Fitted in the reduction only (IL-12-primed effector pool, tmepde.apps.ct26.model; not a\n"
            f"# species of the spatial model, so absent from this run):\n#   {listed}\n")


def write_fit_h5(out: dict, path: Path) -> Path:
    """The fit as a ``tmepde-fit`` HDF5 file (:func:`tmepde.summaries.write_fit`: ``tmepde info``
    lists it, ``tmepde plot`` draws it), plus ``/uncertainty`` (estimate and 95 % intervals per
    fitted coordinate: Wald, profile, posterior) and ``/posterior`` (NUTS draws, R-hat, ESS)."""
    import types

    import h5py

    from tmepde.summaries import write_fit

    s, res = out["setup"], out["fit"]
    days = s.day0 + np.arange(s.data.y.shape[1])
    vol = lambda lv: np.exp(np.asarray(lv)) - FLOOR_MM3   # noqa: E731
    il = [i for i, a in enumerate(s.arm_of) if a == IL12_ARM]
    post = out.get("posterior")
    eta_sd = (post.extra["eta"].reshape(-1, *post.extra["eta"].shape[2:]).std(axis=0) if post is not None
              else np.full(res.eta.shape, np.nan))
    cohort = types.SimpleNamespace(
        arm=IL12_ARM, curves=vol(out["ipred"][il]), mice=np.array([s.mouse_of[i] for i in il]),
        phenotype=[c["phenotype"] for c in out["counterfactual"]],
        data_phenotype=[c["data_phenotype"] for c in out["counterfactual"]],
        names=[f"eta_{n}" for n in s.re_names],
        values={f"eta_{n}": res.eta[il, k] for k, n in enumerate(s.re_names)},
        std_error={f"eta_{n}": eta_sd[il, k] for k, n in enumerate(s.re_names)})
    rows = comparison_rows(out)
    laplace = types.SimpleNamespace(
        names=[r["name"] for r in rows], values={r["name"]: r["estimate"] for r in rows},
        # model-unit s.e. by the delta method: half the Wald interval over 1.96 on the fitted scale
        std_error={r["name"]: 0.0 if r.get("fixed") else np.nan if not r["identified"]
                   else (r["wald"][1] - r["wald"][0]) / (2 * Z95) for r in rows},
        identifiable={r["name"]: bool(r["identified"]) for r in rows})
    stages = {"laplace": laplace}
    if post is not None:
        stages["posterior"] = types.SimpleNamespace(
            names=[r["name"] for r in rows if "posterior" in r],
            values={r["name"]: r["posterior_median"] for r in rows if "posterior" in r},
            std_error={r["name"]: (r["posterior"][1] - r["posterior"][0]) / (2 * Z95) for r in rows if "posterior" in r},
            identifiable={r["name"]: bool(r["r_hat"] <= 1.01) for r in rows if "posterior" in r})
    arms = {a: s.arms[a] for a in (PBS_ARM, IL12_ARM)}
    curves = {a: vol(out["vpc"][a]["pop"]) for a in (PBS_ARM, IL12_ARM)}
    toml_text = _config_toml(out["config"])
    write_fit(path, arms=arms, curves=curves, curve_days=days, cohort=cohort, stages=stages,
              config_toml=toml_text, floor_mm3=FLOOR_MM3, injection_days=[11.0, 14.0, 17.0])
    with h5py.File(path, "a") as f:
        f.attrs["neg_log_likelihood"] = float(res.nll)
        f.attrs["pool"] = s.model.pool  # kill law of the primed pool: the meaning of kill_memory
        f.attrs["command"] = command(out)
        g = f.create_group("uncertainty")
        g["names"] = np.array([r["name"] for r in rows], dtype=h5py.string_dtype())
        g["estimate"] = np.array([r["estimate"] for r in rows], float)
        g["wald95"] = np.array([[np.nan if b is None else b for b in r["wald"]] for r in rows], float)
        g["profile95"] = np.array([[np.nan if b is None else b for b in r["profile"]] for r in rows], float)
        if post is not None:
            g["posterior95"] = np.array([r.get("posterior", [np.nan, np.nan]) for r in rows], float)
            p = f.create_group("posterior")
            p["samples"] = post.samples           # (chains, draws, p) on the fitted scale
            p["names"] = np.array(post.names, dtype=h5py.string_dtype())
            p["r_hat"], p["ess"] = post.r_hat, post.ess
            p.attrs.update(divergences=post.divergences, accept=post.accept)
    return path


def _config_toml(config) -> str:
    import tomli_w

    return tomli_w.dumps(config.data)
