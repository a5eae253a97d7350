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
