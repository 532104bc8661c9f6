"""Training callbacks: the ones kdl adds to every fit, and `EpochLine` for `kdl train --quiet`.

`DivergenceStop` stops training at the first batch whose loss is NaN or infinite, keeps the
last good per-epoch checkpoint (Keras' ModelCheckpoint would otherwise overwrite it with the
diverged weights at the end of that epoch), and `raise_if_diverged()` then raises
`kdl.errors.TrainingDiverged`, naming the epoch, the step and the checkpoint.

Steps are counted from 1 within an epoch, as Keras reports them to callbacks: with
`steps_per_execution` > 1 (JAX, TensorFlow) Keras reports once per execution, so the step
named is the last batch of the execution in which the loss was first seen non-finite.

>>> stop = DivergenceStop()
>>> stop.on_epoch_begin(0); stop.on_train_batch_end(4, {"loss": float("nan")})
>>> stop.diverged
(1, 5, nan)
"""

import math
import os
import pathlib
import time

import keras
import numpy as np

from kdl.errors import TrainingDiverged


class DivergenceStop(keras.callbacks.Callback):
    """Stop on a NaN/Inf loss; `checkpoint`: the per-epoch checkpoint file to keep good."""

    def __init__(self, checkpoint=None):
        super().__init__()
        self.checkpoint = pathlib.Path(checkpoint) if checkpoint is not None else None
        self.diverged = None    # (epoch, step, loss), both counted from 1, once it happened
        self._epoch = 0

    @property
    def _kept(self):
        return self.checkpoint.with_name(f".{self.checkpoint.name}.last-good")

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
        if self.checkpoint is not None and self.checkpoint.is_file():
            os.replace(self.checkpoint, self._kept)   # ModelCheckpoint will write the bad weights

    def on_train_end(self, logs=None):
        if self.diverged is None or self.checkpoint is None:
            return
        if self._kept.is_file():
            os.replace(self._kept, self.checkpoint)   # put the last good checkpoint back
        elif self.checkpoint.is_file():
            os.remove(self.checkpoint)                 # diverged in the first epoch: no good one

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
