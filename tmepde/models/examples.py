"""Small example models (also used by tests, benchmarks and the README).

All use the engine units: µm, h, diffusivities in µm²/s.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..model import Chemotaxis, Model, Species


def _gray_scott_rates(t, y, p):
    u, v = y["u"], y["v"]
    uvv = u * v * v
    return {"u": -uvv + p["feed"] * (1 - u), "v": uvv - (p["feed"] + p["kill"]) * v}


def gray_scott(du: float = 0.2, dv: float = 0.1) -> Model:
    """Gray–Scott pattern formation (rates in 1/h, D in µm²/s)."""
    return Model(
        [Species("u", diffusivity=du, units="1"), Species("v", diffusivity=dv, units="1")],
        _gray_scott_rates, {"feed": 0.037, "kill": 0.06}, name="gray_scott")


def _fisher_rates(t, y, p):
    u = y["tumor"]
    return {"tumor": p["growth"] * u * (1 - u)}


def fisher_kpp(motility: float = 0.05, growth: float = 0.02) -> Model:
    """Logistic growth + random motility of tumor cells (Fisher–KPP).

    motility in µm²/s; growth in 1/h; density as a volume fraction (carrying capacity 1).
    Front speed ``2 sqrt(D r)``.
    """
    return Model([Species("tumor", diffusivity=motility, units="volume fraction")],
                 _fisher_rates, {"growth": growth}, name="fisher_kpp")


def _taxis_rates(t, y, p):
    cells, chem = y["cells"], y["chemokine"]
    return {"chemokine": p["secretion"] * y["source"] - 0.0 * cells}


def _taxis_uptake(t, y, p):
    return {"chemokine": p["uptake"] * y["cells"]}


def chemotaxis_demo(chi: float = 0.5, capacity: float = 1.0) -> Model:
    """Cells climbing a chemokine gradient made by a fixed source (Keller–Segel with volume
    filling), chemokine consumed by the cells (treated implicitly as local decay)."""
    return Model(
        [
            Species("cells", diffusivity=0.01,
                    chemotaxis=Chemotaxis("chemokine", sensitivity=chi, capacity=capacity),
                    units="volume fraction"),
            Species("chemokine", diffusivity=20.0, decay=0.5, units="ng/mL"),
            Species("source", diffusivity=0.0, units="1"),
        ],
        _taxis_rates, {"secretion": 1.0, "uptake": 2.0}, local_decay=_taxis_uptake,
        name="chemotaxis_demo")
