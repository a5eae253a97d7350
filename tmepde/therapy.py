"""Dose schedules, routes and pharmacokinetics for the TME model (pure, differentiable JAX).

Every dose is delivered as a smooth pulse in time, so the result is differentiable with
respect to both the amount and the time of each dose:

* a dose "given at" ``t_i`` enters as a normalised Gaussian input rate centred at
  ``t_i + LAG_WIDTHS * width`` with standard deviation ``width`` (h); ``LAG_WIDTHS = 3``,
  so >99.8 % of the dose arrives after ``t_i`` and the whole dose is delivered;
* a continuous infusion from ``t0`` to ``t1`` at ``rate`` is the box convolved with the same
  Gaussian, ``rate·[Φ((t-t0)/w) − Φ((t-t1)/w)]``; its integral is exactly ``rate·(t1-t0)``.

Systemic routes use a linear one-compartment model with first-order absorption
(s.c./oral: ``ka``) or direct input (i.v.: ``ka = inf``), elimination ``ke`` and apparent
volume ``V/F``. For linear PK the plasma concentration is the superposition of dose
responses; with Gaussian-smoothed inputs each response has the closed form

    g_k(τ) = ∫ N(s; 0, w) e^{-k(τ-s)} ds = exp(-kτ + k²w²/2) Φ(τ/w − k w),

evaluated in log space (``log_ndtr``) so it never overflows. A smoothed step (infusion) has
response ``S_k(τ) = (Φ(τ/w) − g_k(τ)) / k``. So the PK is exact, needs no extra state and is
cheap enough to evaluate inside every reaction call.

Units: time h, amounts ng, volumes mL, concentrations ng/mL. Clinical dose units are
converted with :func:`dose_to_ng` (body-surface area and body weight are documented
defaults, override them per patient).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, ndtr

LAG_WIDTHS = 3.0
DEFAULT_WIDTH_H = 0.25  # pulse standard deviation (h): ~1 h from first to last 2 %
BSA_M2 = 1.73    # adult body-surface area (m²), Mosteller/DuBois reference adult
WEIGHT_KG = 70.0  # adult body weight (kg)

# -- clinical dose units ------------------------------------------------------------------
_MASS = {"ng": 1.0, "ug": 1e3, "µg": 1e3, "mcg": 1e3, "mg": 1e6, "g": 1e9}


def dose_to_ng(value, unit: str, bsa_m2: float = BSA_M2, weight_kg: float = WEIGHT_KG):
    """Dose in ``unit`` -> amount in ng.

    ``unit``: a mass (``ng``, ``ug``/``µg``/``mcg``, ``mg``, ``g``), per body-surface area
    (``ug/m2``: × ``bsa_m2``) or per body weight (``mg/kg``: × ``weight_kg``).
    Example: 50 µg/m² × 1.73 m² = 86.5 µg = 8.65e4 ng; 2 mg/kg × 70 kg = 140 mg.
    """
    u = unit.replace(" ", "").replace("²", "2").lower()
    if "/" in u:
        mass, per = u.split("/", 1)
        scale = {"m2": bsa_m2, "kg": weight_kg}.get(per)
        if scale is None or mass not in _MASS:
            raise ValueError(f"unknown dose unit {unit!r}; use e.g. 'ug/m2', 'mg/kg', 'mg'")
        return value * _MASS[mass] * scale
    if u not in _MASS:
        raise ValueError(f"unknown dose unit {unit!r}; use e.g. 'ug/m2', 'mg/kg', 'mg'")
    return value * _MASS[u]


# -- schedules (static number of doses; times and amounts are arrays, differentiable) ------
def single(time_h: float, amount) -> tuple[np.ndarray, np.ndarray]:
    """One bolus: ``(times, amounts)`` arrays of length 1."""
    return np.array([float(time_h)]), np.array([float(amount)])


def repeated(first_h: float, every_h: float, n: int, amount) -> tuple[np.ndarray, np.ndarray]:
    """``n`` equal doses every ``every_h`` hours from ``first_h`` (e.g. 3×/week: every 56 h)."""
    times = first_h + every_h * np.arange(n, dtype=float)
    return times, np.full(n, float(amount))


def from_list(pairs: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Arbitrary ``[(time_h, amount), ...]``."""
    arr = np.asarray(pairs, dtype=float).reshape(-1, 2)
    return arr[:, 0].copy(), arr[:, 1].copy()


