"""Write the small result-file fixtures in tests/fixtures/ (a run file and a sweep file).

Every later tmepde must still read them (tests/test_files_fixtures.py checks the values
stored there). Regenerate only together with a new ``FORMAT_VERSION`` / ``SWEEP_FORMAT_VERSION``,
under new file names, keeping the old fixtures:

    python scripts/make_fixtures.py            # writes tests/fixtures/{run,sweep}_v<version>.h5
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


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tests" / "fixtures")
