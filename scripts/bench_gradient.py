"""Peak memory and time of a reverse-mode gradient vs the forward run (TME model).

Scalar: tumor burden (Σ tumor + stem × cell volume) at the end plus its time average over the
saves. Gradient: jax.grad w.r.t. every parameter (reaction rates, D_*, dose times/amounts).
Memory: XLA's compiled memory analysis (temp bytes = the workspace the program needs beyond
its inputs/outputs; for the gradient this holds the checkpointed carries) and the process's
peak RSS. Time: best of ``--repeat`` runs after compilation.

    python scripts/bench_gradient.py                       # default.toml at 64² (CPU-sized)
    python scripts/bench_gradient.py --shape 256 256       # the full default scenario (GPU)
Writes results/bench_gradient.{md,json}.

    python scripts/bench_gradient.py --finite              # day-7 burden, 64² × 80 µm, float32
checks instead that the gradient of the day-7 tumor burden is finite for every parameter
entry (counts, the non-finite entries by name) and times it against the forward run; it
writes the section "Gradient finiteness" of results/bench_gradient.md and
results/bench_gradient_finite.json.

    python scripts/bench_gradient.py --baseline e3eb6a5 --repeat 4
runs that scenario in one process with the engine's ``nonstiff`` and ``clip`` as of a git
revision and as in the working tree (both compiled, runs alternated); it prints a table and
writes results/bench_gradient_baseline.json.

    python scripts/bench_gradient.py --loop-levels --repeat 4
runs that scenario with the time loop's block level forced on and with the loop as it is (save
intervals of up to ``STEPS_PER_INTERVAL`` steps recomputed step by step), side by side in one
process; it writes the section "Checkpoint levels of the time loop" of results/bench_gradient.md.

    python scripts/bench_gradient.py --cg-iterations --t-end 48
counts the conjugate-gradient iterations of the cytokine solves in the --finite scenario: the
forward run's (started from the extrapolated state) and, in the gradient's program, those of
the adjoint solves (the transposed solves of ``lax.custom_linear_solve``, started from zero);
it writes the section "CG iterations, forward and adjoint" of results/bench_gradient.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import time
from pathlib import Path

import numpy as np
import jax
import jax.numpy as jnp

import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_model  # noqa: E402
from tmepde.config import load_config  # noqa: E402
from tmepde.runner import build  # noqa: E402


def bench(cfg, repeat: int) -> dict:
    s = build(cfg)
    sim, model = s.simulator, cfg.model
    vol = jnp.asarray(cfg.grid.cell_volumes(), sim.dtype)
    it, ist = model.index("tumor"), model.index("stem")
    y0 = jnp.asarray(s.y0)

    def loss(p):
        ys = sim.run(p, y0, s.n_saves)
        b = jnp.sum((ys[:, it] + ys[:, ist]) * vol, axis=tuple(range(1, ys.ndim - 1)))
        return b[-1] + jnp.mean(b)

    out = {"grid": list(cfg.grid.shape), "t_end_h": cfg.data["time"]["t_end"], "dt_h": sim.dt,
           "steps": int(round(cfg.data["time"]["t_end"] / sim.dt)), "saves": s.n_saves,
           "dtype": str(sim.dtype), "n_params": len(s.params)}
    for name, fn in (("forward", loss), ("gradient", jax.grad(loss))):
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(s.params).compile()
        out[f"{name}_compile_s"] = time.perf_counter() - t0
        ma = compiled.memory_analysis()
        out[f"{name}_temp_bytes"] = int(getattr(ma, "temp_size_in_bytes", 0)) if ma is not None else None
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(s.params))
            times.append(time.perf_counter() - t0)
        out[f"{name}_s"] = min(times)
        out[f"{name}_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["time_ratio"] = out["gradient_s"] / out["forward_s"]
    if out["forward_temp_bytes"]:
        out["temp_ratio"] = out["gradient_temp_bytes"] / out["forward_temp_bytes"]
    state = int(np.prod(cfg.grid.shape)) * len(model.names) * np.dtype(sim.dtype).itemsize
    out["state_bytes"] = state
    out["gradient_temp_in_states"] = out["gradient_temp_bytes"] / state if out["gradient_temp_bytes"] else None
    return out


def final_burden(cfg):
    """(burden(params), built run): tumor + stem at the last save, summed as volume fraction ×
    cell size (µm² in 2D, µm³ in 3D)."""
    s = build(cfg)
    sim, model = s.simulator, cfg.model
    vol = jnp.asarray(cfg.grid.cell_volumes(), sim.dtype)
    it, ist = model.index("tumor"), model.index("stem")
    y0 = jnp.asarray(s.y0)

    def burden(p):
        y = sim.run(p, y0, s.n_saves)[-1]
        return jnp.sum((y[it] + y[ist]) * vol)

    return burden, s


def finiteness(cfg, repeat: int = 1) -> dict:
    """Gradient of the final tumor burden w.r.t. every parameter entry: finite counts, times
    (compile: one compilation; run: best of ``repeat`` calls after the first, wall and CPU)."""
    burden, s = final_burden(cfg)
    sim = s.simulator

    out = {"grid": list(cfg.grid.shape), "spacing_um": list(cfg.grid.spacing),
           "t_end_h": cfg.data["time"]["t_end"], "dt_h": sim.dt, "scheme": sim.scheme,
           "dtype": str(jnp.dtype(sim.dtype)), "load_before": os.getloadavg()}
    for name, fn in (("forward", burden), ("gradient", jax.value_and_grad(burden))):
        c0, t0 = time.process_time(), time.perf_counter()
        compiled = jax.jit(fn).lower(s.params).compile()
        out[f"{name}_compile_s"] = time.perf_counter() - t0
        out[f"{name}_compile_cpu_s"] = time.process_time() - c0
        res = jax.block_until_ready(compiled(s.params))
        walls, cpus = [], []
        for _ in range(max(1, repeat)):
            c0, t0 = time.process_time(), time.perf_counter()
            res = jax.block_until_ready(compiled(s.params))
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        out[f"{name}_s"], out[f"{name}_cpu_s"] = min(walls), min(cpus)
        out[f"{name}_s_all"], out[f"{name}_cpu_s_all"] = walls, cpus
        out[f"{name}_temp_mb"] = compiled.memory_analysis().temp_size_in_bytes / 1e6
        print(f"{name}: compile {out[f'{name}_compile_s']:.1f} s ({out[f'{name}_compile_cpu_s']:.1f} CPU-s), "
              f"run {out[f'{name}_s']:.2f} s ({out[f'{name}_cpu_s']:.2f} CPU-s)", flush=True)
    value, grad = res
    out["burden_um2"] = float(value)
    entries, bad_keys, bad_entries = 0, [], []
    for k in sorted(grad):
        a = np.atleast_1d(np.asarray(grad[k]))
        entries += a.size
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            bad_keys.append(k)
            bad_entries += [k if np.ndim(grad[k]) == 0 else f"{k}[{i}]" for i in bad]
    out.update(keys=len(grad), entries=entries, nonfinite_keys=bad_keys, nonfinite_entries=len(bad_entries),
               nonfinite=bad_entries, zero_entries=int(sum(np.sum(np.asarray(v) == 0) for v in grad.values())),
               zero=[k if np.ndim(v) == 0 else f"{k}[{i}]" for k, v in sorted(grad.items())
                     for i in np.flatnonzero(np.atleast_1d(np.asarray(v)) == 0)],
               time_ratio=out["gradient_s"] / out["forward_s"],
               compile_ratio=out["gradient_compile_s"] / out["forward_compile_s"],
               cpu_time_ratio=out["gradient_cpu_s"] / out["forward_cpu_s"],
               cpu_compile_ratio=out["gradient_compile_cpu_s"] / out["forward_compile_cpu_s"],
               load_after=os.getloadavg())
    return out


def day7_config(args):
    """The --finite scenario: the config at ``--shape`` over the same extent, ``--t-end``
    (default 168 h, day 7), ``--dtype``. Returns (config, t_end)."""
    base = load_config(args.config)
    spacing = [e / n for e, n in zip(base.grid.extent, args.shape)]
    t_end = args.t_end or 168.0
    return base.replace(f"grid.shape={list(args.shape)}", f"grid.spacing={spacing}", f"time.t_end={t_end}",
                        f"solver.dtype={args.dtype}"), t_end


def finite_main(args, machine):
    cfg, _ = day7_config(args)
    r = finiteness(cfg, args.repeat)
    r["command"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(json.dumps(r, indent=1), flush=True)
    Path(args.out + "_finite.json").write_text(json.dumps({"machine": machine, "run": r}, indent=1))
    write_finite_section(Path(args.out + ".md"), r, machine, args.config)


def cg_iterations(cfg) -> dict:
    """CG iterations of every cytokine solve (one per species and implicit solve) in the forward
    run and in the gradient's program, told apart by the call site: the primal solve inside
    ``_guessed_solve`` (extrapolated first iterate) or the linear (tangent/adjoint) solve of its
    ``custom_linear_solve`` (from zero). Counted at run time by ``jax.debug.callback``."""
    import collections
    import inspect

    import tmepde.discretization as disc

    counts = collections.defaultdict(list)
    pcg = disc._pcg

    def counted(matvec, b, x0, precondition, tol, maxiter):
        site = "primal" if inspect.stack()[1].function == "solve" else "adjoint"
        x, it = pcg(matvec, b, x0, precondition, tol, maxiter)
        jax.debug.callback(lambda it, site=site: counts[site].append(int(it)), it)
        return x, it

    disc._pcg = counted
    try:
        burden, s = final_burden(cfg)
        jax.block_until_ready(jax.jit(burden)(s.params))
        forward = {k: list(v) for k, v in counts.items()}
        counts.clear()
        jax.block_until_ready(jax.jit(jax.grad(burden))(s.params))
        gradient = {k: list(v) for k, v in counts.items()}
    finally:
        disc._pcg = pcg
    summary = lambda v: {"solves": len(v), "iterations": int(sum(v)), "mean": float(np.mean(v)) if v else 0.0,  # noqa: E731
                         "histogram": np.bincount(v).tolist() if v else []}
    return {"forward": {k: summary(v) for k, v in forward.items()},
            "gradient": {k: summary(v) for k, v in gradient.items()}}


def cg_main(args, machine):
    cfg, t_end = day7_config(args)
    r = cg_iterations(cfg)
    r["command"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    r.update(shape=list(args.shape), t_end=t_end, dtype=args.dtype, machine=machine)
    print(json.dumps(r, indent=1), flush=True)
    f, g = r["forward"].get("primal", {}), r["gradient"]
    lines = ["## CG iterations, forward and adjoint", "",
             f"Command: `{r['command']}`. Machine: {machine['cpu']}, {machine['cores']} cores, JAX "
             f"{machine['jax']} ({machine['backend']}). Config {args.config} at {'×'.join(map(str, args.shape))}, "
             f"t_end {t_end:g} h, {args.dtype}, sbdf2; scalar: the final tumor burden (as the finiteness section).",
             "", "| program | solves | CG iterations | mean per solve |", "|---|---|---|---|",
             f"| forward run: primal solves (first iterate: the extrapolated state) | {f.get('solves', 0)} | "
             f"{f.get('iterations', 0)} | {f.get('mean', 0):.2f} |"]
    v = g.get("adjoint", {})
    lines.append(f"| gradient: adjoint solves (first iterate 0) | {v.get('solves', 0)} | {v.get('iterations', 0)} | "
                 f"{v.get('mean', 0):.2f} |")
    adj = g.get("adjoint", {}).get("iterations", 0)
    lines += ["", f"Adjoint / forward CG iterations: **{adj / max(f.get('iterations', 1), 1):.2f}x**. "
              "Histograms (iterations 0, 1, 2, ...) in results/bench_gradient_cg.json.", ""]
    Path(args.out + "_cg.json").write_text(json.dumps(r, indent=1))
    _replace_section(Path(args.out + ".md"), "## CG iterations, forward and adjoint", lines)


def _replace_section(md: Path, heading: str, lines: list[str]):
    """Replace the section of ``md`` that starts at ``heading`` (up to the next "## " heading,
    which is kept with everything after it) by ``lines``; append it if ``md`` has none."""
    text = md.read_text(encoding="utf-8") if md.exists() else ""
    parts = text.split("\n")
    if heading in parts:
        i = parts.index(heading)
        j = next((n for n in range(i + 1, len(parts)) if parts[n].startswith("## ")), len(parts))
        parts = parts[:i] + lines + parts[j:]
    else:
        while parts and not parts[-1].strip():
            parts.pop()
        parts = parts + [""] + lines
    md.write_text("\n".join(parts), encoding="utf-8")


def _engine_at(rev: str):
    """The ``Discretization`` class of ``tmepde/discretization.py`` and ``tmepde/operators.py`` as of
    git revision ``rev`` (loaded from ``git show`` into temporary modules; the rest of tmepde is
    the working tree's)."""
    import importlib.util
    import subprocess
    import tempfile
    root = Path(__file__).resolve().parents[1]
    mods = {}
    for name in ("operators", "discretization"):
        src = subprocess.run(["git", "-C", str(root), "show", f"{rev}:tmepde/{name}.py"], check=True,
                             capture_output=True, text=True).stdout
        src = src.replace("from . import operators, radial", "from . import _baseline_operators as operators, radial")
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(src)
        full = f"tmepde._baseline_{name}"
        spec = importlib.util.spec_from_file_location(full, f.name)
        mods[name] = importlib.util.module_from_spec(spec)
        sys.modules[full] = mods[name]
        spec.loader.exec_module(mods[name])
        os.unlink(f.name)
    return mods["discretization"].Discretization


def side_by_side(args, machine, variants) -> tuple[dict, list[str]]:
    """Day-7 burden (as --finite) in one process under each of ``variants``, a list of
    ``(label, patch)`` where ``patch(simulator_setup)`` returns a function that undoes it
    (``None``: as now); each forward and gradient compiled once under its patch, then all
    programs alternated ``--repeat`` rounds. Returns (record, markdown table lines)."""
    cfg, _ = day7_config(args)
    out = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "machine": machine,
           "uptime_before": subprocess_uptime(), "programs": {}}
    progs, values = {}, {}
    for variant, patch in variants:
        burden, s = final_burden(cfg)
        undo = patch(s) if patch is not None else None
        try:
            for name, fn in (("forward", burden), ("gradient", jax.value_and_grad(burden))):
                c0, t0 = time.process_time(), time.perf_counter()
                comp = jax.jit(fn).lower(s.params).compile()
                rec = {"compile_s": time.perf_counter() - t0, "compile_cpu_s": time.process_time() - c0,
                       "temp_mb": comp.memory_analysis().temp_size_in_bytes / 1e6, "run_s": [], "run_cpu_s": []}
                values[(variant, name)] = jax.block_until_ready(comp(s.params))
                progs[(variant, name)] = (comp, s.params)
                out["programs"][f"{variant} / {name}"] = rec
                print(variant, name, {k: v for k, v in rec.items() if not isinstance(v, list)}, flush=True)
        finally:
            if undo is not None:
                undo()
    keys = list(progs)
    for r in range(args.repeat):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            comp, p = progs[k]
            c0, t0 = time.process_time(), time.perf_counter()
            jax.block_until_ready(comp(p))
            rec = out["programs"][f"{k[0]} / {k[1]}"]
            rec["run_s"].append(time.perf_counter() - t0)
            rec["run_cpu_s"].append(time.process_time() - c0)
    labels = [v for v, _ in variants]
    (v0, g0), (v1, g1) = values[(labels[0], "gradient")], values[(labels[-1], "gradient")]
    out["burden"] = [float(v0), float(v1)]
    out["max_rel_grad_diff"] = max(float(np.max(np.abs(np.asarray(g0[k]) - np.asarray(g1[k])))
                                         / (np.max(np.abs(np.asarray(g0[k]))) + 1e-30)) for k in g0)
    out["uptime_after"] = subprocess_uptime()
    lines = ["| engine | forward compile (CPU-s) | gradient compile (CPU-s) | compile ratio | forward run "
             "(CPU-s, median) | gradient run (CPU-s, median) | run ratio (median of paired calls) | "
             "temp MB fwd / grad |", "|---|---|---|---|---|---|---|---|"]
    for variant in labels:
        f, g = out["programs"][f"{variant} / forward"], out["programs"][f"{variant} / gradient"]
        ratio = np.median(np.asarray(g["run_cpu_s"]) / np.asarray(f["run_cpu_s"]))
        lines.append(f"| {variant} | {f['compile_cpu_s']:.1f} | {g['compile_cpu_s']:.1f} | "
                     f"{g['compile_cpu_s'] / f['compile_cpu_s']:.2f} | {np.median(f['run_cpu_s']):.2f} | "
                     f"{np.median(g['run_cpu_s']):.2f} | {ratio:.2f} | {f['temp_mb']:.1f} / {g['temp_mb']:.1f} |")
    lines += ["", f"Burden {out['burden'][0]:.7g} / {out['burden'][1]:.7g}; gradients agree to "
              f"{out['max_rel_grad_diff']:.1e} (largest relative difference of a parameter's entries)."]
    print(out["command"], out["uptime_before"], out["uptime_after"], sep="\n")
    print("\n".join(lines))
    return out, lines


