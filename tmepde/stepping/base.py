"""What every time-stepping scheme shares: the typed carry, the static run context, the
:class:`Scheme` protocol and the registry :data:`SCHEMES`.

A scheme is an immutable description (a Butcher tableau, a BDF order, ...) registered once by
name with :func:`register`; the :class:`~tmepde.stepping.simulator.Simulator` pairs it with a
:class:`StepContext` (the run's discretisation, step and dtype) and compiles pure functions of
``(carry, params)``. Schemes hold no run state, so one object serves every simulator.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol, runtime_checkable

import jax
import numpy as np

from ..discretization import Discretization


@dataclasses.dataclass(frozen=True)
class Carry:
    """State of the time loop between steps (a JAX pytree).

    y: the state ``(S, *shape)`` at time ``t0 + step · dt``. step: int32 steps taken since
    ``t0``. t0: the run's start time (h), in the run's dtype. ahead / n_ahead: multistep
    history, empty for one-step schemes; for the IMEX BDF schemes of order ``k`` the ``k``
    states the next step is built from (oldest first) and the explicit rates at all but the
    newest of them (:mod:`tmepde.stepping.imex`).

    Leaves flatten in the order ``ahead, n_ahead, step, t0, y`` (restart files store them in
    that order; ``--resume`` rebuilds the tree from a fresh :meth:`Simulator.init`).
    """

    y: Any
    step: Any
    t0: Any
    ahead: tuple = ()
    n_ahead: tuple = ()

    def replace(self, **changes) -> "Carry":
        return dataclasses.replace(self, **changes)


_CARRY_FIELDS = ("ahead", "n_ahead", "step", "t0", "y")
jax.tree_util.register_dataclass(Carry, data_fields=list(_CARRY_FIELDS), meta_fields=[])


@dataclasses.dataclass(frozen=True, eq=False)
class StepContext:
    """Static configuration of one run, closed over by the compiled step (never traced).

    disc: the spatial discretisation (its methods are looked up when a step is traced, so a
    caller may swap e.g. ``disc.clip`` before the first run). dt: step (h). dtype: the state's
    floating dtype. chemotaxis_limiter: limit chemotactic fluxes with the step as time scale.
    start_steps: steps ``m`` of the graded start of the IMEX BDF schemes (1 ≤ m ≤ steps per
    save). Compared and hashed by identity: each simulator owns one.
    """

    disc: Discretization
    dt: float
    dtype: np.dtype
    chemotaxis_limiter: bool = True
    start_steps: int = 1

    def time(self, carry: Carry):
        """Time (h) of ``carry.y``."""
        return carry.t0 + carry.step.astype(self.dtype) * self.dt

    def limiter_dt(self, h):
        """Time scale of the chemotaxis flux limiter for a step of length ``h``; None: off."""
        return h if self.chemotaxis_limiter else None


@runtime_checkable
class Scheme(Protocol):
    """A time-stepping scheme.

    name: key in :data:`SCHEMES` (``solver.scheme``). order: formal temporal order.
    implicit: whether the stiff linear part (diffusion, decay, local uptake) is implicit, so
    that ``dt`` is not bounded by the explicit diffusion limit. history: multistep states the
    carry holds (``len(carry.ahead)``; 0 for one-step schemes).

    ``start(ctx, carry, params)`` completes a carry holding only ``y``, ``step = 0`` and
    ``t0`` (one-step schemes return it unchanged); ``step(ctx, carry, params)`` advances it
    by ``ctx.dt``. Both are pure and traceable; params are arrays of ``ctx.dtype``.
    ``warnings(ctx)`` lists messages about a poor choice of options (never errors).
    """

    name: str
    order: int
    implicit: bool
    history: int

    def start(self, ctx: StepContext, carry: Carry, params: Mapping) -> Carry: ...

    def step(self, ctx: StepContext, carry: Carry, params: Mapping) -> Carry: ...

    def warnings(self, ctx: StepContext) -> list[str]: ...


SCHEMES: dict[str, Scheme] = {}
"""Registered schemes by name, in the order they are listed to users (``sbdf2`` first)."""


def register(scheme: Scheme) -> Scheme:
    """Add ``scheme`` to :data:`SCHEMES` under ``scheme.name``; returns it."""
    if not isinstance(scheme, Scheme):
        raise TypeError(f"{scheme!r} does not implement the Scheme protocol")
    if scheme.name in SCHEMES:
        raise ValueError(f"a time-stepping scheme named {scheme.name!r} is already registered")
    SCHEMES[scheme.name] = scheme
    return scheme
