"""A saved run loaded once and shared by concurrent HTTP requests (what kdl.serve.app calls).

`ServedRun` reads a request's inputs on the caller's thread: JSON (texts, arrays: a list of
inputs) or uploaded files, written to a temporary folder and read as `kdl predict` reads files
(kdl.inputs). Every call into the model runs on the run's model thread
(kdl.serve.worker), where concurrent predictions are joined.

>>> served = ServedRun("runs/digits")                                          # doctest: +SKIP
>>> served.predict([[[0] * 8] * 8], None, {"top_k": 2})                        # doctest: +SKIP
{'task': 'image_classifier', 'predictions': [{'input': 0, 'label': '1', ...}], 'warnings': []}
"""

import base64
import concurrent.futures
import contextlib
import inspect
import io
import os
import pathlib
import re
import tempfile
import warnings

import numpy as np

from kdl import backend, recipes
from kdl.errors import ConfigError, DataError, KdlError, KdlWarning
from kdl.inputs import class_target, prediction_units
from kdl.serve.worker import ModelThread

MAX_BATCH = 64           # inputs one request may hold (rows of uploaded .npy/.txt files count one each)
MAX_BEAM = 16            # a translator's beam_size over HTTP (each size builds and keeps a search)
PREDICT_FIELDS = {"top_k": int, "beam_size": int, "decoder": str}  # `kdl predict`'s options but
#                          --words/--lm: those name files on the server, not for a client to choose
EXPLAIN_FIELDS = {"method": str, "target": (str, int)}


class TooLarge(KdlError):
    """A request over the server's limits: its body or its number of inputs (HTTP 413)."""


class BadRequest(KdlError):
    """A request that is not of the form the endpoint takes (HTTP 400)."""


