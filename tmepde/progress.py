"""Progress of long commands: a compiling phase, then steps with an ETA from compute time only.

The first call of a compiled program blocks while XLA compiles it (seconds to minutes on a
CPU), so a rate measured from the start would promise an ETA many times too long. A
:class:`Progress` says "compiling" until the first unit of work is done, then restarts its
clock: the ETA is the remaining units at the rate measured since.

On a terminal it draws a tqdm bar; otherwise (batch jobs, logs, CI) it writes one line at the
start of each phase and then at most every ``every_s`` seconds and at the end, so a log shows
that work goes on and when it will end. ``enabled=False`` is silent.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

__all__ = ["Progress", "format_seconds"]


def format_seconds(s: float) -> str:
    """``75`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    s = max(int(round(s)), 0)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """Progress of ``total`` units (saves, members, generations) of one command.

    Use as a context manager: ``compiling()`` before the first compiled call, ``update(n)``
    after each finished piece of work, ``note(text)`` for a one-off message.
    ``initial``: units already done (a resumed run). ``stream``/``clock``/``tty`` are for tests (default: stderr, ``time.monotonic``, whether
    ``stream`` is a terminal).
    """

    def __init__(self, total: int, desc: str, unit: str = "step", *, initial: int = 0,
                 enabled: bool = True, every_s: float = 30.0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, tty: bool | None = None):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.enabled, self.every_s = enabled, float(every_s)
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.tty = (tty if tty is not None else bool(getattr(self.stream, "isatty", lambda: False)())) \
            and enabled
        self.done = int(initial)  # units finished before this process (a resumed run)
        self.phase = "starting"
        self._t0 = self._t_compute = self._t_last = clock()
        self._done_at_compute = 0
        self._bar = None
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.done, unit=unit, desc=desc,
                             file=self.stream, leave=True)

    # -- phases -------------------------------------------------------------------------
    def compiling(self) -> None:
        """The next call compiles (no ETA until a unit of work is done)."""
        self.phase = "compiling"
        if self._bar is not None:
            self._bar.set_description(f"{self.desc} (compiling)")
        else:
            self._line("compiling (once per program; later runs of it reuse the compiled code)")

    def update(self, n: int = 1) -> None:
        """``n`` more units done. The first update after compiling ends that phase and starts
        the clock the ETA is measured with."""
        now = self.clock()
        if self.phase != "computing":
            if self.phase == "compiling":
                self._line_now(f"first results after {format_seconds(now - self._t0)} (compiling included)")
            self.phase = "computing"
            self._t_compute, self._done_at_compute = now, self.done + n
            self.done += n
            if self._bar is not None:  # restart tqdm's clock; its rate excludes `initial`
                self._bar.reset(total=self.total)
                self._bar.initial = self._bar.n = self.done
                self._bar.set_description(self.desc)  # (refreshes)
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.done >= self.total or now - self._t_last >= self.every_s:
            self._line(self._status(now))

    def eta(self) -> float | None:
        """Seconds left at the compute rate so far, or None before it can be measured."""
        units = self.done - self._done_at_compute
        if self.phase != "computing" or units <= 0:
            return None
        rate = units / max(self.clock() - self._t_compute, 1e-9)
        return (self.total - self.done) / rate

    def note(self, text: str) -> None:
        """A one-off message that does not break the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(f"{self.desc}: {text}", file=self.stream)
        else:
            self._line_now(text)

    # -- output -------------------------------------------------------------------------
    def _status(self, now: float) -> str:
        eta = self.eta()
        left = f", about {format_seconds(eta)} left" if eta is not None else ""
        return (f"{self.done}/{self.total} {self.unit}s, {format_seconds(now - self._t0)} elapsed{left}")

    def _line(self, text: str) -> None:
        if self._bar is None:
            self._line_now(text)

    def _line_now(self, text: str) -> None:
        if self.enabled and self._bar is None:
            print(f"{self.desc}: {text}", file=self.stream, flush=True)
            self._t_last = self.clock()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
