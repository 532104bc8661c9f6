"""Tracking (kdl.tracking) on the active backend: a tiny digits run's TensorBoard event files, read
back with TensorBoard's own reader (per-epoch and per-step losses, metrics and learning rate, the
report's metrics, the confusion matrix, the hyperparameters); the same run in MLflow against a
real local SQLite store (params, per-epoch metrics, report, model card, files); a `kdl tune` study
as a parent MLflow run with nested trials; `--no-tensorboard`; clear errors for a bad tracking URI
and a missing MLflow; a resumed run that changed only its [track] section."""

import csv
import io
import json
import math
import re
import sys

import keras
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_multiplexer
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

import kdl
from kdl import backend
from kdl import config as configs
from kdl.cli import main
from kdl.config import TrackConfig
from kdl.errors import ConfigError
from kdl.tracking import mlflow as kdl_mlflow
from kdl.tracking.tensorboard import TensorBoard

mlflow = pytest.importorskip("mlflow", reason="MLflow is the optional extra kdl[track]")

# 300 digits: 270 train (9 batches of 32 a epoch, steps_per_execution 8), 30 validation
TINY = ["--set", "model.options.filters=[8]", "--set", "model.options.dense=16", "--set", "data.limit=300"]
STEPS = 18                  # optimizer steps in the 2 epochs of the tracked run
SPACE = """
[tune]
trials = 2
pruner = "none"

[tune.space]
"train.learning_rate" = {low = 1e-3, high = 1e-2, log = true}
"""


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A digits run trained for 2 epochs by `kdl train`, logged to TensorBoard (every 4 steps)
    and to a SQLite MLflow store."""
    root = tmp_path_factory.mktemp("tracking")
    uri, run = f"sqlite:///{root / 'mlflow.db'}", root / "digits"
    assert main(["train", "image_classifier", "--epochs", "2", *TINY, "--set", "track.every_steps=4",
                 "--track", "mlflow", "--tracking-uri", uri, "--out", str(run), "--quiet"]) == 0
    return run, uri


def read_events(folder):
    """{run: TensorBoard's EventAccumulator} of the event files under `folder`."""
    events = event_multiplexer.EventMultiplexer().AddRunsFromDirectory(str(folder))
    events.Reload()
    return {name: events.GetAccumulator(name) for name in events.Runs()}


def scalars(accumulator, tag):
    """[(step, value)] of a tf.summary scalar."""
    return [(event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
            for event in accumulator.Tensors(tag)]


def cosine(step, rate=2e-3):
    """The image classifier's learning rate (cosine decay to 0 over the run) at `step`."""
    return rate * 0.5 * (1 + math.cos(math.pi * min(step, STEPS) / STEPS))


def test_tensorboard_has_losses_metrics_and_learning_rate_per_epoch_and_at_optimizer_steps(tracked):
    run, _ = tracked
    events = read_events(run / "tensorboard")
    assert {".", "train", "validation"} <= set(events)
    train, validation = events["train"], events["validation"]
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_learning_rate"):
        assert [step for step, _ in scalars(train, tag)] == [0, 1], tag
    assert [step for step, _ in scalars(validation, "epoch_loss")] == [0, 1]
    history = list(csv.DictReader(open(run / "history.csv", encoding="utf-8")))
    np.testing.assert_allclose([value for _, value in scalars(train, "epoch_loss")],
                               [float(row["loss"]) for row in history], rtol=1e-6)
    np.testing.assert_allclose([value for _, value in scalars(train, "epoch_learning_rate")],
                               [cosine(9), cosine(18)], atol=1e-7)     # at the end of each epoch
    # every 4 optimizer steps, at the optimizer's step, the same on every backend (JAX and
    # TensorFlow report once per 8-step execution, PyTorch after every step)
    losses, rates = scalars(train, "batch_loss"), scalars(train, "batch_learning_rate")
    steps = [step for step, _ in losses]
    assert len(steps) >= 2 and steps == sorted(set(steps)) and 4 <= steps[0] and steps[-1] <= STEPS
    assert [step for step, _ in rates] == steps and len(scalars(train, "batch_accuracy")) == len(steps)
    np.testing.assert_allclose([value for _, value in rates], [cosine(step) for step in steps], atol=1e-7)
    assert all(np.isfinite(value) for _, value in losses)


def test_tensorboard_has_the_report_confusion_matrix_and_hyperparameters(tracked):
    run, _ = tracked
    top = read_events(run / "tensorboard")["."]
    report = json.loads((run / "report.json").read_text())
    for name, value in report["metrics"].items():
        assert scalars(top, f"test/{name}")[0][1] == pytest.approx(value, rel=1e-6), name
    width, height, png = tensor_util.make_ndarray(top.Tensors("test/confusion_matrix")[0].tensor_proto)
    drawn = Image.open(io.BytesIO(png))
    assert drawn.size == Image.open(run / "confusion_matrix.png").size == (int(width), int(height))
    metadata = top.SummaryMetadata("_hparams_/session_start_info")
    assert metadata.plugin_data.plugin_name == "hparams"
    session = plugin_data_pb2.HParamsPluginData.FromString(metadata.plugin_data.content).session_start_info
    hparams = {name: getattr(value, value.WhichOneof("kind")) for name, value in session.hparams.items()}
    assert hparams["train.epochs"] == 2 and hparams["model.name"] == "cnn" and hparams["data.limit"] == 300
    assert hparams["backend"] == backend.name() and hparams["model.options.filters"] == "[8]"
    assert not any(name.startswith("track.") for name in hparams)       # where it logs is not a setting


def test_mlflow_holds_the_runs_params_metrics_report_card_and_files(tracked):
    run, uri = tracked
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("image_classifier")
    logged = client.search_runs([experiment.experiment_id], "attributes.run_name = 'digits'")
    assert len(logged) == 1 and logged[0].info.status == "FINISHED"
    found = logged[0]
    params, tags = found.data.params, found.data.tags
    assert params["train.epochs"] == "2" and params["model.name"] == "cnn"
    assert params["backend"] == backend.name()
    assert not any(name.startswith("track.") for name in params)
    assert tags["kdl.task"] == "image_classifier" and tags["kdl.run_dir"] == str(run.resolve())
    history = list(csv.DictReader(open(run / "history.csv", encoding="utf-8")))
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        logged_history = client.get_metric_history(found.info.run_id, name)
        assert [metric.step for metric in logged_history] == [0, 1], name        # one per epoch
        np.testing.assert_allclose([metric.value for metric in logged_history],
                                   [float(row[name]) for row in history], rtol=1e-9)
    report = json.loads((run / "report.json").read_text())
    assert found.data.metrics["test/accuracy"] == pytest.approx(report["metrics"]["accuracy"])
    files = {item.path for item in client.list_artifacts(found.info.run_id, "run")}
    assert {"run/model.keras", "run/recipe.toml", "run/report.json", "run/history.csv",
            "run/tensorboard"} <= files
    assert not any(path.rsplit("/", 1)[-1].startswith(".") for path in files)     # no lock file
    if (run / "README.md").is_file():      # the model card: the run's description
        assert tags["mlflow.note.content"] == (run / "README.md").read_text(encoding="utf-8")[:8000]
    downloaded = mlflow.artifacts.download_artifacts(run_id=found.info.run_id, tracking_uri=uri,
                                                     artifact_path="run/recipe.toml")
    assert open(downloaded, encoding="utf-8").read() == (run / "recipe.toml").read_text(encoding="utf-8")


def test_a_tune_study_is_a_parent_run_with_nested_trials_and_no_tensorboard_when_asked(tracked, tmp_path):
    _, uri = tracked
    recipe = tmp_path / "digits_tune.toml"
    recipe.write_text(open("recipes/image_classification/digits_cnn.toml", encoding="utf-8").read() + SPACE)
    out = tmp_path / "study"
    assert main(["tune", str(recipe), "--out", str(out), "--epochs", "1", *TINY, "--no-tensorboard",
                 "--track", "mlflow", "--tracking-uri", uri]) == 0
    for trial in ("0000", "0001"):
        assert (out / "trials" / trial / "model.keras").is_file()
        assert not (out / "trials" / trial / "tensorboard").exists()          # --no-tensorboard
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("image_classifier").experiment_id
    parent, = client.search_runs([experiment], "attributes.run_name = 'tune study'")
    assert parent.info.status == "FINISHED" and parent.data.tags["kdl.study"] == str(out.resolve())
    assert parent.data.metrics["trials_complete"] == 2 and "best/val_accuracy" in parent.data.metrics
    assert parent.data.params["tune.metric"] == "val_accuracy"
    assert {item.path for item in client.list_artifacts(parent.info.run_id)} >= {"trials.csv", "best.toml"}
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(child.info.run_name for child in children) == ["0000", "0001"]
    trials = {row["run"].rsplit("/", 1)[-1]: row for row in csv.DictReader(open(out / "trials.csv"))}
    for child in children:
        sampled = float(trials[child.info.run_name]["params.train.learning_rate"])
        assert float(child.data.params["train.learning_rate"]) == pytest.approx(sampled)
        assert len(client.get_metric_history(child.info.run_id, "val_accuracy")) == 1     # 1 epoch


@pytest.mark.parametrize("uri", ["nosuch://host/store", "http://127.0.0.1:9"])
def test_a_bad_tracking_uri_is_a_clear_error_before_training(uri, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "image_classifier", "--epochs", "1", *TINY, "--track", "mlflow",
                 "--tracking-uri", uri, "--out", str(run)]) == 1
    error = capsys.readouterr().err
    assert re.search(rf"kdl: error: cannot (use|reach) the MLflow tracking URI {re.escape(repr(uri))}", error)
    assert "Traceback" not in error
    assert not run.exists() or not any(run.iterdir()), "nothing is written before the check"


def test_missing_mlflow_and_a_uri_without_mlflow_are_clear_errors(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)         # as on a machine without the extra
    with pytest.raises(ConfigError, match=r"needs MLflow, which is not installed: pip install 'kdl\[track\]"):
        kdl_mlflow.check(TrackConfig(mlflow=True))
    assert main(["train", "image_classifier", "--tracking-uri", "sqlite:///x.db"]) == 1
    error = capsys.readouterr().err
    assert "--tracking-uri 'sqlite:///x.db' names where MLflow logs: add --track mlflow" in error


def test_an_interrupted_run_resumes_when_only_its_track_section_changed(tmp_path):
    started = kdl.recipes.image_classifier(epochs=2, mlflow=True, every_steps=5)
    (tmp_path / "recipe.toml").write_text(configs.to_toml(started.config))
    (tmp_path / "backup").mkdir()             # what a killed training leaves
    kdl.recipes.image_classifier(epochs=2, tensorboard=False)._check_resume(tmp_path)      # no error
    with pytest.raises(ConfigError, match=r"changed: train.epochs: 2 -> 3"):
        kdl.recipes.image_classifier(epochs=3, tensorboard=False)._check_resume(tmp_path)


def test_a_new_training_starts_its_event_files_afresh_and_keeps_other_files(tmp_path):
    old = [tmp_path / "events.out.tfevents.1.old.v2", tmp_path / "train" / "events.out.tfevents.1.old.v2"]
    for path in old:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"an earlier training")
    (tmp_path / "notes.txt").write_text("the user's")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    TensorBoard(tmp_path, fresh=True).set_model(model)         # what fit does before training starts
    assert not any(path.exists() for path in old) and (tmp_path / "notes.txt").read_text() == "the user's"
    assert list((tmp_path / "train").glob("events.out.tfevents.*"))     # the new training's
    TensorBoard(tmp_path, fresh=False).set_model(model)        # a resumed training keeps them
    assert len(list((tmp_path / "train").glob("events.out.tfevents.*"))) == 2
