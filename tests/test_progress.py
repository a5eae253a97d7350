"""Progress of long commands: the ETA is measured from compute time only (a compile that takes
as long as the whole computation must not double the estimate), lines in logs, a bar on a tty."""

import io

import pytest

from tmepde.progress import Progress, format_seconds


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_eta_excludes_the_compile_and_lines_are_written_to_logs():
    clock, out = Clock(), io.StringIO()
    with Progress(10, "tmepde run", "save", stream=out, clock=clock, every_s=5.0) as p:
        p.compiling()
        assert p.eta() is None
        clock.t = 120.0  # compile 120 s, then the first save
        p.update(1)
        assert p.eta() is None  # one unit: no rate yet
        for _ in range(3):
            clock.t += 2.0  # 2 s per save
            p.update(1)
        # 6 saves left at 2 s each; a rate from the start (126 s / 4 saves) would say 189 s
        assert p.eta() == pytest.approx(12.0)
        while p.done < p.total:
            clock.t += 2.0
            p.update(1)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("tmepde run: compiling")
    assert lines[1] == "tmepde run: first results after 2:00 (compiling included)"
    assert lines[-1] == "tmepde run: 10/10 saves, 2:18 elapsed, about 0:00 left"
    # every_s = 5 s with 2 s per save: a line at most every third save, plus the last
    assert 3 <= len(lines) - 2 <= 5


def test_disabled_is_silent_and_tty_draws_a_bar():
    out = io.StringIO()
    with Progress(3, "x", enabled=False, stream=out) as p:
        p.compiling()
        p.update(3)
        p.note("hello")
    assert out.getvalue() == ""
    clock = Clock()
    with Progress(4, "sweep", "member", stream=out, clock=clock, tty=True) as p:
        p.compiling()
        clock.t = 50.0
        p.update(2)
        clock.t = 52.0
        p.update(1)
        assert p.eta() == pytest.approx(2.0)
    assert "member" in out.getvalue() and "(compiling)" in out.getvalue()


@pytest.mark.parametrize("s,text", [(0, "0:00"), (75, "1:15"), (3725, "1:02:05")])
def test_format_seconds(s, text):
    assert format_seconds(s) == text


def test_run_records_where_its_wall_time_went(tmp_path):
    """The timing_* attributes of a run file partition (at most) the run's own wall time."""
    import time

    from tmepde.config import loads_config
    from tmepde.io import open_result
    from tmepde.runner import run_config

    cfg = loads_config("""
[grid]
shape = [32]
spacing = 10.0
[time]
t_end = 8.0
dt = 0.25
save_every = 1.0
[model]
path = "tmepde.models.examples:fisher_kpp"
[initial.tumor]
type = "gaussian"
center = [0.0]
width = 40.0
[output]
chunk = 2
""")
    t0 = time.perf_counter()
    path = run_config(cfg, tmp_path / "r.h5", progress=False)
    wall = time.perf_counter() - t0
    with open_result(path) as r:
        a = {k: float(v) for k, v in r.attrs.items() if k.startswith("timing_")}
    parts = [a[f"timing_{k}_s"] for k in ("setup", "start", "compile", "device_wait", "host_write")]
    assert all(p >= 0 for p in parts)
    assert sum(parts) <= a["timing_total_s"] * (1 + 1e-9) <= wall
    assert a["timing_chunks"] == 4  # 8 saves in chunks of 2
