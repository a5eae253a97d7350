"""Persistent XLA compilation cache for command-line runs.

A tmepde program (the compiled time loop of one model, grid, scheme and dtype) takes
seconds to minutes to compile on a CPU and is the same on every run of the same config:
only parameter *values* change, and those are traced arrays. JAX can keep compiled
executables on disk; this module switches that on for the ``tmepde`` command, so a
second run of a config starts computing at once.

Library code never calls this (it would change process-wide JAX settings behind a
user's back); the CLI does, and a Python user who wants the same calls
:func:`enable_compilation_cache` once at the top of a script.

Where: ``$TMEPDE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/tmepde/xla`` (default
``~/.cache/tmepde/xla``). ``TMEPDE_CACHE_DIR=off`` (or ``0``/``none``) disables it.
``TMEPDE_CACHE_MIN_COMPILE_SECONDS`` (default 1) sets which programs are worth keeping.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "enable_compilation_cache"]

_OFF = {"", "0", "off", "none", "false", "no"}


def cache_dir() -> Path | None:
    """The cache folder the environment asks for, or None when it is switched off."""
    explicit = os.environ.get("TMEPDE_CACHE_DIR")
    if explicit is not None:
        return None if explicit.strip().lower() in _OFF else Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tmepde" / "xla"


def enable_compilation_cache(path: str | os.PathLike | None = None,
                             min_compile_seconds: float | None = None) -> Path | None:
    """Keep compiled XLA programs under ``path`` (default :func:`cache_dir`).

    Only programs that took at least ``min_compile_seconds`` to compile are stored: small
    helper programs compile faster than they load. Returns the folder used, or None when
    caching is off or the folder cannot be created (the run then just compiles, as usual).
    """
    folder = Path(path) if path is not None else cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if min_compile_seconds is None:
        try:
            min_compile_seconds = float(os.environ.get("TMEPDE_CACHE_MIN_COMPILE_SECONDS", 1.0))
        except ValueError:
            min_compile_seconds = 1.0
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
