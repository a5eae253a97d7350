"""The checkpointed time loop: ``n_saves`` save intervals of ``steps_per_save`` steps.

An outer ``lax.scan`` over saves, every level under ``jax.checkpoint`` (Griewank & Walther
2000, ACM TOMS 26:19). Reverse mode stores one carry per save; while one save interval of
``n`` steps is recomputed it stores one carry per step, and each step is recomputed once
more inside its own derivative. Long intervals (``n >`` :data:`STEPS_PER_INTERVAL`) add a
level of blocks of ~√n steps: one carry per block and one per step of the block being
recomputed, ``2√n`` in all instead of ``n``, for one more recomputation of every step.
Memory grows as ``n_saves + min(n, 2√n)`` carries, not one per step. Where it is not needed
the block level only costs time (default TME scenario, day-7 burden at 64², 12 steps per
save, side by side: gradient 3.46 against 3.24 CPU-s, 6.2x against 5.5x the forward, temp
memory 57 against 63 MB; ``scripts/bench_gradient.py --loop-levels``).

A step's own checkpoint stores what it solved (:data:`STEP_RESIDUALS`: the implicit solve's
solution and each CG solution), so its derivative recomputes only the reactions, chemotaxis
and local rates, not the transforms and CG iterations the save interval's recomputation has
just run: about one state more per step of that interval (memory still follows saves), and
the day-7 gradient at 64² 6.00x → 5.60x the forward side by side
(``scripts/bench_gradient.py --step-residuals``).

``prevent_cse=False`` on every level: the default wraps each recomputation in an optimisation
barrier so that XLA cannot merge it with the forward pass it repeats (common-subexpression
elimination would undo the rematerialisation). Inside ``lax.scan`` the recomputation runs in
the backward loop's body, where there is no forward copy to merge with (JAX's documentation
of ``jax.checkpoint`` says so), and the barrier only keeps XLA from fusing the recomputed step
with its backward pass (scripts/bench_gradient_layout.py measures both side by side).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Mapping

import jax

from ..discretization import IMPLICIT_SOLUTION, KRYLOV_SOLUTION
from .base import Carry

Step = Callable[[Carry, Mapping], Carry]

#: Save intervals of up to this many steps are recomputed step by step (no block level).
STEPS_PER_INTERVAL = 16

#: ``jax.checkpoint`` for a ``lax.scan`` body: without the optimisation barrier (module docstring).
scan_checkpoint = functools.partial(jax.checkpoint, prevent_cse=False)

#: Values a step stores for its own derivative instead of recomputing them (names given with
#: ``jax.ad_checkpoint.checkpoint_name``): the implicit solve's solution and each CG solve's.
#: Module docstring: why.
STEP_RESIDUALS: tuple[str, ...] = (IMPLICIT_SOLUTION, KRYLOV_SOLUTION)


def step_checkpoint(fn):
    """:data:`scan_checkpoint` for one step's body, storing :data:`STEP_RESIDUALS` (read when
    the body is traced, so a caller may change them before)."""
    policy = jax.checkpoint_policies.save_only_these_names(*STEP_RESIDUALS) if STEP_RESIDUALS else None
    return jax.checkpoint(fn, prevent_cse=False, policy=policy)


def advance(step: Step, steps_per_save: int, carry: Carry, params: Mapping, n_saves: int,
            tabulate: Callable[[Carry, int, Mapping], dict] | None = None):
    """Apply ``step`` ``n_saves · steps_per_save`` times; returns ``(carry, ys)`` with ys
    ``(n_saves, S, *shape)`` the states at the end of each save interval. Pure: jit it with
    ``n_saves`` static.

    tabulate: optional ``(carry, n_steps, params) -> {key: (n_steps, ...)}``, the model's
    time-only inputs at the times the steps evaluate them (:meth:`tmepde.model.Model.tabulate_inputs`),
    computed once before the loop; step ``i`` gets row ``i`` of each under its key in
    ``params``. In reverse mode each step adds its row's cotangent to the table and the
    table's own derivative runs once, vectorised, after the loop.
    """
    n = steps_per_save
    tables = tabulate(carry, n_saves * n, params) if tabulate is not None else {}
    first = carry.step

    def step_params(c):
        if not tables:
            return params
        i = c.step - first
        return {**params, **{k: jax.lax.dynamic_index_in_dim(v, i, keepdims=False) for k, v in tables.items()}}

    block = n if n <= STEPS_PER_INTERVAL else max(1, math.isqrt(n))
    n_blocks, remainder = divmod(n, block)

    @step_checkpoint
    def one_step(c, _):
        return step(c, step_params(c)), None

    def one_block(c, _):
        c, _ = jax.lax.scan(one_step, c, None, length=block)
        return c, None

    if n_blocks > 1:  # one block is the interval itself: its own checkpoint would only recompute
        one_block = scan_checkpoint(one_block)

    @scan_checkpoint
    def one_save(c, _):
        c, _ = jax.lax.scan(one_block, c, None, length=n_blocks)
        if remainder:
            c, _ = jax.lax.scan(one_step, c, None, length=remainder)
        return c, c.y

    return jax.lax.scan(one_save, carry, None, length=n_saves)
