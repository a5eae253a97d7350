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
``TMEPDE_PROGRAM_STORE=off`` keeps the XLA cache but not whole programs (:func:`program_store`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "enable_compilation_cache", "fingerprint", "load_or_compile", "program_store"]

_OFF = {"", "0", "off", "none", "false", "no"}


def cache_dir() -> Path | None:
    """The cache folder the environment asks for, or None when it is switched off."""
    explicit = os.environ.get("TMEPDE_CACHE_DIR")
    if explicit is not None:
        return None if explicit.strip().lower() in _OFF else Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tmepde" / "xla"


_PROGRAM_STORE: list[Path] = []  # set by enable_compilation_cache: the application's choice


def program_store() -> Path | None:
    """The program store (:func:`load_or_compile`) that :func:`enable_compilation_cache`
    switched on for this process (``<cache folder>/programs``), or None: library code
    stores programs only where the application asked for a cache."""
    return _PROGRAM_STORE[0] if _PROGRAM_STORE else None


def enable_compilation_cache(path: str | os.PathLike | None = None,
                             min_compile_seconds: float | None = None) -> Path | None:
    """Keep compiled XLA programs under ``path`` (default :func:`cache_dir`).

    Only programs that took at least ``min_compile_seconds`` to compile are stored: small
    helper programs compile faster than they load. Also switches on the program store
    ``<folder>/programs`` (:func:`program_store`), where ``tmepde run`` keeps its start and
    chunk loop whole, so a repeated run loads them without tracing. Returns the folder used, or None when
    caching is off or the folder cannot be created (the run then just compiles, as usual).
    """
    _PROGRAM_STORE.clear()
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

    if os.environ.get("TMEPDE_PROGRAM_STORE", "on").strip().lower() not in _OFF:
        _PROGRAM_STORE[:] = [folder / "programs"]
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


# -- compiled programs stored whole: no tracing on a later run -----------------------------
#
# The XLA cache above still traces and lowers every program to find its key: 0.3-0.7 s per
# program on a CPU, several times the run itself for a small solve. A *program store* keeps
# the compiled executable under a key computed without tracing (a fingerprint of everything
# the program is built from), so a later process loads it in milliseconds.

class Unfingerprintable(TypeError):
    """An object whose content cannot be hashed safely (the store is then not used)."""


_SOURCE_HASHES: dict[str, str] = {}
_PACKAGE_HASH: list[str] = []
_MAX_DEPTH = 40


def _file_digest(path: str) -> str:
    if path not in _SOURCE_HASHES:
        with open(path, "rb") as fh:
            _SOURCE_HASHES[path] = hashlib.sha256(fh.read()).hexdigest()
    return _SOURCE_HASHES[path]


def _package_digest() -> str:
    """Hash of every tmepde source file: the schemes, operators and loops a program is built
    from live here, not in the model."""
    if not _PACKAGE_HASH:
        root = Path(__file__).parent
        h = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(_file_digest(str(path)).encode())
        _PACKAGE_HASH.append(h.hexdigest())
    return _PACKAGE_HASH[0]


def _module_token(module) -> str:
    """A module by its source (files of the user's own modules change; installed libraries
    are pinned by their version)."""
    name = getattr(module, "__name__", "?")
    top = name.split(".")[0]
    if top in ("jax", "jaxlib", "numpy", "math", "functools", "operator", "builtins", "typing",
               "dataclasses", "collections", "itertools", "warnings", "scipy"):
        return f"module:{name}"
    if top == "tmepde":
        return f"module:{name}:{_package_digest()}"
    path = getattr(module, "__file__", None)
    if path and path.endswith(".py") and os.path.exists(path):
        return f"module:{name}:{_file_digest(path)}"
    version = getattr(module, "__version__", None)
    if version is None:
        raise Unfingerprintable(f"module {name!r} has neither a source file nor a version")
    return f"module:{name}:{version}"


def fingerprint(obj) -> str:
    """SHA-256 of what ``obj`` computes: values, arrays (bytes), functions (byte code,
    constants, defaults, closure cells and the globals they name, followed recursively) and
    objects (their type and attributes; ``_``-prefixed caches excluded).

    Raises :class:`Unfingerprintable` for anything it cannot hash by content, so a caller
    falls back to compiling rather than reusing a program built from different data.
    """
    h = hashlib.sha256()
    _feed(h, obj, {}, 0)
    return h.hexdigest()


