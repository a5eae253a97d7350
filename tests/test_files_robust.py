"""`tmepde info`, `plot` and `animate` answer one line, never a traceback, for files that are
not readable results, and read the files `fit` and `optimize` write."""

import h5py
import numpy as np
import pytest

from tmepde import Grid
from tmepde.cli import main
from tmepde.io import ResultWriter
from tmepde.models.examples import gray_scott


def _good(path, saves=2):
    with ResultWriter(path, Grid((5, 4), 2.0), gray_scott(), config_toml="a = 1") as w:
        if saves:
            w.append(np.arange(saves, dtype=float), np.ones((saves, 2, 5, 4)))
        w.finish()
    return path


def _del_attr(f):
    del f.attrs["grid_shape"]


def _str_shape(f):
    f.attrs["grid_shape"] = np.array(["five", "four"], dtype=h5py.string_dtype())


def _string_field(f):
    del f["fields/u"]
    f["fields/u"] = np.array([["a"] * 4] * 5, dtype=h5py.string_dtype())


def _short_time(f):
    f["time"].resize((1,))


def _no_fields(f):
    del f["fields"]


BREAKS = {"missing attribute": (_del_attr, "lacks the root attribute 'grid_shape'"),
          "wrong attribute dtype": (_str_shape, "grid_shape"),
          "wrong field dtype": (_string_field, "/fields/u has shape"),
          "saves disagree": (_short_time, "holds 2 saves but /time 1"),
          "no fields group": (_no_fields, "no dataset /fields/u")}


def _one_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_malformed_files_are_one_line(tmp_path, capsys, case):
    path = _good(tmp_path / "r.h5")
    assert main(["info", str(path)]) == 0  # the intact file reads
    capsys.readouterr()
    breaker, message = BREAKS[case]
    with h5py.File(path, "r+") as f:
        breaker(f)
    for argv in (["info", str(path)], ["plot", str(path), "-o", str(tmp_path / "figs")],
                 ["animate", str(path), "u", "-o", str(tmp_path / "u.gif")]):
        assert main(argv) == 2, argv
        line = _one_line(capsys)
        assert str(path) in line and message in line, line
    assert not (tmp_path / "figs").exists() and not (tmp_path / "u.gif").exists()


def test_zero_saves_and_not_hdf5(tmp_path, capsys):
    empty = _good(tmp_path / "empty.h5", saves=0)
    assert main(["info", str(empty)]) == 0
    assert "saves:    0" in capsys.readouterr().out
    for argv in (["plot", str(empty), "-o", str(tmp_path / "f")], ["animate", str(empty), "u"]):
        assert main(argv) == 1
        assert "holds no saves (status 'complete')" in _one_line(capsys)
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    for argv in (["info", str(text)], ["plot", str(text)], ["animate", str(text), "u"]):
        assert main(argv) == 2
        assert "is not an HDF5 file that opens" in _one_line(capsys)
    assert main(["info", str(tmp_path / "missing.h5")]) == 2
    assert "no such file" in _one_line(capsys)


def test_fit_and_optimize_files(tmp_path, capsys):
    """A minimal optimize file (the layout of tmepde.summaries) and a damaged fit file."""
    opt = tmp_path / "opt.h5"
    with h5py.File(opt, "w") as f:
        f.attrs.update({"format": "tmepde-optimize", "config_toml": "b = 2", "objective_name": "burden"})
        f["time"] = np.arange(3.0)
        f["burden/none"] = np.array([1.0, 2.0, 3.0])
    assert main(["info", str(opt)]) == 0
    out = capsys.readouterr().out
    assert "format:   tmepde-optimize" in out and "/burden" in out and "objective_name: burden" in out
    assert main(["info", str(opt), "--config"]) == 0 and capsys.readouterr().out == "b = 2"
    assert main(["animate", str(opt), "u"]) == 2
    assert "it is a 'tmepde optimize' file" in _one_line(capsys)
    fit = tmp_path / "fit.h5"
    with h5py.File(fit, "w") as f:
        f.attrs["format"] = "tmepde-fit"
    assert main(["plot", str(fit), "-o", str(tmp_path / "figs")]) == 2
    assert "cannot read" in _one_line(capsys)
