"""Run directories written by kdl 0.1.0 (tests/fixtures/runs_v0_1_0, made by its make_runs.py)
still load on the active backend and predict what they predicted then."""

import json
import pathlib
import shutil

import numpy as np
import pytest

import kdl
from kdl.errors import ConfigError

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


@pytest.mark.parametrize("task, edit", [
    ("image_classifier", lambda run: _replace(run / "recipe.toml", "class_names = [", 'class_names = ["x",')),
    ("speech_recognizer", lambda run: (run / "characters.json").write_text('["a", "b", "c", "d"]\n')),
])
def test_a_run_whose_files_disagree_is_a_clear_error(task, edit, tmp_path):
    run = shutil.copytree(RUNS / task, tmp_path / task)
    edit(run)
    with pytest.raises(ConfigError, match="does not hold together: .* outputs per position but model.keras"):
        kdl.recipes.load(run)


def _replace(path, old, new):
    path.write_text(path.read_text().replace(old, new, 1))
