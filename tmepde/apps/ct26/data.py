"""CT26 caliper volumes: loading, and the observation arrays of a population fit.

Data: ``tmepde/data/ct26/ct26_tumor_volumes.csv`` (Ryapolova and Babaev 2026; README there):
subcutaneous CT26 tumors in BALB/c mice, arms PBS, rVSV-GFP and rVSV-mIL12-mGMCSF,
intratumoral injections on days 11, 14 and 17. Animals leave the table when sacrificed with a
large tumor; a fit treats the next scheduled measurement as right-censored (volume above the
last one measured), not as missing at random. A reading of 0 (no palpable tumor) is below the
caliper's limit of quantification: a fit given that limit treats it as left-censored (volume
below the limit; Beal 2001, method M3), not as a measured volume of 0.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np

from tmepde.fit import PopulationData

DATA_PATH = Path(__file__).resolve().parents[2] / "data" / "ct26" / "ct26_tumor_volumes.csv"
PBS_ARM = "PBS"
IL12_ARM = "rVSV-mIL12-mGMCSF"
INJECTION_DAYS = (11, 14, 17)
FLOOR_MM3 = 10.0          # mm³ added inside the log: caliper detection floor, so 0 enters as log 10


def smallest_reading(arms: list["Arm"]) -> float:
    """Smallest non-zero volume (mm³) of ``arms``: the lowest volume the calipers quantified,
    taken as the limit of quantification of the zero readings."""
    v = np.concatenate([a.volumes.ravel() for a in arms])
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        raise ValueError("fit.lloq_mm3: the data hold no non-zero volume to take the limit from; set it")
    return float(v.min())


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm: ``volumes[m, d]`` (mm³, NaN = not measured) of mouse ``mice[m]`` on ``days[d]``."""

    name: str
    mice: np.ndarray
    days: np.ndarray
    volumes: np.ndarray

    def last_day(self, m: int) -> int:
        """Last measurement day of mouse index ``m``."""
        return int(self.days[np.isfinite(self.volumes[m])].max())


def load_data(path: str | Path | None = None) -> dict[str, Arm]:
    """Read a csv with columns arm, mouse, day, volume_mm3 -> ``{arm: Arm}``."""
    path = Path(path) if path is not None else DATA_PATH
    if not path.exists():
        raise FileNotFoundError(f"fit.data: {str(path)!r} not found; name a csv with columns arm, "
                                "mouse, day, volume_mm3 (absent = the packaged CT26 file)")
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = {"arm", "mouse", "day", "volume_mm3"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"fit.data: {path} needs columns {sorted(need)}, got "
                         f"{sorted(rows[0]) if rows else 'no rows'}")
    out = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        sub = [r for r in rows if r["arm"] == arm]
        mice = np.array(sorted({int(r["mouse"]) for r in sub}))
        days = np.array(sorted({int(r["day"]) for r in sub}))
        vol = np.full((len(mice), len(days)), np.nan)
        for r in sub:
            vol[np.searchsorted(mice, int(r["mouse"])), np.searchsorted(days, int(r["day"]))] = float(r["volume_mm3"])
        out[arm] = Arm(arm, mice, days, vol)
    return out


def population_data(arms: list[Arm], day0: int, n_days: int, doses: list[float],
                    lloq_mm3: float | None = None) -> PopulationData:
    """Observation arrays on days ``day0 .. day0 + n_days`` for the animals of ``arms``.

    y = log(V + FLOOR_MM3). A mouse whose last measurement precedes its arm's last day left
    the study with a large tumor: its arm's next measurement day is a right-censored point,
    ``log V > log(V_last + FLOOR_MM3)``. lloq_mm3: limit of quantification (mm³); given, a
    zero reading is left-censored, ``log(V + FLOOR_MM3) < log(lloq_mm3 + FLOOR_MM3)``
    (``censored`` −1); None: it enters as an observed log FLOOR_MM3. covariates: the IL-12
    dose of each animal's arm (ng).
    """
    n_t = n_days + 1
    ys, obs, cen, cmask, cov = [], [], [], [], []
    for arm, dose in zip(arms, doses):
        for m in range(len(arm.mice)):
            y, o, c, cm = (np.zeros(n_t) for _ in range(4))
            for d, day in enumerate(arm.days):
                v = arm.volumes[m, d]
                if np.isfinite(v) and 0 <= day - day0 < n_t:
                    if v == 0 and lloq_mm3 is not None:
                        c[day - day0], cm[day - day0] = math.log(lloq_mm3 + FLOOR_MM3), -1.0
                    else:
                        y[day - day0], o[day - day0] = math.log(v + FLOOR_MM3), 1.0
            last = arm.last_day(m)
            later = arm.days[arm.days > last]
            if later.size and later[0] - day0 < n_t:
                v_last = arm.volumes[m, np.searchsorted(arm.days, last)]
                c[later[0] - day0], cm[later[0] - day0] = math.log(v_last + FLOOR_MM3), 1.0
            ys.append(y), obs.append(o), cen.append(c), cmask.append(cm), cov.append(dose)
    return PopulationData(np.array(ys), np.array(obs), np.array(cen), np.array(cmask), np.array(cov))