def baseline_main(args, machine):
    """The engine's reactions + chemotaxis and positivity limiter (``nonstiff``, ``clip``) as of
    ``--baseline REV`` against the working tree, side by side (:func:`side_by_side`)."""
    Old = _engine_at(args.baseline)

    def patch(s):
        d = s.simulator.disc
        old = Old(d.model, d.grid, stencil_dt=s.simulator.dt)
        d.nonstiff, d.clip = old.nonstiff, old.clip  # looked up when the step is traced
        return None

    out, _ = side_by_side(args, machine, [(args.baseline, patch), ("working tree", None)])
    Path(args.out + "_baseline.json").write_text(json.dumps(out, indent=1))


def _patched(obj, name, value):
    """A :func:`side_by_side` patch: ``obj.name = value`` (``obj`` a module or, when a
    function, called on the set-up to get it) until undone."""
    def patch(s):
        target = obj(s) if callable(obj) else obj
        keep = getattr(target, name)
        setattr(target, name, value)
        return lambda: setattr(target, name, keep)
    return patch


def variant_section(args, machine, title: str, suffix: str, variants) -> None:
    """Run ``variants`` side by side (:func:`side_by_side`) on the --finite scenario; writes
    ``<out><suffix>.json`` and the section ``title`` of ``<out>.md``."""
    cfg, t_end = day7_config(args)
    dt = final_burden(cfg)[1].simulator.dt
    steps, per_save = int(round(t_end / dt)), int(round(cfg.data["time"]["save_every"] / dt))
    out, table = side_by_side(args, machine, variants)
    Path(args.out + suffix + ".json").write_text(json.dumps(out, indent=1))
    lines = [title, "",
             f"Command: `{out['command']}`. Machine: {machine['cpu']}, {machine['cores']} cores, JAX "
             f"{machine['jax']} ({machine['backend']}); `uptime` {out['uptime_before']} before, "
             f"{out['uptime_after']} after. The --finite scenario ({args.shape[0]}², {steps} steps, "
             f"{per_save} per save, {args.dtype}); one process, each program compiled once, then all "
             f"alternated {args.repeat} rounds (CPU-seconds).", ""] + table + [""]
    _replace_section(Path(args.out + ".md"), title, lines)


