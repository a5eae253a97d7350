"""Command line: ``tmepde <command> ...``.

Each subcommand is a pair of functions registered in :data:`COMMANDS`: one adds its
arguments to an argparse sub-parser, the other runs it and returns the exit status. To add a
command (fit, optimize, sweep, plot, ...) write the pair and call :func:`register`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

import numpy as np

__all__ = ["main", "register", "COMMANDS"]

# name -> (help, add_arguments(parser), run(args) -> exit status)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def register(name: str, help: str, add_arguments, run) -> None:
    """Register a subcommand ``tmepde NAME``."""
    COMMANDS[name] = (help, add_arguments, run)


# -- shared by the commands that read a config ----------------------------------------

def add_overrides(p: argparse.ArgumentParser, example: str = "time.t_end=48") -> None:
    """The repeatable ``--set KEY=VALUE`` option (stored in ``args.overrides``)."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config key, e.g. --set {example} (repeatable; the value "
                        "is read as TOML, else as a string)")


def load_config_with(args: argparse.Namespace, table: str, example: str):
    """``args.config`` with ``args.overrides`` applied; a :class:`ConfigError` if it lacks
    the ``[table]`` the command needs (printed by :func:`main`, exit status 2)."""
    from .config import ConfigError, load_config

    cfg = load_config(args.config, args.overrides)
    if table not in cfg.data:
        raise ConfigError(table, f"{args.config} has no [{table}] table; add one "
                                 f"(docs/config.md, e.g. {example})")
    return cfg


# -- run ------------------------------------------------------------------------------

