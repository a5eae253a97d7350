"""Well-mixed reduction of the TME model for the CT26 population fit.

The spatial spherical model takes minutes per compiled simulation and its derivatives; a
population fit needs thousands of per-animal simulations with Hessians. This module keeps the
TME model's own rate laws (``tmepde.models.tme.tme_model(grid=None).reactions`` and
``local_decay``, the well-mixed form with intratumoral doses spread evenly in
``it_volume_ml``) and integrates five of its species: ``tumor``, ``cd8``, ``ifng``,
``il12`` and ``depot_il12``, the IL-12 → IFN-γ → CTL-killing axis (mechanisms A2, A6).
Every other species is frozen at the initial infiltrate (stem, NK, Treg, MDSC, macrophages,
PD-L1, vessels, TGF-β, IL-10, CXCL, memory), so suppression factors are constants.

The compartment is the tumor itself: tumor cells at the packing density ``RHO0`` of the
spatial model's initial ball, immune cells and cytokines as concentrations in it. The tumor
volume ``V`` (mm³) follows the model's per-capita tumor rate, ``d log V/dt = R_tumor / tumor``
evaluated at ``tumor = RHO0``, so growth, crowding (``free``), CTL killing (saturated at this
density) and IFN-γ apoptosis enter exactly as in the TME reactions.

Time stepping, dt (h): ``log V`` advances by explicit Euler on the per-capita rate (the
volume stays positive however deep the regression), the others by the linearly implicit step
``y ← (y + dt R) / (1 + dt k)`` with ``k`` the species' decay plus local uptake (stiff IFN-γ
uptake is stable at any dt). Volumes are saved once a day.
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from tmepde.models.tme import DEFAULTS, hill, tme_model
from tmepde.therapy import local_prefix, schedule_keys, systemic_prefix

DYNAMIC = ("tumor", "cd8", "ifng", "il12", "depot_il12")
RHO0 = 0.6                 # tumor-cell volume fraction in the tumor (packed tissue)
BACKGROUND = {"vessel": 0.3, "pdl1": DEFAULTS["pdl1_basal"], "cd8": 0.005, "nk": 0.0025,
              "treg": 0.0015, "mdsc": 0.0015, "m1": 0.0025, "m2": 0.01}
N_DOSES = {**{systemic_prefix(a): 1 for a in ("ifng", "pd1", "pdl1i", "tgfbi")},
           local_prefix("ifng"): 1, local_prefix("il12"): 3}
IL12_TIMES, IL12_AMOUNTS = schedule_keys(local_prefix("il12"))  # the virus's IL-12 injections
# Primed effector pool (immune memory) of this reduction, not a TME-model species. IL-12
# primes tumor-specific CTLs while it is present: primed fraction A (0..1), dA/dt =
# h(IL-12; ec50_il12) (1 − A) / PRIME_TAU_H, no decay (memory within the study); the primed
# clones expand into an effector pool E (0..1) that follows A with a first-order lag,
# dE/dt = (A − E) / memory_delay_h (clonal expansion takes days after priming). Without IL-12
# there is no pool; kill_memory = 0 (the default) is the reduction without it. Two kill laws
# (POOL_LAWS), both with a half-saturation volume memory_ks_mm3 (Ks):
# - "antigen" (the default): per-capita kill kill_memory·E·V / (V + Ks) (1/h). The pool's
#   activity needs antigen: effectors are restimulated in proportion to the tumor present,
#   saturating above Ks (antigen-stimulated effector activity, Kuznetsov et al. 1994; de Pillis,
#   Radunskaya and Wiseman 2005). Per-capita kill rises with V, so with growth r the plateau
#   V* = Ks·r / (kill_memory·E − r) is a stable state: a responder tracks it down as the pool
#   expands, and small changes of the parameters move the trajectory little.
# - "ratio": per-capita kill kill_memory·E / (V + Ks) (kill_memory in mm³/h): a pool that does
#   not grow with the tumor kills a fixed volume per hour. Per-capita kill falls with V, so
#   V* = kill_memory·E / r − Ks is unstable: a tumor near it stays flat for weeks, one below it
#   is eliminated, one above it escapes; trajectories near it amplify parameter changes ~20x
#   (docs/fitting.md), which slows Hamiltonian Monte Carlo.
POOL_LAWS = ("antigen", "ratio")
PRIME_TAU_H = 24.0         # h, est: time constant of priming at saturating IL-12
MEMORY_DELAY_H = 240.0     # h, est: clonal expansion lag (CTL expansion peaks ~1 week after priming)
MEMORY_KS_MM3 = 10.0       # mm³, est: tumor volume of half-saturated killing by the pool
# Starting values (the prior centres) when fitted, and plausible ranges (est, model units):
# kill_memory 0.1 /h ("antigen": de Pillis et al. 2005 fit CTL kill rates of ~2 /day) or
# 0.1 mm³/h ("ratio": ≈ 10⁵ cells/h, 1 mm³ ≈ 10⁶ cells); delay 3-20 days; Ks 1-100 mm³.
MEMORY_PARAMS = {"kill_memory": (0.1, 0.0, 1.0), "memory_delay_h": (MEMORY_DELAY_H, 72.0, 480.0),
                 "memory_ks_mm3": (MEMORY_KS_MM3, 1.0, 100.0)}


class WellMixedCt26:
    """Daily tumor volumes of the reduced TME model for one animal.

    dt: time step (h, divides 24). n_days: days simulated after the first measurement.
    injection_hours: times (h after the first measurement) of the intratumoral IL-12 doses.
    params: overrides of the TME defaults (model units). pool: the primed pool's kill law,
    one of ``POOL_LAWS``.
    """

    def __init__(self, n_days: int, *, dt: float = 1.0, injection_hours=(0.0, 72.0, 144.0),
                 params: Mapping | None = None, pool: str = "antigen"):
        if not (24.0 / dt).is_integer():
            raise ValueError(f"dt must divide 24 h, got {dt!r}")
        if pool not in POOL_LAWS:
            raise ValueError(f"pool law must be one of {POOL_LAWS}, got {pool!r}")
        self.pool = pool
        self.model = tme_model(grid=None, n_doses=N_DOSES)
        self.dt = float(dt)
        self.n_days = int(n_days)
        self.steps_per_day = int(round(24.0 / dt))
        p = {k: np.asarray(v, float) for k, v in self.model.default_params().items()}
        p["secr_il12"] = np.asarray(0.0)      # IL-12 from the virus only
        p["a2_mhc"] = np.asarray(5.0)         # CT26 is MHC-I high (est)
        p[IL12_TIMES] = np.asarray(injection_hours, float)
        p["dose_width_h"] = np.asarray(2.0 * dt)  # >= 2 dt: the pulse delivers its amount
        p["kill_memory"] = np.asarray(0.0)    # mm³/h, primed-effector kill (0: no memory)
        p["memory_delay_h"] = np.asarray(MEMORY_DELAY_H)
        p["memory_ks_mm3"] = np.asarray(MEMORY_KS_MM3)
        for k, v in (params or {}).items():
            if k not in p:
                raise KeyError(f"unknown TME parameter {k!r}")
            p[k] = np.asarray(v, float)
        self.params = p
        self._frozen = {s: float(BACKGROUND.get(s, 0.0)) for s in self.model.names}
        self._decay = {s.name: s.decay for s in self.model.species}

    def log_volumes(self, p: Mapping, v0_mm3, il12_dose_ng, floor_mm3: float = 10.0):
        """``log(V + floor)`` on days 0..n_days after the first measurement, shape (n_days + 1,).

        p: full parameter dict (traced values allowed); v0_mm3: initial tumor volume (mm³);
        il12_dose_ng: IL-12 per injection (ng; 0 = untreated).
        """
        f = jnp.result_type(float)
        q = dict(p)
        q[IL12_AMOUNTS] = jnp.ones(3, f) * il12_dose_ng
        dt = self.dt
        y0 = {"tumor": jnp.log(v0_mm3), "cd8": jnp.asarray(self._frozen["cd8"], f),
              "ifng": jnp.zeros((), f), "il12": jnp.zeros((), f), "depot_il12": jnp.zeros((), f),
              "primed": jnp.zeros((), f), "effector": jnp.zeros((), f)}
        k_mem = q.pop("kill_memory", 0.0)
        tau_exp = q.pop("memory_delay_h", MEMORY_DELAY_H)
        ks = q.pop("memory_ks_mm3", MEMORY_KS_MM3)

        def step(y, t):
            full = dict({k: jnp.asarray(v, f) for k, v in self._frozen.items()},
                        **{k: v for k, v in y.items() if k not in ("primed", "effector")})
            full["tumor"] = jnp.asarray(RHO0 * 0.98, f)
            full["stem"] = jnp.asarray(RHO0 * 0.02, f)
            r = self.model.reactions(t, full, q)
            loss = self.model.local_decay(t, full, q)
            v = jnp.exp(y["tumor"])
            memory = k_mem * y["effector"] * (v if self.pool == "antigen" else 1.0) / (v + ks)
            new = {"tumor": y["tumor"] + dt * (r["tumor"] / full["tumor"] - memory)}
            prime = hill(y["il12"], q["ec50_il12"]) / PRIME_TAU_H
            new["primed"] = (y["primed"] + dt * prime) / (1.0 + dt * prime)
            new["effector"] = (y["effector"] + dt * y["primed"] / tau_exp) / (1.0 + dt / tau_exp)
            for s in DYNAMIC[1:]:
                # decay_<species> from the parameters, as the spatial model does: a fitted
                # depot release rate must empty the depot at the rate it feeds IL-12
                k = q.get(f"decay_{s}", self._decay[s]) + loss.get(s, 0.0)
                new[s] = (y[s] + dt * r[s]) / (1.0 + dt * k)
            return new, None

        def day(y, d):
            ts = 24.0 * d + dt * jnp.arange(self.steps_per_day)
            y, _ = jax.lax.scan(step, y, ts)
            return y, y["tumor"]

        _, logt = jax.lax.scan(day, y0, jnp.arange(self.n_days))
        logt = jnp.concatenate([y0["tumor"][None], logt])
        return jnp.log(jnp.exp(logt) + floor_mm3)


def radius_um(v0_mm3: float, density: float = 0.6) -> float:
    """Radius (µm) of a ball holding ``v0_mm3`` of tumor cells at volume fraction ``density``."""
    return (3.0 * v0_mm3 * 1e9 / (4.0 * math.pi * density)) ** (1.0 / 3.0)
