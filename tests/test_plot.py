"""Figures and ParaView/xarray exports read back what the result file holds."""

import xml.etree.ElementTree as ET

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest

import tmepde as tp
from tmepde import plot
from tmepde.io import ResultWriter, open_result
from tmepde.models.examples import gray_scott
from tmepde.xdmf import attach_dimension_scales, write_xdmf


@pytest.fixture(params=[(24, 20), (8, 10, 6)], ids=["2d", "3d"])
def result_path(request, tmp_path):
    grid = tp.Grid(request.param, 10.0)
    model = gray_scott()
    rng = np.random.default_rng(0)
    y0 = model.stack({"u": 1 - 0.5 * rng.random(grid.shape), "v": 0.3 * rng.random(grid.shape)}, grid)
    sim = tp.Simulator(model, grid, dt=0.5, save_every=1.0)
    ys = np.asarray(sim.run(model.default_params(), y0, 3))
    path = tmp_path / "run.h5"
    with ResultWriter(path, grid, model) as w:
        w.append(np.arange(4.0), ys)
        w.close("complete")
    return path


def test_snapshot_colour_range_is_shared_over_times_and_holds_the_file_values(result_path):
    with open_result(result_path) as r:
        fig = plot.field_snapshots(r, ["v"], times=[1.0, 3.0])
        images = [im for ax in fig.axes for im in ax.get_images()]
        assert len(images) == 2
        series = np.stack([r.field("v", 1), r.field("v", 3)])
        for im in images:  # one range for both times: from 0 (v >= 0) to the larger maximum
            assert im.get_clim() == pytest.approx((0.0, series.max()), rel=1e-12)
        # The picture holds the same numbers as the file (2D: transposed for imshow).
        shown = np.asarray(images[1].get_array())
        field = series[1]
        expected = field.T if field.ndim == 2 else field[:, :, field.shape[2] // 2].T
        np.testing.assert_allclose(shown, expected, rtol=1e-12)
        plt.close(fig)
        if r.grid.ndim == 3:  # max projection
            fig = plot.projections(r, ["v"], time=3.0)
            np.testing.assert_allclose(np.asarray(fig.axes[0].get_images()[0].get_array()),
                                       r.field("v", 3).max(axis=2).T)
            plt.close(fig)


def test_save_all_and_animation_write_nonempty_images(result_path, tmp_path):
    with open_result(result_path) as r:
        paths = plot.save_all(r, tmp_path / "figs", fields=["u", "v"])
        gif = plot.animate(r, "v", tmp_path / "v.gif")
        ndim = r.grid.ndim
    assert len(paths) == (5 if ndim == 3 else 4)  # fields, [projections], observables, 2 profiles
    for p in paths + [gif]:
        assert p.stat().st_size > 5000, p
    img = plt.imread(paths[0])
    assert img.std() > 0.05  # not a blank canvas


def test_observable_series_match_file(result_path):
    with open_result(result_path) as r:
        fig = plot.observables(r, ["total_v"])
        line = fig.axes[0].get_lines()[0]
        np.testing.assert_allclose(line.get_ydata(), r.observables["total_v"])
        np.testing.assert_allclose(line.get_xdata(), r.time)
        plt.close(fig)


def test_xdmf_parses_and_references_existing_datasets(result_path):
    xmf = write_xdmf(result_path)
    root = ET.parse(xmf).getroot()
    grids = root.findall(".//Grid[@GridType='Uniform']")
    with h5py.File(result_path, "r") as f:
        assert len(grids) == f["time"].shape[0]
        shape = tuple(int(n) for n in f.attrs["grid_shape"])
        for g in grids:
            for attr in g.findall("Attribute"):
                slab = attr.find("DataItem")
                ref = slab.findall("DataItem")[1]
                fname, dset = ref.text.split(":")
                assert fname == result_path.name
                assert tuple(int(n) for n in ref.get("Dimensions").split()) == f[dset].shape
                slab_dims = tuple(int(n) for n in slab.get("Dimensions").split())  # z, y, x
                assert slab_dims[::-1][:len(shape)] == shape and np.prod(slab_dims) == np.prod(shape)
        times = [float(g.find("Time").get("Value")) for g in grids]
        np.testing.assert_allclose(times, f["time"][:])


def test_dimension_scales_give_coordinates(result_path):
    attach_dimension_scales(result_path)
    attach_dimension_scales(result_path)  # idempotent
    with h5py.File(result_path, "r") as f:
        ds = f["fields/u"]
        a = [d.label for d in ds.dims].index("x")  # the last axis: stored (time, [z,] y, x)
        x = ds.dims[a][0][:]
        np.testing.assert_allclose(x, (np.arange(ds.shape[a]) + 0.5) * 10.0)
        np.testing.assert_allclose(ds.dims[0][0][:], f["time"][:])
        assert a == ds.ndim - 1


def test_cli_run_writes_xdmf_and_plot_animate_commands(tmp_path):
    from tmepde.cli import main

    cfg = tmp_path / "gs.toml"
    cfg.write_text("""
[grid]
shape = [16, 12]
spacing = 10.0
[time]
t_end = 2.0
dt = 0.5
save_every = 1.0
[model]
path = "tmepde.models.examples:gray_scott"
[initial.u]
type = "uniform"
value = 1.0
[initial.v]
type = "gaussian"
center = [80.0, 60.0]
width = 30.0
amplitude = 0.5
""")
    out = tmp_path / "gs.h5"
    assert main(["run", str(cfg), "-o", str(out), "--no-progress"]) == 0
    assert out.with_suffix(".xmf").exists()
    with h5py.File(out, "r") as f:
        assert f["fields/u"].dims[1][0].shape == (12,)  # stored (time, y, x)
    assert main(["plot", str(out), "--fields", "v", "-o", str(tmp_path / "figs")]) == 0
    pngs = sorted((tmp_path / "figs").glob("*.png"))
    assert len(pngs) == 3 and all(p.stat().st_size > 5000 for p in pngs)
    assert main(["animate", str(out), "v", "-o", str(tmp_path / "v.gif")]) == 0
    assert (tmp_path / "v.gif").stat().st_size > 5000
    assert main(["plot", str(out), "--fields", "nope"]) == 2
