"""The :class:`Simulator`: a registered scheme, a run context and the compiled loop."""

from __future__ import annotations

import functools
import math
import os
import warnings
from typing import Mapping

import jax
import jax.numpy as jnp

from ..discretization import Discretization
from ..grid import Grid
from ..model import Model
from ..timegrid import check_time_grid, whole_multiple
from . import imex
from .base import SCHEMES, Carry, StepContext
from .loop import advance as _advance_loop


class Simulator:
    """Compiled time integration of a model on a grid.

    dt: time step (h). save_every: output interval (h), a whole multiple of ``dt``.
    scheme: a name in :data:`~tmepde.stepping.SCHEMES` (see :mod:`tmepde.stepping`). dtype:
    ``jnp.float32`` or ``jnp.float64`` (float64 needs
    ``jax.config.update("jax_enable_x64", True)``). start_window: hours of graded start
    (IMEX BDF schemes). fused_transforms: one 2D FFT for two zero-flux trailing axes (faster;
    :func:`~tmepde.batch.run_domain_sharded` turns it off).

    The pure function :meth:`run` (params, y0) -> saved states is jit-, grad- and
    vmap-compatible; parameters are traced arrays, so new values never recompile. Each
    simulator compiles its own start and loop (jitted closures over its static
    :class:`~tmepde.stepping.base.StepContext`), freed with it.
    """

    def __init__(self, model: Model, grid: Grid, *, dt: float, save_every: float | None = None,
                 scheme: str = "sbdf2", dtype=None, cg_tol: float | None = None,
                 chemotaxis_limiter: bool = True, start_window: float = 1.0,
                 fused_transforms: bool = True):
        if scheme not in SCHEMES:
            raise ValueError(f"solver.scheme must be one of {tuple(SCHEMES)}, got {scheme!r}")
        save_every = dt if save_every is None else save_every
        steps_per_save = check_time_grid(dt, save_every)  # the time grid's one validator
        if not (isinstance(start_window, (int, float)) and math.isfinite(start_window) and start_window >= 0):
            raise ValueError(f"solver.start_window must be a number of hours >= 0, got {start_window!r}")
        self.model = model
        self.grid = grid
        self.dt = float(dt)
        self.save_every = float(save_every)
        self.steps_per_save = steps_per_save
        self.scheme = scheme
        self.stepper = SCHEMES[scheme]
        self.dtype = jnp.dtype(dtype) if dtype is not None else jnp.zeros(()).dtype
        self.fused_transforms = fused_transforms
        self.chemotaxis_limiter = chemotaxis_limiter
        # Implicit schemes solve slowly diffusing species on the stencil (Discretization._slow_diffusion).
        self.disc = Discretization(model, grid, cg_tol=cg_tol, fused_transforms=fused_transforms,
                                   stencil_dt=self.dt if self.stepper.implicit else None)
        self._options = dict(dt=dt, save_every=save_every, scheme=scheme, dtype=dtype, cg_tol=cg_tol,
                             chemotaxis_limiter=chemotaxis_limiter, start_window=start_window,
                             fused_transforms=fused_transforms)
        # IMEX BDF: the first `start_steps` steps (about start_window hours, at most one save
        # interval) are integrated on a graded mesh; see imex.ImexBDF.start.
        self.start_steps = max(1, min(self.steps_per_save, math.ceil(start_window / self.dt - 1e-9)))
        self.bdf_order = self.stepper.history
        self.context = StepContext(self.disc, self.dt, self.dtype, chemotaxis_limiter, self.start_steps)
        if not self.stepper.implicit:
            limit = self.disc.explicit_dt_limit(model.default_params())
            if self.dt > limit:
                warnings.warn(
                    f"explicit scheme {scheme!r} with dt = {self.dt:g} h exceeds the diffusion "
                    f"stability limit {limit:.3g} h for the default parameters; use "
                    "scheme = 'sbdf2' or a smaller dt", stacklevel=2)
        for message in self.stepper.warnings(self.context):
            warnings.warn(message, stacklevel=2)
        start = functools.partial(self.stepper.start, self.context)
        # One-step schemes have nothing to compute at the start (and nothing to compile).
        self._start = jax.jit(start) if self.stepper.history else start
        self._advance = jax.jit(functools.partial(
            _advance_loop, functools.partial(self.stepper.step, self.context), self.steps_per_save,
            # schemes that evaluate their reactions once per step at a known time
            tabulate=self._tabulate if hasattr(self.stepper, "explicit_times") else None),
            static_argnums=(2,))

    def _tabulate(self, carry: Carry, n_steps: int, params):
        """The model's inputs at the explicit-rate times of the next ``n_steps`` loop steps
        (read when the loop is traced; none: an empty table, nothing looked up)."""
        steps = carry.step + jnp.arange(n_steps, dtype=carry.step.dtype)
        return self.model.tabulate_inputs(self.stepper.explicit_times(self.context, carry.t0, steps), params)

    def replace(self, **changes) -> "Simulator":
        """A new simulator with the same model, grid and options except ``changes``."""
        return Simulator(self.model, self.grid, **dict(self._options, **changes))

    # -- single steps --------------------------------------------------------------
    def init(self, y0, params, t0: float = 0.0) -> Carry:
        """Carry for the time loop (:class:`~tmepde.stepping.base.Carry`) from an initial
        state ``(S, *shape)`` at time ``t0`` (h); multistep schemes run their start here."""
        self.model.check_params(params)
        return self._start(self._initial_carry(y0, t0), self._as_params(params))

    def _initial_carry(self, y0, t0) -> Carry:
        return Carry(y=jnp.asarray(y0, self.dtype), step=jnp.asarray(0, jnp.int32),
                     t0=jnp.asarray(t0, self.dtype))

    def time(self, carry: Carry):
        """Time (h) of ``carry.y``."""
        return self.context.time(carry)

    def step(self, carry: Carry, params: Mapping) -> Carry:
        """One step of length ``dt``."""
        return self.stepper.step(self.context, carry, self._as_params(params))

    def start_mesh(self):
        """Nodes (h from t0) of the graded start of an IMEX BDF scheme
        (:func:`tmepde.stepping.imex.start_mesh`)."""
        return imex.start_mesh(self.bdf_order, self.start_steps, self.dt)

    # -- loops ---------------------------------------------------------------------
    def _as_params(self, params):
        """Parameters as arrays of the run's dtype, so one compiled program serves all values."""
        return {k: jnp.asarray(v, self.dtype) for k, v in params.items()}

    def advance(self, carry: Carry, params, n_saves: int):
        """Advance ``n_saves`` save intervals; returns ``(carry, ys)`` with ys
        ``(n_saves, S, *shape)`` the states at the end of each interval."""
        self.model.check_params(params)
        return self._advance(carry, self._as_params(params), int(n_saves))

    def run(self, params, y0, n_saves: int, t0: float = 0.0):
        """States at ``t0 + i * save_every`` for ``i = 0..n_saves``: ``(n_saves+1, S, *shape)``.

        Pure: differentiate or vmap it directly.
        """
        carry = self.init(y0, params, t0)
        _, ys = self.advance(carry, params, n_saves)
        return jnp.concatenate([carry.y[None], ys])

    def _store_key(self):
        """Fingerprint of what this simulator's programs are built from (model, grid,
        options; :func:`tmepde.compile_cache.fingerprint`), or None when the model cannot be
        fingerprinted (its programs are then compiled as usual and never stored)."""
        from .. import compile_cache

        try:
            return compile_cache.fingerprint((self.model, self.grid, sorted(
                (k, repr(v)) for k, v in self._options.items())))
        except compile_cache.Unfingerprintable:
            return None

    def stored_loop(self, n_saves: int, store: str | os.PathLike | None) -> "StoredLoop":
        """:meth:`init` and :meth:`advance` (``n_saves`` saves per call) as programs kept in
        the program store ``store`` (a folder): a later process with the same set-up loads
        them without tracing (see :class:`StoredLoop`). ``store`` None: the simulator's own
        :meth:`init` and :meth:`advance`, unchanged."""
        return StoredLoop(self, int(n_saves), store)

    def program(self, params, y0, n_saves: int, store: str | os.PathLike | None = None):
        """:meth:`run` for ``n_saves`` saves compiled ahead of time as one program:
        returns ``(run, loaded)`` with ``run(params, y0, t0=0.0) -> ys`` for parameters and
        states shaped like the examples given, and ``loaded`` True when the program came from
        ``store``.

        With ``store`` (a folder), the compiled program is kept there under a fingerprint of
        the model, grid, options and library versions
        (:func:`tmepde.compile_cache.fingerprint`), so a later process with the same set-up
        loads it without tracing or compiling: a one-off solve then costs its run and the
        load (milliseconds) instead of seconds of tracing. A model whose content cannot be
        fingerprinted (an object with no inspectable state) is compiled as usual and not stored.
        """
        from .. import compile_cache

        example = (self._as_params(params), jnp.asarray(y0, self.dtype), jnp.asarray(0.0, self.dtype))
        whole = jax.jit(lambda p, y, t0: self.run(p, y, n_saves, t0))
        compiled, loaded = None, False
        if store is not None:
            key = self._store_key()
            if key is not None:
                compiled, loaded = compile_cache.load_or_compile(
                    store, (key, int(n_saves), "Simulator.run"), whole, *example)
        if compiled is None:
            compiled = whole.lower(*example).compile()

        def run(params, y0, t0: float = 0.0):
            self.model.check_params(params)
            return compiled(self._as_params(params), jnp.asarray(y0, self.dtype),
                            jnp.asarray(t0, self.dtype))

        return run, loaded

    def save_times(self, n_saves: int, t0: float = 0.0):
        return t0 + self.save_every * jnp.arange(n_saves + 1)


