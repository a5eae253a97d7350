"""Write the small result-file fixtures in tests/fixtures/ (a run file, a sweep file and a fit file).

Every later tmepde must still read them (tests/test_files_fixtures.py checks the values
stored there). Regenerate only together with a new ``FORMAT_VERSION`` / ``SWEEP_FORMAT_VERSION``,
under new file names, keeping the old fixtures:

    python scripts/make_fixtures.py            # writes tests/fixtures/{run,sweep}_v<version>.h5
    python scripts/make_fixtures.py optimize   # writes tests/fixtures/optimize_v1.h5
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tmepde.config import loads_config
from tmepde.io import FORMAT_VERSION, SWEEP_FORMAT_VERSION, open_result
from tmepde.runner import run_config
from tmepde.sweep import run_sweep

# 8 x 8 cells, two saves (t = 0 and 1 h), Gray–Scott: u starts at 1 everywhere, v as a Gaussian.
RUN = """
[grid]
shape = [8, 8]
spacing = 5.0

[time]
t_end = 1.0
dt = 0.25
save_every = 1.0

[model]
path = "tmepde.models.examples:gray_scott"

[initial.u]
type = "uniform"
value = 1.0

[initial.v]
type = "gaussian"
width = 8.0
amplitude = 0.5

[output]
chunk = 1
"""

# The same run as a sweep: two arms (feed 0.037 and 0.05 /h), stored fields.
SWEEP = RUN + """
[sweep]
save_fields = true

[[sweep.arms]]
name = "low_feed"

[[sweep.arms]]
name = "high_feed"
set = { feed = 0.05 }
"""


# A small `tmepde optimize` result: one toy PK-driven tumor (2 cells, 4 days), three IFN-γ
# doses, two batched L-BFGS starts, no CMA-ES baseline.
OPTIMIZE_MODEL = """
import jax.numpy as jnp
import numpy as np
import tmepde as tp
from tmepde import therapy


def plasma(t, p):
    return therapy.pk_concentration(t, p["sys_ifng_times"], p["sys_ifng_amounts"], ke=0.1, volume_ml=1.0, width=1.0)


def model():
    def reactions(t, y, p):
        c = plasma(t, p)
        return {"tumor": 0.03 * y["tumor"] * (1 - y["tumor"]) - 0.1 * c / (c + 0.5) * y["tumor"]}
    params = {"sys_ifng_times": np.array([0.0, 6.0, 12.0]), "sys_ifng_amounts": np.array([1.0, 1.0, 1.0])}
    obs = [tp.Observable("tumor_burden", lambda t, y, p, g: jnp.sum(y["tumor"] * g.cell_volumes()), "µm"),
           tp.Observable("plasma_ifng", lambda t, y, p, g: plasma(t, p), "ng/mL")]
    return tp.Model([tp.Species("tumor")], reactions, params, name="toy_pk", observables=obs)
"""
OPTIMIZE = """
[grid]
shape = [2]
spacing = 10.0
[time]
t_end = 96.0
dt = 1.0
save_every = 24.0
[model]
path = "toy_pk_model:model"
[initial]
tumor = { type = "uniform", value = 0.5 }
[solver]
scheme = "sbdf1"
dtype = "float64"
[optimize]
objective = "final"
toxicity_limit = 1.2
steps = 10
rounds = 3
starts = 2
cma_factor = 0
[[optimize.agents]]
prefix = "sys_ifng"
max_amount = 1.5
budget = 3.0
t_max = 60.0
min_interval = 12.0
"""


def optimize_fixture(out_dir: Path) -> Path:
    """tests/fixtures/optimize_v1.h5 (format ``tmepde-optimize``, first layout)."""
    import os
    import tempfile

    import jax

    from tmepde.cli import main as cli

    jax.config.update("jax_enable_x64", True)
    path = (out_dir / "optimize_v1.h5").resolve()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "toy_pk_model.py").write_text(OPTIMIZE_MODEL)
        (Path(tmp) / "opt.toml").write_text(OPTIMIZE)
        sys.path.insert(0, tmp)
        os.chdir(tmp)
        try:
            assert cli(["optimize", "opt.toml", "-o", "opt.h5", "--no-cma"]) == 0
            path.write_bytes((Path(tmp) / "opt.h5").read_bytes())  # the .md/.toml/.png are not fixtures
        finally:
            os.chdir(cwd)
            sys.path.remove(tmp)
    import h5py

    with h5py.File(path, "r") as f:
        print(f"{path} ({path.stat().st_size} bytes): objective "
              f"{ {k: float(f[f'burden/{k}'].attrs['objective']) for k in f['burden']} }, gradient amounts "
              f"{f['schedules/gradient/sys_ifng_amounts'][:].tolist()}, times {f['schedules/gradient/sys_ifng_times'][:].tolist()}")
    return path


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    run_path = out_dir / f"run_v{FORMAT_VERSION}.h5"
    sweep_path = out_dir / f"sweep_v{SWEEP_FORMAT_VERSION}.h5"
    run_config(loads_config(RUN), run_path, progress=False, overwrite=True)
    run_path.with_suffix(".xmf").unlink(missing_ok=True)  # the ParaView sidecar is not a fixture
    run_sweep(loads_config(SWEEP), sweep_path, progress=False, overwrite=True)
    for p in (run_path, sweep_path):  # the numbers tests/test_files_fixtures.py stores
        with open_result(p) as r:
            print(f"{p} ({p.stat().st_size} bytes): status {r.status!r}, time {r.time.tolist()}")
            for k, v in r.observables.items():
                print(f"  {k} = {np.asarray(v).tolist()!r}")


def fit_fixture(out_dir: Path) -> Path:
    """``tmepde fit --quick --nuts`` of the CT26 example (2 outer steps, 20 + 20 NUTS steps):
    its ``_fit.h5`` (format tmepde-fit) becomes fit_v1.h5. ``python scripts/make_fixtures.py fit``."""
    import shutil
    import tempfile

    import h5py

    from tmepde.cli import main as cli

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        assert cli(["fit", str(root / "configs" / "fit" / "ct26.toml"), "--quick", "--nuts", "-o", f"{tmp}/f",
                    "--set", "fit.max_steps=2", "--set", "fit.nuts_warmup=20", "--set", "fit.nuts_samples=20"]) == 0
        path = out_dir / "fit_v1.h5"
        shutil.copy(f"{tmp}/f_fit.h5", path)
    with h5py.File(path, "r") as f:
        print(f"{path} ({path.stat().st_size} bytes): -log L {float(f.attrs['neg_log_likelihood'])!r}")
    return path


if __name__ == "__main__":
    if sys.argv[1:2] == ["fit"]:  # only the fit fixture (a quick CT26 fit: minutes)
        fit_fixture(Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[1] / "tests" / "fixtures")
        sys.exit(0)
    if sys.argv[1:2] == ["optimize"]:  # only the optimize fixture
        optimize_fixture(Path(__file__).resolve().parents[1] / "tests" / "fixtures")
        sys.exit(0)
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tests" / "fixtures")
