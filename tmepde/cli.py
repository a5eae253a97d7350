"""Command line: ``tmepde <command> ...``.

Each subcommand lives in its own module of :mod:`tmepde.commands` (``run``, ``info``, ``plot``,
``animate``, ``sweep``, ...): a pair of functions, one adding its arguments to an argparse
sub-parser, the other running it over library code and returning the exit status, registered in
:data:`COMMANDS` with :func:`register`. This module holds the parser, the entry point (one line
per failure, exit status 2 for bad input and 1 for a failed run) and the helpers the commands
share.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

__all__ = ["main", "build_parser", "register", "COMMANDS", "add_overrides", "load_config_with",
           "reading_result", "no_saves"]

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
    the ``[table]`` the command needs (printed by :func:`main`, exit status 2). A float64
    config switches JAX's 64-bit mode on for the process (the commands using this helper call
    library code such as :func:`tmepde.runner.build` directly)."""
    from .config import ConfigError, load_config

    cfg = load_config(args.config, args.overrides)
    if table not in cfg.data:
        raise ConfigError(table, f"{args.config} has no [{table}] table; add one "
                                 f"(docs/config.md, e.g. {example})")
    if cfg.dtype == "float64":  # the application, not the library, sets process-wide JAX options
        import jax

        jax.config.update("jax_enable_x64", True)
    return cfg


# -- shared by the commands that read a result file --------------------------------

def reading_result(run):
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


def no_saves(r, path) -> bool:
    """True (after printing one line) when the result ``r`` read from ``path`` has nothing to draw."""
    if len(r) == 0 or len(r.time) == 0:
        print(f"tmepde: {path} holds no saves (status {r.status!r}); nothing to draw", file=sys.stderr)
        return True
    return False


# the basic commands first in ``tmepde --help``, then the others alphabetically
_FIRST = ("run", "info", "plot", "animate")


def _load_command_modules() -> None:
    """Import every module of :mod:`tmepde.commands`; each registers its subcommand(s)."""
    import importlib
    import pkgutil

    from . import commands

    names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__))
    for mod in [n for n in _FIRST if n in names] + [n for n in names if n not in _FIRST]:
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


if __name__ == "__main__":  # python -m tmepde.cli: the commands register with the imported module
    from tmepde.cli import main as _main

    sys.exit(_main())
