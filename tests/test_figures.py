"""Figure properties a reader relies on: zero drawn as zero, small ripples not stretched to
the full colour map, one colour range per field over time, grouped fields at a readable
size, units on every observable axis, doses labelled per agent, sweep plots never blank,
waterfalls coloured by arm."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

import tmepde as tp
from tmepde import plot
from tmepde.io import ResultWriter, open_result


def _write(path, grid, model, ys, attrs=None):
    with ResultWriter(path, grid, model) as w:
        w.append(np.arange(float(len(ys))), ys)
        if attrs:
            w.set_attrs(attrs)
        w.close("complete")
    return path


@pytest.fixture
def mixed(tmp_path):
    """Cells, a cytokine and a dimensionless state on a 2D grid: a zero field, a plateau
    with a 0.7 % ripple, and a signed field; two dose agents."""
    grid = tp.Grid((20, 16), 10.0)
    model = tp.Model([tp.Species("tumor", units="volume fraction"), tp.Species("cd8", units="volume fraction"),
                      tp.Species("ifng", units="ng/mL"), tp.Species("phase", units="1", nonnegative=False)],
                     name="mixed")
    rng = np.random.default_rng(1)
    t = 4
    ys = np.zeros((t, 4) + grid.shape)
    ys[:, 0] = 0.5 * (1 + 0.007 * rng.standard_normal((t,) + grid.shape))
    ys[:, 2] = np.linspace(0, 3, t)[:, None, None] * rng.random(grid.shape)
    ys[:, 3] = rng.standard_normal((t,) + grid.shape)
    attrs = {"dose_times_h": np.array([0.5, 1.0, 2.0]), "dose_times_h_ifng": np.array([0.5, 2.0]),
             "dose_times_h_pd1": np.array([1.0])}
    return _write(tmp_path / "mixed.h5", grid, model, ys, attrs)


def _clims(fig):
    return {ax.get_ylabel(): im.get_clim() for ax in fig.axes for im in ax.get_images() if ax.get_ylabel()}


def test_zero_field_is_drawn_as_zero_and_a_ripple_does_not_fill_the_map(mixed):
    with open_result(mixed) as r:
        fig = plot.field_snapshots(r)
        clims = _clims(fig)
        cd8 = next(im for ax in fig.axes for im in ax.get_images() if ax.get_ylabel() == "cd8")
        assert cd8.norm(0.0) == 0.0  # the zero field sits at the bottom colour, not mid-map
        lo, hi = clims["tumor"]
        plateau = r.series("tumor")
        assert lo == 0.0 and hi == pytest.approx(plateau.max())
        spread = (plateau.max() - plateau.min()) / (hi - lo)
        assert spread < 0.05  # the ±0.7 % ripple spans a few % of the colour map, not all of it
        lo, hi = clims["phase"]
        assert lo == -hi  # signed field: diverging map centred on 0
        plt.close(fig)


def test_one_colour_range_per_field_across_times(mixed):
    with open_result(mixed) as r:
        fig = plot.field_snapshots(r, ["ifng"])
        ranges = {im.get_clim() for ax in fig.axes for im in ax.get_images()}
        assert len(ranges) == 1 and ranges.pop() == pytest.approx((0.0, r.series("ifng").max()))
        plt.close(fig)


def test_fields_are_grouped_by_kind(mixed, tmp_path):
    with open_result(mixed) as r:
        assert plot.field_groups(r) == {"cells": ["tumor", "cd8"], "cytokines": ["ifng"], "states": ["phase"]}
        paths = plot.save_all(r, tmp_path / "figs")
    names = sorted(p.name for p in paths)
    assert names == ["mixed_fields_cells.png", "mixed_fields_cytokines.png", "mixed_fields_states.png",
                     "mixed_observables.png", "mixed_profile_tumor.png"]


def test_a_23_field_result_gives_readable_figures(tmp_path):
    """The default TME scenario's 23 fields: no figure wider or taller than 2200 px."""
    from tmepde.models import tme

    grid = tp.Grid((16, 16), 40.0)
    model = tme.tme_model(grid=grid, n_doses=2)
    ys = np.random.default_rng(0).random((3, len(model.species)) + grid.shape)
    path = _write(tmp_path / "tme.h5", grid, model, ys)
    with open_result(path) as r:
        paths = plot.save_all(r, tmp_path / "figs")
    assert len(paths) >= 4
    for p in paths:
        h, w = plt.imread(p).shape[:2]
        assert max(h, w) <= 2200 and min(h, w) >= 300, (p.name, w, h)


def test_observables_have_units_and_doses_are_labelled_per_agent(mixed):
    with open_result(mixed) as r:
        fig = plot.observables(r)
        axes = [ax for ax in fig.axes if ax.get_title()]
        assert {ax.get_title() for ax in axes} == {"total_tumor", "total_cd8", "total_ifng", "total_phase"}
        for ax in axes:
            assert "µm²" in ax.get_ylabel(), ax.get_ylabel()  # 2D totals: µm² · units
            dashed = [l for l in ax.get_lines() if l.get_linestyle() == "--"]
            assert sorted(l.get_xdata()[0] for l in dashed) == [0.5, 1.0, 2.0]
        labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        assert labels == ["ifng dose (2)", "pd1 dose (1)"]
        plt.close(fig)


def test_units_label_resolves_the_grid_dimension():
    assert plot.units_label("µm^ndim", 2) == "µm²"
    assert plot.units_label("µm^ndim", 3) == "µm³"
    assert plot.units_label("", 2) == "1"
