"""Batches of runs as one compiled program: parameter sweeps and virtual cohorts.

A batch is a parameter dict in which some entries carry a leading batch axis (``batched``
keys) and the rest are shared. :func:`run_batch` maps :meth:`Simulator.run` over that axis
with ``jax.vmap``, splits the batch into chunks that fit device memory, and shards each
chunk across all devices JAX sees (a 1-D ``jax.sharding.Mesh`` over the batch axis). The
same call runs on one CPU, several GPUs, or several hosts after ``jax.distributed.initialize()``.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Iterator, Mapping, Sequence

import numpy as np
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from .stepping import Simulator

__all__ = ["grid_sweep", "sample_lognormal", "batch_size", "member_bytes", "auto_chunk",
           "iter_batch", "run_batch", "run_domain_sharded"]


# -- building batches -------------------------------------------------------------------
def grid_sweep(base: Mapping, values: Mapping[str, Sequence[float]]) -> tuple[dict, list[str]]:
    """Full factorial sweep: every combination of ``values`` (dict key -> list).

    Returns ``(params, batched_keys)`` with batched entries of shape ``(B,)``.
    """
    unknown = sorted(set(values) - set(base))
    if unknown:
        raise KeyError(f"sweep names unknown parameters {unknown}; known: {sorted(base)}")
    keys = list(values)
    combos = list(itertools.product(*[list(np.atleast_1d(values[k])) for k in keys]))
    params = dict(base)
    for i, k in enumerate(keys):
        params[k] = jnp.asarray([c[i] for c in combos], dtype=jnp.asarray(base[k]).dtype)
    return params, keys


def sample_lognormal(base: Mapping, cv: Mapping[str, float], n: int, seed: int = 0) -> tuple[dict, list[str]]:
    """Virtual patients: each parameter in ``cv`` log-normal with median ``base[key]`` and
    coefficient of variation ``cv[key]`` (σ_log = √(ln(1 + cv²))), seeded and reproducible."""
    unknown = sorted(set(cv) - set(base))
    if unknown:
        raise KeyError(f"cohort names unknown parameters {unknown}; known: {sorted(base)}")
    for k, c in cv.items():
        if not c >= 0:
            raise ValueError(f"cohort.cv.{k} must be >= 0, got {c!r}")
    rng = np.random.default_rng(seed)
    params = dict(base)
    for k in sorted(cv):  # sorted: the draw for a key does not depend on dict order
        sigma = math.sqrt(math.log1p(cv[k] ** 2))
        median = np.asarray(base[k])
        z = rng.standard_normal((n,) + median.shape)
        params[k] = jnp.asarray(median * np.exp(sigma * z), dtype=jnp.asarray(base[k]).dtype)
    return params, sorted(cv)


def batch_size(params: Mapping, batched: Sequence[str]) -> int:
    sizes = {k: int(jnp.shape(params[k])[0]) for k in batched}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"batched parameters must share their leading size, got {sizes}")
    return next(iter(sizes.values()))


# -- memory ----------------------------------------------------------------------------
def _device_memory_bytes(device) -> int:
    stats = getattr(device, "memory_stats", lambda: None)()
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:  # CPU: physical memory
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def member_bytes(sim: Simulator, n_saves: int) -> int:
    """Bytes one batch member needs on a device: saved output plus ~12 working states
    (carry, explicit rates, transform buffers) for the step."""
    state = len(sim.model.species) * sim.grid.size * sim.dtype.itemsize
    return state * (n_saves + 1) + 12 * state


def auto_chunk(sim: Simulator, n_saves: int, n_members: int, fraction: float = 0.5) -> int:
    """Largest chunk that uses at most ``fraction`` of each device's free memory, rounded
    to a multiple of the device count."""
    devices = jax.devices()
    # Only this process's devices can report memory (several hosts: assume alike devices).
    per_device = min(_device_memory_bytes(d) for d in jax.local_devices())
    per_member = member_bytes(sim, n_saves)
    fit = max(1, int(fraction * per_device // per_member)) * len(devices)
    return max(len(devices), min(fit, _round_up(n_members, len(devices))))


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


# -- running ---------------------------------------------------------------------------
def iter_batch(sim: Simulator, params: Mapping, batched: Sequence[str], y0, n_saves: int,
               chunk: int | None = None, y0_batched: bool = False,
               devices: Sequence | None = None, n: int | None = None) -> Iterator[tuple[slice, jax.Array]]:
    """Yield ``(member slice, states (b, n_saves+1, S, *shape))`` chunk by chunk, so a
    caller can write each chunk to disk before the next runs.

    y0: one state ``(S, *shape)`` for every member, ``(B, S, *shape)`` with ``y0_batched``,
    or a callable ``indices -> (len(indices), S, *shape)`` called once per chunk (members'
    initial states are then never all in memory at once; give ``n`` when no parameter is
    batched). The chunk is padded to a multiple of the device count (padding repeats the
    last member and is dropped) and sharded over a 1-D mesh named ``"batch"``.
    """
    batched = list(batched)
    sim.model.check_params(params, batched)  # values here are concrete; inside vmap only names
    y0_batched = y0_batched or callable(y0)
    if n is None:
        n = batch_size(params, batched) if batched else int(jnp.shape(y0)[0])
    devices = list(devices or jax.devices())
    mesh = Mesh(np.asarray(devices), ("batch",))
    shard = NamedSharding(mesh, P("batch"))
    replicated = NamedSharding(mesh, P())
    chunk = chunk or auto_chunk(sim, n_saves, n)
    chunk = _round_up(chunk, len(devices))
    in_axes = ({k: (0 if k in batched else None) for k in params}, 0 if y0_batched else None)
    mapped = jax.jit(jax.vmap(lambda p, y: sim.run(p, y, n_saves), in_axes=in_axes),
                     out_shardings=shard)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        take = np.minimum(np.arange(start, start + chunk), n - 1)  # pad with the last member
        p = {k: (jax.device_put(jnp.asarray(v)[take], shard) if k in batched
                 else jax.device_put(jnp.asarray(v), replicated)) for k, v in params.items()}
        if callable(y0):
            y = jax.device_put(jnp.asarray(y0(take)), shard)
        elif y0_batched:
            y = jax.device_put(jnp.asarray(y0)[take], shard)
        else:
            y = jax.device_put(jnp.asarray(y0), replicated)
        out = mapped(p, y)
        yield slice(start, stop), out[: stop - start]


def run_batch(sim: Simulator, params: Mapping, batched: Sequence[str], y0, n_saves: int,
              chunk: int | None = None, y0_batched: bool = False, devices=None) -> np.ndarray:
    """All members' saved states, ``(B, n_saves+1, S, *shape)`` as a NumPy array."""
    parts = [np.asarray(out) for _, out in iter_batch(sim, params, batched, y0, n_saves, chunk,
                                                      y0_batched, devices)]
    return np.concatenate(parts)


