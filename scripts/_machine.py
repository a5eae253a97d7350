"""Machine description recorded next to every benchmark table (scripts/*.py)."""

from __future__ import annotations

import os
import platform

import numpy as np
import jax

import tmepde


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo), else what platform reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    cpu = cpu_model()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu_model": cpu,
        "cpu_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "tmepde": tmepde.__version__,
        "devices": [str(d) for d in jax.devices()],
        "backend": jax.default_backend(),
        "load_average_at_start": load,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
