"""One backend's side of a comparison, run as `python -m kdl.compare.worker SPEC.json`.

The parent (`kdl.compare.runner`) starts one such process per backend with its own
`KERAS_BACKEND`; an extra first process ("init") builds the model once and saves the
initial weights and a fixed input batch that every backend then loads. Each run writes
`result.json` (and `initial_outputs.npy`) into its folder; stdout carries progress lines.
"""

import json
import math
import pathlib
import resource
import statistics
import sys
import time

import keras
import numpy as np

from kdl import backend, recipes

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
        return _median_after_warmup(self.step_seconds)


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
    """Loss on the first (unshuffled) training batch before and after each of `steps` plain
    SGD steps on the first `steps` batches, taken by a deterministic copy of the model."""
    original = recipe.model
    recipe.model = deterministic_copy(original)
    try:
        recipe.compile_model(keras.optimizers.SGD(recipe.config.train.learning_rate), steps_per_execution=1)
        batches = [(np.array(x), np.array(y))     # own copies: torch.compile rejects tf-owned buffers
                   for x, y in recipe.batches("train").take(max(steps, 1)).as_numpy_iterator()]
        probe_x, probe_y = batches[0]

        def probe_loss():
            return float(recipe.model.evaluate(probe_x, probe_y, verbose=0, return_dict=True)["loss"])

        losses = [probe_loss()]
        for x, y in batches[:steps]:
            recipe.model.train_on_batch(x, y)
            losses.append(probe_loss())
        return losses
    finally:
        recipe.model = original


def plain_fit_seconds(recipe, spec, epochs, steps):
    """Per-step seconds of a plain `model.fit` of the same model from the same initial weights:
    the recipe's compile settings and data pipeline, none of its callbacks or validation."""
    original = recipe.model
    recipe.model = keras.saving.load_model(spec["initial_model"])
    try:
        total = epochs * (steps or len(recipe.batches("train")))
        recipe.compile_model(recipe.make_optimizer(total), jit_compile="auto", steps_per_execution=1)
        timer = StepTimer(steps or len(recipe.batches("train")))
        recipe.model.fit(recipe.batches("train", shuffle=True), epochs=epochs, steps_per_epoch=steps,
                         callbacks=[timer], shuffle=False, verbose=0)
        return timer.step_seconds
    finally:
        recipe.model = original


def native_loop_seconds(recipe, spec, total_steps, compiled):
    """Per-step seconds of the framework's own training loop (kdl.backend.native_train_step)
    over the same batches, from the same initial weights."""
    model = keras.saving.load_model(spec["initial_model"])
    step = backend.native_train_step(model, recipe.config.train.learning_rate, compiled=compiled)
    seconds = []
    while len(seconds) < total_steps:
        for x, y in recipe.batches("train", shuffle=True).take(total_steps - len(seconds)).as_numpy_iterator():
            start = time.perf_counter()
            step(x, y)
            seconds.append(time.perf_counter() - start)
    return seconds


def baselines(recipe, spec, epochs, steps, total_steps):
    """Median step seconds of the baselines the overhead benchmark compares kdl against."""
    runs = {"plain_fit": lambda: plain_fit_seconds(recipe, spec, epochs, steps),
            "native": lambda: native_loop_seconds(recipe, spec, total_steps, compiled=False)}
    if spec["baseline_compiled"] and backend.native_loop_compiles_on_request():
        runs["native_compiled"] = lambda: native_loop_seconds(recipe, spec, total_steps, compiled=True)
    return {name: _median_after_warmup(run()) for name, run in runs.items()}


def _median_after_warmup(step_seconds):
    steady = step_seconds[WARMUP_STEPS:] or step_seconds
    return statistics.median(steady) if steady else None


def make_recipe(spec):
    """The recipe the spec names: a recipe file or a task name, with its overrides."""
    source = spec["recipe"]
    if source.endswith(".toml"):
        return recipes.load(source, spec["overrides"], data_root=spec["data_root"])
    return recipes.create(source, spec["overrides"], data_root=spec["data_root"])


def init(spec, out):
    """Build the model once: save its initial weights and a fixed input batch for all backends."""
    recipe = make_recipe(spec)
    backend.set_seed(recipe.config.seed)
    recipe.model = recipe.build_model()
    recipe.model.save(out / "initial.keras")
    inputs, _ = next(recipe.batches("test").as_numpy_iterator())
    np.save(out / "fixed_inputs.npy", inputs)
    return {"backend": backend.name(), "parameters": int(recipe.model.count_params())}


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
    recipe.model = keras.saving.load_model(spec["initial_model"])
    load_seconds = time.perf_counter() - start
    np.save(out / "initial_outputs.npy", recipe.model.predict(np.load(spec["fixed_inputs"]), verbose=0))
    progress("initial outputs saved; identical-steps check")
    agreement_losses = losses_after_identical_steps(recipe, spec["agreement_steps"])
    epochs, steps = spec["epochs"], spec["steps"]
    batches = len(recipe.batches("train"))
    if steps:   # whole compiled calls: Keras runs steps_per_execution batches at a time
        per_call = backend.steps_per_execution(recipe.config.train.steps_per_execution)
        epochs, steps = 1, min(math.ceil(steps / per_call) * per_call, batches)
    timer = StepTimer(steps or batches, progress)
    start = time.perf_counter()
    recipe.fit(epochs=epochs, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    fit_seconds = time.perf_counter() - start
    report = recipe.evaluate()
    step = timer.steady_step_seconds()
    batch_size = recipe.config.data.batch_size
    device_peak = backend.peak_device_memory()
    host_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # before the baselines
    baseline = {}
    if spec["baseline"]:
        progress("baselines: plain model.fit, native training loop")
        baseline = baselines(recipe, spec, epochs, steps, len(timer.step_seconds))
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

    result = init(spec, out) if spec["mode"] == "init" else run(spec, out, progress)
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