class ServedRun:
    """The run directory `run`, loaded on its model thread. `predict` and `explain` block until
    the model has answered: call them from a thread of a pool (FastAPI's), not an event loop."""

    def __init__(self, run, *, unsafe=False, max_batch=MAX_BATCH):
        if not (isinstance(max_batch, int) and max_batch >= 1):
            raise ConfigError(f"max_batch takes how many inputs a request may hold, at least 1; got "
                              f"{max_batch!r}")
        self.run, self.max_batch = str(run), max_batch
        self.model = ModelThread()
        try:
            self.recipe = self.model.call(recipes.load, run, unsafe=unsafe).result()
            self.metadata = self.model.call(self._metadata).result()
        except BaseException:
            self.model.close()
            raise
        self.texts = self.recipe.input_files == (".txt",)
        self.predict_fields = {name: PREDICT_FIELDS[name] for name in self.metadata["predict_fields"]}

    def close(self):
        self.model.close()

    # -- requests --------------------------------------------------------------------------------
    def predict(self, inputs, files, fields):
        """{"task", "predictions": [{"input": name, **row}], "warnings"} for JSON `inputs` (a list)
        or uploaded `files` [(filename, bytes)]; `fields`: top_k and the task's predict options."""
        options = self._fields(fields, self.predict_fields, "predict")
        top_k = () if options.get("top_k") is None else (options.pop("top_k"),)
        if options.get("beam_size") is not None and not 1 <= options["beam_size"] <= MAX_BEAM:
            raise ConfigError(f"beam_size takes 1 (greedy) to {MAX_BEAM} over HTTP; got "
                              f"{options['beam_size']}")
        with self._units(inputs, files) as (units, folder):
            futures = [self.model.predict(self.recipe, batch, options, top_k) for _, batch in units]
            concurrent.futures.wait(futures)          # every file read before the folder goes
            rows, notes = [], []
            for (names, _), future in zip(units, futures):
                found, warned = future.result()
                rows += [{"input": name, **row} for name, row in zip(names, found)]
                notes += warned
        return {"task": self.recipe.task, "predictions": rows, "warnings": [_hide(n, folder) for n in notes]}

    def explain(self, inputs, files, fields):
        """{"task", "method", "explanations": [{"input", "predicted", "target", "probability", "png"}],
        "warnings"}: the attribution picture of each input, a base64 PNG (kdl.explain.render)."""
        options = self._fields(fields, EXPLAIN_FIELDS, "explain")
        methods = self.metadata["explain_methods"]
        if not methods:
            raise ConfigError(f"a {self.recipe.task} run has no explanation method (kdl.explain.methods is "
                              "empty for it); /predict works for it")
        method = options.get("method") or methods[0]
        if method not in methods:
            raise ConfigError(f"method {method!r} does not apply to this {self.recipe.task} run; its "
                              f"methods: {', '.join(methods)}")
        target = options.get("target")
        target = class_target(target, self.recipe) if isinstance(target, str) else target
        with self._units(inputs, files) as (units, folder):
            found, notes = self.model.call(self._explain, units, method, target).result()
        return {"task": self.recipe.task, "method": method, "explanations": found,
                "warnings": [_hide(note, folder) for note in notes]}

    def _explain(self, units, method, target):
        """(an explanation with a picture per input, KdlWarning messages), on the model thread."""
        from kdl.explain import render

        found = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", KdlWarning)
            for names, batch in units:
                explanation = self.recipe.explain(batch, method=method, target=target,
                                                  names=[str(name) for name in names])
                for i, name in enumerate(names):
                    found.append({"input": name, "predicted": _plain(explanation.predicted[i]),
                                  "target": _plain(explanation.target[i]),
                                  "probability": float(explanation.probability[i]),
                                  "png": _png(render.figure(explanation, i))})
        return found, [str(w.message) for w in caught if issubclass(w.category, KdlWarning)]

    # -- inputs ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _units(self, inputs, files):
        """([(names, batch)], folder) of one request's inputs, at most max_batch of them; uploaded
        files live in the temporary `folder` for the block, and its path is kept out of names
        and error messages."""
        with tempfile.TemporaryDirectory(prefix="kdl-serve-") as folder:
            try:
                units = self._json_units(inputs) if files is None else self._file_units(files, folder)
                count = sum(len(names) for names, _ in units)
                if count > self.max_batch:
                    raise TooLarge(f"the request holds {count} inputs; this server takes at most "
                                   f"{self.max_batch} a request (kdl serve --max-batch)")
                yield units, folder
            except KdlError as error:
                raise type(error)(_hide(str(error), folder)) from None

    def _json_units(self, inputs):
        """[(names, batch)] of a JSON "inputs" list: texts (one batch), images (one batch when all
        have one shape, else one batch each) or waveforms (one batch, any lengths)."""
        what = self.metadata["inputs"]["json"]
        if not isinstance(inputs, list) or not inputs:
            got = "an empty list" if inputs == [] else f"{type(inputs).__name__} {str(inputs)[:80]!r}"
            raise DataError(f'"inputs" must be a non-empty list of inputs, {what}; got {got}')
        if len(inputs) > self.max_batch:
            raise TooLarge(f'"inputs" holds {len(inputs)} inputs; this server takes at most {self.max_batch} '
                           "a request (kdl serve --max-batch)")
        names = list(range(len(inputs)))
        if self.texts:
            bad = next((i for i, text in enumerate(inputs) if not isinstance(text, str)), None)
            if bad is not None:
                raise DataError(f"inputs[{bad}] is {_kind(inputs[bad])}; a {self.recipe.task} run takes "
                                f'texts: "inputs" is {what}')
            return [(names, inputs)]
        arrays = [_numbers(item, i, what) for i, item in enumerate(inputs)]
        if self.recipe.modality == "audio":
            bad = next((i for i, array in enumerate(arrays) if array.ndim != 1), None)
            if bad is not None:
                raise DataError(f"inputs[{bad}] has shape {arrays[bad].shape}; each input is one waveform, "
                                f'a list of numbers: "inputs" is {what}')
            return [(names, arrays)]
        bad = next((i for i, array in enumerate(arrays) if array.ndim not in (2, 3)), None)
        if bad is not None:
            raise DataError(f"inputs[{bad}] has shape {arrays[bad].shape}; each input is one image, (H, W) "
                            f'or (H, W, C): "inputs" is {what}')
        images = [array if array.ndim == 3 else array[..., None] for array in arrays]   # (H, W) -> (H, W, 1)
        if len({image.shape for image in images}) == 1:
            return [(names, np.stack(images))]
        return [([name], image[None]) for name, image in zip(names, images)]

    def _file_units(self, files, folder):
        """[(names, batch)] of uploaded files, each written as FOLDER/I/NAME and read as
        `kdl predict` reads a file (images, WAVs, .npy rows, .txt lines for text runs)."""
        if not files:
            raise DataError(f"the upload holds no files; expected {self.metadata['inputs']['files']}")
        paths = []
        for i, (filename, content) in enumerate(files):
            name = _file_name(filename, i)
            # (an image or audio run would read a .txt file's lines as paths on this machine)
            if (not name.endswith((".txt", ".npy"))) if self.texts else name.endswith(".txt"):
                raise DataError(f"{name!r} is not a file this {self.recipe.task} run reads; it takes "
                                f"{self.metadata['inputs']['files']}")
            path = pathlib.Path(folder, str(i), name)
            path.parent.mkdir()
            path.write_bytes(content)
            paths.append(str(path))
        units = []
        for names, batch, _ in prediction_units(paths, self.recipe, literal_text=False):
            if isinstance(batch, DataError):
                raise batch
            units.append(([_hide(name, folder) for name in names], batch))
        return units

    def _fields(self, fields, accepted, endpoint):
        """The request's settings besides its inputs, of the types `accepted` names: JSON values
        as given, form fields (strings) converted."""
        options = {}
        for name, value in fields.items():
            if name not in accepted:
                others = ", ".join(accepted) or "no other field"
                raise BadRequest(f"/{endpoint} has no field {name!r} for this {self.recipe.task} run; it "
                                 f'takes the inputs (JSON "inputs", or uploaded files) and {others}')
            kind = accepted[name]
            if isinstance(value, str) and kind is int:
                try:
                    value = int(value)
                except ValueError:
                    raise BadRequest(f"{name} takes a whole number; got {value!r}") from None
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                expected = {int: "a whole number", str: "a string"}.get(kind, "a class name or index")
                raise BadRequest(f"{name} takes {expected}; got {_kind(value)} {value!r}")
            options[name] = value
        return options

    def _metadata(self):
        """What GET /metadata says of the run (on the model thread: it reads the model)."""
        from kdl import explain

        recipe = self.recipe
        accepted = set(inspect.signature(recipe.predict_inputs).parameters)
        accepted |= {"top_k"} if hasattr(recipe.Result, "top") else set()     # result.rows(top_k)
        names, versions = getattr(recipe, "class_names", None), backend.versions()
        return {"run": self.run, "task": recipe.task, "backend": backend.name(), "inputs": _inputs(recipe),
                "class_names": list(names) if names else None,
                "predict_fields": [name for name in PREDICT_FIELDS if name in accepted],
                "explain_methods": explain.methods(recipe),
                "versions": {name: versions.get(name) for name in ("kdl", "keras", backend.name())}}


