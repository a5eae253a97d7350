"""Exponential time differencing: exponential Euler (``etd1``) and ETD2RK (``etdrk2``).

Split ``y' = f(t, y) = L y + 𝒩(t, y)`` with ``L = D∇² - k_ref`` per species: the
homogeneous 5-point Laplacian and a constant reference decay. Every fast transform of
:mod:`tmepde.transforms` diagonalises ``L`` (eigenvalues ``λ = -(D μ + k_ref)``, ``μ`` those
of ``-∇²``), so ``exp(hL)`` and the φ-functions cost one transform pair each, as the
implicit solve of the IMEX schemes does. The linear part is integrated exactly, the rest
to order 1 / 2 (Cox & Matthews 2002, J. Comput. Phys. 176:430; Hochbruck & Ostermann 2010,
Acta Numer. 19:209):

* ``etd1``  ``y⁺ = y + h φ₁(hL) f(t, y)``  (exponential Euler, order 1)
* ``etdrk2`` ``a = y + h φ₁(hL) f(t, y)``, ``y⁺ = a + h φ₂(hL) [f(t+h, a) - f(t, y) - L (a - y)]``
  (Cox–Matthews ETD2RK, order 2; the bracket is ``𝒩(a) - 𝒩(y)``)

written in increment form (``e^z = 1 + z φ₁(z)``): the whole right-hand side ``f`` (the
Dirichlet lift, decays, local uptake, reactions, chemotaxis) is evaluated on the grid, and
only the φ-multipliers use ``L``. Hence steady states ``f(y) = 0`` are exact fixed points,
on a linear constant-coefficient problem (diffusion + decay + constant sources, any BC the
transforms support) both schemes are exact for every ``h``, and with zero-flux boundaries
and ``k_ref = 0`` an exponential-Euler step changes each species' total by exactly
``h Σ f`` (the constant mode has ``λ = 0`` and ``φ₁(0) = 1``).

Species whose linear decay varies in space (local uptake, decay maps): ``k_ref`` is the
midpoint ``(k_min + k_max)/2`` of the species' total decay ``k(x) = k + k_loc(t, y)`` at the
step's start, and the remainder ``(k_ref - k(x)) y`` stays in ``𝒩`` (explicit). With
``k ≥ 0`` the remainder's rate is at most ``(k_max - k_min)/2 < k_ref``, and a frozen mode's
exponential-Euler amplification ``e^{-ah} - (b/a)(1 - e^{-ah})`` (``a ≥ k_ref``,
``|b| < a``) stays in ``[-1, 1]`` for every ``h``; more generally
``‖e^{hL} + hφ₁(hL)(k_ref - k)‖₂ ≤ e^{-k_ref h} + (1 - e^{-k_ref h}) r``,
``r = (k_max - k_min)/(k_max + k_min) < 1``, since ``L`` is symmetric and ``hφ₁(hλ)`` is
largest, ``(1 - e^{-k_ref h})/k_ref``, at ``λ = -k_ref``. The minimum as reference would
leave ``|b| > a`` where ``k_max > 2 k_min``, unstable for large steps. ``L`` is fixed within
a step (both stages), which keeps the order.

Not supported (one-line ``ValueError``): diffusivity maps (no transform diagonalises
``∇·D(x)∇``) and spherical grids (radial shells, no fast transform); use ``sbdf2`` there.
Positivity: as the IMEX schemes, every stage ends in :meth:`Discretization.flush` and the
mass-keeping limiter :meth:`Discretization.clip`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import jax.numpy as jnp

from .. import operators
from .base import Carry, StepContext, register

PHI_SERIES_RADIUS = 0.5
"""``|z|`` below which φ₁, φ₂ are summed as Taylor series (no cancellation); above it the
closed forms ``expm1(z)/z`` and ``(expm1(z) - z)/z²`` lose at most ~``2 eps/|z|`` ≤ 4 eps."""
_PHI_TERMS = 14  # z^13/15! at |z| = 0.5 is 1e-16 of φ₂(0) = 1/2: below float64 round-off


def phi_functions(z):
    """``(φ₁(z), φ₂(z))`` elementwise for real ``z`` (any shape), stable at ``z → 0``.

    ``φ₁(z) = (e^z - 1)/z = Σ zʲ/(j+1)!``, ``φ₂(z) = (e^z - 1 - z)/z² = Σ zʲ/(j+2)!``
    (Hochbruck & Ostermann 2010, §2.1). For ``|z| <`` :data:`PHI_SERIES_RADIUS` the series
    (Horner, 14 terms); elsewhere the closed forms with ``expm1``. Both branches see a safe
    argument, so neither values nor derivatives meet 0/0.
    """
    z = jnp.asarray(z)
    small = jnp.abs(z) < PHI_SERIES_RADIUS
    zs = jnp.where(small, z, 0)
    p1 = jnp.zeros_like(zs)
    p2 = jnp.zeros_like(zs)
    for j in range(_PHI_TERMS - 1, -1, -1):
        p1 = p1 * zs + 1 / math.factorial(j + 1)
        p2 = p2 * zs + 1 / math.factorial(j + 2)
    zb = jnp.where(small, 1, z)
    em1 = jnp.expm1(zb)
    return jnp.where(small, p1, em1 / zb), jnp.where(small, p2, (em1 - zb) / (zb * zb))


def reference_decay(k_tot):
    """Constant decay (1/h) put in the exponential: the midpoint ``(k_min + k_max)/2`` over the
    grid of each species' total decay ``k_tot`` (S, *shape) -> (S, 1, ..). The remainder's rate
    is then below ``k_ref``, which keeps every step a contraction (module docstring)."""
    axes = tuple(range(1, k_tot.ndim))
    return (jnp.min(k_tot, axis=axes, keepdims=True) + jnp.max(k_tot, axis=axes, keepdims=True)) / 2


class _Linear:
    """The step's linear part ``L`` per species group, frozen at the step's start.

    For each group of the discretisation: the diffusivity ``D`` (µm²/h, (S, 1, ..)), the
    reference decay ``k_ref`` (1/h, (S, 1, ..); maps for non-diffusing species, for which
    ``L`` is diagonal on the grid) and the multipliers ``h φ₁(hλ)``, ``h φ₂(hλ)`` (h).
    """

    def __init__(self, scheme: str, disc, params, k_loc, h, dtype, need_phi2: bool):
        self.disc = disc
        self.parts = []
        for g, k_loc_g in zip(disc.groups, disc.split_groups(k_loc)):
            if g.kind == "radial":
                raise ValueError(f"solver.scheme = {scheme!r} needs a fast transform and does not "
                                 "support spherical grids; use scheme = \"sbdf2\"")
            k = disc.decay(params, g.index, dtype)
            if g.kind == "local":  # no diffusion: L = -k, diagonal on the grid
                z, D, k_ref = -h * k, None, k
            else:
                D = disc.diffusivity(params, g.index, dtype)
                if D.shape[1:] == disc.grid.shape:
                    names = [disc.model.names[i] for i in g.index]
                    raise ValueError(f"solver.scheme = {scheme!r} does not support diffusivity maps "
                                     f"(species {names}); use scheme = \"sbdf2\"")
                k_ref = reference_decay(k + k_loc_g)
                z = -h * (D * jnp.asarray(g.transform.eigenvalues, dtype) + k_ref)
            p1, p2 = phi_functions(z)
            self.parts.append((g, D, k_ref, h * p1, h * p2 if need_phi2 else None))

    def _per_group(self, v, fn):
        return self.disc.join_groups([fn(g, D, k_ref, m1, m2, u)
                                      for (g, D, k_ref, m1, m2), u in zip(self.parts, self.disc.split_groups(v))])

    def phi(self, which: int, v):
        """``h φ_which(hL) v`` for ``v`` (S, *shape) (units of ``v`` times h)."""

        def fn(g, D, k_ref, m1, m2, u):
            m = m1 if which == 1 else m2
            return m * u if g.transform is None else g.transform.apply_multiplier(u, m)

        return self._per_group(v, fn)

    def apply(self, v):
        """``L v = D∇²v - k_ref v`` (homogeneous Dirichlet values: the lift is in ``f``)."""
        grid = self.disc.grid

        def fn(g, D, k_ref, m1, m2, u):
            if D is None:
                return -k_ref * u
            return D * operators.laplacian(u, grid, g.bcs, homogeneous=True) - k_ref * u

        return self._per_group(v, fn)


@dataclasses.dataclass(frozen=True)
class ExponentialRK:
    """Exponential Euler (``stages = 1``) or Cox–Matthews ETD2RK (``stages = 2``); see the
    module docstring. One-step: the carry holds only ``y``."""

    name: str
    order: int
    implicit: bool = True  # the linear part is exact: no explicit diffusion limit
    history: int = 0

    def start(self, ctx: StepContext, carry: Carry, params: Mapping) -> Carry:
        return carry

    def warnings(self, ctx: StepContext) -> list[str]:
        return []

    def step(self, ctx: StepContext, carry: Carry, params: Mapping) -> Carry:
        disc, h, dtype = ctx.disc, ctx.dt, ctx.dtype
        t, y = ctx.time(carry), carry.y
        limiter_dt = ctx.limiter_dt(h)

        def rate(t, v):
            k_loc = disc.local_decay(t, v, params, positive=True)
            return disc.stiff(t, v, params, k_loc) + disc.nonstiff(t, v, params, limiter_dt), k_loc

        f0, k_loc = rate(t, y)
        lin = _Linear(self.name, disc, params, k_loc, h, dtype, need_phi2=self.order > 1)
        a = disc.clip(disc.flush(y + lin.phi(1, f0)))
        if self.order > 1:
            f1, _ = rate(t + h, a)
            a = disc.clip(disc.flush(a + lin.phi(2, f1 - f0 - lin.apply(a - y))))
        return carry.replace(y=a, step=carry.step + 1)


register(ExponentialRK("etd1", 1))
register(ExponentialRK("etdrk2", 2))

__all__ = ["ExponentialRK", "phi_functions", "reference_decay", "PHI_SERIES_RADIUS"]
