"""GPU proof: every GPU claim of tmepde measured in one run, written to a Markdown table.

    bash scripts/gpu_check.sh                    # on a GPU machine: full sizes, writes results/gpu.md
    python scripts/gpu_check.py --dry-run --out /tmp/gpu.md   # CPU, tiny sizes (what CI runs)

Checks, each timed as a user experiences it (wall clock, compile included, fresh process):

1. ``pytest -m gpu`` (GPU against CPU, member-by-member batches);
2. the default scenario (``tmepde run configs/default.toml``; goal < 5 s on an H100/H200);
3. a 3D run at 128³ (``configs/scenarios/tumor_3d.toml`` at 20 µm voxels);
4. a virtual cohort of 1000 patients at 128² for 30 days (``scripts/cohort.py``; goal < 5 min);
5. the explicit step's memory bandwidth against the device's (a copy roofline measured in the
   same process and the vendor's nominal HBM figure; goal ≥ 60 % of HBM);
6. float32 against float64 on the TME model (max relative difference of the tumor burden).

Each check runs with a time limit and reports failure instead of stopping the others, so the
table is written even when one check breaks. The whole script fits in 8 minutes on an H100.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Nominal HBM bandwidth (bytes/s) by device name, from the vendors' data sheets.
NOMINAL_BANDWIDTH = {
    "H200": 4.8e12, "H100 SXM": 3.35e12, "H100 NVL": 3.9e12, "H100 PCIe": 2.0e12, "H100": 3.35e12,
    "A100-SXM4-80GB": 2.039e12, "A100-SXM4-40GB": 1.555e12, "A100-PCIE-80GB": 1.935e12,
    "A100": 1.555e12, "L40S": 0.864e12, "L4": 0.3e12, "V100": 0.9e12,
}

FULL = dict(default_sets=[], default_label="256² × 20 µm, 30 days",
            d3_sets=["grid.shape=[128,128,128]", "grid.spacing=20.0"], d3_label="128³ × 20 µm, 7 days",
            cohort_args=["-n", "1000", "--shape", "128"], cohort_label="1000 patients, 128², 30 days",
            stencil_shape=(12, 2048, 2048), agree_shape=(64, 64), agree_days=7.0)
# Dry run: the smallest sizes the shipped configs' initial conditions resolve on (40 µm voxels
# keep every initial cluster on the grid), half a day of simulated time.
DRY = dict(default_sets=["grid.shape=[128,128]", "grid.spacing=40.0", "time.t_end=12.0"],
           default_label="dry run: 128² × 40 µm, 12 h",
           d3_sets=["time.t_end=12.0", "time.save_every=6.0"], d3_label="dry run: 48³ × 50 µm, 12 h",
           cohort_args=["-n", "2", "--shape", "128", "--t-end", "12"],
           cohort_label="dry run: 2 patients, 128², 12 h",
           stencil_shape=(2, 64, 64), agree_shape=(32, 32), agree_days=0.5)


def run_timed(cmd: list[str], timeout: float, env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run ``cmd``; wall seconds, exit status and the output's tail."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, cwd=cwd or ROOT)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = "timeout", f"{e.stdout or ''}{e.stderr or ''}"
        out = out.decode() if isinstance(out, bytes) else out
    return {"wall_s": time.perf_counter() - t0, "rc": rc, "tail": out[-2000:]}


def check_pytest_gpu(timeout: float) -> dict:
    r = run_timed([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"], timeout)
    m = re.findall(r"(\d+) (passed|failed|skipped|error)", r["tail"])
    r["summary"] = ", ".join(f"{n} {w}" for n, w in m) or r["tail"].strip().splitlines()[-1:]
    # Exit 5 = no test selected: not a GPU failure, but nothing was checked either.
    r["ok"] = r["rc"] == 0
    return r


def check_cli_run(config: str, sets: list[str], out: Path, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "tmepde.cli", "run", str(ROOT / config), "-o", str(out), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    # A fresh cache: the number is the first-run time a new user sees, compile included.
    r = run_timed(cmd, timeout, env={"TMEPDE_CACHE_DIR": "off"})
    r["ok"] = r["rc"] == 0
    return r


def check_cohort(args: list[str], out: Path, device: str, timeout: float) -> dict:
    cmd = [sys.executable, str(ROOT / "scripts" / "cohort.py"), *args, "--device", device,
           "--no-progress", "-o", str(out)]
    r = run_timed(cmd, timeout, env={"TMEPDE_CACHE_DIR": "off"})
    r["ok"] = r["rc"] == 0
    return r


def in_process_checks(shape, agree_shape, agree_days) -> dict:
    """Bandwidth of the explicit step, and float32 against float64 (needs JAX in-process)."""
    import numpy as np
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import tmepde as tp
    from tmepde.models import tme

    out = {"devices": [str(d) for d in jax.devices()], "backend": jax.default_backend(),
           "device_kind": jax.devices()[0].device_kind}

    def best_time(fn, repeats=5):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    # Copy roofline: read + write of the same bytes the stencil moves.
    n_species, ny, nx = shape
    x = jnp.ones(shape, jnp.float32)
    steps = 20
    copy = jax.jit(lambda a: jax.lax.scan(lambda c, _: (c * 0.999 + 1e-3, None), a, None, length=steps)[0])
    t_copy = best_time(lambda: jax.block_until_ready(copy(x))) / steps
    bytes_step = 2 * x.size * 4
    out["copy_bandwidth"] = bytes_step / t_copy

    species = [tp.Species(f"c{i}", diffusivity=1.0 + i / n_species, decay=0.1) for i in range(n_species)]
    model = tp.Model(species, name="diffusion_decay")
    grid = tp.Grid((ny, nx), 10.0)
    dt = 0.004  # h: below the forward-Euler limit h²/(4 D_max) = 0.0046 h at 10 µm, D ≤ 2 µm²/s
    sim = tp.Simulator(model, grid, dt=dt, save_every=dt * steps, scheme="euler", dtype=jnp.float32)
    p = model.default_params(jnp.float32)
    y0 = jnp.asarray(np.random.default_rng(0).random(shape), jnp.float32)
    run = jax.jit(lambda p, y: sim.run(p, y, 1))
    t_step = best_time(lambda: jax.block_until_ready(run(p, y0))) / steps
    out["stencil_step_s"] = t_step
    out["stencil_bandwidth"] = bytes_step / t_step

    # float32 against float64: the same TME run, tumor burden at every save.
    g = tp.Grid(agree_shape, 5120.0 / agree_shape[0])
    burdens = {}
    for dt_name, dtype in (("float32", jnp.float32), ("float64", jnp.float64)):
        m = tme.tme_model(grid=g, n_doses=2)
        pp = m.params(dtype, sys_ifng_times=[0.0, 56.0], sys_ifng_amounts=[8.65e4, 8.65e4],
                      sys_pd1_times=[0.0, 0.0], sys_pd1_amounts=[2e8, 0.0])
        y = m.stack(tme.initial_conditions(g, seed=0), g, dtype)
        s = tp.Simulator(m, g, dt=0.5, save_every=12.0, dtype=dtype)
        ys = np.asarray(s.run(pp, y, int(round(agree_days * 2))), np.float64)
        burdens[dt_name] = ys[:, m.index("tumor")].sum(axis=(1, 2))
    rel = np.abs(burdens["float32"] - burdens["float64"]) / np.abs(burdens["float64"])
    out["f32_f64_max_rel"] = float(rel.max())
    return out


def nominal_bandwidth(kind: str) -> float | None:
    for name, bw in NOMINAL_BANDWIDTH.items():
        if name.lower() in kind.lower():
            return bw
    return None


def table(rows: list[tuple], machine: dict, dry: bool) -> str:
    lines = ["# GPU check", "",
             ("Dry run (CPU, tiny sizes): exercises the script, measures nothing about GPUs."
              if dry else "Measured by `bash scripts/gpu_check.sh` (fresh processes, compile included)."),
             "", f"- device: {machine['device_kind']} ({machine['backend']}; {', '.join(machine['devices'])})",
             f"- host: {platform.node()} · {platform.platform()} · {os.cpu_count()} cores · "
             f"load at start {machine['load']}",
             f"- jax {machine['jax']} · date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             "| check | size | result | goal | status |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, any device (CI)")
    p.add_argument("--out", default=str(ROOT / "results" / "gpu.md"))
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    args = p.parse_args(argv)
    if args.device != "auto":
        os.environ["JAX_PLATFORMS"] = {"cpu": "cpu", "gpu": "cuda"}[args.device]
    size = DRY if args.dry_run else FULL
    # A dry run on a (possibly shared) CPU compiles the full TME model in each fresh process:
    # minutes, not the GPU's seconds; the limit only guards against a hang there.
    limit = 600 if args.dry_run else 150

    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        r = raw["pytest_gpu"] = check_pytest_gpu(limit)
        rows.append(("`pytest -m gpu`", "—", r["summary"], "all pass", "ok" if r["ok"] else "FAIL"))

        r = raw["default"] = check_cli_run("configs/default.toml", size["default_sets"], tmp / "d.h5", limit)
        rows.append(("default scenario, wall", size["default_label"], f"{r['wall_s']:.1f} s", "< 5 s",
                     ("ok" if r["wall_s"] < 5 else "slower than goal") if r["ok"] else f"FAIL ({r['rc']})"))

        r = raw["run_3d"] = check_cli_run("configs/scenarios/tumor_3d.toml", size["d3_sets"], tmp / "c.h5", limit)
        rows.append(("3D TME run, wall", size["d3_label"], f"{r['wall_s']:.1f} s", "runs",
                     "ok" if r["ok"] else f"FAIL ({r['rc']})"))

        r = raw["cohort"] = check_cohort(size["cohort_args"], tmp / "cohort.h5", args.device,
                                         limit if args.dry_run else 300)
        rows.append(("virtual cohort, wall", size["cohort_label"], f"{r['wall_s']:.1f} s", "< 300 s",
                     ("ok" if r["wall_s"] < 300 else "slower than goal") if r["ok"] else f"FAIL ({r['rc']})"))

    t0 = time.perf_counter()
    m = raw["in_process"] = in_process_checks(size["stencil_shape"], size["agree_shape"], size["agree_days"])
    nominal = nominal_bandwidth(m["device_kind"])
    frac_copy = m["stencil_bandwidth"] / m["copy_bandwidth"]
    bw = (f"{m['stencil_bandwidth'] / 1e9:.0f} GB/s = {100 * frac_copy:.0f} % of copy "
          f"({m['copy_bandwidth'] / 1e9:.0f} GB/s)")
    status = "—"
    if nominal:
        bw += f", {100 * m['stencil_bandwidth'] / nominal:.0f} % of nominal {nominal / 1e12:.2f} TB/s"
        status = "ok" if m["stencil_bandwidth"] >= 0.6 * nominal else "below goal"
    shape = "×".join(map(str, size["stencil_shape"]))
    rows.append(("explicit step bandwidth (f32)", shape, bw, "≥ 60 % of HBM", status))
    rows.append(("float32 vs float64, tumor burden", f"{size['agree_shape'][0]}², {size['agree_days']:g} days",
                 f"max rel. diff {m['f32_f64_max_rel']:.1e}", "≤ 1e-3",
                 "ok" if m["f32_f64_max_rel"] <= 1e-3 else "FAIL"))
    raw["in_process_wall_s"] = time.perf_counter() - t0

    import jax

    machine = dict(m, jax=jax.__version__, load=os.getloadavg()[0] if hasattr(os, "getloadavg") else "?")
    text = table(rows, machine, args.dry_run)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    print(text)
    failed = [row[0] for row in rows if row[4].startswith("FAIL")]
    if failed:
        print(f"gpu_check: failed: {', '.join(failed)} (details in {out.with_suffix('.json')})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
