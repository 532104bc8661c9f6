"""The recipe contract, checked the same way for every task (as keras-hub's `run_task_test`):
each task supplies only a tiny recipe on data it makes, inputs for `predict`, and command-line
inputs for `kdl predict`. `run_task_test` then builds, fits a few steps into a run directory,
evaluates, predicts, saves, reloads here and on the next backend (same outputs, 1e-5),
exports, and predicts from the command line.

A task's own test file keeps only what is specific to it.
"""

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import typing

import numpy as np
import pytest
from conftest import next_backend
from test_data_audio import write_wav

import kdl
from kdl import backend, config
from kdl.cli import main
from kdl.evaluation import Report
from kdl.recipes.recipe import CHECKPOINT_FILE, CONFIG_FILE, MODEL_FILE

TOLERANCE = 1e-5   # the largest difference allowed between backends' outputs of one saved run


@dataclasses.dataclass
class TaskCase:
    """What a task supplies to the contract test."""

    task: str
    make: typing.Callable           # () -> a new tiny recipe on data the case makes
    inputs: np.ndarray              # what predict takes (an array, so other processes can load it)
    cli_inputs: typing.Callable     # (folder) -> arguments of `kdl predict RUN ...`, files written there
    assets: tuple = ()              # files the task writes into a run directory besides the model
    other_data: typing.Callable = None  # (folder) -> OtherData: labelled files unlike the training data


@dataclasses.dataclass
class OtherData:
    """A labelled source in another format than the case trains on, to score a saved run on."""

    source: str                     # what evaluate(data=...) and `kdl evaluate RUN --data` take
    options: dict                   # evaluate's data options for it ...
    cli: list                       # ... and the same as `kdl evaluate` arguments
    inputs: list                    # its inputs for predict (file paths or strings) ...
    references: list                # ... and their true labels, translations or transcripts


def run_task_test(case, tmp_path):
    recipe = case.make()
    assert recipe.task == case.task and isinstance(recipe, kdl.recipes.RECIPES[case.task])
    cls = type(recipe)
    assert config.from_toml(cls.Config, config.to_toml(recipe.config)) == recipe.config

    # fit a few steps into a run directory: the assets are there before the model is
    run_dir = tmp_path / "run"
    history = recipe.fit(epochs=1, steps_per_epoch=2, out=run_dir, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert {CHECKPOINT_FILE, "history.csv", *case.assets} <= _names(run_dir)

    report = recipe.evaluate()
    assert isinstance(report, Report) and report.meta["task"] == case.task
    assert report.meta["backend"] == backend.name() and report.metrics

    result = recipe.predict(case.inputs)
    assert isinstance(result, cls.Result) and len(result) == len(case.inputs)
    assert json.loads(result.to_json()) == json.loads(json.dumps(result.rows()))
    assert len(result.rows()) == len(result.lines()) == len(case.inputs)

    recipe.save(run_dir)
    assert {MODEL_FILE, CONFIG_FILE, "report.json", *case.assets} <= _names(run_dir)
    loaded = kdl.recipes.load(run_dir)
    same = loaded.predict(case.inputs)
    np.testing.assert_allclose(same.outputs, result.outputs, atol=1e-6)
    assert same.rows() == result.rows()

    others = [next_backend(backend.name())]
    for name, (outputs, rows) in predict_on_backends(run_dir, case.inputs, others, tmp_path).items():
        np.testing.assert_allclose(outputs, result.outputs, atol=TOLERANCE, err_msg=f"on {name}")
        assert [row.get("label", row.get("translation", row.get("transcript"))) for row in rows] == \
            [row.get("label", row.get("translation", row.get("transcript"))) for row in result.rows()]

    if case.other_data is not None:
        check_evaluate_on_other_data(loaded, run_dir, case.other_data(tmp_path))

    exported = recipe.export(tmp_path / "export", "keras")
    assert {"model.keras", "signature.json", *case.assets} <= _names(exported)

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["predict", str(run_dir), *case.cli_inputs(tmp_path), "--json"]) == 0
    assert len(json.loads(printed.getvalue())) >= 1


