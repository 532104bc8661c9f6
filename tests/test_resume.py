"""Preemption-safe runs: `fit(out=RUN)` keeps a keras.callbacks.BackupAndRestore backup in
RUN/backup, so the same command run again after a kill resumes at the epoch it reached.

The training process is killed with SIGKILL in the middle of epoch 3 (no clean-up runs), the
same command is run again, and it must end like a run that was never interrupted.
"""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest

import kdl

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
