"""One default-scenario step at 64² × 80 µm (state after 24 h): forward vs jax.grad (state and params) of a weighted sum, per part (whole step, reactions + chemotaxis, implicit solve, limiter), CPU time per call (process_time, mean of 20 calls) and XLA cost analysis.

    python scripts/bench_gradient_step.py
"""
import time
import numpy as np, jax, jax.numpy as jnp
from tmepde.config import load_config
from tmepde.runner import build
cfg = load_config(str(__import__("pathlib").Path(__file__).resolve().parents[1] / "configs" / "default.toml"), ["grid.shape=[64,64]", "grid.spacing=80.0", "time.t_end=48.0"])
s = build(cfg); sim = s.simulator; ctx = sim.context; p = sim._as_params(s.params)
carry = jax.block_until_ready(sim.init(s.y0, s.params))
carry, _ = sim.advance(carry, s.params, 2)
w = jnp.asarray(np.random.default_rng(0).random(carry.y.shape), sim.dtype)
step = lambda c, p: sim.stepper.step(ctx, c, p)
def fwd(c, p):
    return jnp.sum(step(c, p).ahead[-1] * w)
parts = {
    "forward step": jax.jit(fwd),
    "grad step (state+params)": jax.jit(jax.grad(fwd, argnums=(0, 1), allow_int=True)),
    "nonstiff fwd": jax.jit(lambda c, p: jnp.sum(sim.disc.nonstiff(0.0, c.y, p, 0.5) * w)),
    "nonstiff grad": jax.jit(jax.grad(lambda c, p: jnp.sum(sim.disc.nonstiff(0.0, c.y, p, 0.5) * w), argnums=(0, 1), allow_int=True)),
    "solve fwd": jax.jit(lambda c, p: jnp.sum(sim.disc.implicit_solve(c.y, 1 / 3, p, sim.disc.local_decay(0.0, c.y, p), guess=c.ahead[0]) * w)),
    "solve grad": jax.jit(jax.grad(lambda c, p: jnp.sum(sim.disc.implicit_solve(c.y, 1 / 3, p, sim.disc.local_decay(0.0, c.y, p), guess=c.ahead[0]) * w), argnums=(0, 1), allow_int=True)),
    "clip fwd": jax.jit(lambda c, p: jnp.sum(sim.disc.clip(sim.disc.flush(c.y - 0.01)) * w)),
    "clip grad": jax.jit(jax.grad(lambda c, p: jnp.sum(sim.disc.clip(sim.disc.flush(c.y - 0.01)) * w), argnums=(0, 1), allow_int=True)),
}
for name, f in parts.items():
    c0 = time.process_time()
    comp = f.lower(carry, p).compile()
    cc = time.process_time() - c0
    ca = comp.cost_analysis()
    ca = ca[0] if isinstance(ca, list) else ca
    jax.block_until_ready(comp(carry, p))
    c0 = time.process_time()
    for _ in range(20):
        jax.block_until_ready(comp(carry, p))
    print(f"{name:28s} compile {cc:6.2f} CPU-s  run {(time.process_time() - c0) / 20 * 1e3:7.2f} CPU-ms  "
          f"flops {ca.get('flops', 0):.3g} bytes {ca.get('bytes accessed', 0):.3g}", flush=True)
