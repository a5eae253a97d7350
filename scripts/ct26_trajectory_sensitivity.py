"""How strongly each CT26 animal's predicted log volumes respond to the fixed effects.

At the population fit's optimum (``fit.start_from`` of the config, no BFGS steps), for every
animal in its arm's class (IL-12 animals as responders), the largest |∂ log(V + 10 mm³) /
∂ θ_j| over its quantified measurement days, θ on the fitted (log) scale: how much a 1 % change
of a parameter moves the prediction, in units of 1 % of volume. An animal whose trajectory sits
near an unstable equilibrium of the model (the primed pool's "ratio" kill law) amplifies
parameter changes, which sets the step size a gradient sampler can take; on a stable plateau
(the "antigen" law, the default) it does not (docs/fitting.md). The config's ``fit.pool`` sets
the law; ``fit.start_from`` must be a fit made with it.

    python scripts/ct26_trajectory_sensitivity.py [configs/fit/ct26.toml]
"""

from __future__ import annotations

import sys

import numpy as np
import jax

jax.config.update("jax_enable_x64", True)

from tmepde.apps.ct26 import fitting as F  # noqa: E402
from tmepde.config import load_config  # noqa: E402


def main(path: str = "configs/fit/ct26.toml"):
    cfg = load_config(path)
    fc = cfg.data["fit"]
    s = F.setup(cfg)
    theta, omega, sigma = F.start_values(s, cfg, fc["start_from"], F.omega_start(s, fc))
    res = F.fit_from(s, cfg, theta, omega, sigma, inner_steps=F.FULL["inner_steps"], max_steps=0, polish_steps=0)
    arm = np.asarray(s.data.covariates)
    observed = np.asarray(s.data.observed) > 0
    eta = np.asarray(res.eta_components)                      # (class, animal, k)
    jac = jax.jit(jax.jacfwd(s.predict))
    print(f"-log L {res.nll:.3f} at {fc['start_from']}; sensitivity max_t |d log(V+10) / d log θ|")
    print(f"{'animal':>6} {'dose':>6} " + " ".join(f"{n[:12]:>12}" for n in s.names))
    for i in range(arm.size):
        c = 1.0 if arm[i] > 0 else 0.0
        J = np.asarray(jac(res.theta, eta[int(c), i], arm[i], c))[observed[i]]
        print(f"{i:>6} {arm[i]:>6g} " + " ".join(f"{v:>12.1f}" for v in np.max(np.abs(J), axis=0)))


if __name__ == "__main__":
    main(*sys.argv[1:])
