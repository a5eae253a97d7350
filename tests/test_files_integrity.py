"""Result files never lie: a full disk, a file-size limit, SIGINT/SIGTERM and an existing file
leave a file whose status says what happened and whose saves are exactly the computed ones."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from tmepde.cli import main
from tmepde.config import load_config
from tmepde.io import OutputExistsError, ResultWriteError, open_result
from tmepde.runner import build, run_config

CONFIG = """
[grid]
shape = [12, 10]
spacing = [4.0, 5.0]

[time]
t_end = {t_end}
dt = 0.25
save_every = 0.5

[model]
path = "tmepde.models.examples:gray_scott"

[initial.u]
type = "uniform"
value = 1.0

[initial.v]
type = "gaussian"
width = 12.0
amplitude = 0.5

[solver]
dtype = "float64"

[output]
chunk = {chunk}
compression = 0
"""

# x64 from the start, as in this process (the reference run is computed here).
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1", "TMEPDE_CACHE_DIR": "off"}


def _config(tmp_path, t_end=6.0, chunk=2, name="run.toml"):
    p = tmp_path / name
    p.write_text(CONFIG.format(t_end=t_end, chunk=chunk))
    return p


def _reference(cfg_path, n_saves):
    """Saves 0..n_saves-1 of the config from one in-memory Simulator.run."""
    setup = build(load_config(cfg_path))
    return np.asarray(setup.simulator.run(setup.params, setup.y0, n_saves - 1))


def _assert_saves_are_the_computed_ones(path, cfg_path):
    """Contiguous times 0, Δ, 2Δ, ... (no gap, no repeat) and every save equal to the
    in-memory run: nothing written that was not computed."""
    with open_result(path) as r:
        t = r.time
        n = len(t)
        np.testing.assert_allclose(t, 0.5 * np.arange(n), rtol=0, atol=1e-12)
        fields = np.stack([r.series(s) for s in r.species], axis=1)
    ref = _reference(cfg_path, n)
    np.testing.assert_allclose(fields, ref, rtol=1e-12, atol=1e-14)
    return n


def test_full_disk_fails_with_kept_saves_and_no_falsified_data(tmp_path, monkeypatch, capsys):
    """h5py writes raise ENOSPC from the 4th field write on (the disk fills mid-run)."""
    cfg = _config(tmp_path)
    real = h5py.Dataset.__setitem__
    calls = {"n": 0}

    def filling(self, key, value):
        if self.name.startswith("/fields/"):
            calls["n"] += 1
            if calls["n"] > 6:  # 2 species: save 0, then chunks 1 and 2 fit
                raise OSError(28, "No space left on device")
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", filling)
    out = tmp_path / "full.h5"
    with pytest.raises(ResultWriteError, match="No space left on device"):
        run_config(cfg, out, progress=False)
    with open_result(out) as r:
        assert r.status.startswith("failed: ResultWriteError")
        assert len(r) == 5  # save 0 + two chunks of 2; the failed chunk is rolled back
    monkeypatch.setattr(h5py.Dataset, "__setitem__", real)
    assert _assert_saves_are_the_computed_ones(out, cfg) == 5
    # Through the CLI: one line, exit status 1.
    calls["n"] = 0
    monkeypatch.setattr(h5py.Dataset, "__setitem__", filling)
    assert main(["run", str(cfg), "-o", str(tmp_path / "full2.h5"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "kept" in err[0]


def test_file_size_limit_fails_cleanly(tmp_path):
    """A real write error from the OS: RLIMIT_FSIZE makes write() fail with EFBIG once the
    file reaches 2 MiB (each save is 2 × 12 × 10 float64 = 1.9 KiB): the writer stops
    before the write that would not fit (an HDF5 file cut mid-write does not open)."""
    cfg = _config(tmp_path, t_end=600.0, chunk=16)
    out = tmp_path / "limited.h5"
    limit = 2 << 20

    script = ("import resource, sys\n"
              f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
              "from tmepde.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", script, "run", str(cfg), "-o", str(out),
                           "--no-progress"], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "file-size limit (ulimit -f) of 2097152 bytes" in err[0], proc.stderr
    with open_result(out) as r:
        assert r.status.startswith("failed: ResultWriteError")
    n = _assert_saves_are_the_computed_ones(out, cfg)
    assert 100 < n < 1201  # some saves fit, not all


def test_existing_result_and_config_are_never_overwritten(tmp_path, capsys):
    cfg = _config(tmp_path, t_end=1.0)
    out = tmp_path / "a.h5"
    assert main(["run", str(cfg), "-o", str(out), "--no-progress"]) == 0
    before = out.read_bytes()
    assert main(["run", str(cfg), "-o", str(out), "--no-progress", "--set", "time.t_end=2.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists (status 'complete'); pass --overwrite" in err[0]
    assert out.read_bytes() == before
    text = cfg.read_text()
    for extra in ([], ["--overwrite"]):
        assert main(["run", str(cfg), "-o", str(cfg), "--no-progress", *extra]) == 2
        assert "is the config file itself" in capsys.readouterr().err
        assert cfg.read_text() == text
    # Not a result file: refused even with --overwrite.
    other = tmp_path / "notes.h5"
    other.write_text("my notes")
    assert main(["run", str(cfg), "-o", str(other), "--no-progress", "--overwrite"]) == 2
    assert "is not a tmepde result file" in capsys.readouterr().err and other.read_text() == "my notes"
    with pytest.raises(OutputExistsError):
        run_config(cfg, out, progress=False)
    # --overwrite replaces it, and only once the new run finished (no temporary left behind).
    assert main(["run", str(cfg), "-o", str(out), "--no-progress", "--overwrite",
                 "--set", "time.t_end=2.0"]) == 0
    with open_result(out) as r:
        assert r.status == "complete" and len(r) == 5
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_without_gap(tmp_path, sig, status):
    """SIGINT/SIGTERM to `tmepde run`: exit 130/143, one line, status interrupted, and
    the saves are contiguous and equal to an uninterrupted run's."""
    cfg = _config(tmp_path, t_end=4000.0, chunk=1)
    out = tmp_path / "sig.h5"
    proc = subprocess.Popen([sys.executable, "-m", "tmepde.cli", "run", str(cfg), "-o", str(out),
                             "--no-progress"], env=ENV, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    n = 0
    while n < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            with h5py.File(out, "r", locking=False) as f:
                n = f["time"].shape[0]
        except (OSError, KeyError):
            pass
    assert n >= 4, "the run did not start writing"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"interrupted by {sig.name}" in lines[0]
    with open_result(out) as r:
        assert r.status == f"interrupted: {sig.name}"
        assert 4 <= len(r) < 8001
    _assert_saves_are_the_computed_ones(out, cfg)


def test_overwrite_replaces_only_with_a_complete_run(tmp_path, monkeypatch, capsys):
    """--overwrite: a new run that fails (full disk) or is interrupted leaves the old file
    byte for byte and its own output in <stem>.partial.h5; resuming that finishes it and only
    then replaces the old file."""
    from tmepde import Simulator
    from tmepde.io import partial_path

    cfg = _config(tmp_path, t_end=1.0)
    out = tmp_path / "a.h5"
    assert main(["run", str(cfg), "-o", str(out), "--no-progress"]) == 0
    before = out.read_bytes()
    partial = partial_path(out)
    assert partial.name == "a.partial.h5"
    longer = ["run", str(cfg), "-o", str(out), "--no-progress", "--overwrite", "--set", "time.t_end=3.0"]

    real = h5py.Dataset.__setitem__
    calls = {"n": 0}

    def filling(self, key, value):  # ENOSPC from the 5th field write on (save 0 + one chunk fit)
        if self.name.startswith("/fields/"):
            calls["n"] += 1
            if calls["n"] > 4:
                raise OSError(28, "No space left on device")
        return real(self, key, value)

    with monkeypatch.context() as m:
        m.setattr(h5py.Dataset, "__setitem__", filling)
        assert main(longer) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert f"{str(out)!r} is unchanged, this run's output is {str(partial)!r}" in err[0]
    assert out.read_bytes() == before
    with open_result(partial) as r:
        assert r.status.startswith("failed: ResultWriteError") and len(r) == 3

    # Interrupted at the 2nd chunk dispatch: the old file stays, the partial one is replaced.
    original, dispatched = Simulator.advance, []

    def interrupted(self, carry, params, n):
        dispatched.append(n)
        if len(dispatched) == 2:
            import jax

            jax.block_until_ready(carry)
            raise KeyboardInterrupt
        return original(self, carry, params, n)

    with monkeypatch.context() as m:
        m.setattr(Simulator, "advance", interrupted)
        assert main(longer) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(f"this run's output is {str(partial)!r}"), err
    assert out.read_bytes() == before
    with open_result(partial) as r:
        assert r.status == "interrupted: SIGINT" and len(r) == 3  # save 0 + one chunk of 2
    with open_result(out) as r:
        assert r.status == "complete" and len(r) == 3  # the old t_end = 1 h run
        old = np.stack([r.series(s) for s in r.species], axis=1)

    # Resuming the partial file completes it, and then it replaces the old one.
    assert main(["run", "--resume", str(partial), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert not partial.exists()
    with open_result(out) as r:
        assert r.status == "complete" and len(r) == 7 and "replaces" not in r.attrs
        np.testing.assert_allclose(r.time, 0.5 * np.arange(7), rtol=0, atol=1e-12)
        new = np.stack([r.series(s) for s in r.species], axis=1)
    np.testing.assert_array_equal(new[:3], old)  # the same run up to 1 h
    assert np.abs(new[6] - new[2]).max() > 1e-6  # and it went on
