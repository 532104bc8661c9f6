"""The benchmark scripts that cannot be run in full here stay runnable: `benchmarks/gpu.sh
--dry-run` takes every step of the GPU measurement (installs aside), tiny, on this machine's
CPU (the text comparisons on one backend each), and writes the tables docs/benchmarks.md takes.

Run once, in the jax session of `make test`: the script starts every backend's processes itself
(`kdl compare` and the time-to-accuracy runs), so the other two sessions would run the very same
commands again.
"""

import os
import subprocess
import sys

import pytest
from conftest import REPO

from kdl import backend

once = pytest.mark.skipif(backend.name() != "jax", reason=(
    "the script runs all three backends in processes of its own; run once, in the jax session"))


@once
def test_gpu_script_dry_run_writes_every_table(tmp_path, shared_data):
    out = tmp_path / "gpu"
    env = dict(os.environ, KDL_DATA=str(shared_data), PYTHON=sys.executable)
    done = subprocess.run(["bash", "benchmarks/gpu.sh", "--dry-run", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tables = (out / "gpu.md").read_text()
    for part in ("time_to_accuracy/results.md", "compare_digits_cnn/comparison.md",
                 "compare_sst2_transformer/comparison.md", "compare_multi30k/comparison.md"):
        assert f"## {part}" in tables
    for run in ("pytorch peer", "kdl fast (jax)", "kdl fast (tensorflow)", "kdl fast (torch)"):
        assert f"| {run} | 1 |" in tables          # one epoch each, scored
    rows = {b: tables.count(f"| {b} |") for b in ("jax", "tensorflow", "torch")}
    assert rows == {"jax": 1, "tensorflow": 2, "torch": 2}     # digits on all three, the text tasks on one
