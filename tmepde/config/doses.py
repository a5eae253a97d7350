"""Dose amounts written with their units, and the patient they are scaled to.

Clinicians write doses as labels do: IFN-γ-1b "50 ug/m2", pembrolizumab "200 mg" or
"2 mg/kg". A ``*_amounts`` parameter in ``[model.params]`` may hold such strings (alone or
mixed with plain numbers, which are ng); they are converted to ng here, with the body-surface
area and weight of the ``[patient]`` table, so the resolved config and the model only ever
see ng. The conversion itself lives in :func:`tmepde.therapy.dose_to_ng`.
"""

from __future__ import annotations

import re
from typing import Mapping

from .._dose_keys import is_dose_amount_key  # tmepde.therapy's naming, without importing JAX
from .schema import NUMBER, ConfigError, Key, positive, short

__all__ = ["PATIENT", "PATIENT_DOC", "DOSE_UNITS", "is_dose_key", "dose_amounts_ng"]

# Reference adult (therapy.BSA_M2, therapy.WEIGHT_KG); repeated as literals so that reading
# a config does not import JAX (tests/test_package.py).
PATIENT = {
    "bsa_m2": Key(NUMBER, 1.73, "body-surface area (m²) for doses per m², e.g. \"50 ug/m2\"",
                  "bsa_m2 = 1.8", positive(" m²")),
    "weight_kg": Key(NUMBER, 70.0, "body weight (kg) for doses per kg, e.g. \"2 mg/kg\"",
                     "weight_kg = 80.0", positive(" kg")),
}
PATIENT_DOC = ("The virtual patient that dose amounts written with units per body-surface area "
               "or per weight are scaled to (`[model.params]` `*_amounts` may be strings such as "
               "`\"50 ug/m2\"`, `\"200 mg\"`, `\"2 mg/kg\"`; plain numbers are ng).")
DOSE_UNITS = "ng, ug (µg, mcg), mg, g, or any of them per m2 or per kg"

_AMOUNT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.+?)\s*$")


def is_dose_key(name: str) -> bool:
    """Parameters that hold dose amounts (ng), by the models' naming of dose schedules
    (:func:`tmepde.therapy.is_dose_amount_key`)."""
    return is_dose_amount_key(name)


def _one(v, path: str, patient: Mapping[str, float]) -> float:
    if not isinstance(v, str):
        return v
    m = _AMOUNT.match(v)
    if m is None:
        raise ConfigError(path, f"{path}: {short(v)} is not an amount with a unit; write e.g. "
                                f"\"50 ug/m2\", \"200 mg\" or a number in ng")
    from ..therapy import dose_to_ng

    try:
        return float(dose_to_ng(float(m.group(1)), m.group(2), bsa_m2=patient["bsa_m2"],
                                weight_kg=patient["weight_kg"]))
    except ValueError:
        raise ConfigError(path, f"{path}: unknown dose unit {m.group(2)!r} in {short(v)}; "
                                f"use {DOSE_UNITS}") from None


def dose_amounts_ng(value, path: str, patient: Mapping[str, float]):
    """``value`` (a number in ng, a string such as ``"50 ug/m2"``, or a list of these) with every
    string converted to ng for ``patient`` (``bsa_m2``, ``weight_kg``); other values pass
    unchanged (the caller checks types and shapes)."""
    if isinstance(value, list):
        return [_one(v, f"{path}[{i}]", patient) for i, v in enumerate(value)]
    return _one(value, path, patient)
