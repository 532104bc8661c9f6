"""Gradient explanations of a Keras model: integrated gradients and Grad-CAM.

Both cut the model at a layer's output inside it (`split`): a front part (inputs -> that output)
and a head (that output -> the model's output), made from a working copy of the model (building
a model from another's inner tensors adds to that model's graph, which then cannot be saved).
What is explained is a score per input: the sum of the output times a `selection` of the
output's shape (a one-hot row picks a class's probability; a one-hot best path over CTC frames
picks that path's log-probability). Integrated gradients attributes the score to the cut's
values (pixels, token embeddings, log-mel features); Grad-CAM weighs a convolution's channels by
the gradient of the score. The gradient itself is kdl.backend.gradient, the one
backend-specific call; everything else is Keras and NumPy, so the three backends agree.

>>> import keras, numpy as np
>>> inputs = keras.Input((3,))
>>> model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
>>> x = np.array([[1.0, 2.0, 3.0]], "float32")
>>> found = integrated_gradients(model, x, None, selection=np.array([[0.0, 1.0]]))   # class 1
>>> bool(abs(found.attributions.sum() - found.differences[0]) < 1e-3)       # completeness
True
"""

import dataclasses
import warnings
import weakref

import keras
import numpy as np
import scipy.ndimage

from kdl import backend

ROWS = 256                 # interpolated inputs differentiated together, at most
ROW_VALUES = 1 << 22       # ... and at most this many input values together
TOLERANCE = 0.01           # completeness: |sum(attributions) - (f(x) - f(baseline))| <= this
MAX_STEPS = 512


_COPIES = weakref.WeakKeyDictionary()      # model -> its working copy (the architecture, rebuilt once)


def working_copy(model):
    """A model of the same architecture with `model`'s current weights, to cut into parts."""
    copy = _COPIES.get(model)
    if copy is None:
        copy = _COPIES[model] = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def split(model, name):
    """(front, head, extra) of a working copy of `model`: front maps the model's inputs to the
    output of its layer `name`; head maps [that output, *extra] to the model's output, where
    `extra` are the model inputs the head still reads (a text model's token ids, for its padding
    mask). name None: the model's own input (front None, head the model itself)."""
    if name is None:
        return None, model, []
    model = working_copy(model)
    tensor = model.get_layer(name).output
    front = keras.Model(model.inputs, tensor)
    try:
        head = keras.Model(tensor, model.output)
        return front, head, []
    except ValueError:      # the output also depends on a model input, not only on `tensor`
        head = keras.Model([tensor, *model.inputs], model.output)
        return front, head, list(range(len(model.inputs)))


def _call(head, value, extra):
    with warnings.catch_warnings():   # Keras warns that a list input's structure differs from the Input's
        warnings.simplefilter("ignore", UserWarning)
        if extra:
            return head([keras.ops.convert_to_tensor(x) for x in (value, *extra)], training=False)
        return head(value, training=False)


def _scores(head, value, extra, selection):
    """The score per row, (rows,): the sum of the head's output times `selection` (rows, *output)."""
    selected = _call(head, value, extra) * keras.ops.convert_to_tensor(selection)
    return keras.ops.sum(keras.ops.reshape(selected, (keras.ops.shape(selected)[0], -1)), axis=-1)


def _single(inputs):
    """A list of one model input as that input (Keras warns about a list for a one-input model)."""
    return inputs[0] if len(inputs) == 1 else inputs


def _numpy(tensor):
    return keras.ops.convert_to_numpy(keras.ops.stop_gradient(tensor))


@dataclasses.dataclass
class Attribution:
    attributions: np.ndarray    # (N, *point shape)
    values: np.ndarray          # (N, *point shape): the point's values for the inputs
    differences: np.ndarray     # (N,) f(x) - f(baseline)
    gaps: np.ndarray            # (N,) |sum(attributions) - difference|
    steps: int                  # Gauss-Legendre nodes used


