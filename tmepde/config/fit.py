"""``[fit]``: fitting a model to measured tumor volumes with ``tmepde fit`` (docs/fitting.md)."""

from __future__ import annotations

from typing import Mapping

from .schema import (NUMBER, NUMBER_LIST, INTEGER, OPTIONAL, STRING, STRING_LIST, ConfigError, Key, did_you_mean,
                     key_table, one_of, positive, resolve_keys)

__all__ = ["FIT", "FIT_PSEUDO", "check_param_names", "resolve_fit", "reference"]

# Fit-only pseudo-parameters of the CT26 example, not model parameters: initial tumor-cell
# volume (mm³), effective IL-12 per intratumoral injection (ng), the fraction of it an
# animal responds to (0..1, logit scale) and the fraction of animals that respond at all
# (0..1, logit scale; fitted: a responder / non-responder mixture), and the IL-12-primed
# effector pool of the CT26 reduction (kill capacity, 1/h or mm³/h by fit.pool, expansion lag h,
# half-saturation volume mm³; fitting kill_memory switches the pool on). Their meaning is defined by
# the CT26 fitting code that consumes them; this list only lets [fit] name them.
FIT_PSEUDO = ("v0_mm3", "il12_dose_ng", "il12_response", "responder_fraction",
              "kill_memory", "memory_delay_h", "memory_ks_mm3")
FIT = {
    "data": Key(STRING, OPTIONAL, "csv of measured volumes (columns arm, mouse, day, volume_mm3); "
                "absent = the packaged CT26 data set; relative to the config file", 'data = "volumes.csv"'),
    "growth_params": Key(STRING_LIST, ["growth_tumor", "v0_mm3"],
                         "fixed effects (population, log scale), growth part: model parameters or v0_mm3 "
                         "(initial tumor volume, mm³)", 'growth_params = ["growth_tumor", "v0_mm3"]'),
    "immune_params": Key(STRING_LIST, ["kill_cd8", "a6_il12_to_ifng"],
                         "fixed effects, immune / IL-12 part: model parameters or il12_dose_ng (effective "
                         "IL-12 per injection, ng)", 'immune_params = ["kill_cd8", "a6_il12_to_ifng"]'),
    "cohort_params": Key(STRING_LIST, ["v0_mm3", "kill_cd8"],
                         "per-animal random effects (log-normal around the fixed effect; each must be a "
                         "fixed effect)", 'cohort_params = ["v0_mm3", "kill_cd8"]'),
    "omega_start": Key(NUMBER_LIST, OPTIONAL, "starting s.d. of each random effect (fitted scale), in the "
                       "order of cohort_params; absent = 0.3 (2 for il12_response)", "omega_start = [0.3, 0.25, 2.0]"),
    "omega_fixed": Key(STRING_LIST, [], "cohort_params whose random-effect s.d. stays at its omega_start (a spread "
                       "known independently, e.g. from the untreated arm), not fitted", 'omega_fixed = ["growth_tumor"]'),
    "prior_sd": Key(NUMBER, 1.0, "s.d. of a weak Gaussian prior on each fixed effect in log space (1 = a "
                    "factor e), centred on the config's value", "prior_sd = 1.0", positive("")),
    "zeros": Key(STRING, "censored", "zero readings (no palpable tumor): \"censored\" = below the limit of "
                 "quantification lloq_mm3 (left-censored, Beal 2001 M3), \"observed\" = a measured 0 mm³",
                 'zeros = "censored"', one_of(["censored", "observed"])),
    "lloq_mm3": Key(NUMBER, OPTIONAL, "caliper limit of quantification (mm³) of censored zero readings; absent = "
                    "the smallest non-zero reading of the fitted arms", "lloq_mm3 = 9.36", positive("")),
    "sigma": Key(NUMBER, 0.3, "starting s.d. of log-volume residuals (fitted)", "sigma = 0.3", positive("")),
    "max_steps": Key(INTEGER, 40, "outer BFGS steps of the population fit", "max_steps = 40", positive("")),
    "polish_steps": Key(INTEGER, 20, "BFGS steps with finite-difference gradients of -log L after the analytic "
                        "ones stop (the analytic gradient holds the inner modes fixed in the Laplace log-determinant); "
                        "the observed information then comes from those gradients too; 0 = none",
                        "polish_steps = 20"),
    "start_from": Key(STRING, OPTIONAL, "an earlier fit's JSON (<output>_fit.json) whose optimum starts the "
                      "optimiser (the priors stay centred on the config's values); relative to the config file",
                      'start_from = "../../results/ct26_fit.json"'),
    "posterior": Key(STRING, "laplace", "uncertainty beyond the Laplace (observed-information) and profile "
                     "intervals: \"laplace\" = none, \"nuts\" = also sample the joint posterior (fixed effects, ω, σ, "
                     "every animal's random effects) by NUTS (needs numpyro; `tmepde fit --nuts` sets it)",
                     'posterior = "nuts"', one_of(["laplace", "nuts"])),
    "nuts_chains": Key(INTEGER, 4, "NUTS chains (>= 2, for R-hat)", "nuts_chains = 4", positive("")),
    "nuts_warmup": Key(INTEGER, 200, "NUTS warm-up (adaptation) steps per chain", "nuts_warmup = 200", positive("")),
    "nuts_samples": Key(INTEGER, 200, "NUTS draws kept per chain", "nuts_samples = 200", positive("")),
    "nuts_class_effects": Key(STRING, "aligned", "how NUTS sums each treated animal's responder class out: "
                              "\"aligned\" = one random effect per animal mapped per class onto that class's mode "
                              "(exact), \"per-class\" = one per class with Carlin-Chib pseudo-priors, \"shared\" = one "
                              "random effect for both classes", 'nuts_class_effects = "aligned"',
                              one_of(["aligned", "per-class", "shared"])),
    "nuts_metric": Key(STRING, "adapt", "NUTS mass matrix: \"adapt\" = adapted in warm-up, \"laplace\" = the inverse "
                       "Hessian of the posterior at the fit (held; only the step size adapts), \"laplace-adapt\" = "
                       "that as the adaptation's start", 'nuts_metric = "laplace"',
                       one_of(["adapt", "laplace", "laplace-adapt"])),
    "nuts_tree_depth": Key(INTEGER, 5, "NUTS maximum tree depth (<= 2^depth - 1 leapfrog steps per draw)",
                           "nuts_tree_depth = 5", positive("")),
    "nuts_target_accept": Key(NUMBER, 0.8, "NUTS target acceptance probability (step-size adaptation)",
                              "nuts_target_accept = 0.8", positive("")),
    "pool": Key(STRING, "antigen", "kill law of the IL-12-primed effector pool (when kill_memory is fitted): "
                "\"antigen\" = per-capita kill kill_memory·E·V/(V + memory_ks_mm3) (1/h; the pool needs antigen, "
                "its plateau is stable), \"ratio\" = kill_memory·E/(V + memory_ks_mm3) (mm³/h; a fixed volume per "
                "hour, its plateau unstable)", 'pool = "antigen"', one_of(["antigen", "ratio"])),
    "output": Key(STRING, "ct26", "prefix of the outputs: <output>_fit.png, <output>_fit.md, "
                  "<output>_fit.json, <output>_fit.h5, <output>_fitted.toml (relative to the working directory)", 'output = "fits/ct26"'),
}