def loop_levels_main(args, machine):
    """The time loop with its block level forced on (every save interval in blocks of ~√n
    steps, each block checkpointed) against the loop as it is; writes the section
    "Checkpoint levels of the time loop"."""
    from tmepde.stepping import loop

    variant_section(args, machine, "## Checkpoint levels of the time loop", "_loop_levels", [
        ("save, block and step levels", _patched(loop, "STEPS_PER_INTERVAL", 0)),
        (f"as now (n ≤ {loop.STEPS_PER_INTERVAL}: save and step levels)", None)])


def step_residuals_main(args, machine):
    """The step checkpoint recomputing everything (no named residuals) against storing the
    implicit and CG solutions (``loop.STEP_RESIDUALS``); writes the section "Stored solves in
    the step checkpoint"."""
    from tmepde.stepping import loop

    variant_section(args, machine, "## Stored solves in the step checkpoint", "_step_residuals", [
        ("step recomputed whole", _patched(loop, "STEP_RESIDUALS", ())),
        (f"as now (stores {', '.join(loop.STEP_RESIDUALS)})", None)])


def tabulated_inputs_main(args, machine):
    """The model's time-only inputs (plasma levels) evaluated in every step against tabulated
    once per loop call (``Model.inputs``; withdrawn, the loop's table is empty and the
    reactions evaluate them); writes the section "Plasma levels tabulated before the loop"."""
    variant_section(args, machine, "## Plasma levels tabulated before the loop", "_tabulated_inputs", [
        ("plasma evaluated in every step", _patched(lambda s: s.simulator.model, "inputs", {})),
        ("as now (tabulated before the loop)", None)])