class StoredLoop:
    """A simulator's start and chunk loop as stored programs: the same calls as
    :meth:`Simulator.init` and :meth:`Simulator.advance` (with ``n_saves`` fixed), the
    same results bit for bit, but each program is loaded from the program store when a
    program of the same fingerprint is there (:func:`tmepde.compile_cache.load_or_compile`)
    and compiled and stored otherwise. A repeated ``tmepde run`` of a config so skips
    tracing and lowering its programs (~4 s of the default scenario's cached start on 2 CPU
    cores), which the XLA cache alone cannot (it needs the lowered program for its key).

    ``loaded``: ``{"start": bool, "advance": bool}`` for the programs fetched so far. Without
    a store, or for a model that cannot be fingerprinted, the calls are the simulator's own.
    """

    def __init__(self, sim: Simulator, n_saves: int, store):
        self.sim, self.n_saves, self.store = sim, int(n_saves), store
        self.key = None if store is None else sim._store_key()
        self.loaded: dict[str, bool] = {}
        self._programs: dict = {}

    def _program(self, name: str, make, *args):
        """The stored program ``name``; ``make()`` gives its jitted function on a first call."""
        if name not in self._programs:
            from .. import compile_cache

            # the start does not depend on the number of saves per call
            what = (self.key, name) if name == "start" else (self.key, name, self.n_saves)
            self._programs[name], self.loaded[name] = compile_cache.load_or_compile(
                self.store, what, make(), *args)
        return self._programs[name]

    def init(self, y0, params, t0: float = 0.0) -> Carry:
        """As :meth:`Simulator.init`."""
        sim = self.sim
        if self.key is None or not sim.stepper.history:  # one-step schemes: nothing to compile
            return sim.init(y0, params, t0)
        sim.model.check_params(params)
        p, carry = sim._as_params(params), sim._initial_carry(y0, t0)
        return self._program("start", lambda: sim._start, carry, p)(carry, p)

    def advance(self, carry: Carry, params):
        """As :meth:`Simulator.advance` with this loop's ``n_saves``: ``(carry, ys)``."""
        sim, n = self.sim, self.n_saves
        if self.key is None:
            return sim.advance(carry, params, n)
        sim.model.check_params(params)
        p = sim._as_params(params)

        def make():
            def advance(c, q):  # named: the XLA cache's entries are named after the program
                return sim._advance(c, q, n)
            return jax.jit(advance)

        return self._program("advance", make, carry, p)(carry, p)


def simulate(model: Model, grid: Grid, y0, *, t_end: float, dt: float, save_every: float | None = None,
             params: Mapping | None = None, scheme: str = "sbdf2", dtype=None, t0: float = 0.0):
    """Convenience wrapper: run ``model`` from ``y0`` (dict or stacked) to ``t_end`` (h).

    Returns ``(times (T,), fields {species: (T, *shape)})`` with T = number of saves + 1.
    """
    sim = Simulator(model, grid, dt=dt, save_every=save_every, scheme=scheme, dtype=dtype)
    check_time_grid(sim.dt, sim.save_every, t_end - t0)  # the run's length plays t_end's part
    n_saves = whole_multiple(t_end - t0, sim.save_every)
    if params is None:
        params = model.default_params(sim.dtype)
    if isinstance(y0, Mapping):
        y0 = model.stack(y0, grid, sim.dtype)
    ys = sim.run(params, y0, n_saves, t0)
    return sim.save_times(n_saves, t0), model.fields_of(ys)
