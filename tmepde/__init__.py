"""tmepde: a differentiable, GPU-ready reaction-diffusion solver for the tumor microenvironment.

Units throughout: length µm, time h, diffusivities µm²/s.

The public names below are imported lazily (PEP 562): ``import tmepde`` and ``tmepde --help``
do not load JAX; the first use of e.g. ``tmepde.Simulator`` does.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("tmepde")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.1.0"

# The curated public API: public name -> module that defines it. Everything else is reached
# through its module (tmepde.config, tmepde.batch, tmepde.therapy, ...).
_EXPORTS = {
    # models and grids
    "Boundary": "grid", "Grid": "grid", "resolve_boundaries": "grid",
    "Chemotaxis": "model", "Model": "model", "Observable": "model", "Species": "model",
    "load_model": "model", "input_value": "model",
    # time stepping
    "SCHEMES": "stepping", "Simulator": "stepping", "simulate": "stepping",
    # configs and runs (what `tmepde run` and `tmepde sweep` do)
    "Config": "config", "ConfigError": "config", "load_config": "config", "loads_config": "config",
    "run_config": "runner", "run_sweep": "sweep",
    # result files
    "open_result": "io", "Result": "io", "SweepResult": "io", "ResultWriter": "io",
    "enable_compilation_cache": "compile_cache",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tmepde' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return __all__
