"""Time stepping: schemes as objects over a typed carry, the checkpointed loop, the :class:`Simulator`.

Schemes (``scheme=``, registered in :data:`SCHEMES`):

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
``etd1``    exponential Euler / Cox–Matthews ETD2RK, order 1 / 2: diffusion + decay
``etdrk2``  integrated exactly through the fast transforms (φ-functions), the rest explicit;
            exact on linear constant-coefficient problems at any dt (:mod:`~tmepde.stepping.etd`).

Modules: :mod:`~tmepde.stepping.base` (:class:`Carry`, :class:`StepContext`, the
:class:`Scheme` protocol, :func:`register`), :mod:`~tmepde.stepping.explicit` (Runge–Kutta
tableaux as data), :mod:`~tmepde.stepping.imex` (the IMEX Euler/BDF family and its graded
start), :mod:`~tmepde.stepping.loop` (the checkpointed scan), :mod:`~tmepde.stepping.simulator`.
A new Runge–Kutta method or BDF order is one :func:`register` call in its family's module.
"""

from __future__ import annotations

from .base import SCHEMES, Carry, Scheme, StepContext, register
from . import imex as _imex  # registers sbdf2, sbdf3, sbdf4, sbdf1 (in this order)
from . import explicit as _explicit  # registers rk4, ssprk3, euler
from . import etd as _etd  # registers etd1, etdrk2
from .explicit import ButcherTableau, ExplicitRK, ShuOsherTableau
from .imex import ImexBDF, ImexEuler, imex_bdf_coefficients
from .simulator import Simulator, simulate

IMPLICIT_SCHEMES = tuple(name for name, s in SCHEMES.items() if s.implicit)
"""Names of the schemes whose stiff linear part is implicit (no explicit diffusion limit)."""

__all__ = ["SCHEMES", "IMPLICIT_SCHEMES", "Carry", "Scheme", "StepContext", "register",
           "ButcherTableau", "ShuOsherTableau", "ExplicitRK", "ImexBDF", "ImexEuler",
           "imex_bdf_coefficients", "Simulator", "simulate"]
