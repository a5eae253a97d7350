"""Result files written by earlier tmepde versions still open, with the same numbers.

tests/fixtures/ holds small files written by scripts/make_fixtures.py (8 x 8 cells, two
saves, Gray–Scott). The values below were read from them when they were written; a reader
change that loses or reorders data fails here. Besides the stored numbers, each file is
checked against relations that hold independently of the solver: the initial state is the
config's (u = 1 everywhere, so total_u = 64 cells x 25 µm² = 1600) and each total is the sum
of its field times the cell volume.
"""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tmepde.config import loads_config
from tmepde.io import Result, SweepResult, open_result

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run_v2.h5"
SWEEP = FIXTURES / "sweep_v2.h5"
CELL = 25.0  # µm², 5 µm x 5 µm

RUN_OBSERVABLES = {
    "max_u": [1.0, 0.9850919842720032],
    "max_v": [0.4534803032875061, 0.12682393193244934],
    "min_u": [1.0, 0.9850412607192993],
    "min_v": [0.00417640944942832, 0.12541432678699493],
    "total_u": [1600.0, 1576.120376586914],
    "total_v": [196.64418282918632, 201.6413688659668],
}
SWEEP_OBSERVABLES = {  # members: arm low_feed (feed 0.037 /h), arm high_feed (feed 0.05 /h)
    "max_u": [[1.0, 0.9850919842720032], [1.0, 0.9853934049606323]],
    "max_v": [[0.4534803032875061, 0.12682393193244934], [0.4534803032875061, 0.125078484416008]],
    "min_u": [[1.0, 0.9850412607192993], [1.0, 0.9853442311286926]],
    "min_v": [[0.00417640944942832, 0.12541432678699493], [0.00417640944942832, 0.12368905544281006]],
    "total_u": [[1600.0, 1576.120361328125], [1600.0, 1576.603759765625]],
    "total_v": [[196.64419555664062, 201.64137268066406], [196.64419555664062, 198.8667755126953]],
}


def test_fixtures_are_small():
    for p in (RUN, SWEEP):
        assert p.stat().st_size < 128 * 1024, p


def test_run_fixture_reads_with_tmepde():
    with open_result(RUN) as r:
        assert isinstance(r, Result) and not isinstance(r, SweepResult)
        assert (r.attrs["format"], r.format_version, r.status) == ("tmepde-result", 2, "complete")
        assert r.species == ["u", "v"] and r.grid.shape == (8, 8) and r.grid.spacing == (5.0, 5.0)
        np.testing.assert_array_equal(r.time, [0.0, 1.0])
        assert set(r.observables) == set(RUN_OBSERVABLES)
        for k, v in RUN_OBSERVABLES.items():
            np.testing.assert_array_equal(r.observable(k), v)
        u0, u1 = r.field("u", 0), r.field("u", 1)
        assert u0.shape == (8, 8) and np.all(u0 == 1.0)  # [initial.u] uniform 1
        np.testing.assert_array_equal(u1[0, :3], [0.9850412607192993, 0.9850539565086365, 0.9850714802742004])
        for name in ("u", "v"):  # total = Σ field × cell volume (µm²), summed in float64
            for i in range(2):
                assert r.observable(f"total_{name}")[i] == pytest.approx(
                    CELL * r.field(name, i).astype(np.float64).sum(), rel=1e-12)
        assert r.boundaries("u") == {f"{a}_{s}": "neumann" for a in "xy" for s in ("lo", "hi")}
        cfg = loads_config(r.config_toml)  # the stored config rebuilds the run
    assert cfg.grid.shape == (8, 8) and list(cfg.model.names) == ["u", "v"]
    assert cfg.n_saves == 1


def test_run_fixture_reads_with_xarray():
    with xr.open_dataset(RUN, engine="h5netcdf") as ds:
        assert ds["u"].dims == ("time", "y", "x")
        np.testing.assert_array_equal(ds["time"], [0.0, 1.0])
        np.testing.assert_array_equal(ds["x"], 2.5 + 5.0 * np.arange(8))  # cell centres, µm
        for k, v in RUN_OBSERVABLES.items():
            np.testing.assert_array_equal(ds[k], v)
        np.testing.assert_array_equal(ds["u"].isel(time=1, y=0, x=slice(0, 3)),
                                      np.float32([0.9850412607192993, 0.9850539565086365, 0.9850714802742004]))
    with open_result(RUN) as r:
        ds = r.to_xarray()
        np.testing.assert_array_equal(ds["total_v"], RUN_OBSERVABLES["total_v"])


