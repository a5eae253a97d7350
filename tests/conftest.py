"""Test configuration: float64 on (accuracy is asserted), markers for slow/GPU checks."""

import os
import shutil
import tempfile

import jax
import pytest

jax.config.update("jax_enable_x64", True)

# Most of the suite's time is XLA compiling gradient programs that then run for milliseconds.
# Skipping LLVM's expensive optimisation passes cut a 16² Gray–Scott gradient's compile from
# 9.6 to 7.6 CPU-s with no slower run (14.5 vs 11.8 ms); it changes no floating-point
# semantics. Set before the first computation initialises the CPU backend.
os.environ["XLA_FLAGS"] = " ".join(
    filter(None, [os.environ.get("XLA_FLAGS", ""), "--xla_llvm_disable_expensive_passes=true"]))

# One persistent XLA compilation cache per test session, in a temporary folder shared by the
# pytest-xdist workers (they inherit the variable from the controller, which made the folder).
# Many tests build a fresh Simulator (fresh jitted closures) for a program another test has
# already compiled; with the cache, XLA compiles it once per session. The compiled program
# is the same either way, so no assertion changes. Removed when the session ends.
# TMEPDE_TEST_XLA_CACHE=off compiles everything afresh, as a user's first run does.
_XLA_CACHE_VAR = "TMEPDE_TEST_XLA_CACHE"
_OWN_XLA_CACHE = _XLA_CACHE_VAR not in os.environ
if _OWN_XLA_CACHE:
    os.environ[_XLA_CACHE_VAR] = tempfile.mkdtemp(prefix="tmepde-test-xla-")
if os.environ[_XLA_CACHE_VAR].strip().lower() != "off":
    jax.config.update("jax_compilation_cache_dir", os.environ[_XLA_CACHE_VAR])
    # Small helper programs compile faster than they load.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.25)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # CLI runs (in-process and subprocesses) use the same session folder, never the user's
    # home (tests/test_compile_cache.py sets its own folders).
    os.environ.setdefault("TMEPDE_CACHE_DIR", os.environ[_XLA_CACHE_VAR])
    os.environ.setdefault("TMEPDE_CACHE_MIN_COMPILE_SECONDS", "0.25")
# Whole stored programs are keyed by a fingerprint of the model, grid and options, not of
# engine internals that a test may monkeypatch: off in the suite, except where a test of the
# program store switches it on.
os.environ.setdefault("TMEPDE_PROGRAM_STORE", "off")
# Otherwise in-process CLI calls would switch on the cache in the user's home.
os.environ.setdefault("TMEPDE_CACHE_DIR", "off")

# Files whose compiles take the longest (CPU minutes, measured on a 2-core CI runner), run
# first: pytest-xdist's --dist loadfile hands out whole files in collection order, and a
# long file started last leaves the other worker idle while it finishes.
HEAVY_FIRST = ("test_gradients.py", "test_tme_reductions.py", "test_gradients_tme.py",
               "test_tutorial.py", "test_gallery.py", "test_fit.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order in a file kept
    has_gpu = any(d.platform == "gpu" for d in jax.devices())
    skip_gpu = pytest.mark.skip(reason="no GPU visible to JAX")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)


def pytest_unconfigure(config):
    if _OWN_XLA_CACHE and not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ.pop(_XLA_CACHE_VAR), ignore_errors=True)
