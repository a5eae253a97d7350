"""Dose schedules, routes and pharmacokinetics for the TME model (pure, differentiable JAX).

Every dose is delivered as a smooth pulse in time, so the result is differentiable with
respect to both the amount and the time of each dose:

* a dose "given at" ``t_i`` enters as a normalised Gaussian input rate centred at
  ``t_i + LAG_WIDTHS * width`` with standard deviation ``width`` (h); ``LAG_WIDTHS = 3``,
  so >99.8 % of the dose arrives after ``t_i`` and the whole dose is delivered;
* a continuous infusion from ``t0`` to ``t1`` at ``rate`` is the box convolved with the same
  Gaussian, ``rate·[Φ((t-t0)/w) − Φ((t-t1)/w)]``; its integral is exactly ``rate·(t1-t0)``.

Systemic routes use a linear one-compartment model with first-order absorption
(s.c./oral: ``ka``) or direct input (i.v.: ``ka=None``), elimination ``ke`` and apparent
volume ``V/F``. For linear PK the plasma concentration is the superposition of dose
responses; with Gaussian-smoothed inputs each response has the closed form

    g_k(τ) = ∫ N(s; 0, w) e^{-k(τ-s)} ds = exp(-kτ + k²w²/2) Φ(τ/w − k w),

evaluated in log space (``log_ndtr``) so it never overflows. A smoothed step (infusion) has
response ``S_k(τ) = (Φ(τ/w) − g_k(τ)) / k``. So the PK is exact, needs no extra state and is
cheap enough to evaluate inside every reaction call.

Units: time h, amounts ng, volumes mL, concentrations ng/mL. Clinical dose units are
converted with :func:`dose_to_ng` (body-surface area and body weight are documented
defaults, override them per patient).

Typed dosing. A model keeps its parameters in one flat dict (what configs, result files and
gradients see); the dose part of it is read into small pytrees and written back here, and
nowhere else spells the names (:mod:`tmepde._dose_keys`, re-exported below):

* :class:`Schedule` ``(times, amounts)``, :class:`PK` ``(ke, volume_ml, ka, bioavailability)``,
  :class:`Infusion` ``(start, stop, rate)``, :class:`Deposit` ``(centre, width_um)``;
* :class:`SystemicDosing` ``(schedule, pk)`` and :class:`LocalDosing`
  ``(schedule, infusion, deposit, volume_ml)``;
* :func:`systemic` / :func:`local` read them from a parameter dict, :func:`systemic_params` /
  :func:`local_params` write them; :func:`plasma_concentration` and :func:`local_input` are the
  PK and delivery the TME model evaluates.

The pytrees are ``NamedTuple`` s, so ``jax.jit``, ``jax.grad`` and ``jax.vmap`` take them as they
are (``ka=None``, i.v., and ``deposit=None``, well mixed, are empty subtrees).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, NamedTuple, Sequence

import numpy as np
import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, ndtr

from ._dose_keys import (LOCAL, NONNEGATIVE_SUFFIXES, SYSTEMIC, WELL_MIXED_VOLUME, _require,
                         deposit_keys, infusion_keys, infusion_prefix, infusion_prefixes,
                         is_dose_amount_key, is_dosing_key, local_prefix, pk_keys, schedule_keys,
                         schedule_prefixes, systemic_prefix)

if TYPE_CHECKING:  # shape annotations only (jaxtyping); nothing is checked at run time
    from jaxtyping import Array, ArrayLike, Float

__all__ = [
    # naming of dose parameters in a flat parameter dict
    "SYSTEMIC", "LOCAL", "WELL_MIXED_VOLUME", "NONNEGATIVE_SUFFIXES", "systemic_prefix",
    "local_prefix", "infusion_prefix", "schedule_keys", "pk_keys", "infusion_keys", "deposit_keys",
    "is_dose_amount_key", "is_dosing_key", "schedule_prefixes", "infusion_prefixes",
    # typed dosing
    "Schedule", "PK", "Infusion", "Deposit", "SystemicDosing", "LocalDosing", "systemic", "local",
    "systemic_params", "local_params", "plasma_concentration", "local_rate", "local_input",
    "dose_events",
    # schedules, pulses and PK
    "dose_to_ng", "single", "repeated", "from_list", "pad", "pulse_rate", "infusion_rate",
    "pk_concentration", "gaussian_site", "LAG_WIDTHS", "DEFAULT_WIDTH_H", "UM3_PER_ML",
    "BSA_M2", "WEIGHT_KG",
    # agent library
    "IFNG_1B_SC", "PEMBROLIZUMAB_IV", "NIVOLUMAB_IV", "PDL1_BLOCKER_ORAL", "TGFB_BLOCKADE_IV",
]

LAG_WIDTHS = 3.0
# Pulse s.d. (h). Dose pulses are sampled at the step times: an s.d. of >= 2 dt makes the
# delivered amount exact to round-off whatever the dose time (the sampled Gaussian sums to its
# integral to ~exp(-2π² (w/dt)²)); 1 h suits dt <= 0.5 h, narrower pulses alias with the step.
# The TME model's ``dose_width_h`` defaults to it, and the label PK fits below assume it (the
# pulse centre, 3 h after the nominal dose time, is part of the s.c. absorption delay).
DEFAULT_WIDTH_H = 1.0
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
def single(time_h: float, amount: float) -> tuple[Float[np.ndarray, " 1"], Float[np.ndarray, " 1"]]:
    """One bolus: ``(times, amounts)`` arrays of length 1."""
    return np.array([float(time_h)]), np.array([float(amount)])


def repeated(first_h: float, every_h: float, n: int,
             amount: float) -> tuple[Float[np.ndarray, " n"], Float[np.ndarray, " n"]]:
    """``n`` equal doses every ``every_h`` hours from ``first_h`` (e.g. 3×/week: every 56 h)."""
    times = first_h + every_h * np.arange(n, dtype=float)
    return times, np.full(n, float(amount))


def from_list(pairs: Sequence[tuple[float, float]]
              ) -> tuple[Float[np.ndarray, " n"], Float[np.ndarray, " n"]]:
    """Arbitrary ``[(time_h, amount), ...]``."""
    arr = np.asarray(pairs, dtype=float).reshape(-1, 2)
    return arr[:, 0].copy(), arr[:, 1].copy()


def pad(times: Float[ArrayLike, " m"], amounts: Float[ArrayLike, " m"],
        n: int) -> tuple[Float[np.ndarray, " n"], Float[np.ndarray, " n"]]:
    """Pad a schedule to ``n`` slots with zero-amount doses (keeps array shapes static)."""
    times, amounts = np.asarray(times, float), np.asarray(amounts, float)
    if len(times) > n:
        raise ValueError(f"schedule has {len(times)} doses but the model has {n} slots")
    extra = n - len(times)
    return (np.concatenate([times, np.zeros(extra)]), np.concatenate([amounts, np.zeros(extra)]))


# -- smooth input rates ------------------------------------------------------------------
def _centres(times, width):
    return jnp.asarray(times) + LAG_WIDTHS * width


@jax.jit
def pulse_rate(t: Float[ArrayLike, "*t"], times: Float[ArrayLike, " n"],
               amounts: Float[ArrayLike, " n"],
               width: Float[ArrayLike, ""] = DEFAULT_WIDTH_H) -> Float[Array, "*t"]:
    """Input rate (amount/h) of a train of smooth boluses at time(s) ``t``.

    ``∫ rate dt = Σ amounts`` (to 1 - Φ(-3) ≈ 0.9987 counting only t >= t_i; exactly over
    the real line). Differentiable in ``times``, ``amounts``, ``width``.
    """
    t = jnp.asarray(t)[..., None]
    z = (t - _centres(times, width)) / width
    return jnp.sum(jnp.asarray(amounts) * jnp.exp(-0.5 * z * z) / (width * math.sqrt(2 * math.pi)),
                   axis=-1)


@jax.jit
def infusion_rate(t: Float[ArrayLike, "*t"], t_start: Float[ArrayLike, ""],
                  t_stop: Float[ArrayLike, ""], rate: Float[ArrayLike, ""],
                  width: Float[ArrayLike, ""] = DEFAULT_WIDTH_H) -> Float[Array, "*t"]:
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


@jax.jit  # one compiled kernel: called eagerly (plots, tests) it is ~20 ops, each compiled apart
def pk_concentration(t: Float[ArrayLike, "*t"], times: Float[ArrayLike, " n"],
                     amounts: Float[ArrayLike, " n"], *, ke: Float[ArrayLike, ""],
                     volume_ml: Float[ArrayLike, ""], ka: Float[ArrayLike, ""] | None = None,
                     bioavailability: Float[ArrayLike, ""] = 1.0,
                     width: Float[ArrayLike, ""] = DEFAULT_WIDTH_H,
                     inf_start: Float[ArrayLike, ""] | None = None,
                     inf_stop: Float[ArrayLike, ""] | None = None,
                     inf_rate: Float[ArrayLike, ""] = 0.0) -> Float[Array, "*t"]:
    """Plasma concentration (ng/mL) at time(s) ``t`` of a one-compartment model.

    times, amounts: bolus schedule (h, ng). ke: elimination (1/h). volume_ml: volume of
    distribution (mL; for s.c. the apparent V/F with ``bioavailability=1``).
    ka: first-order absorption (1/h) for s.c./oral/i.m.; ``None`` for i.v.
    inf_*: an optional continuous infusion (h, h, ng/h) through the same route.
    A :class:`PK` fills the keywords: ``pk_concentration(t, times, amounts, **pk._asdict())``;
    :func:`plasma_concentration` takes a :class:`SystemicDosing`.
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


