"""Config → simulation → HDF5: the host-side loop over compiled chunks of saves.

The time loop itself is the Simulator's jitted ``advance`` (a ``lax.scan`` over saves); this
module only calls it once per chunk of ``output.chunk`` saves, checks the chunk is finite,
appends it to the result file and moves the progress bar.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from pathlib import Path

import jax
import numpy as np

from .config import Config, ConfigError, load_config
from .io import ResultFileError, ResultWriter, open_result, ResultWriteError, check_output
from .progress import Progress
from .stepping import Simulator

__all__ = ["NonFiniteError", "CollapseError", "RunInterrupted", "StopOnSignals", "Setup", "build",
           "run_config", "precision", "require_x64", "model_observer", "collapse_mask"]


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


class CollapseError(NonFiniteError):
    """A non-negative field that was present became exactly 0 in every cell within one save
    interval. Decay and uptake never reach exactly 0 (they are multiplicative), so this is the
    clipping of negatives erasing an overshoot: an unstable explicit step, not a cure. Stops
    the run like a non-finite value (``species``, ``time`` in h; saves before it are kept)."""

    def __init__(self, species: str, time: float, path=None):
        where = f"; the saves before it are in {str(path)!r}" if path else ""
        FloatingPointError.__init__(
            self, f"field {species!r} collapsed to exactly 0 everywhere by t = {time:g} h although "
            f"it was > 0 one save earlier: the clipping of negative values hid an unstable step{where}. "
            "Try a smaller time.dt or check the model's rates (model.params)")
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


def precision(dtype):
    """Context manager for the work of a run in ``dtype``: JAX's 64-bit mode for float64,
    switched on for this block (and thread) only, so a library call leaves the process's JAX
    settings as it found them; nothing for float32."""
    if np.dtype(dtype) == np.float64:
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def require_x64(config: Config) -> None:
    """Refuse a float64 config while JAX's 64-bit mode is off: JAX would silently compute in
    float32."""
    if config.dtype == np.float64 and not jax.config.jax_enable_x64:
        raise ConfigError("solver.dtype", "solver.dtype = 'float64' needs JAX's 64-bit mode, which is "
                          "off: run inside `with tmepde.runner.precision(config.dtype):` (run_config, "
                          "run_sweep and the tmepde command do), or set JAX_ENABLE_X64=1")


def build(config: Config) -> Setup:
    """Simulator, parameters and initial state of a config. A float64 config needs JAX's
    64-bit mode on (:func:`precision`); else :class:`ConfigError` (:func:`require_x64`)."""
    require_x64(config)
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


def collapse_mask(peaks: np.ndarray, nonnegative) -> np.ndarray:
    """The collapse rule of runs and sweeps: a non-negative species is exactly 0 in every cell
    at a save while its largest value one save earlier exceeded √tiny of the dtype (so a
    legitimate decay that underflows over one save interval is not reported).

    peaks: (..., T, S) largest absolute value per save and species, in the run's dtype;
    nonnegative: (S,) bools. Returns (..., T - 1, S): save ``k + 1`` collapsed."""
    peaks = np.asarray(peaks)
    tiny = np.sqrt(np.finfo(peaks.dtype).tiny) if np.issubdtype(peaks.dtype, np.floating) else 0.0
    return (peaks[..., 1:, :] == 0) & (np.abs(peaks[..., :-1, :]) > tiny) & np.asarray(nonnegative, bool)


def _peaks(ys: np.ndarray) -> np.ndarray:
    """(T, S) largest absolute value per save and species of ``ys`` (T, S, ...), as
    max(max, -min): two reductions and no temporary the size of ``ys`` (``abs`` then ``max``
    took ~0.15 s per chunk of the default scenario)."""
    flat = ys.reshape(ys.shape[0], ys.shape[1], -1)
    return np.maximum(flat.max(axis=-1), -flat.min(axis=-1))


def _first_collapse(y_prev: np.ndarray, ys: np.ndarray, names, nonnegative) -> tuple[int, str] | None:
    """(save index, species) of the first collapsed save of ``ys`` (T, S, ...) by
    :func:`collapse_mask`, ``y_prev`` (S, ...) being the save before, or None."""
    peaks = np.concatenate([_peaks(y_prev[None]), _peaks(ys)])
    bad = collapse_mask(peaks, nonnegative)  # (T, S)
    if not bad.any():
        return None
    k = int(np.argmax(bad.any(axis=1)))
    return k, names[int(np.argmax(bad[k]))]


def _first_failure(y_prev, ys, names, nonnegative):
    """The earliest non-finite or collapsed save of a chunk: (index, species, error class)."""
    found = [(*b, e) for b, e in ((_first_nonfinite(ys, names), NonFiniteError),
                                  (_first_collapse(y_prev, ys, names, nonnegative), CollapseError))
             if b is not None]
    return min(found, key=lambda f: f[0]) if found else None


def model_observer(model, params, grid):
    """``observe(times (T,) h, ys (T, S, *grid)) -> {name: (T,) float64}``: the model's own
    :class:`~tmepde.model.Observable` summaries of saves, jitted and vmapped over saves, or
    None when the model has none. Evaluated here, so result files only store arrays."""
    if not model.observables:
        return None
    f = jax.jit(jax.vmap(lambda t, y: model.observe(t, y, params, grid)))

    def observe(times, ys) -> dict:
        ys = np.asarray(ys)
        return {k: np.asarray(v, np.float64) for k, v in f(np.asarray(times).astype(ys.dtype), ys).items()}

    return observe


def _append(writer: ResultWriter, observe, times, ys) -> None:
    """Append saves with the model observables the file stores."""
    wanted = observe is not None and writer.observables and len(times)
    writer.append(times, ys, observe(times, ys) if wanted else None)


def _salvage(writer: ResultWriter, in_flight, names, observe=None) -> None:
    """Write the finite leading saves of chunks still in flight (best effort), with the
    restart state of each chunk written in full."""
    for times, ys, restart in in_flight:
        try:
            ys = np.asarray(ys)
        except Exception:  # the computation itself failed: nothing more to keep
            return
        bad = _first_nonfinite(ys, names)
        k = len(times) if bad is None else bad[0]
        _append(writer, observe, times[:k], ys[:k])
        if bad is not None:
            return
        if restart is not None:
            writer.set_restart(jax.tree.leaves(restart), writer.n - 1)


def _branch_state(path, time_h, config: Config, dtype) -> tuple[np.ndarray, float]:
    """(state (S, *grid), time in h) of the save at ``time_h`` (None: the last) of a result
    file, checked against the config's grid and species."""
    from .io import ResultFileError

    with open_result(path) as r:
        where = repr(str(path))
        if r.grid.shape != config.grid.shape or not np.allclose(r.grid.spacing, config.grid.spacing):
            raise ResultFileError(f"{where} has grid {r.grid.shape} × {r.grid.spacing} µm, the config "
                                  f"{config.grid.shape} × {config.grid.spacing} µm; branch from a "
                                  "result of the same grid")
        missing = [s for s in config.model.names if s not in r.species]
        if missing:
            raise ResultFileError(f"{where} has no fields {missing} of the config's model "
                                  f"(it has {r.species}); branch from a run of the same model")
        if not len(r):
            raise ResultFileError(f"{where} holds no saves to branch from")
        try:
            i = len(r) - 1 if time_h is None else r.time_index(time_h)
        except KeyError as e:
            raise ResultFileError(str(e).strip("'\"")) from None
        y0 = np.stack([r.field(s, i) for s in config.model.names]).astype(dtype)
        return y0, float(r.time[i])