def run_domain_sharded(sim: Simulator, params: Mapping, y0, n_saves: int, axis: int = 0,
                       devices=None):
    """One large grid split across devices along spatial ``axis`` (domain decomposition).

    The state ``(S, *shape)`` is laid out with that axis sharded over a 1-D mesh ``"space"``;
    XLA's SPMD partitioner inserts the halo exchanges of the stencils and the transposes of
    the transforms. ``shape[axis]`` must be divisible by the device count.
    """
    devices = list(devices or jax.devices())
    n = sim.grid.shape[axis]
    if n % len(devices):
        raise ValueError(
            f"grid.shape[{axis}] = {n} is not divisible by the {len(devices)} devices; "
            "choose a grid size that is a multiple of the device count")
    if sim.fused_transforms:
        sim = sim.replace(fused_transforms=False)  # see LaplacianTransform._last2_dct
    mesh = Mesh(np.asarray(devices), ("space",))
    spec = [None] * (1 + sim.grid.ndim)
    spec[1 + axis] = "space"
    state_sharding = NamedSharding(mesh, P(*spec))
    out_spec = NamedSharding(mesh, P(None, *spec))
    replicated = NamedSharding(mesh, P())
    y = jax.device_put(jnp.asarray(y0, sim.dtype), state_sharding)
    p = {k: jax.device_put(jnp.asarray(v, sim.dtype), replicated) for k, v in params.items()}
    fn = jax.jit(lambda p, y: sim.run(p, y, n_saves), out_shardings=out_spec)
    return fn(p, y)