def gaussian_site(coords: Sequence[Float[ArrayLike, "*grid"]],
                  centre: Sequence[Float[ArrayLike, ""]],
                  width_um: Float[ArrayLike, ""]) -> Float[Array, "*grid"]:
    """Spatial density (1/µm³) of an intratumoral deposit: a 3D Gaussian of s.d. ``width_um``
    centred at ``centre``; on a 1D/2D grid this is the section through the centre."""
    r2 = sum((x - c) ** 2 for x, c in zip(coords, centre))
    return jnp.exp(-0.5 * r2 / width_um**2) / (2 * math.pi * width_um**2) ** 1.5


UM3_PER_ML = 1e12

# -- typed dosing (pytrees) ------------------------------------------------------------------
class Schedule(NamedTuple):
    """Bolus doses: ``times`` (n,) h and ``amounts`` (n,) ng. ``n`` is static (slots with
    amount 0 are unused); times and amounts are differentiable."""

    times: Float[ArrayLike, " n"]
    amounts: Float[ArrayLike, " n"]

    @classmethod
    def empty(cls, n: int) -> "Schedule":
        """``n`` unused slots (time 0, amount 0)."""
        return cls(np.zeros(n), np.zeros(n))


class PK(NamedTuple):
    """Linear one-compartment PK of one route.

    ke: elimination rate (1/h). volume_ml: volume of distribution (mL; for s.c./oral the
    apparent V/F with ``bioavailability = 1``). ka: first-order absorption (1/h) for
    s.c./oral/i.m., ``None`` for i.v. (direct input). bioavailability: fraction absorbed (1).
    """

    ke: Float[ArrayLike, ""]
    volume_ml: Float[ArrayLike, ""]
    ka: Float[ArrayLike, ""] | None = None
    bioavailability: Float[ArrayLike, ""] = 1.0