def check_evaluate_on_other_data(recipe, run_dir, other):
    """A saved run scored on another labelled source, by the API and by `kdl evaluate --data`,
    gives the report that predicting its inputs and scoring them by hand gives."""
    references = other.references
    if hasattr(recipe, "class_names"):                     # classifiers score class ids
        references = np.array([recipe.class_names.index(name) for name in references])
    by_hand = recipe.predict(other.inputs).score(references)
    report = recipe.evaluate(data=other.source, **other.options)
    assert report.meta["source"] == other.source and report.meta["task"] == recipe.task
    _same_metrics(report.metrics, by_hand.metrics)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["evaluate", str(run_dir), "--data", other.source, *other.cli, "--json"]) == 0
    _same_metrics(json.loads(printed.getvalue())["metrics"], by_hand.metrics)


def _same_metrics(got, expected):
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


_PREDICT_SCRIPT = """
import json, sys, numpy as np, kdl
result = kdl.recipes.load(sys.argv[1]).predict(np.load(sys.argv[2]))
np.save(sys.argv[3], result.outputs)
open(sys.argv[4], "w").write(result.to_json())
"""


def predict_on_backends(run_dir, inputs, backends, folder):
    """{backend: (outputs, rows)} of `predict(inputs)` on a saved run, each backend loading it in
    its own process (a process has one backend)."""
    np.save(folder / "inputs.npy", inputs)
    results = {}
    for name in backends:
        outputs, rows = folder / f"{name}.npy", folder / f"{name}.json"
        env = dict(os.environ, KERAS_BACKEND=name, TF_CPP_MIN_LOG_LEVEL="2")
        command = [sys.executable, "-c", _PREDICT_SCRIPT, str(run_dir), str(folder / "inputs.npy"),
                   str(outputs), str(rows)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{name} could not load the run:\n{done.stderr[-3000:]}"
        results[name] = np.load(outputs), json.loads(rows.read_text())
    return results


def _names(folder):
    return {path.name for path in folder.iterdir()}


# -- tiny data each case makes --------------------------------------------------------------------

def tones(count, rate, frequencies=(250, 700, 1500), seed=0):
    """`count` noisy tones per frequency, random phase and length 0.15-0.3 s: (waveforms, labels)."""
    rng = np.random.default_rng(seed)
    waves, labels = [], []
    for label, frequency in enumerate(frequencies):
        for _ in range(count):
            t = np.arange(int(rng.uniform(0.15, 0.3) * rate)) / rate
            sine = 0.5 * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 6.3))       # random phase
            waves.append((sine + 0.02 * rng.normal(size=len(t))).astype("float32"))
            labels.append(label)
    return waves, np.array(labels)


def _digits_inputs():
    from kdl.data import load_images

    return np.stack([x for x, _ in load_images("digits", limit=40).splits["test"].take(3)
                     .as_numpy_iterator()]).astype("float32")


def _npy(name, array):
    def write(folder):
        np.save(folder / name, array)
        return [str(folder / name)]
    return write


def _wav(waveform, rate):
    return lambda folder: [str(write_wav(folder / "clip.wav", waveform, rate=rate))]


RATE = 4000
TEXTS = ["a fine film", "dull and slow", "great fun", "a mess", "lovely acting", "boring plot"] * 4
LABELS = ["pos", "neg"] * 12
SOURCES = ["a cat", "a dog", "two cats", "one dog", "a bird", "the man"] * 4
TARGETS = ["eine Katze", "ein Hund", "zwei Katzen", "ein Hund", "ein Vogel", "der Mann"] * 4
WAVES, CLASSES = tones(6, RATE)
WORDS = ["low", "mid", "high"]                                            # the speech case's transcripts
CLIPS = np.stack([np.pad(w, (0, 1200 - len(w))) for w in WAVES[::6]])      # (3, 1200): one per class

def _image_folder(folder):
    """Digits test images as a class folder of 16x16 PNGs (twice the training size), every other
    one stored as RGB."""
    from PIL import Image

    from kdl.data import load_images

    paths, names = [], []
    pairs = load_images("digits", limit=60).splits["test"].take(30).as_numpy_iterator()
    for i, (image, label) in enumerate(pairs):
        path = folder / "digit_folder" / str(label) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image[:, :, 0]).resize((16, 16), Image.NEAREST)
        (picture.convert("RGB") if i % 2 else picture).save(path)
        paths.append(str(path))
        names.append(str(label))
    return OtherData(str(folder / "digit_folder"), {}, [], paths, names)


