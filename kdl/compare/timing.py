"""Step timing shared by a comparison's kdl run and its baselines: `StepTimer`, a Keras callback
that records the wall time of every training step, and `median_after_warmup`, the steady-state
step time every row reports.

>>> median_after_warmup([9.0, 5.0, 4.0, 1.0, 2.0, 1.0])   # the first WARMUP_STEPS are left out
1.0
>>> median_after_warmup([3.0, 1.0])                       # too few steps: the median of all
2.0
"""

import statistics
import time

import keras

WARMUP_STEPS = 3   # steps left out of the steady-state median (tracing, compilation, caches)


class StepTimer(keras.callbacks.Callback):
    """Wall time of every training step (device synchronised) and of every epoch. With
    steps_per_execution > 1 a call's time is shared equally among its steps."""

    def __init__(self, batches_per_epoch, progress=None):
        super().__init__()
        self.batches_per_epoch = batches_per_epoch
        self.progress = progress
        self.step_seconds, self.epoch_seconds, self.losses = [], [], []
        self.first_step_seconds = None

    def on_train_begin(self, logs=None):
        self.fit_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self.step_start, self.first_batch = time.perf_counter(), batch

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])          # reading the value waits for the device
        now = time.perf_counter()
        last = min(batch, self.batches_per_epoch - 1)   # a call may end short at the epoch's end
        steps = last - self.first_batch + 1             # > 1 with steps_per_execution
        self.step_seconds += [(now - self.step_start) / steps] * steps
        self.losses += [loss] * steps
        if self.first_step_seconds is None:
            self.first_step_seconds = now - self.fit_start

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self.epoch_start)
        if self.progress:
            self.progress(f"epoch {epoch + 1} loss {logs['loss']:.4f} "
                          f"({self.epoch_seconds[-1]:.1f} s)")

    def steady_step_seconds(self):
        return median_after_warmup(self.step_seconds)


def median_after_warmup(step_seconds):
    """The median of `step_seconds` after the first WARMUP_STEPS (all of them when there are
    no more); None for none."""
    steady = step_seconds[WARMUP_STEPS:] or step_seconds
    return statistics.median(steady) if steady else None
