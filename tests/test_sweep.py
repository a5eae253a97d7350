"""Sweeps: members equal single runs, the file holds the values used, RECIST-like summary,
Wilson intervals, interrupted sweeps keep finished chunks, plots, CLI errors."""

import math

import numpy as np
import pytest

import tmepde as tp
from tmepde import batch, sweep
from tmepde.cli import main
from tmepde.config import ConfigError, loads_config
from tmepde.io import SweepResult, open_result
from tmepde.runner import build, run_config

CONFIG = """
[grid]
shape = [16, 16]
spacing = 10.0

[time]
t_end = 6.0
dt = 0.5
save_every = 1.0

[model]
path = "tmepde.models.examples:fisher_kpp"

[initial]
tumor = { type = "disk", radius = 40.0, value = 0.5 }

[solver]
dtype = "float64"

[sweep]
chunk = 5
save_fields = true

[sweep.grid]
D_tumor = [0.05, 0.5]
"initial.tumor.radius" = [30.0, 60.0]

[sweep.cohort]
n = 3
seed = 0
cv = { growth = 0.4 }

[[sweep.arms]]
name = "treated"
set = { growth = 0.15, decay_tumor = 0.6 }  # treatment kills: net rate 0.15 (1 - u) - 0.6 < 0

[[sweep.arms]]
name = "control"
set = { growth = 0.15 }
"""


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("sweep") / "fk.toml"
    p.write_text(CONFIG)
    return p


@pytest.fixture(scope="module")
def swept(cfg_path):
    """The CLI sweep: 2 arms x 4 grid points x 2 patients (-n 2 --seed 5) = 16 members in
    chunks of 5 (the last one padded)."""
    out = cfg_path.parent / "fk.h5"
    assert main(["sweep", str(cfg_path), "-o", str(out), "-n", "2", "--seed", "5", "--no-progress"]) == 0
    return out


