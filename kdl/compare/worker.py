"""One backend's side of a comparison, run as `python -m kdl.compare.worker SPEC.json`.

The parent (`kdl.compare.runner`) starts one such process per backend with its own
`KERAS_BACKEND`; an extra first process ("init") builds the model once and saves the
initial weights and a fixed input batch that every backend then loads. Each run writes
`result.json` (and `initial_outputs.npy`) into its folder; stdout carries progress lines.
The worker only uses the recipe's public API (`build_model`, `compile_model(model=...)`,
`batches`, `fit`, `evaluate`), and works for any input structure: one array, or a dict such
as a translator's {"source_ids", "target_ids"}. The fixed batch is saved without pickle:

>>> import tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "inputs.npz"
>>> save_arrays(path, {"source_ids": np.ones((2, 3), "int32"), "target_ids": np.zeros((2, 4), "int32")})
>>> {name: array.shape for name, array in load_arrays(path).items()}
{'source_ids': (2, 3), 'target_ids': (2, 4)}
>>> flat_outputs([np.zeros((2, 3)), np.ones(2)]).shape     # several outputs: one flat array
(8,)
"""

import json
import math
import pathlib
import resource
import sys
import time

import keras
import numpy as np

from kdl import backend, explain, recipes, runs
from kdl import progress as kdl_progress
from kdl.compare import baselines
from kdl.compare.timing import StepTimer
from kdl.tracking import tensorboard

STRUCTURE = "structure"    # the key of an .npz file of save_arrays that holds the structure
STEPS = "steps"            # a progress line "steps DONE TOTAL": training steps done so far (the parent's bar)


class StepProgress(keras.callbacks.Callback):
    """Reports the training steps done as "steps DONE TOTAL" lines, at most one a second (and
    the last), for the parent's progress bar (kdl.compare.runner)."""

    def __init__(self, steps_per_epoch, epochs, progress, every=1.0):
        super().__init__()
        self.steps_per_epoch, self.total = steps_per_epoch, steps_per_epoch * epochs
        self.progress, self.every = progress, every
        self.epoch, self.done, self.sent = 0, 0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.done = min(self.epoch * self.steps_per_epoch + batch + 1, self.total)
        if time.perf_counter() - self.sent >= self.every:
            self.sent = time.perf_counter()
            self.progress(f"{STEPS} {self.done} {self.total}")

    def on_train_end(self, logs=None):
        self.progress(f"{STEPS} {self.done} {self.total}")


class _PassThrough(keras.layers.Layer):
    """Stands in for a random augmentation layer in the deterministic copy."""

    def call(self, inputs, **kwargs):
        return inputs


