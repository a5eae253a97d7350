"""ParaView/VisIt and xarray access to result files.

* :func:`write_xdmf` writes an XDMF 3 sidecar (``result.xmf``) next to ``result.h5``: a
  temporal collection of co-rectilinear grids whose cell-centred attributes are hyperslabs
  of ``/fields/<species>``, so ParaView opens the fields, with their time series, directly,
  tmepde x, y, z on ParaView X, Y, Z.
* :func:`attach_dimension_scales` adds HDF5 dimension scales ``/coords/x`` (µm, cell
  centres), ``y``, ``z`` and ``/time`` to the fields of a format-1 file (format 2 is written
  with root scales, :func:`tmepde.io.coordinate_scales`).
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import h5py
import numpy as np

from .grid import AXIS_NAMES


def attach_dimension_scales(path: str | Path) -> None:
    """Idempotently attach coordinate scales (x, y, z in µm; time in h) to all fields."""
    with h5py.File(path, "r+") as f:
        if "x" in f and f["x"].is_scale:  # format 2: root scales attached when written
            return
        shape = tuple(int(n) for n in f.attrs["grid_shape"])
        spacing = tuple(float(h) for h in f.attrs["grid_spacing_um"])
        coords = f.require_group("coords")
        scales = []
        for a, (n, h) in enumerate(zip(shape, spacing)):
            name = AXIS_NAMES[a]
            if name not in coords:
                ds = coords.create_dataset(name, data=(np.arange(n) + 0.5) * h)
                ds.attrs["units"] = "µm"
                ds.make_scale(name)
            scales.append(coords[name])
        time = f["time"]
        if not time.is_scale:
            time.make_scale("time")
        for ds in f["fields"].values():
            if not any(True for _ in ds.dims[0].keys()):
                ds.dims[0].attach_scale(time)
                ds.dims[0].label = "time"
            for a, scale in enumerate(scales):
                if not any(True for _ in ds.dims[a + 1].keys()):
                    ds.dims[a + 1].attach_scale(scale)
                    ds.dims[a + 1].label = AXIS_NAMES[a]


def write_xdmf(path: str | Path) -> Path:
    """Write ``<path>.xmf`` describing every field of a result file; returns its path.

    XDMF (like VTK) indexes structured data with x varying fastest: the topology's
    ``Dimensions`` and the ``ORIGIN_DXDYDZ`` values are listed z, y, x. Format-2 files store
    fields (time, [z,] y, x), so tmepde x, y, z land on ParaView's X, Y, Z; a 2D result is
    one layer of cells in the XY plane around Z = 0; a 1D result one row of cells along X. Every DataItem
    carries Format, NumberType and Precision (XDMF 3 readers skip items without them).
    Format-1 files (stored x, y, z) are described as stored: their axes appear reversed.
    """
    path = Path(path)
    with h5py.File(path, "r") as f:
        shape = tuple(int(n) for n in f.attrs["grid_shape"])
        spacing = tuple(float(h) for h in f.attrs["grid_spacing_um"])
        version = int(f.attrs.get("format_version", 1))
        times = f["time"][:]
        fields = {name: (ds.dtype, ds.shape) for name, ds in f["fields"].items()}
    ndim = len(shape)
    if version >= 2:  # stored (z, y, x) = XDMF's slowest-to-fastest order
        disk_shape, disk_spacing = tuple(reversed(shape)), tuple(reversed(spacing))
    else:
        disk_shape, disk_spacing = shape, spacing
    # Always a 3DCoRectMesh (VTK's readers put a 2DCoRectMesh in the YZ plane, and read no
    # cell data on a layer of nodes): a 2D grid is one layer of cells centred on Z = 0
    # (thickness: the smaller spacing), a 1D grid one row of cells along X, likewise in Y, Z.
    h = min(disk_spacing)
    if ndim == 3:
        cells_zyx, mesh_spacing, origin_zyx = disk_shape, disk_spacing, (0.0, 0.0, 0.0)
    elif ndim == 2:
        cells_zyx, mesh_spacing, origin_zyx = (1, *disk_shape), (h, *disk_spacing), (-h / 2, 0.0, 0.0)
    else:
        cells_zyx, mesh_spacing, origin_zyx = (1, 1, *disk_shape), (h, h, h), (-h / 2, -h / 2, 0.0)
    d = 3
    topo, geo = "3DCoRectMesh", "ORIGIN_DXDYDZ"
    nodes = " ".join(str(n + 1) for n in cells_zyx)
    cells = " ".join(str(n) for n in cells_zyx)
    origin = " ".join(repr(o) for o in origin_zyx)
    step = " ".join(repr(h) for h in mesh_spacing)
    h5name = path.name

    def xml_item(dims: str, text: str, number: str = "Float", precision: int = 8) -> str:
        return (f'<DataItem Format="XML" NumberType="{number}" Precision="{precision}" '
                f'Dimensions="{dims}">{text}</DataItem>')

    lines = ['<?xml version="1.0" ?>', '<Xdmf Version="3.0">', "<Domain>",
             '<Grid Name="tmepde" GridType="Collection" CollectionType="Temporal">']
    for i, t in enumerate(times):
        lines.append(f'<Grid Name="t{i}" GridType="Uniform">')
        lines.append(f'<Time Value="{float(t)!r}"/>')
        lines.append(f'<Topology TopologyType="{topo}" Dimensions="{nodes}"/>')
        lines.append(f'<Geometry GeometryType="{geo}">')
        lines.append(xml_item(str(d), origin))
        lines.append(xml_item(str(d), step))
        lines.append("</Geometry>")
        for name, (dtype, full_shape) in fields.items():
            number = "Float" if dtype.kind == "f" else ("UInt" if dtype.kind == "u" else "Int")
            lines.append(f'<Attribute Name={quoteattr(name)} AttributeType="Scalar" Center="Cell">')
            lines.append(f'<DataItem ItemType="HyperSlab" Dimensions="{cells}" Type="HyperSlab" '
                         f'NumberType="{number}" Precision="{dtype.itemsize}" Format="HDF">')
            lines.append(xml_item(f"3 {ndim + 1}",
                                  f'{i} {" ".join(["0"] * ndim)} {" ".join(["1"] * (ndim + 1))} '
                                  f'1 {" ".join(str(n) for n in full_shape[1:])}', "Int", 4))
            lines.append(f'<DataItem Format="HDF" NumberType="{number}" Precision="{dtype.itemsize}" '
                         f'Dimensions="{" ".join(str(n) for n in full_shape)}">{h5name}:/fields/{name}</DataItem>')
            lines.append("</DataItem>")
            lines.append("</Attribute>")
        lines.append("</Grid>")
    lines += ["</Grid>", "</Domain>", "</Xdmf>"]
    out = path.with_suffix(".xmf")
    out.write_text("\n".join(lines) + "\n")
    return out
