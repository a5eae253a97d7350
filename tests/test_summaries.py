"""Fit result files: what `tmepde plot` draws equals what the file holds."""

import types

import numpy as np

from tmepde import summaries


def test_fit_file_roundtrip_and_figure_shows_the_data(tmp_path):
    days = np.array([11.0, 14.0, 17.0, 20.0])
    vols = np.array([[20.0, 30.0, np.nan, 60.0], [15.0, 10.0, 5.0, 0.0]])
    arm = types.SimpleNamespace(mice=np.array([1, 2]), days=days, volumes=vols)
    curve_days = 11 + np.arange(10)
    cohort = types.SimpleNamespace(arm="IL12", mice=np.array([1, 2]), names=["kill_cd8"],
                                   values={"kill_cd8": np.array([1.0, 3.0])},
                                   std_error={"kill_cd8": np.array([0.1, 0.2])},
                                   curves=np.vstack([np.linspace(20, 80, 10), np.linspace(15, 0, 10)]),
                                   phenotype=["escaping", "regressing"],
                                   data_phenotype=["escaping", "regressing"])
    stage = types.SimpleNamespace(names=["growth_tumor"], values={"growth_tumor": 0.05},
                                  std_error={"growth_tumor": 0.01}, identifiable={"growth_tumor": True})
    path = summaries.write_fit(tmp_path / "f.h5", arms={"PBS": arm, "IL12": arm},
                               curves={"PBS": np.linspace(20, 200, 10)}, curve_days=curve_days,
                               cohort=cohort, stages={"1": stage}, config_toml="x = 1",
                               floor_mm3=10.0, injection_days=(11, 14, 17))
    assert summaries.file_format(path) == summaries.FIT_FORMAT
    fig = summaries.fit_figure(path)
    ax_pbs = fig.axes[0]
    points = [l for l in ax_pbs.lines if l.get_marker() == "o"]
    np.testing.assert_allclose(points[0].get_ydata(), vols[0] + 10.0)  # data + floor
    fit_line = [l for l in ax_pbs.lines if l.get_linewidth() > 2][0]
    np.testing.assert_allclose(fit_line.get_ydata(), np.linspace(20, 200, 10) + 10.0)
    thin = [l for l in fig.axes[1].lines if l.get_marker() != "o" and l.get_linewidth() < 1.5
            and len(l.get_xdata()) == 10]
    np.testing.assert_allclose(thin[1].get_ydata(), cohort.curves[1] + 10.0)
