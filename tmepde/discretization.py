"""Spatial discretisation of a :class:`~tmepde.model.Model` on a :class:`~tmepde.grid.Grid`.

The right-hand side is split as ``dy/dt = S(y) + N(t, y)``:

* ``S`` — stiff, linear: diffusion ``∇·(D∇y)`` (with its Dirichlet lift), declared decay
  ``-k y`` and state-dependent local decay ``-k_loc(y) y``. Time steppers treat it
  implicitly; :meth:`Discretization.implicit_solve` inverts ``I - γ S``.
* ``N`` — everything else: reactions and chemotaxis, treated explicitly.

Species are grouped (statically) by boundary conditions and operator type so that every
group is solved in one batched call:

``spectral``  constant D: one fast-transform solve (exact inverse, no iteration).
``stencil``   constant D too small to need transforms (given ``stencil_dt``): a fixed number
              of Chebyshev steps on the stencil, to round-off.
``krylov``    diffusivity map and/or local decay: conjugate gradients preconditioned by a
              constant-coefficient spectral solve between diagonal scalings.
``local``     non-diffusing species: pointwise division.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import numpy as np
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from . import operators, radial
from .grid import Grid
from .model import SECONDS_PER_HOUR, Model
from .transforms import LaplacianTransform

if TYPE_CHECKING:  # shape annotations only (jaxtyping); nothing is checked at run time
    from jaxtyping import Array, ArrayLike, Float

    Fields = Float[Array, "S *grid"]  # a stacked state or rate: species first, then the grid


@dataclasses.dataclass(frozen=True, eq=False)
class _Group:
    kind: str  # "spectral" | "stencil" | "krylov" | "local" | "radial"
    index: np.ndarray  # species indices, static
    bcs: tuple
    transform: LaplacianTransform | None
    lift: np.ndarray  # (len(index), *grid.shape) Dirichlet lift of the Laplacian, 1/µm² · units
    kappa: float = 0.0  # stencil groups: the condition number their Chebyshev steps are sized for


#: ``checkpoint_name`` of :meth:`Discretization.implicit_solve`'s result and of each CG
#: solution: the time loop's step checkpoint stores them (tmepde.stepping.loop.STEP_RESIDUALS)
#: so that a step's derivative does not repeat its transforms and CG iterations.
IMPLICIT_SOLUTION = "implicit_solution"
KRYLOV_SOLUTION = "krylov_solution"


def _bc_key(bcs):
    return tuple((lo.kind, lo.value, hi.kind, hi.value) for lo, hi in bcs)


def _pcg(matvec, b, x0, precondition, tol, maxiter):
    """Preconditioned conjugate gradients for a symmetric positive definite ``matvec``.

    The iteration of ``jax.scipy.sparse.linalg.cg`` (same arithmetic, same stopping rule
    ``‖r‖ ≤ tol ‖b‖``, so the same iterates), with two guards so that no input gives 0/0:
    it stops once ``‖r‖²`` is below the smallest normal number (``b = 0`` with a non-zero
    first iterate otherwise iterates until ``r`` underflows to 0 and ``pᵀAp = 0``), and a
    zero step length or direction update is used where a denominator is 0.
    Returns ``(x, iterations)``.

    The preconditioner is applied at the top of an iteration, to the residual it is about
    to use (``z = M r``, then the direction ``p = z + β p``), not after the update: the
    iterates are the same bit for bit, but a first iterate that already meets the tolerance
    costs no preconditioner solve, and the ``z`` of the last residual (never used) is not
    computed. Each preconditioner solve is a transform pair, the bulk of a CG iteration:
    this is one transform pair less per species and implicit solve (7 of ~37 per step of
    the default TME scenario).
    """
    tiny = jnp.finfo(b.dtype).tiny
    atol2 = jnp.maximum(jnp.square(tol) * _dot(b, b), tiny)

    def cond(state):
        _, r, _, _, it = state
        return (_dot(r, r) > atol2) & (it < maxiter)

    def body(state):
        x, r, gamma, p, it = state
        z = precondition(r)
        gamma_new = _dot(r, z)
        # First iteration: β = 0 and p = 0, so p = z exactly (z + 0 · 0).
        beta = jnp.where(gamma > 0, gamma_new / jnp.where(gamma > 0, gamma, 1), 0)
        p = z + beta * p
        ap = matvec(p)
        pap = _dot(p, ap)
        alpha = jnp.where(pap > 0, gamma_new / jnp.where(pap > 0, pap, 1), 0)
        return x + alpha * p, r - alpha * ap, gamma_new, p, it + 1

    r0 = b - matvec(x0)
    state = (x0, r0, jnp.zeros((), r0.dtype), jnp.zeros_like(r0), jnp.asarray(0, jnp.int32))
    x, _, _, _, it = jax.lax.while_loop(cond, body, state)
    return x, it


def _dot(x, y):
    return jnp.vdot(x, y, precision=jax.lax.Precision.HIGHEST).real


def _scaled_spectral(transform, m):
    """The preconditioner ``r -> w · T⁻¹(mult · T(w · r))`` of ``m = (mult, w)``: a spectral
    solve between two diagonal scalings (symmetric positive definite for ``mult, w > 0``)."""
    mult, w = m
    return lambda r: w * transform.apply_multiplier(w * r, mult)


def _balanced_preconditioner(gamma, d_mean, k, eig):
    """``(mult, w)`` of :func:`_scaled_spectral` for ``A = I - γ(∇·D∇ - k)``, species first.

    gamma: step weight (h); d_mean: (S, 1, ..) mean diffusivity (µm²/h); k: (S, *shape)
    reaction coefficient (1/h); eig: the transform's eigenvalues of ``-∇²`` (1/µm²). With
    ``a = 1 + γk``: the constant-coefficient multiplier ``1 / (a_c + γ D̄ λ)`` at
    ``a_c = √(a_min a_max)`` and the scaling ``w = (a_c / a)^¼`` (why: :meth:`Discretization._krylov_solve`).
    """
    axes = tuple(range(1, k.ndim))
    a = 1 + gamma * k
    a_c = jnp.sqrt(jnp.min(a, axis=axes, keepdims=True) * jnp.max(a, axis=axes, keepdims=True))
    return 1 / (a_c + gamma * d_mean * eig), jnp.sqrt(jnp.sqrt(a_c / a))


def _guessed_solve(matvec, transform, b, d, k, gamma, m, x0, tol, maxiter):
    """``u = A⁻¹ b`` for ``A = matvec(·, d, k, gamma)`` by PCG from the first iterate ``x0``.

    matvec(u, d, k, gamma): the symmetric positive definite operator; m: ``(mult, w)``, the
    spectral preconditioner's multiplier (for ``transform.apply_multiplier``) and its diagonal
    scaling (:func:`_scaled_spectral`). The primal solve starts
    from ``x0`` (an extrapolated state, a few iterations from the answer). Tangents and
    cotangents are solves ``A u̇ = ḃ - (∂A) u`` with the same operator started from zero, so
    a zero (co)tangent gives exactly zero with no iteration. (``jax.scipy.sparse.linalg.cg``
    hands its ``x0`` to the tangent and transposed solves as well: a zero cotangent then
    starts from the primal guess, the stopping threshold tol·‖b‖ is 0, and the iteration
    runs into 0/0.) The derivative ignores ``x0`` and ``m``: the exact solution depends on
    neither. Returns ``(u, iterations)`` of the primal solve.
    """

    @jax.custom_jvp
    def solve(b, d, k, gamma, m, x0):
        return _pcg(lambda u: matvec(u, d, k, gamma), b, x0, _scaled_spectral(transform, m), tol, maxiter)

    @solve.defjvp
    def solve_jvp(primals, tangents):
        b, d, k, gamma, m, x0 = primals
        b_dot, d_dot, k_dot, gamma_dot = tangents[:4]
        u, it = solve(b, d, k, gamma, m, x0)
        u = checkpoint_name(u, KRYLOV_SOLUTION)  # a residual of the tangent: stored, not re-solved
        # A u = b  =>  A u̇ = ḃ - (∂A/∂d ḋ + ∂A/∂k k̇ + ∂A/∂γ γ̇) u
        _, a_dot_u = jax.jvp(lambda d, k, gamma: matvec(u, d, k, gamma), (d, k, gamma),
                             (d_dot, k_dot, gamma_dot))
        u_dot = jax.lax.custom_linear_solve(
            lambda v: matvec(v, d, k, gamma), b_dot - a_dot_u,
            lambda mv, r: _pcg(mv, r, jnp.zeros_like(r), _scaled_spectral(transform, m), tol, maxiter)[0],
            symmetric=True)
        return (u, it), (u_dot, np.zeros(np.shape(it), jax.dtypes.float0))

    return solve(b, d, k, gamma, m, x0)

@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _limited(disc, y):
    """:meth:`Discretization.clip` for a model with nonnegative species: the limiter body runs
    only when a value is negative (a conditional)."""
    return jax.lax.cond(disc._needs_limit(y), disc._limit, lambda z: z, y)


@_limited.defjvp
def _limited_jvp(disc, primals, tangents):
    """The derivative JAX would give (the same numbers), with the limiter's linearisation
    recomputed from ``y`` inside its branch (``jax.checkpoint``) instead of stored: a
    conditional's linearisation otherwise carries every residual of the limiter branch out
    of both branches (zeros when nothing was negative), each step. Default TME step at 64²,
    reverse mode: temp memory 17.0 -> 14.3 MB, compile and run ~10-15 % less
    (results/bench_gradient.md)."""
    (y,), (t,) = primals, tangents
    linear = jax.checkpoint(lambda y, t: jax.jvp(disc._limit, (y,), (t,))[1])
    return _limited(disc, y), jax.lax.cond(disc._needs_limit(y), linear, lambda y, t: t, y, t)


class Discretization:
    """Static operator structure; all numbers that can change come in through ``params``."""

    def __init__(self, model: Model, grid: Grid, cg_tol: float | None = None, cg_maxiter: int = 200,
                 fused_transforms: bool = True, stencil_dt: float | None = None):
        self.model = model
        self.grid = grid
        self.cg_tol = cg_tol
        self.cg_maxiter = cg_maxiter
        self.flush_floor = None  # relative round-off floor of flush(); None: per dtype
        # CG preconditioner: "balanced" (scaled spectral solve, _krylov_solve) or "mean" (the
        # spectral solve at the mean coefficients, unscaled; kept for comparison)
        self.cg_preconditioner = "balanced"
        self.bcs = model.boundaries(grid)
        nspec = len(model.species)
        for s in model.species:
            if s.variable_diffusivity and np.shape(s.diffusivity) != grid.shape:
                raise ValueError(
                    f"species {s.name!r}: diffusivity map has shape {np.shape(s.diffusivity)}, "
                    f"expected the grid shape {grid.shape}"
                )
        self.local_decay_species = self._local_decay_species()
        self.stencil_kappa = float(self.STENCIL_KAPPA)
        self.radial = grid.geometry == "spherical"
        kinds = []
        for i, s in enumerate(model.species):
            diffusing = s.variable_diffusivity or s.diffusivity != 0
            if self.radial:
                # Shells: every diffusing species gets a direct tridiagonal solve.
                if diffusing:
                    radial.check_boundaries(s.name, self.bcs[i])
                kinds.append("radial" if diffusing else "local")
            elif s.variable_diffusivity or s.name in self.local_decay_species:
                kinds.append("krylov")
            elif s.diffusivity == 0:
                kinds.append("local")
            elif stencil_dt is not None and self._stencil_kappa(s, stencil_dt) <= self.stencil_kappa:
                # grouped by the bound of their κ, so that a slower species takes fewer steps
                kappa = self._stencil_kappa(s, stencil_dt)
                kinds.append(("stencil", min(b for b in (1.25, 1.5, 2.0, 3.0, np.inf) if b >= kappa
                                              or b >= self.stencil_kappa)))
            else:
                kinds.append("spectral")
        keyed: dict = {}
        for i in range(nspec):
            key = (kinds[i], _bc_key(self.bcs[i]))
            keyed.setdefault(key, []).append(i)
        self.groups = []
        for (kind, _), idx in keyed.items():
            kind, kappa = kind if isinstance(kind, tuple) else (kind, 0.0)
            kappa = min(kappa, self.stencil_kappa)
            bcs = self.bcs[idx[0]]
            transform = (LaplacianTransform(grid, bcs, fuse_last2=fused_transforms)
                         if kind in ("spectral", "krylov", "stencil") else None)
            lift = np.stack([operators.dirichlet_lift(grid, bcs)] * len(idx))
            self.groups.append(_Group(kind, np.asarray(idx), bcs, transform, lift, kappa))
        self.nonnegative = np.array([s.nonnegative for s in model.species])
        volumes = grid.cell_volumes()
        self._volume_weights = volumes / volumes.mean()
        self.chemotaxis = [
            (i, model.index(s.chemotaxis.toward), s.chemotaxis,
             [model.index(c) for c in (s.chemotaxis.crowding or (s.name,))])
            for i, s in enumerate(model.species) if s.chemotaxis is not None
        ]
        # Species that climb the same attractant with the same crowding, capacity and
        # boundaries move in one batched flux evaluation (default TME scenario: CD8 and NK
        # cells up CXCL9/10): half the operations of one call each, forward and reverse.
        groups: dict = {}
        for i, j, taxis, crowd in self.chemotaxis:
            key = (j, tuple(crowd) if taxis.capacity is not None else None, taxis.capacity,
                   _bc_key(self.bcs[i]))
            groups.setdefault(key, (j, taxis, crowd, []))[3].append(i)
        self._taxis_groups = [(tuple(rows), j, taxis, crowd) for j, taxis, crowd, rows in groups.values()]

    # -- structure helpers -------------------------------------------------------------
    STENCIL_KAPPA = 3.0  # largest condition number of I - γS solved by Chebyshev iteration

    def _stencil_kappa(self, species, dt: float) -> float:
        """Bound ``1 + dt D Σ 4/h²`` on the condition number of ``I - dt·D∇²`` for a
        constant-D species at its default diffusivity (decay only lowers it). Species with
        a bound ≤ :attr:`STENCIL_KAPPA` diffuse so little in a step ``dt`` (h) that a few
        stencil applications solve them (:meth:`_stencil_solve`) instead of transforms."""
        D = self.model.default_params().get(f"D_{species.name}", species.diffusivity)
        D = float(np.max(np.asarray(D))) * SECONDS_PER_HOUR
        return 1 + dt * D * sum(4 / h**2 for h in self.grid.spacing)

    def _local_decay_species(self) -> frozenset:
        if self.model.local_decay is None:
            return frozenset()
        y = {n: jax.ShapeDtypeStruct(self.grid.shape, jnp.float32) for n in self.model.names}
        p = jax.tree_util.tree_map(lambda v: jax.ShapeDtypeStruct(v.shape, jnp.float32),
                                   self.model.default_params())
        out = jax.eval_shape(self.model.local_decay, jax.ShapeDtypeStruct((), jnp.float32), y, p)
        unknown = sorted(set(out) - set(self.model.names))
        if unknown:
            raise ValueError(f"local_decay returned unknown species {unknown}")
        return frozenset(out)

    def _per_species(self, params, prefix, idx, dtype, scale=1.0):
        """Stack scalar parameters ``prefix+name`` for species ``idx`` -> (len(idx), 1, ...)."""
        vals = []
        for i in idx:
            name = self.model.names[i]
            vals.append(jnp.asarray(params.get(prefix + name, 0.0), dtype) * scale)
        if any(v.ndim for v in vals):  # at least one map: (len(idx), *grid.shape)
            return jnp.stack([jnp.broadcast_to(v, self.grid.shape) for v in vals])
        return jnp.stack(vals).reshape((len(idx),) + (1,) * self.grid.ndim)

    def diffusivity(self, params, idx, dtype):
        """µm²/h, shape (len(idx), 1, ..) or (len(idx), *grid.shape) for maps."""
        return self._per_species(params, "D_", idx, dtype, SECONDS_PER_HOUR)

    def decay(self, params, idx, dtype):
        return self._per_species(params, "decay_", idx, dtype)

    def as_dict(self, y: Fields) -> dict[str, Float[Array, "*grid"]]:
        return self.model.unstack(y)

    def from_dict(self, fields: dict, like: Fields) -> Fields:
        """Stack a partial ``{species: rate}`` dict to ``like``'s shape (zeros elsewhere)."""
        unknown = sorted(set(fields) - set(self.model.names))
        if unknown:
            raise ValueError(f"model {self.model.name!r} returned rates for unknown species {unknown}")
        zero = jnp.zeros(like.shape[1:], like.dtype)
        return jnp.stack([
            jnp.broadcast_to(jnp.asarray(fields[n], like.dtype), zero.shape) if n in fields else zero
            for n in self.model.names
        ])

    def local_decay(self, t: Float[ArrayLike, ""], y: Fields, params: dict,
                    positive: bool = False) -> Fields:
        """(S, *shape) state-dependent decay rates (1/h, clipped >= 0), zeros if none.

        positive: evaluate them at ``max(y, 0)`` of the nonnegative species (an extrapolated
        state may undershoot; no mass fixing). Both clips act field by field on what the rates read and return, not on
        the whole stack: in reverse mode each ``max`` is a compare-select-divide pass over its
        operand (default TME scenario at 256²: two such passes over all 23 fields took 11 of
        the step gradient's ~150 ms)."""
        if self.model.local_decay is None:
            return jnp.zeros_like(y)
        state = self.as_dict(y)
        if positive:
            state = {n: jnp.maximum(v, 0) if nonneg else v
                     for (n, v), nonneg in zip(state.items(), self.nonnegative)}
        rates = self.model.local_decay(t, state, params)
        return self.from_dict({n: jnp.maximum(v, 0) for n, v in rates.items()}, y)

    # -- right-hand sides -------------------------------------------------------------
    def nonstiff(self, t: Float[ArrayLike, ""], y: Fields, params: dict,
                 limiter_dt: float | None = None) -> Fields:
        """Reactions + chemotaxis, (S, *shape) per hour."""
        names = self.model.names
        state = self.as_dict(y)
        fields = dict(self.model.reactions(t, state, params)) if self.model.reactions is not None else {}
        for group in self._taxis_groups:
            rows, j, taxis, crowd = group
            chi = jnp.stack([jnp.asarray(params[f"chi_{names[i]}"], y.dtype) for i in rows])
            chi = chi * SECONDS_PER_HOUR
            crowding = sum(state[names[c]] for c in crowd)[None] if taxis.capacity is not None else None
            u = jnp.stack([state[names[i]] for i in rows])
            if self.radial:
                flux_div = radial.chemotaxis_divergence(
                    u, state[names[j]][None], chi, self.grid, crowding=crowding, capacity=taxis.capacity,
                    dt=limiter_dt)
            else:
                flux_div = operators.chemotaxis_divergence(
                    u, state[names[j]][None], chi, self.grid, self.bcs[rows[0]], crowding=crowding,
                    capacity=taxis.capacity, dt=limiter_dt)
            for r, i in enumerate(rows):
                name = names[i]
                fields[name] = (jnp.asarray(fields[name], y.dtype) + flux_div[r] if name in fields
                                else flux_div[r])
        if not fields:
            return jnp.zeros_like(y)
        return self.from_dict(fields, y)

    def stiff(self, t: Float[ArrayLike, ""], y: Fields, params: dict,
              k_local: Fields | None = None) -> Fields:
        """Diffusion + implicit decays, (S, *shape) per hour (full affine operator)."""

        out = []
        k_parts = self.split_groups(k_local) if k_local is not None else [None] * len(self.groups)
        for g, u, k_loc in zip(self.groups, self.split_groups(y), k_parts):
            k = self.decay(params, g.index, y.dtype)
            if k_loc is not None:
                k = k + k_loc
            r = -k * u
            if g.kind != "local":
                D = self.diffusivity(params, g.index, y.dtype)
                if g.kind == "radial":
                    r = r + radial.diffusion(u, D, self.grid, g.bcs)
                elif g.kind == "krylov":
                    r = r + operators.variable_diffusion(u, D, self.grid, g.bcs)
                else:
                    r = r + D * operators.laplacian(u, self.grid, g.bcs)
            out.append(jnp.broadcast_to(r, u.shape))
        return self.join_groups(out)

    # -- implicit solve ---------------------------------------------------------------
    def implicit_solve(self, rhs: Fields, gamma: Float[ArrayLike, ""], params: dict,
                       k_local: Fields | None = None, guess: Fields | None = None) -> Fields:
        """Solve ``(I - γ S) u = rhs`` for the stiff linear part ``S`` (incl. Dirichlet lift).

        rhs: (S, *shape); gamma: scalar step weight in h; k_local: (S, *shape) or None;
        guess: optional (S, *shape) first iterate for the iterative (krylov) groups.
        """
        dtype = rhs.dtype
        n = len(self.groups)
        k_parts = self.split_groups(k_local) if k_local is not None else [None] * n
        guess_parts = self.split_groups(guess) if guess is not None else [None] * n
        out = []
        for g, r, k_loc, g_guess in zip(self.groups, self.split_groups(rhs), k_parts, guess_parts):
            k = self.decay(params, g.index, dtype)
            if g.kind == "local":
                out.append(r / (1 + gamma * k))
                continue
            D = self.diffusivity(params, g.index, dtype)
            if g.kind == "radial":
                k_tot = k + (k_loc if k_loc is not None else 0.0)
                out.append(radial.implicit_solve(r, gamma, D, k_tot, self.grid, g.bcs))
                continue
            eig = jnp.asarray(g.transform.eigenvalues, dtype)
            lift = jnp.asarray(g.lift, dtype)
            if g.kind == "spectral":
                r = r + gamma * D * lift
                mult = 1 / (1 + gamma * (D * eig + k))

                def matvec(u, D=D, k=k, g=g):
                    return u - gamma * (D * operators.laplacian(u, self.grid, g.bcs, homogeneous=True) - k * u)

                # Implicit derivative: the operator is symmetric, so the backward pass is the same
                # transform solve, and D, k, γ enter through the stencil (16² Gray–Scott gradient, one
                # pair of runs: compile and run ~13 % less than differentiating through the transforms).
                out.append(jax.lax.custom_linear_solve(
                    matvec, r, lambda _, b, g=g, mult=mult: g.transform.apply_multiplier(b, mult), symmetric=True))
                continue
            if g.kind == "stencil":
                out.append(self._stencil_solve(g, r + gamma * D * lift, gamma, D, k, eig))
                continue
            # krylov: variable D and/or local decay
            k_tot = jnp.broadcast_to(k + (k_loc if k_loc is not None else 0.0), r.shape)
            if D.shape[1:] == self.grid.shape:  # a map: D extrapolated to Dirichlet faces
                r = r + gamma * operators.variable_dirichlet_lift(D, self.grid, g.bcs)
            else:
                r = r + gamma * D * lift
            out.append(self._krylov_solve(g, r, gamma, D, k_tot, eig, g_guess))
        return checkpoint_name(self.join_groups(out), IMPLICIT_SOLUTION)

    def split_groups(self, x: Fields) -> list:
        """``(S, *shape)`` -> one ``(len(g.index), *shape)`` array per group of ``self.groups``.

        One split into species rows, then a concatenation per group; :meth:`join_groups` is
        its inverse. Reverse mode turns these into splits of the cotangent and one
        concatenation, where a gather (``jnp.take``) becomes a scatter-add and slices become
        zero pads that XLA sums cell by cell over the whole stack.
        """
        if len(self.groups) == 1:  # every species, in order
            return [x]
        rows = jnp.split(x, x.shape[0], axis=0)
        return [rows[g.index[0]] if len(g.index) == 1 else jnp.concatenate([rows[i] for i in g.index])
                for g in self.groups]

    def join_groups(self, parts: list) -> Fields:
        """Inverse of :meth:`split_groups`: per-group arrays -> ``(S, *shape)`` in species order."""
        if len(self.groups) == 1:
            return parts[0]
        rows = [None] * len(self.model.names)
        for g, x in zip(self.groups, parts):
            for i, row in zip(g.index, jnp.split(x, len(g.index), axis=0)):
                rows[i] = row
        return jnp.concatenate(rows)

    def _krylov_solve(self, g: _Group, rhs, gamma, D, k_tot, eig, guess=None):
        """PCG for ``(I - γ(∇·D∇ - k)) u = rhs``, one species at a time.

        Each species gets its own CG iteration and its own relative tolerance: a joint CG
        over the stacked species stops on the norm of the whole stack, which the species
        with the largest values dominates (default TME scenario: anti-PD-1 ~5e3 ng/mL next
        to IFN-γ ~0.4 ng/mL), leaving small-valued fields unconverged (IFN-γ was solved to
        ~10 %). The species are looped over with ``lax.map``: one compiled CG body (a Python
        loop compiled one per species, 2.5x slower to compile), and the work is the sum of
        each species' iterations (IFN-γ 13, IL-2 2, the rest 0-2), not the maximum times the
        number of species as in a joint or vmapped solve.
        guess: optional first iterate (e.g. the extrapolated state 2yⁿ - yⁿ⁻¹, already
        O(dt²) accurate); default: the preconditioned rhs.
        Preconditioner: ``M⁻¹ = W (I - γ(D̄∇² - c))⁻¹ W`` (one transform pair), the exact
        constant-coefficient solve at the mean diffusivity ``D̄`` and the reaction coefficient
        ``a_c = 1 + γc = √(a_min a_max)`` of ``a = 1 + γk``, between the diagonal scalings
        ``W = (a_c / a)^¼``. Symbol by symbol, ``A / M`` is ``w²a/a_c = (a/a_c)^½`` for smooth
        modes (reaction-dominated) and ``w² = (a_c/a)^½`` for grid-scale ones
        (diffusion-dominated), so its spread is ``κ ≈ (a_max/a_min)^½`` where the unscaled
        mean-coefficient solve has ``a_max/a_min``: the scaling balances the two ends (the
        exponent ½ fits the smooth modes exactly and leaves the rough ones at
        ``a_max/a_min``). Default TME scenario at 256², IFN-γ (uptake and vessel exchange,
        ``a`` from 2.1 to 20.5): 12 → 8 CG iterations; a constant ``k`` gives ``W = 1``, the
        exact solve. A sum of spectral solves at two or three coefficients, weighted by the
        interpolation of ``1/a``, took 9 and 14 iterations at two and three pairs each.
        Scalar D uses the plain Laplacian (cheaper than harmonic face averages).
        """
        dtype = rhs.dtype
        tol = self.cg_tol if self.cg_tol is not None else (1e-10 if dtype == jnp.float64 else 1e-5)
        axes = tuple(range(1, rhs.ndim))
        grid, bcs, transform = self.grid, g.bcs, g.transform
        scalar_d = D.shape[1:] == (1,) * self.grid.ndim
        d_mean = jnp.mean(jnp.broadcast_to(D, rhs.shape), axis=axes, keepdims=True)
        # The preconditioner does not enter the derivative (the solve is exact to tol).
        if self.cg_preconditioner == "mean":
            mult = 1 / (1 + gamma * (d_mean * eig + jnp.mean(k_tot, axis=axes, keepdims=True)))
            w = jnp.ones_like(k_tot)
        else:
            mult, w = _balanced_preconditioner(gamma, d_mean, k_tot, eig)
        mult, w = jax.lax.stop_gradient((mult, w))
        D = jnp.broadcast_to(D, (rhs.shape[0],) + D.shape[1:])
        gamma = jnp.asarray(gamma, dtype)

        def matvec(u, d, k, gamma):
            flux = (d * operators.laplacian(u, grid, bcs, homogeneous=True) if scalar_d
                    else operators.variable_diffusion(u, d, grid, bcs, homogeneous=True))
            return u - gamma * (flux - k * u)

        def solve_one(args):
            b, d, k, m, s, x0 = (a[None] for a in args)  # one species, leading axis of 1
            x0 = _scaled_spectral(transform, (m, s))(b) if guess is None else x0
            return _guessed_solve(matvec, transform, b, d, k, gamma, (m, s), x0, tol, self.cg_maxiter)[0][0]

        x0 = rhs if guess is None else guess
        args = (rhs, D, k_tot, mult, w, x0)
        if rhs.shape[0] == 1:  # no loop of length one around the CG loop
            return solve_one(tuple(a[0] for a in args))[None]
        return jax.lax.map(solve_one, args)

    def _stencil_solve(self, g: _Group, rhs, gamma, D, k, eig):
        """``(I - γ(D∇² - k)) u = rhs`` for slowly diffusing species (constant D and k) by
        Chebyshev iteration on the 5-point (2D) stencil (Golub & Varga 1961; Saad 2003,
        *Iterative Methods for Sparse Linear Systems*, Alg. 12.1).

        The operator's spectrum is known exactly: ``1 + γk + γD λ`` over the transform's
        eigenvalues ``λ`` of ``-∇²``, so the Chebyshev polynomial on ``[a_lo, a_hi]`` needs no
        inner products: after ``n`` steps the error is at most ``2√κ ρⁿ`` of the solution,
        ``ρ = (√κ - 1)/(√κ + 1)``. ``n`` is fixed by the dtype and the group's bound on κ
        (``g.kappa``: 1.25, 1.5, 2 or 3 at the default diffusivities and γ = dt) so that this
        bound is below 4 ulp: float32 6, 7, 9, 12 steps, float64 13, 16, 21, 28. Each step is
        a stencil application (~0.07 CPU-ms per 256² field against ~1.7 for a transform
        pair): default TME scenario, tumor and stem (κ ≤ 1.25) and M1/M2 (κ ≤ 3) at dt 0.5 h.
        The result is a polynomial in
        the stencil, so cells more than ``n`` cells from any non-zero of ``rhs`` get exactly
        0 (the true value there is below round-off). Parameters that push κ above the bound
        (a larger D than the default the species was grouped by) fall back to the transform
        solve (``lax.cond``; under ``vmap`` both run). Derivatives: implicit
        (``lax.custom_linear_solve``; the transposed solve is the same symmetric polynomial).
        rhs: (S, *shape); D, k: (S, 1, ..) per species (µm²/h, 1/h).
        """
        dtype = rhs.dtype
        eps = float(jnp.finfo(dtype).eps)
        kmax = g.kappa
        rho_max = (np.sqrt(kmax) - 1) / (np.sqrt(kmax) + 1)
        n = int(np.ceil(np.log(4 * eps / (2 * np.sqrt(kmax))) / np.log(rho_max)))
        grid, bcs, transform = self.grid, g.bcs, g.transform
        gamma = jnp.asarray(gamma, dtype)
        lam_lo, lam_hi = float(np.min(g.transform.eigenvalues)), float(np.max(g.transform.eigenvalues))

        def matvec(u):
            return u - gamma * (D * operators.laplacian(u, grid, bcs, homogeneous=True) - k * u)

        def solve(mv, b):
            a = jax.lax.stop_gradient(1 + gamma * k)
            d = jax.lax.stop_gradient(gamma * D)
            lo, hi = a + d * lam_lo, a + d * lam_hi
            theta = (hi + lo) / 2
            delta = jnp.maximum((hi - lo) / 2, theta * 1e-6)  # D = 0: Richardson with 1/θ, exact
            sigma = theta / delta

            def chebyshev(b):
                def body(_, c):
                    x, r, dx, rho = c
                    x = x + dx
                    r = r - mv(dx)
                    rho_new = 1 / (2 * sigma - rho)
                    return x, r, rho_new * rho * dx + (2 * rho_new / delta) * r, rho_new

                rho0 = 1 / sigma
                x, _, _, _ = jax.lax.fori_loop(0, n, body, (jnp.zeros_like(b), b, b / theta, rho0))
                return x

            def spectral(b):
                return transform.apply_multiplier(b, 1 / (a + d * jnp.asarray(eig, dtype)))

            return jax.lax.cond(jnp.all(hi <= kmax * lo), chebyshev, spectral, b)

        return jax.lax.custom_linear_solve(matvec, rhs, solve, symmetric=True)

    def _neighbour_sum(self, x):
        """Σ over the face neighbours of each cell (periodic axes wrap; no neighbour beyond a
        non-periodic face), (S, *shape). Symmetric: Σ_j a_j S(b)_j = Σ_i b_i S(a)_i, which is
        what makes :meth:`clip` exactly conservative. Zero-filled shifts, so a cell whose
        neighbours are all 0 gets exactly 0 (``lax.reduce_window`` was ~3x faster here on
        XLA:CPU but not exact)."""
        nd = self.grid.ndim
        out = None
        for a in range(nd):
            ax = x.ndim - nd + a
            term = operators._shift(x, ax, +1) + operators._shift(x, ax, -1)
            periodic = np.array([bc[a][0].kind == "periodic" for bc in self.bcs])
            if periodic.any():
                wrap = operators._wrap_term(x, ax, +1) + operators._wrap_term(x, ax, -1)
                if not periodic.all():
                    wrap = wrap * jnp.asarray(periodic.reshape((-1,) + (1,) * nd), x.dtype)
                term = term + wrap
            out = term if out is None else out + term
        return out

    def clip(self, y: Fields) -> Fields:
        """Local positivity limiter for nonnegative species that keeps each species' total.

        Second-order schemes (BDF extrapolation, upwind taxis at sharp fronts) can undershoot
        below zero by O(dt²). Each negative cell ``i`` (deficit ``d_i``) borrows the missing
        mass from its face neighbours ``j`` in proportion to their content ``p_j``: it takes
        the fraction ``q_i = min(d_i / P_i, 1/m)`` of each (``P_i = Σ_j p_j``, ``m = 2·ndim``
        neighbours), so no cell can give more than it holds (the flux-corrected
        redistribution of Zalesak 1979, reduced to its positivity part). Every transfer is
        one value on one face, so totals are kept to round-off, and cells with no negative
        neighbour are left bit-for-bit unchanged. A deficit larger than ``P_i / m`` (a deep
        undershoot in an almost empty neighbourhood: not met in the benchmarks) falls back
        to the global mass fixer: set to zero and the positive part of that species scaled
        by the deficit (a reduction and a conditional that only then do work).
        Species not declared nonnegative are untouched (and cost nothing).
        """
        if not self.nonnegative.any():
            return y
        return _limited(self, y)

    def _needs_limit(self, y):
        """Whether any nonnegative species has a negative value: a min-reduction (one read
        of the state; the only cost of :meth:`clip` when nothing is negative)."""
        if self.nonnegative.all():
            return jnp.min(y) < 0
        return jnp.min(jnp.where(jnp.asarray(self.nonnegative.reshape((-1,) + (1,) * self.grid.ndim)), y, 0)) < 0

    def _limit(self, y):
        """The body of :meth:`clip` (see there), (S, *shape) -> same."""
        m = 2 * self.grid.ndim
        cartesian = self.grid.geometry == "cartesian"
        w = 1.0 if cartesian else jnp.asarray(self._volume_weights, y.dtype)
        p = jnp.maximum(y, 0) * w  # mass (volume-weighted on shells)
        d = jnp.maximum(-y, 0) * w
        big = self._neighbour_sum(p)
        # Double `where` so the unused branch has no 0/0 (value or gradient).
        short = d * m > big
        q = jnp.where(d > 0, jnp.where(short, 1.0 / m, d / jnp.where(short | (big <= 0), 1.0, big)), 0.0)
        # A cell with no negative neighbour gets exactly max(y, 0) back (the select keeps
        # XLA's rewrites of the volume weighting from touching its last bit).
        q_near = self._neighbour_sum(q)
        fixed = jnp.where((q > 0) | (q_near > 0), jnp.maximum(y, 0) + (q * big - d - p * q_near) / w,
                          jnp.maximum(y, 0))
        if not self.nonnegative.all():
            mask = jnp.asarray(self.nonnegative.reshape((-1,) + (1,) * self.grid.ndim))
            fixed = jnp.where(mask, fixed, y)
            residual = jnp.any(jnp.where(mask, fixed, 0) < 0)
            return jax.lax.cond(residual, lambda z: jnp.where(mask, self._block_fix(z), z), lambda z: z, fixed)
        return jax.lax.cond(jnp.any(fixed < 0), self._block_fix, lambda z: z, fixed)

    def _block_fix(self, y, factor: int = 8):
        """Mass fixer on nested blocks (``factor``, ``factor²``, ... cells per axis, then the
        whole grid): in each block that holds a negative value and enough positive mass, the
        negatives become 0 and the block's positive values are scaled by (total / positive
        total). Blocks are settled at the finest level that can pay for their deficit, so
        only the neighbourhood of the undershoot changes. (S, *shape) -> same."""
        nd = self.grid.ndim
        shape = y.shape[1:]
        w = 1.0 if self.grid.geometry == "cartesian" else jnp.asarray(self._volume_weights, y.dtype)
        z = y * w
        b = factor
        while True:
            sizes = [min(b, n) for n in shape]
            pads = [(-n) % s for n, s in zip(shape, sizes)]
            zp = jnp.pad(z, [(0, 0)] + [(0, p) for p in pads])
            split = [zp.shape[0]]
            for n_, p, s in zip(shape, pads, sizes):
                split += [(n_ + p) // s, s]
            blocked = zp.reshape(split)
            inner = tuple(2 + 2 * a for a in range(nd))
            total = jnp.sum(blocked, axis=inner, keepdims=True)
            pos = jnp.sum(jnp.maximum(blocked, 0), axis=inner, keepdims=True)
            act = (pos > total) & (total >= 0)
            scale = total / jnp.where(pos > 0, pos, 1)
            blocked = jnp.where(act, jnp.maximum(blocked, 0) * scale, blocked)
            z = blocked.reshape(zp.shape)[(slice(None),) + tuple(slice(0, n) for n in shape)]
            if all(s >= n for s, n in zip(sizes, shape)):
                break
            b *= factor
        # A species whose total is negative cannot be made nonnegative: set it to 0.
        return jnp.maximum(z, 0) / w

    def roundoff_floor(self, dtype) -> float:
        """Relative level below which :meth:`flush` treats a nonnegative field as exactly 0:
        64 ulp in float64 (1.4e-14), 16 in float32 (1.9e-6). Set ``flush_floor`` to change it
        (0 disables the flush)."""
        if self.flush_floor is not None:
            return float(self.flush_floor)
        return float(jnp.finfo(dtype).eps) * (64 if jnp.dtype(dtype) == jnp.float64 else 16)

    def flush(self, y: Fields) -> Fields:
        """Round-off floor for nonnegative species after an implicit solve: values with
        ``|y| <= floor · max|y|`` (per species, :meth:`roundoff_floor`) become exactly 0.

        The transform and CG solves return round-off (~eps · max) in every cell, also where
        nothing has arrived; growth terms amplify it (Fisher-KPP into empty tissue, r = 1/h:
        3e-6 of the carrying capacity 20 h ahead of the front in float64, 0.34 at 14 h in
        float32). The true diffusive tail there, ~exp(-x²/4Dt), is far below round-off, and
        a density of 1e-6 of capacity in a voxel is far below one cell: 0 is the physical
        value. A cut-off ε slows a pulled front by ~π²/(2 ln²ε) of its speed
        (Brunet & Derrida 1997): 0.5 % in float64, 2.6 % in float32, where round-off noise
        already imposed a similar cut-off. Mass changes by at most ``floor · max`` per
        flushed cell (noise of either sign).
        """
        if not self.nonnegative.any():
            return y
        floor = self.roundoff_floor(y.dtype)
        if floor <= 0:
            return y
        axes = tuple(range(1, y.ndim))
        scale = jnp.max(jnp.abs(y), axis=axes, keepdims=True)
        small = jnp.abs(y) <= floor * scale
        if not self.nonnegative.all():
            small = small & jnp.asarray(self.nonnegative.reshape((-1,) + (1,) * self.grid.ndim))
        return jnp.where(small, 0, y)

    def explicit_dt_limit(self, params) -> float:
        """Largest forward-Euler-stable dt (h) for the diffusion part, from ``params``."""
        inv_h2 = sum(1 / h**2 for h in self.grid.spacing)
        d_max = 0.0
        for s in self.model.species:
            key = f"D_{s.name}"
            if key in params:
                d_max = max(d_max, float(np.max(np.asarray(params[key]))) * SECONDS_PER_HOUR)
        return np.inf if d_max == 0 else 1 / (2 * d_max * inv_h2)
