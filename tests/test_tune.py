"""kdl tune: a study of a few tiny digits trials on the active backend, two worker processes on one
SQLite study, a study killed mid-trial and resumed, pruning of a planted hopeless trial, and
clear errors for a bad search space."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

import kdl
from kdl import tune
from kdl.cli import main
from kdl.errors import ConfigError

DIGITS = "recipes/image_classification/digits_cnn.toml"
TINY = ["--set", "model.options.filters=[8]", "--set", "model.options.dense=16", "--epochs", "2"]
SPACE = """
[tune]
trials = 3
pruner = "none"
stale_after = 6         # seconds: the killed study's trial is failed and re-run soon

[tune.space]
"train.learning_rate" = {low = 1e-3, high = 1e-2, log = true}
"model.options.dropout" = {choices = [0.0, 0.25]}
"""


@pytest.fixture
def recipe_file(tmp_path):
    """The digits recipe file with a [tune] section."""
    path = tmp_path / "digits_tune.toml"
    path.write_text(open(DIGITS, encoding="utf-8").read() + SPACE, encoding="utf-8")
    return path


def rows(out):
    with open(out / "trials.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def finished(found):
    return [row for row in found if row["state"] in ("COMPLETE", "PRUNED")]


def test_a_small_study_writes_its_results_and_its_best_recipe_trains(recipe_file, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["tune", str(recipe_file), "--out", str(out), *TINY]) == 0
    assert "best: trial" in capsys.readouterr().out
    found = rows(out)
    assert len(finished(found)) == 3 and {row["number"] for row in found} == {"0", "1", "2"}
    for name in ("best.toml", "optimization_history.png", "param_importances.png", "study.db"):
        assert (out / name).is_file(), name
    assert (out / "best_run" / "model.keras").is_file()
    assert (out / "trials" / "0002" / "model.keras").is_file()
    best = kdl.recipes.load(out / "best.toml")
    top = max(found, key=lambda row: float(row["val_accuracy"]))
    assert best.config.train.learning_rate == pytest.approx(float(top["params.train.learning_rate"]))
    assert best.config.model.options["dropout"] == float(top["params.model.options.dropout"])
    assert main(["train", str(out / "best.toml"), "--epochs", "1", "--out", str(tmp_path / "again"),
                 "--quiet"]) == 0
    # the same command again: the study is finished, nothing more runs
    assert main(["tune", str(recipe_file), "--out", str(out), *TINY]) == 0
    assert len(rows(out)) == len(found)


def test_two_worker_processes_share_one_study(recipe_file, tmp_path):
    out = tmp_path / "study"
    # trials of 6 epochs: long enough that the second process, which takes seconds to start, gets some
    assert main(["tune", str(recipe_file), "--out", str(out), "--workers", "2", "--trials", "6",
                 *TINY[:-1], "6"]) == 0
    found = finished(rows(out))
    assert len(found) == 6 and len({row["number"] for row in found}) == 6
    assert len({row["params.train.learning_rate"] for row in found}) == 6      # distinct trials
    assert len({row["worker"] for row in found}) == 2, found                   # both processes ran some


def test_a_killed_study_resumes_to_exactly_the_requested_trials(recipe_file, tmp_path):
    out = tmp_path / "study"
    command = [sys.executable, "-m", "kdl", "tune", str(recipe_file), "--out", str(out),
               *TINY[:-1], "8"]                                  # 8 epochs: a trial lasts a few seconds
    process = subprocess.Popen(command, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "trials" / "0001" / "history.csv").is_file() and time.time() < deadline:
        time.sleep(0.2)                                          # the second trial is training
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert main(["tune", str(recipe_file), "--out", str(out), *TINY[:-1], "8"]) == 0
    found = rows(out)
    assert len(finished(found)) == 3                               # exactly the requested trials
    failed = [row for row in found if row["state"] == "FAIL"]
    assert [row["number"] for row in failed] == ["1"]              # the killed one, failed ...
    retried = [row for row in finished(found) if row["params.train.learning_rate"] ==
               failed[0]["params.train.learning_rate"]]
    assert len(retried) == 1 and retried[0]["number"] != "1"       # ... and run again once


def test_pruning_stops_a_planted_hopeless_trial(tmp_path):
    recipe, search = tune.read(DIGITS, ["model.options.filters=[8]", "model.options.dense=16",
                                        "train.epochs=4"])
    search.trials, search.pruner = 3, "median"
    search.space = {"train.learning_rate": {"low": 1e-9, "high": 1e-2, "log": True}}
    space, sampler, pruner = tune.settle(recipe, search)
    study = tune.open_study(tmp_path, None, search, "digits", sampler, pruner)
    for rate in (3e-3, 3e-3, 1e-9):                                # two good trials, then a hopeless one
        study.enqueue_trial({"train.learning_rate": rate})
    tune.work(recipe, search, space, study, tmp_path)
    states = [trial.state.name for trial in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"], states
    history = (tmp_path / "trials" / "0002" / "history.csv").read_text().splitlines()
    assert len(history) - 1 < 4                                    # stopped before its last epoch


@pytest.mark.parametrize("space, message", [
    ({"train.learning_rat": {"low": 1e-4, "high": 1e-2}}, "unknown setting 'train.learning_rat'"),
    ({"train.learning_rate": {"low": 1e-2, "high": 1e-2}}, "the range is empty"),
    ({"model.name": {"choices": ["cnn", "vgg"]}}, "unknown model 'vgg'"),
    ({"model.options.blocks": {"low": 1, "high": 3}}, "has no option 'blocks'"),
    ({"train.learning_rate": {"choices": []}}, "expected a non-empty list"),
    ({}, "the search space is empty"),
])
def test_a_bad_search_space_is_a_clear_error(space, message):
    recipe, search = tune.read(DIGITS)
    search.space = space
    with pytest.raises(ConfigError, match=message):
        tune.settle(recipe, search)


@pytest.mark.parametrize("metric", ["test_accuracy", "accuracy"])
def test_a_study_is_never_scored_on_the_test_split(metric):
    recipe, search = tune.read(DIGITS, space="default")
    search.metric = metric
    with pytest.raises(ConfigError, match="never on the test split"):
        tune.settle(recipe, search)
