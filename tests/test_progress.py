"""Progress on long work (kdl.progress): a bar on a terminal, a few plain lines in a log, nothing
with --quiet; checked through the real `kdl predict` (in a subprocess whose stderr is a pipe, and
in this process with stderr taken for a terminal) and real loaders. DELAY, the seconds before
anything is shown, is set to 0 so that the checks do not depend on how fast the machine is."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import kdl
from kdl import progress
from kdl.cli import main
from kdl.compare.worker import STEPS, StepProgress
from kdl.data import Tokenizer, load_audio

IMAGES = 300      # more than one chunk of `kdl predict` (CHUNK = 256)


@pytest.fixture(autouse=True)
def shown_at_once(monkeypatch):
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "LOG_EVERY", 3600.0)    # one line when work starts, one when it ends
    progress.set_quiet(False)
    yield
    progress.set_quiet(False)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny trained digits run and a folder of IMAGES digit PNG files."""
    folder = tmp_path_factory.mktemp("progress")
    recipe = kdl.recipes.image_classifier(epochs=1, limit=120, filters=[4], dense=8)
    recipe.fit(verbose=0)
    run = recipe.save(folder / "run")
    images = folder / "images"
    images.mkdir()
    pixels = np.asarray(recipe.data.splits["train"].batch(IMAGES).take(1).get_single_element()[0])
    for i in range(IMAGES):
        Image.fromarray(pixels[i % len(pixels)].squeeze(-1).astype("uint8")).save(images / f"{i:03d}.png")
    return run, images


def kdl_predict(arguments):
    """(exit status, stdout, stderr) of `kdl predict ARGUMENTS` in a new process whose stderr is a
    pipe, as in a log; kdl.progress.DELAY is 0 there too."""
    code = ("import sys; from kdl import progress; progress.DELAY = 0.0; from kdl.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "predict", *map(str, arguments)],
                          capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout, done.stderr


def progress_lines(stderr):
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("kdl: predicting")]


def test_predict_in_a_log_prints_a_few_plain_lines(digits_run):
    run, images = digits_run
    status, stdout, stderr = kdl_predict([run, images])
    assert status == 0, stderr
    assert len(stdout.splitlines()) == IMAGES                     # the results are untouched
    lines = progress_lines(stderr)
    assert 1 <= len(lines) <= 3 and "\r" not in stderr, stderr     # no bar redrawn into the log
    assert lines[-1].startswith(f"kdl: predicting: {IMAGES}/{IMAGES} inputs in "), lines


def test_predict_on_a_terminal_draws_a_bar_beside_errors(digits_run, tmp_path, monkeypatch, capsys):
    """A bad file among many: its error line, the others' results, and the bar (tqdm) that a
    terminal gets."""
    run, images = digits_run
    (tmp_path / "broken.npy").write_bytes(b"not an array")
    monkeypatch.setattr(progress, "_isatty", lambda stream: True)
    assert main(["predict", str(run), str(images), str(tmp_path / "broken.npy")]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == IMAGES
    assert [line for line in err.splitlines() if line.startswith("kdl: error:")][0].count("broken.npy")
    assert "\r" in err and f"| {IMAGES + 1}/{IMAGES + 1} " in err and "kdl: predicting: 100%" in err, err
    assert main(["predict", str(run), str(images), "--quiet"]) == 0         # --quiet: nothing, even here
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == IMAGES and err == ""


def test_real_loader_and_vocabulary_in_a_log_and_quiet(shared_data, capsys):
    data = load_audio(shared_data / "fsdd" / "recordings")      # 3,000 WAV files
    lines = capsys.readouterr().err.splitlines()
    assert 1 <= len(lines) <= 3 and all(line.startswith("kdl: reading ") for line in lines), lines
    assert "3,000/3,000 files in " in lines[-1] and sum(data.info.num_examples.values()) == 3000
    texts = data.splits["train"].take(50).map(lambda wave, label: "a film about a spoken digit")
    Tokenizer.learn(texts, vocabulary_size=100)
    lines = capsys.readouterr().err.splitlines()
    assert lines and lines[-1].startswith("kdl: learning a words vocabulary from 50 texts: done in "), lines
    progress.set_quiet()
    load_audio(shared_data / "fsdd" / "recordings", limit=100)
    Tokenizer.learn(texts, vocabulary_size=100)
    assert capsys.readouterr().err == ""


def test_train_quiet_shows_no_progress(tmp_path, capsys):
    """`kdl train --quiet`: its epoch lines and report, and no progress (here: learning the
    vocabulary, which prints with DELAY 0 without --quiet, as the test above shows)."""
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("sentence,label\n" + "a fine film,pos\na dull mess,neg\n" * 10)
    assert main(["train", "text_classifier", "--set", f'data.source="{reviews}"', "--set", "model.name=cnn",
                 "--set", "model.options.filters=4", "--epochs", "1", "--quiet", "--out",
                 str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    assert "epoch 1/1" in out and "kdl: learning" not in out + err and "%|" not in err, err


def test_compare_worker_reports_steps_for_the_parents_bar():
    """`kdl compare`'s worker reports "steps DONE TOTAL" (at most one a second, and the last)
    while a real model trains; the parent (kdl.compare.runner) draws them as a bar."""
    import keras

    lines = []
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(np.zeros((64, 4)), np.zeros(64), batch_size=8, epochs=2, verbose=0,
              callbacks=[StepProgress(8, 2, lines.append, every=0.0)])
    assert lines[0] == f"{STEPS} 1 16" and lines[-1] == f"{STEPS} 16 16"
    assert [int(line.split()[1]) for line in lines] == sorted(int(line.split()[1]) for line in lines)
