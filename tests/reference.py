"""Independent dense reference operators for the tests (plain NumPy, no tmepde code)."""

import numpy as np


def dense_laplacian_1d(n, h, lo, hi):
    """3-point Laplacian matrix (1/h²) with ghost-cell BCs; kinds 'neumann'/'dirichlet'/'periodic'.

    Dirichlet here is homogeneous (the affine part is checked separately).
    """
    A = np.zeros((n, n))
    for i in range(n):
        A[i, i] = -2.0
        if i > 0:
            A[i, i - 1] = 1.0
        if i < n - 1:
            A[i, i + 1] = 1.0
    if lo == "periodic":
        A[0, -1] += 1.0
        A[-1, 0] += 1.0
    else:
        A[0, 0] += 1.0 if lo == "neumann" else -1.0
        A[-1, -1] += 1.0 if hi == "neumann" else -1.0
    return A / h**2


def dense_laplacian(shape, spacing, kinds):
    """Kronecker-sum Laplacian for a grid; kinds: per-axis (lo, hi) kind strings."""
    mats = [dense_laplacian_1d(n, h, lo, hi) for n, h, (lo, hi) in zip(shape, spacing, kinds)]
    total = np.zeros((int(np.prod(shape)),) * 2)
    for a, M in enumerate(mats):
        term = np.ones((1, 1))
        for b in range(len(mats)):
            term = np.kron(term, M if a == b else np.eye(shape[b]))
        total += term
    return total


def dense_variable_diffusion_1d(d, h, lo, hi):
    """∇·(D∇) matrix with harmonic-mean faces; boundary faces take the edge cell's D."""
    n = len(d)
    A = np.zeros((n, n))
    harm = lambda a, b: 2 * a * b / (a + b)
    for i in range(n):
        if i + 1 < n:
            f = harm(d[i], d[i + 1])
            A[i, i] -= f
            A[i, i + 1] += f
        elif hi == "dirichlet":
            A[i, i] -= 2 * d[i]
        elif hi == "periodic":
            f = harm(d[i], d[0])
            A[i, i] -= f
            A[i, 0] += f
        if i - 1 >= 0:
            f = harm(d[i], d[i - 1])
            A[i, i] -= f
            A[i, i - 1] += f
        elif lo == "dirichlet":
            A[i, i] -= 2 * d[i]
        elif lo == "periodic":
            f = harm(d[i], d[-1])
            A[i, i] -= f
            A[i, -1] += f
    return A / h**2
