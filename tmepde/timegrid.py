"""The run's time grid: step ``dt``, save interval ``save_every`` and end ``t_end`` (all h).

The one validator of these values, shared by the configuration reader and the
:class:`~tmepde.Simulator` (pure Python: the config reader loads without JAX). Each mistake
raises :class:`TimeGridError`, a ``ValueError`` whose ``key`` is the config key it concerns and
whose one-line message names that key and a value that would work.
"""

from __future__ import annotations

import math

__all__ = ["TimeGridError", "MAX_STEPS", "whole_multiple", "check_time_grid"]

MAX_STEPS = 10**9  # time steps per run: beyond this a run cannot finish (and int32 step counters wrap)


class TimeGridError(ValueError):
    """A time-grid mistake; ``key`` is the dotted config key it concerns."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def whole_multiple(a: float, b: float) -> int | None:
    """``a / b`` if it is a whole number >= 1 (to 1e-9 relative), else None."""
    r = a / b
    if not math.isfinite(r):
        return None
    n = round(r)
    return n if n >= 1 and abs(r - n) <= 1e-9 * max(1.0, r) else None


def _positive_hours(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise TimeGridError(key, f"{key} must be a positive number of hours, got {value!r}")
    return float(value)


def check_time_grid(dt: float, save_every: float, t_end: float | None = None) -> int:
    """Check ``dt``, ``save_every`` (and ``t_end`` when given); returns steps per save.

    save_every must be a whole multiple of dt, t_end a whole multiple of save_every, and a run
    at most :data:`MAX_STEPS` steps long.
    """
    dt = _positive_hours("time.dt", dt)
    save_every = _positive_hours("time.save_every", save_every)
    if t_end is not None:
        t_end = _positive_hours("time.t_end", t_end)
        steps = t_end / dt
        if steps > MAX_STEPS:
            raise TimeGridError("time.dt", f"time.dt = {dt:g} h gives {steps:.3g} steps to time.t_end = "
                                f"{t_end:g} h, more than a run can take ({MAX_STEPS:.0e}); use "
                                f"dt >= {t_end / MAX_STEPS:g} h (the IMEX schemes are stable at "
                                "dt ~ 0.1-1 h)")
        if save_every > t_end:  # (also keeps save_every / dt <= MAX_STEPS below)
            raise TimeGridError("time.save_every", f"time.save_every ({save_every:g} h) must be at "
                                f"most time.t_end ({t_end:g} h); e.g. save_every = {t_end:g}")
    steps_per_save = whole_multiple(save_every, dt)
    if steps_per_save is None:
        fix = max(1, round(save_every / dt)) * dt
        raise TimeGridError("time.save_every", f"time.save_every ({save_every:g} h) must be a whole "
                            f"multiple of time.dt ({dt:g} h); e.g. save_every = {fix:g}")
    if t_end is not None and whole_multiple(t_end, save_every) is None:
        fix = max(1, round(t_end / save_every)) * save_every
        raise TimeGridError("time.t_end", f"time.t_end ({t_end:g} h) must be a whole multiple of "
                            f"time.save_every ({save_every:g} h); e.g. t_end = {fix:g}")
    return steps_per_save