def _whole_saves(span: float, save_every: float, branch) -> int:
    n = round(span / save_every)
    if n < 1 or abs(n * save_every - span) > 1e-9 * max(1.0, abs(span)):
        from .io import ResultFileError

        raise ResultFileError(f"the branch point leaves {span:g} h to time.t_end, not a positive "
                              f"multiple of time.save_every = {save_every:g} h; raise time.t_end "
                              f"(branching from {str(branch)!r})")
    return n


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM after its last complete chunk; the file holds
    every save up to ``time`` (h) and ``status = "interrupted: <signal>"``. ``exit_status``
    is the shell's 128 + signal number (130, 143)."""

    def __init__(self, signum: int, path=None, n_saves: int = 0, time: float | None = None):
        name = signal.Signals(signum).name
        kept = (f"; {n_saves} saves up to t = {time:g} h are in {str(path)!r}" if n_saves
                else (f"; no saves were written to {str(path)!r}" if path else ""))
        super().__init__(f"interrupted by {name}{kept} (status 'interrupted')")
        self.signum, self.signal_name, self.path = signum, name, path
        self.exit_status = 128 + signum


class StopOnSignals:
    """Context manager: SIGINT and SIGTERM set :attr:`signum` instead of raising, so the loop
    stops between two writes (an exception inside an HDF5 write would leave a half-written
    chunk). SIGXFSZ is ignored, so a file-size limit fails the write (EFBIG) instead of
    killing the process. Only in the main thread; elsewhere it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self._old = {}

    def _handler(self, signum, frame):
        self.signum = self.signum or signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
            if hasattr(signal, "SIGXFSZ"):
                self._old[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


def run_config(config: Config | str | Path, out_path: str | Path | None = None, *,
               progress: bool = True, overrides=(), overwrite: bool = False,
               resume: str | Path | None = None, branch: str | Path | None = None,
               branch_time: float | None = None) -> Path:
    """Run a config and write its result file; returns the file's path.

    resume: an interrupted or failed result file to finish in place instead (``config``,
    ``out_path`` and ``overrides`` are then ignored: the run is the file's stored config).
    The file's ``/restart`` holds the stepper's carry (state and multistep history) at its
    last save, so the finished file equals an uninterrupted run bit for bit (same device
    and dtype).
    branch, branch_time: start instead from the save at ``branch_time`` h (default: the last
    save) of an earlier result file ``branch``, which must have the config's grid and
    species; the run goes on to the config's ``time.t_end`` (absolute time, so dose
    schedules keep their times) and its first save is that state. The multistep history
    restarts there (as at t = 0).

    config: a :class:`Config` or a TOML file (``overrides`` are ``dotted.key=value``).
    out_path: the HDF5 file (default ``output.path`` of the config). An existing file is
    refused (:class:`~tmepde.io.OutputExistsError`) unless ``overwrite``, and the config
    file itself always. With ``overwrite`` the run writes ``<stem>.partial<suffix>``, which
    replaces the old file only once complete; a run that fails or is interrupted leaves the
    old file untouched and its own output in the ``.partial`` file (named in the error;
    ``resume`` it to finish, and it then replaces the old file).
    progress: show progress on stderr (:class:`~tmepde.progress.Progress`: a compiling phase,
    then an ETA from compute time; a bar on a terminal, a line every 30 s otherwise).

    Raises :class:`NonFiniteError` if a field stops being finite: the file then holds every
    save before the first bad one and ``status = "failed: ..."``;
    :class:`~tmepde.io.ResultWriteError` if the file cannot be written (full disk): the saves
    written before stay, ``status = "failed: ..."``; :class:`RunInterrupted` on SIGINT or
    SIGTERM: every complete chunk stays, ``status = "interrupted: SIGINT"`` (or SIGTERM).
    The status becomes ``"complete"`` only after every save was re-read from disk.
    """
    t_called = time.perf_counter()
    config_path, restart = None, None
    if resume is not None:
        from .config import loads_config
        from .io import read_restart

        restart, n_written, _, text = read_restart(resume)  # refuses a complete file
        config = loads_config(text, source=str(resume))
        out_path = Path(resume)
    elif not isinstance(config, Config):
        config_path = config
        config = load_config(config, overrides)
    elif overrides:
        config = config.replace(*overrides)
    if resume is None:
        out_path = Path(out_path if out_path is not None else config.data["output"]["path"])
        check_output(out_path, overwrite=overwrite, protect=(config_path,))
    with precision(config.dtype):  # 64-bit JAX for a float64 run, for this run only
        setup = build(config)
        sim, names = setup.simulator, config.model.names
        y0, t_start, branched = setup.y0, 0.0, None
        if resume is not None:
            with open_result(resume) as r:
                t_start = float(r.attrs.get("start_time_h", 0.0))
        elif branch is not None:
            y0, t_start = _branch_state(branch, branch_time, config, y0.dtype)
            branched = f"{Path(branch).resolve()} @ {t_start:g} h"
        n_saves = _whole_saves(config.data["time"]["t_end"] - t_start, sim.save_every, branch)
        chunk = config.data["output"]["chunk"]
        save_every = sim.save_every
        # Every chunk has the same length (the number of saves per call is static, so a
        # shorter last chunk would compile the loop a second time, ~10-30 s for the TME
        # model): chunks are balanced and the last one computes past the end and is cut.
        # (A resumed run recomputes the same per_call, so its chunks are the original ones.)
        per_call = -(-n_saves // -(-n_saves // chunk))
        from .compile_cache import program_store

        # whole programs where the application keeps them (the CLI: beside its cache), else
        # the simulator's own init and advance
        loop = sim.stored_loop(per_call, program_store())

        observe = model_observer(config.model, setup.params, config.grid)  # None: none to store
        with StopOnSignals() as stop:
            bar = Progress(n_saves, f"tmepde {config.model.name}", "save", enabled=progress,
                           initial=0 if restart is None else n_written - 1)
            if restart is None:
                writer = ResultWriter(out_path, config.grid, config.model, config_toml=config.to_toml(),
                                      dtype=sim.dtype, compression=config.data["output"]["compression"],
                                      observables=config.model.observables, overwrite=overwrite,
                                      protect=(config_path,))
            else:
                writer = ResultWriter.reopen(out_path, config.grid, config.model)
            in_flight = []  # (save times, device states, carry after them) dispatched, not written
            try:
                from .therapy import dose_events

                events = dose_events(setup.params, t_end=t_start + save_every * n_saves)
                if events and restart is None:  # dose markers for plots: all times, and per schedule
                    writer.set_attrs({"dose_times_h": np.unique(np.concatenate(list(events.values()))),
                                      **{f"dose_times_h_{k}": v for k, v in events.items()}})
                nonnegative = [s.nonnegative for s in config.model.species]
                bar.compiling()  # the first init/advance calls compile (or load from the cache)
                # Where the wall time goes (file attributes timing_*; tmepde info): setup (config,
                # model, initial state), start (the graded start: compile and run), compile (the
                # first call of the chunk program blocks while it compiles), device_wait (blocked
                # on the device's results), host_write (checks, observables, compression, HDF5).
                timing = {"setup_s": time.perf_counter() - t_called, "compile_s": 0.0,
                          "device_wait_s": 0.0, "host_write_s": 0.0, "chunks": 0}
                if restart is None:
                    bad = _first_nonfinite(y0[None], names)
                    if bad is not None:
                        raise NonFiniteError(bad[1], 0.0, writer.file_path)
                    carry = loop.init(y0, setup.params, t0=t_start)
                    y_last = np.asarray(carry.y)  # last state written: the collapse check's reference
                    if branched:
                        writer.set_attrs({"start_time_h": t_start, "branched_from": branched})
                    _append(writer, observe, np.array([t_start]), y_last[None])
                    done = 0
                else:  # the carry at the last save, exactly as the interrupted run held it
                    template = loop.init(y0, setup.params, t0=t_start)  # its tree structure
                    leaves = jax.tree.leaves(template)
                    if len(leaves) != len(restart) or any(
                            np.shape(a) != np.shape(b) or np.asarray(a).dtype != b.dtype
                            for a, b in zip(leaves, restart)):
                        raise ResultFileError(f"{str(out_path)!r}: its restart state does not fit the "
                                              "stored config's stepper (another tmepde version?); "
                                              "run the config again")
                    carry = jax.tree.unflatten(jax.tree.structure(template),
                                               [jax.numpy.asarray(a) for a in restart])
                    y_last = np.asarray(carry.y)
                    done = n_written - 1
                # JAX dispatch is asynchronous: chunk k+1 is already computing while chunk k is
                # copied, checked and compressed into the file (the write overlaps the compute).
                timing["start_s"] = time.perf_counter() - t_called - timing["setup_s"]
                while (done < n_saves or in_flight) and stop.signum is None:
                    if done < n_saves:
                        n = min(per_call, n_saves - done)
                        t0 = time.perf_counter()
                        carry, ys = loop.advance(carry, setup.params)
                        # the first call of this process blocks while the program compiles
                        timing["device_wait_s" if in_flight or timing["chunks"] else "compile_s"] += \
                            time.perf_counter() - t0
                        in_flight.append((t_start + save_every * np.arange(done + 1, done + n + 1), ys[:n],
                                          carry if n == per_call else None))
                        done += n
                        if len(in_flight) < 2 and done < n_saves:
                            continue
                    times, ys, chunk_carry = in_flight.pop(0)
                    t0 = time.perf_counter()
                    ys = np.asarray(ys)
                    t1 = time.perf_counter()
                    timing["device_wait_s"] += t1 - t0
                    timing["chunks"] += 1
                    bad = _first_failure(y_last, ys, names, nonnegative)
                    if bad is not None:
                        k, species, error = bad
                        _append(writer, observe, times[:k], ys[:k])
                        raise error(species, float(times[k]), writer.file_path)
                    _append(writer, observe, times, ys)
                    if chunk_carry is not None and writer.n - 1 < n_saves:  # what --resume starts from
                        writer.set_restart(jax.tree.leaves(chunk_carry), writer.n - 1)
                    y_last = ys[-1]
                    timing["host_write_s"] += time.perf_counter() - t1
                    bar.update(len(times))
                if stop.signum is not None:
                    raise KeyboardInterrupt
            except BaseException as e:
                bar.close()
                if isinstance(e, KeyboardInterrupt):
                    # Chunks already computed are kept; the first one still computing and all
                    # after it are dropped: the file ends at a complete chunk, with no gap, and
                    # the stop does not wait for more compute.
                    ready = []
                    for item in in_flight:
                        if not all(getattr(a, "is_ready", lambda: True)() for a in jax.tree.leaves(item[1])):
                            break
                        ready.append(item)
                    try:
                        _salvage(writer, ready, names, observe)
                    except Exception:
                        pass
                    signum = stop.signum or signal.SIGINT
                    writer.close(f"interrupted: {signal.Signals(signum).name}")
                    t_last = float(t_start + save_every * (writer.n - 1)) if writer.n else None
                    raise writer.note_kept(RunInterrupted(signum, writer.file_path, writer.n, t_last)) from None
                if not isinstance(e, (NonFiniteError, ResultWriteError)):
                    try:
                        _salvage(writer, in_flight, names, observe)  # chunks computed before the failure
                    except Exception:
                        pass
                writer.close(f"failed: {type(e).__name__}: {e}")
                writer.note_kept(e)
                raise
            bar.close()
            try:
                timing["total_s"] = time.perf_counter() - t_called  # before the final re-read
                writer.set_attrs({f"timing_{k}": float(v) for k, v in timing.items()})
                out_path = writer.finish()  # re-reads every save before "complete"; ResultWriteError if not
            except ResultWriteError as e:
                raise writer.note_kept(e) from None
        # A sidecar ParaView opens directly.
        from .xdmf import write_xdmf

        write_xdmf(out_path)
        return out_path
