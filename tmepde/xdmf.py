"""ParaView/VisIt and xarray access to result files.

* :func:`write_xdmf` writes an XDMF 3 sidecar (``result.xmf``) next to ``result.h5``: a
  temporal collection of co-rectilinear grids whose cell-centred attributes are hyperslabs
  of ``/fields/<species>``, so ParaView opens the fields, with their time series, directly.
  Axis order follows the arrays: the first grid axis (x) is XDMF's slowest dimension.
* :func:`attach_dimension_scales` adds HDF5 dimension scales ``/coords/x`` (µm, cell
  centres), ``y``, ``z`` and ``/time`` to every field dataset, so generic HDF5 readers and
  xarray (``h5netcdf``) see coordinates.
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
    """Write ``<path>.xmf`` describing every field of a result file; returns its path."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        shape = tuple(int(n) for n in f.attrs["grid_shape"])
        spacing = tuple(float(h) for h in f.attrs["grid_spacing_um"])
        times = f["time"][:]
        fields = {name: (ds.dtype, str(ds.attrs.get("units", ""))) for name, ds in f["fields"].items()}
    ndim = len(shape)
    # XDMF has no 1D co-rectilinear mesh: a 1D grid becomes one row of 2D cells.
    mesh_shape = shape if ndim > 1 else (shape[0], 1)
    mesh_spacing = spacing if ndim > 1 else (spacing[0], spacing[0])
    topo = "3DCoRectMesh" if len(mesh_shape) == 3 else "2DCoRectMesh"
    geo = "ORIGIN_DXDYDZ" if len(mesh_shape) == 3 else "ORIGIN_DXDY"
    nodes = " ".join(str(n + 1) for n in mesh_shape)
    cells = " ".join(str(n) for n in mesh_shape)
    d = len(mesh_shape)
    origin = " ".join(["0"] * d)
    step = " ".join(repr(h) for h in mesh_spacing)
    h5name = path.name
    lines = ['<?xml version="1.0" ?>', '<Xdmf Version="3.0">', "<Domain>",
             '<Grid Name="tmepde" GridType="Collection" CollectionType="Temporal">']
    for i, t in enumerate(times):
        lines.append(f'<Grid Name="t{i}" GridType="Uniform">')
        lines.append(f'<Time Value="{float(t)!r}"/>')
        lines.append(f'<Topology TopologyType="{topo}" Dimensions="{nodes}"/>')
        lines.append(f'<Geometry GeometryType="{geo}">')
        lines.append(f'<DataItem Format="XML" Dimensions="{d}">{origin}</DataItem>')
        lines.append(f'<DataItem Format="XML" Dimensions="{d}">{step}</DataItem>')
        lines.append("</Geometry>")
        full = " ".join(str(n) for n in (len(times),) + shape)
        for name, (dtype, units) in fields.items():
            precision = dtype.itemsize
            lines.append(f'<Attribute Name={quoteattr(name)} AttributeType="Scalar" Center="Cell">')
            lines.append(f'<DataItem ItemType="HyperSlab" Dimensions="{cells}" Type="HyperSlab">')
            lines.append(f'<DataItem Dimensions="3 {ndim + 1}" Format="XML">'
                         f'{i} {" ".join(["0"] * ndim)} {" ".join(["1"] * (ndim + 1))} '
                         f'1 {" ".join(str(n) for n in shape)}</DataItem>')
            lines.append(f'<DataItem Format="HDF" NumberType="Float" Precision="{precision}" '
                         f'Dimensions="{full}">{h5name}:/fields/{name}</DataItem>')
            lines.append("</DataItem>")
            lines.append("</Attribute>")
        lines.append("</Grid>")
    lines += ["</Grid>", "</Domain>", "</Xdmf>"]
    out = path.with_suffix(".xmf")
    out.write_text("\n".join(lines) + "\n")
    return out
