"""The baselines of `kdl compare --baseline`: the same model, from the same initial weights on
the same batches, trained by a plain `model.fit` and by each framework's own training loop,
timed per step for the overhead table (kdl's step time over each baseline's).

This module is the one deliberate exception to "backend-specific code only in kdl/backend.py
and kdl/distribute.py": the native loops exist only to be compared against, each written the
way its framework's own docs write one — JAX with `model.stateless_call` + optax under
`jax.jit`, TensorFlow with a `GradientTape` step under `tf.function`, PyTorch with eager
autograd and `torch.optim` (or `torch.compile`). kdl itself never trains this way.

>>> import keras, numpy as np
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
>>> step = native_train_step(model, "sparse_categorical_crossentropy", learning_rate=0.1, compiled=False)
>>> x, y = np.ones((8, 4), "float32"), np.zeros(8, "int32")
>>> losses = [step(x, y) for _ in range(5)]
>>> losses[-1] < losses[0]
True
"""

import time

import keras
import numpy as np

from kdl import backend, runs
from kdl.compare.timing import StepTimer, median_after_warmup


def baselines(recipe, initial_model, epochs, steps, total_steps, compiled=False):
    """Median step seconds of each baseline, by name ("plain_fit", "native", and with
    `compiled` on PyTorch "native_compiled"), each from the `initial_model` file.

    epochs, steps: as kdl's run trained (steps: batches per epoch, None for all);
    total_steps: the steps kdl's run took, which each native loop takes too.
    """
    timed = {"plain_fit": lambda: plain_fit_seconds(recipe, initial_model, epochs, steps),
             "native": lambda: native_loop_seconds(recipe, initial_model, total_steps, compiled=False)}
    if compiled and native_loop_compiles_on_request():
        timed["native_compiled"] = lambda: native_loop_seconds(recipe, initial_model, total_steps,
                                                               compiled=True)
    return {name: median_after_warmup(run()) for name, run in timed.items()}


def plain_fit_seconds(recipe, initial_model, epochs, steps):
    """Per-step seconds of a plain `model.fit` of a new copy of the model: the recipe's loss,
    metrics and data pipeline under Keras' default compile settings, none of its callbacks or
    validation."""
    model = runs.load_model(initial_model)
    batches = steps or len(recipe.batches("train"))
    recipe.compile_model(recipe.make_optimizer(epochs * batches), model=model, jit_compile="auto",
                         steps_per_execution=1)
    timer = StepTimer(batches)
    model.fit(recipe.batches("train", shuffle=True), epochs=epochs, steps_per_epoch=steps,
              callbacks=[timer], shuffle=False, verbose=0)
    return timer.step_seconds


def native_loop_seconds(recipe, initial_model, total_steps, compiled):
    """Per-step seconds of the framework's own training loop (`native_train_step`) of a new
    copy of the model, with the recipe's loss, over the same batches."""
    model = runs.load_model(initial_model)
    step = native_train_step(model, recipe.compile_arguments()["loss"], recipe.config.train.learning_rate,
                             compiled=compiled)
    seconds = []
    for x, y in numpy_batches(recipe, "train", total_steps, shuffle=True):
        start = time.perf_counter()
        step(x, y)
        seconds.append(time.perf_counter() - start)
    return seconds


def numpy_batches(recipe, split, count, shuffle=False):
    """The first `count` (x, y) batches of `split`, starting over (a new epoch) at its end, as
    NumPy copies this process owns (torch.compile rejects TensorFlow-owned buffers); x is an
    array or a dict / tuple of arrays, as the recipe's batches have it."""
    taken = 0
    while taken < count:
        for batch in recipe.batches(split, shuffle=shuffle).take(count - taken).as_numpy_iterator():
            taken += 1
            yield keras.tree.map_structure(np.array, batch)


def native_loop_compiles_on_request():
    """True where the framework's own loop runs eagerly unless asked to compile (PyTorch:
    torch.compile); JAX's and TensorFlow's native loops are always compiled."""
    return backend.name() == "torch"


def native_train_step(model, loss, learning_rate, compiled=True):
    """A training step for `model` written the way each framework's own docs write one:
    `step(x, y)` takes a NumPy batch (x an array or a dict / tuple of arrays), updates the
    weights with Adam on `loss` (what model.compile takes: a name, a function or a
    keras.losses.Loss, such as a recipe's `compile_arguments()["loss"]`), and returns the batch
    loss as a float, which waits for the device.

    JAX: `model.stateless_call` + optax under `jax.jit`; TensorFlow: GradientTape under
    `tf.function`; PyTorch: eager autograd + torch.optim, or `torch.compile` when `compiled`.
    """
    steps = {"jax": _jax_step, "tensorflow": _tensorflow_step, "torch": _torch_step}
    return steps[backend.name()](model, learning_rate, mean_loss(loss), compiled)


def mean_loss(loss):
    """`loss` (what model.compile takes: a name, a function or a keras.losses.Loss) as a function
    (y, predictions) -> the batch's mean loss, a scalar tensor of the active backend."""
    loss = keras.losses.get(loss)

    def loss_of(y, predictions):    # a Loss averages over the batch; a loss function per sample
        return keras.ops.mean(loss(y, predictions))

    return loss_of


def _jax_step(model, learning_rate, loss_of, compiled):
    import jax
    import optax

    adam = optax.adam(learning_rate)
    state = ([v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables])
    state = (*state, adam.init(state[0]))

    def loss_and_updates(trainable, non_trainable, x, y):
        predictions, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_of(y, predictions), non_trainable

    @jax.jit
    def train(state, x, y):
        trainable, non_trainable, adam_state = state
        (loss, non_trainable), grads = jax.value_and_grad(loss_and_updates, has_aux=True)(
            trainable, non_trainable, x, y)
        updates, adam_state = adam.update(grads, adam_state, trainable)
        return loss, (optax.apply_updates(trainable, updates), non_trainable, adam_state)

    def step(x, y):
        nonlocal state
        loss, state = train(state, x, y)
        return float(loss)

    return step


def _tensorflow_step(model, learning_rate, loss_of, compiled):
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def train(x, y):
        with tf.GradientTape() as tape:
            loss = loss_of(y, model(x, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    return lambda x, y: float(train(x, y))


def _torch_step(model, learning_rate, loss_of, compiled):
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    forward = torch.compile(model) if compiled else model

    def step(x, y):
        x, y = keras.tree.map_structure(keras.ops.convert_to_tensor, (x, y))   # on the model's device
        optimizer.zero_grad()
        loss = loss_of(y, forward(x, training=True))
        loss.backward()
        optimizer.step()
        return loss.item()

    return step
