"""Spherically symmetric (radial) finite volumes: a 3D tumor at the cost of a 1D grid.

Cells are spherical shells ``[r_{i-1/2}, r_{i+1/2}]`` with ``r_{i±1/2} = (i + 1/2 ± 1/2) h``.
Per shell, with face areas ``A = r²`` and shell measure ``V = (r₊³ − r₋³)/3`` (the 4π cancels):

    (∇·(D∇u))_i = [A₊ D₊ (u_{i+1} − u_i) − A₋ D₋ (u_i − u_{i−1})] / (h V_i)

The inner face of the first shell has zero area (the centre), so no boundary condition is
needed there; the outer face takes zero flux or a Dirichlet value via the usual ghost cell.
Mass ``Σ 4π V_i u_i`` is conserved to round-off with zero flux. Implicit solves are direct
tridiagonal solves (``jax.lax.linalg.tridiagonal_solve``), so diffusivity maps and local
uptake need no iteration here. The geometry is selected with ``Grid(..., geometry="spherical")``.
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp
from jax.lax.linalg import tridiagonal_solve

from .grid import AxisBC, Grid
from .operators import face_diffusivity

__all__ = ["metric", "check_boundaries", "diffusion", "implicit_solve", "chemotaxis_divergence"]


def metric(grid: Grid):
    """(weight of the outer face, weight of the inner face) per shell, 1/µm: A±/V."""
    n, h = grid.shape[0], grid.spacing[0]
    r_out = np.arange(1, n + 1) * h
    r_in = np.arange(0, n) * h
    shell = (r_out**3 - r_in**3) / 3
    return r_out**2 / shell, r_in**2 / shell


def _face_d(d, bc_hi: str):
    """Face diffusivities (outer face of each shell); the last face takes the edge value."""
    inner = face_diffusivity(d[..., :-1], d[..., 1:])
    return jnp.concatenate([inner, d[..., -1:]], axis=-1)


def _coefficients(d, grid: Grid, bcs: tuple[AxisBC, ...]):
    """Lower/diag/upper of the homogeneous operator ∇·(D∇) (1/µm² × D units) and the lift
    factor ``2 A₊ D / (h V)`` for an outer Dirichlet value."""
    w_out, w_in = metric(grid)
    h = grid.spacing[0]
    hi = bcs[0][1]
    d_face = _face_d(d, hi.kind)  # (..., n) outer-face D
    d_in = jnp.concatenate([jnp.zeros_like(d_face[..., :1]), d_face[..., :-1]], axis=-1)
    upper = jnp.asarray(w_out / h) * d_face
    lower = jnp.asarray(w_in / h) * d_in
    mask_last = np.ones(grid.shape[0])
    mask_last[-1] = 0.0
    upper_interior = upper * mask_last
    diag = -(upper_interior + lower)
    lift = jnp.zeros_like(upper)
    if hi.kind == "dirichlet":
        edge = upper[..., -1:]
        diag = diag.at[..., -1].add(-2 * edge[..., 0])
        lift = lift.at[..., -1].set(2 * edge[..., 0] * hi.value)
    return lower, diag, upper_interior, lift


def check_boundaries(name: str, bcs: tuple[AxisBC, ...]):
    lo, hi = bcs[0]
    if lo.kind != "neumann" or hi.kind == "periodic":
        raise ValueError(
            f"species {name!r}: on a spherical grid x_lo is the centre (use 'neumann') and "
            f"x_hi must be 'neumann' or 'dirichlet'; got x_lo={lo.kind!r}, x_hi={hi.kind!r}")


def diffusion(u, d, grid: Grid, bcs):
    """∇·(D∇u) for shells; u, d: (S, n). Includes the Dirichlet lift."""
    lower, diag, upper, lift = _coefficients(jnp.broadcast_to(d, u.shape), grid, bcs)
    u_prev = jnp.concatenate([u[..., :1], u[..., :-1]], axis=-1)
    u_next = jnp.concatenate([u[..., 1:], u[..., -1:]], axis=-1)
    return lower * u_prev + diag * u + upper * u_next + lift


def implicit_solve(rhs, gamma, d, k, grid: Grid, bcs):
    """Solve ``(I − γ(∇·(D∇) − k)) u = rhs + γ·lift`` directly; rhs, d, k broadcast to (S, n)."""
    d = jnp.broadcast_to(d, rhs.shape)
    k = jnp.broadcast_to(k, rhs.shape)
    lower, diag, upper, lift = _coefficients(d, grid, bcs)
    dl = -gamma * lower
    du = -gamma * upper
    dd = 1 + gamma * k - gamma * diag
    # tridiagonal_solve wants dl[0] = du[-1] = 0.
    dl = dl.at[..., 0].set(0.0)
    du = du.at[..., -1].set(0.0)
    b = rhs + gamma * lift
    return tridiagonal_solve(dl, dd, du, b[..., None])[..., 0]


def chemotaxis_divergence(u, attractant, sensitivity, grid: Grid, crowding=None, capacity=None, dt=None):
    """Radial upwind Keller–Segel flux divergence (see operators.chemotaxis_divergence)."""
    w_out, w_in = metric(grid)
    h = grid.spacing[0]
    sensitivity = jnp.reshape(jnp.asarray(sensitivity, u.dtype), (-1, 1))
    u_next = jnp.concatenate([u[..., 1:], u[..., -1:]], axis=-1)
    c_next = jnp.concatenate([attractant[..., 1:], attractant[..., -1:]], axis=-1)
    velocity = sensitivity * (c_next - attractant) / h
    if crowding is not None:
        rho_next = jnp.concatenate([crowding[..., 1:], crowding[..., -1:]], axis=-1)
        q_here = jnp.maximum(1 - crowding / capacity, 0.0)
        q_next = jnp.maximum(1 - rho_next / capacity, 0.0)
        flux = jnp.where(velocity > 0, velocity * u * q_next, velocity * u_next * q_here)
    else:
        flux = jnp.where(velocity > 0, velocity * u, velocity * u_next)
    mask = np.ones(grid.shape[0])
    mask[-1] = 0.0
    flux = flux * mask  # no taxis through the outer face
    w_out_j, w_in_j = jnp.asarray(w_out, u.dtype), jnp.asarray(w_in, u.dtype)
    if dt is not None:
        flux_in = jnp.concatenate([jnp.zeros_like(flux[..., :1]), flux[..., :-1]], axis=-1)
        outflow = w_out_j * jnp.maximum(flux, 0) + w_in_j * jnp.maximum(-flux_in, 0)
        limited_cells = dt * outflow > u
        safe = jnp.where(limited_cells, dt * outflow, 1.0)
        scale = jnp.where(limited_cells, u / safe, 1.0)
        scale_next = jnp.concatenate([scale[..., 1:], scale[..., -1:]], axis=-1)
        flux = jnp.where(flux > 0, flux * scale, flux * scale_next)
    flux_in = jnp.concatenate([jnp.zeros_like(flux[..., :1]), flux[..., :-1]], axis=-1)
    return -(w_out_j * flux - w_in_j * flux_in)
