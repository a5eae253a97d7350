"""Time stepping: schemes, the checkpointed scan loop and the :class:`Simulator`.

Schemes (``scheme=``):

``sbdf2``   IMEX BDF2 (default). Stiff linear part (diffusion, decay, local uptake) implicit
            and solved exactly in transform space, reactions and chemotaxis extrapolated
            explicitly. Second order; stable far beyond the explicit diffusion limit;
            steady states of ``S y + N(y) = 0`` are exact fixed points. The first
            ``start_window`` hours (default 1, at most one save interval) are integrated on
            a graded mesh (variable-step BDF2), which keeps order 2 through an initial layer.
``sbdf3``   IMEX BDF3 / BDF4 (Ascher-Ruuth-Wetton): the same with order 3 / 4 (implicit BDF
``sbdf4``   A(86°)/A(73°)-stable: fine for diffusion-decay, whose spectrum is real and
            negative; smaller stability region for the explicit reactions). Graded start
            ``t_i = W (i/K)^k``. For tight tolerances (scripts/bench_stiff.py).
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
import numpy as np

from .discretization import Discretization
from .grid import Grid
from .model import Model

SCHEMES = ("sbdf2", "sbdf3", "sbdf4", "sbdf1", "rk4", "ssprk3", "euler")
IMPLICIT_SCHEMES = ("sbdf2", "sbdf3", "sbdf4", "sbdf1")
BDF_ORDERS = {"sbdf2": 2, "sbdf3": 3, "sbdf4": 4}


def imex_bdf_coefficients(nodes) -> tuple[float, np.ndarray, np.ndarray]:
    """Coefficients of the variable-step IMEX BDF step of order ``k = len(nodes) - 1``.

    nodes: increasing times ``t_{n+1-k}, ..., t_n, t_{n+1}`` (any unit). The implicit part is
    the BDF formula (derivative at ``t_{n+1}`` of the polynomial through ``k + 1`` states),
    the explicit part the polynomial extrapolation of ``N`` from ``t_{n+1-k}..t_n`` to
    ``t_{n+1}``. Returns ``(γ, a, b)`` with ``a``, ``b`` of length ``k`` ordered newest first
    (``j = 1..k``) such that ``(I - γ S) y_{n+1} = Σ_j a_j y_{n+1-j} + γ Σ_j b_j N_{n+1-j}``.
    Uniform steps h: k = 2 gives γ = 2h/3, a = (4/3, -1/3), b = (2, -1) (SBDF2); k = 3 gives
    γ = 6h/11, a = (18, -9, 2)/11, b = (3, -3, 1) (SBDF3).
    """
    t = np.asarray(nodes, dtype=np.float64)[::-1]  # t_{n+1}, t_n, ..., newest first
    k = len(t) - 1
    h = t[0] - t[1]
    s = (t - t[0]) / h  # scaled for a well-conditioned Vandermonde system
    # Derivative weights d: Σ d_j p(s_j) = p'(0) for every polynomial of degree ≤ k.
    V = np.vander(s, k + 1, increasing=True).T  # V[i, j] = s_j^i
    d = np.linalg.solve(V, np.eye(k + 1)[1]) / h
    # Extrapolation weights: Σ b_j p(s_j) = p(0), j ≥ 1, degree ≤ k - 1.
    b = np.linalg.solve(np.vander(s[1:], k, increasing=True).T, np.eye(k)[0])
    gamma = 1 / d[0]
    return float(gamma), -d[1:] * gamma, b


class Simulator:
    """Compiled time integration of a model on a grid.

    dt: time step (h). save_every: output interval (h), a whole multiple of ``dt``.
    scheme: see the module docstring. dtype: ``jnp.float32`` or ``jnp.float64``
    (float64 needs ``jax.config.update("jax_enable_x64", True)``). start_window: hours of
    graded start (IMEX BDF schemes). fused_transforms: one 2D FFT for two zero-flux trailing
    axes (faster; :func:`~tmepde.batch.run_domain_sharded` turns it off).

    The pure function :meth:`run` (params, y0) -> saved states is jit-, grad- and
    vmap-compatible; parameters are traced arrays, so new values never recompile.
    """

    def __init__(self, model: Model, grid: Grid, *, dt: float, save_every: float | None = None,
                 scheme: str = "sbdf2", dtype=None, cg_tol: float | None = None,
                 chemotaxis_limiter: bool = True, start_window: float = 1.0,
                 fused_transforms: bool = True):
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
        self.fused_transforms = fused_transforms
        self.disc = Discretization(model, grid, cg_tol=cg_tol, fused_transforms=fused_transforms)
        self._options = dict(dt=dt, save_every=save_every, scheme=scheme, dtype=dtype, cg_tol=cg_tol,
                             chemotaxis_limiter=chemotaxis_limiter, start_window=start_window,
                             fused_transforms=fused_transforms)
        self.chemotaxis_limiter = chemotaxis_limiter
        if not (isinstance(start_window, (int, float)) and math.isfinite(start_window) and start_window >= 0):
            raise ValueError(f"solver.start_window must be a number of hours >= 0, got {start_window!r}")
        # sbdf2: the first `start_steps` steps (about start_window hours, at most one save
        # interval) are integrated by _start on a graded mesh; see there.
        self.start_steps = max(1, min(self.steps_per_save, math.ceil(start_window / self.dt - 1e-9)))
        if scheme not in IMPLICIT_SCHEMES:
            limit = self.disc.explicit_dt_limit(model.default_params())
            if self.dt > limit:
                warnings.warn(
                    f"explicit scheme {scheme!r} with dt = {self.dt:g} h exceeds the diffusion "
                    f"stability limit {limit:.3g} h for the default parameters; use "
                    "scheme = 'sbdf2' or a smaller dt", stacklevel=2)
        self.bdf_order = BDF_ORDERS.get(scheme, 0)
        if self.bdf_order == 4 and self.dtype == jnp.float32:
            # Measured: default TME scenario at 64², 10 days, dt = 1/8 h: tumor burden 4 % off
            # in float32 (sbdf3 float32: 3e-4; sbdf4 float64: 1e-6). The extrapolation weights
            # (4, -6, 4, -1) amplify round-off ~8x, and near-extinct populations regrow from it.
            warnings.warn("scheme 'sbdf4' in float32 amplifies round-off (near-extinct populations "
                          "can regrow from it); use solver.dtype = \"float64\" or scheme 'sbdf3'",
                          stacklevel=2)
        if self.bdf_order:
            self._start_table, self._loop_table = self._bdf_tables()
        self._advance = jax.jit(self._advance_impl, static_argnums=(2,))

    def replace(self, **changes) -> "Simulator":
        """A new simulator with the same model, grid and options except ``changes``."""
        return Simulator(self.model, self.grid, **dict(self._options, **changes))

    # -- single steps --------------------------------------------------------------
    def init(self, y0, params, t0: float = 0.0) -> dict:
        """Carry for the time loop from an initial state ``(S, *shape)``.

        For the IMEX BDF schemes of order ``k`` the carry holds ``y`` (the state at the
        carry's time), ``ahead`` (the ``k`` states the next BDF step is built from, oldest
        first) and ``n_ahead`` (the explicit rates at all but the newest of them). Every
        loop step shifts ``(y, ahead) -> (ahead[0], ahead[1:] + BDF step)``. :meth:`_start`
        integrates the graded start mesh up to ``m - 1`` steps before its end; the loop's
        first ``m - 1`` steps take those last graded steps (their ``y`` is never saved, since
        ``m`` ≤ steps per save), after which ``y`` is the state at ``step · dt``. Starting
        here, outside the loop, keeps a conditional out of the compiled step (XLA:CPU runs
        conditionals ~3x slower).
        """
        self.model.check_params(params)
        y0 = jnp.asarray(y0, self.dtype)
        carry = {"y": y0, "step": jnp.asarray(0, jnp.int32), "t0": jnp.asarray(t0, self.dtype)}
        if self.bdf_order:
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
        if self.scheme == "sbdf1":
            n_now = disc.nonstiff(t, y, params, limiter_dt)
            return dict(carry, y=self._imex_euler(t, y, n_now, dt, params), step=carry["step"] + 1)
        if self.bdf_order:
            # Look-ahead carry: (y, ahead) -> (ahead[0], ahead[1:] + BDF step from ahead[-1]).
            # The first m - 1 steps finish the graded start (their y is never saved), the
            # rest are uniform; one compiled step, coefficients looked up by step number.
            ahead, n_ahead = carry["ahead"], carry["n_ahead"]
            tab_coef, tab_t, tab_h = self._loop_table
            row = jnp.minimum(carry["step"], len(tab_t) - 1)
            coef = jnp.asarray(tab_coef, self.dtype)[row]
            t_newest = carry["t0"] + jnp.asarray(tab_t, self.dtype)[row] + jnp.maximum(
                carry["step"] - (len(tab_t) - 1), 0).astype(self.dtype) * dt
            h = jnp.asarray(tab_h, self.dtype)[row]
            y_next, n_newest = self._bdf_step(t_newest, h, coef, ahead[::-1], n_ahead[::-1], params)
            return dict(carry, y=ahead[0], ahead=ahead[1:] + (y_next,), n_ahead=n_ahead[1:] + (n_newest,),
                        step=carry["step"] + 1)

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
        return disc.clip(disc.flush(disc.implicit_solve(y + dt * n_now, dt, params, k_loc)))

    def start_mesh(self):
        """Nodes (h from t0) of the start of an order-``k`` IMEX BDF scheme:
        ``t_i = W (i/K)^k``, ``W = m dt``, ``K = k m + 1`` (steps < dt), then
        ``(m + 1) dt, ..., (m + k - 1) dt``."""
        m, dt, k = self.start_steps, self.dt, self.bdf_order
        K = k * m + 1
        return [m * dt * (i / K) ** k for i in range(K + 1)] + [(m + j) * dt for j in range(1, k)]

    def _bdf_tables(self):
        """Coefficient tables of the BDF steps on the start mesh (NumPy, float64).

        Step ``j`` goes from node ``j`` to ``j + 1`` of :meth:`start_mesh` (``j ≥ 1``; node 1
        comes from a Richardson step) with order ``min(j + 1, k)``. Of the ``G - 1`` steps,
        :meth:`_start` takes the first ``G - m`` and the loop's first ``m - 1`` steps take the
        rest, so no loop step is wasted. Returns ``(start, loop)``: ``start = (coef, h, t)``
        per start step and ``loop = (coef, t, h)`` per loop step, the last loop row being the
        uniform step (time of its newest node ``(m + k - 1) dt``, to which the loop adds
        ``dt`` per further step). ``coef`` rows: ``[γ, a_1..a_k, b_1..b_k]``, zero-padded.
        """
        k, m, dt = self.bdf_order, self.start_steps, self.dt
        nodes = np.asarray(self.start_mesh())
        G = len(nodes) - 1
        coef = np.zeros((G, 2 * k + 1))  # row j for step j (row 0 unused: Richardson)
        for j in range(1, G):
            order = min(j + 1, k)
            g_j, a_j, b_j = imex_bdf_coefficients(nodes[j + 1 - order:j + 2])
            coef[j, 0], coef[j, 1:1 + order], coef[j, 1 + k:1 + k + order] = g_j, a_j, b_j
        E = G - (m - 1)  # newest node after the start
        start = (coef[1:E], np.diff(nodes)[1:E], nodes[1:E])  # node 1 comes from _start_rows
        g_u, a_u, b_u = imex_bdf_coefficients(dt * np.arange(-k + 1, 2))
        uniform = np.concatenate([[g_u], a_u, b_u])
        loop = (np.concatenate([coef[E:G], uniform[None]]),
                np.concatenate([nodes[E:G], [nodes[G]]]),
                np.concatenate([np.diff(nodes)[E:G], [dt]]))
        return start, loop

    START_SLOTS = 5  # states held by the start scan (the Richardson step needs five)

    def _start_rows(self):
        """The start as rows of one generic step (NumPy, float64), so that :meth:`_start`
        compiles a single step body (the Richardson step and the graded BDF steps written
        out separately compiled ~5 copies of the reactions and solves: 18 s quiet, 58 s
        loaded, for the default scenario, against ~5 s for the whole loop).

        A row ``(γ, a, b, t_now, t_new, h_lim, valid)`` acts on ``H`` slots of states
        (newest first) and the rates at all but the newest: it evaluates the rates at the
        newest state (time ``t_now``, chemotaxis limiter step ``h_lim``), solves
        ``(I - γ S) y = Σ a_i y_i + γ Σ b_i N_i`` with local decay at ``Σ b_i y_i`` and time
        ``t_new``, and pushes ``y``. IMEX Euler from slot ``s`` is ``a = b = e_s``; ``γ = 0``
        makes a linear combination. Rows: ``E(h)`` and ``E(h/2)`` from ``y⁰``,
        ``E(h/2)`` again, ``2 E(h/2)∘E(h/2) - E(h)`` (Richardson), then ``y⁰`` and the
        Richardson state pushed again so that the newest two slots are nodes 1 and 0, then
        the graded BDF steps of :meth:`_bdf_tables`. Padded with invalid rows to a multiple
        of the checkpoint block. Times relative to ``t0``.
        """
        k, H = self.bdf_order, self.START_SLOTS
        e = np.eye(H)
        h0 = float(self.start_mesh()[1])
        rows = [  # gamma, a, b, t_now, t_new, h_lim
            (h0, e[0], e[0], 0.0, h0, h0 / 2),  # full = E(h0) y0
            (h0 / 2, e[1], e[1], h0, h0 / 2, h0 / 2),  # half = E(h0/2) y0 (y0 and its rate in slot 1)
            (h0 / 2, e[0], e[0], h0 / 2, h0, h0 / 2),  # two = E(h0/2) half
            (0.0, 2 * e[0] - e[2], e[0], h0, h0, h0 / 2),  # Richardson: 2 two - full
            (0.0, e[4], e[0], h0, 0.0, h0),  # y0 again ...
            (0.0, e[1], e[0], 0.0, h0, h0),  # ... then node 1: slots (node 1, node 0), rate N(y0)
        ]
        coef, hs, ts = self._start_table
        for cf, h, t in zip(coef, hs, ts):
            a_j, b_j = np.zeros(H), np.zeros(H)
            a_j[:k], b_j[:k] = cf[1:1 + k], cf[1 + k:]
            rows.append((cf[0], a_j, b_j, t, t + h, h))
        L = len(rows)
        block = max(1, math.isqrt(L))
        pad = (-L) % block
        rows += [rows[-1]] * pad
        gamma = np.array([r[0] for r in rows])
        a = np.stack([r[1] for r in rows])
        b = np.stack([r[2] for r in rows])
        times = np.array([r[3:6] for r in rows])
        valid = np.arange(len(rows)) < L
        return (gamma, a, b, times, valid), block

    @functools.partial(jax.jit, static_argnums=0)
    def _start(self, carry, params):
        """The graded start of the IMEX BDF schemes (``t_i = W (i/K)^k``, then uniform).

        Initial states are usually off the slow manifold (scripts/bench_stiff.py: a uniform
        cytokine relaxes to its vessel/uptake balance through diffusion modes with rates
        from ~1/h to thousands per hour), and the slow fields integrate that transient
        through the explicit reactions. With uniform steps every mode of rate ≳ 1/dt is
        integrated with O(1) relative error: the error falls like dt^β, β < 2 (measured
        order 1.1-1.4 on that benchmark, 2.0 from the state at 1 h). The graded mesh
        ``t_i = W (i/K)^k`` over the window ``W = m dt`` (``start_window`` hours) resolves
        each mode while it is alive, with O(dt^k) error: a Richardson-extrapolated IMEX
        Euler step, then variable-step IMEX BDF whose order ramps up 2, 3, .., k as history
        accumulates (the first steps are so short, ~dt/k^k m^(k-1), that their lower order
        costs nothing). The recursion of the loop starts from the states at ``m dt``, ...,
        ``(m + k - 1) dt``, never from the initial state (whose explicit rates ``N(y⁰)``
        would enter the extrapolation as an O(dt) error). Cost: ``k m + k + 5`` implicit
        solves in all (three with γ = 0, i.e. none), of which the loop's first ``m - 1``
        steps do the last ``m - 1`` (see :meth:`_bdf_tables`); ``m = 1``, ``k = 2``: nodes
        dt/9, 4dt/9, dt, 2dt. One scan over the rows of :meth:`_start_rows`, in
        checkpointed blocks of ~√L rows (reverse-mode memory ~2√L carries).
        Returns the carry entries ``ahead`` (the newest ``k`` nodes, oldest first) and
        ``n_ahead`` (rates at all but the newest).
        """
        k, H = self.bdf_order, self.START_SLOTS
        disc = self.disc
        t0, y = carry["t0"], carry["y"]
        (gamma, a, b, times, valid), block = self._start_rows()
        dt_ = self.dtype
        xs = (jnp.asarray(gamma, dt_), jnp.asarray(a, dt_), jnp.asarray(b, dt_),
              t0 + jnp.asarray(times, dt_), jnp.asarray(valid))

        @jax.checkpoint
        def one(c, x):
            hist_y, hist_n = c  # H states newest first; rates at all but the newest
            g, a_r, b_r, tt, ok = x
            t_now, t_new, h_lim = tt[0], tt[1], tt[2]
            n_now = disc.nonstiff(t_now, hist_y[0], params, h_lim if self.chemotaxis_limiter else None)
            rates = (n_now,) + hist_n
            rhs = sum(a_r[i] * hist_y[i] for i in range(H)) + g * sum(b_r[i] * rates[i] for i in range(H))
            y_ext = sum(b_r[i] * hist_y[i] for i in range(H))
            k_loc = disc.local_decay(t_new, disc.positive_part(y_ext), params)
            # γ = 0 rows: the rhs is the answer; as first iterate it stops CG at once.
            guess = jnp.where(g == 0, rhs, y_ext)
            y_new = disc.clip(disc.flush(disc.implicit_solve(rhs, g, params, k_loc, guess=guess)))
            new = ((y_new,) + hist_y[:-1], rates[:-1])
            return jax.tree_util.tree_map(lambda u, v: jnp.where(ok, u, v), new, c), None

        @jax.checkpoint
        def one_block(c, xb):
            return jax.lax.scan(one, c, xb)[0], None

        n_blocks = len(gamma) // block
        c = ((y,) * H, (jnp.zeros_like(y),) * (H - 1))
        c, _ = jax.lax.scan(one_block, c, jax.tree_util.tree_map(
            lambda u: u.reshape((n_blocks, block) + u.shape[1:]), xs))
        hist_y, hist_n = c
        return {"ahead": hist_y[:k][::-1], "n_ahead": hist_n[:k - 1][::-1]}

    def _bdf_step(self, t, h, coef, hist_y, hist_n, params):
        """IMEX BDF step from ``t`` to ``t + h``: solve
        ``(I - γ S) yⁿ⁺¹ = Σ a_j yⁿ⁺¹⁻ʲ + γ Σ b_j Nⁿ⁺¹⁻ʲ``.

        coef: ``[γ, a_1..a_k, b_1..b_k]`` from :func:`imex_bdf_coefficients` (a row of the
        start or loop table); hist_y: the ``k`` states, newest first (the newest at ``t``);
        hist_n: explicit rates at all but the newest, newest first. Returns the new state and
        the rates at ``t`` (the next step's history).
        """
        k = self.bdf_order
        n_now = self.disc.nonstiff(t, hist_y[0], params, h if self.chemotaxis_limiter else None)
        hist_n = (n_now,) + tuple(hist_n)
        gamma, a, b, t_new = coef[0], coef[1:1 + k], coef[1 + k:], t + h
        disc = self.disc
        rhs = sum(a_j * y_j for a_j, y_j in zip(a, hist_y))
        rhs = rhs + gamma * sum(b_j * n_j for b_j, n_j in zip(b, hist_n))
        # The same extrapolation as for N gives yⁿ⁺¹ to O(dtᵏ): local decay rates taken there
        # keep the implicit coefficient's error O(dtᵏ), and it is the first guess of the
        # conjugate-gradient groups.
        # Local decay rates at its positive part; the CG's first iterate is the extrapolation
        # itself: it has the right total, so the CG residual sums to 0 on zero-flux groups
        # and the solve keeps mass whatever its tolerance (the positive part would not).
        y_ext = sum(b_j * y_j for b_j, y_j in zip(b, hist_y))
        y_star = disc.positive_part(y_ext)
        k_loc = disc.local_decay(t_new, y_star, params)
        # flush: the solve's round-off in cells nothing has reached becomes exactly 0
        # (growth terms would amplify it; Discretization.flush).
        return disc.clip(disc.flush(disc.implicit_solve(rhs, gamma, params, k_loc, guess=y_ext))), n_now

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
        self.model.check_params(params)
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
