"""Preemption-safe runs, and what fit does with what --out already holds.

`fit(out=RUN)` keeps a keras.callbacks.BackupAndRestore backup in
RUN/backup, so the same command run again after a kill resumes at the epoch it reached.

The training process is killed with SIGKILL in the middle of epoch 3 (no clean-up runs), the
same command is run again, and it must end like a run that was never interrupted.
"""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys

import keras
import pytest

import kdl
from kdl.cli import main
from kdl.errors import ConfigError, RunError

REPO = pathlib.Path(__file__).resolve().parents[1]
DIGITS = str(REPO / "recipes" / "image_classification" / "digits_cnn.toml")

_RECIPE = dict(limit=320, batch_size=32, epochs=4, filters=[8], steps_per_execution=1, seed=3)

_SCRIPT = """
import json, os, signal, sys
import keras
import kdl

class Preempted(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 2 and batch == 2:          # the middle of the third epoch
            os.kill(os.getpid(), signal.SIGKILL)

recipe = kdl.recipes.image_classifier(**json.loads(sys.argv[2]))
kill = sys.argv[3] == "kill"
history = recipe.fit(out=sys.argv[1], verbose=0, callbacks=[Preempted()] if kill else [])
print(json.dumps({"epochs": history.epoch, "accuracy": recipe.evaluate()["accuracy"],
                  "val_loss": history.history["val_loss"][-1]}))
"""


def _train(run_dir, kill):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", _SCRIPT, str(run_dir), json.dumps(_RECIPE),
                           "kill" if kill else "run"], env=environment, capture_output=True,
                          text=True, timeout=300)


