"""tmepde: a differentiable, GPU-ready reaction-diffusion solver for the tumor microenvironment.

Units throughout: length µm, time h, diffusivities µm²/s.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from .grid import Boundary, Grid, resolve_boundaries
from .model import Chemotaxis, Model, Observable, Species, load_model
from .stepping import SCHEMES, Simulator, simulate

try:
    __version__ = _version("tmepde")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.1.0"

__all__ = [
    "Boundary", "Chemotaxis", "Grid", "Model", "Observable", "SCHEMES", "Simulator", "Species",
    "load_model", "resolve_boundaries", "simulate", "__version__",
]