def _inputs(recipe):
    """What the run takes, as /metadata says it: in JSON and as files."""
    if recipe.modality == "image":
        height, width, channels = recipe.model.input_shape[1:]
        return {"kind": "image", "json": "a list of images, each (H, W) or (H, W, C) pixel values 0..255",
                "files": f"image files ({', '.join(recipe.input_files)}) or .npy arrays of images",
                "model_input": [height, width, channels]}
    if recipe.modality == "audio":
        rate = recipe.config.data.sample_rate
        return {"kind": "audio", "json": f"a list of waveforms, each a list of samples -1..1 at {rate} Hz",
                "files": "WAV files (resampled and mixed down) or .npy arrays of waveforms",
                "sample_rate": rate, "samples": recipe.model.input_shape[1]}
    masked = " with [MASK] where a word is missing" if recipe.task == "language_model" else ""
    return {"kind": "text", "json": f"a list of strings{masked}", "files": ".txt files, one text a line"}


def _numbers(item, index, what):
    try:
        array = np.asarray(item, dtype="float32")
    except (TypeError, ValueError):
        raise DataError(f"inputs[{index}] is not an array of numbers ({_kind(item)}, ragged or holding "
                        f'something else); "inputs" is {what}') from None
    if array.size == 0:
        raise DataError(f'inputs[{index}] is empty; "inputs" is {what}')
    return array


def _kind(value):
    return {str: "a string", bool: "a boolean", type(None): "null", list: "a list", dict: "an object"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _file_name(filename, index):
    """An uploaded file's own name, without folders or control characters (upload-I when none)."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", os.path.basename(str(filename or "").replace("\\", "/"))).strip()
    return name[-100:] if name not in ("", ".", "..") else f"upload-{index}"


def _hide(text, folder):
    """`text` (a name, a message) with the temporary FOLDER/I/ of an upload left out."""
    return re.sub(re.escape(str(folder)) + r"[/\\]\d+[/\\]", "", str(text))


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _png(figure):
    """A matplotlib Figure as base64 PNG text (the figure is cleared after)."""
    from kdl.explain.render import DPI

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=DPI)
    finally:
        figure.clear()
    return base64.b64encode(buffer.getvalue()).decode("ascii")
