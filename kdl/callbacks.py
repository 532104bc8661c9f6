"""Training callbacks: the ones kdl adds to every fit, and `EpochLine` for `kdl train --quiet`.

`DivergenceStop` stops training at the first batch whose loss is NaN or infinite, and
`raise_if_diverged()` then raises `kdl.errors.TrainingDiverged`, naming the epoch, the step and
the last good checkpoint. `Checkpoint` writes that per-epoch checkpoint: to a temporary file,
synced, then renamed over the last one, so a kill or a full disk never leaves a partial
checkpoint where a good one was, and it skips an epoch that diverged.

Steps are counted from 1 within an epoch, as Keras reports them to callbacks: with
`steps_per_execution` > 1 (JAX, TensorFlow) Keras reports once per execution, so the step
named is the last batch of the execution in which the loss was first seen non-finite.

>>> stop = DivergenceStop()
>>> stop.on_epoch_begin(0); stop.on_train_batch_end(4, {"loss": float("nan")})
>>> stop.diverged
(1, 5, nan)
"""

import json
import math
import os
import pathlib
import time

import keras
import numpy as np

from kdl import distribute
from kdl.errors import RunError, TrainingDiverged


class DivergenceStop(keras.callbacks.Callback):
    """Stop on a NaN/Inf loss; `checkpoint`: the per-epoch checkpoint file to keep good."""

    def __init__(self, checkpoint=None):
        super().__init__()
        self.checkpoint = pathlib.Path(checkpoint) if checkpoint is not None else None
        self.diverged = None    # (epoch, step, loss), both counted from 1, once it happened
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.diverged = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or self.diverged is not None:
            return
        loss = float(np.asarray(loss))
        if math.isfinite(loss):
            return
        self.diverged = (self._epoch + 1, batch + 1, loss)
        if self.model is not None:
            self.model.stop_training = True

    def raise_if_diverged(self):
        """Raise TrainingDiverged if the last fit stopped on a NaN/Inf loss."""
        if self.diverged is None:
            return
        epoch, step, loss = self.diverged
        if self.checkpoint is None:
            where = "no checkpoint was kept (pass out=DIR to fit to keep one per epoch)"
        elif self.checkpoint.is_file():
            when = f"the end of epoch {epoch - 1}" if epoch > 1 else "before this fit"
            where = f"the last good checkpoint, from {when}, is {str(self.checkpoint)!r}"
        else:
            where = (f"there is no good checkpoint: it diverged in the first epoch "
                     f"(nothing was written to {str(self.checkpoint)!r})")
        raise TrainingDiverged(
            f"training diverged: the loss became {loss} at epoch {epoch}, step {step}; training "
            f"stopped there. {where}. Lower train.learning_rate, or use gradient clipping or a "
            "schedule.")


class Checkpoint(keras.callbacks.Callback):
    """Save the model to `path` at the end of every epoch that did not diverge (`divergence`, a
    DivergenceStop), atomically: a full disk is a RunError, and the last good checkpoint stays."""

    def __init__(self, path, divergence):
        super().__init__()
        self.path, self.divergence = pathlib.Path(path), divergence

    def on_epoch_end(self, epoch, logs=None):
        if self.divergence.diverged is not None:
            return
        partial = self.path.with_name(f".{self.path.stem}.partial.keras")
        try:
            with distribute.local():
                self.model.save(partial)
            with open(partial, "rb") as written:
                os.fsync(written.fileno())
            os.replace(partial, self.path)
        except OSError as error:
            partial.unlink(missing_ok=True)
            kept = (f"the checkpoint of the last good epoch is kept: {str(self.path)!r}"
                    if self.path.is_file() else "no checkpoint was written yet")
            raise RunError(f"cannot write the checkpoint of epoch {epoch + 1} to {str(self.path)!r}: "
                           f"{error.strerror or error}; {kept}. Free some space (or choose another "
                           "--out) and run the same command again to resume.") from None


class Backup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore in `folder`, keeping the previous epoch's backup too (a kill while
    one is written falls back to the other); a backup that cannot be restored (truncated, or
    from another model) is a RunError naming the file and the choice, not a Keras traceback.
    `write=False`: restore only (every process of a multi-process run resumes from process 0's)."""

    def __init__(self, folder, write=True):
        super().__init__(str(folder), double_checkpoint=True)
        self.folder = pathlib.Path(folder)
        self.write = write      # False: only restore (the other processes of a multi-process run)

    @staticmethod
    def saved_epoch(folder):
        """The number of epochs the backup in `folder` holds (0: none, or unreadable)."""
        try:
            return int(json.loads((pathlib.Path(folder) / "training_metadata.json").read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def on_epoch_end(self, epoch, logs=None):
        if self.write:
            super().on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self.write:
            super().on_train_batch_end(batch, logs)

    def on_train_end(self, logs=None):
        if self.write:      # Keras deletes the backup when training ends
            super().on_train_end(logs)

    def _save_model(self):
        with distribute.local():
            super()._save_model()

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError, KeyError, TypeError) as error:
            reason = " ".join(str(error).split())[:300]
            raise RunError(f"cannot resume from the backup in {str(self.folder)!r} (written by an "
                           f"interrupted run): {reason}. Pass --restart (fit(restart=True)) to discard "
                           "the interrupted training and start again.") from None


class AverageOverProcesses(keras.callbacks.Callback):
    """Each epoch's logs averaged over the processes of a multi-process run whose engine logs
    every process's own slice (PyTorch): the slices are equal, so the mean of their means is the
    global batch's. First in the list, so that history, CSV and TensorBoard see the averages."""

    def on_epoch_end(self, epoch, logs=None):
        if not logs:
            return
        everyone = distribute.all_gather({name: float(value) for name, value in logs.items()})
        for name in logs:
            logs[name] = float(np.mean([theirs[name] for theirs in everyone]))


class EpochLine(keras.callbacks.Callback):
    """Prints one line per epoch, its logs and seconds: the progress of a run without a progress
    bar (`kdl train --quiet`, logs of long runs).

    >>> line = EpochLine(epochs=2)
    >>> line.on_epoch_begin(0); line.on_epoch_end(0, {"loss": 0.5})     # doctest: +ELLIPSIS
    epoch 1/2  loss 0.5000  (0 s)
    """

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        values = "  ".join(f"{name} {float(value):.4f}" for name, value in (logs or {}).items()
                           if name != "learning_rate")
        print(f"epoch {epoch + 1}/{self.epochs}  {values}  ({time.perf_counter() - self.start:.0f} s)",
              flush=True)
