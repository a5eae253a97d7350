"""``tmepde info FILE``: summarise a result, sweep, fit, optimize or sensitivity file."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..cli import reading_result, register

__all__ = ["run"]


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("result", help="HDF5 result file written by 'tmepde run'")
    p.add_argument("--config", action="store_true", help="print the stored resolved config (TOML)")


def _info_other(path: str, fmt: str | None) -> int:
    """``tmepde info`` of a fit, optimize or other tmepde HDF5 file: its groups and sizes."""
    import h5py

    if fmt == "tmepde-sensitivity":
        from ..sensitivity import read_sensitivity, summary_markdown

        data = read_sensitivity(path)
        print(f"file:     {path}\nformat:   {fmt} ({data['method']}, model {data.get('model', '?')}, "
              f"status {data.get('status', '?')})")
        print(summary_markdown(data), end="")
        return 0
    with h5py.File(path, "r") as f:
        print(f"file:     {path}")
        print(f"format:   {fmt}")
        for k in ("objective_name", "cohort_arm", "floor_mm3"):
            if k in f.attrs:
                print(f"{k + ':':<9} {f.attrs[k]}")
        for name, item in f.items():
            if isinstance(item, h5py.Group):
                print(f"  /{name:<20} {len(item)} entries: {', '.join(sorted(item)[:8])}"
                      + (" ..." if len(item) > 8 else ""))
            else:
                print(f"  /{name:<20} {item.dtype} {item.shape}")
    return 0


@reading_result
def run(args: argparse.Namespace) -> int:
    from ..io import open_result
    from .. import summaries

    fmt = summaries.file_format(args.result)
    if fmt in (summaries.FIT_FORMAT, summaries.OPTIMIZE_FORMAT) or (fmt and fmt.startswith("tmepde-")
                                                                    and fmt not in ("tmepde-result", "tmepde-sweep")):
        if args.config:
            import h5py

            with h5py.File(args.result, "r") as f:
                sys.stdout.write(str(f.attrs.get("config_toml", "")))
            return 0
        return _info_other(args.result, fmt)
    with open_result(args.result) as r:
        if args.config:
            sys.stdout.write(r.config_toml)
            return 0
        g = r.grid
        t = r.time
        a = r.attrs
        print(f"file:     {args.result}")
        print(f"model:    {a.get('model', '?')}   tmepde {a.get('tmepde_version', '?')}")
        print(f"status:   {r.status}")
        print(f"grid:     {' x '.join(map(str, g.shape))} cells, spacing "
              f"{' x '.join(f'{h:g}' for h in g.spacing)} µm, extent "
              f"{' x '.join(f'{e:g}' for e in g.extent)} µm")
        if len(t):
            print(f"saves:    {len(t)}, t = {t[0]:g} .. {t[-1]:g} h")
        else:
            print("saves:    0")
        if "timing_total_s" in a:  # written by tmepde run (tmepde.runner)
            parts = [("setup", "setup_s"), ("start", "start_s"), ("compile", "compile_s"),
                     ("device", "device_wait_s"), ("writing", "host_write_s")]
            print(f"time:     {float(a['timing_total_s']):.1f} s wall: " + ", ".join(
                f"{label} {float(a['timing_' + k]):.1f} s" for label, k in parts if 'timing_' + k in a))
        obs = r.observables
        print("species:")
        for name in r.species:
            try:
                bcs = r.boundaries(name)
            except KeyError:  # sweep file without stored fields
                print(f"  {name}")
                continue
            kinds = sorted({v if isinstance(v, str) else f"{v[0]}={v[1]:g}" for v in bcs.values()})
            print(f"  {name:<16} units {r.units(name) or '1'!r:<20} boundaries {', '.join(kinds)}")
        if not len(t):
            return 0
        if np.ndim(next(iter(obs.values()), np.zeros(1))) == 2:  # sweep file: (members, saves)
            arms = r.arm_names
            print(f"members:  {r.n_members} in {len(arms)} arm(s): {', '.join(arms)}")
            print("observables at the last save across members (median [min, max]):")
            for k, v in obs.items():
                last = v[:, -1]
                last = last[np.isfinite(last)]
                if last.size:
                    print(f"  {k:<24} {np.median(last):.6g} [{last.min():.6g}, {last.max():.6g}]")
            return 0
        print("observables (first -> last save):")
        for k, v in obs.items():
            print(f"  {k:<24} {v[0]:.6g} -> {v[-1]:.6g}   (min {np.min(v):.6g}, max {np.max(v):.6g})")
    return 0


register("info", "summarise an HDF5 result file", _args, run)