class Infusion(NamedTuple):
    """Continuous input of ``rate`` (ng/h) from ``start`` to ``stop`` (h); rate 0: none."""

    start: Float[ArrayLike, ""] = 0.0
    stop: Float[ArrayLike, ""] = 0.0
    rate: Float[ArrayLike, ""] = 0.0


class Deposit(NamedTuple):
    """Intratumoral injection site: ``centre`` (one coordinate per grid axis, µm) and the
    s.d. ``width_um`` (µm) of the 3D Gaussian bleb."""

    centre: tuple[Float[ArrayLike, ""], ...]
    width_um: Float[ArrayLike, ""]


class SystemicDosing(NamedTuple):
    """A systemic agent: its bolus schedule and the PK of its route."""

    schedule: Schedule
    pk: PK


class LocalDosing(NamedTuple):
    """An intratumoral agent: boluses and sustained release into a depot, deposited at
    ``deposit`` on a grid, or (``deposit=None``) spread evenly in ``volume_ml`` (mL)."""

    schedule: Schedule
    infusion: Infusion = Infusion()
    deposit: Deposit | None = None
    volume_ml: Float[ArrayLike, ""] | None = None


def systemic(params: Mapping, agent: str) -> SystemicDosing:
    """The systemic dosing of ``agent`` in a flat parameter dict (``sys_<agent>_*`` and
    ``pk_<agent>_*``; no ``pk_<agent>_ka`` means i.v.). Inverse of :func:`systemic_params`."""
    times, amounts = schedule_keys(systemic_prefix(agent))
    pk = pk_keys(agent)
    _require(params, (times, amounts, pk["ke"], pk["volume_ml"], pk["bioavailability"]),
             f"systemic dosing of {agent!r}")
    return SystemicDosing(
        Schedule(params[times], params[amounts]),
        PK(ke=params[pk["ke"]], volume_ml=params[pk["volume_ml"]], ka=params.get(pk["ka"]),
           bioavailability=params[pk["bioavailability"]]))


