"""Exports for serving: a .keras file, a TensorFlow SavedModel and an ONNX file each give the Keras
model's predictions (within 1e-4) when loaded by their own runtime, with signature.json beside
them. A format the active backend cannot produce is a clear BackendError, and the command it
suggests (export on the tensorflow backend; a saved run loads on every backend) works."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import kdl
from kdl import backend
from kdl.cli import main
from kdl.errors import BackendError

TEXTS = ["good film", "bad film", "great movie", "awful movie", "a delight", "dull and long"] * 8
LABELS = [1, 0, 1, 0, 1, 0] * 8


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A small image classifier with training-only augmentation layers (an export serves inference:
    they must be off), saved (untrained: exports need weights, not good ones)."""
    recipe = kdl.recipes.image_classifier(limit=200, filters=[8], dense=16, augment=["flip", "translate"])
    recipe.model = recipe.build_model()
    return recipe, recipe.save(tmp_path_factory.mktemp("runs") / "digits")


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    """A small audio classifier (log-mel features inside the model), saved untrained."""
    rng = np.random.default_rng(0)
    waveforms, labels = rng.uniform(-0.5, 0.5, (24, 4000)).astype("float32"), np.arange(24) % 3
    recipe = kdl.recipes.audio_classifier((waveforms, labels), max_seconds=0.5, filters=[4], dense=8)
    recipe.model = recipe.build_model()
    return recipe, recipe.save(tmp_path_factory.mktemp("runs") / "audio")


# What each task's exported model takes: (inputs, signature's input shape, output shape).
TASKS = {
    "image": ("image_run", lambda rng: rng.uniform(0, 255, (16, 8, 8, 1)), [None, 8, 8, 1], [None, 10]),
    "audio": ("audio_run", lambda rng: rng.uniform(-1, 1, (4, 4000)), [None, 4000], [None, 3]),
}
# Task/format pairs that no converter here handles; exporting one must say so clearly. None now: the
# audio front-end computes its spectrogram as a convolution, not an FFT, so that ONNX exports it.
UNSUPPORTED = set()


def _run_export(folder, format, inputs):
    """Outputs of the exported model on `inputs`, loaded by the format's own runtime."""
    signature = json.loads((folder / "signature.json").read_text())
    assert signature["format"] == format and (folder / signature["file"]).exists()
    name = signature["inputs"][0]["name"]
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(folder / "model.onnx"),
                                               providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].name == name
        return session.run(None, {name: inputs})[0]
    if format == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]
        return next(iter(serve(**{name: tf.constant(inputs)}).values())).numpy()
    return kdl.runs.load_model(folder / "model.keras").predict(inputs, verbose=0)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("format", ["keras", "saved_model", "onnx"])
def test_export_predicts_like_the_keras_model(task, format, request, tmp_path):
    fixture, make_inputs, input_shape, output_shape = TASKS[task]
    recipe, run_dir = request.getfixturevalue(fixture)
    inputs = make_inputs(np.random.default_rng(0)).astype("float32")
    expected = recipe.predict(inputs).probabilities
    out = tmp_path / "export"
    try:
        recipe.export(out, format)
    except BackendError as error:      # e.g. saved_model on torch: the suggested command must work
        if (task, format) in UNSUPPORTED:
            assert repr(format) in str(error), str(error)
            assert not out.exists()
            return
        assert "--backend tensorflow" in str(error)
        done = subprocess.run([sys.executable, "-m", "kdl", "export", str(run_dir), "--format", format,
                               "--out", str(out), "--backend", "tensorflow"], capture_output=True,
                              text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert done.returncode == 0, done.stderr[-2000:]
    assert (task, format) not in UNSUPPORTED, "this export works now: update UNSUPPORTED and the docs"
    signature = json.loads((out / "signature.json").read_text())
    assert signature["inputs"][0]["shape"] == input_shape and signature["inputs"][0]["dtype"] == "float32"
    assert signature["outputs"][0]["shape"] == output_shape
    assert signature["class_names"] == recipe.class_names and signature["task"] == recipe.task
    assert ("0..255" if task == "image" else "-1..1") in signature["input_meaning"]
    np.testing.assert_allclose(_run_export(out, format, inputs), expected, atol=1e-4)


def test_saved_model_on_torch_names_what_is_missing_and_what_works(image_run, tmp_path):
    recipe, _ = image_run
    if backend.name() != "torch":
        recipe.export(tmp_path / "sm", "saved_model")       # jax (jax2tf) and tensorflow produce it
        return
    with pytest.raises(BackendError, match="torch_xla.*works on tensorflow and jax.*--backend tensorflow"):
        recipe.export(tmp_path / "sm", "saved_model")
    assert not (tmp_path / "sm").exists()


def test_text_export_takes_token_ids_and_ships_the_vocabulary(tmp_path):
    recipe = kdl.recipes.text_classifier((TEXTS, LABELS), model="cnn", max_length=8,
                                         vocabulary_size=50, embedding=8, filters=8)
    recipe.model = recipe.build_model()      # the tokenizer is learned on the training texts
    format = "saved_model" if backend.name() == "jax" else "onnx"   # the quickest each produces
    out = recipe.export(tmp_path / "export", format)
    signature = json.loads((out / "signature.json").read_text())
    assert signature["inputs"][0]["dtype"] == "int32" and signature["inputs"][0]["shape"] == [None, 8]
    assert signature["tokenizer"]["vocabulary"] == "vocabulary.txt"
    assert signature["assets"] == ["vocabulary.txt"]
    assert (out / "vocabulary.txt").read_text().split("\n")[:-1] == recipe.tokenizer.vocabulary
    sentences = ["a good film", "dull", ""]
    ids = recipe.prepare_inputs(sentences)                # what a server does with vocabulary.txt
    np.testing.assert_allclose(_run_export(out, format, ids), recipe.predict(sentences).probabilities,
                               atol=1e-4)


def test_cli_export_writes_the_signature(image_run, tmp_path, capsys):
    _, run_dir = image_run
    assert main(["export", str(run_dir), "--format", "keras", "--out", str(tmp_path / "x")]) == 0
    assert "signature.json" in capsys.readouterr().out
    signature = json.loads((tmp_path / "x" / "signature.json").read_text())
    assert signature["task"] == "image_classifier" and signature["backend"] == backend.name()
    assert main(["export", str(run_dir), "--format", "keras", "--out", str(tmp_path / "x")]) == 0