def deterministic_copy(model):
    """`model` with the same weights and no randomness while training: dropout rates are 0
    and random augmentation layers pass their input through. Backends draw different random
    numbers, so only such a copy can take identical training steps on each of them."""

    def random_only(layer):
        sublayers = getattr(layer, "layers", None)
        if sublayers:
            return all(random_only(sub) for sub in sublayers)
        return hasattr(layer, "seed_generator") and not isinstance(layer, keras.layers.Dropout)

    def clone(layer):
        if random_only(layer):
            return _PassThrough(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in copy._flatten_layers():
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    copy.set_weights(model.get_weights())
    return copy


def losses_after_identical_steps(recipe, steps):
    """The recipe's own loss on the first (unshuffled) training batch before and after each of
    `steps` plain SGD steps (`train_on_batch`) on the first `steps` batches, taken by a
    deterministic copy of the recipe's model; the recipe's model is left as it is."""
    model = deterministic_copy(recipe.model)
    recipe.compile_model(keras.optimizers.SGD(recipe.config.train.learning_rate), model=model,
                         steps_per_execution=1)
    batches = list(baselines.numpy_batches(recipe, "train", max(steps, 1)))
    probe_x, probe_y = batches[0]
    loss_of = baselines.mean_loss(recipe.compile_arguments()["loss"])

    def probe_loss():
        return float(loss_of(probe_y, model(probe_x, training=False)))

    losses = [probe_loss()]
    for x, y in batches[:steps]:
        model.train_on_batch(x, y)
        losses.append(probe_loss())
    return losses


def fit_warmup_to_the_steps(recipe, steps, progress):
    """A `--steps` comparison trains `steps` steps, fewer than the recipe's run: a warm-up longer
    than that (kdl.config.check_schedule refuses one longer than the run) is cut to the steps."""
    train = recipe.config.train
    if train.schedule == "warmup_cosine" and train.warmup_steps > steps:
        progress(f"train.warmup_steps {train.warmup_steps} cut to the {steps} steps compared")
        train.warmup_steps = steps


def save_arrays(path, arrays):
    """Save `arrays` (one array, or a dict / list / tuple of them, nested) as an .npz file
    that `load_arrays` reads back without pickle: the arrays in keras.tree.flatten order and
    the structure as JSON (tuples come back as lists)."""
    leaves = keras.tree.flatten(arrays)
    structure = keras.tree.pack_sequence_as(arrays, list(range(len(leaves))))
    np.savez(path, **{STRUCTURE: np.array(json.dumps(structure))},
             **{f"array_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)})


def load_arrays(path):
    """The arrays `save_arrays` saved, in their structure."""
    with np.load(path) as saved:
        return keras.tree.map_structure(lambda i: saved[f"array_{i}"], json.loads(str(saved[STRUCTURE])))


def flat_outputs(outputs):
    """A model's outputs as one array: several outputs (a list, a dict) flattened and joined,
    so that outputs of any model compare with one max abs difference."""
    if not keras.tree.is_nested(outputs):
        return np.asarray(outputs)
    return np.concatenate([np.ravel(output) for output in keras.tree.flatten(outputs)])


def make_recipe(spec):
    """The recipe the spec names: a recipe file or a task name, with its overrides."""
    source = spec["recipe"]
    if source.endswith(".toml"):
        return recipes.load(source, spec["overrides"], data_root=spec["data_root"])
    return recipes.create(source, spec["overrides"], data_root=spec["data_root"])


def init(spec):
    """Build the model once: save its initial weights and a fixed input batch for all backends."""
    recipe = make_recipe(spec)
    backend.set_seed(recipe.config.seed)
    model = recipe.build_model()
    model.save(spec["initial_model"])
    inputs, _ = next(recipe.batches("test").as_numpy_iterator())
    save_arrays(spec["fixed_inputs"], inputs)
    return {"backend": backend.name(), "parameters": int(model.count_params())}


def run(spec, out, progress):
    """Train from the shared initial weights and measure; returns the result dict."""
    start = time.perf_counter()
    recipe = make_recipe(spec)
    if spec["tuned"]:
        recipe.jit_compile = True          # torch: torch.compile; jax/tensorflow: XLA
    recipe.data
    data_seconds = time.perf_counter() - start
    start = time.perf_counter()
    backend.use_exact_float32()
    recipe.model = runs.load_model(spec["initial_model"])     # fit() trains it from these weights
    load_seconds = time.perf_counter() - start
    outputs = recipe.model.predict(load_arrays(spec["fixed_inputs"]), verbose=0)
    np.save(out / "initial_outputs.npy", flat_outputs(outputs))
    attributions = explain.agreement_attributions(recipe, load_arrays(spec["fixed_inputs"]))
    if attributions is not None:      # integrated gradients under the same weights (kdl.explain)
        np.save(out / "initial_attributions.npy", attributions)
    progress("initial outputs saved; identical-steps check")
    agreement_losses = losses_after_identical_steps(recipe, spec["agreement_steps"])
    epochs, steps = spec["epochs"], spec["steps"]
    batches = len(recipe.batches("train"))
    group = recipe.config.train.steps_per_execution     # the same on every backend (torch runs 1 a call)
    if steps:   # whole compiled calls: Keras runs steps_per_execution batches at a time
        epochs, steps = 1, min(math.ceil(steps / group) * group, batches)
        fit_warmup_to_the_steps(recipe, steps, progress)
    timer = StepTimer(steps or batches, progress, group=group)
    shown = StepProgress(steps or batches, epochs or recipe.config.train.epochs, progress)
    track = recipe.config.track     # this backend's TensorBoard run, OUT/tensorboard/LABEL: curves overlay
    board = [tensorboard.TensorBoard(spec["tensorboard"], track.every_steps, fresh=True)
             ] if track.tensorboard and spec.get("tensorboard") else []
    start = time.perf_counter()
    recipe.fit(epochs=epochs, steps_per_epoch=steps, callbacks=[timer, shown, *board], verbose=0)
    fit_seconds = time.perf_counter() - start
    report = recipe.evaluate()
    step = timer.steady_step_seconds()
    batch_size = recipe.config.data.batch_size
    device_peak = backend.peak_device_memory()
    host_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # before the baselines
    baseline = {}
    if spec["baseline"]:
        progress("baselines: plain model.fit, native training loop")
        baseline = baselines.baselines(recipe, spec["initial_model"], epochs, steps, len(timer.step_seconds),
                                       compiled=spec["baseline_compiled"])
    if board:
        tensorboard.log_results(spec["tensorboard"], recipe)      # the report and hyperparameters
    return {
        "backend": backend.name(),
        "devices": backend.devices(),
        "jit_compile": recipe.jit_compile,
        "data_seconds": data_seconds,
        "load_seconds": load_seconds,
        "first_step_seconds": timer.first_step_seconds,
        "step_seconds_median": step,
        "samples_per_second": batch_size / step if step else None,
        "steps": len(timer.step_seconds),
        "epoch_seconds": timer.epoch_seconds,
        "fit_seconds": fit_seconds,
        "peak_host_memory_mb": host_peak,
        "peak_device_memory_mb": device_peak / 2**20 if device_peak else None,
        "metrics": report.metrics,
        "loss_curve": timer.losses,
        "loss_curve_steps": timer.loss_steps,
        "epoch_end_steps": timer.epoch_end_steps,
        "loss_group": group,
        "agreement_losses": agreement_losses,
        "batch_size": batch_size,
        "baselines": baseline,
    }


def main(spec_path):
    spec = json.loads(pathlib.Path(spec_path).read_text())
    out = pathlib.Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)

    def progress(message):
        print(message, flush=True)

    kdl_progress.set_output(progress)     # data loading, vocabularies: plain lines the parent shows
    result = init(spec) if spec["mode"] == "init" else run(spec, out, progress)
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
