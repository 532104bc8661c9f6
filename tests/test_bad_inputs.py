"""A catalogue of bad inputs: each must raise a kdl error (DataError, ConfigError, RunError) whose
message names the problem (what was received, what was expected, which file or field), never a
traceback from deep inside numpy, PIL or a backend; a "handled" input must give the right result.

This file: the data readers of every task (image and text folders, IDX, CSV/TSV, line files,
WAV folders, symbolic links, gzip bombs), config fields of every section of every task, recipe
TOML files, and an image run's directory, predict and CLI. `test_bad_inputs_tasks.py`: the runs,
predict and CLI commands of all five tasks. CLI cases run `kdl.cli.main` in-process and must exit
1 with one `kdl: error:` line on stderr.

A case marked `needs: ...` is a strict xfail: the fix belongs in a file this catalogue's owner
does not edit, and the case says what it is waiting for.
"""

import gzip
import shutil
import struct
import tracemalloc

import keras
import numpy as np
import pytest
from PIL import Image

import kdl
from kdl.cli import main
from kdl.data import load_audio, load_images, load_parallel, load_texts, load_transcripts, read_wav
from kdl.errors import ConfigError, DataError, RunError

TEXTS, LABELS = ["good film", "bad film", "great movie", "awful movie"] * 5, [1, 0, 1, 0] * 5
PAIRS = (["a cat", "a dog", "two cats", "one dog", "a bird"] * 4,
         ["eine Katze", "ein Hund", "zwei Katzen", "ein Hund", "ein Vogel"] * 4)


def params(cases, width=3):
    """pytest params from cases (name, `width` values[, needs]): `needs`, the fix a case waits
    for in a file this catalogue's owner does not edit, makes it a strict xfail."""
    return [pytest.param(*case[1:width + 1], id=case[0], marks=[
        pytest.mark.xfail(strict=True, reason=f"needs: {case[width + 1]}")] if len(case) > width + 1 else [])
        for case in cases]


def check_one_error_line(argv, capsys, message, status=1):
    """Run `kdl argv` in-process: exit `status`, one `kdl: error:` line holding `message`, no
    traceback. Returns (stdout, stderr)."""
    assert main([str(arg) for arg in argv]) == status
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len([line for line in lines if line.startswith("kdl: error: ")]) == 1, err
    assert message in err, err
    return out, err


# --- making files: data folders, links, WAV headers ----------------------------------------------


