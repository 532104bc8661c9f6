"""Nothing lost: a diverging fit stops with a clear error and keeps its last good checkpoint,
a kill during save leaves a complete run directory, models load in safe mode, no pickle."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import kdl
from kdl.cli import main
from kdl.errors import TrainingDiverged

REPO = pathlib.Path(__file__).resolve().parents[1]


def _tiny(**overrides):
    return kdl.recipes.image_classifier(**{"epochs": 1, "limit": 120, "filters": [4], "dense": 8,
                                           **overrides})


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """Two runs of the same task with different (initial) weights: "a" and "b"."""
    folder = tmp_path_factory.mktemp("runs")
    for name, seed in (("a", 0), ("b", 1)):
        recipe = _tiny(seed=seed)
        recipe.model = recipe.build_model()
        recipe.save(folder / name)
    return folder


def test_diverging_fit_stops_naming_epoch_step_and_the_good_checkpoint(tmp_path):
    recipe = _tiny(epochs=3, optimizer="sgd", learning_rate=0.01, schedule="constant")
    explode = keras.callbacks.LearningRateScheduler(lambda epoch, rate: 1e12 if epoch >= 1 else rate)
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at epoch 2, step \d+") as caught:
        recipe.fit(verbose=0, out=tmp_path, callbacks=[explode])
    checkpoint = tmp_path / "checkpoint.keras"
    assert f"from the end of epoch 1, is {str(checkpoint)!r}" in str(caught.value)
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 3    # header, epochs 1 and 2
    model = kdl.runs.load_model(checkpoint)                                 # the epoch-1 weights
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert np.isfinite(model.predict(np.full((2, 8, 8, 1), 100.0), verbose=0)).all()
    # Save the good weights into the same run directory: what training wrote stays, and the
    # files save owns are replaced (no report.json of another model survives).
    (tmp_path / "report.json").write_text("{}")
    recipe.model = model
    recipe.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"history.csv", "checkpoint.keras", "model.keras",
                                                    "recipe.toml"}
    assert not any(p.name.startswith(f".{tmp_path.name}") for p in tmp_path.parent.iterdir())


def test_divergence_in_the_first_epoch_says_there_is_no_good_checkpoint(tmp_path):
    recipe = _tiny(optimizer="sgd", learning_rate=1e12, schedule="constant")
    with pytest.raises(TrainingDiverged, match="epoch 1, step .*no good checkpoint"):
        recipe.fit(verbose=0, out=tmp_path)
    assert not (tmp_path / "checkpoint.keras").exists()


def test_an_error_while_writing_leaves_the_old_run_untouched(runs_dir, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(runs_dir / "b", target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    recipe = kdl.recipes.load(runs_dir / "a")

    def disk_full(path):
        raise OSError(28, "No space left on device")

    recipe.save_assets = disk_full                     # fails after model.keras was written
    with pytest.raises(kdl.errors.ConfigError, match="No space left on device"):
        recipe.save(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


_KILL_SCRIPT = """
import os, signal, sys
import kdl

source, target = sys.argv[1:]
recipe = kdl.recipes.load(source)
rename = os.replace

def killing_rename(src, dst):
    if os.fspath(dst) == target:       # the new run is written and the old one moved aside
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(src, dst)

os.replace = killing_rename
recipe.save(target)
"""


def test_a_kill_between_the_renames_of_save_leaves_a_complete_run(runs_dir, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(runs_dir / "b", target)
    images = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 1))
    old = kdl.recipes.load(target).predict(images).probabilities
    done = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(runs_dir / "a"), str(target)],
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    assert not target.exists()                                      # moved aside, the new not in
    recovered = kdl.recipes.load(target)                            # the recovery rule brings it back
    np.testing.assert_array_equal(recovered.predict(images).probabilities, old)
    recipe = kdl.recipes.load(runs_dir / "a")
    recipe.save(target)                                             # the next save cleans up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_lambda_layers_load_only_when_asked_to_run_code(runs_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs_dir / "a", run)
    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Lambda(lambda x: x[:, :10] / 255.0, output_shape=(10,))(flat)
    keras.Model(inputs, outputs).save(run / "model.keras")
    with pytest.raises(kdl.errors.ConfigError, match="Lambda layer"):
        kdl.recipes.load(run)
    assert kdl.recipes.load(run, unsafe=True).predict(np.zeros((8, 8))).probabilities.shape == (1, 10)
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8, 1)))
    assert main(["predict", str(run), str(tmp_path / "x.npy")]) == 1
    assert "--unsafe" in capsys.readouterr().err
    assert main(["predict", str(run), str(tmp_path / "x.npy"), "--unsafe"]) == 0


def test_kdl_has_no_pickle():
    for path in (REPO / "kdl").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, re.M), path
        assert "allow_pickle=True" not in text and "safe_mode=False" not in text, path


def test_fit_into_another_tasks_run_refuses_before_writing_anything(tmp_path):
    """Training into a directory that holds another task's run is refused before the first file
    is written (it used to overwrite that run's checkpoint.keras and history.csv first)."""
    run = shutil.copytree(REPO / "tests" / "fixtures" / "runs_v0_1_0" / "image_classifier", tmp_path / "run")
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    texts = (["a fine film", "dull and slow"] * 8, ["pos", "neg"] * 8)
    recipe = kdl.recipes.text_classifier(texts, model="fasttext", epochs=1, max_length=4)
    with pytest.raises(kdl.errors.ConfigError, match="holds a 'image_classifier' run; refusing"):
        recipe.fit(out=run, verbose=0)
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before