def subprocess_uptime() -> str:
    import subprocess
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return str(os.getloadavg())


def _grouped(names):
    """['k[0]', 'k[1]', 'k[3]', 'q'] -> 'k[0-1,3], q'."""
    slots: dict = {}
    for n in names:
        key, _, i = n.partition("[")
        slots.setdefault(key, []).append(int(i[:-1]) if i else None)
    out = []
    for key, idx in slots.items():
        if idx == [None]:
            out.append(key)
            continue
        runs, start = [], idx[0]
        for a, b in zip(idx, idx[1:] + [None]):
            if b != a + 1 if b is not None else True:
                runs.append(f"{start}" if start == a else f"{start}-{a}")
                start = b
        out.append(f"{key}[{','.join(runs)}]")
    return ", ".join(out)


def write_finite_section(md: Path, r: dict, machine: dict, config: str):
    """Replace the "Gradient finiteness" section of ``md`` with the result ``r``."""
    shape, spacing = r["grid"], r["spacing_um"]
    lines = ["## Gradient finiteness", "",
             f"Command: `{r['command']}`. Machine: {machine['cpu']}, {machine['cores']} cores, JAX "
             f"{machine['jax']} ({machine['backend']}); load average {' '.join(f'{x:.2f}' for x in r['load_before'])} before, "
             f"{' '.join(f'{x:.2f}' for x in r['load_after'])} after (a shared machine: times are upper bounds, ratios noisy).", "",
             f"Config {config} at {shape[0]}² × {spacing[0]:g} µm (same section), t_end {r['t_end_h']:g} h, "
             f"dt {r['dt_h']:g} h, {r['scheme']}, {r['dtype']}. Scalar: final tumor burden "
             f"∑ (tumor + stem) × cell volume = {r['burden_um2']:.4g} µm²; `jax.value_and_grad` w.r.t. every "
             "parameter.", "",
             "| parameters (keys / entries) | finite entries | non-finite entries | exactly zero | "
             "forward compile (s) | gradient compile (s) | compile ratio | forward run (s) | "
             "gradient run (s) | run ratio |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| {r['keys']} / {r['entries']} | {r['entries'] - r['nonfinite_entries']} | {r['nonfinite_entries']} | "
             f"{r['zero_entries']} | {r['forward_compile_s']:.1f} | {r['gradient_compile_s']:.1f} | "
             f"{r['compile_ratio']:.2f} | {r['forward_s']:.2f} | {r['gradient_s']:.2f} | {r['time_ratio']:.2f} |",
             "", f"Compile CPU time: forward {r['forward_compile_cpu_s']:.1f} s, gradient "
             f"{r['gradient_compile_cpu_s']:.1f} s (ratio {r['cpu_compile_ratio']:.2f}). Run CPU time (best of "
             f"{len(r['forward_s_all'])} calls after the first): forward {r['forward_cpu_s']:.2f} s, gradient "
             f"{r['gradient_cpu_s']:.2f} s (ratio {r['cpu_time_ratio']:.2f}). XLA temp memory: forward "
             f"{r['forward_temp_mb']:.1f} MB, gradient {r['gradient_temp_mb']:.1f} MB.", ""]
    if r["nonfinite"]:
        lines += ["Non-finite: " + _grouped(r["nonfinite"]) + ".", ""]
    lines += ["Exactly zero (the whole list is in "
              f"{md.stem}_finite.json; dose slots and agents with amount 0 and doses after t_end cannot "
              "act on the burden): " + _grouped(r["zero"]) + ".", ""]
    _replace_section(md, "## Gradient finiteness", lines)
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/default.toml")
    ap.add_argument("--shape", type=int, nargs="+", default=[64, 64], help="grid shape (default 64 64 on CPU)")
    ap.add_argument("--longer", type=float, default=3.0, help="factor of the longer scenario's t_end")
    ap.add_argument("--t-end", type=float, default=None, help="t_end (h) of the base scenario (default: config)")
    ap.add_argument("--repeat", type=int, default=2, help="timed calls after the first (best is reported)")
    ap.add_argument("--out", default="results/bench_gradient")
    ap.add_argument("--finite", action="store_true",
                    help="check the day-7 burden gradient is finite for every parameter (64² × 80 µm)")
    ap.add_argument("--dtype", default="float32", help="solver.dtype of the --finite run")
    ap.add_argument("--baseline", metavar="REV", default=None,
                    help="the --finite scenario side by side with nonstiff/clip of git revision REV")
    ap.add_argument("--loop-levels", action="store_true",
                    help="the --finite scenario with the time loop's block level forced on against the loop as is")
    ap.add_argument("--step-residuals", action="store_true",
                    help="the --finite scenario with the step checkpoint recomputing its solves against storing them")
    ap.add_argument("--tabulated-inputs", action="store_true",
                    help="the --finite scenario with the plasma levels evaluated in every step against tabulated")
    ap.add_argument("--cg-iterations", action="store_true",
                    help="count the CG iterations of the forward and adjoint solves of the --finite scenario")
    args = ap.parse_args()
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "jax": jax.__version__,
               "backend": jax.default_backend(), "python": platform.python_version()}
    if args.cg_iterations:
        return cg_main(args, machine)
    if args.baseline:
        return baseline_main(args, machine)
    if args.loop_levels:
        return loop_levels_main(args, machine)
    if args.step_residuals:
        return step_residuals_main(args, machine)
    if args.tabulated_inputs:
        return tabulated_inputs_main(args, machine)
    if args.finite:
        return finite_main(args, machine)
    base = load_config(args.config)
    ext = [e for e in base.grid.extent]
    spacing = [e / n for e, n in zip(ext, args.shape)]
    t_end = args.t_end or base.data["time"]["t_end"]
    over = [f"grid.shape={list(args.shape)}", f"grid.spacing={spacing}", f"time.t_end={t_end}"]
    rows = []
    for label, factor in (("default", 1.0), (f"{args.longer:g}x longer", args.longer)):
        te = t_end * factor
        se = base.data["time"]["save_every"]
        te = round(te / se) * se
        cfg = base.replace(*over, f"time.t_end={te}")
        print(f"{label}: grid {args.shape}, t_end {te:g} h ...", flush=True)
        r = bench(cfg, args.repeat)
        r["scenario"] = label
        print(json.dumps(r, indent=1), flush=True)
        rows.append(r)
    machine["devices"] = [str(d) for d in jax.devices()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({"machine": machine, "runs": rows}, indent=1))
    lines = ["# Gradient vs forward: time and memory (scripts/bench_gradient.py)", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, JAX {machine['jax']} ({machine['backend']}). "
             f"Config {args.config} with grid {args.shape} (same extent). Scalar: final + time-averaged "
             "tumor burden; gradient w.r.t. every parameter. Memory: XLA compiled temp bytes (workspace "
             "beyond inputs/outputs) and process peak RSS (cumulative, so later rows include earlier ones). "
             "The machine was shared with other jobs: times are upper bounds.", "",
             "| scenario | steps | saves | forward (s) | gradient (s) | time ratio | forward temp (MB) | "
             "gradient temp (MB) | memory ratio | gradient temp / state | peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['steps']} | {r['saves']} | {r['forward_s']:.2f} | {r['gradient_s']:.2f} | "
                     f"{r['time_ratio']:.2f} | {r['forward_temp_bytes'] / 1e6:.1f} | {r['gradient_temp_bytes'] / 1e6:.1f} | "
                     f"{r.get('temp_ratio', float('nan')):.2f} | {r['gradient_temp_in_states']:.0f} | "
                     f"{r['gradient_peak_rss_mb']:.0f} |")
    if len(rows) == 2:
        g = rows[1]["gradient_temp_bytes"] / rows[0]["gradient_temp_bytes"]
        lines += ["", f"Longer run: {rows[1]['steps'] / rows[0]['steps']:.1f}× the steps and "
                  f"{rows[1]['saves'] / rows[0]['saves']:.1f}× the saves; gradient temp memory grows "
                  f"{g:.2f}× (checkpointing: memory ∝ saves + min(n, 2√n) carries for n steps per save, not steps)."]
    md = Path(args.out + ".md")
    finite = md.read_text().partition("## Gradient finiteness") if md.exists() else ("", "", "")
    md.write_text("\n".join(lines) + "\n" + ("\n" + finite[1] + finite[2] if finite[1] else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
