"""The benchmark scripts that cannot be run in full here stay runnable, tiny, on this machine's CPU.

`benchmarks/gpu.sh --dry-run` takes every step of the GPU measurement (installs aside), the text
comparisons on one backend each, and writes the tables docs/benchmarks.md takes. It runs once, in
the jax session of `make test`: the script starts every backend's processes itself (`kdl compare`
and the time-to-accuracy runs), so the other two sessions would run the very same commands again.

`benchmarks/leave_one_speaker_out.py` trains in its own process on the backend it is given, so it
runs on every backend.
"""

import importlib.util
import json
import os
import subprocess
import sys
import tomllib

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


def test_leave_one_speaker_out_holds_each_voice_out_and_scores_the_official_split(tmp_path, shared_data):
    spec = importlib.util.spec_from_file_location("loso", REPO / "benchmarks" / "leave_one_speaker_out.py")
    loso = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loso)
    out = tmp_path / "loso"
    tiny = ["data.limit=600", "train.epochs=1", "model.options.filters=[4]", "model.options.dense=8",
            "data.augment.probability=1.0"]
    assert loso.main(["recipes/speech/fsdd_digits_new_voices.toml", "--out", str(out), "--speakers", "theo",
                      "--official", "--data-root", str(shared_data), *[f"--set={s}" for s in tiny]]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["folds"]) == {"theo", "official"} and results["backend"] == backend.name()
    held_out = tomllib.loads((out / "theo" / "recipe.toml").read_text())["data"]
    official = tomllib.loads((out / "official" / "recipe.toml").read_text())["data"]
    assert (held_out["split"], held_out["test_speakers"]) == ("speaker", ["theo"])
    assert (official["split"], official["test_speakers"]) == ("default", [])   # not the recipe's george
    assert 0 <= results["folds"]["theo"]["accuracy"] <= 1 and "| theo |" in (out / "results.md").read_text()


@pytest.mark.skipif(backend.name() != "torch", reason="it measures torch.compile, which only PyTorch has "
                                                      "(the script selects torch itself: run once)")
def test_torch_compile_probe_reports_step_times_and_graph_breaks(shared_data):
    env = dict(os.environ, KDL_DATA=str(shared_data))
    command = [sys.executable, "benchmarks/torch_compile.py", "recipes/image_classification/digits_cnn.toml",
               "--steps", "12"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    row = [line for line in done.stdout.splitlines() if line.startswith("| digits_cnn.toml |")]
    eager, compiled, ratio, first, graphs, recompiles, breaks = row[0].strip("| ").split(" | ")[1:]
    assert float(eager) > 0 and float(compiled) > 0 and float(first) > 0
    assert float(ratio) == pytest.approx(float(compiled) / float(eager), abs=0.01)
    assert int(graphs) >= 1 and int(recompiles) >= 0 and int(breaks) >= 0      # TorchDynamo's counters
