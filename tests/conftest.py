"""Test configuration: float64 on (accuracy is asserted), markers for slow/GPU checks."""

import os

import jax
import pytest

jax.config.update("jax_enable_x64", True)
# In-process CLI calls would switch on the persistent compilation cache in the user's home;
# tests stay hermetic (tests/test_compile_cache.py turns it on in a temporary folder).
os.environ.setdefault("TMEPDE_CACHE_DIR", "off")


def pytest_collection_modifyitems(config, items):
    has_gpu = any(d.platform == "gpu" for d in jax.devices())
    skip_gpu = pytest.mark.skip(reason="no GPU visible to JAX")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
