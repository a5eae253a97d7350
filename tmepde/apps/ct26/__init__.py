"""CT26 worked example: a population (mixed-effects) fit of the TME model to tumor volumes.

Modules: :mod:`.data` (csv loading, observation and censoring arrays), :mod:`.model` (the
well-mixed reduction of the TME model), :mod:`.fitting` (set-up, fit, checks), :mod:`.report`
and :mod:`.plot` (outputs). ``tmepde fit configs/fit/ct26.toml`` runs :func:`run_fit`.
"""

from .data import Arm, load_data, population_data  # noqa: F401
from .fitting import run_fit, setup, summarise  # noqa: F401
from .model import WellMixedCt26  # noqa: F401
