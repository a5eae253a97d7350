"""The config schema's building blocks: value types, keys, checks, and the one-line errors.

A table of the schema is a ``{name: Key}`` dict; :func:`resolve_keys` checks raw TOML values
against it and fills in defaults, and :func:`key_table` renders it as markdown (docs/config.md).
Every mistake is a :class:`ConfigError` naming the full dotted key.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

from ..model import did_you_mean
from ..timegrid import whole_multiple

__all__ = ["ConfigError", "ConfigWarning", "REQUIRED", "FROM_MODEL", "DOMAIN_CENTER", "OPTIONAL",
           "Type", "Key", "NUMBER", "INTEGER", "STRING", "BOOLEAN", "INT_LIST", "NUMBER_LIST",
           "NUMBER_OR_LIST", "STRING_LIST", "BOUNDARY", "is_number", "is_int", "finite", "positive",
           "nonnegative", "one_of", "did_you_mean", "unknown_key", "type_name", "as_table",
           "resolve_keys", "short", "whole_multiple", "fmt", "default_text", "key_table"]


class ConfigError(ValueError):
    """A configuration mistake. ``path`` is the dotted key it concerns ('' for the file).
    The message is one line."""

    def __init__(self, path: str, message: str):
        super().__init__(" ".join(str(message).split("\n")))
        self.path = path


class ConfigWarning(UserWarning):
    """A legal but suspicious config value (e.g. doses scheduled after the end of the run)."""


class _Required:
    def __repr__(self):
        return "required"


class _FromModel:
    def __repr__(self):
        return "from the model"


REQUIRED = _Required()
FROM_MODEL = _FromModel()  # default taken from the model's own declaration
DOMAIN_CENTER = object()  # default filled in from the grid
OPTIONAL = None  # key may be absent; then it is absent from the resolved config too


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def finite(v) -> bool:
    """A number, or every number of a list, is finite (and fits a float)."""
    try:
        return all(math.isfinite(x) for x in (v if isinstance(v, list) else [v]))
    except OverflowError:  # an integer beyond the float range
        return False


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Type:
    """A TOML value type: its name in messages and docs, and a membership test."""

    name: str
    test: Callable[[object], bool]


NUMBER = Type("number", is_number)
INTEGER = Type("integer", is_int)
STRING = Type("string", lambda v: isinstance(v, str))
BOOLEAN = Type("boolean", lambda v: isinstance(v, bool))
INT_LIST = Type("list of integers", lambda v: isinstance(v, list) and all(is_int(x) for x in v))
NUMBER_LIST = Type("list of numbers", lambda v: isinstance(v, list) and all(is_number(x) for x in v))
NUMBER_OR_LIST = Type("number or list of numbers", lambda v: is_number(v) or NUMBER_LIST.test(v))
STRING_LIST = Type("list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
BOUNDARY = Type("string, number or table",
                lambda v: isinstance(v, (str, dict)) or is_number(v))


@dataclasses.dataclass(frozen=True)
class Key:
    """One config key: type, default (``REQUIRED``, ``FROM_MODEL``, ``None`` = optional or a
    value), a one-line description with units, a TOML example, and an optional check
    ``check(value) -> problem or None`` for values of the right type."""

    type: Type
    default: object
    doc: str
    example: str
    check: Callable[[object], str | None] | None = None


def positive(unit):
    return lambda v: None if v > 0 else f"must be > 0{unit}"


def nonnegative(unit):
    return lambda v: None if v >= 0 else f"must be >= 0{unit}"


def one_of(options):
    return lambda v: None if v in options else f"must be one of {', '.join(map(repr, options))}"


def unknown_key(path: str, key: str, valid: Sequence[str], what: str = "key") -> ConfigError:
    full = f"{path}.{key}" if path else key
    hint = did_you_mean(key, valid, (path + ".") if path else "")
    where = f"[{path}]" if path else "the top level"
    return ConfigError(full, f"unknown {what} '{full}'; {hint}valid {what}s in {where}: "
                       f"{', '.join(valid) if valid else '(none)'}")


def type_name(v) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "table"}.get(type(v), type(v).__name__)


def as_table(value, path: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(path, f"{path} must be a table ([{path}]), got {value!r} ({type_name(value)})")
    return value


def resolve_keys(raw: Mapping, keys: Mapping[str, Key], path: str, skip=()) -> dict:
    """Check ``raw`` against ``keys`` and fill in defaults (``FROM_MODEL`` keys stay absent)."""
    for k in raw:
        if k not in keys and k not in skip:
            raise unknown_key(path, k, list(keys) + list(skip))
    out = {}
    for k, spec in keys.items():
        full = f"{path}.{k}"
        if k not in raw:
            if spec.default is REQUIRED:
                raise ConfigError(full, f"missing required key '{full}' ({spec.doc}); "
                                  f"add it under [{path}], e.g. {spec.example}")
            if spec.default is not None and spec.default is not FROM_MODEL and spec.default is not DOMAIN_CENTER:
                out[k] = spec.default
            continue
        v = raw[k]
        if not spec.type.test(v):
            raise ConfigError(full, f"{full} must be a {spec.type.name}, got {short(v)} "
                              f"({type_name(v)}); e.g. {spec.example}")
        if spec.type in (NUMBER, NUMBER_LIST, NUMBER_OR_LIST, INTEGER, INT_LIST) and not finite(v):
            raise ConfigError(full, f"{full} must be finite, got {short(v)}; e.g. {spec.example}")
        if spec.check is not None:
            problem = spec.check(v)
            if problem:
                raise ConfigError(full, f"{full} {problem}, got {short(v)}; e.g. {spec.example}")
        if spec.type is NUMBER:
            v = float(v)
        elif spec.type in (NUMBER_LIST, NUMBER_OR_LIST):
            v = [float(x) for x in v] if isinstance(v, list) else float(v)
        out[k] = v
    return out


def short(v) -> str:
    """``repr`` of a config value, cut to one short line."""
    text = repr(v).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def fmt(x: float) -> str:
    return f"{x:g}"


def default_text(spec: Key) -> str:
    d = spec.default
    if d is REQUIRED:
        return "**required**"
    if d is FROM_MODEL:
        return "from the model"
    if d is None:
        return "(absent)"
    if d is DOMAIN_CENTER:
        return "domain centre"
    if isinstance(d, bool):
        return f"`{str(d).lower()}`"
    if isinstance(d, str):
        return f'`"{d}"`'
    return f"`{d!r}`"


def key_table(keys: Mapping[str, Key]) -> list[str]:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for k, spec in keys.items():
        doc = spec.doc.replace("|", "\\|")
        lines.append(f"| `{k}` | {spec.type.name} | {default_text(spec)} | {doc} |")
    return lines
