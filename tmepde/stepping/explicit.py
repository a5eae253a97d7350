"""Explicit Runge–Kutta schemes, each given as a tableau (data) and one generic step.

The right-hand side is the whole semi-discrete system ``f(t, y) = S y + N(y)`` (diffusion,
decay, local uptake, reactions, chemotaxis); ``dt`` must respect the explicit diffusion limit
(:meth:`~tmepde.discretization.Discretization.explicit_dt_limit`). The step ends in the
positivity clip of :meth:`~tmepde.discretization.Discretization.clip`.

A tableau is written in the form its source gives it and evaluated in that form, so that the
arithmetic is the textbook one (the Shu–Osher form of SSPRK3 is a convex combination of
forward-Euler steps, which is what keeps it positive with the flux limiter; rewritten as a
Butcher tableau it agrees only to round-off). Weights are exact fractions. A new explicit
scheme is one more :func:`register` call at the end of this file.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from fractions import Fraction
from typing import Callable, Mapping, Sequence

from .base import Carry, StepContext, register

Rate = Callable  # f(t, y) -> dy/dt, same shape as y


def _fractions(rows) -> tuple:
    return tuple(tuple(Fraction(w) for w in row) for row in rows)


def _scaled(w: Fraction, x):
    """``w · x`` with the rounding of the literal textbook expression: ``x / 3`` for 1/3,
    ``0.75 * x`` for 3/4 (the same value as ``x * 3 / 4``), ``x`` for 1."""
    if w == 1:
        return x
    if w.numerator == 1 and w.denominator & (w.denominator - 1):  # 1/q, q not a power of 2
        return x / w.denominator
    return float(w) * x


def _weighted_sum(weights: Sequence[Fraction], terms: Sequence) -> tuple[int, object]:
    """``(q, Σ p_j · terms_j)`` with ``weights_j = p_j / q`` over a common denominator q,
    skipping zero weights (terms whose weight is 0 are never evaluated)."""
    q = math.lcm(*(w.denominator for w in weights if w))
    total = None
    for w, term in zip(weights, terms):
        if w:
            p = int(w * q)
            x = term() if p == 1 else p * term()
            total = x if total is None else total + x
    return q, total


@dataclasses.dataclass(frozen=True)
class ButcherTableau:
    """``k_i = f(t + c_i dt, y + dt Σ_j a_ij k_j)``, ``y⁺ = y + dt Σ_i b_i k_i`` (Butcher 2016,
    *Numerical Methods for ODEs*, §23). a: strictly lower rows 2..s (row i has i - 1 entries);
    b: s weights. c is the row sums of a."""

    a: tuple
    b: tuple

    def __post_init__(self):
        object.__setattr__(self, "a", _fractions(self.a))
        object.__setattr__(self, "b", tuple(Fraction(w) for w in self.b))
        if len(self.a) != len(self.b) - 1 or any(len(r) != i + 1 for i, r in enumerate(self.a)):
            raise ValueError("Butcher tableau: row i of a needs i entries (i = 1..s-1), b needs s")

    @property
    def stages(self) -> int:
        return len(self.b)

    def evaluate(self, f: Rate, t, y, dt: float):
        """One step of length ``dt`` from ``(t, y)``."""
        c = (Fraction(0),) + tuple(sum(row) for row in self.a)
        k: list = []
        for i in range(self.stages):
            if i == 0:
                y_i = y
            else:
                q, incr = _weighted_sum(self.a[i - 1], [functools.partial(k.__getitem__, j) for j in range(i)])
                y_i = y + dt / q * incr
            k.append(f(t if c[i] == 0 else t + dt * float(c[i]), y_i))
        q, incr = _weighted_sum(self.b, [functools.partial(k.__getitem__, j) for j in range(self.stages)])
        return y + dt / q * incr


@dataclasses.dataclass(frozen=True)
class ShuOsherTableau:
    """``u⁰ = y``, ``uⁱ = Σ_{j<i} α_ij (uʲ + dt (β_ij/α_ij) f(t + c_j dt, uʲ))``, ``y⁺ = uˢ``
    (Shu & Osher 1988, J. Comput. Phys. 77:439; Gottlieb, Shu & Tadmor 2001, SIAM Rev. 43:89):
    with α, β ≥ 0 and Σ_j α_ij = 1 each stage is a convex combination of forward-Euler steps,
    so a step keeps any convex property (positivity) that forward Euler keeps for
    ``dt ≤ min α/β · dt_FE``. alpha, beta: rows 1..s, row i with i entries; β_ij > 0 needs
    α_ij > 0."""

    alpha: tuple
    beta: tuple

    def __post_init__(self):
        object.__setattr__(self, "alpha", _fractions(self.alpha))
        object.__setattr__(self, "beta", _fractions(self.beta))
        shapes_ok = len(self.alpha) == len(self.beta) and all(
            len(a) == len(b) == i + 1 for i, (a, b) in enumerate(zip(self.alpha, self.beta)))
        if not shapes_ok or any(b and not a for ra, rb in zip(self.alpha, self.beta) for a, b in zip(ra, rb)):
            raise ValueError("Shu–Osher tableau: row i of alpha and beta needs i entries, "
                             "and beta_ij > 0 only where alpha_ij > 0")

    @property
    def stages(self) -> int:
        return len(self.alpha)

    def evaluate(self, f: Rate, t, y, dt: float):
        """One step of length ``dt`` from ``(t, y)``."""
        c = [Fraction(0)]  # stage times: c_i = Σ_j α_ij c_j + β_ij
        for ra, rb in zip(self.alpha, self.beta):
            c.append(sum(a * cj + b for a, b, cj in zip(ra, rb, c)))
        u, rates = [y], {}

        def rate(j):
            if j not in rates:
                rates[j] = f(t if c[j] == 0 else t + dt * float(c[j]), u[j])
            return rates[j]

        for ra, rb in zip(self.alpha, self.beta):
            total = None
            for j, (a, b) in enumerate(zip(ra, rb)):
                if not a:
                    continue
                r = b / a
                v = u[j] if not r else u[j] + (dt if r == 1 else dt * float(r)) * rate(j)
                x = _scaled(a, v)
                total = x if total is None else total + x
            u.append(total)
        return u[-1]


@dataclasses.dataclass(frozen=True)
class ExplicitRK:
    """An explicit Runge–Kutta scheme from a tableau.

    limiter: evaluate chemotaxis with the flux limiter (time scale dt); without it the
    scheme is the unlimited reference discretisation."""

    name: str
    tableau: ButcherTableau | ShuOsherTableau
    order: int
    limiter: bool = True
    implicit: bool = False
    history: int = 0

    def start(self, ctx: StepContext, carry: Carry, params: Mapping) -> Carry:
        return carry

    def step(self, ctx: StepContext, carry: Carry, params: Mapping) -> Carry:
        disc, dt = ctx.disc, ctx.dt
        limiter_dt = ctx.limiter_dt(dt) if self.limiter else None

        def f(t, y):
            k_loc = disc.local_decay(t, y, params)
            return disc.stiff(t, y, params, k_loc) + disc.nonstiff(t, y, params, limiter_dt)

        y_new = self.tableau.evaluate(f, ctx.time(carry), carry.y, dt)
        return carry.replace(y=disc.clip(y_new), step=carry.step + 1)

    def warnings(self, ctx: StepContext) -> list[str]:
        return []


F = Fraction
RK4 = ButcherTableau(a=[[F(1, 2)], [0, F(1, 2)], [0, 0, 1]], b=[F(1, 6), F(1, 3), F(1, 3), F(1, 6)])
SSPRK3 = ShuOsherTableau(alpha=[[1], [F(3, 4), F(1, 4)], [F(1, 3), 0, F(2, 3)]],
                         beta=[[1], [0, F(1, 4)], [0, 0, F(2, 3)]])
EULER = ButcherTableau(a=[], b=[1])

# Classical RK4: the validation reference, with unlimited chemotaxis fluxes.
register(ExplicitRK("rk4", RK4, order=4, limiter=False))
# Strong-stability-preserving RK3 (Shu–Osher): positivity with the chemotaxis flux limiter.
register(ExplicitRK("ssprk3", SSPRK3, order=3))
# Forward Euler: the one-RHS kernel the engine benchmarks time.
register(ExplicitRK("euler", EULER, order=1))
