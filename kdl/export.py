"""Export a trained model for serving: Keras (`.keras`), TensorFlow SavedModel or ONNX.

`recipe.export(folder, format)` (and `kdl export RUN --format F`) writes into `folder`:

    model.keras | saved_model/ | model.onnx    the model, through Keras' own save / model.export
    signature.json                             input and output names, dtypes, shapes, meaning
    the task's assets                          a text run's vocabulary.txt
    README.md, training_curves.png             the run's model card (kdl.card)

Each export is checked before it is kept: the written file is loaded (onnxruntime,
tf.saved_model.load) and run on a sample batch, and must give the Keras model's outputs
within 1e-4; the folder is replaced atomically (kdl.runs.write_directory).

What each backend can produce here (see FORMATS; docs/export.md):

    backend      keras   saved_model                 onnx
    jax          yes     yes (jax2tf)                only with jax2onnx installed, and correct (checked)
    tensorflow   yes     yes                         yes (tf2onnx)
    torch        yes     no (Keras needs torch_xla)  yes (torch.onnx)

A saved run loads on every backend, so `kdl export RUN --format F --backend tensorflow`
produces every format.

>>> sorted(FORMATS)
['keras', 'onnx', 'saved_model']
"""

import importlib.util
import json
import pathlib

import keras
import numpy as np

from kdl import backend, progress
from kdl.errors import BackendError, ConfigError

FORMATS = {"keras": "model.keras", "saved_model": "saved_model", "onnx": "model.onnx"}
SIGNATURE_FILE = "signature.json"
TOLERANCE = 1e-4    # largest |exported - keras| output difference an export may have


def check_format(format):
    """Raise ConfigError unless `format` is known, BackendError unless the active backend
    can produce it (naming what is missing and what works)."""
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    active = backend.name()
    works = "`kdl export RUN --format {f} --backend tensorflow` (a saved run loads on every backend)"
    if format == "saved_model" and active == "torch" and importlib.util.find_spec("torch_xla") is None:
        raise BackendError(
            "format 'saved_model' cannot be produced on the torch backend: Keras exports a "
            "SavedModel from torch only through torch_xla, which is not installed; it works on "
            "tensorflow and jax: " + works.format(f="saved_model") + ", or use format 'onnx' on torch")
    if format == "onnx":
        converter = {"tensorflow": "tf2onnx", "jax": "jax2onnx", "torch": "onnxscript"}[active]
        needed = ["onnx", "onnxruntime", converter]
        missing = [name for name in needed if importlib.util.find_spec(name) is None]
        if active == "jax" and missing == ["jax2onnx"]:   # kdl[export] leaves it out (see below)
            raise BackendError(
                "format 'onnx' on the jax backend goes through jax2onnx, which kdl does not install: "
                "it did not convert kdl's CNN and Transformer correctly (checked with onnxruntime); "
                + works.format(f="onnx"))
        if missing:
            raise BackendError(f"format 'onnx' on the {active} backend needs {', '.join(missing)}; "
                               "install them with `pip install kdl[export]`")


def export(model, folder, format, *, sample, description, write_assets, write_card=None):
    """Write `model` as `format` into the folder `folder` (created or replaced whole) with its
    signature.json; `sample`: an input batch to check the export on; `description`: what the
    inputs and outputs mean (merged into signature.json); `write_assets(folder)`: task files;
    `write_card(folder)`: writes the model card and returns its name (signature.json's "card")."""
    from kdl import runs

    check_format(format)
    folder = pathlib.Path(folder)
    if folder.is_dir() and any(folder.iterdir()) and not (folder / SIGNATURE_FILE).is_file():
        raise ConfigError(f"{str(folder)!r} is not empty and holds no kdl export "
                          f"({SIGNATURE_FILE}); refusing to replace it. Choose a new folder.")
    expected = np.asarray(model.predict(sample, verbose=0))

    def fill(tmp):
        target = tmp / FORMATS[format]
        try:
            with progress.stage(f"writing the {format} export"):
                if format == "keras":
                    model.save(target)
                else:
                    inputs = [keras.InputSpec(shape=t.shape, dtype=t.dtype, name=t.name)
                              for t in model.inputs]
                    Inference(model).export(str(target), verbose=False, input_signature=[
                        inputs if len(inputs) > 1 else inputs[0]],
                        format="tf_saved_model" if format == "saved_model" else format)
        except Exception as error:  # each exporter raises its own types from deep inside
            raise BackendError(f"Keras could not export this model as {format!r} on the "
                               f"{backend.name()} backend: {type(error).__name__}: {str(error)[:400]}; "
                               + _alternative(format)) from None
        with progress.stage(f"checking the {format} export against the Keras model"):
            inputs, outputs = _check(target, format, sample, expected)
        write_assets(tmp)
        signature = {"format": format, "file": FORMATS[format], "backend": backend.name(),
                     "keras": keras.__version__, "inputs": inputs, "outputs": outputs,
                     **description}
        signature["assets"] = sorted(p.name for p in tmp.iterdir()
                                     if p.name not in (FORMATS[format], SIGNATURE_FILE))
        if write_card is not None:      # documentation, not an asset a server needs
            signature["card"] = write_card(tmp)
        (tmp / SIGNATURE_FILE).write_text(json.dumps(signature, indent=2) + "\n", encoding="utf-8")

    runs.write_directory(folder, fill, keep_others=False)
    return folder