def check_param_names(names, path, defaults, extra=()):
    for i, n in enumerate(names):
        if n not in defaults and n not in extra:
            hint = did_you_mean(n, list(defaults) + list(extra))
            raise ConfigError(f"{path}[{i}]", f"{path}[{i}]: unknown parameter '{n}'; {hint}"
                              f"use a model parameter{' or one of ' + ', '.join(extra) if extra else ''}")
        if names.count(n) > 1:
            raise ConfigError(path, f"{path} lists '{n}' twice")


def resolve_fit(raw: Mapping, defaults: Mapping) -> dict:
    out = resolve_keys(raw, FIT, "fit")
    for k in ("growth_params", "immune_params", "cohort_params"):
        check_param_names(out[k], f"fit.{k}", defaults, FIT_PSEUDO)
    if "omega_start" in out:
        if len(out["omega_start"]) != len(out["cohort_params"]) or min(out["omega_start"], default=1) <= 0:
            raise ConfigError("fit.omega_start", f"fit.omega_start: needs {len(out['cohort_params'])} positive "
                              f"numbers (one per fit.cohort_params entry), got {out['omega_start']}")
    for i, n in enumerate(out["omega_fixed"]):
        if n not in out["cohort_params"]:
            raise ConfigError(f"fit.omega_fixed[{i}]", f"fit.omega_fixed[{i}]: '{n}' is not in fit.cohort_params "
                              f"{out['cohort_params']}; only a random effect has an ω to hold")
    return out


def reference() -> list[str]:
    """The ``[fit]`` part of docs/config.md, markdown lines."""
    return [
        "## `[fit]`",
        "",
        "Optional: fitting to measured tumor volumes with `tmepde fit CONFIG` (ignored by",
        "`tmepde run`); the worked example is configs/fit/ct26.toml (docs/fitting.md), a population",
        "(mixed-effects) fit. Fitted names are model parameters or the fit-only `v0_mm3` (initial tumor volume, mm³)",
        "`il12_dose_ng` (effective IL-12 per intratumoral injection, ng), `il12_response` (the fraction",
        "of that dose an animal responds to, 0–1, fitted on the logit scale: as a random effect, logit-normal)",
        "and `responder_fraction` (the fraction of animals that respond to IL-12 at all, logit scale: fitting it",
        "makes the population a responder / non-responder mixture with each animal's class summed out);",
        "`kill_memory` (1/h, or mm³/h with `pool = \"ratio\"`), `memory_delay_h` (h) and `memory_ks_mm3` (mm³)",
        "are the IL-12-primed effector pool of the CT26 well-mixed reduction (a kill that persists after the",
        "doses; `pool` sets how it depends on the tumor volume; fitting `kill_memory` switches it on; docs/fitting.md).",
        "",
        *key_table(FIT),
        "",
    ]