def _epochs_logged(run_dir):
    with open(run_dir / "history.csv", newline="") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def test_a_killed_run_resumes_from_its_backup(tmp_path):
    run_dir = tmp_path / "run"
    killed = _train(run_dir, kill=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (run_dir / "backup").is_dir()                # written at the end of epochs 1 and 2
    assert _epochs_logged(run_dir) == [0, 1]

    again = _train(run_dir, kill=False)                 # the same command, run again
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads(again.stdout.strip().splitlines()[-1])
    assert resumed["epochs"] == [2, 3]                  # it picked up at the third epoch
    assert _epochs_logged(run_dir) == [0, 1, 2, 3]      # one history across both processes
    assert not (run_dir / "backup").exists()            # removed when training finishes

    whole = kdl.recipes.image_classifier(**_RECIPE)     # the same run, never interrupted
    history = whole.fit(out=tmp_path / "whole", verbose=0)
    assert history.epoch == [0, 1, 2, 3]
    # The resumed epochs see the shuffled data in another order, so close, not identical.
    assert resumed["accuracy"] == pytest.approx(whole.evaluate()["accuracy"], abs=0.05)
    assert resumed["val_loss"] == pytest.approx(history.history["val_loss"][-1], rel=0.3)


# What fit does with what --out already holds: resume an interrupted run only with the config it
# was started with, never replace a finished run or a user's folder unasked (docs/runs.md).

class _Interrupt(keras.callbacks.Callback):
    """Ctrl-C at the start of epoch `at` (counted from 0): the backup of the epochs before stays."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt


def _tiny(**overrides):
    return kdl.recipes.image_classifier(**{"epochs": 3, "limit": 120, "filters": [4], "dense": 8,
                                           **overrides})


def _interrupted(run_dir, at=1, **overrides):
    with pytest.raises(KeyboardInterrupt):
        _tiny(**overrides).fit(out=run_dir, verbose=0, callbacks=[_Interrupt(at)])
    assert (run_dir / "backup").is_dir() and _epochs_logged(run_dir) == list(range(at))


def test_resuming_with_a_changed_config_names_the_change_and_restart_discards_it(tmp_path):
    run_dir = tmp_path / "run"
    _interrupted(run_dir)
    changed = r"interrupted run .*model\.options\.filters: \[4\] -> \[6\].*--restart"
    with pytest.raises(ConfigError, match=changed):
        _tiny(filters=[6]).fit(out=run_dir, verbose=0)
    assert (run_dir / "backup").is_dir()                        # nothing was discarded
    history = _tiny(filters=[6]).fit(out=run_dir, verbose=0, restart=True)
    assert history.epoch == [0, 1, 2] and _epochs_logged(run_dir) == [0, 1, 2]
    assert kdl.recipes.load(run_dir / "recipe.toml").config.model.options["filters"] == [6]


def test_a_truncated_backup_falls_back_to_the_previous_epoch_or_is_a_clear_error(tmp_path):
    two = tmp_path / "two"                  # two epochs backed up: the previous one is kept too
    _interrupted(two, at=2)
    weights = two / "backup" / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[:100])
    assert _tiny().fit(out=two, verbose=0).epoch == [1, 2]     # resumed from epoch 1's backup

    one = tmp_path / "one"                  # one epoch backed up, and it is truncated
    _interrupted(one, at=1)
    weights = one / "backup" / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RunError, match=r"cannot resume from the backup in .*backup.*--restart"):
        _tiny().fit(out=one, verbose=0)
    assert _tiny().fit(out=one, verbose=0, restart=True).epoch == [0, 1, 2]


def test_a_finished_run_is_replaced_only_with_restart_and_its_own_recipe_continues(tmp_path):
    run_dir = tmp_path / "run"
    trained = _tiny(epochs=1)
    trained.fit(out=run_dir, verbose=0)
    trained.save(run_dir)
    model_bytes = (run_dir / "model.keras").read_bytes()
    with pytest.raises(ConfigError, match=r"holds a finished image_classifier run \(model\.keras, "
                                          r"checkpoint\.keras\).*--restart"):
        _tiny(epochs=1).fit(out=run_dir, verbose=0)
    assert (run_dir / "model.keras").read_bytes() == model_bytes

    trained.fit(out=run_dir, verbose=0)                         # the same recipe keeps training there
    assert _epochs_logged(run_dir) == [0, 0]                    # its history goes on
    loaded = kdl.recipes.load(run_dir)                          # so does a run loaded from there
    loaded.fit(epochs=1, out=run_dir, verbose=0)
    assert _epochs_logged(run_dir) == [0, 0, 0]

    _tiny(epochs=1).fit(out=run_dir, verbose=0, restart=True)   # a new recipe, asked to replace it
    assert _epochs_logged(run_dir) == [0] and not (run_dir / "model.keras").exists()


def test_overwrite_adds_a_run_to_a_users_folder_and_keeps_its_files(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(ConfigError, match="not a kdl run .*--overwrite"):
        _tiny(epochs=1).fit(out=folder, verbose=0)
    _tiny(epochs=1).fit(out=folder, verbose=0, overwrite=True).history
    assert (folder / "holiday.jpg").read_bytes() == b"mine" and (folder / "recipe.toml").is_file()


def test_kdl_train_twice_on_one_out_refuses_then_restart_and_overwrite_work(tmp_path, capsys):
    run_dir, small = tmp_path / "run", ["--epochs", "1", "--quiet", "--set", "data.limit=120"]
    assert main(["train", DIGITS, "--out", str(run_dir), *small]) == 0
    assert main(["train", DIGITS, "--out", str(run_dir), *small]) == 1
    error = capsys.readouterr().err
    assert "Traceback" not in error and "--restart" in error
    assert "holds a finished image_classifier run" in error
    assert main(["train", DIGITS, "--out", str(run_dir), "--restart", *small]) == 0
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    assert main(["train", DIGITS, "--out", str(folder), *small]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["train", DIGITS, "--out", str(folder), "--overwrite", *small]) == 0
    assert (folder / "notes.txt").read_text() == "keep" and (folder / "model.keras").is_file()
