"""Step timing shared by a comparison's kdl run and its baselines: `StepTimer`, a Keras callback
that records the wall time of every training step and the loss curve, and `median_after_warmup`,
the steady-state step time every row reports.

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
    steps_per_execution > 1 a call's time is shared equally among its steps.

    The loss curve is the same on every backend: one point per group of `group` steps (the
    recipe's steps_per_execution; a group ends early at an epoch's end), at the group's last step,
    `loss_steps` counting steps from 1 across epochs, and `epoch_end_steps` where each epoch ended.
    Keras reports the loss once per compiled call on JAX and TensorFlow (a group) and after every
    step on PyTorch, whose Keras trainer runs one step per call: there only the group's last value
    is kept. The value is Keras' `loss`, the running mean since the epoch began.
    """

    def __init__(self, batches_per_epoch, progress=None, group=1):
        super().__init__()
        self.batches_per_epoch, self.group = batches_per_epoch, max(int(group), 1)
        self.progress = progress
        self.step_seconds, self.epoch_seconds, self.losses, self.loss_steps = [], [], [], []
        self.epoch_end_steps = []
        self.first_step_seconds = None

    def on_train_begin(self, logs=None):
        self.fit_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start, self.steps_before_epoch = time.perf_counter(), len(self.step_seconds)

    def on_train_batch_begin(self, batch, logs=None):
        self.step_start, self.first_batch = time.perf_counter(), batch

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])          # reading the value waits for the device
        now = time.perf_counter()
        last = min(batch, self.batches_per_epoch - 1)   # a call may end short at the epoch's end
        steps = last - self.first_batch + 1             # > 1 with steps_per_execution
        self.step_seconds += [(now - self.step_start) / steps] * steps
        if (last + 1) % self.group == 0 or last == self.batches_per_epoch - 1:   # a group's last step
            self.losses.append(loss)
            self.loss_steps.append(self.steps_before_epoch + last + 1)
        if self.first_step_seconds is None:
            self.first_step_seconds = now - self.fit_start

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self.epoch_start)
        self.epoch_end_steps.append(len(self.step_seconds))
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