def write(path, data=b""):
    """`data` (bytes or text) at `path`, folders made; the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def link(path, target):
    """A symbolic link at `path` to `target` (relative to the link's folder, as `ln -s` makes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def png(path, value=0, size=(4, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)
    return path


def tree(root, files=(), links=()):
    """`files` ({relative path: bytes or text, or None to remove it}) then `links` ({relative
    path: target}) under `root`."""
    for name, data in dict(files).items():
        if data is None:
            (root / name).unlink()
        else:
            write(root / name, data)
    for name, target in dict(links).items():
        if (root / name).exists():
            (root / name).unlink()
        link(root / name, target)
    return root


def image_folder(root, files=(), links=(), classes=("cat", "dog")):
    """Class folders of three 4x4 grey PNGs each, then `files` and `links` (see `tree`)."""
    for label, name in enumerate(classes):
        for index in range(3):
            png(root / name / f"{index}.png", 40 * label + index)
    return tree(root, files, links)


def text_folder(root, files=(), links=()):
    """Class folders "neg" and "pos" of three .txt examples each, then `files` and `links`."""
    for name in ("neg", "pos"):
        for index in range(3):
            write(root / name / f"{index}.txt", f"{name} review {index}")
    return tree(root, files, links)


def idx(array, dtype_code=0x08):
    """An IDX file's bytes: magic, one big-endian uint32 per dim, the values."""
    header = struct.pack(">HBB", 0, dtype_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def idx_folder(root, files=(), links=()):
    """An MNIST-layout folder of gzip'd IDX files (6 train, 3 test images of 4x4), then `files`
    (e.g. {"train-labels-idx1-ubyte.gz": bytes}) and `links`."""
    for prefix, count in (("train", 6), ("t10k", 3)):
        labels = np.arange(count) % 3
        for kind, array in (("images", np.zeros((count, 4, 4))), ("labels", labels)):
            write(root / f"{prefix}-{kind}-idx{array.ndim}-ubyte.gz", gzip.compress(idx(array)))
    return tree(root, files, links)


def gzip_bomb(size=64 * 2**20, prefix=b""):
    """`prefix` then `size` zero bytes, gzip'd: 64 MiB in about 64 kB."""
    return gzip.compress(prefix + bytes(size), compresslevel=9)


def wav_bytes(frames=b"\x00\x10" * 400, rate=4000, channels=1, width=2, data_size=None, format_tag=1):
    """A WAV file's bytes, written field by field so that the header can say anything
    (`data_size`: what the data chunk claims to hold)."""
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, rate * channels * width, channels * width,
                      width * 8)
    size = len(frames) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + frames
    return b"RIFF" + struct.pack("<I", min(len(body) + size - len(frames), 2**32 - 1)) + body


def tone(frequency, count=800, rate=4000):
    """`count` 16-bit samples of a sine at `frequency` Hz."""
    return (0.5 * np.sin(2 * np.pi * frequency * np.arange(count) / rate) * 32767).astype("<i2")


def audio_folder(root, files=(), links=()):
    """Label folders "a" and "b" of three 16-bit WAVs each at 4 kHz, then `files` and `links`."""
    for label, frequency in (("a", 300), ("b", 900)):
        for index in range(3):
            write(root / label / f"{index}.wav", wav_bytes(tone(frequency + 10 * index).tobytes()))
    return tree(root, files, links)


def lj_folder(root, metadata, clips=()):
    """An LJSpeech folder: metadata.csv and wavs/{id}.wav for each of `clips` ({id: samples})."""
    for name, samples in dict(clips).items():
        write(root / "wavs" / f"{name}.wav", wav_bytes(samples.tobytes()))
    return tree(root, {"metadata.csv": metadata})


def line_files(root, files=(), links=()):
    """Aligned line files train.en/.de and test.en/.de (5 and 2 lines), then `files` and `links`."""
    for split, count in (("train", 5), ("test", 2)):
        write(root / f"{split}.en", "".join(f"{s}\n" for s in PAIRS[0][:count]))
        write(root / f"{split}.de", "".join(f"{t}\n" for t in PAIRS[1][:count]))
    return tree(root, files, links)


def load_lines(root, **options):
    return load_parallel(root, source_language="en", target_language="de", **options)


# --- fixtures: one tiny image run, and the files a case asks for ---------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny image classifier trained for one epoch, saved; and a folder for the cases' files."""
    recipe = kdl.recipes.image_classifier(epochs=1, limit=120, filters=[4], dense=8)
    recipe.fit(verbose=0)
    run_dir = recipe.save(tmp_path_factory.mktemp("runs") / "digits")
    return recipe, run_dir


@pytest.fixture
def files(tmp_path, run, monkeypatch):
    """Bad files, each made when a case asks for it: files(name) -> path; `files.tmp`, a folder
    of the case's own; `files.monkeypatch`."""
    _, run_dir = run

    def copy_run(name):
        shutil.copytree(run_dir, tmp_path / name)
        return tmp_path / name

    def make(name):
        path = tmp_path / name
        if name == "garbage.png":
            path.write_bytes(b"\x89PNG not really")
        elif name == "images":                       # a class folder with a corrupt image
            (path / "cat").mkdir(parents=True)
            (path / "cat" / "a.png").write_bytes(b"not an image")
            (path / "dog").mkdir()
            (path / "dog" / "b.png").write_bytes(b"not an image")
        elif name == "empty":
            path.mkdir()
        elif name == "idx":                          # a truncated IDX file
            path.mkdir()
            for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
                (path / stem).write_bytes(b"\x00\x00")
        elif name == "idx.gz":                       # a corrupt gzip stream
            path.mkdir()
            for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
                (path / f"{stem}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" * 4)[:-6])
        elif name == "columns.csv":
            path.write_text("review,stars\ngood,1\n")
        elif name == "latin1.csv":
            path.write_bytes("sentence,label\ncaf\xe9,1\n".encode("latin-1"))
        elif name == "bad.toml":
            path.write_text('task = "image_classifier"\n[train\nepochs = 3\n')
        elif name == "field.toml":
            path.write_text('task = "image_classifier"\n[train]\nepochz = 3\n')
        elif name == "type.toml":
            path.write_text('task = "image_classifier"\n[train]\nepochs = "three"\n')
        elif name == "task.toml":
            path.write_text('task = "image_segmenter"\n')
        elif name == "no_model":
            path = copy_run(name)
            (path / "model.keras").unlink()
        elif name == "corrupt_model":
            path = copy_run(name)
            (path / "model.keras").write_bytes(b"PK\x03\x04 truncated")
        elif name == "truncated_model":
            path = copy_run(name)
            data = (path / "model.keras").read_bytes()
            (path / "model.keras").write_bytes(data[: len(data) // 2])
        elif name == "lambda_model":
            path = copy_run(name)
            inputs = keras.Input((8, 8, 1))
            outputs = keras.layers.Lambda(lambda x: keras.ops.mean(x, axis=(1, 2)))(inputs)
            keras.Model(inputs, outputs).save(path / "model.keras")
        elif name == "text_run":                     # a run directory of another task
            path.mkdir()
            (path / "recipe.toml").write_text('task = "text_classifier"\n')
        elif name == "a_file":
            path.write_text("not a folder")
        elif name == "not_an_export":
            path.mkdir()
            (path / "notes.txt").write_text("mine")
        elif name == "text_no_vocabulary":
            recipe = kdl.recipes.text_classifier((TEXTS, LABELS), model="fasttext", epochs=1)
            recipe.model = recipe.build_model()
            recipe.save(path)
            (path / "vocabulary.txt").unlink()
        elif name == "garbage.npy":
            path.write_bytes(b"\x93NUMPY garbage")
        elif name == "wrong_shape.npy":              # two channels: neither grey, RGB nor RGBA
            np.save(path, np.zeros((2, 28, 28, 2)))
        elif name == "classes_edited":               # recipe.toml names 3 classes, the model has 10
            path = copy_run(name)
            toml = (path / "recipe.toml").read_text()
            start = toml.index("class_names = [")
            end = toml.index("]", start) + 1
            (path / "recipe.toml").write_text(toml[:start] + 'class_names = ["a", "b", "c"]' + toml[end:])
        elif name == "unfinished":                   # killed before save: a checkpoint, no model
            path = copy_run(name)
            (path / "model.keras").rename(path / "checkpoint.keras")
        else:
            raise KeyError(name)
        return path

    make.tmp, make.monkeypatch = tmp_path, monkeypatch
    return make


def _trained(run):
    return run[0]


CASES = [
    # (the catalogue's first cases: an image run's loaders, recipes, run directory and outputs)
    # loaders: missing, corrupt, wrong shapes and types, empty data
    ("missing folder", lambda f, r: load_images("no/such/folder"), DataError, "no/such/folder"),
    ("unknown source type", lambda f, r: load_images(42), DataError, "unsupported data source of type int"),
    ("corrupt image in a class folder", lambda f, r: load_images(f("images")), DataError,
     "cannot read image"),
    ("empty folder", lambda f, r: load_images(f("empty")), DataError, "neither a folder of IDX files"),
    ("truncated IDX file", lambda f, r: load_images(f("idx")), DataError, "truncated"),
    ("corrupt gzip IDX file", lambda f, r: load_images(f("idx.gz")), DataError, "corrupt gzip"),
    ("images of the wrong rank", lambda f, r: load_images((np.zeros((4, 5)), np.zeros(4, int))),
     DataError, r"x has shape \(4, 5\)"),
    ("float labels", lambda f, r: load_images((np.zeros((4, 8, 8)), np.zeros(4))), DataError,
     "integer class indices"),
    ("more images than labels", lambda f, r: load_images((np.zeros((4, 8, 8)), np.zeros(3, int))),
     DataError, "holds 4 images but y"),
    ("one class only", lambda f, r: load_images((np.zeros((4, 8, 8)), np.zeros(4, int))), DataError,
     "at least 2"),
    ("validation_split of 1.5", lambda f, r: load_images("digits", validation_split=1.5), DataError,
     r"validation_split must be in \[0, 1\)"),
    ("negative limit", lambda f, r: load_images("digits", limit=-3), DataError,
     "limit must be a positive int"),
    ("zero image size", lambda f, r: load_images("digits", image_size=[0, 8]), DataError,
     r"image_size must be \(height, width\)"),
    ("CSV without the text column", lambda f, r: load_texts(f("columns.csv")), DataError, "sentence"),
    ("CSV that is not UTF-8", lambda f, r: load_texts(f("latin1.csv")), DataError, "not UTF-8"),
    ("a number among texts", lambda f, r: load_texts((["fine", 3, "ok", "bad"], [1, 0, 1, 0])), DataError,
     "texts\\[1\\] is int"),
    ("more texts than labels", lambda f, r: load_texts((["a", "b", "c"], [0, 1])), DataError,
     "3 texts but 2 labels"),
    # recipes: unknown names and fields, wrong types
    ("unknown model", lambda f, r: kdl.recipes.image_classifier(model="resnet50"), ConfigError,
     "unknown model 'resnet50'"),
    ("unknown option", lambda f, r: kdl.recipes.image_classifier(epohcs=3), ConfigError, "epohcs"),
    ("epochs of the wrong type", lambda f, r: kdl.recipes.image_classifier(epochs="three"), ConfigError,
     "expected int, got 'three'"),
    ("batch size 0", lambda f, r: kdl.recipes.image_classifier(batch_size=0), ConfigError,
     "data.batch_size must be at least 1; got 0"),
    ("max_length 0 (crashed the process)", lambda f, r: kdl.recipes.text_classifier((TEXTS, LABELS),
                                                                                    max_length=0),
     ConfigError, "data.max_length must be at least 1"),
    ("vocabulary of one token", lambda f, r: kdl.recipes.text_classifier((TEXTS, LABELS), vocabulary_size=1),
     ConfigError, "data.vocabulary_size must be at least 2"),
    ("negative epochs", lambda f, r: kdl.recipes.image_classifier(epochs=-1), ConfigError,
     "train.epochs must be at least 0"),
    ("steps_per_execution 0", lambda f, r: kdl.recipes.image_classifier(steps_per_execution=0), ConfigError,
     "train.steps_per_execution must be at least 1"),
    ("negative learning rate", lambda f, r: kdl.recipes.image_classifier(learning_rate=-1e-3), ConfigError,
     "train.learning_rate must be at least 0"),
    ("model option of the wrong type", lambda f, r: kdl.recipes.image_classifier(filters="abc",
                                                                                 limit=50).build_model(),
     ConfigError, "cannot build model 'cnn' with options {'filters': 'abc'}"),
    ("model option out of range", lambda f, r: kdl.recipes.image_classifier(dropout=2.0, limit=50)
     .build_model(), ConfigError, "cannot build model 'cnn' .*rate"),
    ("unknown optimizer", lambda f, r: kdl.recipes.image_classifier(optimizer="adamm", limit=50).fit(
        verbose=0), ConfigError, "unknown Keras optimizer 'adamm'"),
    ("unknown schedule", lambda f, r: kdl.recipes.image_classifier(schedule="linear", limit=50).fit(
        verbose=0), ConfigError, "one of constant, cosine, warmup_cosine; got 'linear'"),
    ("unknown tokenizer", lambda f, r: kdl.recipes.text_classifier((TEXTS, LABELS), tokenizer="bpe").fit(
        verbose=0), ConfigError, "data.tokenizer must be one of"),
    ("unknown split", lambda f, r: _trained(r).evaluate("dev"), DataError, "no split 'dev'"),
    ("predict before fit", lambda f, r: kdl.recipes.image_classifier().predict(np.zeros((8, 8))),
     ConfigError, "no model yet; call fit"),
    ("predict on images of two channels", lambda f, r: _trained(r).predict(np.zeros((2, 28, 28, 2))),
     DataError, r"shape \(2, 28, 28, 2\); this model takes images"),
    ("predict on an empty batch", lambda f, r: _trained(r).predict(np.zeros((0, 8, 8, 1))), DataError,
     r"shape \(0, 8, 8, 1\)"),
    ("predict on NaN pixels", lambda f, r: _trained(r).predict(np.full((2, 8, 8), np.nan)), DataError,
     "128 values that are NaN or infinite"),
    ("predict on infinite pixels", lambda f, r: _trained(r).predict(np.full((8, 8), np.inf)), DataError,
     "64 values that are NaN or infinite"),
    ("predict on a corrupt image file", lambda f, r: _trained(r).predict(str(f("garbage.png"))),
     DataError, "cannot read image"),
    ("predict on a missing image file", lambda f, r: _trained(r).predict("no_such.png"), DataError,
     "no_such.png"),
    ("no texts to predict on", lambda f, r: kdl.recipes.text_classifier((TEXTS, LABELS)).prepare_inputs([]),
     DataError, "a string or a non-empty list of strings"),
    # recipe files and run directories
    ("missing recipe file", lambda f, r: kdl.recipes.load("no_such.toml"), ConfigError, "no such file"),
    ("bad TOML", lambda f, r: kdl.recipes.load(f("bad.toml")), ConfigError, "not a valid TOML recipe"),
    ("unknown config field", lambda f, r: kdl.recipes.load(f("field.toml")), ConfigError,
     "unknown setting 'epochz'; did you mean 'epochs'"),
    ("config field of the wrong type", lambda f, r: kdl.recipes.load(f("type.toml")), ConfigError,
     "train: epochs: expected int, got 'three'"),
    ("unknown task", lambda f, r: kdl.recipes.load(f("task.toml")), ConfigError,
     "unknown task 'image_segmenter'"),
    ("override without =", lambda f, r: kdl.recipes.load(r[1], ["train.epochs"]), ConfigError,
     "expected section.field=value"),
    ("run directory without model", lambda f, r: kdl.recipes.load(f("no_model")), ConfigError,
     "has no model.keras"),
    ("corrupt model file", lambda f, r: kdl.recipes.load(f("corrupt_model")), DataError,
     "is not a Keras model file"),
    ("truncated model file", lambda f, r: kdl.recipes.load(f("truncated_model")), DataError,
     "truncated or corrupt"),
    ("model with a Lambda layer", lambda f, r: kdl.recipes.load(f("lambda_model")), ConfigError,
     "Lambda layer.*unsafe=True"),
    ("text run without its vocabulary", lambda f, r: kdl.recipes.load(f("text_no_vocabulary")),
     ConfigError, "has no vocabulary.txt"),
    # outputs
    ("save over a run of another task", lambda f, r: _trained(r).save(f("text_run")), ConfigError,
     "holds a 'text_classifier' run; refusing to overwrite"),
    ("save to a file", lambda f, r: _trained(r).save(f("a_file")), ConfigError, "is a file"),
    ("save under a file", lambda f, r: _trained(r).save(f("a_file") / "run"), RunError,
     "cannot write the directory"),
    ("unknown export format", lambda f, r: _trained(r).export(f("empty") / "x", "tflite"), ConfigError,
     "unknown export format 'tflite'"),
    ("export over a folder that is not an export", lambda f, r: _trained(r).export(f("not_an_export"),
                                                                                   "keras"),
     ConfigError, "holds no kdl export"),
]



LOOP = "which holds the link: reading it would loop forever"
DANGLES = r"which cannot be followed \(No such file or directory\): it dangles"


def _past_gzip_limit(f):
    f.monkeypatch.setattr("kdl.data.io.GZIP_MAX_BYTES", 1000)
    return load_lines(line_files(f.tmp, {"train.de": None, "train.de.gz": gzip_bomb(10_000)}))


DATA_CASES = [
    # image folders: symbolic links are checked before they are followed
    ("image class folder with a link to its parent (cat/loop -> ..)",
     lambda f, r: load_images(image_folder(f.tmp / "d", links={"cat/loop": ".."})), DataError,
     rf"d/cat/loop is a symbolic link to '\.\.', the folder .*/d, {LOOP}"),
    ("image folder with a link to its own parent (up -> ..)",
     lambda f, r: load_images(image_folder(f.tmp / "d", links={"up": ".."})), DataError,
     rf"d/up is a symbolic link to '\.\.', the folder .*, {LOOP}"),
    ("image folder with a link to itself as a class (again -> .)",
     lambda f, r: load_images(image_folder(f.tmp / "d", links={"again": "."})), DataError,
     rf"d/again is a symbolic link to '\.', the folder .*/d, {LOOP}"),
    ("class folders linking to each other (cat/dogs -> ../dog, dog/cats -> ../cat)",
     lambda f, r: load_images(image_folder(f.tmp / "d", links={"cat/dogs": "../dog", "dog/cats": "../cat"})),
     DataError, rf"cat/dogs/cats is a symbolic link to '\.\./cat', the folder .*/d/cat, {LOOP}"),
    ("dangling link among the images", lambda f, r: load_images(image_folder(
        f.tmp / "d", links={"cat/gone.png": "missing.png"})), DataError,
     rf"d/cat/gone.png is a symbolic link to 'missing.png', {DANGLES}"),
    ("image link to itself", lambda f, r: load_images(image_folder(
        f.tmp / "d", links={"cat/me.png": "me.png"})), DataError,
     r"cat/me.png is a symbolic link to 'me.png', which cannot be followed \(Too many levels of "
                r"symbolic links\)"),
    ("dangling link where a class folder would be",
     lambda f, r: load_images(image_folder(f.tmp / "d", links={"bird": "../birds"})), DataError,
     rf"d/bird is a symbolic link to '\.\./birds', {DANGLES}"),
    ("empty (0-byte) image in a class folder", lambda f, r: load_images(image_folder(
        f.tmp / "d", {"cat/z.png": b""})), DataError, r"cannot read image .*cat/z.png: not an image format"),
    # IDX files: gzip bombs and lying headers
    ("gzip'd IDX file holding far more than its header declares (a gzip bomb)",
     lambda f, r: load_images(idx_folder(f.tmp / "idx", {"train-labels-idx1-ubyte.gz": gzip_bomb(
         prefix=idx(np.arange(6) % 3))})), DataError,
     r"train-labels-idx1-ubyte.gz decompresses to more than the 14 bytes its header declares "
     r"\(shape \(6,\)\); refusing to read on: .* gzip bomb"),
    ("gzip'd IDX header declaring 100 GB", lambda f, r: load_images(idx_folder(f.tmp / "idx", {
        "train-images-idx3-ubyte.gz": gzip.compress(struct.pack(">HBBIII", 0, 8, 3, 100_000, 1000, 1000))})),
     DataError, r"train-images-idx3-ubyte.gz: its header declares shape \(100000, 1000, 1000\), "
                r"100,000,000,016 bytes, more than kdl decompresses \(2,147,483,648: "
                r"kdl.data.io.GZIP_MAX_BYTES\)"),
    ("dangling link in an IDX folder", lambda f, r: load_images(idx_folder(f.tmp / "idx", links={
        "notes": "gone"})), DataError, rf"idx/notes is a symbolic link to 'gone', {DANGLES}"),
    # text: class folders of .txt files, CSV/TSV tables, labels
    ("text class folder with a link to its parent", lambda f, r: load_texts(text_folder(
        f.tmp / "t", links={"pos/up": ".."})), DataError,
     rf"t/pos/up is a symbolic link to '\.\.', the folder .*/t, {LOOP}"),
    ("dangling .txt link", lambda f, r: load_texts(text_folder(f.tmp / "t", links={"neg/gone.txt": "x.txt"})),
     DataError, rf"t/neg/gone.txt is a symbolic link to 'x.txt', {DANGLES}"),
    ("a .txt example that is not UTF-8", lambda f, r: load_texts(text_folder(
        f.tmp / "t", {"pos/bad.txt": b"caf\xe9"})), DataError,
     r"t/pos/bad.txt, line 1: byte 0xe9 at column 4 is not UTF-8 text"),
    ("an empty CSV file", lambda f, r: load_texts(write(f.tmp / "e.csv")), DataError,
     r"e.csv, line 1: no column 'sentence'; the header has columns \[\]"),
    ("a ';'-separated CSV file", lambda f, r: load_texts(write(f.tmp / "s.csv", "sentence;label\na;1\n")),
     DataError, r"s.csv, line 1: no column 'sentence'; the header has columns \['sentence;label'\]\. The "
     r"file looks separated by ';', but a \.csv file is read as ','-separated: save it with ','"),
    ("a comma-separated TSV file", lambda f, r: load_texts(write(f.tmp / "c.tsv", "sentence,label\na,1\n")),
     DataError, r"c.tsv, line 1: no column 'sentence'.* looks separated by ',', but a \.tsv file is read as "
     r"'\\t'-separated"),
    ("a CSV file with a header only", lambda f, r: load_texts(write(f.tmp / "h.csv", "sentence,label\n")),
     DataError, r"the training data has no examples \(0 examples\); a classifier needs at least 2 classes"),
    ("a TSV row with a field too many", lambda f, r: load_texts(write(
        f.tmp / "x.tsv", "sentence\tlabel\nfine\t1\ndull\t0\textra\n")), DataError,
     r"x.tsv, line 3: 3 fields, but the header has 2"),
    ("a label of 1.5", lambda f, r: load_texts(write(f.tmp / "l.csv", "sentence,label\na,1\nb,1.5\n")),
     DataError, r"l.csv, line 3: label '1.5' is neither an integer class index nor a class name"),
    ("a class index beyond int32", lambda f, r: load_texts(write(
        f.tmp / "l.csv", "sentence,label\na,0\nb,99999999999\n")), DataError,
     r"l.csv, line 3: label 99999999999 is not a class index; expected 0 to 2,147,483,646"),
    ("labels mixing class names and indices", lambda f, r: load_texts(write(
        f.tmp / "l.csv", "sentence,label\na,pos\nb,0\n")), DataError,
     "labels must be all class indices or all class names"),
    ("training texts without a single token", lambda f, r: kdl.recipes.text_classifier(
        (["!!", "...", "?", " "] * 5, LABELS), model="fasttext").build_model(), DataError,
     r"the training texts hold no tokens \(every text is empty, or only punctuation and spaces\)"),
    ("a JSON file as a text source", lambda f, r: load_texts(write(f.tmp / "t.json", "{}")), DataError,
     r"t.json is a file; expected a GLUE folder"),
    # translation: aligned line files (plain and gzip'd), TSV pairs, arrays
    ("line files of different lengths", lambda f, r: load_lines(line_files(
        f.tmp, {"train.de": "eins\nzwei\n"})), DataError,
     r"train.en has 5 lines but .*train.de has 2; aligned files need one translation per line"),
    ("an empty line in a line file", lambda f, r: load_lines(line_files(f.tmp, {"test.en": "a cat\n\n"})),
     DataError, r"test.en, line 2: empty line; every line must hold one sentence"),
    ("a gzip'd line file past GZIP_MAX_BYTES", lambda f, r: _past_gzip_limit(f), DataError,
     r"train.de.gz decompresses to more than 1,000 bytes, the most kdl reads \(kdl.data.io.GZIP_MAX_BYTES\)"),
    ("a truncated gzip'd line file", lambda f, r: load_lines(line_files(
        f.tmp, {"train.en": None, "train.en.gz": gzip.compress(b"a cat\n" * 5)[:-8]})), DataError,
     r"train.en.gz is a corrupt gzip stream \(not a complete gzip file\)"),
    ("no test split among the line files", lambda f, r: load_lines(line_files(f.tmp), splits={"test": "val"}),
     DataError, r"no test split: val.en\[.gz\] is missing"),
    ("dangling link as a line file", lambda f, r: load_lines(line_files(f.tmp, links={"test.de": "gone.de"})),
     DataError, rf"test.de is a symbolic link to 'gone.de', {DANGLES}"),
    ("a TSV pair without a tab", lambda f, r: load_lines(write(
        f.tmp / "p.tsv", "a cat\teine Katze\na dog\n")), DataError,
     r"p.tsv, line 2: expected source<TAB>target\[<TAB>...\], got 'a dog'"),
    ("a TSV file of no pairs", lambda f, r: load_lines(write(f.tmp / "p.tsv", "\n\n")), DataError,
     r"p.tsv holds no sentence pairs"),
    ("an empty target text among arrays", lambda f, r: load_parallel(
        (["a cat", "a dog"], ["eine Katze", " "])), DataError,
     r"train target text \[1\] is ' '; expected a non-empty str"),
    ("an unknown split name in splits", lambda f, r: load_lines(line_files(f.tmp), splits={"dev": "val"}),
     DataError, r"splits: unknown split 'dev'; the keys must be among \['train', 'validation', 'test'\]"),
    ("a .csv file as a translation source", lambda f, r: load_lines(write(f.tmp / "p.csv", "a,b\n")),
     DataError,
     r"p.csv is a .csv file; expected a folder of aligned line files"),
    # audio: WAV folders (load_audio) and LJSpeech folders (load_transcripts)
    ("an empty WAV file (a header, no frames)", lambda f, r: load_audio(audio_folder(
        f.tmp / "w", {"a/e.wav": wav_bytes(b"")}), sample_rate=4000), DataError,
     r"WAV file '.*w/a/e.wav' is empty \(no audio frames\)"),
    ("a WAV file with a 0 Hz frame rate", lambda f, r: load_audio(audio_folder(
        f.tmp / "w", {"b/z.wav": wav_bytes(rate=0)}), sample_rate=4000), DataError,
     r"WAV file '.*w/b/z.wav' has a frame rate of 0 Hz; expected 1,000 to 768,000 Hz"),
    ("a WAV file of 40-bit samples", lambda f, r: load_audio(audio_folder(
        f.tmp / "w", {"b/z.wav": wav_bytes(b"\0" * 50, width=5)}), sample_rate=4000), DataError,
     r"WAV file '.*w/b/z.wav' has 40-bit samples and 1 channels; expected 8, 16, 24 or 32-bit PCM"),
    ("a float WAV file (format 3)", lambda f, r: load_audio(audio_folder(
        f.tmp / "w", {"a/f.wav": wav_bytes(b"\0" * 40, width=4, format_tag=3)}), sample_rate=4000), DataError,
     r"cannot read WAV file '.*w/a/f.wav': unknown format: 3; expected a PCM .wav file"),
    ("a text file named .wav", lambda f, r: load_audio(audio_folder(
        f.tmp / "w", {"a/n.wav": "my notes, not a recording"}), sample_rate=4000), DataError,
     r"cannot read WAV file '.*w/a/n.wav': file does not start with RIFF id"),
    ("a 0-byte .wav file", lambda f, r: load_audio(audio_folder(
        f.tmp / "w", {"b/0.wav": b""}), sample_rate=4000), DataError, r"cannot read WAV file '.*w/b/0.wav'"),
    ("a WAV folder with a link to its parent among the labels",
     lambda f, r: load_audio(audio_folder(f.tmp / "w", links={"up": ".."}), sample_rate=4000), DataError,
     rf"w/up is a symbolic link to '\.\.', the folder .*, {LOOP}"),
    ("a label folder with a link to its parent (a/loop -> ..)",
     lambda f, r: load_audio(audio_folder(f.tmp / "w", links={"a/loop": ".."}), sample_rate=4000), DataError,
     rf"w/a/loop is a symbolic link to '\.\.', the folder .*/w, {LOOP}"),
    ("dangling .wav link in a label folder",
     lambda f, r: load_audio(audio_folder(f.tmp / "w", links={"b/gone.wav": "x.wav"}), sample_rate=4000),
     DataError, rf"w/b/gone.wav is a symbolic link to 'x.wav', {DANGLES}"),
    ("an FSDD folder with a WAV not named label_speaker_index.wav", lambda f, r: load_audio(write(
        f.tmp / "fsdd" / "hello.wav", wav_bytes()).parent), DataError,
     r"hello.wav: a folder of WAV files must name them \{label\}_\{speaker\}_\{index\}.wav"),
    ("a label folder without WAVs", lambda f, r: load_audio(audio_folder(f.tmp / "w", {"c/n.txt": "x"}),
                                                            sample_rate=4000), DataError,
     r"label folder .*w/c holds no .wav files"),
    ("sample_rate 0 for load_audio", lambda f, r: load_audio(audio_folder(f.tmp / "w"), sample_rate=0),
     DataError, r"sample_rate must be a positive int \(Hz\); got 0"),
    ("LJSpeech metadata naming a missing clip", lambda f, r: load_transcripts(lj_folder(
        f.tmp / "lj", "LJ1|one|one\n"), sample_rate=4000), DataError,
     r"metadata.csv, line 1: no audio file .*lj/wavs/LJ1.wav"),
    ("LJSpeech metadata line without a transcript", lambda f, r: load_transcripts(lj_folder(
        f.tmp / "lj", "LJ1\n"), sample_rate=4000), DataError,
     r"metadata.csv, line 1: expected 'id\|transcript\|normalized transcript', got 'LJ1'"),
    ("an LJSpeech clip longer than max_seconds", lambda f, r: load_transcripts(lj_folder(
        f.tmp / "lj", "LJ1|one|one\n", {"LJ1": tone(300, 4000)}), sample_rate=4000, max_seconds=0.5),
     DataError,
     r"LJ1.wav: the clip has 4000 samples, more than the maximum 2000 \(max_seconds\)"),
]


def _stereo(tmp):
    """(the waveform read_wav gives for a stereo file, the mean of its two channels)."""
    left, right = tone(300), tone(300) // 2
    path = write(tmp / "s.wav", wav_bytes(np.stack([left, right], axis=1).tobytes(), channels=2))
    return read_wav(path)[0], (left.astype("float64") + right) / 2 / 32768


def _all_texts(data):
    return sorted(text.decode() for split in data.splits.values() for text, _ in split.as_numpy_iterator())


def _linked_elsewhere(tmp):
    """A class folder that is a link to images elsewhere, and a dangling link that is no image."""
    image_folder(tmp / "elsewhere", classes=("cats",))
    root = image_folder(tmp / "d", links={"cat": "../elsewhere/cats", "dog/notes.txt": "gone.txt"},
                        classes=("dog",))
    return load_images(root).info


HANDLED_DATA = [
    # (name, make(files) -> result, check(result) -> True when right)
    ("a class folder linked from elsewhere is followed; a dangling non-image link is left alone",
     lambda f: _linked_elsewhere(f.tmp),
     lambda info: info.class_names == ["cat", "dog"] and sum(info.num_examples.values()) == 6),
    ("hidden folders are no classes and hidden files (._0.png) no images",
     lambda f: load_images(image_folder(f.tmp / "d", {".git/x.png": b"", "cat/._0.png": b"\0\5\26\7"})).info,
     lambda info: info.class_names == ["cat", "dog"] and sum(info.num_examples.values()) == 6),
    ("a CSV file starting with a UTF-8 byte-order mark", lambda f: _all_texts(load_texts(write(
        f.tmp / "b.csv", "\ufeffsentence,label\n" + "good,1\nbad,0\n" * 4))),
     lambda texts: texts == ["bad"] * 4 + ["good"] * 4),
    ("a stereo WAV file is mixed down to the mean of its channels", lambda f: _stereo(f.tmp),
     lambda pair: np.allclose(pair[0], pair[1], atol=1e-4)),
    ("a WAV header declaring 4 GB of data reads the frames there are", lambda f: read_wav(write(
        f.tmp / "h.wav", wav_bytes(tone(300).tobytes(), data_size=2**32 - 16)))[0],
     lambda waveform: waveform.shape == (800,) and np.allclose(waveform, tone(300) / 32768)),
]


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path, monkeypatch):
    """64 MiB of zeros behind an IDX header declaring 6 labels, and as a line file with
    GZIP_MAX_BYTES at 1 MiB: refused after decompressing little more than what is allowed."""
    bomb = gzip_bomb(prefix=idx(np.arange(6) % 3))
    folder = idx_folder(tmp_path / "idx", {"train-labels-idx1-ubyte.gz": bomb})
    lines = line_files(tmp_path / "lines", {"train.de": None, "train.de.gz": gzip_bomb()})
    monkeypatch.setattr("kdl.data.io.GZIP_MAX_BYTES", 2**20)
    for load in (lambda: load_images(folder), lambda: load_lines(lines)):
        tracemalloc.start()
        try:
            with pytest.raises(DataError, match="gzip bomb"):
                load()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 40 * 2**20, f"{peak / 2**20:.0f} MiB allocated to refuse a 64 MiB gzip bomb"


def _recipe_file(f, text, name="r.toml"):
    """kdl.recipes.load of a recipe file holding `text` (str, or bytes as they are)."""
    return kdl.recipes.load(write(f.tmp / name, text))


image, text, translator = kdl.recipes.image_classifier, kdl.recipes.text_classifier, kdl.recipes.translator
audio, speech = kdl.recipes.audio_classifier, kdl.recipes.speech_recognizer

CONFIG_CASES = [
    # every task: seed, batch size and limit ranges (the shared [data] and [train] sections)
    ("image: a negative seed", lambda f, r: image(seed=-1), ConfigError, "seed must be at least 0; got -1"),
    ("text: a seed past 2**32 - 1", lambda f, r: text("sst2", seed=2**32), ConfigError,
     "seed must be less than 4294967296; got 4294967296"),
    ("translator: a seed beyond int64", lambda f, r: translator(seed=2**64), ConfigError,
     r"seed: expected int from -2\*\*63 to 2\*\*63 - 1, got an int of 65 bits"),
    ("audio: a seed of the wrong type", lambda f, r: audio(seed="0"), ConfigError,
     "seed: expected int, got '0'"),
    ("speech: a float seed", lambda f, r: speech(seed=1.5), ConfigError,
     r"seed: expected int, got 1.5 \(float\)"),
    ("image: a batch size beyond int64", lambda f, r: image(batch_size=2**63), ConfigError,
     "data.batch_size: expected int from -2\\*\\*63 to 2\\*\\*63 - 1, got an int of 64 bits"),
    ("translator: a decode batch size beyond int64", lambda f, r: translator(decode={"batch_size": -2**70}),
     ConfigError, "decode.batch_size: expected int from -2\\*\\*63"),
    ("image: a limit that leaves no training example", lambda f, r: image(limit=1), ConfigError,
     r"data.limit = 1 leaves no training example: data.validation_split = 0.1 holds out ceil\(1 x 0.1\) = 1 "
     r"of them; set data.limit to at least 2, or data.validation_split = 0"),
    ("audio: a limit below what validation_split 0.9 needs", lambda f, r: audio(
        limit=5, validation_split=0.9), ConfigError,
     r"ceil\(5 x 0.9\) = 5 of them; set data.limit to at least 11"),
    ("text: limit 0", lambda f, r: text("sst2", limit=0), ConfigError,
     "data.limit must be at least 1; got 0"),
    ("speech: validation_split of 1", lambda f, r: speech(validation_split=1.0), ConfigError,
     "data.validation_split must be less than 1; got 1.0"),
    ("image: a NaN learning rate", lambda f, r: image(learning_rate=float("nan")), ConfigError,
     "learning_rate: expected a finite number, got nan"),
    ("text: early stopping of -1", lambda f, r: text("sst2", early_stopping=-1), ConfigError,
     "train.early_stopping must be at least 0; got -1"),
    ("audio: warmup_steps of the wrong type", lambda f, r: audio(warmup_steps=[1]), ConfigError,
     r"warmup_steps: expected int, got \[1\]"),
    ("a range checked on a config object built by hand", lambda f, r: kdl.recipes.ImageClassifier(
        _with(kdl.recipes.ImageClassifier.Config(), "train", epochs=2**65)), ConfigError,
     "train.epochs: expected int from -2\\*\\*63 to 2\\*\\*63 - 1, got an int of 66 bits"),
    # image
    ("image: image_size of the wrong type", lambda f, r: image(image_size="big"), ConfigError,
     "image_size: expected list, got 'big'"),
    ("image: an unknown augmentation", lambda f, r: image(augment=["spin"], limit=50).build_model(),
     ConfigError,
     "unknown augmentation 'spin'; known: flip, rotate, translate, zoom, contrast"),
    ("image: an unknown precision", lambda f, r: image(precision="fp64", limit=50, epochs=1).fit(verbose=0),
     ConfigError, "train.precision must be one of fp32, bf16, fp16; got 'fp64'"),
    ("image: an unknown distribution", lambda f, r: image(
        distribute="spread", limit=50, epochs=1).fit(verbose=0), ConfigError,
     "train.distribute must be one of .*; got 'spread'"),
    # text
    ("text: ngrams 0", lambda f, r: text("sst2", ngrams=0), ConfigError,
     "data.ngrams must be at least 1; got 0"),
    ("text: a vocabulary size of the wrong type", lambda f, r: text("sst2", vocabulary_size="big"),
     ConfigError,
     "vocabulary_size: expected int, got 'big'"),
    ("text: a text column that is a number", lambda f, r: text("sst2", text_column=3), ConfigError,
     r"text_column: expected str, got 3 \(int\)"),
    ("text: class_names that is a string", lambda f, r: text("sst2", class_names="pos"), ConfigError,
     "class_names: expected list, got 'pos'"),
    ("text: an unknown model", lambda f, r: text("sst2", model="lstm"), ConfigError, "unknown model 'lstm'"),
    ("text: an unknown backbone option", lambda f, r: text("sst2", model="cnn", blockz=2), ConfigError,
     "model 'cnn' has no option 'blockz'"),
    # translator
    ("translator: decode.beam_size 0", lambda f, r: translator(beam_size=0), ConfigError,
     "decode.beam_size must be at least 1; got 0"),
    ("translator: decode.examples -1", lambda f, r: translator(examples=-1), ConfigError,
     "decode.examples must be at least 0; got -1"),
    ("translator: label smoothing of 1", lambda f, r: translator(label_smoothing=1.0), ConfigError,
     "train.label_smoothing must be less than 1; got 1.0"),
    ("translator: splits that is a string", lambda f, r: translator(splits="val"), ConfigError,
     "splits: expected dict, got 'val'"),
    ("translator: reverse that is a string", lambda f, r: translator(reverse="yes"), ConfigError,
     "reverse: expected bool, got 'yes'"),
    ("translator: an unknown decode field", lambda f, r: translator(decode={"beam": 3}), ConfigError,
     "unknown setting 'decode.beam'; did you mean 'beam_size'"),
    ("translator: a length penalty of the wrong type", lambda f, r: translator(length_penalty="x"),
     ConfigError,
     "length_penalty: expected float, got 'x'"),
    # audio classifier
    ("audio: sample_rate 0", lambda f, r: audio(sample_rate=0), ConfigError,
     "data.sample_rate must be at least 1; got 0"),
    ("audio: max_seconds 0", lambda f, r: audio(max_seconds=0), ConfigError,
     "data.max_seconds must be more than 0; got 0"),
    ("audio: mel_bins 0", lambda f, r: audio(mel_bins=0), ConfigError,
     "model.mel_bins must be at least 1; got 0"),
    ("audio: a negative hop", lambda f, r: audio(hop_ms=-1.0), ConfigError,
     "model.hop_ms must be more than 0; got -1.0"),
    ("audio: time_masks -1", lambda f, r: audio(time_masks=-1), ConfigError,
     "model.time_masks must be at least 0; got -1"),
    ("audio: an unknown backbone option", lambda f, r: audio(kernel=3), ConfigError,
     "model 'cnn' has no option 'kernel'"),
    # speech recognizer
    ("speech: beam_width 0", lambda f, r: speech(beam_width=0), ConfigError,
     "model.beam_width must be at least 1; got 0"),
    ("speech: max_digits 0", lambda f, r: speech(max_digits=0), ConfigError,
     "data.max_digits must be at least 1; got 0"),
    ("speech: utterances that is a string", lambda f, r: speech(utterances="many"), ConfigError,
     "utterances: expected list, got 'many'"),
    ("speech: characters that is a number", lambda f, r: speech(characters=5), ConfigError,
     r"characters: expected str, got 5 \(int\)"),
    ("speech: an unknown model", lambda f, r: speech(model="lstm"), ConfigError, "unknown model 'lstm'"),
    # recipe TOML files
    ("a recipe file in UTF-16", lambda f, r: _recipe_file(f, 'task = "image_classifier"\n'.encode("utf-16")),
     ConfigError, "r.toml is not a valid TOML recipe: 'utf-8' codec can't decode"),
    ("a recipe file without a task", lambda f, r: _recipe_file(f, "[train]\nepochs = 1\n"), ConfigError,
     "r.toml: unknown task None"),
    ("a task that is a number", lambda f, r: _recipe_file(f, "task = 3\n"), ConfigError, "unknown task 3"),
    ("a table where a number belongs", lambda f, r: _recipe_file(
        f, 'task = "image_classifier"\n[train.epochs]\nvalue = 3\n'), ConfigError,
     r"r.toml: train: epochs: expected int, got \{'value': 3\} \(dict\)"),
    ("a section that is a number", lambda f, r: _recipe_file(f, 'task = "text_classifier"\ntrain = 3\n'),
     ConfigError, "r.toml: train: expected a table of settings, got 3"),
    ("a section another task has", lambda f, r: _recipe_file(
        f, 'task = "image_classifier"\n[decode]\nbeam_size = 2\n'), ConfigError,
     "r.toml: unknown setting 'decode'"),
    ("arrays nested 100,000 deep", lambda f, r: _recipe_file(
        f, 'task = "image_classifier"\n[data]\nimage_size = ' + "[" * 100_000 + "]" * 100_000 + "\n"),
     ConfigError,
     "r.toml is not a valid TOML recipe: its tables or arrays nest too deeply"),
    ("an int of 5,000 digits", lambda f, r: _recipe_file(
        f, 'task = "audio_classifier"\nseed = ' + "9" * 5000), ConfigError,
     "r.toml is not a valid TOML recipe: Exceeds the limit"),
    ("an int beyond int64 in a recipe file", lambda f, r: _recipe_file(
        f, 'task = "translator"\n[decode]\nbatch_size = 9223372036854775808\n'), ConfigError,
     "r.toml: decode: batch_size: expected int from -2\\*\\*63 to 2\\*\\*63 - 1, got an int of 64 bits"),
    ("a negative seed in a recipe file", lambda f, r: _recipe_file(
        f, 'task = "speech_recognizer"\nseed = -1\n'), ConfigError,
     "r.toml: seed must be at least 0; got -1"),
    ("binary garbage as a recipe file", lambda f, r: _recipe_file(f, bytes(range(256))), ConfigError,
     "r.toml is not a valid TOML recipe"),
]


def _with(config, section, **fields):
    """`config` with `fields` of `section` set directly, as a user building it by hand would."""
    for name, value in fields.items():
        setattr(getattr(config, section), name, value)
    return config


HANDLED_CONFIG = [
    ("a recipe file starting with a UTF-8 byte-order mark", lambda f: _recipe_file(
        f, '\ufefftask = "text_classifier"\n[train]\nepochs = 2\n').config.train.epochs,
     lambda epochs: epochs == 2),
    ("the largest seed", lambda f: image(seed=2**32 - 1).config.seed, lambda seed: seed == 2**32 - 1),
    ("the smallest limit validation_split 0.5 leaves a training example with",
     lambda f: image(limit=2, validation_split=0.5).config.data.limit, lambda limit: limit == 2),
]


CLI_CASES = [
    ("train with a wrong field type", lambda f, r: ["train", "image_classifier", "--set", "train.epochs=abc"],
     "expected int, got 'abc'"),
    ("train a bad TOML file", lambda f, r: ["train", str(f("bad.toml"))], "not a valid TOML recipe"),
    ("evaluate a missing run", lambda f, r: ["evaluate", "no/such/run"], "cannot load 'no/such/run'"),
    ("evaluate a corrupt model", lambda f, r: ["evaluate", str(f("corrupt_model"))],
     "not a Keras model file"),
    ("evaluate an unknown split", lambda f, r: ["evaluate", str(r[1]), "--split", "dev"], "no split 'dev'"),
    ("predict a missing .npy file", lambda f, r: ["predict", str(r[1]), "missing.npy"], "missing.npy"),
    ("predict a missing .txt file", lambda f, r: ["predict", str(r[1]), "missing.txt"], "missing.txt"),
    ("predict a corrupt .npy file", lambda f, r: ["predict", str(r[1]), str(f("garbage.npy"))],
     "garbage.npy"),
    ("predict the wrong shape", lambda f, r: ["predict", str(r[1]), str(f("wrong_shape.npy"))],
     r"shape (2, 28, 28, 2)"),
    ("predict with a Lambda model", lambda f, r: ["predict", str(f("lambda_model")), "x.npy"], "--unsafe"),
    ("export an unknown format", lambda f, r: ["export", str(r[1]), "--format", "tflite"],
     "unknown export format 'tflite'"),
    ("export under a file", lambda f, r: ["export", str(r[1]), "--format", "keras", "--out",
                                          str(f("a_file") / "x")], "cannot write the directory"),
    ("evaluate a run whose recipe.toml names other classes", lambda f, r: ["evaluate", f("classes_edited")],
     "does not hold together: its recipe.toml and assets call for 3 outputs per position but model.keras "
     "has 10"),
    ("predict with an unfinished run", lambda f, r: ["predict", f("unfinished"), "x.npy"],
     "its training did not finish: run the same `kdl train ... --out"),
    ("train a task that does not exist", lambda f, r: ["train", "image_segmenter"],
     "unknown task 'image_segmenter'"),
    ("train with a negative seed", lambda f, r: ["train", "image_classifier", "--set", "seed=-1"],
     "seed must be at least 0; got -1"),
    ("train with --epochs -1", lambda f, r: ["train", "image_classifier", "--epochs", "-1"],
     "train.epochs must be at least 0; got -1"),
    ("train into a file", lambda f, r: ["train", "image_classifier", "--set", "data.limit=20", "--out",
                                        f("a_file")], "is a file; a run directory must be a folder"),
    ("train into the current directory", lambda f, r: ["train", "image_classifier", "--out", "."],
     "is not a folder of its own"),
    ("train on a dataset that is not there", lambda f, r: ["train", "text_classifier", "--set",
                                                           "data.source=no_such_corpus"],
     "data source 'no_such_corpus' not found"),
    ("train with an unknown distribution", lambda f, r: ["train", "image_classifier", "--distribute",
                                                         "spread", "--set", "data.limit=20",
                                                         "--out", f.tmp / "o"],
     "train.distribute must be one of"),
    ("evaluate a file, not a run", lambda f, r: ["evaluate", f("a_file")],
     "a_file is not a valid TOML recipe"),
    ("export a run that is not there", lambda f, r: ["export", "no/such/run", "--format", "keras"],
     "cannot load 'no/such/run'"),
    ("export with an empty format", lambda f, r: ["export", r[1], "--format", ""],
     "unknown export format ''"),
]




@pytest.mark.parametrize("make_case, error, message", params(CASES + DATA_CASES + CONFIG_CASES))
def test_bad_input_raises_a_clear_error(make_case, error, message, files, run):
    with pytest.raises(error, match=message):
        make_case(files, run)


@pytest.mark.parametrize("make_result, check", params(HANDLED_DATA + HANDLED_CONFIG, width=2))
def test_handled_input_gives_the_right_result(make_result, check, files):
    result = make_result(files)
    assert check(result), result


@pytest.mark.parametrize("make_argv, message", params(CLI_CASES, width=2))
def test_bad_cli_input_is_one_error_line(make_argv, message, files, run, capsys):
    check_one_error_line(make_argv(files, run), capsys, message)
