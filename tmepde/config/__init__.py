"""TOML run configurations: a declarative schema, strict validation, resolution, TOML output.

Where things live: :mod:`.schema` (value types, keys, checks, :class:`ConfigError`), :mod:`.run`
(the run sections and :class:`Config`, :func:`load_config`, :func:`resolve`), :mod:`.sweep`,
:mod:`.fit` and :mod:`.optimize` (the optional sections of those commands), :mod:`.docs` (the
generated reference, ``python -m tmepde.config > docs/config.md``).

Units: length µm, time h, diffusivity µm²/s, decay 1/h.
"""

from .docs import config_reference
from .fit import FIT, FIT_PSEUDO
from .optimize import OPTIMIZE, OPTIMIZE_AGENT
from .run import (GRID, INITIAL, INITIAL_ALIASES, MAX_CLUSTERS, MAX_SPACING, MAX_STEPS, MODEL, OUTPUT,
                  PARAM_TYPE, SCHEMA, SECTIONS, SOLVER, SPECIES, TIME, TOP_LEVEL, Config, apply_override,
                  load_config, loads_config, memory_estimate, parse_value, resolve)
from .schema import FROM_MODEL, OPTIONAL, REQUIRED, ConfigError, ConfigWarning, Key, Type
from .sweep import SWEEP, SWEEP_ARM, SWEEP_COHORT

__all__ = ["ConfigError", "ConfigWarning", "Config", "load_config", "loads_config", "apply_override",
           "parse_value", "resolve", "memory_estimate", "config_reference", "Key", "Type", "REQUIRED",
           "FROM_MODEL", "OPTIONAL", "SCHEMA", "SECTIONS", "TOP_LEVEL", "GRID", "TIME", "MODEL", "SOLVER",
           "OUTPUT", "SPECIES", "INITIAL", "INITIAL_ALIASES", "PARAM_TYPE", "MAX_STEPS", "MAX_SPACING",
           "MAX_CLUSTERS", "SWEEP", "SWEEP_COHORT", "SWEEP_ARM", "FIT", "FIT_PSEUDO", "OPTIMIZE",
           "OPTIMIZE_AGENT"]
