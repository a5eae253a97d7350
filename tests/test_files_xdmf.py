"""XDMF sidecars: every DataItem typed (XDMF 3), tmepde x, y, z on the reader's X, Y, Z."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tmepde import Grid
from tmepde.io import ResultWriter
from tmepde.models.examples import gray_scott
from tmepde.xdmf import write_xdmf

CASES = [((4, 3, 2), (1.0, 2.0, 3.0)), ((5, 3), (1.0, 2.0)), ((6,), (1.5,))]


def _result(tmp_path, shape, spacing):
    ys = np.random.default_rng(len(shape)).random((2, 2, *shape))
    path = tmp_path / f"r{len(shape)}.h5"
    with ResultWriter(path, Grid(shape, spacing), gray_scott()) as w:
        w.append([0.0, 1.0], ys)
        w.finish()
    return path, ys


@pytest.mark.parametrize("shape, spacing", CASES)
def test_xdmf_items_are_typed_and_listed_z_y_x(tmp_path, shape, spacing):
    path, _ = _result(tmp_path, shape, spacing)
    root = ET.parse(write_xdmf(path)).getroot()
    items = root.findall(".//DataItem")
    assert items and all({"Format", "NumberType", "Precision"} <= set(i.attrib) for i in items)
    grid = root.find(".//Grid[@GridType='Uniform']")
    nodes = [int(n) for n in grid.find("Topology").get("Dimensions").split()]
    origin, step = ([float(v) for v in i.text.split()] for i in grid.find("Geometry"))
    cells = [n - 1 for n in nodes]
    # XDMF lists z, y, x: the last entries are tmepde x (and y), whatever the dimension.
    assert cells[::-1][:len(shape)] == list(shape)
    assert step[::-1][:len(shape)] == list(spacing)
    assert origin[::-1][:len(shape)] == [0.0] * len(shape)


@pytest.mark.parametrize("shape, spacing", CASES)
def test_vtk_xdmf_reader_puts_x_on_x(tmp_path, shape, spacing):
    """ParaView's XDMF reader (VTK, from the ``vtk`` wheel): bounds and cell values."""
    xdmf = pytest.importorskip("vtkmodules.vtkIOXdmf2")
    from vtkmodules.util.numpy_support import vtk_to_numpy

    path, ys = _result(tmp_path, shape, spacing)
    reader = xdmf.vtkXdmfReader()
    reader.SetFileName(str(write_xdmf(path)))
    reader.UpdateInformation()
    reader.UpdateTimeStep(1.0)
    out = reader.GetOutputDataObject(0)
    bounds = np.reshape(out.GetBounds(), (3, 2))
    for a in range(len(shape)):  # tmepde axis a spans [0, n h] on the reader's axis a
        np.testing.assert_allclose(bounds[a], [0.0, shape[a] * spacing[a]])
    for a in range(len(shape), 3):  # the missing axes: one cell around 0
        assert bounds[a][0] < 0 < bounds[a][1]
    dims = [n - 1 for n in out.GetDimensions()]
    for i, name in enumerate(("u", "v")):
        got = vtk_to_numpy(out.GetCellData().GetArray(name))
        got = got.reshape(dims[::-1]).transpose(2, 1, 0).reshape(shape)  # VTK: i + nx (j + ny k)
        np.testing.assert_array_equal(got, ys[1, i])