def pad(times, amounts, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad a schedule to ``n`` slots with zero-amount doses (keeps array shapes static)."""
    times, amounts = np.asarray(times, float), np.asarray(amounts, float)
    if len(times) > n:
        raise ValueError(f"schedule has {len(times)} doses but the model has {n} slots")
    extra = n - len(times)
    return (np.concatenate([times, np.zeros(extra)]), np.concatenate([amounts, np.zeros(extra)]))


# -- smooth input rates ------------------------------------------------------------------
def _centres(times, width):
    return jnp.asarray(times) + LAG_WIDTHS * width


def pulse_rate(t, times, amounts, width=DEFAULT_WIDTH_H):
    """Input rate (amount/h) of a train of smooth boluses at time(s) ``t``.

    ``∫ rate dt = Σ amounts`` (to 1 - Φ(-3) ≈ 0.9987 counting only t >= t_i; exactly over
    the real line). Differentiable in ``times``, ``amounts``, ``width``.
    """
    t = jnp.asarray(t)[..., None]
    z = (t - _centres(times, width)) / width
    return jnp.sum(jnp.asarray(amounts) * jnp.exp(-0.5 * z * z) / (width * math.sqrt(2 * math.pi)),
                   axis=-1)


def infusion_rate(t, t_start, t_stop, rate, width=DEFAULT_WIDTH_H):
    """Continuous infusion ``rate`` (amount/h) from ``t_start`` to ``t_stop`` (h), smoothed
    by a Gaussian of s.d. ``width``; integral ``rate·(t_stop - t_start)`` exactly."""
    return rate * (ndtr((t - t_start) / width) - ndtr((t - t_stop) / width))


def _g(tau, k, width):
    """Response of ``x' = -k x`` to a unit Gaussian pulse centred at 0 (s.d. ``width``)."""
    return jnp.exp(-k * tau + 0.5 * (k * width) ** 2 + log_ndtr(tau / width - k * width))


def _step(tau, k, width):
    """Response of ``x' = -k x`` to a unit-rate smoothed step starting at 0."""
    return (ndtr(tau / width) - _g(tau, k, width)) / k


def _two_exp(kernel, tau, ka, ke, width):
    """Central-compartment response for absorption ``ka`` then elimination ``ke``:
    ``ka/(ka-ke)·(K_ke − K_ka)``; the ka → ke limit is handled by a tiny offset."""
    ka = jnp.where(jnp.abs(ka - ke) < 1e-9 * ke, ka * (1 + 1e-6), ka)
    return ka / (ka - ke) * (kernel(tau, ke, width) - kernel(tau, ka, width))


def pk_concentration(t, times, amounts, *, ke, volume_ml, ka=None, bioavailability=1.0,
                     width=DEFAULT_WIDTH_H, inf_start=None, inf_stop=None, inf_rate=0.0):
    """Plasma concentration (ng/mL) at time(s) ``t`` of a one-compartment model.

    times, amounts: bolus schedule (h, ng). ke: elimination (1/h). volume_ml: volume of
    distribution (mL; for s.c. the apparent V/F with ``bioavailability=1``).
    ka: first-order absorption (1/h) for s.c./oral/i.m.; ``None`` for i.v.
    inf_*: an optional continuous infusion (h, h, ng/h) through the same route.
    """
    t = jnp.asarray(t)
    tau = t[..., None] - _centres(times, width)
    if ka is None:
        resp = _g(tau, ke, width)
    else:
        resp = _two_exp(_g, tau, ka, ke, width)
    c = jnp.sum(jnp.asarray(amounts) * resp, axis=-1)
    if inf_start is not None:
        def step(tt):
            return _step(tt, ke, width) if ka is None else _two_exp(_step, tt, ka, ke, width)
        c = c + inf_rate * (step(t - inf_start) - step(t - inf_stop))
    return bioavailability * c / volume_ml


def gaussian_site(coords, centre, width_um):
    """Spatial density (1/µm³) of an intratumoral deposit: a 3D Gaussian of s.d. ``width_um``
    centred at ``centre``; on a 1D/2D grid this is the section through the centre."""
    r2 = sum((x - c) ** 2 for x, c in zip(coords, centre))
    return jnp.exp(-0.5 * r2 / width_um**2) / (2 * math.pi * width_um**2) ** 1.5


UM3_PER_ML = 1e12

# -- agent library (label / literature PK; see docs/model.md) --------------------------------
# ke, ka in 1/h; V in mL (apparent V/F for s.c.).
#  IFN-γ-1b s.c. (Actimmune/Imukin): terminal t½ 5.9 h (ka ≈ ke, so the terminal slope
#    emerges only days after the peak), Cmax ≈ 0.6 ng/mL at ≈ 8 h for
#    50 µg/m² (MODEL.md anchor). ke = ln2/5.9 h; ka chosen so tmax = ln(ka/ke)/(ka-ke) = 8 h
#    (ka = 0.1331 /h); V/F = 56.6 L then gives Cmax = 0.60 ng/mL for 86.5 µg.
#  pembrolizumab i.v.: t½ 22 d, Vss ≈ 6.0 L (Keytruda label); nivolumab t½ 25 d, Vss 8 L.
#  PD-L1-induction blocker (triptolide-like small molecule, oral): estimate t½ 12 h, ka 1 /h,
#    V/F 50 L (estimate).
#  TGF-β blockade (antibody / trap, e.g. fresolimumab-like): t½ ≈ 14 d, V 5 L (estimate).
_LN2 = math.log(2.0)


def _ifng_sc_ka(ke=_LN2 / 5.9, tmax=8.0):
    lo, hi = ke * 1.0001, 10.0
    for _ in range(200):  # tmax(ka) decreases with ka for ka > ke: bisection
        mid = 0.5 * (lo + hi)
        tm = math.log(mid / ke) / (mid - ke)
        lo, hi = (mid, hi) if tm > tmax else (lo, mid)
    return 0.5 * (lo + hi)


IFNG_SC = {"ke": _LN2 / 5.9, "ka": _ifng_sc_ka(), "V": 5.66e4, "F": 1.0}
PEMBROLIZUMAB_IV = {"ke": _LN2 / (22 * 24.0), "ka": None, "V": 6.0e3, "F": 1.0}
NIVOLUMAB_IV = {"ke": _LN2 / (25 * 24.0), "ka": None, "V": 8.0e3, "F": 1.0}
PDL1_BLOCKER_ORAL = {"ke": _LN2 / 12.0, "ka": 1.0, "V": 5.0e4, "F": 1.0}
TGFB_BLOCKADE_IV = {"ke": _LN2 / (14 * 24.0), "ka": None, "V": 5.0e3, "F": 1.0}


def dose_events(params, t_end: float | None = None) -> dict[str, np.ndarray]:
    """Dose times (h) per schedule found in a parameter dict, for plots and result files.

    A schedule is a pair ``<name>_times`` / ``<name>_amounts`` (doses with amount 0 are
    unused slots and skipped); an infusion ``<name>_start`` / ``_stop`` / ``_rate`` with a
    non-zero rate contributes its start and stop. Times after ``t_end`` are dropped.
    """
    out = {}
    for key in params:
        if key.endswith("_times") and key[:-6] + "_amounts" in params:
            name = key[:-6]
            t = np.atleast_1d(np.asarray(params[key], float))
            a = np.atleast_1d(np.asarray(params[name + "_amounts"], float))
            t = t[a != 0]
        elif key.endswith("_rate") and key[:-5] + "_start" in params and key[:-5] + "_stop" in params:
            name = key[:-5]
            if not np.any(np.asarray(params[key], float) != 0):
                continue
            t = np.array([float(params[name + "_start"]), float(params[name + "_stop"])])
        else:
            continue
        if t_end is not None:
            t = t[t <= t_end]
        if t.size:
            out[name] = np.sort(t)
    return out
