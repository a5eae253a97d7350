"""The examples gallery (scripts/gallery/): every example runs on a small grid, writes its
figure, and its checked quantity agrees with theory or with the file it wrote."""

import importlib.util
import math
from pathlib import Path

import pytest

GALLERY = Path(__file__).resolve().parents[1] / "scripts" / "gallery"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"gallery_{name}", GALLERY / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _nonempty_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_turing_pattern_wavenumber_is_linearly_unstable(tmp_path):
    res = _load("turing_spots").main(tmp_path, n=48, t_end=300.0)
    lo, hi = res["band"]
    assert lo < res["k_dominant"] < hi
    assert res["contrast"] > 0.5  # a pattern formed (uniform state has contrast 0)
    _nonempty_png(res["figure"])


def test_fisher_front_speed_is_2_sqrt_Dr(tmp_path):
    res = _load("fisher_front").main(tmp_path)
    assert res["speed_um_per_h"] == pytest.approx(res["c_star_um_per_h"], rel=0.03)
    _nonempty_png(res["figure"])


def test_tme_section_observables_match_fields(tmp_path):
    res = _load("tme_section").main(tmp_path)
    assert res["burden_max_rel_diff"] < 1e-5  # float32 fields, float64 sums
    assert res["dose_times_h"] == [0.0, 48.0]  # the two non-zero intratumoral doses
    assert all(math.isfinite(v) for v in res["final"].values())
    for fig in res["figures"]:
        _nonempty_png(fig)