def integrated_gradients(model, x, point, selection, baseline=None, baseline_point=None, steps=32,
                         tolerance=TOLERANCE, max_steps=MAX_STEPS):
    """Integrated gradients (Sundararajan et al., 2017) of each input's score (`selection`, see
    above) at the output of the layer `point` of `model` (None: its input), along the straight path
    from the baseline to the input.

    x: the input batch (an array, or a list for a model of several inputs); baseline: an input
    batch of the same kind whose values at `point` are the path's start (default: zeros), or
    baseline_point: those start values directly. The integral uses Gauss-Legendre quadrature
    (as Captum does); `steps` double until every completeness gap, |sum of attributions -
    (f(x) - f(baseline))|, is within `tolerance` times max(1, |f(x) - f(baseline)|) or `max_steps`
    is reached (the returned `steps` and `gaps` say which)."""
    inputs = x if isinstance(x, list) else [x]
    front, head, extra_index = split(model, point)
    if front is None and not np.issubdtype(np.asarray(inputs[0]).dtype, np.floating):
        inputs = [np.asarray(inputs[0], "float32"), *inputs[1:]]        # pixels stored as uint8
    values = inputs[0] if front is None else _numpy(front(_single(inputs), training=False))  # (N, *point)
    if baseline_point is None:
        baseline = [np.zeros_like(i) for i in inputs] if baseline is None else baseline
        baseline = baseline if isinstance(baseline, list) else [baseline]
        baseline_point = baseline[0] if front is None else _numpy(front(_single(baseline), training=False))
    base = np.broadcast_to(np.asarray(baseline_point, values.dtype), values.shape)
    extra = [inputs[i] for i in extra_index]
    one_hot = np.asarray(selection, "float32")                                    # (N, *output)
    ends = _numpy(_scores(head, np.concatenate([values, base]), [np.concatenate([e, e]) for e in extra],
                          np.concatenate([one_hot, one_hot])))
    differences = ends[:len(values)] - ends[len(values):]                           # (N,)
    while True:
        attributions = _path_integral(head, values, base, extra, one_hot, steps)
        gaps = np.abs(attributions.reshape(len(values), -1).sum(axis=1) - differences)
        if within(gaps, differences, tolerance) or steps >= max_steps:
            return Attribution(attributions, values, differences, gaps, steps)
        steps *= 2


def within(gaps, differences, tolerance):
    """Whether every completeness gap is within tolerance * max(1, |difference|)."""
    return bool(np.all(gaps <= tolerance * np.maximum(1.0, np.abs(differences))))


def _path_integral(head, values, base, extra, one_hot, steps):
    """(N, *point): (x - baseline) times the quadrature of the gradients along the path, the rows of
    all inputs' paths differentiated in chunks (few large calls: eager JAX pays per call)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = ((nodes + 1) / 2).astype(values.dtype), (weights / 2).astype(values.dtype)  # on [0, 1]
    n, point = len(values), values.shape[1:]
    example, step = np.repeat(np.arange(n), steps), np.tile(np.arange(steps), n)   # (N*steps,) each
    rows = max(1, min(ROWS, ROW_VALUES // max(1, int(np.prod(point)))))
    integral = np.zeros_like(values)
    for start in range(0, n * steps, rows):
        i, s = example[start:start + rows], step[start:start + rows]
        a = alphas[s].reshape((-1,) + (1,) * len(point))
        path = base[i] + a * (values[i] - base[i])                                    # (rows, *point)
        parts = [e[i] for e in extra]
        _, grads = backend.gradient(lambda z: _scores(head, z, parts, one_hot[i]), path)
        np.add.at(integral, i, weights[s].reshape(a.shape) * grads)
    return (values - base) * integral


def conv_layers(model):
    """The model's top-level layers whose output is a 4-D feature map (B, H, W, C): convolutions."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def grad_cam(model, x, layer, selection, shape, variant="hires"):
    """A class-activation map of each input's score (`selection`, see above) from the feature maps
    A of the convolution named `layer` and the gradient G of the score with respect to them,
    resized (bilinear) to `shape` (H, W); (N, H, W), >= 0.

    variant "hires" (HiResCAM, Draelos and Carin, 2020): ReLU(sum over channels of G * A), each
    position weighed by its own gradient; "mean" (Grad-CAM, Selvaraju et al., 2017): ReLU(sum over
    channels of mean(G) * A). The two are the same map for a model that global-pools the layer
    (its gradient is the same at every position); on a flatten + dense head (the cnn backbone)
    Grad-CAM's averaged weights can cancel where the class depends on position, HiResCAM's do not."""
    inputs = x if isinstance(x, list) else [x]
    front, head, extra_index = split(model, layer)
    maps = _numpy(front(_single(inputs), training=False))                                  # (N, h, w, C)
    extra = [inputs[i] for i in extra_index]
    one_hot = np.asarray(selection, "float32")
    _, grads = backend.gradient(lambda a: _scores(head, a, extra, one_hot), maps)  # (N, h, w, C)
    weights = grads if variant == "hires" else grads.mean(axis=(1, 2), keepdims=True)
    cams = np.maximum((weights * maps).sum(axis=-1), 0)                           # (N, h, w)
    zoom = (1, shape[0] / cams.shape[1], shape[1] / cams.shape[2])
    return np.maximum(scipy.ndimage.zoom(cams, zoom, order=1, grid_mode=True, mode="nearest"), 0)
