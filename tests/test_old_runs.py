"""Run directories written by kdl 0.1.0 (tests/fixtures/runs_v0_1_0, made by its make_runs.py)
still load on the active backend and predict what they predicted then."""

import json
import pathlib

import numpy as np
import pytest

import kdl

RUNS = pathlib.Path(__file__).parent / "fixtures" / "runs_v0_1_0"
TASKS = ["image_classifier", "text_classifier", "translator", "audio_classifier", "speech_recognizer"]


@pytest.mark.parametrize("task", TASKS)
def test_a_run_written_by_0_1_0_loads_and_predicts_the_same(task):
    recipe = kdl.recipes.load(RUNS / task)
    assert recipe.task == task
    inputs = np.load(RUNS / f"{task}.inputs.npy")
    result = recipe.predict(inputs)
    np.testing.assert_allclose(result.outputs, np.load(RUNS / f"{task}.outputs.npy"), atol=1e-5)
    then = json.loads((RUNS / f"{task}.rows.json").read_text(encoding="utf-8"))
    field = {"translator": "translations", "speech_recognizer": "transcripts"}.get(task, "labels")
    now = getattr(result, field)
    assert now == then
