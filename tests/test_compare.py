"""`kdl compare`: one recipe on every backend, each in its own process, from shared initial weights.

A comparison starts its own process per backend whatever backend pytest runs on, so these tests
run once, in the jax session of `make test`; in the other two sessions they would repeat exactly
the same subprocess runs.
"""

import json

import numpy as np
import pytest

import kdl
from kdl import backend
from kdl.cli import main

TINY = ["model.options.filters=[8]", "model.options.dense=16"]
FIELDS = {"first_step_seconds", "step_seconds_median", "samples_per_second", "epoch_seconds",
          "fit_seconds", "peak_host_memory_mb", "peak_device_memory_mb", "metrics", "loss_curve",
          "agreement_losses", "output_max_abs_diff", "loss_max_abs_diff", "devices"}

pytestmark = pytest.mark.skipif(backend.name() != "jax", reason=(
    "a comparison runs every backend in subprocesses; it runs once, in the jax session"))


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", "recipes/image_classification/digits_cnn.toml", "--steps", "16",
                 "--agreement-steps", "2", "--baseline", "--out", str(out), *sum((["--set", s] for s in TINY), [])]) == 0
    return out


def test_every_backend_reports_every_measure(comparison):
    saved = json.loads((comparison / "comparison.json").read_text())
    assert [row["backend"] for row in saved["rows"]] == ["jax", "tensorflow", "torch"]
    for row in saved["rows"]:
        assert "error" not in row, row
        assert FIELDS <= set(row), FIELDS - set(row)
        assert row["steps"] == 16 and len(row["loss_curve"]) == 16
        assert 0.0 <= row["metrics"]["accuracy"] <= 1.0 and row["samples_per_second"] > 0
        assert set(row["overhead"]) == {"plain_fit", "native"} and all(row["overhead"].values())
    assert any(line.startswith("fastest steady-state step: ") for line in saved["winners"])
    for name in ("comparison.md", "throughput.png", "loss_curves.png"):
        assert (comparison / name).stat().st_size > 0
    markdown = (comparison / "comparison.md").read_text()
    assert "| torch |" in markdown and "kdl / native loop" in markdown


def test_outputs_under_the_shared_initial_weights_agree(comparison):
    outputs = {name: np.load(comparison / name / "initial_outputs.npy")
               for name in ("jax", "tensorflow", "torch")}
    for name, values in outputs.items():
        assert np.max(np.abs(values - outputs["jax"])) <= 1e-4, name
    rows = json.loads((comparison / "comparison.json").read_text())["rows"]
    assert all(row["loss_max_abs_diff"] <= 1e-4 for row in rows), [r["loss_max_abs_diff"] for r in rows]


def test_a_backend_that_cannot_run_gets_an_error_row(tmp_path, monkeypatch):
    # Make torch impossible to import in the worker processes, as on a machine without it.
    shadow = tmp_path / "shadow" / "torch"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named torch (hidden by the test)')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    result = kdl.compare("recipes/image_classification/digits_cnn.toml", ["torch", "tensorflow"],
                         steps=8, agreement_steps=1, overrides=TINY, out=tmp_path / "out",
                         progress=lambda line: None)
    torch_row, tensorflow_row = result.rows
    assert "torch" in torch_row["error"] and "hidden by the test" in torch_row["error"]
    assert "error" not in tensorflow_row and tensorflow_row["steps"] == 8
    assert result.settings["initial_weights_from"] == "tensorflow"
    assert "error: " in (tmp_path / "out" / "comparison.md").read_text()
