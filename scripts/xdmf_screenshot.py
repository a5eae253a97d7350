"""Render a result's XDMF sidecar the way ParaView does, off screen, to a PNG.

ParaView's legacy "XDMF Reader" is VTK's ``vtkXdmfReader`` and its views are VTK renderers;
this script uses both from the ``vtk`` wheel (no display needed: EGL or OSMesa), so the
picture shows what a ParaView user sees on opening the ``.xmf``: tmepde x on X, y on Y, a 2D
section in the XY plane seen from +Z, cell data coloured with a scalar bar, axes in µm.

    python scripts/xdmf_screenshot.py RESULT.h5 --field tumor --out docs/xdmf_paraview.png
    python scripts/xdmf_screenshot.py --make default.h5   # runs a small default scenario first
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def make_result(path: Path) -> None:
    """A small default scenario (64² × 80 µm, 2 days) to look at."""
    cmd = [sys.executable, "-m", "tmepde.cli", "run", "configs/default.toml", "-o", str(path),
           "--overwrite", "--no-progress", "--set", "grid.shape=[64,64]", "--set", "grid.spacing=80.0",
           "--set", "time.t_end=48.0", "--set", "time.save_every=24.0"]
    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1])


def render(xmf: Path, field: str, out: Path, size=(900, 760)) -> dict:
    from vtkmodules.vtkIOXdmf2 import vtkXdmfReader
    from vtkmodules.vtkRenderingAnnotation import vtkCubeAxesActor, vtkScalarBarActor
    from vtkmodules.vtkRenderingCore import (vtkActor, vtkDataSetMapper, vtkRenderer,
                                             vtkRenderWindow, vtkWindowToImageFilter)
    from vtkmodules.vtkIOImage import vtkPNGWriter
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the render window)

    reader = vtkXdmfReader()
    reader.SetFileName(str(xmf))
    reader.UpdateInformation()
    times = reader.GetOutputInformation(0).Get(
        __import__("vtkmodules.vtkCommonExecutionModel", fromlist=["x"])
        .vtkStreamingDemandDrivenPipeline.TIME_STEPS())
    t_last = times[-1] if times else 0.0
    reader.UpdateTimeStep(t_last)
    data = reader.GetOutputDataObject(0)
    arr = data.GetCellData().GetArray(field)
    if arr is None:
        names = [data.GetCellData().GetArrayName(i) for i in range(data.GetCellData().GetNumberOfArrays())]
        raise SystemExit(f"{xmf}: no cell array {field!r}; it has {', '.join(names)}")
    lo, hi = arr.GetRange()
    mapper = vtkDataSetMapper()
    mapper.SetInputData(data)
    mapper.SetScalarModeToUseCellFieldData()
    mapper.SelectColorArray(field)
    mapper.SetScalarRange(min(lo, 0.0), hi)
    lut = mapper.GetLookupTable()
    lut.SetHueRange(0.667, 0.0)
    actor = vtkActor()
    actor.SetMapper(mapper)

    renderer = vtkRenderer()
    renderer.SetBackground(1.0, 1.0, 1.0)
    renderer.AddActor(actor)
    bar = vtkScalarBarActor()
    bar.SetLookupTable(lut)
    bar.SetTitle(field)
    bar.SetNumberOfLabels(5)
    for prop in (bar.GetTitleTextProperty(), bar.GetLabelTextProperty()):
        prop.SetColor(0, 0, 0)
    renderer.AddViewProp(bar)
    axes = vtkCubeAxesActor()
    axes.SetBounds(data.GetBounds())
    axes.SetCamera(renderer.GetActiveCamera())
    axes.SetXTitle("X")
    axes.SetYTitle("Y")
    axes.SetXUnits("um")  # VTK's label fonts have no µ
    axes.SetYUnits("um")
    axes.SetLabelScaling(False, 0, 0, 0)
    axes.SetXLabelFormat("%.0f")
    axes.SetYLabelFormat("%.0f")
    axes.ZAxisVisibilityOff()
    for i in range(3):
        axes.GetTitleTextProperty(i).SetColor(0, 0, 0)
        axes.GetLabelTextProperty(i).SetColor(0, 0, 0)
    for getter in (axes.GetXAxesLinesProperty, axes.GetYAxesLinesProperty):
        getter().SetColor(0, 0, 0)
    renderer.AddActor(axes)

    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.AddRenderer(renderer)
    window.SetSize(*size)
    camera = renderer.GetActiveCamera()  # ParaView's default: looking down -Z, Y up
    camera.SetPosition(0, 0, 1)
    camera.SetFocalPoint(0, 0, 0)
    camera.SetViewUp(0, 1, 0)
    renderer.ResetCamera()
    camera.Zoom(0.85)
    window.Render()
    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.Update()
    writer = vtkPNGWriter()
    writer.SetFileName(str(out))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    return {"bounds": data.GetBounds(), "time_h": t_last, "range": (lo, hi)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("result", nargs="?", help="tmepde result .h5 (its .xmf beside it)")
    ap.add_argument("--make", metavar="H5", help="first run a small default scenario into H5")
    ap.add_argument("--field", default="vessel", help="cell array to colour by (default: vessel, whose random clusters show the orientation)")
    ap.add_argument("--out", default="docs/xdmf_paraview.png")
    args = ap.parse_args(argv)
    result = Path(args.make or args.result or "")
    if args.make:
        make_result(result)
    if not result.name:
        ap.error("give a RESULT.h5 or --make H5")
    xmf = result.with_suffix(".xmf")
    if not xmf.exists():
        from tmepde.xdmf import write_xdmf

        xmf = Path(write_xdmf(result))
    info = render(xmf, args.field, Path(args.out))
    print(f"wrote {args.out}: {args.field} at t = {info['time_h']:g} h, bounds {info['bounds']}, "
          f"range {info['range']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
