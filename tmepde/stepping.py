"""Time stepping: schemes, the checkpointed scan loop and the :class:`Simulator`.

Schemes (``scheme=``):

``sbdf2``   IMEX BDF2 (default). Stiff linear part (diffusion, decay, local uptake) implicit
            and solved exactly in transform space, reactions and chemotaxis extrapolated
            explicitly. Second order; stable far beyond the explicit diffusion limit;
            steady states of ``S y + N(y) = 0`` are exact fixed points. The first step is
            Richardson-extrapolated IMEX Euler (second order, stiff modes damped).
``sbdf1``   IMEX Euler, first order (for comparison; what LOD/BioFVM-style codes do).
``rk4``     classical explicit Runge–Kutta, the validation reference (dt must respect the
            explicit diffusion limit).
``ssprk3``  explicit strong-stability-preserving RK3 (Shu–Osher): positivity with the
            chemotaxis flux limiter.
``euler``   explicit forward Euler (the one-RHS kernel the benchmarks time).

Loop structure: an outer ``lax.scan`` over saves, each save interval a scan over blocks of
~√n steps, every level ``jax.checkpoint``-ed: reverse-mode memory is about
``n_saves + 2√(steps per save)`` states, not one per step.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Mapping

import jax
import jax.numpy as jnp

from .discretization import Discretization
from .grid import Grid
from .model import Model

SCHEMES = ("sbdf2", "sbdf1", "rk4", "ssprk3", "euler")
IMPLICIT_SCHEMES = ("sbdf2", "sbdf1")


class Simulator:
    """Compiled time integration of a model on a grid.

    dt: time step (h). save_every: output interval (h), a whole multiple of ``dt``.
    scheme: see the module docstring. dtype: ``jnp.float32`` or ``jnp.float64``
    (float64 needs ``jax.config.update("jax_enable_x64", True)``).

    The pure function :meth:`run` (params, y0) -> saved states is jit-, grad- and
    vmap-compatible; parameters are traced arrays, so new values never recompile.
    """

    def __init__(self, model: Model, grid: Grid, *, dt: float, save_every: float | None = None,
                 scheme: str = "sbdf2", dtype=None, cg_tol: float | None = None,
                 chemotaxis_limiter: bool = True):
        if scheme not in SCHEMES:
            raise ValueError(f"solver.scheme must be one of {SCHEMES}, got {scheme!r}")
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"time.dt must be a positive number of hours, got {dt!r}")
        save_every = dt if save_every is None else save_every
        ratio = save_every / dt
        if save_every <= 0 or abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio) or round(ratio) < 1:
            raise ValueError(
                f"time.save_every ({save_every} h) must be a positive whole multiple of "
                f"time.dt ({dt} h); e.g. set save_every = {max(1, round(ratio)) * dt}"
            )
        self.model = model
        self.grid = grid
        self.dt = float(dt)
        self.save_every = float(save_every)
        self.steps_per_save = int(round(ratio))
        self.scheme = scheme
        self.dtype = jnp.dtype(dtype) if dtype is not None else jnp.zeros(()).dtype
        self.disc = Discretization(model, grid, cg_tol=cg_tol)
        self.chemotaxis_limiter = chemotaxis_limiter
        if scheme not in IMPLICIT_SCHEMES:
            limit = self.disc.explicit_dt_limit(model.default_params())
            if self.dt > limit:
                warnings.warn(
                    f"explicit scheme {scheme!r} with dt = {self.dt:g} h exceeds the diffusion "
                    f"stability limit {limit:.3g} h for the default parameters; use "
                    "scheme = 'sbdf2' or a smaller dt", stacklevel=2)
        self._advance = jax.jit(self._advance_impl, static_argnums=(2,))

    # -- single steps --------------------------------------------------------------
    def init(self, y0, params, t0: float = 0.0) -> dict:
        """Carry for the time loop from an initial state ``(S, *shape)``.

        For ``sbdf2`` the carry looks one step ahead: it holds ``y`` (the state at the
        carry's time), ``y_next`` (one step later, the first from a Richardson-extrapolated
        IMEX Euler start) and the explicit rates at ``y``. Starting here, outside the loop,
        keeps a conditional out of the compiled step (XLA:CPU runs conditionals ~3x slower).
        """
        y0 = jnp.asarray(y0, self.dtype)
        carry = {"y": y0, "step": jnp.asarray(0, jnp.int32), "t0": jnp.asarray(t0, self.dtype)}
        if self.scheme == "sbdf2":
            carry.update(self._start(carry, self._as_params(params)))
        return carry

    def time(self, carry):
        return carry["t0"] + carry["step"].astype(self.dtype) * self.dt

    def step(self, carry: dict, params: Mapping) -> dict:
        """One step of length ``dt``."""
        params = self._as_params(params)
        t = self.time(carry)
        y = carry["y"]
        disc, dt = self.disc, self.dt
        limiter_dt = dt if self.chemotaxis_limiter else None
        if self.scheme in IMPLICIT_SCHEMES:
            if self.scheme == "sbdf1":
                n_now = disc.nonstiff(t, y, params, limiter_dt)
                return dict(carry, y=self._imex_euler(t, y, n_now, dt, params), step=carry["step"] + 1)
            # Look-ahead carry: advance (y, y_next) -> (y_next, BDF2 step from y_next).
            t_next = t + dt
            y_next = carry["y_next"]
            n_next = disc.nonstiff(t_next, y_next, params, limiter_dt)
            y_new = self._sbdf2_update(t_next, y_next, y, n_next, carry["n_prev"], params)
            return dict(carry, y=y_next, y_next=y_new, n_prev=n_next, step=carry["step"] + 1)

        def f(tt, yy, limiter=None):
            k_loc = disc.local_decay(tt, yy, params)
            return disc.stiff(tt, yy, params, k_loc) + disc.nonstiff(tt, yy, params, limiter)

        if self.scheme == "euler":
            y_new = y + dt * f(t, y, limiter_dt)
        elif self.scheme == "ssprk3":
            y1 = y + dt * f(t, y, limiter_dt)
            y2 = 0.75 * y + 0.25 * (y1 + dt * f(t + dt, y1, limiter_dt))
            y_new = y / 3 + 2 / 3 * (y2 + dt * f(t + dt / 2, y2, limiter_dt))
        else:  # rk4
            k1 = f(t, y)
            k2 = f(t + dt / 2, y + dt / 2 * k1)
            k3 = f(t + dt / 2, y + dt / 2 * k2)
            k4 = f(t + dt, y + dt * k3)
            y_new = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return dict(carry, y=disc.clip(y_new), step=carry["step"] + 1)

    def _imex_euler(self, t, y, n_now, dt, params):
        disc = self.disc
        k_loc = disc.local_decay(t + dt, y, params)
        return disc.clip(disc.implicit_solve(y + dt * n_now, dt, params, k_loc))

    @functools.partial(jax.jit, static_argnums=0)
    def _start(self, carry, params):
        """First step: Richardson extrapolation of IMEX Euler, ``2 E(dt/2)∘E(dt/2) - E(dt)``
        (second order; stiff modes still decay since both terms do)."""
        disc, dt, t, y = self.disc, self.dt, self.time(carry), carry["y"]
        limiter_dt = dt / 2 if self.chemotaxis_limiter else None
        n_now = disc.nonstiff(t, y, params, limiter_dt)
        full = self._imex_euler(t, y, n_now, dt, params)
        half = self._imex_euler(t, y, n_now, dt / 2, params)
        n_half = disc.nonstiff(t + dt / 2, half, params, limiter_dt)
        two_halves = self._imex_euler(t + dt / 2, half, n_half, dt / 2, params)
        return {"y_next": disc.clip(2 * two_halves - full), "n_prev": n_now}

    def _sbdf2_update(self, t, y, y_prev, n_now, n_prev, params):
        """BDF2 step from ``y`` at time ``t`` (``y_prev`` at ``t - dt``) to ``t + dt``."""
        disc, dt = self.disc, self.dt
        gamma = 2 * dt / 3
        rhs = (4 * y - y_prev) / 3 + gamma * (2 * n_now - n_prev)
        # Local decay rates at the extrapolated state keep the implicit coefficient O(dt²).
        y_star = disc.clip(2 * y - y_prev)
        k_loc = disc.local_decay(t + dt, y_star, params)
        # y_star is also an O(dt²) first guess for the conjugate-gradient groups.
        return disc.clip(disc.implicit_solve(rhs, gamma, params, k_loc, guess=y_star))

    # -- loops ---------------------------------------------------------------------
    def _advance_impl(self, carry, params, n_saves: int):
        # Two-level checkpointing inside each save interval: steps are grouped in blocks of
        # ~√(steps_per_save); reverse mode stores one carry per block and per step of the
        # block being recomputed, so memory grows as n_saves + 2√(steps_per_save) carries.
        n = self.steps_per_save
        block = max(1, math.isqrt(n))
        n_blocks, remainder = divmod(n, block)

        @jax.checkpoint
        def one_step(c, _):
            return self.step(c, params), None

        @jax.checkpoint
        def one_block(c, _):
            c, _ = jax.lax.scan(one_step, c, None, length=block)
            return c, None

        @jax.checkpoint
        def one_save(c, _):
            c, _ = jax.lax.scan(one_block, c, None, length=n_blocks)
            if remainder:
                c, _ = jax.lax.scan(one_step, c, None, length=remainder)
            return c, c["y"]

        return jax.lax.scan(one_save, carry, None, length=n_saves)

    def _as_params(self, params):
        """Parameters as arrays of the run's dtype, so one compiled program serves all values."""
        return {k: jnp.asarray(v, self.dtype) for k, v in params.items()}

    def advance(self, carry, params, n_saves: int):
        """Advance ``n_saves`` save intervals; returns ``(carry, ys)`` with ys
        ``(n_saves, S, *shape)`` the states at the end of each interval."""
        return self._advance(carry, self._as_params(params), int(n_saves))

    def run(self, params, y0, n_saves: int, t0: float = 0.0):
        """States at ``t0 + i * save_every`` for ``i = 0..n_saves``: ``(n_saves+1, S, *shape)``.

        Pure: differentiate or vmap it directly.
        """
        carry = self.init(y0, params, t0)
        _, ys = self.advance(carry, params, n_saves)
        return jnp.concatenate([carry["y"][None], ys])

    def save_times(self, n_saves: int, t0: float = 0.0):
        return t0 + self.save_every * jnp.arange(n_saves + 1)


def simulate(model: Model, grid: Grid, y0, *, t_end: float, dt: float, save_every: float | None = None,
             params: Mapping | None = None, scheme: str = "sbdf2", dtype=None, t0: float = 0.0):
    """Convenience wrapper: run ``model`` from ``y0`` (dict or stacked) to ``t_end`` (h).

    Returns ``(times (T,), fields {species: (T, *shape)})`` with T = number of saves + 1.
    """
    sim = Simulator(model, grid, dt=dt, save_every=save_every, scheme=scheme, dtype=dtype)
    n_saves = (t_end - t0) / sim.save_every
    if abs(n_saves - round(n_saves)) > 1e-9 * max(1.0, n_saves) or round(n_saves) < 1:
        raise ValueError(
            f"time.t_end - t0 ({t_end - t0} h) must be a positive whole multiple of save_every "
            f"({sim.save_every} h)")
    n_saves = int(round(n_saves))
    if params is None:
        params = model.default_params(sim.dtype)
    if isinstance(y0, Mapping):
        y0 = model.stack(y0, grid, sim.dtype)
    ys = sim.run(params, y0, n_saves, t0)
    return sim.save_times(n_saves, t0), model.fields_of(ys)
