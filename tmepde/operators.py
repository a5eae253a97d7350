"""Finite-difference operators on cell-centred grids (pure, jittable kernels).

Boundary conditions enter through ghost cells (one layer per face):
zero flux -> ghost = edge value; Dirichlet g -> ghost = 2g - edge (the face value is g);
periodic -> wrap. Then one interior stencil serves every boundary type.

All operators take a batch of fields ``u`` of shape ``(S, *grid.shape)`` with a common
set of boundary conditions and return an array of the same shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import jax.numpy as jnp
from jax import lax

from .grid import AxisBC, Grid

if TYPE_CHECKING:  # shape annotations only (jaxtyping); nothing is checked at run time
    from jaxtyping import Array, ArrayLike, Float

__all__ = ["laplacian", "dirichlet_lift", "face_diffusivity", "boundary_face_diffusivity",
           "variable_diffusion", "variable_dirichlet_lift", "chemotaxis_divergence"]


def _ghost(u, axis: int, bc: AxisBC, homogeneous: bool):
    """Pad ``u`` by one ghost layer on both faces of ``axis``."""
    n = u.shape[axis]
    first = lax.slice_in_dim(u, 0, 1, axis=axis)
    last = lax.slice_in_dim(u, n - 1, n, axis=axis)
    lo, hi = bc
    if lo.kind == "periodic":
        g_lo, g_hi = last, first
    else:
        g_lo = first if lo.kind == "neumann" else (0.0 if homogeneous else 2 * lo.value) - first
        g_hi = last if hi.kind == "neumann" else (0.0 if homogeneous else 2 * hi.value) - last
    return jnp.concatenate([g_lo, u, g_hi], axis=axis)


def _shift(u, axis: int, offset: int):
    """``v[i] = u[i + offset]`` along ``axis`` for offset ±1, zero where ``i + offset`` leaves
    the array. A ``lax.pad`` with a negative edge: XLA fuses it into the consumer's loop
    (a concatenate with ghost layers did not fuse well on CPU: 4-5x slower)."""
    cfg = [(0, 0, 0)] * u.ndim
    cfg[axis] = (-1, 1, 0) if offset > 0 else (1, -1, 0)
    return lax.pad(u, jnp.zeros((), u.dtype), cfg)


def _wrap_term(u, axis: int, offset: int):
    """The periodic neighbour that :func:`_shift` zeroed: ``u[-1]`` at ``i = 0`` (offset -1)
    or ``u[0]`` at ``i = n-1`` (offset +1), zero elsewhere."""
    n = u.shape[axis]
    cfg = [(0, 0, 0)] * u.ndim
    if offset > 0:
        cfg[axis] = (n - 1, 0, 0)
        return lax.pad(lax.slice_in_dim(u, 0, 1, axis=axis), jnp.zeros((), u.dtype), cfg)
    cfg[axis] = (0, n - 1, 0)
    return lax.pad(lax.slice_in_dim(u, n - 1, n, axis=axis), jnp.zeros((), u.dtype), cfg)


def _axis_vector(values: np.ndarray, ndim: int, axis: int, dtype):
    shape = [1] * ndim
    shape[axis] = values.size
    return jnp.asarray(values.reshape(shape), dtype)


def laplacian(u: Float[Array, "S *grid"], grid: Grid, bcs: tuple[AxisBC, ...],
              homogeneous: bool = False) -> Float[Array, "S *grid"]:
    """Second-order 3-point-per-axis Laplacian, 1/µm² times ``u``'s units.

    ``homogeneous=True`` sets Dirichlet values to 0 (the linear part of the operator); the
    affine remainder is :func:`dirichlet_lift`.

    Same stencil as ghost cells + ``(u[i+1] - 2u[i] + u[i-1]) / h²``, written without
    materialising the padded array: neighbours are zero-filled shifts, and the ghost values
    enter as a static per-axis coefficient on the boundary cell (zero flux: ghost = edge,
    +1; Dirichlet: ghost = 2g - edge, -1 plus the lift 2g) or, for periodic axes, as the
    wrapped value. Everything is then one elementwise loop that XLA fuses with the caller.
    """
    nd = grid.ndim
    out = None
    for a in range(nd):
        ax = u.ndim - nd + a
        n = u.shape[ax]
        (lo, hi), h2 = bcs[a], grid.spacing[a] ** 2
        coef = np.full(n, -2.0)
        const = np.zeros(n)
        term = _shift(u, ax, +1) + _shift(u, ax, -1)
        if lo.kind == "periodic":
            term = term + _wrap_term(u, ax, +1) + _wrap_term(u, ax, -1)
        else:
            for i, bc in ((0, lo), (n - 1, hi)):
                coef[i] += 1.0 if bc.kind == "neumann" else -1.0
                if bc.kind == "dirichlet" and not homogeneous:
                    const[i] += 2 * bc.value
        term = term + _axis_vector(coef, u.ndim, ax, u.dtype) * u
        if np.any(const):
            term = term + _axis_vector(const, u.ndim, ax, u.dtype)
        term = term / h2
        out = term if out is None else out + term
    return out


def dirichlet_lift(grid: Grid, bcs: tuple[AxisBC, ...]) -> Float[np.ndarray, "*grid"]:
    """``b`` with ``laplacian(u) = laplacian(u, homogeneous=True) + b`` (1/µm² · units).

    Non-zero only in boundary cells next to Dirichlet faces: ``2 g / h²`` per such face.
    """
    b = np.zeros(grid.shape)
    for a, (lo, hi) in enumerate(bcs):
        h2 = grid.spacing[a] ** 2
        idx_lo = [slice(None)] * grid.ndim
        idx_hi = [slice(None)] * grid.ndim
        idx_lo[a], idx_hi[a] = 0, -1
        if lo.kind == "dirichlet":
            b[tuple(idx_lo)] += 2 * lo.value / h2
        if hi.kind == "dirichlet":
            b[tuple(idx_hi)] += 2 * hi.value / h2
    return b


def _edge_pad(d, axis: int, periodic: bool):
    n = d.shape[axis]
    first = lax.slice_in_dim(d, 0, 1, axis=axis)
    last = lax.slice_in_dim(d, n - 1, n, axis=axis)
    if periodic:
        first, last = last, first
    return jnp.concatenate([first, d, last], axis=axis)


def face_diffusivity(d_left: Float[Array, "*shape"],
                     d_right: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """Harmonic mean: the flux-continuous face value between two cells."""
    return 2 * d_left * d_right / jnp.maximum(d_left + d_right, jnp.finfo(d_left.dtype).tiny)


def boundary_face_diffusivity(diffusivity: Float[Array, "S *grid"], axis: int,
                              side: str) -> Float[Array, "S *face"]:
    """D at the low (``side="lo"``) or high face of ``axis``, extrapolated linearly from the
    two nearest cell centres (at h/2 and 3h/2): ``(3 D_0 - D_1) / 2``.

    diffusivity: (S, *shape), µm²/time. Returns the face slab (size 1 along ``axis``).
    The edge cell's own value is half a cell off the face: an O(h) error in the Dirichlet
    face flux that cost max-norm order next to the face (1.90 at 16 -> 32 cells). Limited to
    ``[D_0/2, 3 D_0/2]`` so a jump in D next to the face cannot make the coefficient negative
    (the limits are inactive on smooth maps once the grid resolves them).
    """
    n = diffusivity.shape[axis]
    i0, i1 = (0, 1) if side == "lo" else (n - 1, n - 2)
    d0 = lax.slice_in_dim(diffusivity, i0, i0 + 1, axis=axis)
    if n < 2:
        return d0
    d1 = lax.slice_in_dim(diffusivity, i1, i1 + 1, axis=axis)
    return jnp.clip(1.5 * d0 - 0.5 * d1, 0.5 * d0, 1.5 * d0)


def _with_boundary_faces(d_minus, d_plus, diffusivity, axis: int, bc: AxisBC):
    """Replace the harmonic face values on Dirichlet faces by :func:`boundary_face_diffusivity`
    (zero-flux faces carry no flux; periodic faces are interior faces)."""
    n = diffusivity.shape[axis]
    lo, hi = bc
    if lo.kind == "dirichlet":
        d_minus = lax.dynamic_update_slice_in_dim(d_minus, boundary_face_diffusivity(diffusivity, axis, "lo"),
                                                  0, axis=axis)
    if hi.kind == "dirichlet":
        d_plus = lax.dynamic_update_slice_in_dim(d_plus, boundary_face_diffusivity(diffusivity, axis, "hi"),
                                                 n - 1, axis=axis)
    return d_minus, d_plus


def variable_diffusion(u: Float[Array, "S *grid"], diffusivity: Float[ArrayLike, "S *grid"],
                       grid: Grid, bcs: tuple[AxisBC, ...],
                       homogeneous: bool = False) -> Float[Array, "S *grid"]:
    """``∇·(D(x) ∇u)`` with harmonic-mean face coefficients, second order where D is smooth.

    u: (S, *shape); diffusivity: (S, *shape) or broadcastable, µm²/time. Dirichlet faces use
    D extrapolated to the face (:func:`boundary_face_diffusivity`), so the order is two in
    the max norm next to every kind of face. The operator is symmetric negative semidefinite
    (zero-flux/periodic) or definite (Dirichlet), so implicit solves can use conjugate
    gradients.
    """
    nd = grid.ndim
    out = jnp.zeros_like(u)
    diffusivity = jnp.broadcast_to(diffusivity, u.shape)
    for a in range(nd):
        ax = u.ndim - nd + a
        n = u.shape[ax]
        periodic = bcs[a][0].kind == "periodic"
        up = _ghost(u, ax, bcs[a], homogeneous)
        dp = _edge_pad(diffusivity, ax, periodic)
        d_plus = face_diffusivity(diffusivity, lax.slice_in_dim(dp, 2, n + 2, axis=ax))
        d_minus = face_diffusivity(diffusivity, lax.slice_in_dim(dp, 0, n, axis=ax))
        if not periodic:
            d_minus, d_plus = _with_boundary_faces(d_minus, d_plus, diffusivity, ax, bcs[a])
        plus = lax.slice_in_dim(up, 2, n + 2, axis=ax)
        minus = lax.slice_in_dim(up, 0, n, axis=ax)
        out = out + (d_plus * (plus - u) - d_minus * (u - minus)) / grid.spacing[a] ** 2
    return out


def variable_dirichlet_lift(diffusivity: Float[Array, "S *grid"], grid: Grid,
                            bcs: tuple[AxisBC, ...]) -> Float[Array, "S *grid"]:
    """Affine part of :func:`variable_diffusion`: ``2 D_face g / h²`` in cells next to each
    Dirichlet face (``D_face`` from :func:`boundary_face_diffusivity`).

    diffusivity: (S, *shape), µm²/time; returns (S, *shape) in µm²/time/µm² · units, with
    ``variable_diffusion(u) = variable_diffusion(u, homogeneous=True) + lift``.
    """
    nd = grid.ndim
    out = jnp.zeros_like(diffusivity)
    for a, (lo, hi) in enumerate(bcs):
        ax = diffusivity.ndim - nd + a
        n = diffusivity.shape[ax]
        h2 = grid.spacing[a] ** 2
        for bc, side, i in ((lo, "lo", 0), (hi, "hi", n - 1)):
            if bc.kind != "dirichlet":
                continue
            face = boundary_face_diffusivity(diffusivity, ax, side) * (2 * bc.value / h2)
            cfg = [(0, 0, 0)] * diffusivity.ndim
            cfg[ax] = (i, n - 1 - i, 0)
            out = out + lax.pad(face, jnp.zeros((), face.dtype), cfg)
    return out


def chemotaxis_divergence(u: Float[Array, "S *grid"], attractant: Float[Array, "S *grid"],
                          sensitivity: Float[ArrayLike, " S"], grid: Grid,
                          bcs: tuple[AxisBC, ...],
                          crowding: Float[Array, "S *grid"] | None = None,
                          capacity: Float[ArrayLike, " S"] | None = None,
                          dt: float | None = None) -> Float[Array, "S *grid"]:
    """``-∇·(χ u q(ρ) ∇c)`` by first-order upwind fluxes (positivity-preserving).

    u: (S, *shape) densities that move; attractant: (S, *shape), the field each climbs;
    sensitivity: (S,) or broadcastable, µm²/(time · attractant unit).
    Volume filling (Painter–Hillen): the flux into a cell is multiplied by
    ``q = max(1 - ρ_receiver / capacity, 0)`` where ``crowding`` is ρ (S, *shape).
    If ``dt`` is given, outgoing fluxes of any cell are scaled so that one forward-Euler step
    of length ``dt`` cannot empty it below zero; every face flux keeps a single value, so the
    scheme stays exactly conservative.
    Fluxes through non-periodic faces are zero (cells do not leave the domain by taxis).
    """
    nd = grid.ndim
    sensitivity = jnp.reshape(jnp.asarray(sensitivity, u.dtype), (-1,) + (1,) * nd)
    periodic = [bcs[a][0].kind == "periodic" for a in range(nd)]

    def neighbour(x, ax, offset, a):
        # x[i + offset] along ax: wrapped on periodic axes; elsewhere a zero-filled shift.
        # The value shifted in at a non-periodic edge only meets the zero flux of the boundary
        # face (masked below), so the result is that of ``jnp.roll``; the shift is one fused
        # ``lax.pad`` whose transpose is a slice, where a roll is two slices and a concatenate
        # (with the batching of Discretization.nonstiff: default TME reactions + chemotaxis
        # gradient at 64² 5.3 -> 2.7 CPU-ms; results/bench_gradient.md).
        if periodic[a]:
            return jnp.roll(x, -offset, axis=ax)
        return _shift(x, ax, offset)

    faces = []
    for a in range(nd):
        ax = u.ndim - nd + a
        n = u.shape[ax]
        h = grid.spacing[a]
        u_next = neighbour(u, ax, +1, a)
        c_next = neighbour(attractant, ax, +1, a)
        velocity = sensitivity * (c_next - attractant) / h
        if crowding is not None:
            rho_next = neighbour(crowding, ax, +1, a)
            q_here = jnp.maximum(1 - crowding / capacity, 0.0)
            q_next = jnp.maximum(1 - rho_next / capacity, 0.0)
            flux = jnp.where(velocity > 0, velocity * u * q_next, velocity * u_next * q_here)
        else:
            flux = jnp.where(velocity > 0, velocity * u, velocity * u_next)
        if not periodic[a]:
            mask = np.ones(n)
            mask[-1] = 0.0
            shape = [1] * u.ndim
            shape[ax] = n
            flux = flux * jnp.asarray(mask.reshape(shape), dtype=u.dtype)
        faces.append(flux)  # flux across the high face of each cell (µm/time · units)
    if dt is not None:
        outflow = jnp.zeros_like(u)
        for a, flux in enumerate(faces):
            ax = u.ndim - nd + a
            flux_lo = neighbour(flux, ax, -1, a)
            outflow = outflow + (jnp.maximum(flux, 0) + jnp.maximum(-flux_lo, 0)) / grid.spacing[a]
        # Double `where` so the unused branch has no 0/0 in its gradient.
        # A cell with nothing in it (u <= 0, e.g. a round-off negative) sends nothing out; with
        # no outflow it is never limited, so ``safe`` is never 0 (0·(u/0) was NaN, forward and
        # in the gradient of the other branch). Same value and derivative as u for u >= 0.
        held = jnp.where(u >= 0, u, 0.0)
        limited_cells = dt * outflow > held
        safe = jnp.where(limited_cells, dt * outflow, 1.0)
        scale = jnp.where(limited_cells, held / safe, 1.0)
        limited = []
        for a, flux in enumerate(faces):
            ax = u.ndim - nd + a
            scale_next = neighbour(scale, ax, +1, a)
            limited.append(jnp.where(flux > 0, flux * scale, flux * scale_next))
        faces = limited
    out = jnp.zeros_like(u)
    for a, flux in enumerate(faces):
        ax = u.ndim - nd + a
        out = out - (flux - neighbour(flux, ax, -1, a)) / grid.spacing[a]
    return out
