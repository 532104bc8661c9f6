"""The `kdl` command: train -> evaluate -> predict on a run directory, and one-line errors."""

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kdl import backend
from kdl.cli import main

DIGITS = "recipes/image_classification/digits_cnn.toml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "digits"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", DIGITS, "--epochs", "3", "--out", str(out), "--quiet",
                     "--backend", backend.name()]) == 0
    (out.parent / "stdout.txt").write_text(printed.getvalue())    # for the test of what it printed
    return out


def test_train_writes_the_run_directory(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"model.keras", "recipe.toml", "report.json", "history.csv", "checkpoint.keras"} <= names
    report = json.loads((run_dir / "report.json").read_text())
    assert report["metrics"]["accuracy"] > 0.8 and report["meta"]["fit_seconds"] > 0
    assert "epochs = 3" in (run_dir / "recipe.toml").read_text()


def test_quiet_train_prints_one_line_per_epoch_and_the_report(run_dir):
    printed = (run_dir.parent / "stdout.txt").read_text()
    epochs = [line for line in printed.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    assert all(" loss " in line and " val_loss " in line and line.endswith(" s)") for line in epochs)
    assert "accuracy" in printed and f"run saved to {run_dir}" in printed


def test_evaluate_reprints_the_saved_score(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((run_dir / "report.json").read_text())
    assert printed["metrics"]["accuracy"] == pytest.approx(saved["metrics"]["accuracy"])


def test_predict_on_npy_and_image_files(run_dir, tmp_path, capsys):
    from PIL import Image

    from kdl.data import load_images

    images = np.stack([x for x, _ in load_images("digits").splits["test"].take(2).as_numpy_iterator()])
    np.save(tmp_path / "two.npy", images)
    Image.fromarray(images[0, :, :, 0]).save(tmp_path / "one.png")
    assert main(["predict", str(run_dir), str(tmp_path / "two.npy"), str(tmp_path / "one.png"),
                 "--top-k", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["input"].rsplit("/", 1)[-1] for row in rows] == ["two.npy[0]", "two.npy[1]", "one.png"]
    assert all(len(row["top"]) == 2 for row in rows)
    assert rows[0]["top"][0]["label"] == rows[2]["top"][0]["label"]


@pytest.mark.parametrize("argv, message", [
    (["train", DIGITS, "--set", "train.epoch=3"], "unknown setting 'train.epoch'"),
    (["train", DIGITS, "--set", "data.source=no/such/folder"], "no/such/folder"),
    (["train", "image_classifer"], "unknown task 'image_classifer'"),
    (["evaluate", "no-such-run"], "cannot load 'no-such-run'"),
])
def test_bad_input_is_one_error_line(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("kdl: error: ") and message in err and "Traceback" not in err


def _kdl(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "kdl", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_backend_option_is_applied_before_keras_is_imported():
    # The one test that starts a fresh process: only there is Keras not yet imported.
    other = next(name for name in backend.BACKENDS if name != backend.name())
    done = _kdl("info", "--json", "--backend", other)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backend"] == other


def test_unknown_backend_names_the_choices():
    done = _kdl("--backend", "jaxx", "info")
    assert done.returncode == 1 and done.stderr.count("kdl: error: ") == 1
    assert "invalid choice: 'jaxx'" in done.stderr and "'jax', 'tensorflow', 'torch'" in done.stderr


def test_predict_reports_a_bad_file_and_still_predicts_the_good_ones(run_dir, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(np.full((8, 8), 200, "uint8")).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["predict", str(run_dir), str(tmp_path / "bad.png"), str(tmp_path / "good.png")]) == 1
    printed = capsys.readouterr()
    assert printed.out.startswith(f"{tmp_path / 'good.png'}\t") and len(printed.out.splitlines()) == 1
    assert printed.err.startswith("kdl: error: ") and "bad.png" in printed.err
    assert main(["predict", str(run_dir), str(tmp_path / "good.png"), "--top-k", "11"]) == 1
    assert "top k must be a whole number from 1 to 10 (the number of classes); got 11" in \
        capsys.readouterr().err


def test_an_unknown_keras_backend_in_the_environment_is_one_error_line():
    env = dict(os.environ, KERAS_BACKEND="jaxx", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "kdl", "info"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "kdl: error: the environment sets KERAS_BACKEND='jaxx'" in done.stderr


def test_predict_expands_folders_reads_stdin_and_prints_csv(run_dir, tmp_path, capsys, monkeypatch):
    from PIL import Image

    for name in ("a/one.png", "a/b/two.png", "a/notes.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"mine")
    for name in ("a/one.png", "a/b/two.png"):
        Image.fromarray(np.full((8, 8), 90, "uint8")).save(tmp_path / name)
    assert main(["predict", str(run_dir), str(tmp_path / "a"), "--csv"]) == 0     # recursively, images only
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "input,label,probability,top" and len(printed) == 3
    found = [line.split(",")[0] for line in printed[1:]]
    assert found == [str(tmp_path / "a/b/two.png"), str(tmp_path / "a/one.png")]

    monkeypatch.setattr("sys.stdin", io.StringIO(f"{tmp_path / 'a/one.png'}\n\n{tmp_path / 'missing.png'}\n"))
    assert main(["predict", str(run_dir), "-", "--json"]) == 1                    # paths from stdin
    printed = capsys.readouterr()
    assert [row["input"] for row in json.loads(printed.out)] == [str(tmp_path / "a/one.png")]
    assert "missing.png" in printed.err and printed.err.count("kdl: error:") == 1

    (tmp_path / "empty").mkdir()
    assert main(["predict", str(run_dir), str(tmp_path / "empty")]) == 1
    assert "holds no .bmp or .gif or .jpeg or .jpg or .png files" in capsys.readouterr().err


def test_predict_warns_in_one_line_about_pixels_out_of_range(run_dir, tmp_path, capsys):
    np.save(tmp_path / "bright.npy", np.full((8, 8), 1e30))
    assert main(["predict", str(run_dir), str(tmp_path / "bright.npy")]) == 0
    error = capsys.readouterr().err
    assert error.startswith("kdl: warning: predict() got values from 1e+30 to 1e+30; this image_classifier "
                            "takes 0..255") and "Traceback" not in error and "warnings.warn" not in error


def test_evaluate_on_new_labelled_data_and_its_errors(run_dir, tmp_path, capsys):
    from PIL import Image

    for label, value in (("3", 40), ("7", 200), ("7", 180)):
        folder = tmp_path / "new" / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), value, "uint8")).save(folder / f"{value}.png")
    assert main(["evaluate", str(run_dir), "--data", str(tmp_path / "new")]) == 0
    printed = capsys.readouterr().out
    assert f"scored on {tmp_path / 'new'} (all)" in printed and "(3 examples)" in printed
    (tmp_path / "new" / "cat").mkdir()
    Image.fromarray(np.zeros((8, 8), "uint8")).save(tmp_path / "new" / "cat" / "c.png")
    assert main(["evaluate", str(run_dir), "--data", str(tmp_path / "new")]) == 1
    assert "has classes ['cat'] that the run does not know" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir), "--set", "data.limit=3"]) == 1
    assert "need --data PATH" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir), "--data", str(tmp_path / "new"), "--set", "train.epochs=3"]) == 1
    assert "takes data.FIELD=VALUE settings" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir), "--data", str(tmp_path / "new"), "--set", "data.batch_size=3"]) \
        == 1
    assert "'batch_size' is not a data loading option" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(run_dir, tmp_path):
    np.save(tmp_path / "many.npy", np.zeros((5000, 8, 8)))      # ~100 KB of output: more than a pipe holds
    command = f"{sys.executable} -m kdl predict {run_dir} {tmp_path / 'many.npy'} | head -n 1"
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.stdout.startswith(f"{tmp_path / 'many.npy'}[0]\t") and len(done.stdout.splitlines()) == 1
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr[-2000:]
