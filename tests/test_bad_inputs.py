"""A catalogue of bad inputs: each must raise a kdl error (DataError, ConfigError, BackendError)
whose message names the problem, never a traceback from deep inside a backend. CLI cases run
`kdl.cli.main` in-process and must exit 1 with one `kdl: error:` line on stderr.

Most cases need no training; those that need a model share one tiny trained run."""

import gzip
import shutil

import keras
import numpy as np
import pytest

import kdl
from kdl.cli import main
from kdl.data import load_images, load_texts
from kdl.errors import ConfigError, DataError, RunError

TEXTS, LABELS = ["good film", "bad film", "great movie", "awful movie"] * 5, [1, 0, 1, 0] * 5


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny image classifier trained for one epoch, saved; and a folder for the cases' files."""
    recipe = kdl.recipes.image_classifier(epochs=1, limit=120, filters=[4], dense=8)
    recipe.fit(verbose=0)
    run_dir = recipe.save(tmp_path_factory.mktemp("runs") / "digits")
    return recipe, run_dir


@pytest.fixture
def files(tmp_path, run):
    """Bad files, each made when a case asks for it: files(name) -> path."""
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
        elif name == "wrong_shape.npy":
            np.save(path, np.zeros((2, 28, 28)))
        else:
            raise KeyError(name)
        return path

    return make


def _trained(run):
    return run[0]


CASES = [
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
    ("predict on the wrong image shape", lambda f, r: _trained(r).predict(np.zeros((2, 28, 28))),
     DataError, r"shape \(2, 28, 28\); this model takes images of shape \(8, 8, 1\)"),
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


@pytest.mark.parametrize("make_case, error, message", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_raises_a_clear_error(make_case, error, message, files, run):
    with pytest.raises(error, match=message):
        make_case(files, run)


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
     r"shape (2, 28, 28)"),
    ("predict with a Lambda model", lambda f, r: ["predict", str(f("lambda_model")), "x.npy"], "--unsafe"),
    ("export an unknown format", lambda f, r: ["export", str(r[1]), "--format", "tflite"],
     "unknown export format 'tflite'"),
    ("export under a file", lambda f, r: ["export", str(r[1]), "--format", "keras", "--out",
                                          str(f("a_file") / "x")], "cannot write the directory"),
]


@pytest.mark.parametrize("make_argv, message", [case[1:] for case in CLI_CASES],
                         ids=[case[0] for case in CLI_CASES])
def test_bad_cli_input_is_one_error_line(make_argv, message, files, run, capsys):
    argv = make_argv(files, run)
    assert main(argv) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len([line for line in lines if line.startswith("kdl: error: ")]) == 1, err
    assert message in err, err