def _feed(h, obj, seen: dict, depth: int) -> None:  # noqa: C901 - one dispatch on type
    if depth > _MAX_DEPTH:
        raise Unfingerprintable("object graph too deep")
    put = lambda *parts: h.update(("\x1f".join(map(str, parts)) + "\x1e").encode())  # noqa: E731
    if obj is None or isinstance(obj, (bool, int, float, complex, str)):
        put(type(obj).__name__, repr(obj))
        return
    if isinstance(obj, bytes):
        put("bytes", len(obj))
        h.update(obj)
        return
    if isinstance(obj, (np.ndarray, np.generic)) or type(obj).__module__.startswith("jax"):
        if type(obj).__module__.startswith("jax") and not hasattr(obj, "dtype"):
            put("jaxobj", type(obj).__qualname__, repr(obj))
            return
        try:
            arr = np.asarray(obj)
        except Exception as err:  # a tracer: its value is not known here
            raise Unfingerprintable(f"array without a value ({type(obj).__name__})") from err
        put("array", arr.dtype.str, arr.shape)
        h.update(np.ascontiguousarray(arr).tobytes())
        return
    key = id(obj)
    if key in seen:
        put("seen", type(obj).__qualname__)
        return
    # Keep what was seen alive: an id is unique only while its object lives, and the state
    # dicts built below are temporaries whose ids Python would hand to the next one.
    seen[key] = obj
    if isinstance(obj, (tuple, list)):
        put(type(obj).__name__, len(obj))
        for item in obj:
            _feed(h, item, seen, depth + 1)
    elif isinstance(obj, (set, frozenset)):
        put(type(obj).__name__, len(obj))
        for item in sorted(obj, key=repr):
            _feed(h, item, seen, depth + 1)
    elif isinstance(obj, dict):
        put("dict", len(obj))
        for k in sorted(obj, key=repr):
            _feed(h, k, seen, depth + 1)
            _feed(h, obj[k], seen, depth + 1)
    elif isinstance(obj, types.ModuleType):
        put(_module_token(obj))
    elif isinstance(obj, types.CodeType):
        put("code", obj.co_name, obj.co_names, obj.co_varnames, obj.co_freevars)
        h.update(obj.co_code)
        for const in obj.co_consts:
            _feed(h, const, seen, depth + 1)
    elif isinstance(obj, types.FunctionType):
        put("function", obj.__module__, obj.__qualname__)
        module = sys.modules.get(obj.__module__)
        if module is not None and getattr(module, "__name__", "").split(".")[0] in ("jax", "numpy"):
            return  # a library function: pinned by the library's version in the key
        _feed(h, obj.__code__, seen, depth + 1)
        _feed(h, obj.__defaults__, seen, depth + 1)
        _feed(h, obj.__kwdefaults__, seen, depth + 1)
        for cell in obj.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                value = None
            _feed(h, value, seen, depth + 1)
        # the globals its code names (helpers, constants, modules), nested code included
        for name in sorted(_global_names(obj.__code__)):
            if name in obj.__globals__:
                put("global", name)
                _feed(h, obj.__globals__[name], seen, depth + 1)
    elif isinstance(obj, functools.partial):
        put("partial")
        _feed(h, (obj.func, obj.args, obj.keywords), seen, depth + 1)
    elif isinstance(obj, types.MethodType):
        put("method")
        _feed(h, (obj.__func__, obj.__self__), seen, depth + 1)
    elif isinstance(obj, (types.BuiltinFunctionType, type)):
        module = sys.modules.get(getattr(obj, "__module__", None) or "builtins")
        put("named", getattr(obj, "__module__", ""), getattr(obj, "__qualname__", repr(obj)),
            _module_token(module) if module is not None else "")
    elif hasattr(obj, "__dict__") or hasattr(type(obj), "__slots__"):
        cls = type(obj)
        _feed(h, cls, seen, depth + 1)
        state = dict(getattr(obj, "__dict__", {}))
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(obj, slot):
                state[slot] = getattr(obj, slot)
        _feed(h, {k: v for k, v in state.items() if not k.startswith("_") or k == "_params"},
              seen, depth + 1)
    else:
        raise Unfingerprintable(f"cannot fingerprint a {type(obj).__qualname__}")


def _global_names(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def environment_key() -> dict:
    """What a compiled program also depends on: library versions, the device, precision."""
    import jax
    import jaxlib

    device = jax.devices()[0]
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "platform": device.platform,
            "device": device.device_kind, "x64": bool(jax.config.jax_enable_x64),
            "tmepde": _package_digest()}


def load_or_compile(folder: str | os.PathLike, key_material, jitted, *args):
    """The compiled ``jitted(*args)`` program, from ``folder`` when a program with the same
    key is stored there, else compiled now and stored. Returns ``(compiled, loaded)``.

    ``key_material`` must determine the program (see :func:`fingerprint`); the arguments'
    shapes and dtypes and :func:`environment_key` are added here. Unreadable or foreign
    entries are recompiled and replaced; a folder that cannot be written is skipped.
    """
    import jax
    from jax.experimental import serialize_executable

    shapes = jax.tree_util.tree_map(lambda a: (tuple(jax.numpy.shape(a)), str(jax.numpy.result_type(a))), args)
    digest = hashlib.sha256(repr((key_material, shapes, sorted(environment_key().items()))).encode()).hexdigest()
    folder = Path(folder)
    path = folder / f"program-{digest[:40]}.pkl"
    if path.exists():
        try:
            with open(path, "rb") as fh:
                payload, in_tree, out_tree = pickle.load(fh)
            return serialize_executable.deserialize_and_load(payload, in_tree, out_tree), True
        except Exception:  # written by another jaxlib, truncated, ...: compile it again
            pass
    # Compiled past the XLA cache: an executable that XLA:CPU loaded from its cache
    # serialises without some of its kernels (jax 0.10: "Function ... not found" when the
    # stored copy runs), so a program meant for the store is always compiled afresh.
    # JAX decides once per process whether its cache is used: switching it off takes effect
    # only after reset_cache(), and the cache is re-initialised at the next compile.
    from jax.experimental.compilation_cache import compilation_cache

    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    try:
        compiled = jitted.lower(*args).compile()
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)
        compilation_cache.reset_cache()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            pickle.dump(serialize_executable.serialize(compiled), fh)
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError, pickle.PicklingError):
        pass
    return compiled, False