def systemic_params(agent: str, dosing: SystemicDosing) -> dict:
    """Flat parameters of ``dosing`` for ``agent`` (the inverse of :func:`systemic`)."""
    times, amounts = schedule_keys(systemic_prefix(agent))
    out = {times: dosing.schedule.times, amounts: dosing.schedule.amounts}
    for field, name in pk_keys(agent).items():
        value = getattr(dosing.pk, field)
        if value is not None:
            out[name] = value
    return out


def local(params: Mapping, agent: str) -> LocalDosing:
    """The intratumoral dosing of ``agent`` in a flat parameter dict (``it_<agent>_*``,
    ``inf_<agent>_*``; the site ``it_<agent>_x/_y/_z/_width`` where the model has a grid, and
    ``it_volume_ml`` where present). Inverse of :func:`local_params`."""
    times, amounts = schedule_keys(local_prefix(agent))
    start, stop, rate = infusion_keys(infusion_prefix(agent))
    _require(params, (times, amounts, start, stop, rate), f"intratumoral dosing of {agent!r}")
    axes, width = deposit_keys(agent)
    deposit = None
    if width in params:
        deposit = Deposit(tuple(params[k] for k in axes if k in params), params[width])
    return LocalDosing(Schedule(params[times], params[amounts]),
                       Infusion(params[start], params[stop], params[rate]), deposit,
                       params.get(WELL_MIXED_VOLUME))


def local_params(agent: str, dosing: LocalDosing) -> dict:
    """Flat parameters of ``dosing`` for ``agent`` (the inverse of :func:`local`)."""
    times, amounts = schedule_keys(local_prefix(agent))
    out = {times: dosing.schedule.times, amounts: dosing.schedule.amounts}
    out.update(zip(infusion_keys(infusion_prefix(agent)), dosing.infusion))
    if dosing.deposit is not None:
        axes, width = deposit_keys(agent, len(dosing.deposit.centre))
        out.update(zip(axes, dosing.deposit.centre))
        out[width] = dosing.deposit.width_um
    if dosing.volume_ml is not None:
        out[WELL_MIXED_VOLUME] = dosing.volume_ml
    return out


def plasma_concentration(t: Float[ArrayLike, "*t"], dosing: SystemicDosing,
                         width: Float[ArrayLike, ""] = DEFAULT_WIDTH_H) -> Float[Array, "*t"]:
    """Plasma concentration (ng/mL) at time(s) ``t`` (h) of a systemic agent: the PK the TME
    model evaluates (its ``dose_width_h`` is ``width``, s.d. of the dose pulses in h)."""
    s, pk = dosing
    return pk_concentration(t, s.times, s.amounts, ke=pk.ke, volume_ml=pk.volume_ml, ka=pk.ka,
                            bioavailability=pk.bioavailability, width=width)


def local_rate(t: Float[ArrayLike, "*t"], dosing: LocalDosing,
               width: Float[ArrayLike, ""] = DEFAULT_WIDTH_H) -> Float[Array, "*t"]:
    """Amount per hour (ng/h) an intratumoral agent's boluses and infusion put into its depot
    at time(s) ``t`` (h), before it is spread over the tissue (:func:`local_input`)."""
    s, inf = dosing.schedule, dosing.infusion
    return pulse_rate(t, s.times, s.amounts, width) + infusion_rate(t, *inf, width)