def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="TOML run configuration (reference: docs/config.md)")
    p.add_argument("-o", "--output", help="HDF5 file to write (default: output.path of the config)")
    p.add_argument("--resume", metavar="FILE",
                   help="finish an interrupted or failed result FILE in place, from its last save "
                        "(the run is the file's stored config; no CONFIG)")
    p.add_argument("--branch", metavar="FILE",
                   help="start from a save of an earlier result FILE (same grid and species) "
                        "instead of [initial], and run on to time.t_end")
    p.add_argument("--at", type=float, metavar="HOURS",
                   help="with --branch: the save time to start from (default: its last save)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing result file, only once the new run is complete (until "
                        "then, and after a failure or interrupt, it is <stem>.partial.h5 beside it)")
    add_overrides(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (TOML) and exit without running")


def _run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .runner import run_config

    if args.resume is not None:
        if args.config is not None or args.overrides or args.output:
            print("tmepde: --resume FILE continues the file's own run: give no CONFIG, -o or --set",
                  file=sys.stderr)
            return 2
        from .io import ResultFileError

        try:
            out = run_config(None, progress=not args.no_progress, resume=args.resume)
        except ResultFileError as e:
            print(f"tmepde: {e}", file=sys.stderr)
            return 2
        print(f"wrote {out}")
        return 0
    if args.config is None:
        print("tmepde: run needs a CONFIG (a TOML file), or --resume FILE", file=sys.stderr)
        return 2
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(cfg.to_toml())
        return 0
    from .io import check_output

    out = args.output if args.output is not None else cfg.data["output"]["path"]
    check_output(out, overwrite=args.overwrite, protect=(args.config,))  # before compiling
    from .io import ResultFileError

    if args.at is not None and args.branch is None:
        print("tmepde: --at needs --branch FILE", file=sys.stderr)
        return 2
    try:
        out = run_config(cfg, out, progress=not args.no_progress, overwrite=args.overwrite,
                         branch=args.branch, branch_time=args.at)
    except ResultFileError as e:
        print(f"tmepde: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


# -- info -----------------------------------------------------------------------------

def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("result", help="HDF5 result file written by 'tmepde run'")
    p.add_argument("--config", action="store_true", help="print the stored resolved config (TOML)")


def _reading(run):
    """Wrap a command that reads ``args.result``: a file that is not a readable result
    (missing attributes, wrong dtypes or shapes, another format) is one line, exit status 2."""
    def wrapped(args: argparse.Namespace) -> int:
        from .io import ResultFileError

        try:
            return run(args)
        except ResultFileError as e:
            print(f"tmepde: {e}", file=sys.stderr)
            return 2
        except (KeyError, IndexError, TypeError, ValueError) as e:
            print(f"tmepde: cannot read {args.result!r}: {' '.join(str(e).split())[:200]}; the file "
                  "is damaged or was not written by tmepde", file=sys.stderr)
            return 2

    return wrapped


def _info_other(path: str, fmt: str | None) -> int:
    """``tmepde info`` of a fit, optimize or other tmepde HDF5 file: its groups and sizes."""
    import h5py

    if fmt == "tmepde-sensitivity":
        from .sensitivity import read_sensitivity, summary_markdown

        data = read_sensitivity(path)
        print(f"file:     {path}\nformat:   {fmt} ({data['method']}, model {data.get('model', '?')}, "
              f"status {data.get('status', '?')})")
        print(summary_markdown(data), end="")
        return 0
    with h5py.File(path, "r") as f:
        print(f"file:     {path}")
        print(f"format:   {fmt}")
        for k in ("objective_name", "cohort_arm", "floor_mm3"):
            if k in f.attrs:
                print(f"{k + ':':<9} {f.attrs[k]}")
        for name, item in f.items():
            if isinstance(item, h5py.Group):
                print(f"  /{name:<20} {len(item)} entries: {', '.join(sorted(item)[:8])}"
                      + (" ..." if len(item) > 8 else ""))
            else:
                print(f"  /{name:<20} {item.dtype} {item.shape}")
    return 0


def _no_saves(r, path) -> bool:
    if len(r) == 0 or len(r.time) == 0:
        print(f"tmepde: {path} holds no saves (status {r.status!r}); nothing to draw", file=sys.stderr)
        return True
    return False


@_reading
def _info(args: argparse.Namespace) -> int:
    from .io import open_result
    from . import summaries

    fmt = summaries.file_format(args.result)
    if fmt in (summaries.FIT_FORMAT, summaries.OPTIMIZE_FORMAT) or (fmt and fmt.startswith("tmepde-")
                                                                    and fmt not in ("tmepde-result", "tmepde-sweep")):
        if args.config:
            import h5py

            with h5py.File(args.result, "r") as f:
                sys.stdout.write(str(f.attrs.get("config_toml", "")))
            return 0
        return _info_other(args.result, fmt)
    with open_result(args.result) as r:
        if args.config:
            sys.stdout.write(r.config_toml)
            return 0
        g = r.grid
        t = r.time
        a = r.attrs
        print(f"file:     {args.result}")
        print(f"model:    {a.get('model', '?')}   tmepde {a.get('tmepde_version', '?')}")
        print(f"status:   {r.status}")
        print(f"grid:     {' x '.join(map(str, g.shape))} cells, spacing "
              f"{' x '.join(f'{h:g}' for h in g.spacing)} µm, extent "
              f"{' x '.join(f'{e:g}' for e in g.extent)} µm")
        if len(t):
            print(f"saves:    {len(t)}, t = {t[0]:g} .. {t[-1]:g} h")
        else:
            print("saves:    0")
        obs = r.observables
        print("species:")
        for name in r.species:
            try:
                bcs = r.boundaries(name)
            except KeyError:  # sweep file without stored fields
                print(f"  {name}")
                continue
            kinds = sorted({v if isinstance(v, str) else f"{v[0]}={v[1]:g}" for v in bcs.values()})
            print(f"  {name:<16} units {r.units(name) or '1'!r:<20} boundaries {', '.join(kinds)}")
        if not len(t):
            return 0
        if np.ndim(next(iter(obs.values()), np.zeros(1))) == 2:  # sweep file: (members, saves)
            arms = r.arm_names
            print(f"members:  {r.n_members} in {len(arms)} arm(s): {', '.join(arms)}")
            print("observables at the last save across members (median [min, max]):")
            for k, v in obs.items():
                last = v[:, -1]
                last = last[np.isfinite(last)]
                if last.size:
                    print(f"  {k:<24} {np.median(last):.6g} [{last.min():.6g}, {last.max():.6g}]")
            return 0
        print("observables (first -> last save):")
        for k, v in obs.items():
            print(f"  {k:<24} {v[0]:.6g} -> {v[-1]:.6g}   (min {np.min(v):.6g}, max {np.max(v):.6g})")
    return 0


# -- plot / animate -----------------------------------------------------------------

def _plot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("result", help="HDF5 result file")
    p.add_argument("--fields", nargs="+", help="species to show (default: all)")
    p.add_argument("--times", nargs="+", type=float, help="save times in h (nearest saves; default: 3 spread)")
    p.add_argument("-o", "--out-dir", default="figures", help="folder for the PNG files (default: figures)")


@_reading
def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .io import SweepResult, open_result
    from .plot import save_all, save_sweep_all
    from . import summaries

    fmt = summaries.file_format(args.result)
    if fmt in (summaries.FIT_FORMAT, summaries.OPTIMIZE_FORMAT):  # fit / optimize files
        import matplotlib.pyplot as plt

        fig = (summaries.fit_figure if fmt == summaries.FIT_FORMAT else summaries.optimize_figure)(args.result)
        out = Path(args.out_dir) / (Path(args.result).stem + ".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
        plt.close(fig)
        print(f"wrote {out}")
        return 0

    with open_result(args.result) as r:
        if _no_saves(r, args.result):
            return 1
        if isinstance(r, SweepResult):  # --fields name observables for the spaghetti plots
            unknown = sorted(set(args.fields or []) - set(r.observables))
            if unknown:
                print(f"tmepde: no observables {unknown} in {args.result}; observables: "
                      f"{sorted(r.observables)}", file=sys.stderr)
                return 2
            for p in save_sweep_all(r, args.out_dir, args.fields):
                print(f"wrote {p}")
            return 0
        unknown = sorted(set(args.fields or []) - set(r.species))
        if unknown:
            print(f"tmepde: no fields {unknown} in {args.result}; fields: {r.species}", file=sys.stderr)
            return 2
        for p in save_all(r, args.out_dir, args.fields, args.times):
            print(f"wrote {p}")
    return 0


def _animate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("result", help="HDF5 result file")
    p.add_argument("field", help="species to animate")
    p.add_argument("-o", "--output", help="GIF or MP4 file (default: <result>_<field>.gif)")
    p.add_argument("--fps", type=int, default=8)


@_reading
def _animate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .io import open_result
    from .plot import animate

    with open_result(args.result) as r:
        if _no_saves(r, args.result):
            return 1
        if args.field not in r.species:
            print(f"tmepde: no field {args.field!r} in {args.result}; fields: {r.species}", file=sys.stderr)
            return 2
        out = args.output or str(Path(args.result).with_suffix("")) + f"_{args.field}.gif"
        print(f"wrote {animate(r, args.field, out, fps=args.fps)}")
    return 0


register("run", "run a TOML config and write an HDF5 result", _run_args, _run)
register("info", "summarise an HDF5 result file", _info_args, _info)
register("plot", "field snapshots, observables and profiles of a result file (PNG)", _plot_args, _plot)
register("animate", "GIF/MP4 of one field over time", _animate_args, _animate)


def _load_command_modules() -> None:
    """Import every module of :mod:`tmepde.commands`; each registers its subcommand(s)."""
    import importlib
    import pkgutil

    from . import commands

    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"{commands.__name__}.{mod}")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    _load_command_modules()

    parser = argparse.ArgumentParser(
        prog="tmepde", description="Reaction-diffusion simulations of the tumor microenvironment "
        "(units: µm, h, µm²/s).")
    parser.add_argument("--version", action="version", version=f"tmepde {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_, description=help_))
    return parser


def _prepare_jax() -> None:
    """Process-wide JAX settings that belong to the application, not the library: the
    persistent compilation cache (a second run of a config skips compiling) and quiet XLA
    C++ logging (its "Very slow compile?" alarm is addressed to XLA developers; errors
    still surface as Python exceptions). Set TF_CPP_MIN_LOG_LEVEL yourself to see it."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from .compile_cache import enable_compilation_cache

    enable_compilation_cache()


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def main(argv=None) -> int:
    """Entry point of the ``tmepde`` console script; returns the exit status.

    Every failure prints one line, never a traceback: bad input (a config mistake, an
    impossible parameter or argument) exits with status 2 and names the key, file or
    argument; a failed run (a field became non-finite or collapsed, a file could not be
    written, memory ran out) exits with status 1. ``TMEPDE_TRACEBACK=1`` shows the
    traceback of an unexpected error.
    """
    import os
    import warnings

    args = build_parser().parse_args(argv)  # --help and usage errors end here, before JAX loads
    if getattr(args, "output", "-") == "" or getattr(args, "out_dir", "-") == "":
        print("tmepde: argument -o/--output: empty file name; give a file name (e.g. -o run.h5)",
              file=sys.stderr)
        return 2
    _prepare_jax()
    from .config import ConfigError
    from .io import OutputExistsError
    from .model import ModelLoadError, ParameterError
    from .runner import NonFiniteError
    try:
        with warnings.catch_warnings():  # warnings (e.g. ConfigWarning) as one line each
            warnings.showwarning = lambda message, category, *rest, **kw: print(
                f"tmepde: warning: {_one_line(message)}", file=sys.stderr)
            return COMMANDS[args.command][2](args)
    except ConfigError as e:
        print(f"tmepde: config error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (ParameterError, ModelLoadError) as e:
        print(f"tmepde: bad input: {_one_line(e)}", file=sys.stderr)
        return 2
    except OutputExistsError as e:
        print(f"tmepde: {_one_line(e)}", file=sys.stderr)
        return 2
    except NonFiniteError as e:  # also CollapseError
        print(f"tmepde: run failed: {_one_line(e)}", file=sys.stderr)
        return 1
    except MemoryError as e:
        print(f"tmepde: out of memory{': ' + _one_line(e) if str(e) else ''}; use a coarser grid "
              "(grid.shape) or a smaller output.chunk", file=sys.stderr)
        return 1
    except FileNotFoundError as e:  # an input (result file, data file) that is not there
        print(f"tmepde: bad input: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a failed write (full disk, permissions): the run failed
        print(f"tmepde: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # RunInterrupted: SIGINT 130, SIGTERM 143
        print(f"tmepde: {_one_line(e) if str(e) else 'interrupted'}", file=sys.stderr)
        return getattr(e, "exit_status", 130)
    except Exception as e:  # a bug, not bad input: still one line unless asked for more
        if os.environ.get("TMEPDE_TRACEBACK"):
            raise
        print(f"tmepde: internal error: {type(e).__name__}: {_one_line(e)} (set TMEPDE_TRACEBACK=1 "
              "for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