class Inference(keras.Model):
    """`model` called in inference mode, for the exporters: Keras' `model.export` calls a model
    without `training`, and its image augmentation layers then default to training (an exported
    model would flip and shift the images it serves)."""

    def __init__(self, model):
        super().__init__(name=model.name)
        self.inner = model
        self.built = True       # its only weights are the built model's

    def call(self, inputs):
        return self.inner(inputs, training=False)


def _alternative(format):
    if backend.name() == "tensorflow":
        others = [f for f in FORMATS if f != format]
        return (f"the model may hold layers that {format!r} converters cannot express (the "
                "tensorflow backend is the fallback for other backends); export "
                f"{' or '.join(map(repr, others))} instead")
    return ("a saved run loads on every backend: try `kdl export RUN --format "
            f"{format} --backend tensorflow`")


def _check(target, format, sample, expected):
    """Run the written artifact on `sample`; return its (inputs, outputs) signature entries."""
    try:
        if format == "keras":
            from kdl.runs import load_model

            model = load_model(target)
            got = model.predict(sample, verbose=0)
            inputs = [_entry(t.name, t.dtype, t.shape) for t in model.inputs]
            outputs = [_entry(t.name, t.dtype, t.shape) for t in model.outputs]
        elif format == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
            inputs = [_entry(i.name, i.type, i.shape) for i in session.get_inputs()]
            outputs = [_entry(o.name, o.type, o.shape) for o in session.get_outputs()]
            got = session.run(None, _feeds([i.name for i in session.get_inputs()], sample))[0]
        else:
            import tensorflow as tf

            serve = tf.saved_model.load(str(target)).signatures["serving_default"]
            specs = serve.structured_input_signature[1]
            inputs = [_entry(name, spec.dtype.name, spec.shape.as_list()) for name, spec in specs.items()]
            outputs = [_entry(name, spec.dtype.name, spec.shape.as_list())
                       for name, spec in serve.structured_outputs.items()]
            feeds = _feeds(list(specs), sample)
            got = next(iter(serve(**{name: tf.constant(x) for name, x in feeds.items()}).values())).numpy()
    except Exception as error:  # the artifact does not load or run: the converter got it wrong
        raise BackendError(f"the {format!r} file written on the {backend.name()} backend does not "
                           f"run: {type(error).__name__}: {str(error)[:300]}; "
                           + _alternative(format)) from None
    difference = float(np.max(np.abs(np.asarray(got, dtype="float64") - expected)))
    if not difference <= TOLERANCE:
        raise BackendError(f"the {format!r} file written on the {backend.name()} backend gives "
                           f"outputs {difference:.2g} away from the Keras model's (allowed "
                           f"{TOLERANCE}); " + _alternative(format))
    return inputs, outputs


def _feeds(names, sample):
    """`sample` as {input name: array} for an artifact whose inputs are `names`: by name when the
    sample is a dict keyed by them, else in order (a one-input sample is an array)."""
    arrays = sample if isinstance(sample, dict) else {"": sample}
    if set(names) <= set(arrays):
        return {name: arrays[name] for name in names}
    return dict(zip(names, arrays.values()))


def _entry(name, dtype, shape):
    dtype = str(dtype).removeprefix("tensor(").removesuffix(")")     # ONNX says tensor(float)
    dtype = {"float": "float32", "double": "float64"}.get(dtype, dtype)
    dims = [d if isinstance(d, int) else None for d in (list(shape) if shape is not None else [])]
    return {"name": name, "dtype": dtype, "shape": dims}


def sample_inputs(model, vocabulary_size=None, value_range=(0, 255), batch=3, seed=0):
    """A random input batch for `model`: floats in `value_range` (pixels 0..255 by default), or
    token ids below `vocabulary_size` (2, padding and out-of-vocabulary, when unknown); a model
    with several inputs gets a dict by input name, `vocabulary_size` then a dict by name too.

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> sample_inputs(model).shape
    (3, 4)
    """
    rng = np.random.default_rng(seed)

    def one(spec, size):
        shape = [batch] + [d or 8 for d in spec.shape[1:]]
        if "int" in str(spec.dtype):
            return rng.integers(0, size or 2, shape).astype(spec.dtype)
        return rng.uniform(*value_range, shape).astype(spec.dtype)

    if len(model.inputs) == 1:
        return one(model.inputs[0], vocabulary_size)
    sizes = vocabulary_size if isinstance(vocabulary_size, dict) else {}
    return {spec.name: one(spec, sizes.get(spec.name)) for spec in model.inputs}