def local_input(t: Float[ArrayLike, ""], dosing: LocalDosing,
                width: Float[ArrayLike, ""] = DEFAULT_WIDTH_H,
                coords: Sequence[Float[ArrayLike, "*grid"]] | None = None,
                rate: Float[ArrayLike, ""] | None = None) -> Float[Array, "*grid"]:
    """Input rate (ng/mL/h) of an intratumoral agent into its depot at time ``t`` (h).

    With ``coords`` (the grid's cell-centre coordinates, µm) the dose is deposited at
    ``dosing.deposit``; without, it is spread evenly in ``dosing.volume_ml``.
    rate: :func:`local_rate` at ``t`` when the caller has it already (a tabulated value).
    """
    _, _, deposit, volume_ml = dosing
    rate = local_rate(t, dosing, width) if rate is None else rate  # ng/h
    if coords is None:
        if volume_ml is None:
            raise ValueError(f"well-mixed intratumoral dosing needs its volume: set "
                             f"{WELL_MIXED_VOLUME} (mL)")
        return rate / volume_ml
    if deposit is None:
        raise ValueError("intratumoral dosing on a grid needs an injection site: set "
                         "it_<agent>_x/_y/_z and it_<agent>_width (µm)")
    return rate * gaussian_site(coords, deposit.centre, deposit.width_um) * UM3_PER_ML


# -- agent library (label / literature PK; see docs/model.md) --------------------------------
_LN2 = math.log(2.0)

#: IFN-γ-1b s.c. (Actimmune label, section 12.3: single-dose s.c. PK stated for 100 µg/m² in
#: healthy men: Cmax ≈ 0.6 ng/mL at ≈ 7 h, AUC(0-∞) 8.29 ng·h/mL, terminal t½ 5.9 h).
#: ke = ln2/5.9 h; ka and V/F fitted through :func:`plasma_concentration` at the default pulse
#: width (its centre 3 h after the nominal dose time is part of the absorption delay): 173 µg
#: (100 µg/m² × 1.73 m²) gives Cmax 0.60 ng/mL at 7.2 h, AUC D/(V·ke) = 8.29 ng·h/mL. PK is
#: linear (rhesus monkeys 0.1 and 0.25 mg/kg i.v.: same clearance, t½, Vss; PMID 3129541), so
#: the clinical 50 µg/m² (86.5 µg) gives Cmax 0.30 ng/mL, AUC 4.15 ng·h/mL.
IFNG_1B_SC = PK(ke=_LN2 / 5.9, volume_ml=1.776e5, ka=0.48, bioavailability=1.0)
#: pembrolizumab i.v.: t½ 22 d, Vss ≈ 6.0 L (Keytruda label).
PEMBROLIZUMAB_IV = PK(ke=_LN2 / (22 * 24.0), volume_ml=6.0e3)
#: nivolumab i.v.: t½ 25 d, Vss 8 L (Opdivo label).
NIVOLUMAB_IV = PK(ke=_LN2 / (25 * 24.0), volume_ml=8.0e3)
#: PD-L1-induction blocker (triptolide-like small molecule, oral): t½ 12 h, ka 1 /h, V/F 50 L
#: (estimates).
PDL1_BLOCKER_ORAL = PK(ke=_LN2 / 12.0, volume_ml=5.0e4, ka=1.0)
#: TGF-β blockade (antibody / trap, fresolimumab-like) i.v.: t½ ≈ 14 d, V 5 L (estimates).
TGFB_BLOCKADE_IV = PK(ke=_LN2 / (14 * 24.0), volume_ml=5.0e3)


def dose_events(params: Mapping, t_end: float | None = None) -> dict[str, np.ndarray]:
    """Dose times (h) per schedule found in a parameter dict, for plots and result files.

    Every schedule (:func:`schedule_prefixes`; doses with amount 0 are unused slots and
    skipped) and every infusion with a non-zero rate (:func:`infusion_prefixes`: its start and
    stop), keyed by prefix in the order of the dict. Times after ``t_end`` are dropped.
    """
    events = {schedule_keys(p)[0]: (p, True) for p in schedule_prefixes(params)}
    events.update({infusion_keys(p)[2]: (p, False) for p in infusion_prefixes(params)})
    out = {}
    for key in params:
        if key not in events:
            continue
        name, bolus = events[key]
        if bolus:
            times, amounts = schedule_keys(name)
            t = np.atleast_1d(np.asarray(params[times], float))
            t = t[np.atleast_1d(np.asarray(params[amounts], float)) != 0]
        else:
            start, stop, rate = infusion_keys(name)
            if not np.any(np.asarray(params[rate], float) != 0):
                continue
            t = np.array([float(params[start]), float(params[stop])])
        if t_end is not None:
            t = t[t <= t_end]
        if t.size:
            out[name] = np.sort(t)
    return out
