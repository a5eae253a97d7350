"""Result and sweep files open in xarray (netCDF-4 via h5netcdf) with coordinates and units,
and files of the previous format version still read."""

import h5py
import numpy as np
import pytest

from tmepde import Grid
from tmepde.io import FORMAT_VERSION, ResultWriter, open_result
from tmepde.models.examples import fisher_kpp, gray_scott

xr = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")


def _write(path, grid, model, n=3, seed=0):
    """A result file with known random saves; returns (times, ys)."""
    rng = np.random.default_rng(seed)
    times = 0.5 * np.arange(n)
    ys = rng.random((n, len(model.names), *grid.shape))
    with ResultWriter(path, grid, model, config_toml="x = 1") as w:
        w.append(times[:1], ys[:1])
        w.append(times[1:], ys[1:])
        w.finish()
    return times, ys


@pytest.mark.parametrize("shape, spacing", [((6, 5), (4.0, 5.0)), ((4, 3, 2), (1.0, 2.0, 3.0))])
def test_open_dataset_gives_fields_on_coordinates(tmp_path, shape, spacing):
    grid, model = Grid(shape, spacing), gray_scott()
    path = tmp_path / "r.h5"
    times, ys = _write(path, grid, model)
    axes = "xyz"[:len(shape)]
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["time"].values, times)
        assert ds["time"].attrs["units"] == "h"
        for a, ax in enumerate(axes):  # cell centres (i + 1/2) h in µm
            np.testing.assert_allclose(ds[ax].values, (np.arange(shape[a]) + 0.5) * spacing[a])
            assert ds[ax].attrs["units"] == "µm"
        for i, name in enumerate(model.names):
            v = ds[name]
            assert v.dims == ("time", *reversed(axes))  # CF order, x fastest
            np.testing.assert_array_equal(v.transpose("time", *axes).values, ys[:, i])
            assert "units" in v.attrs and v.attrs["long_name"] == name
        vol = np.prod(spacing)
        for i, name in enumerate(model.names):
            tot = ds[f"total_{name}"]
            assert tot.dims == ("time",) and tot.attrs["long_name"].startswith("sum of")
            np.testing.assert_allclose(tot.values, ys[:, i].sum(axis=tuple(range(1, ys.ndim - 1))) * vol)
    tree = xr.open_datatree(path, engine="h5netcdf")
    np.testing.assert_array_equal(tree["fields"]["u"].transpose("time", *axes).values, ys[:, 0])
    assert tree["fields"]["u"].dims == ("time", *reversed(axes))
    assert tree["observables"]["max_v"].dims == ("time",)
    tree.close()
    # Result.to_xarray: the same variables and order.
    with open_result(path) as r:
        ds = r.to_xarray()
    assert ds["u"].dims == ("time", *reversed(axes))
    np.testing.assert_array_equal(ds["u"].transpose("time", *axes).values, ys[:, 0])
    if len(shape) == 3:  # the value at x index 3, y index 1, z index 0 is at (3.5, 3, 1.5) µm
        assert float(ds["v"].sel(time=1.0, x=3.5, y=3.0, z=1.5)) == ys[2, 1, 3, 1, 0]


def test_previous_format_still_reads_and_newer_is_named(tmp_path):
    """A format-1 file (groups only, variable-length status, no root coordinates)."""
    old = tmp_path / "v1.h5"
    ys = np.arange(2 * 4 * 3, dtype=float).reshape(2, 4, 3)
    with h5py.File(old, "w") as f:
        f.attrs.update({"format": "tmepde-result", "format_version": 1, "status": "complete",
                        "species": np.array(["tumor"], dtype=h5py.string_dtype()),
                        "grid_shape": np.array([4, 3]), "grid_spacing_um": np.array([2.0, 1.0]),
                        "config_toml": "a = 2", "model": "fisher_kpp"})
        f["time"] = np.array([0.0, 1.0])
        f["fields/tumor"] = ys
        f["fields/tumor"].attrs["units"] = "1"
        f["observables/total_tumor"] = ys.sum(axis=(1, 2)) * 2.0
    with open_result(old) as r:
        assert r.status == "complete" and r.format_version == 1 and r.config == {"a": 2}
        ds = r.to_xarray()
    np.testing.assert_array_equal(ds["tumor"].transpose("time", "x", "y").values, ys)
    np.testing.assert_allclose(ds["x"].values, [1.0, 3.0, 5.0, 7.0])
    with h5py.File(old, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ValueError, match=f"format_version {FORMAT_VERSION + 1}; this tmepde reads up to"):
        open_result(old)


def test_sweep_file_opens_as_datatree(tmp_path):
    from tmepde import sweep
    from tmepde.config import loads_config

    cfg = loads_config("""
        [grid]
        shape = [8, 6]
        spacing = 10.0
        [time]
        t_end = 2.0
        dt = 0.5
        save_every = 1.0
        [model]
        path = "tmepde.models.examples:fisher_kpp"
        [initial]
        tumor = { type = "disk", radius = 20.0, value = 0.5 }
        [solver]
        dtype = "float64"
        [sweep]
        save_fields = true
        [sweep.grid]
        D_tumor = [0.05, 0.5, 1.0]
    """)
    out = sweep.run_sweep(cfg, tmp_path / "sw.h5", progress=False)
    with open_result(out) as r:
        assert r.status == "complete"
        burden = r.observable("burden")
        tumor = r.series("tumor", 2)
        ds = r.to_xarray()
    tree = xr.open_datatree(out, engine="h5netcdf")
    b = tree["observables"]["burden"]
    assert b.dims == ("member", "time")
    np.testing.assert_array_equal(b.values, burden)
    f = tree["fields"]["tumor"]
    assert f.dims == ("member", "field_time", "y", "x")
    np.testing.assert_array_equal(f.transpose(..., "x", "y").values[2], tumor)
    np.testing.assert_allclose(tree["x"].values, 5.0 + 10.0 * np.arange(8))
    assert tree["members"]["done"].dims == ("member",) and bool(tree["members"]["done"].all())
    tree.close()
    np.testing.assert_array_equal(ds["param_D_tumor"].values, [0.05, 0.5, 1.0])
    assert ds["tumor"].dims == ("member", "field_time", "y", "x")
    # An existing sweep file is refused (before anything compiles) unless overwrite.
    from tmepde.io import OutputExistsError

    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        sweep.run_sweep(cfg, out, progress=False)
    # Re-summarising reads the stored config as data: a model path that cannot be imported
    # (or would run code) is never imported.
    with h5py.File(out, "r+") as f:
        rows = [dict(zip(f["summary/arms"].keys(), v)) for v in zip(*(d[:] for d in f["summary/arms"].values()))]
        f.attrs["config_toml"] = str(f.attrs["config_toml"]).replace(
            "tmepde.models.examples:fisher_kpp", "no_such_module_would_run:model")
        assert "no_such_module_would_run" in str(f.attrs["config_toml"])
    again = sweep.summarize(out)
    assert [r["n"] for r in again] == [int(r["n"]) for r in rows] == [3]