def _reviews_csv(folder):
    """A CSV with other column names and the labels as words, in another order."""
    texts, labels = ["fine fun", "slow mess", "great acting", "boring film", "lovely plot"], \
        ["pos", "neg", "pos", "neg", "pos"]
    path = folder / "reviews.csv"
    path.write_text("stars,review\n" + "".join(f"{y},{x}\n" for x, y in zip(texts, labels)))
    return OtherData(str(path), {"text_column": "review", "label_column": "stars"},
                     ["--text-column", "review", "--label-column", "stars"], texts, labels)


def _pairs_tsv(folder):
    sources, targets = ["a dog", "two cats", "the bird"], ["ein Hund", "zwei Katzen", "der Vogel"]
    path = folder / "pairs.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in zip(sources, targets)))
    return OtherData(str(path), {}, [], sources, targets)


def _label_folders(folder):
    """Tones of new phases as label sub-folders of WAVs at twice the training sample rate."""
    waves, labels = tones(3, 2 * RATE, seed=5)
    paths = [str(write_wav(folder / "tone_folder" / str(y) / f"{i}.wav", w, rate=2 * RATE))
             for i, (w, y) in enumerate(zip(waves, labels))]
    return OtherData(str(folder / "tone_folder"), {}, [], paths, [str(y) for y in labels])


def _ljspeech_folder(folder):
    """An LJSpeech-style folder (metadata.csv + wavs/) of new tones at twice the sample rate."""
    waves, labels = tones(2, 2 * RATE, seed=6)
    root = folder / "lj"
    paths = [str(write_wav(root / "wavs" / f"c{i}.wav", w, rate=2 * RATE)) for i, w in enumerate(waves)]
    texts = [WORDS[y] for y in labels]
    (root / "metadata.csv").write_text("".join(f"c{i}|{t}|{t}\n" for i, t in enumerate(texts)))
    return OtherData(str(root), {}, [], paths, texts)


CASES = {
    "image_classifier": TaskCase(
        "image_classifier",
        lambda: kdl.recipes.image_classifier(limit=100, batch_size=16, filters=[4], dense=8),
        _digits_inputs(), _npy("digits.npy", _digits_inputs()), other_data=_image_folder),
    "text_classifier": TaskCase(
        "text_classifier",
        lambda: kdl.recipes.text_classifier((TEXTS, LABELS), model="cnn", batch_size=8, max_length=8,
                                            vocabulary_size=40, embedding=8, filters=4),
        np.array(["a fine plot", "dull film", ""]), lambda folder: ["great fun", "a mess"],
        assets=("vocabulary.txt",), other_data=_reviews_csv),
    "translator": TaskCase(
        "translator",
        lambda: kdl.recipes.translator((SOURCES, TARGETS), data={"batch_size": 8}, max_length=8,
                                       vocabulary_size=60, encoder_layers=1, decoder_layers=1, width=8,
                                       heads=2, intermediate=16, beam_size=2, warmup_steps=1),
        np.array(["a cat", "the dog"]), lambda folder: ["a bird", "--beam-size", "1"],
        assets=("source_vocabulary.txt", "target_vocabulary.txt"), other_data=_pairs_tsv),
    "audio_classifier": TaskCase(
        "audio_classifier",
        lambda: kdl.recipes.audio_classifier((WAVES, CLASSES), sample_rate=RATE, max_seconds=0.3,
                                             batch_size=6, mel_bins=16, filters=[4], dense=8,
                                             augment={"gain": 6.0, "pitch": 1.0, "shift": 0.02}),
        CLIPS, _wav(CLIPS[0], RATE), other_data=_label_folders),
    "speech_recognizer": TaskCase(
        "speech_recognizer",
        lambda: kdl.recipes.speech_recognizer((WAVES, [WORDS[c] for c in CLASSES]), sample_rate=RATE,
                                              max_seconds=0.3, batch_size=6, mel_bins=16, hop_ms=20.0,
                                              width=8, blocks=1, channels=4,
                                              augment={"speed": 0.1, "noise": 20.0, "reverb": 0.05}),
        CLIPS, _wav(CLIPS[1], RATE), assets=("characters.json", "words.txt"), other_data=_ljspeech_folder),
    "language_model": TaskCase(
        "language_model",
        lambda: kdl.recipes.language_model(TEXTS, batch_size=8, max_length=8, vocabulary_size=40,
                                           mask_rate=0.4, embedding=8, blocks=1, heads=2, intermediate=16),
        np.array(["a [MASK] film", "dull and [MASK]", "[MASK] fun , [MASK] acting"]),
        lambda folder: ["a [MASK] plot"], assets=("vocabulary.txt",)),
}
