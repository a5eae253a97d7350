"""The names of dose parameters in a flat parameter dict (the one place that spells them).

Public through :mod:`tmepde.therapy`; kept apart from it so that reading a config or a
result file (``tmepde.config``, ``tmepde.io``, ``tmepde.summaries``) can use the naming
without importing JAX.

A model's parameters stay a flat ``{name: value}`` dict (what configs, result files,
fitters and gradients see). Dosing occupies these names, for an ``agent`` such as ``ifng``:

===============================  =====================  ======================================
name                             units                  meaning
===============================  =====================  ======================================
``sys_<agent>_times/_amounts``   h / ng                 systemic bolus schedule
``pk_<agent>_ke/_V/_F/_ka``      1/h, mL, 1, 1/h        one-compartment PK (``_ka`` absent: i.v.)
``it_<agent>_times/_amounts``    h / ng                 intratumoral bolus schedule
``inf_<agent>_start/_stop/_rate`` h, h, ng/h            sustained local release (infusion)
``it_<agent>_x/_y/_z/_width``    µm                     injection site and its s.d. (on a grid)
``it_volume_ml``                 mL                     well-mixed volume (no grid)
===============================  =====================  ======================================

Any model may name further schedules ``<prefix>_times`` / ``<prefix>_amounts`` and infusions
``<prefix>_start`` / ``_stop`` / ``_rate``; :func:`schedule_prefixes` and
:func:`infusion_prefixes` find them.
"""

from __future__ import annotations

from typing import Iterable, Mapping

__all__ = ["SYSTEMIC", "LOCAL", "WELL_MIXED_VOLUME", "NONNEGATIVE_SUFFIXES", "systemic_prefix",
           "local_prefix", "infusion_prefix", "schedule_keys", "pk_keys", "infusion_keys", "deposit_keys",
           "is_dose_amount_key", "is_dosing_key", "schedule_prefixes", "infusion_prefixes"]

SYSTEMIC = "sys"
LOCAL = "it"
_PK = "pk"
_INFUSION = "inf"
_TIMES, _AMOUNTS = "_times", "_amounts"
_START, _STOP, _RATE = "_start", "_stop", "_rate"
WELL_MIXED_VOLUME = f"{LOCAL}_volume_ml"
# None of these can be negative (a negative time, amount or rate is a typo, not a schedule).
NONNEGATIVE_SUFFIXES = (_TIMES, _AMOUNTS, _RATE, _START, _STOP)
# PK field of tmepde.therapy.PK -> parameter suffix (short names kept from the label tables)
_PK_SUFFIX = {"ke": "ke", "volume_ml": "V", "bioavailability": "F", "ka": "ka"}
_AXES = "xyz"


def systemic_prefix(agent: str) -> str:
    """Schedule prefix of a systemic agent: ``sys_<agent>``."""
    return f"{SYSTEMIC}_{agent}"


def local_prefix(agent: str) -> str:
    """Schedule prefix of an intratumoral agent: ``it_<agent>``."""
    return f"{LOCAL}_{agent}"


def schedule_keys(prefix: str) -> tuple[str, str]:
    """``(times_key, amounts_key)`` of the schedule ``prefix`` (e.g. ``"sys_ifng"``)."""
    return prefix + _TIMES, prefix + _AMOUNTS


def pk_keys(agent: str) -> dict[str, str]:
    """``{PK field: parameter name}``: ke, volume_ml, bioavailability, ka (in that order)."""
    return {field: f"{_PK}_{agent}_{suffix}" for field, suffix in _PK_SUFFIX.items()}


def infusion_prefix(agent: str) -> str:
    """Infusion prefix of an intratumoral agent: ``inf_<agent>``."""
    return f"{_INFUSION}_{agent}"


def infusion_keys(prefix: str) -> tuple[str, str, str]:
    """``(start, stop, rate)`` parameter names of the infusion ``prefix`` (e.g. ``"inf_il12"``)."""
    return prefix + _START, prefix + _STOP, prefix + _RATE


def deposit_keys(agent: str, ndim: int = 3) -> tuple[tuple[str, ...], str]:
    """``((x, y, z)[:ndim] centre names, width name)`` of an agent's injection site."""
    if not 1 <= ndim <= 3:
        raise ValueError(f"an injection site has 1 to 3 coordinates, got ndim={ndim!r}")
    prefix = local_prefix(agent)
    return tuple(f"{prefix}_{ax}" for ax in _AXES[:ndim]), f"{prefix}_width"


def is_dose_amount_key(name: str) -> bool:
    """Whether ``name`` holds dose amounts (ng) of a schedule, e.g. ``sys_ifng_amounts``."""
    return name.endswith(_AMOUNTS)


def is_dosing_key(name: str) -> bool:
    """Whether ``name`` is one of the dosing names above (schedule, PK, infusion, injection
    site or well-mixed volume), e.g. ``pk_ifng_ke`` or ``it_il12_width``."""
    return name.startswith(tuple(f"{p}_" for p in (SYSTEMIC, LOCAL, _PK, _INFUSION)))


def schedule_prefixes(names: Iterable[str]) -> list[str]:
    """Prefixes of every complete schedule (both ``_times`` and ``_amounts``) in ``names``,
    in the order their ``_times`` appear."""
    names = list(names)
    have = set(names)
    return [k[:-len(_TIMES)] for k in names
            if k.endswith(_TIMES) and schedule_keys(k[:-len(_TIMES)])[1] in have]


def infusion_prefixes(names: Iterable[str]) -> list[str]:
    """Prefixes ``p`` with all of ``p_start``, ``p_stop``, ``p_rate`` in ``names``."""
    names = list(names)
    have = set(names)
    return [k[:-len(_RATE)] for k in names
            if k.endswith(_RATE) and set(infusion_keys(k[:-len(_RATE)])) <= have]


def _require(params: Mapping, names: Iterable[str], what: str) -> None:
    missing = [n for n in names if n not in params]
    if missing:
        raise KeyError(f"{what}: parameters {missing} are missing; the model names them "
                       f"as in tmepde.therapy (e.g. model.params() lists them)")
