"""One default-scenario step (state after 24 h of the run) at ``--shape`` over the same
5.12 mm section: forward vs jax.grad (state and params) of a weighted sum, per part (whole step,
reactions + chemotaxis, implicit solve, limiter), CPU time per call (process_time, mean of 20
calls) and XLA cost analysis. ``--json`` appends one record per part to a file.

    python scripts/bench_gradient_step.py                 # 64² × 80 µm
    python scripts/bench_gradient_step.py --shape 256     # the default grid, 256² × 20 µm
"""
import argparse
import json
import time
from pathlib import Path
import numpy as np, jax, jax.numpy as jnp
from tmepde.config import load_config
from tmepde.runner import build
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--shape", type=int, default=64, help="cells per side")
ap.add_argument("--json", default=None, help="append the records to this JSON-lines file")
ap.add_argument("--label", default="", help="label of the records (e.g. the revision)")
args = ap.parse_args()
root = Path(__file__).resolve().parents[1]
cfg = load_config(str(root / "configs" / "default.toml"), [
    f"grid.shape=[{args.shape},{args.shape}]", f"grid.spacing={5120.0 / args.shape}", "time.t_end=48.0"])
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
    run_ms = (time.process_time() - c0) / 20 * 1e3
    print(f"{name:28s} compile {cc:6.2f} CPU-s  run {run_ms:7.2f} CPU-ms  "
          f"flops {ca.get('flops', 0):.3g} bytes {ca.get('bytes accessed', 0):.3g}", flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"label": args.label, "shape": args.shape, "part": name, "compile_cpu_s": cc,
                                "run_cpu_ms": run_ms, "flops": ca.get("flops", 0)}) + "\n")
