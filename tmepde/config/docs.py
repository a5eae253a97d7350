"""The markdown reference of every config key (docs/config.md), generated from the schema:
``python -m tmepde.config > docs/config.md`` (a test keeps the two equal)."""

from __future__ import annotations

from .._dose_keys import NONNEGATIVE_SUFFIXES
from . import fit, optimize, sweep
from .run import INITIAL, INITIAL_ALIASES, SECTIONS, SPECIES
from .schema import key_table

__all__ = ["config_reference"]


def config_reference() -> str:
    """Markdown reference of every config key, generated from the schema (docs/config.md)."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from the schema in tmepde/config/ by `python -m tmepde.config > docs/config.md`;",
        "     do not edit by hand (tests/test_config.py checks it is up to date). -->",
        "",
        "Runs are described by a TOML file: `tmepde run CONFIG.toml [-o OUT.h5] [--set key=value ...]`.",
        "Units: length µm, time h, diffusivity µm²/s, decay 1/h.",
        "",
        "Everything is validated before anything is computed. A mistake (unknown key, wrong type,",
        "impossible value, unknown species or parameter) stops with a `ConfigError` naming the",
        "full dotted key, e.g. `grid.spacing must be > 0 µm (one number, or one per axis), got -1.0;",
        "e.g. spacing = 10.0`.",
        "",
        "What is checked besides types: numbers are finite (no `nan`, `inf`); the file is UTF-8;",
        "rates, amounts and initial densities of non-negative species are >= 0 (every model",
        "parameter whose default is > 0, `D_*`, `decay_*` and dose "
        + "/".join(f"`*{s}`" for s in NONNEGATIVE_SUFFIXES) + ";",
        "a model declares sign-free ones in `Model(signed_params=...)`); array parameters (dose",
        "schedules) get a list of their length; a dose with a non-zero amount after `time.t_end`",
        "is a warning (`ConfigWarning`: it is never given); `time.t_end / time.dt` is at most 1e9",
        "steps; an explicit `solver.start_window` is at most `time.save_every` (the default is cut",
        "to it); every initial shape covers at least one cell centre (a disk or Gaussian centred",
        "outside the domain, e.g. a spacing given in mm, is an error); the run's memory (state x",
        "the scheme's history + 2 x `output.chunk` saves) must fit in the available memory, which",
        "is checked before anything is allocated. A model module that is not installed is",
        "imported from the config's folder or the working directory (`path = \"mymodel:model\"`).",
        "",
        "During a run, a non-negative field that was present and becomes exactly 0 in every cell",
        "within one save interval stops the run (`CollapseError`, exit status 1): decay never",
        "reaches exactly 0, so this is the clipping of negative values hiding an unstable step.",
        "",
        "`--set dotted.key=value` changes one key before validation; the value is read as a TOML",
        "value (`--set grid.shape=[64,64]`, `--set solver.scheme=\"rk4\"`) or else as a bare string",
        "(`--set solver.scheme=rk4`).",
        "",
        "The resolved config (every default filled in, the model's species and reaction parameters",
        "spelled out) is stored in each result file as the root attribute `config_toml`; running it",
        "again reproduces the run.",
        "",
    ]
    for sec, (keys, doc) in SECTIONS.items():
        out += [f"## `[{sec}]`", "", doc, "", *key_table(keys), ""]
    out += [
        "Constraints across keys: `time.save_every` is a whole multiple of `time.dt`, and",
        "`time.t_end` a whole multiple of `time.save_every`; `grid.spacing` has one entry or",
        "one per axis. The resolved `[model.params]` lists every scalar parameter except",
        "`D_*` and `decay_*` (those are in `[species.*]`).",
        "",
        "## `[species.<name>]`",
        "",
        "Overrides of a species' declaration in the model; `<name>` must be one of the model's",
        "species. Absent keys keep the model's values; the resolved config lists every species.",
        "",
        *key_table(SPECIES),
        "",
        "Boundary example: `boundary = { default = \"neumann\", x_lo = { kind = \"dirichlet\", "
        "value = 1.0 } }`.",
        "Periodic must be set on both faces of an axis. The resolved config lists every face.",
        "",
        "## `[initial.<name>]`",
        "",
        "Initial condition of a species, a table with a `type`, or a list of such tables whose",
        "fields are added (`initial.cells = [{ type = \"disk\", ... }, { type = \"clusters\", ... }]`).",
        "Species without an entry start at 0. Shapes cover the cells whose centres lie inside.",
        f"Aliases: {', '.join(f'`{a}` = `{b}`' for a, b in INITIAL_ALIASES.items())}.",
        "",
    ]
    for kind, keys in INITIAL.items():
        out += [f"### `type = \"{kind}\"`", "", *key_table(keys), ""]
    out += sweep.reference()
    out += fit.reference()
    out += optimize.reference()
    return "\n".join(out)