def test_sweep_fixture_reads_with_tmepde():
    with open_result(SWEEP) as r:
        assert isinstance(r, SweepResult)
        assert (r.attrs["format"], r.format_version, r.status) == ("tmepde-sweep", 2, "complete")
        assert r.n_members == 2 and r.arm_names == ["low_feed", "high_feed"]
        # stored as the member's float32 parameter (the sweep's dtype), widened to float64
        np.testing.assert_array_equal(r.params["feed"], [float(np.float32(0.037)), 0.05])
        np.testing.assert_array_equal(r.time, [0.0, 1.0])
        for k, v in SWEEP_OBSERVABLES.items():
            np.testing.assert_array_equal(r.observable(k), v)
        assert r.has_fields and r.field("u", 1, 0).shape == (8, 8) and np.all(r.field("u", 1, 0) == 1.0)
        for m in range(2):  # totals summed in the run's float32 on the device
            total = CELL * r.field("v", m, -1).astype(np.float64).sum()
            assert r.observable("total_v")[m, -1] == pytest.approx(total, rel=1e-6)
        low = r.series("v", 0)
    with open_result(RUN) as run:  # the low_feed arm is the run fixture's config
        np.testing.assert_allclose(low, run.series("v"), rtol=1e-6)


def test_sweep_fixture_reads_with_xarray():
    with open_result(SWEEP) as r:
        ds = r.to_xarray()
    assert list(ds["arm"].values) == ["low_feed", "high_feed"]
    np.testing.assert_array_equal(ds["param_feed"], [float(np.float32(0.037)), 0.05])
    for k, v in SWEEP_OBSERVABLES.items():
        np.testing.assert_array_equal(ds[k], v)
    assert ds["u"].dims == ("member", "field_time", "y", "x")


OPTIMIZE = FIXTURES / "optimize_v1.h5"  # scripts/make_fixtures.py optimize: toy PK tumor, 2 batched starts


def test_optimize_fixture_reads_with_tmepde(capsys):
    import h5py

    from tmepde.cli import main
    from tmepde.summaries import OPTIMIZE_FORMAT, file_format

    assert OPTIMIZE.stat().st_size < 128 * 1024 and file_format(OPTIMIZE) == OPTIMIZE_FORMAT
    with h5py.File(OPTIMIZE, "r") as f:
        assert f.attrs["objective_name"] == "final" and list(f.attrs["caps"]) == [1.5]
        np.testing.assert_array_equal(f["time"][:], [0.0, 24.0, 48.0, 72.0, 96.0])
        assert f["burden/no treatment"].attrs["objective"] == 1.0  # relative to itself
        assert f["burden/gradient"].attrs["objective"] == 0.3058231366851784
        amounts = f["schedules/gradient/sys_ifng_amounts"][:]
        np.testing.assert_array_equal(amounts, [1.074274364601821, 0.7795723986655112, 1.1464460363501352])
        assert amounts.sum() <= 3.0 * (1 + 1e-3)  # the budget, within the run's tolerance
        assert np.diff(f["schedules/gradient/sys_ifng_times"][:]).min() >= 12.0 - 1e-9  # min_interval
    assert main(["info", str(OPTIMIZE)]) == 0
    assert "tmepde-optimize" in capsys.readouterr().out


# -- fit file (tmepde fit -o PREFIX writes PREFIX_fit.h5; python scripts/make_fixtures.py fit) ------
FIT = FIXTURES / "fit_v1.h5"
FIT_NLL = 259.5256982551241  # printed by scripts/make_fixtures.py fit when it was written


def test_fit_fixture_reads_with_tmepde(capsys, tmp_path):
    import h5py

    from tmepde import summaries
    from tmepde.apps.ct26.data import load_data
    from tmepde.cli import main

    assert FIT.stat().st_size < 128 * 1024
    assert summaries.file_format(FIT) == summaries.FIT_FORMAT
    assert main(["info", str(FIT)]) == 0
    assert "tmepde-fit" in capsys.readouterr().out
    arms = load_data()   # the measured volumes stored in the file are the packaged csv's
    with h5py.File(FIT, "r") as f:
        assert float(f.attrs["neg_log_likelihood"]) == FIT_NLL
        for arm in ("PBS", "rVSV-mIL12-mGMCSF"):
            np.testing.assert_array_equal(f[f"data/{arm}/volumes"][:], arms[arm].volumes)
        names = [n.decode() if isinstance(n, bytes) else n for n in f["uncertainty/names"][:]]
        est = dict(zip(names, f["uncertainty/estimate"][:]))
        lo, hi = f["uncertainty/wald95"][:].T
        ok = np.isfinite(lo)
        assert np.all((lo[ok] <= f["uncertainty/estimate"][:][ok]) & (f["uncertainty/estimate"][:][ok] <= hi[ok]))
        assert not ok[names.index("omega_growth_tumor")]   # held fixed (fit.omega_fixed): no interval
        assert f["posterior/samples"].shape[-1] == len(f["posterior/names"])
    assert 0.0 < est["il12_response"] < 1.0
    fig = summaries.fit_figure(FIT)
    assert len(fig.axes) == 2
