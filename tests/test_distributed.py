"""Scale-out: a sweep split over two processes through ``jax.distributed`` (CPU collectives
over localhost, as on a multi-node cluster) writes the same file as one process."""

import os
import socket
import subprocess
import sys

import numpy as np

from tmepde.io import open_result

CONFIG = """
[grid]
shape = [16, 16]
spacing = 10.0
[time]
t_end = 4.0
dt = 0.5
save_every = 1.0
[model]
path = "tmepde.models.examples:fisher_kpp"
[initial]
tumor = { type = "disk", radius = 40.0, value = 0.5 }
[solver]
dtype = "float64"
[sweep]
save_fields = true
[sweep.cohort]
n = 5
seed = 3
cv = { growth = 0.4 }
"""

WORKER = """
import sys
import jax
rank, n, port, cfg, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
if n > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=n, process_id=rank)
    assert jax.process_count() == n and len(jax.devices()) == n, jax.devices()
from tmepde.sweep import run_sweep
run_sweep(cfg, out, progress=False)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_sweep_writes_the_same_file_as_one(tmp_path):
    cfg = tmp_path / "cohort.toml"
    cfg.write_text(CONFIG)
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    port = str(_free_port())
    two = tmp_path / "two.h5"
    procs = [subprocess.Popen([sys.executable, str(worker), str(rank), "2", port, str(cfg), str(two)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(l[-2000:] for l in logs)
    one = tmp_path / "one.h5"
    proc = subprocess.run([sys.executable, str(worker), "0", "1", "0", str(cfg), str(one)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open_result(two) as a, open_result(one) as b:
        assert a.status == b.status == "complete" and a.n_members == b.n_members == 5
        np.testing.assert_array_equal(a.params["growth"], b.params["growth"])
        np.testing.assert_allclose(a.observable("burden"), b.observable("burden"), rtol=1e-12)
        for i in range(len(a)):
            np.testing.assert_allclose(a.series("tumor", i), b.series("tumor", i), rtol=1e-12, atol=1e-15)
