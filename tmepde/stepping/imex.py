"""The IMEX BDF family: IMEX Euler (``sbdf1``) and IMEX BDF2/3/4 (``sbdf2``..``sbdf4``).

Split ``y' = S y + N(y)``: the stiff linear part ``S`` (diffusion, decay, local uptake) is
implicit and solved exactly in transform space (:meth:`Discretization.implicit_solve`), the
reactions and chemotaxis ``N`` are extrapolated explicitly (Ascher, Ruuth & Wetton 1995,
SIAM J. Numer. Anal. 32:797). Steady states of ``S y + N(y) = 0`` are exact fixed points.
Order k = 3 / 4: the implicit BDF is A(86°)/A(73°)-stable, fine for diffusion-decay, whose
spectrum is real and negative; the explicit reactions have a smaller stability region.

The order-k schemes start on a graded mesh (:func:`start_mesh`, :meth:`ImexBDF.start`) and
carry their history as a look-ahead (see :class:`ImexBDF`). Another order is one more
:func:`register` call at the end of this file.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .base import Carry, StepContext, register
from .loop import scan_checkpoint, step_checkpoint


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


def start_mesh(order: int, start_steps: int, dt: float) -> list[float]:
    """Nodes (h from t0) of the start of an order-``k`` IMEX BDF scheme:
    ``t_i = W (i/K)^k``, ``W = m dt``, ``K = k m + 1`` (steps < dt), then
    ``(m + 1) dt, ..., (m + k - 1) dt``."""
    m, k = start_steps, order
    K = k * m + 1
    return [m * dt * (i / K) ** k for i in range(K + 1)] + [(m + j) * dt for j in range(1, k)]


@functools.lru_cache(maxsize=64)
def bdf_tables(order: int, start_steps: int, dt: float):
    """Coefficient tables of the BDF steps on the start mesh (NumPy, float64).

    Step ``j`` goes from node ``j`` to ``j + 1`` of :func:`start_mesh` (``j ≥ 1``; node 1
    comes from a Richardson step) with order ``min(j + 1, k)``. Of the ``G - 1`` steps,
    :meth:`ImexBDF.start` takes the first ``G - m`` and the loop's first ``m - 1`` steps take
    the rest, so no loop step is wasted. Returns ``(start, loop)``: ``start = (coef, h, t)``
    per start step and ``loop = (coef, t, h)`` per loop step, the last loop row being the
    uniform step (time of its newest node ``(m + k - 1) dt``, to which the loop adds ``dt``
    per further step). ``coef`` rows: ``[γ, a_1..a_k, b_1..b_k]``, zero-padded.
    """
    k, m = order, start_steps
    nodes = np.asarray(start_mesh(k, m, dt))
    G = len(nodes) - 1
    coef = np.zeros((G, 2 * k + 1))  # row j for step j (row 0 unused: Richardson)
    for j in range(1, G):
        o = min(j + 1, k)
        g_j, a_j, b_j = imex_bdf_coefficients(nodes[j + 1 - o:j + 2])
        coef[j, 0], coef[j, 1:1 + o], coef[j, 1 + k:1 + k + o] = g_j, a_j, b_j
    E = G - (m - 1)  # newest node after the start
    start = (coef[1:E], np.diff(nodes)[1:E], nodes[1:E])  # node 1 comes from the start rows
    g_u, a_u, b_u = imex_bdf_coefficients(dt * np.arange(-k + 1, 2))
    uniform = np.concatenate([[g_u], a_u, b_u])
    loop = (np.concatenate([coef[E:G], uniform[None]]),
            np.concatenate([nodes[E:G], [nodes[G]]]),
            np.concatenate([np.diff(nodes)[E:G], [dt]]))
    return start, loop


START_SLOTS = 5  # states held by the start scan (the Richardson step needs five)


def start_rows(order: int, start_steps: int, dt: float):
    """The start as rows of one generic step (NumPy, float64), so that :meth:`ImexBDF.start`
    compiles a single step body (the Richardson step and the graded BDF steps written out
    separately compiled ~5 copies of the reactions and solves: 18 s quiet, 58 s loaded, for
    the default scenario, against ~5 s for the whole loop).

    A row ``(γ, a, b, t_now, t_new, h_lim, valid)`` acts on ``H`` slots of states (newest
    first) and the rates at all but the newest: it evaluates the rates at the newest state
    (time ``t_now``, chemotaxis limiter step ``h_lim``), solves
    ``(I - γ S) y = Σ a_i y_i + γ Σ b_i N_i`` with local decay at ``Σ b_i y_i`` and time
    ``t_new``, and pushes ``y``. IMEX Euler from slot ``s`` is ``a = b = e_s``; ``γ = 0``
    makes a linear combination. Rows: ``E(h)`` and ``E(h/2)`` from ``y⁰``, ``E(h/2)`` again,
    ``2 E(h/2)∘E(h/2) - E(h)`` (Richardson), then ``y⁰`` and the Richardson state pushed
    again so that the newest two slots are nodes 1 and 0, then the graded BDF steps of
    :func:`bdf_tables`. Padded with invalid rows to a multiple of the checkpoint block.
    Times relative to ``t0``. Returns ``((γ, a, b, times, valid), block)``.
    """
    k, H = order, START_SLOTS
    e = np.eye(H)
    h0 = float(start_mesh(k, start_steps, dt)[1])
    rows = [  # gamma, a, b, t_now, t_new, h_lim
        (h0, e[0], e[0], 0.0, h0, h0 / 2),  # full = E(h0) y0
        (h0 / 2, e[1], e[1], h0, h0 / 2, h0 / 2),  # half = E(h0/2) y0 (y0 and its rate in slot 1)
        (h0 / 2, e[0], e[0], h0 / 2, h0, h0 / 2),  # two = E(h0/2) half
        (0.0, 2 * e[0] - e[2], e[0], h0, h0, h0 / 2),  # Richardson: 2 two - full
        (0.0, e[4], e[0], h0, 0.0, h0),  # y0 again ...
        (0.0, e[1], e[0], 0.0, h0, h0),  # ... then node 1: slots (node 1, node 0), rate N(y0)
    ]
    coef, hs, ts = bdf_tables(k, start_steps, dt)[0]
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


def _solve_step(disc, params, rhs, gamma, y_ext, t_new):
    """``(I - γ S) y = rhs`` with local decay rates at the positive part of the
    extrapolation ``y_ext`` (time ``t_new``), ``y_ext`` the first iterate of the CG groups.

    The extrapolation gives yⁿ⁺¹ to O(dtᵏ): decay rates taken there keep the implicit
    coefficient's error O(dtᵏ). It has the right total, so the CG residual sums to 0 on
    zero-flux groups and the solve keeps mass whatever its tolerance (the positive part would
    not). flush: the solve's round-off in cells nothing has reached becomes exactly 0 (growth
    terms would amplify it; Discretization.flush).
    """
    k_loc = disc.local_decay(t_new, y_ext, params, positive=True)
    return disc.clip(disc.flush(disc.implicit_solve(rhs, gamma, params, k_loc, guess=y_ext)))


@dataclasses.dataclass(frozen=True)
class ImexEuler:
    """IMEX Euler: ``(I - dt S(t + dt, y)) y⁺ = y + dt N(t, y)``, first order (what
    LOD/BioFVM-style codes do; kept for comparison)."""

    name: str = "sbdf1"
    order: int = 1
    implicit: bool = True
    history: int = 0

    def start(self, ctx: StepContext, carry: Carry, params: Mapping) -> Carry:
        return carry

    def explicit_times(self, ctx: StepContext, t0, steps):
        """Time (h) at which step number ``steps`` evaluates the explicit rates: its start."""
        return t0 + jnp.asarray(steps).astype(ctx.dtype) * ctx.dt

    def step(self, ctx: StepContext, carry: Carry, params: Mapping) -> Carry:
        disc, dt = ctx.disc, ctx.dt
        t, y = ctx.time(carry), carry.y
        n_now = disc.nonstiff(t, y, params, ctx.limiter_dt(dt))
        k_loc = disc.local_decay(t + dt, y, params)
        y_new = disc.clip(disc.flush(disc.implicit_solve(y + dt * n_now, dt, params, k_loc)))
        return carry.replace(y=y_new, step=carry.step + 1)

    def warnings(self, ctx: StepContext) -> list[str]:
        return []


@dataclasses.dataclass(frozen=True)
class ImexBDF:
    """IMEX BDF of order ``k`` (SBDF-k) with a graded start.

    Carry: ``y`` (the state at the carry's time), ``ahead`` (the ``k`` states the next BDF step
    is built from, oldest first) and ``n_ahead`` (the explicit rates at all but the newest of
    them). Every loop step shifts ``(y, ahead) -> (ahead[0], ahead[1:] + BDF step)``.
    :meth:`start` integrates the graded start mesh up to ``m - 1`` steps before its end; the
    loop's first ``m - 1`` steps take those last graded steps (their ``y`` is never saved,
    since ``m`` ≤ steps per save), after which ``y`` is the state at ``step · dt``. Starting
    outside the loop keeps a conditional out of the compiled step (XLA:CPU runs conditionals
    ~3x slower).
    """

    name: str
    order: int
    implicit: bool = True

    @property
    def history(self) -> int:
        return self.order

    def warnings(self, ctx: StepContext) -> list[str]:
        if self.order == 4 and ctx.dtype == jnp.float32:
            # Measured: default TME scenario at 64², 10 days, dt = 1/8 h: tumor burden 4 % off
            # in float32 (sbdf3 float32: 3e-4; sbdf4 float64: 1e-6). The extrapolation weights
            # (4, -6, 4, -1) amplify round-off ~8x, and near-extinct populations regrow from it.
            return ["scheme 'sbdf4' in float32 amplifies round-off (near-extinct populations "
                    "can regrow from it); use solver.dtype = \"float64\" or scheme 'sbdf3'"]
        return []

    def start(self, ctx: StepContext, carry: Carry, params: Mapping) -> Carry:
        """The graded start (``t_i = W (i/K)^k``, then uniform); fills ``ahead``/``n_ahead``.

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
        steps do the last ``m - 1`` (see :func:`bdf_tables`); ``m = 1``, ``k = 2``: nodes
        dt/9, 4dt/9, dt, 2dt. One scan over the rows of :func:`start_rows`, in checkpointed
        blocks of ~√L rows (reverse-mode memory ~2√L carries).
        """
        k, H = self.order, START_SLOTS
        disc = ctx.disc
        t0, y = carry.t0, carry.y
        (gamma, a, b, times, valid), block = start_rows(k, ctx.start_steps, ctx.dt)
        dt_ = ctx.dtype
        tt_all = t0 + jnp.asarray(times, dt_)
        # the model's time-only inputs at every row's explicit-rate time, in one evaluation
        # (tmepde.model.Model.tabulate_inputs; the time loop does the same for its steps)
        inputs = disc.model.tabulate_inputs(tt_all[:, 0], params)
        xs = (jnp.asarray(gamma, dt_), jnp.asarray(a, dt_), jnp.asarray(b, dt_), tt_all,
              jnp.asarray(valid), inputs)

        # both levels are scan bodies (see tmepde.stepping.loop); a row stores its solves
        @step_checkpoint
        def one(c, x):
            hist_y, hist_n = c  # H states newest first; rates at all but the newest
            g, a_r, b_r, tt, ok, row_inputs = x
            t_now, t_new, h_lim = tt[0], tt[1], tt[2]
            n_now = disc.nonstiff(t_now, hist_y[0], {**params, **row_inputs}, ctx.limiter_dt(h_lim))
            rates = (n_now,) + hist_n
            rhs = sum(a_r[i] * hist_y[i] for i in range(H)) + g * sum(b_r[i] * rates[i] for i in range(H))
            y_ext = sum(b_r[i] * hist_y[i] for i in range(H))
            k_loc = disc.local_decay(t_new, y_ext, params, positive=True)
            # γ = 0 rows: the rhs is the answer; as first iterate it stops CG at once.
            guess = jnp.where(g == 0, rhs, y_ext)
            y_new = disc.clip(disc.flush(disc.implicit_solve(rhs, g, params, k_loc, guess=guess)))
            new = ((y_new,) + hist_y[:-1], rates[:-1])
            return jax.tree_util.tree_map(lambda u, v: jnp.where(ok, u, v), new, c), None

        @scan_checkpoint
        def one_block(c, xb):
            return jax.lax.scan(one, c, xb)[0], None

        n_blocks = len(gamma) // block
        c = ((y,) * H, (jnp.zeros_like(y),) * (H - 1))
        c, _ = jax.lax.scan(one_block, c, jax.tree_util.tree_map(
            lambda u: u.reshape((n_blocks, block) + u.shape[1:]), xs))
        hist_y, hist_n = c
        return carry.replace(ahead=hist_y[:k][::-1], n_ahead=hist_n[:k - 1][::-1])

    def step(self, ctx: StepContext, carry: Carry, params: Mapping) -> Carry:
        """Look-ahead step: ``(y, ahead) -> (ahead[0], ahead[1:] + BDF step from ahead[-1])``.
        The first m - 1 steps finish the graded start (their y is never saved), the rest are
        uniform; one compiled step, coefficients looked up by step number."""
        dtype, dt = ctx.dtype, ctx.dt
        ahead, n_ahead = carry.ahead, carry.n_ahead
        tab_coef, _, tab_h = bdf_tables(self.order, ctx.start_steps, dt)[1]
        row = jnp.minimum(carry.step, len(tab_h) - 1)
        coef = jnp.asarray(tab_coef, dtype)[row]
        t_newest = self.explicit_times(ctx, carry.t0, carry.step)
        h = jnp.asarray(tab_h, dtype)[row]
        y_next, n_newest = self._bdf_step(ctx, t_newest, h, coef, ahead[::-1], n_ahead[::-1], params)
        return carry.replace(y=ahead[0], ahead=ahead[1:] + (y_next,), n_ahead=n_ahead[1:] + (n_newest,),
                             step=carry.step + 1)

    def explicit_times(self, ctx: StepContext, t0, steps):
        """Time (h) at which loop step number ``steps`` (any shape) evaluates the explicit
        rates: that of the newest state it steps from."""
        _, tab_t, _ = bdf_tables(self.order, ctx.start_steps, ctx.dt)[1]
        row = jnp.minimum(steps, len(tab_t) - 1)
        return t0 + jnp.asarray(tab_t, ctx.dtype)[row] + jnp.maximum(
            steps - (len(tab_t) - 1), 0).astype(ctx.dtype) * ctx.dt

    def _bdf_step(self, ctx, t, h, coef, hist_y, hist_n, params):
        """IMEX BDF step from ``t`` to ``t + h``: solve
        ``(I - γ S) yⁿ⁺¹ = Σ a_j yⁿ⁺¹⁻ʲ + γ Σ b_j Nⁿ⁺¹⁻ʲ``.

        coef: ``[γ, a_1..a_k, b_1..b_k]`` from :func:`imex_bdf_coefficients` (a row of the
        start or loop table); hist_y: the ``k`` states, newest first (the newest at ``t``);
        hist_n: explicit rates at all but the newest, newest first. Returns the new state and
        the rates at ``t`` (the next step's history).
        """
        k, disc = self.order, ctx.disc
        n_now = disc.nonstiff(t, hist_y[0], params, ctx.limiter_dt(h))
        hist_n = (n_now,) + tuple(hist_n)
        gamma, a, b = coef[0], coef[1:1 + k], coef[1 + k:]
        rhs = sum(a_j * y_j for a_j, y_j in zip(a, hist_y))
        rhs = rhs + gamma * sum(b_j * n_j for b_j, n_j in zip(b, hist_n))
        y_ext = sum(b_j * y_j for b_j, y_j in zip(b, hist_y))  # extrapolation to t + h
        return _solve_step(disc, params, rhs, gamma, y_ext, t + h), n_now


register(ImexBDF("sbdf2", 2))
register(ImexBDF("sbdf3", 3))
register(ImexBDF("sbdf4", 4))
register(ImexEuler())
