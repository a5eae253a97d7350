"""Config → simulation → HDF5: the host-side loop over compiled chunks of saves.

The time loop itself is the Simulator's jitted ``advance`` (a ``lax.scan`` over saves); this
module only calls it once per chunk of ``output.chunk`` saves, checks the chunk is finite,
appends it to the result file and moves the progress bar.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import jax
import numpy as np

from .config import Config, load_config
from .io import ResultWriter
from .stepping import Simulator

__all__ = ["NonFiniteError", "Setup", "build", "run_config"]


class NonFiniteError(FloatingPointError):
    """A field became NaN or infinite. ``species`` and ``time`` (h) say where it happened
    first; the result file holds every save before it."""

    def __init__(self, species: str, time: float, path=None):
        where = f"; the saves before it are in {str(path)!r}" if path else ""
        super().__init__(
            f"field {species!r} became non-finite (NaN or inf) at t = {time:g} h{where}. "
            "Try a smaller time.dt, solver.scheme = \"sbdf2\", or check the model's rates")
        self.species = species
        self.time = time


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
    """Everything a run needs, built from a :class:`~tmepde.config.Config`."""

    config: Config
    simulator: Simulator
    params: dict
    y0: np.ndarray  # (S, *grid.shape), the simulator's dtype
    n_saves: int


def build(config: Config) -> Setup:
    """Simulator, parameters and initial state of a config (enables x64 for float64)."""
    if config.dtype == np.float64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    d, s = config.data["time"], config.data["solver"]
    sim = Simulator(config.model, config.grid, dt=d["dt"], save_every=d["save_every"],
                    scheme=s["scheme"], dtype=config.dtype, cg_tol=s.get("cg_tol"),
                    chemotaxis_limiter=s["chemotaxis_limiter"], start_window=s["start_window"])
    params = config.params(sim.dtype)
    y0 = config.initial_state().astype(sim.dtype)
    return Setup(config, sim, params, y0, config.n_saves)


def _first_nonfinite(ys: np.ndarray, names) -> tuple[int, str] | None:
    """(save index, species) of the first non-finite value in ``ys`` (T, S, ...), or None."""
    finite = np.isfinite(ys).reshape(ys.shape[0], ys.shape[1], -1).all(axis=-1)
    if finite.all():
        return None
    k = int(np.argmin(finite.all(axis=1)))
    return k, names[int(np.argmin(finite[k]))]


def _salvage(writer: ResultWriter, in_flight, names) -> None:
    """Write the finite leading saves of chunks still in flight (best effort)."""
    for times, ys in in_flight:
        try:
            ys = np.asarray(ys)
        except Exception:  # the computation itself failed: nothing more to keep
            return
        bad = _first_nonfinite(ys, names)
        k = len(times) if bad is None else bad[0]
        writer.append(times[:k], ys[:k])
        if bad is not None:
            return


def run_config(config: Config | str | Path, out_path: str | Path | None = None, *,
               progress: bool = True, overrides=()) -> Path:
    """Run a config and write its result file; returns the file's path.

    config: a :class:`Config` or a TOML file (``overrides`` are ``dotted.key=value``).
    out_path: the HDF5 file (default ``output.path`` of the config).
    progress: show a tqdm bar with ETA (only when stderr is a terminal).

    Raises :class:`NonFiniteError` if a field stops being finite: the file then holds every
    save before the first bad one and ``status = "failed: ..."``.
    """
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    elif overrides:
        config = config.replace(*overrides)
    out_path = Path(out_path if out_path is not None else config.data["output"]["path"])
    setup = build(config)
    sim, names = setup.simulator, config.model.names
    chunk = config.data["output"]["chunk"]
    save_every = sim.save_every

    from tqdm import tqdm

    bar = tqdm(total=setup.n_saves, unit="save", desc=f"tmepde {config.model.name}",
               disable=not (progress and sys.stderr.isatty()), leave=True)
    writer = ResultWriter(out_path, config.grid, config.model, config_toml=config.to_toml(),
                          dtype=sim.dtype, compression=config.data["output"]["compression"],
                          params=setup.params)
    from .therapy import dose_events

    events = dose_events(setup.params, t_end=save_every * setup.n_saves)
    if events:  # dose markers for plots: all times, and per schedule
        writer.set_attrs({"dose_times_h": np.unique(np.concatenate(list(events.values()))),
                          **{f"dose_times_h_{k}": v for k, v in events.items()}})
    in_flight = []  # (save times, device states) dispatched, not yet written
    try:
        bad = _first_nonfinite(setup.y0[None], names)
        if bad is not None:
            raise NonFiniteError(bad[1], 0.0, out_path)
        carry = sim.init(setup.y0, setup.params)
        writer.append([0.0], np.asarray(carry["y"])[None])
        # JAX dispatch is asynchronous: chunk k+1 is already computing while chunk k is
        # copied, checked and compressed into the file (the write overlaps the compute).
        # Every chunk has the same length (the number of saves per call is static, so a
        # shorter last chunk would compile the loop a second time, ~10-30 s for the TME
        # model): chunks are balanced and the last one computes past the end and is cut.
        per_call = -(-setup.n_saves // -(-setup.n_saves // chunk))
        done = 0
        while done < setup.n_saves or in_flight:
            if done < setup.n_saves:
                n = min(per_call, setup.n_saves - done)
                carry, ys = sim.advance(carry, setup.params, per_call)
                in_flight.append((save_every * np.arange(done + 1, done + n + 1), ys[:n]))
                done += n
                if len(in_flight) < 2 and done < setup.n_saves:
                    continue
            times, ys = in_flight.pop(0)
            ys = np.asarray(ys)
            bad = _first_nonfinite(ys, names)
            if bad is not None:
                k, species = bad
                writer.append(times[:k], ys[:k])
                raise NonFiniteError(species, float(times[k]), out_path)
            writer.append(times, ys)
            bar.update(len(times))
    except BaseException as e:
        if not isinstance(e, NonFiniteError):
            _salvage(writer, in_flight, names)  # chunks computed before the interruption
        writer.close(f"failed: {type(e).__name__}: {e}")
        raise
    finally:
        bar.close()
    writer.close("complete")
    # Coordinates for generic HDF5 readers/xarray and a sidecar ParaView opens directly.
    from .xdmf import attach_dimension_scales, write_xdmf

    attach_dimension_scales(out_path)
    write_xdmf(out_path)
    return out_path