def test_members_equal_runs_done_alone(swept, cfg_path, tmp_path):
    cfg = loads_config(CONFIG, ["sweep.cohort.n=2", "sweep.cohort.seed=5"])
    setup = build(cfg)
    with open_result(swept) as r:
        assert isinstance(r, SweepResult) and len(r) == 16 and r.status == "complete"
        m, params = r.members, r.params
        assert m["done"].all() and list(m["arm"][:8]) == ["treated"] * 8
        assert sorted(params) == ["D_tumor", "decay_tumor", "growth", "initial.tumor.radius"]
        vol = cfg.grid.cell_volume
        for i in range(16):
            p = dict(setup.params, growth=params["growth"][i], D_tumor=params["D_tumor"][i],
                     decay_tumor=params["decay_tumor"][i])
            y0 = loads_config(CONFIG, [f"initial.tumor.radius={float(params['initial.tumor.radius'][i])!r}"]).initial_state()
            alone = np.asarray(setup.simulator.run(p, y0, setup.n_saves))[:, 0]
            np.testing.assert_allclose(r.series("tumor", i), alone, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(r.observable("total_tumor")[i], alone.sum(axis=(1, 2)) * vol,
                                       rtol=1e-12)
        # and member 11 through the ordinary single-run path (runner + --set overrides)
        i = 11
        sets = [f"model.params.growth={float(params['growth'][i])!r}",
                f"species.tumor.diffusivity={float(params['D_tumor'][i])!r}",
                f"initial.tumor.radius={float(params['initial.tumor.radius'][i])!r}"]
        with open_result(run_config(loads_config(CONFIG, sets), tmp_path / "one.h5", progress=False)) as one:
            np.testing.assert_allclose(r.series("tumor", i), one.series("tumor"), rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(r.member(i)["observables"]["total_tumor"],
                                       one.observables["total_tumor"], rtol=1e-10)


def test_file_holds_the_sampled_values(swept):
    with open_result(swept) as r:
        m, params = r.members, r.params
        # independent re-draw: log-normal, median = arm value, σ = √ln(1+cv²), keys sorted
        z = np.random.default_rng(5).standard_normal(2)
        factor = np.exp(math.sqrt(math.log1p(0.4**2)) * z)
        np.testing.assert_allclose(params["growth"], 0.15 * factor[m["patient"]], rtol=1e-15)
        np.testing.assert_array_equal(params["decay_tumor"], np.where(m["arm"] == "treated", 0.6, 0.0))
        # full factorial grid, patient fastest: D_tumor slowest of the grid keys
        np.testing.assert_array_equal(params["D_tumor"][:8], [0.05] * 4 + [0.5] * 4)
        np.testing.assert_array_equal(params["initial.tumor.radius"][:4], [30, 30, 60, 60])
        assert r.select("control", D_tumor=0.5).tolist() == [12, 13, 14, 15]


def test_lognormal_cohort_log_moments_without_running():
    cfg = loads_config(CONFIG, ["sweep.cohort.n=2000", "sweep.cohort.seed=11", "sweep.grid={}",
                                "sweep.cohort.cv={growth=0.5, D_tumor=0.2}"])
    plan = sweep.plan_sweep(cfg)
    assert plan.n == 4000
    for key, median, cv in (("growth", 0.15, 0.5), ("D_tumor", 0.05, 0.2)):
        logs = np.log(np.abs(plan.values[key][plan.arm_index == 1]))
        sigma = math.sqrt(math.log1p(cv**2))
        assert abs(logs.mean() - math.log(median)) < 4 * sigma / math.sqrt(2000), (key, logs.mean())
        assert abs(logs.std() / sigma - 1) < 4 / math.sqrt(2 * 2000), (key, logs.std(), sigma)
        # the same patients in both arms
        np.testing.assert_allclose(plan.values[key][plan.arm_index == 0] / plan.values[key][plan.arm_index == 1],
                                   1.0, rtol=1e-14)


def test_recist_classification_at_the_thresholds():
    eps = 1e-9
    b0 = 100.0
    curves = np.array([
        [b0, b0 * 0.7**2 * (1 - eps), b0 * 0.7**2 * (1 - eps)],   # -30 % just reached: PR
        [b0, b0 * 0.7**2 * (1 + eps), b0 * 0.7**2 * (1 + eps)],   # just short of -30 %: SD
        [b0, b0 * 1.2**2 * (1 + eps), b0],                          # +20 % then back: best SD
        [b0, b0, b0 * 1.2**2 * (1 + eps)],                          # PD at horizon
        [b0, b0 * 1.2**2 * (1 - eps), b0 * 1.2**2 * (1 - eps)],   # just short of +20 %: SD
        [b0, b0 * 0.999e-3, b0 * 0.4],                              # CR, then regrowth to PR
        [b0, b0 * 1.001e-3, b0 * 1.001e-3],                         # not CR: PR (−96.8 %)
        [b0, b0 * 0.3, b0 * 2.0],                                   # PR best, PD at horizon
        [b0, np.nan, b0],                                           # not evaluable
        [0.0, 1.0, 1.0],                                            # no baseline: NE
    ])
    res = sweep.classify(curves, 0.5)
    assert res["best"].tolist() == ["PR", "SD", "SD", "SD", "SD", "CR", "PR", "PR", "NE", "NE"]
    assert res["horizon"].tolist() == ["PR", "SD", "SD", "PD", "SD", "PR", "PR", "PD", "NE", "NE"]
    np.testing.assert_allclose(res["best_change"][[0, 7]], [-30.0, 100 * (math.sqrt(0.3) - 1)], rtol=1e-8)
    # 3D volume: -30 % diameter is a volume ratio 0.7³; absolute detection threshold
    v = np.array([[8.0, 8 * 0.7**3 * (1 - eps)], [8.0, 8 * 0.7**3 * (1 + eps)], [8.0, 0.5]])
    assert sweep.classify(v, 1 / 3)["best"].tolist() == ["PR", "SD", "PR"]
    assert sweep.classify(v, 1 / 3, detection=0.6)["best"].tolist() == ["PR", "SD", "CR"]
    assert sweep.diameter_exponent(tp.Grid((8, 8, 8), 1.0)) == 1 / 3
    assert sweep.diameter_exponent(tp.Grid((8,), 1.0, geometry="spherical")) == 1 / 3


def test_wilson_interval_and_response_table():
    lo, hi = sweep.wilson(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)  # textbook value, z = 1.96
    lo, hi = sweep.wilson(0, 10)
    assert lo == 0 and hi == pytest.approx(1.959964**2 / (10 + 1.959964**2), rel=1e-6)
    rows = sweep.response_table(["a", "b"], [0, 0, 0, 0, 1, 1], ["CR", "PR", "SD", "PD", "NE", "SD"],
                                ["PD", "PR", "SD", "PD", "NE", "SD"])
    assert (rows[0]["CR"], rows[0]["PR"], rows[0]["ORR"], rows[0]["DCR"], rows[0]["ORR_horizon"]) == (1, 1, 0.5, 0.75, 0.25)
    assert (rows[0]["ORR_lo"], rows[0]["ORR_hi"]) == sweep.wilson(2, 4)
    assert (rows[1]["n"], rows[1]["NE"], rows[1]["DCR"]) == (2, 1, 0.5)
    assert sweep.table_csv(rows).splitlines()[0].startswith("arm,n,CR,PR,SD,PD,NE,ORR")


def test_summary_in_file_and_tables(swept):
    with open_result(swept) as r:
        s = r.summary
        burden = r.observable("burden")
    res = sweep.classify(burden, 0.5)
    np.testing.assert_array_equal(s["best"], res["best"])
    assert s["arms"]["n"].tolist() == [8, 8]
    assert s["arms"]["PR"][0] + s["arms"]["CR"][0] > 0 and s["arms"]["PD"][1] + s["arms"]["SD"][1] == 8
    csv = swept.with_name("fk_summary.csv").read_text().splitlines()
    assert csv[1].split(",")[:2] == ["treated", "8"] and len(csv) == 3
    assert "| treated | 8 |" in swept.with_name("fk_summary.md").read_text()


def test_interrupted_sweep_keeps_finished_chunks(swept, cfg_path, tmp_path, monkeypatch):
    real = batch.iter_batch

    def two_chunks_then_interrupt(*args, **kwargs):
        for k, item in enumerate(real(*args, **kwargs)):
            if k == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(batch, "iter_batch", two_chunks_then_interrupt)
    out = tmp_path / "cut.h5"
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(cfg_path, out, n=2, seed=5, progress=False)
    with open_result(out) as cut, open_result(swept) as full:
        assert cut.status == "interrupted: SIGINT"
        assert cut.members["done"].tolist() == [True] * 10 + [False] * 6
        np.testing.assert_array_equal(cut.observable("burden")[:10], full.observable("burden")[:10])
        assert np.isnan(cut.observable("burden")[10:]).all()
        np.testing.assert_array_equal(cut.series("tumor", 9), full.series("tumor", 9))
        assert cut.select().tolist() == list(range(10))


def test_plots_show_the_computed_responses(swept, tmp_path):
    from tmepde import plot

    with open_result(swept) as r:
        s = r.summary
        fig = plot.waterfall(r)
        heights = sorted(p.get_height() for p in fig.axes[0].patches)
        np.testing.assert_allclose(heights, np.sort(s["best_change"]), rtol=1e-12)
        fig = plot.response_rates(r)
        bars = [p.get_height() for p in fig.axes[0].patches]
        np.testing.assert_allclose(bars, 100 * s["arms"]["ORR"], rtol=1e-12)
        fig = plot.spaghetti(r, "total_tumor", relative=False)
        np.testing.assert_allclose(fig.axes[0].lines[3].get_ydata(), r.observable("total_tumor")[3])
    assert main(["plot", str(swept), "-o", str(tmp_path)]) == 0
    pngs = sorted(tmp_path.glob("*.png"))
    assert [p.name for p in pngs] == ["fk_response_rates.png", "fk_spaghetti_burden.png", "fk_waterfall.png"]
    assert all(p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_bad_sweep_keys_are_named(cfg_path, tmp_path, capsys):
    out = tmp_path / "bad.h5"
    assert main(["sweep", str(cfg_path), "-o", str(out), "--set", "sweep.cohort.cv.growht=0.3"]) == 2
    err = capsys.readouterr().err
    assert "sweep.cohort.cv.growht" in err and "did you mean 'growth'" in err
    assert not out.exists()
    with pytest.raises(ConfigError) as e:
        loads_config(CONFIG, ["sweep.grid.growth=[0.1, \"x\"]"])
    assert e.value.path == "sweep.grid.growth[1]"
    with pytest.raises(ConfigError) as e:
        loads_config(CONFIG.replace('name = "control"', 'name = "treated"'))
    assert e.value.path == "sweep.arms[1].name" and "used twice" in str(e.value)
    with pytest.raises(ConfigError, match="has no \\[sweep\\] table"):
        sweep.plan_sweep(loads_config(CONFIG.split("[sweep]")[0]))


SHARDED = """
import sys
import jax
import numpy as np
from tmepde.config import loads_config
from tmepde.io import open_result
from tmepde.sweep import run_sweep
assert len(jax.devices()) == 4, jax.devices()
cfg = loads_config(open(sys.argv[1]).read())
a = run_sweep(cfg, sys.argv[2] + "/four.h5", n=2, seed=5, progress=False)  # chunk 5 -> 8 over 4 devices
b = run_sweep(cfg, sys.argv[2] + "/one.h5", n=2, seed=5, progress=False, devices=jax.devices()[:1])
with open_result(a) as ra, open_result(b) as rb:
    assert ra.members["done"].all() and len(ra) == 16
    print(np.abs(ra.observable("burden") / rb.observable("burden") - 1).max(),  # sums: relative
          np.abs(ra.series("tumor", 15) - rb.series("tumor", 15)).max())
"""


def test_sweep_sharded_over_four_host_devices_equals_one_device(cfg_path, tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "sharded_sweep.py"
    script.write_text(SHARDED)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, str(script), str(cfg_path), str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    burden_diff, field_diff = map(float, out.stdout.split())
    assert burden_diff < 1e-12 and field_diff < 1e-14, out.stdout


def test_model_observables_per_member(cfg_path, tmp_path):
    """A model's own Observables are evaluated per member with that member's parameters."""
    import dataclasses

    from tmepde.model import Observable

    cfg = loads_config(CONFIG, ["sweep.cohort.n=2", "sweep.grid={}", "sweep.save_fields=false"])
    peak_rate = Observable("peak_rate", lambda t, y, p, g: p["growth"] * y["tumor"].max() + t, "1/h")
    model = tp.Model(cfg.model.species, cfg.model.reactions, cfg.model.default_params(),
                     name=cfg.model.name, observables=[peak_rate])
    out = sweep.run_sweep(dataclasses.replace(cfg, model=model), tmp_path / "obs.h5", progress=False)
    with open_result(out) as r:
        expected = r.params["growth"][:, None] * r.observable("max_tumor") + r.time
        np.testing.assert_allclose(r.observable("peak_rate"), expected, rtol=1e-12)
        assert not r.has_fields and r._file["observables/peak_rate"].attrs["units"] == "1/h"


def test_info_summarises_a_sweep_file(swept, capsys):
    from tmepde.cli import main
    from tmepde.io import open_result

    path = swept[0] if isinstance(swept, tuple) else swept
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    with open_result(path) as r:
        n, arms, last = r.n_members, r.arm_names, r.observables["burden"][:, -1]
    assert f"members:  {n} in {len(arms)} arm(s): {', '.join(arms)}" in out
    line = next(l for l in out.splitlines() if l.strip().startswith("burden "))
    assert float(line.split()[1]) == pytest.approx(float(np.median(last)), rel=1e-5)


def test_resumed_sweep_equals_uninterrupted_and_reruns_only_unfinished(swept, cfg_path, tmp_path,
                                                                       monkeypatch, capsys):
    real = batch.iter_batch
    ran = []  # member count of every chunk computed

    def counting(*args, stop_at=None, **kwargs):
        for k, (members, out) in enumerate(real(*args, **kwargs)):
            if k == stop_at:
                raise KeyboardInterrupt
            ran.append(members.stop - members.start)
            yield members, out

    out = tmp_path / "cut.h5"
    monkeypatch.setattr(batch, "iter_batch", lambda *a, **k: counting(*a, stop_at=2, **k))
    with pytest.raises(KeyboardInterrupt, match="10 of 16 members are finished"):
        sweep.run_sweep(cfg_path, out, n=2, seed=5, progress=False)
    with open_result(out) as cut:
        kept = {k: cut.observable(k)[:10].copy() for k in cut.observables}
        assert cut.members["done"].tolist() == [True] * 10 + [False] * 6
    ran.clear()
    monkeypatch.setattr(batch, "iter_batch", counting)
    assert main(["sweep", "--resume", str(out), "--no-progress"]) == 0
    assert ran == [5, 1]  # members 10..14 and 15: the finished chunks were not run again
    assert "| treated | 8 |" in capsys.readouterr().out
    with open_result(out) as a, open_result(swept) as b:
        assert a.status == "complete" and a.members["done"].all()
        assert set(a.observables) == set(b.observables)
        for k, v in b.observables.items():
            np.testing.assert_array_equal(a.observable(k), v)  # bit for bit
            np.testing.assert_array_equal(a.observable(k)[:10], kept[k])
        for m in (0, 9, 10, 15):
            for s in b.species:
                np.testing.assert_array_equal(a.series(s, m), b.series(s, m))
        assert a.summary["best"].tolist() == b.summary["best"].tolist()
    assert main(["sweep", "--resume", str(out), "--no-progress"]) == 2  # complete now
    assert "is complete; nothing to resume" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(out), "-n", "3"]) == 2  # the file's own sweep only
    assert "give no CONFIG, -o, --set, -n" in capsys.readouterr().err
