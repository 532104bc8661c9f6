"""TensorBoard event files of a run, `RUN/tensorboard/`, written with `tf.summary` (TensorFlow is
installed with kdl on every backend): look at them with `tensorboard --logdir runs/`.

- `train/` and `validation/`: Keras' TensorBoard callback, per epoch: the losses, the metrics and
  the learning rate (`epoch_loss`, `epoch_accuracy`, `epoch_learning_rate`, ...); and, every
  `track.every_steps` optimizer steps, the same training scalars (`batch_loss`, ...,
  `batch_learning_rate`) at their optimizer step;
- the folder itself, when the run is saved: the recipe's hyperparameters (the hparams plugin),
  the report's metrics as `SPLIT/METRIC` scalars and its pictures (a classifier's confusion
  matrix) as `SPLIT/NAME` images.

>>> import tempfile, kdl
>>> recipe = kdl.recipes.image_classifier(epochs=1)                           # doctest: +SKIP
>>> recipe.fit(callbacks=[TensorBoard(tempfile.mkdtemp(), every_steps=10)])   # doctest: +SKIP
"""

import pathlib
import tempfile

import keras
import numpy as np

from kdl import backend, runs
from kdl import config as configs
from kdl.tracking import params

FOLDER = "tensorboard"      # in a run directory


def folder(run_dir):
    """Where a run directory's event files are."""
    return pathlib.Path(run_dir) / FOLDER


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback for the per-epoch scalars, with the training scalars every
    `every_steps` optimizer steps (0: per epoch only) written by kdl at the optimizer step.

    Keras' own `update_freq=N` counts its batch callbacks, and with `steps_per_execution` > 1
    JAX and TensorFlow call them once per execution while PyTorch calls them every step: the
    same N would mean other steps on each backend. Here the step is the optimizer's (counted
    from its `iterations` when training starts, so a resumed run goes on where it was), and the
    learning rate is logged with the losses. `fresh`: remove the event files of an earlier
    training from `log_dir` when training starts (a new training in a run directory, such as
    `--restart`; a resumed one keeps its curves).
    """

    def __init__(self, log_dir, every_steps=50, fresh=False):
        super().__init__(str(log_dir), update_freq="epoch")
        self.every_steps, self.fresh = int(every_steps), fresh
        self._step = self._logged = self._begin = 0       # optimizer steps; the batch an execution began at
        self._first = False

    def set_model(self, model):
        if self.fresh:                 # before Keras opens its writers (the model summary)
            for part in (".", "train", "validation"):     # the event files kdl writes, nothing else
                for events in pathlib.Path(self.log_dir, part).glob("events.out.tfevents.*"):
                    runs.remove(events)
            self.fresh = False         # a second fit of the same callback continues
        super().set_model(model)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._train_writer          # noqa: B018  (opened now: not inside the first timed steps)
        self._step = self._logged = _scalar(self.model.optimizer.iterations, int)
        self._first = True

    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch, logs)
        self._begin = batch

    def on_train_batch_end(self, batch, logs=None):
        if self._first:            # Keras writes the train step's graph (TensorFlow) after the first step
            super().on_train_batch_end(batch, logs)
            self._first = False
        steps = (self.params or {}).get("steps")
        last = min(batch, steps - 1) if steps else batch     # an execution may end short at the epoch's end
        self._step += last - self._begin + 1                  # more than 1 with steps_per_execution
        every = self.every_steps
        if not every or not logs or self._step // every == self._logged // every:
            return
        self._logged = self._step
        backend.sync_training_state(self.model)
        values = {f"batch_{name}": value for name, value in logs.items()}
        values["batch_learning_rate"] = learning_rate(self.model.optimizer)
        with self._train_writer.as_default(step=self._step):
            for name, value in values.items():
                if value is not None:
                    self.summary.scalar(name, _scalar(value, float))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for writer in self._writers.values():    # seen live, not after TensorFlow's 2 minutes
            writer.flush()


def learning_rate(optimizer):
    """The learning rate a Keras optimizer applies now (its schedule at its step), else None."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)     # mixed precision's loss scaling
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        return None
    return _scalar(optimizer.learning_rate, float)


def log_results(log_dir, recipe, report=None):
    """Write what a finished run adds to its event folder `log_dir`: the recipe's hyperparameters
    (flattened, with the backend) for the hparams plugin, and the report's (default: the
    recipe's) metrics as `SPLIT/METRIC` scalars and its pictures as `SPLIT/NAME` images, at
    the optimizer's last step."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    report = recipe.report if report is None else report
    optimizer = getattr(recipe.model, "optimizer", None)
    step = _scalar(optimizer.iterations, int) if optimizer is not None else 0
    hparams = {**params(configs.to_dict(recipe.config)), "backend": backend.name()}
    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default(step=step):
            hp.hparams(hparams)
            if report is not None:
                split = report.meta.get("split", "test")
                for name, value in report.metrics.items():
                    tf.summary.scalar(f"{split}/{name}", float(value))
                for name, picture in _pictures(recipe, report).items():
                    tf.summary.image(f"{split}/{name}", picture[None])
    finally:
        writer.close()


def _pictures(recipe, report):
    """{name: (H, W, C) uint8 image}: the report's pictures, as the task draws them beside
    report.json (`save_report_extras`: a classifier's confusion matrix), drawn into a
    temporary folder."""
    import tensorflow as tf

    kept, recipe.report = recipe.report, report
    try:
        with tempfile.TemporaryDirectory() as tmp:
            recipe.save_report_extras(pathlib.Path(tmp))
            return {path.stem: tf.io.decode_png(path.read_bytes()).numpy()
                    for path in sorted(pathlib.Path(tmp).glob("*.png"))}
    finally:
        recipe.report = kept


def _scalar(value, kind):
    return kind(np.asarray(keras.ops.convert_to_numpy(value)).reshape(()))
