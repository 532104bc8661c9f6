"""The bad-inputs catalogue, continued (see test_bad_inputs.py): a saved run of each of the five
tasks, and what each must say about odd predict inputs, broken or mismatched run directories,
and bad arguments to every `kdl` command (train, evaluate, predict, export, compare, translate,
transcribe). The runs are the contract's tiny recipes (tests/harness.py), built but not trained:
what is checked here does not depend on the weights, and building takes seconds.
"""

import io
import json
import re
import shutil
import types

import numpy as np
import pytest
from harness import CASES as TASKS
from harness import CLIPS, RATE
from test_bad_inputs import check_one_error_line, params, png, tone, tree, wav_bytes, write

import kdl
from kdl.errors import ConfigError, DataError, KdlWarning

TASK_NAMES = {"image": "image_classifier", "text": "text_classifier", "translator": "translator",
              "audio": "audio_classifier", "speech": "speech_recognizer"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs.image, runs.text, ...: (recipe, run directory) of each task's tiny recipe, its model
    built and saved untrained."""
    folder = tmp_path_factory.mktemp("runs")
    made = {}
    for short, task in TASK_NAMES.items():
        recipe = TASKS[task].make()
        recipe.model = recipe.build_model()
        made[short] = types.SimpleNamespace(recipe=recipe, dir=recipe.save(folder / task))
    return types.SimpleNamespace(**made)


@pytest.fixture
def files(tmp_path, runs):
    """files.tmp: a folder of the case's own; files.copy(task) a copy of that task's run to spoil;
    files.edit(run, name, old, new): replace a regex in one of its files."""

    def copy(short):
        target = tmp_path / f"{short}_copy"
        shutil.copytree(getattr(runs, short).dir, target)
        return target

    def edit(run, name, pattern, replacement):
        text = (run / name).read_text(encoding="utf-8")
        assert re.search(pattern, text), f"{pattern!r} not in {name}"
        (run / name).write_text(re.sub(pattern, replacement, text, count=1), encoding="utf-8")
        return run

    return types.SimpleNamespace(tmp=tmp_path, copy=copy, edit=edit)


def spoiled(f, short, files=(), edits=()):
    """A copy of a task's run with `files` ({name: bytes, text, or None to remove it}) written and
    `edits` ((file, regex, replacement), ...) made."""
    run = tree(f.copy(short), files)
    for name, pattern, replacement in edits:
        f.edit(run, name, pattern, replacement)
    return run


def more_tokens(f, short, name, count=300):
    """A copy of a run whose vocabulary file `name` has `count` tokens more than the model was built for."""
    run = f.copy(short)
    with open(run / name, "a", encoding="utf-8") as vocabulary:
        vocabulary.write("".join(f"extra{i}\n" for i in range(count)))
    return run


def first_lines(f, short, name, keep):
    run = f.copy(short)
    lines = (run / name).read_text(encoding="utf-8").splitlines(keepends=True)
    (run / name).write_text("".join(lines[:keep]), encoding="utf-8")
    return run


def load(run):
    return kdl.recipes.load(run)


def wav_file(f, name="clip.wav", samples=None, **header):
    return write(f.tmp / name, wav_bytes((tone(300, 800, RATE) if samples is None else samples).tobytes(),
                                         rate=header.pop("rate", RATE), **header))


DOES_NOT_HOLD = "does not hold together"

# --- predict: what each task makes of odd inputs ---------------------------------------------------

PREDICT_CASES = [
    # image classifier
    ("image: predict on a folder path", lambda f, r: r.image.recipe.predict(str(f.tmp)), DataError,
     r"cannot read image .*: \[Errno 21\] Is a directory"),
    ("image: predict on a list of a path and an array", lambda f, r: r.image.recipe.predict(
        [str(png(f.tmp / "a.png", size=(8, 8))), np.zeros((8, 8))]), DataError, r"predict\(\) got list"),
    ("image: predict on a 5-D array", lambda f, r:
        r.image.recipe.predict(np.zeros((1, 2, 8, 8, 1))), DataError,
     r"predict\(\) got images of shape \(1, 2, 8, 8, 1\)"),
    ("image: predict on an array of strings", lambda f, r: r.image.recipe.predict(np.array([["a", "b"]])),
     DataError, r"predict\(\) got"),
    ("image: predict on an empty list", lambda f, r: r.image.recipe.predict([]), DataError,
     r"predict\(\) got images of shape \(0,\)"),
    ("image: predict with an option it does not have", lambda f, r: r.image.recipe.predict(
        np.zeros((8, 8)), top_k=3), ConfigError,
     r"image_classifier predict\(\) has no option 'top_k'; its options: none"),
    # text classifier
    ("text: predict on None", lambda f, r: r.text.recipe.predict(None), DataError,
     r"predict\(\) takes a string or a non-empty list of strings; got NoneType"),
    ("text: predict on bytes", lambda f, r: r.text.recipe.predict(b"a fine film"), DataError,
     "a non-empty list of strings; got bytes"),
    ("text: predict on an array of numbers", lambda f, r: r.text.recipe.predict(np.arange(3)), DataError,
     r"predict\(\) takes strings; item 0 is int 0"),
    ("text: predict on a list holding None", lambda f, r: r.text.recipe.predict(["fine", None]), DataError,
     r"item 1 is NoneType None"),
    ("text: predict on an empty list", lambda f, r: r.text.recipe.predict([]), DataError,
     "a non-empty list of strings; got list"),
    # translator
    ("translator: beam_size 0", lambda f, r: r.translator.recipe.predict("a cat", beam_size=0), ConfigError,
     r"beam_size must be a positive int \(1 is greedy\); got 0"),
    ("translator: beam_size 2.0 (once a beam of 2 was used)", lambda f, r: [
        r.translator.recipe.predict("a cat", beam_size=size) for size in (2, 2.0)], ConfigError,
     "beam_size must be a positive int .*; got 2.0"),
    ("translator: beam_size True", lambda f, r:
        r.translator.recipe.predict("a cat", beam_size=True), ConfigError,
     "beam_size must be a positive int .*; got True"),
    ("translator: a length penalty that is a string", lambda f, r: r.translator.recipe.predict(
        "a cat", length_penalty="x"), ConfigError, "length_penalty must be a finite number .*; got 'x'"),
    ("translator: a NaN length penalty", lambda f, r: r.translator.recipe.predict(
        "a cat", length_penalty=float("nan")), ConfigError,
     "length_penalty must be a finite number .*; got nan"),
    ("translator: a number among the sentences", lambda f, r: r.translator.recipe.predict(["a cat", 7]),
     DataError, r"predict\(\) takes strings; item 1 is int 7"),
    ("translator: predict with a speech option", lambda f, r: r.translator.recipe.predict(
        "a cat", decoder="greedy"), ConfigError, "translator predict\\(\\) has no option 'decoder'"),
    # audio classifier
    ("audio: predict on a file that is not a WAV", lambda f, r: r.audio.recipe.predict(str(write(
        f.tmp / "n.wav", "not a recording at all"))), DataError,
     r"cannot read WAV file '.*n.wav': file does not start with RIFF id"),
    ("audio: predict on a PNG", lambda f, r: r.audio.recipe.predict(str(png(f.tmp / "a.png"))), DataError,
     r"cannot read WAV file '.*a.png'"),
    ("audio: predict on an empty WAV", lambda f, r:
        r.audio.recipe.predict(str(wav_file(f, samples=tone(1, 0)))),
     DataError, r"WAV file '.*clip.wav' is empty \(no audio frames\)"),
    ("audio: predict on a stereo WAV of 0 Hz", lambda f, r: r.audio.recipe.predict(str(wav_file(
        f, channels=2, rate=0))), DataError, "has a frame rate of 0 Hz"),
    ("audio: predict on a 2-D waveform", lambda f, r: r.audio.recipe.predict([np.zeros((2, 3))]), DataError,
     r"input 0 has shape \(2, 3\) and dtype float64; expected a WAV file path or a non-empty 1-D waveform"),
    ("audio: predict on an empty waveform", lambda f, r: r.audio.recipe.predict(np.zeros(0)), DataError,
     r"input 0 has shape \(0,\)"),
    ("audio: predict on NaN samples", lambda f, r: r.audio.recipe.predict(np.full(100, np.nan, "float32")),
     DataError, "values that are NaN or infinite"),
    ("audio: predict on a folder path", lambda f, r: r.audio.recipe.predict(str(f.tmp)), DataError,
     r"cannot read WAV file .*Is a directory"),
    # speech recognizer
    ("speech: an unknown decoder", lambda f, r:
        r.speech.recipe.predict(CLIPS, decoder="viterbi"), ConfigError,
     "model.decoder must be one of greedy, beam_search.*; got 'viterbi'"),
    ("speech: a clip longer than max_seconds", lambda f, r:
        r.speech.recipe.predict(np.zeros(5000, "float32")),
     DataError, "input 0: the clip has 5000 samples, more than the maximum 1200 \\(max_seconds\\)"),
    ("speech: a WAV file longer than max_seconds", lambda f, r: r.speech.recipe.predict(str(wav_file(
        f, samples=tone(300, 5000)))), DataError,
     "clip.wav: the clip has 5000 samples, more than the maximum 1200"),
    ("speech: predict on a text file", lambda f, r:
        r.speech.recipe.predict(str(write(f.tmp / "t.txt", "one two"))),
     DataError, r"cannot read WAV file '.*t.txt'"),
    ("speech: predict on an empty list", lambda f, r: r.speech.recipe.predict([]), DataError,
     "expected WAV file paths or waveforms"),
]


def _warned(make):
    """(what `make()` returns, the KdlWarnings it issued)."""
    with pytest.warns(KdlWarning) as caught:
        result = make()
    return result, [str(warning.message) for warning in caught]


HANDLED_PREDICT = [
    # (name, make(files, runs) -> result, check(result) -> True when right)
    ("text: an empty string is all padding", lambda f, r: r.text.recipe.predict([""]).labels,
     lambda labels: len(labels) == 1 and labels[0] in ("neg", "pos")),
    ("text: 100,000 words are cut to max_length", lambda f, r:
        r.text.recipe.predict(["fine " * 100_000]).labels,
     lambda labels: len(labels) == 1),
    ("text: NUL, an emoji and a character beyond the BMP", lambda f, r: r.text.recipe.predict(
        ["a\x00b \U0001F600 \U00010348"]).probabilities,
     lambda p: p.shape == (1, 2) and np.isfinite(p).all()),
    ("translator: an empty sentence", lambda f, r: r.translator.recipe.predict("").rows(),
     lambda rows: len(rows) == 1 and isinstance(rows[0]["translation"], str)),
    ("translator: a beam wider than the target vocabulary", lambda f, r: r.translator.recipe.predict(
        "a cat", beam_size=50).log_probabilities,
     lambda scores: scores.shape == (1,) and np.isfinite(scores).all()),
    ("translator: a sentence past max_length is cut, with a warning", lambda f, r: _warned(
        lambda: r.translator.recipe.predict("a cat " * 50).translations),
     lambda pair: len(pair[0]) == 1 and "longer than data.max_length=8 tokens" in pair[1][0]),
    ("audio: a WAV at another rate is resampled", lambda f, r: r.audio.recipe.prepare_inputs(str(wav_file(
        f, samples=tone(300, 1600, 8000), rate=8000))),
     lambda x: x.shape == (1, 1200) and abs(x).max() > 0.4),
    ("audio: a stereo WAV is mixed down", lambda f, r: r.audio.recipe.prepare_inputs(str(wav_file(
        f, samples=np.stack([tone(300), tone(300)], axis=1), channels=2)))[0, :800],
     lambda x: np.allclose(x, tone(300) / 32768, atol=1e-4)),
    ("audio: waveforms longer than the clip are centre-cropped", lambda f, r: r.audio.recipe.prepare_inputs(
        np.arange(1400, dtype="float32") / 1400), lambda x: x.shape == (1, 1200) and x[0, 0] == 100 / 1400),
    ("speech: int16 samples", lambda f, r: r.speech.recipe.predict(np.zeros(1000, "int16")).transcripts,
     lambda texts: len(texts) == 1 and isinstance(texts[0], str)),
]

# --- run directories: missing assets, files from different runs, runs of another task -----------

RUN_CASES = [
    # text classifier: vocabulary.txt
    ("text run: vocabulary.txt not UTF-8", lambda f, r: load(spoiled(f, "text", {
        "vocabulary.txt": b"film\ncaf\xe9\n"})), DataError,
     r"vocabulary.txt, line 2: byte 0xe9 at column 4 is not UTF-8 text; save the file as UTF-8"),
    ("text run: vocabulary.txt empty", lambda f, r:
        load(spoiled(f, "text", {"vocabulary.txt": ""})), DataError,
     r"the vocabulary file .*vocabulary.txt is empty; expected one token a line"),
    ("text run: a token twice in vocabulary.txt", lambda f, r: load(spoiled(f, "text", {
        "vocabulary.txt": "film\nfine\nfilm\n"})), DataError,
     r"vocabulary.txt, line 3: the token 'film' again \(first on line 1\); a vocabulary lists each token "
     "once"),
    ("text run: a blank line in vocabulary.txt", lambda f, r: load(spoiled(f, "text", {
        "vocabulary.txt": "film\n\nfine\n"})), DataError, r"vocabulary.txt, line 2: an empty token"),
    ("text run: vocabulary.txt that is a folder", lambda f, r: load(tree(spoiled(f, "text", {
        "vocabulary.txt": None}), {"vocabulary.txt/x": ""})), ConfigError, "has no vocabulary.txt"),
    ("text run: more tokens than the model's embedding", lambda f, r:
        load(more_tokens(f, "text", "vocabulary.txt")), ConfigError,
     rf"{DOES_NOT_HOLD}: its vocabulary.txt and recipe.toml make 8 token ids from 0 to \d+ per text, "
     r"but model.keras takes 8 ids from 0 to \d+; the files come from different runs"),
    ("text run: max_length edited in recipe.toml", lambda f, r: load(spoiled(f, "text", edits=[
        ("recipe.toml", r"max_length = 8", "max_length = 16")])), ConfigError,
     rf"{DOES_NOT_HOLD}: .* make 16 token ids .* but model.keras takes 8 ids"),
    ("text run: three class names for a model of two", lambda f, r: load(spoiled(f, "text", edits=[
        ("recipe.toml", r'class_names = \[[^]]*\]', 'class_names = ["neg", "pos", "meh"]')])), ConfigError,
     rf"{DOES_NOT_HOLD}: its recipe.toml and assets call for 3 outputs per position but model.keras has 2"),
    ("text run holding an image model", lambda f, r: load(spoiled(f, "text", {
        "model.keras": r.image.dir.joinpath("model.keras").read_bytes()})), ConfigError,
     rf"{DOES_NOT_HOLD}: its recipe.toml and assets call for 2 outputs per position but model.keras has 10"),
    # translator: source_vocabulary.txt, target_vocabulary.txt
    ("translator run without source_vocabulary.txt", lambda f, r: load(spoiled(f, "translator", {
        "source_vocabulary.txt": None})), ConfigError,
     "has no source_vocabulary.txt; a translation run needs the vocabularies its tokenizers learned"),
    ("translator run: a token twice in target_vocabulary.txt", lambda f, r: load(spoiled(f, "translator", {
        "target_vocabulary.txt": "[PAD]\n[UNK]\n[PAD]\n"})), DataError,
     r"target_vocabulary.txt, line 3: the token '\[PAD\]' again \(first on line 1\)"),
    ("translator run: a vocabulary without [UNK]", lambda f, r: load(spoiled(f, "translator", {
        "source_vocabulary.txt": "[PAD]\nKatze\n"})), DataError,
     r"the vocabulary file .*source_vocabulary.txt does not suit a 'wordpiece' tokenizer: Cannot find "
     r"`oov_token=\"\[UNK\]\"`"),
    ("translator run: a target vocabulary cut short", lambda f, r: load(first_lines(
        f, "translator", "target_vocabulary.txt", 20)), ConfigError,
     rf"{DOES_NOT_HOLD}: its target_vocabulary.txt and recipe.toml \(data.max_length\) make target token ids "
     r"from 0 to 19, at most 9 per sentence, but model.keras takes ids from 0 to \d+"),
    ("translator run: more source tokens than the model's embedding", lambda f, r: load(more_tokens(
        f, "translator", "source_vocabulary.txt")), ConfigError,
     rf"{DOES_NOT_HOLD}: its source_vocabulary.txt and recipe.toml \(data.max_length\) make source token ids "
     r"from 0 to \d+, at most 9 per sentence, but model.keras takes ids from 0 to \d+, at most 9"),
    ("translator run: max_length edited in recipe.toml", lambda f, r: load(spoiled(f, "translator", edits=[
        ("recipe.toml", r"max_length = 8", "max_length = 30")])), ConfigError,
     rf"{DOES_NOT_HOLD}: .* at most 31 per sentence, but model.keras takes .* at most 9"),
    # audio classifier and speech recognizer
    ("audio run: two class names for a model of three", lambda f, r: load(spoiled(f, "audio", edits=[
        ("recipe.toml", r'class_names = \[[^]]*\]', 'class_names = ["low", "high"]')])), ConfigError,
     rf"{DOES_NOT_HOLD}: its recipe.toml and assets call for 2 outputs per position but model.keras has 3"),
    ("audio run: sample_rate edited in recipe.toml", lambda f, r: load(spoiled(f, "audio", edits=[
        ("recipe.toml", r"sample_rate = 4000", "sample_rate = 8000")])), ConfigError,
     rf"{DOES_NOT_HOLD}: its recipe.toml makes clips of \d+ samples"),
    ("speech run without characters.json", lambda f, r: load(spoiled(f, "speech", {"characters.json": None})),
     ConfigError, "has no characters.json; a speech run needs the character vocabulary it was trained with"),
    ("speech run: characters.json one character longer", lambda f, r: load(spoiled(f, "speech", edits=[
        ("characters.json", r"^\[", '["#", ')])), ConfigError,
     rf"{DOES_NOT_HOLD}: its recipe.toml and assets call for \d+ outputs per position"),
    ("speech run: characters.json that is not JSON", lambda f, r: load(spoiled(f, "speech", {
        "characters.json": "abc"})), DataError, "characters.json"),
    ("speech run: characters.json of numbers", lambda f, r: load(spoiled(f, "speech", {
        "characters.json": "[1, 2, 3]"})), DataError, "characters.json"),
    ("speech run: characters.json not UTF-8", lambda f, r: load(spoiled(f, "speech", {
        "characters.json": b'["\xff"]'})), DataError, "characters.json"),
    ("speech run: sample_rate edited in recipe.toml", lambda f, r: load(spoiled(f, "speech", edits=[
        ("recipe.toml", r"sample_rate = 4000", "sample_rate = 16000")])), ConfigError,
     rf"{DOES_NOT_HOLD}: its recipe.toml makes clips of \d+ samples"),
    # any task: recipe.toml itself
    ("a run whose recipe.toml names another task", lambda f, r: load(spoiled(f, "image", edits=[
        ("recipe.toml", 'task = "image_classifier"', 'task = "translator"')])), ConfigError,
     r"recipe.toml: data: unknown setting 'class_names'"),
    ("a run whose recipe.toml is not TOML", lambda f, r:
        load(spoiled(f, "audio", {"recipe.toml": "task = ["})),
     ConfigError, "recipe.toml is not a valid TOML recipe"),
    ("a run without recipe.toml", lambda f, r: load(spoiled(f, "speech", {"recipe.toml": None})), ConfigError,
     "run directory without recipe.toml"),
    ("saving a text recipe over an image run", lambda f, r: r.text.recipe.save(f.copy("image")), ConfigError,
     "holds a 'image_classifier' run; refusing to overwrite it with a 'text_classifier' run"),
    ("fitting a translator into a speech run", lambda f, r: r.translator.recipe.fit(out=f.copy("speech")),
     ConfigError, "holds a 'speech_recognizer' run; refusing to overwrite it with a 'translator' run"),
]

# --- the kdl command: bad arguments to every command --------------------------------------------


def _npy(f, name, array, **options):
    np.save(f.tmp / name, array, **options)
    return f.tmp / name



CLI_CASES = [
    # predict
    ("predict --top-k 0", lambda f, r:
        ["predict", r.image.dir, _npy(f, "x.npy", np.zeros((8, 8))), "--top-k", 0],
     "top k must be a whole number from 1 to 10 (the number of classes); got 0"),
    ("predict --top-k above the class count", lambda f, r:
        ["predict", r.text.dir, "fine", "--text", "--top-k", 3],
     "top k must be a whole number from 1 to 2 (the number of classes); got 3"),
    ("predict --top-k -1", lambda f, r: ["predict", r.audio.dir, wav_file(f), "--top-k", -1],
     "top k must be a whole number from 1 to 3 (the number of classes); got -1"),
    ("predict --beam-size 0", lambda f, r: ["predict", r.translator.dir, "a cat", "--beam-size", 0],
     "beam_size must be a positive int (1 is greedy); got 0"),
    ("predict --beam-size on a text classifier", lambda f, r:
        ["predict", r.text.dir, "fine", "--beam-size", 2],
     "text_classifier predict() has no option 'beam_size'; its options: none"),
    ("predict --decoder on an audio classifier", lambda f, r:
        ["predict", r.audio.dir, wav_file(f), "--decoder",
                                                               "beam_search"],
     "audio_classifier predict() has no option 'decoder'"),
    ("predict on a folder of no images", lambda f, r:
        ["predict", r.image.dir, write(f.tmp / "notes.txt").parent],
     "holds no .bmp or .gif or .jpeg or .jpg or .png files for this image_classifier run"),
    ("predict on a folder of no WAVs", lambda f, r: ["predict", r.audio.dir, f.tmp],
     "holds no .wav files for this audio_classifier run"),
    ("predict a text file that is not UTF-8", lambda f, r: ["predict", r.text.dir, write(
        f.tmp / "r.txt", b"fine\ncaf\xe9\n")], "r.txt, line 2: byte 0xe9 at column 4 is not UTF-8 text"),
    ("predict an empty .txt file with a text run", lambda f, r: ["predict", r.translator.dir, write(
        f.tmp / "e.txt")], "e.txt"),
    ("predict a .npy of Python objects", lambda f, r: ["predict", r.image.dir, _npy(
        f, "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)],
     "as a NumPy .npy array: Object arrays cannot be loaded when allow_pickle=False"),
    ("predict a .npy waveform that is empty", lambda f, r:
        ["predict", r.speech.dir, _npy(f, "e.npy", np.zeros(0))],
     "e.npy"),
    ("predict with a run that is not there", lambda f, r: ["predict", f.tmp / "no_run", "a cat"],
     "no_run': no such file"),
    ("predict with a run whose vocabulary is corrupt", lambda f, r: ["predict", spoiled(f, "text", {
        "vocabulary.txt": "a\na\n"}), "fine"], "vocabulary.txt, line 2: the token 'a' again"),
    # translate, transcribe
    ("translate with an image run", lambda f, r: ["translate", r.image.dir, "a cat"],
     "holds a 'image_classifier' run; `kdl translate` needs a translator run"),
    ("translate --beam-size 0", lambda f, r: ["translate", r.translator.dir, "a cat", "--beam-size", 0],
     "beam_size must be a positive int"),
    ("transcribe with a text run", lambda f, r: ["transcribe", r.text.dir, wav_file(f)],
     "holds a 'text_classifier' run; `kdl transcribe` needs a speech_recognizer run"),
    ("transcribe a file that is not a WAV", lambda f, r: ["transcribe", r.speech.dir, png(f.tmp / "a.png")],
     "cannot read WAV file"),
    ("transcribe a folder of no WAVs", lambda f, r: ["transcribe", r.speech.dir, f.tmp],
     "holds no .wav files for this speech_recognizer run"),
    ("transcribe a WAV of 40-bit samples", lambda f, r: ["transcribe", r.speech.dir, write(
        f.tmp / "w.wav", wav_bytes(b"\0" * 50, width=5))], "has 40-bit samples"),
    # evaluate, export
    ("evaluate a run trained on in-memory arrays", lambda f, r: ["evaluate", r.translator.dir],
     'data.source is "arrays" but no arrays were given'),
    ("evaluate a run whose recipe.toml names too few classes", lambda f, r:
        ["evaluate", spoiled(f, "audio", edits=[
        ("recipe.toml", r'class_names = \[[^]]*\]', 'class_names = ["low", "high"]')])], DOES_NOT_HOLD),
    ("export a speech run as tflite", lambda f, r: ["export", r.speech.dir, "--format", "tflite"],
     "unknown export format 'tflite'"),
    ("export a run without its vocabulary", lambda f, r: ["export", spoiled(f, "translator", {
        "target_vocabulary.txt": None}), "--format", "keras"], "has no target_vocabulary.txt"),
    # train
    ("train a recipe file that is not there", lambda f, r: ["train", f.tmp / "missing.toml"],
     "missing.toml': no such file"),
    ("train with an unknown --set field", lambda f, r: ["train", "translator", "--set", "decode.beams=2"],
     "unknown setting 'decode.beams'; did you mean 'beam_size'"),
    ("train with --set and no value", lambda f, r: ["train", "speech_recognizer", "--set", "model.decoder"],
     "expected section.field=value, got 'model.decoder'"),
    ("train with a seed past 2**32 - 1", lambda f, r:
        ["train", "audio_classifier", "--set", "seed=4294967296"],
     "seed must be less than 4294967296"),
    ("train with a batch size beyond int64", lambda f, r: ["train", "text_classifier", "--set",
                                                           "data.batch_size=9223372036854775808"],
     "data.batch_size: expected int from -2**63 to 2**63 - 1"),
    ("train a recipe file with a BOM and an unknown field", lambda f, r: ["train", write(
        f.tmp / "b.toml", '\ufefftask = "translator"\n[decode]\nbeams = 2\n')], "unknown setting 'beams'"),
    # compare: refused before any backend process starts
    ("compare with an unknown backend", lambda f, r:
        ["compare", "image_classifier", "--backends", "jax,mxnet",
                                                      "--out", f.tmp / "c"],
     "unknown backend(s) ['mxnet']; choose from jax, tensorflow, torch"),
    ("compare a recipe file that is not there", lambda f, r: ["compare", f.tmp / "missing.toml", "--out",
                                                              f.tmp / "c"], "missing.toml"),
    ("compare a task that does not exist", lambda f, r: ["compare", "image_segmenter", "--out", f.tmp / "c"],
     "unknown task 'image_segmenter'"),
    ("compare --epochs -1", lambda f, r:
        ["compare", "image_classifier", "--epochs", -1, "--out", f.tmp / "c"],
     "epochs"),
    ("compare --steps 0", lambda f, r: ["compare", "image_classifier", "--steps", 0, "--out", f.tmp / "c"],
     "steps"),
    ("compare --batch-size 0", lambda f, r: ["compare", "image_classifier", "--batch-size", 0, "--out",
                                             f.tmp / "c"], "batch_size"),
    ("compare with an unknown --set field", lambda f, r:
        ["compare", "image_classifier", "--set", "train.epochz=1",
                                                          "--out", f.tmp / "c"], "unknown setting"),
    ("compare --out a file", lambda f, r:
        ["compare", "image_classifier", "--out", write(f.tmp / "report.md")],
     "report.md"),
    # argument parsing
    ("predict --top-k abc", lambda f, r: ["predict", r.image.dir, "x.npy", "--top-k", "abc"],
     "invalid int value: 'abc'"),
    ("an unknown command", lambda f, r: ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("compare --epochs and --steps together", lambda f, r: ["compare", "image_classifier", "--epochs", 1,
                                                            "--steps", 1],
     "not allowed with argument"),
]


@pytest.mark.parametrize("make_case, error, message", params(PREDICT_CASES + RUN_CASES))
def test_bad_input_raises_a_clear_error(make_case, error, message, files, runs):
    with pytest.raises(error, match=message):
        make_case(files, runs)


@pytest.mark.parametrize("make_result, check", params(HANDLED_PREDICT, width=2))
def test_handled_input_gives_the_right_result(make_result, check, files, runs):
    result = make_result(files, runs)
    assert check(result), result


def _no_backend_process(*args, **kwargs):
    raise AssertionError("kdl compare started a backend process for arguments it should have refused")


@pytest.mark.parametrize("make_argv, message", params(CLI_CASES, width=2))
def test_bad_cli_input_is_one_error_line(make_argv, message, files, runs, capsys, monkeypatch):
    monkeypatch.setattr("kdl.compare.runner._run_worker", _no_backend_process)
    check_one_error_line(make_argv(files, runs), capsys, message)


@pytest.mark.parametrize("task, good, bad, message", [
    ("image", lambda f: png(f.tmp / "good.png", 200, (8, 8)), lambda f: write(f.tmp / "bad.png", b"\x89PNG"),
     "cannot read image"),
    ("text", lambda f: write(f.tmp / "good.txt", "a fine film\n"),
     lambda f: write(f.tmp / "bad.txt", b"\xff\n"), "is not UTF-8 text"),
    ("audio", lambda f: wav_file(f, "good.wav"), lambda f: write(f.tmp / "bad.wav", wav_bytes(rate=0)),
     "has a frame rate of 0 Hz"),
    ("speech", lambda f: wav_file(f, "good.wav"), lambda f: write(f.tmp / "bad.wav", b""),
     "cannot read WAV file"),
])
def test_predict_on_good_and_bad_files_predicts_the_good_ones(task, good, bad, message, files, runs, capsys):
    """`kdl predict RUN good bad good`: the good files are predicted, the bad one is one error line,
    and the exit status is 1."""
    good_file, bad_file = good(files), bad(files)
    second = shutil.copy(good_file, files.tmp / f"again{good_file.suffix}")
    argv = ["predict", getattr(runs, task).dir, good_file, bad_file, second, "--json"]
    out, err = check_one_error_line(argv, capsys, message)
    assert str(bad_file) in err
    rows = json.load(io.StringIO(out))
    assert [row["input"] for row in rows] == [str(good_file), str(second)]
