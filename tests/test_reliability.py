"""Nothing lost: a diverging fit stops with a clear error and keeps its last good checkpoint,
a kill during save leaves a complete run directory, models load in safe mode, no pickle."""

import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import kdl
from kdl.cli import main
from kdl.errors import TrainingDiverged

REPO = pathlib.Path(__file__).resolve().parents[1]
DIGITS = str(REPO / "recipes" / "image_classification" / "digits_cnn.toml")


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
                                                    "recipe.toml", "README.md", "training_curves.png",
                                                    "tensorboard"}
    assert not any(p.name.startswith(f".{tmp_path.name}") for p in tmp_path.parent.iterdir())


def test_divergence_in_the_first_epoch_says_there_is_no_good_checkpoint(tmp_path):
    recipe = _tiny(optimizer="sgd", learning_rate=1e12, schedule="constant")
    with pytest.raises(TrainingDiverged, match="epoch 1, step .*no good checkpoint"):
        recipe.fit(verbose=0, out=tmp_path)
    assert not (tmp_path / "checkpoint.keras").exists()


def test_an_error_while_writing_leaves_the_old_run_untouched(runs_dir, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(runs_dir / "b", target)
    before = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    recipe = kdl.recipes.load(runs_dir / "a")

    def disk_full(path):
        raise OSError(28, "No space left on device")

    recipe.save_assets = disk_full                     # fails after model.keras was written
    with pytest.raises(kdl.errors.RunError, match="No space left on device"):
        recipe.save(target)
    assert {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
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


def test_disk_full_while_checkpointing_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """A full disk during the checkpoint of epoch 2 (an injected ENOSPC) is one clear error, and
    the checkpoint of epoch 1 stays whole and loadable: never a truncated one in its place."""
    saves = []
    real_save = keras.Model.save

    def save_until_full(model, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 2:
            pathlib.Path(path).write_bytes(b"PK\x03\x04 half a zip")     # what a full disk leaves
            raise OSError(28, "No space left on device")
        return real_save(model, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save_until_full)
    recipe = _tiny(epochs=3)
    with pytest.raises(kdl.errors.RunError, match="checkpoint of epoch 2 .*No space left on device.*last "):
        recipe.fit(out=tmp_path / "run", verbose=0)
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if not p.name.startswith(".kdl")) == [
        "backup", "checkpoint.keras", "history.csv", "recipe.toml", "tensorboard"]
    assert kdl.runs.load_model(tmp_path / "run" / "checkpoint.keras").count_params() > 0


_HOLD_SCRIPT = """
import sys, time
from kdl import runs
with runs.lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_trainer_on_the_same_run_fails_at_once_naming_the_holder(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_SCRIPT, str(run)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", DIGITS, "--out", str(run), "--epochs", "1"]) == 1
        error = capsys.readouterr().err
        assert error.startswith("kdl: error: ") and f"in use by process {holder.pid}" in error
        assert sorted(p.name for p in run.iterdir()) == [".kdl-lock"]          # nothing was written
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its stale lock is taken over, and released at the end
    assert _tiny(epochs=1).fit(out=run, verbose=0) is not None
    assert not (run / ".kdl-lock").exists()


def test_saving_keeps_a_run_folders_mode_and_links_and_refuses_a_users_folder(runs_dir, tmp_path):
    run = shutil.copytree(runs_dir / "a", tmp_path / "run")
    (tmp_path / "notes").mkdir()
    (run / "notes").symlink_to(tmp_path / "notes", target_is_directory=True)
    run.chmod(0o700)
    kdl.recipes.load(runs_dir / "b").save(run)
    assert (run.stat().st_mode & 0o777) == 0o700 and (run / "notes").is_symlink()

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(kdl.errors.ConfigError, match="not empty and is not a kdl run .*holiday.jpg"):
        kdl.recipes.load(runs_dir / "a").save(folder)
    with pytest.raises(kdl.errors.ConfigError, match="not empty and is not a kdl run"):
        _tiny().fit(out=folder, verbose=0)
    for odd in (".", "..", "/"):
        with pytest.raises(kdl.errors.ConfigError, match="not a folder of its own"):
            _tiny().fit(out=odd, verbose=0)
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]


def test_ctrl_c_during_kdl_train_is_one_line_and_the_same_command_resumes(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "kdl", "train", DIGITS,
               "--quiet", "--out", str(run), "--set", "data.limit=600", "--epochs", "4"]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    # a shell that starts the suite in the background ignores SIGINT, and children inherit that
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    training = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=environment, preexec_fn=default_sigint)
    for line in training.stdout:
        if line.startswith("epoch 2/"):
            training.send_signal(signal.SIGINT)
            break
    _, error = training.communicate(timeout=120)
    assert training.returncode == 130, error[-2000:]
    assert "Traceback" not in error and "kdl: interrupted; the last finished epoch is in" in error
    assert (run / "backup").is_dir() and not (run / ".kdl-lock").exists()
    again = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "epoch 1/" not in again.stdout and "epoch 4/4" in again.stdout      # it resumed
