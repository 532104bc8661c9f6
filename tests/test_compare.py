"""`kdl compare`: one recipe on every backend, each in its own process, from shared initial weights;
and its in-process parts (the baselines' native loops, the worker's identical steps and fixed batch)
on the active backend, for one-array inputs (an image classifier) and dict inputs with a masked loss
(a translator).

A comparison starts its own process per backend whatever backend pytest runs on, so those tests
run once, in the jax session of `make test`; in the other two sessions they would repeat exactly
the same subprocess runs. The in-process tests run in every session.
"""

import json

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_multiplexer
from tensorboard.util import tensor_util

import kdl
from kdl import backend, models, recipes, runs
from kdl.cli import main
from kdl.compare import baselines, worker
from kdl.compare.report import Comparison
from kdl.compare.timing import StepTimer

TINY = ["model.options.filters=[8]", "model.options.dense=16"]
FIELDS = {"first_step_seconds", "step_seconds_median", "samples_per_second", "epoch_seconds",
          "fit_seconds", "peak_host_memory_mb", "peak_device_memory_mb", "metrics", "loss_curve",
          "agreement_losses", "output_max_abs_diff", "loss_max_abs_diff", "explain_max_abs_diff", "devices"}
SUBJECTS = {"a cat": "eine Katze", "a dog": "ein Hund", "the man": "der Mann", "a woman": "eine Frau"}
VERBS = {"runs": "läuft", "sleeps": "schläft", "eats": "isst", "sings": "singt"}
TINY_TRANSLATOR = ["model.options.encoder_layers=1", "model.options.decoder_layers=1",
                   "model.options.width=16", "model.options.heads=2", "model.options.intermediate=32",
                   "data.max_length=8", "data.vocabulary_size=200", "data.batch_size=4", "decode.beam_size=1",
                   "train.epochs=1"]

once = pytest.mark.skipif(backend.name() != "jax", reason=(
    "a comparison runs every backend in subprocesses; it runs once, in the jax session"))


@pytest.fixture(scope="module")
def translation_overrides(tmp_path_factory):
    """TINY_TRANSLATOR with a data source: 80 pairs in a TSV file (64 train, 16 test), every word
    often enough to be one WordPiece token, so that every batch is (4, 8): one compiled shape."""
    pairs = tmp_path_factory.mktemp("translation") / "pairs.tsv"
    lines = [f"{s} {v}\t{ts} {tv}" for s, ts in SUBJECTS.items() for v, tv in VERBS.items()]
    pairs.write_text("\n".join(lines * 5) + "\n", encoding="utf-8")
    return [f"data.source={pairs}", *TINY_TRANSLATOR]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", "recipes/image_classification/digits_cnn.toml", "--steps", "16",
                 "--agreement-steps", "2", "--baseline", "--out", str(out), "--set", "track.every_steps=8",
                 *sum((["--set", s] for s in TINY), [])]) == 0
    return out


@once
def test_every_backend_reports_every_measure(comparison):
    saved = json.loads((comparison / "comparison.json").read_text())
    assert [row["backend"] for row in saved["rows"]] == ["jax", "tensorflow", "torch"]
    for row in saved["rows"]:
        assert "error" not in row, row
        assert FIELDS <= set(row), FIELDS - set(row)
        assert row["steps"] == 16 and len(row["loss_curve"]) == 2       # steps_per_execution = 8
        assert row["loss_curve_steps"] == [8, 16] and row["epoch_end_steps"] == [16]   # on every backend
        assert 0.0 <= row["metrics"]["accuracy"] <= 1.0 and row["samples_per_second"] > 0
        assert set(row["overhead"]) == {"plain_fit", "native"} and all(row["overhead"].values())
    assert any(line.startswith("fastest steady-state step: ") for line in saved["winners"])
    for name in ("comparison.md", "throughput.png", "loss_curves.png"):
        assert (comparison / name).stat().st_size > 0
    markdown = (comparison / "comparison.md").read_text()
    assert "| torch |" in markdown and "kdl / native loop" in markdown


@once
def test_each_backend_is_one_tensorboard_run_whose_curves_overlay(comparison):
    events = event_multiplexer.EventMultiplexer().AddRunsFromDirectory(str(comparison / "tensorboard"))
    events.Reload()
    names = ("jax", "tensorflow", "torch")
    assert {*names, *(f"{name}/train" for name in names)} <= set(events.Runs())
    rows = {row["backend"]: row for row in json.loads((comparison / "comparison.json").read_text())["rows"]}
    for name in names:
        # every 8 optimizer steps, at the same steps on every backend (Keras calls torch's
        # callbacks every step, jax's and tensorflow's once per 8-step execution)
        losses = events.Tensors(f"{name}/train", "batch_loss")
        assert [event.step for event in losses] == [8, 16], name
        assert [event.step for event in events.Tensors(f"{name}/train", "batch_learning_rate")] == [8, 16]
        accuracy = events.Tensors(name, "test/accuracy")[0]
        assert float(tensor_util.make_ndarray(accuracy.tensor_proto)) == pytest.approx(
            rows[name]["metrics"]["accuracy"], rel=1e-6)


@once
def test_outputs_under_the_shared_initial_weights_agree(comparison):
    outputs = {name: np.load(comparison / name / "initial_outputs.npy")
               for name in ("jax", "tensorflow", "torch")}
    for name, values in outputs.items():
        assert np.max(np.abs(values - outputs["jax"])) <= 1e-4, name
    rows = json.loads((comparison / "comparison.json").read_text())["rows"]
    assert all(row["loss_max_abs_diff"] <= 1e-4 for row in rows), [r["loss_max_abs_diff"] for r in rows]
    assert all(row["explain_max_abs_diff"] <= 1e-4 for row in rows), [r["explain_max_abs_diff"] for r in rows]


@once
def test_a_backend_that_cannot_run_gets_an_error_row(tmp_path, monkeypatch):
    # Make torch impossible to import in the worker processes, as on a machine without it.
    shadow = tmp_path / "shadow" / "torch"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named torch (hidden by the test)')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    result = kdl.compare("recipes/image_classification/digits_cnn.toml", ["torch", "tensorflow"],
                         steps=8, agreement_steps=1, overrides=TINY, out=tmp_path / "out",
                         progress=lambda line: None)
    torch_row, tensorflow_row = result.rows
    assert "torch" in torch_row["error"] and "hidden by the test" in torch_row["error"]
    assert "error" not in tensorflow_row and tensorflow_row["steps"] == 8
    assert result.settings["initial_weights_from"] == "tensorflow"
    assert "error: " in (tmp_path / "out" / "comparison.md").read_text()


@once
def test_a_translator_with_dict_inputs_and_a_masked_loss_compares(translation_overrides, tmp_path):
    # tensorflow and torch only, to keep the file fast: jax's XLA compiles take longest, and the
    # in-process tests below run the dict-input steps on jax in the jax session.
    result = kdl.compare("translator", ["tensorflow", "torch"], steps=2, agreement_steps=2, baseline=True,
                         overrides=translation_overrides, out=tmp_path, progress=lambda line: None)
    assert [row["label"] for row in result.rows] == ["tensorflow", "torch"]
    for row in result.rows:
        assert "error" not in row, row
        assert row["steps"] == 2 and len(row["agreement_losses"]) == 3 and "bleu" in row["metrics"]
        assert set(row["overhead"]) == {"plain_fit", "native"} and all(row["overhead"].values())
        assert row["output_max_abs_diff"] <= 1e-4 and row["loss_max_abs_diff"] <= 1e-4, row
    assert set(np.load(tmp_path / "init" / "fixed_inputs.npz").files) >= {"array_0", "array_1"}


# -- in-process, on the active backend ---------------------------------------------------------------


def test_native_train_step_learns_a_fixed_batch():
    backend.set_seed(0)
    model = models.image_classifier((8, 8, 1), 3, filters=[8], dense=16, dropout=0.0)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (16, 8, 8, 1)).astype("float32"), np.arange(16) % 3
    step = baselines.native_train_step(model, "sparse_categorical_crossentropy", learning_rate=1e-2,
                                       compiled=False)
    losses = [step(x, y) for _ in range(30)]
    assert all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses


@pytest.fixture(scope="module")
def translator(translation_overrides, tmp_path_factory):
    """A tiny translator recipe and the path of its initial model."""
    recipe = recipes.create("translator", translation_overrides)
    backend.set_seed(0)
    initial = tmp_path_factory.mktemp("translator") / "initial.keras"
    recipe.build_model().save(initial)
    return recipe, initial


def test_the_native_loop_trains_dict_inputs_with_the_recipes_loss(translator):
    recipe, initial = translator
    x, y = next(baselines.numpy_batches(recipe, "train", 1))
    assert set(x) == {"source_ids", "target_ids"} and y.shape == x["target_ids"].shape
    step = baselines.native_train_step(runs.load_model(initial), recipe.compile_arguments()["loss"],
                                       learning_rate=1e-2, compiled=False)
    losses = [step(x, y) for _ in range(10)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def test_the_identical_steps_train_a_copy_not_the_recipes_model(translator):
    recipe, initial = translator
    recipe.model = model = runs.load_model(initial)
    weights = model.get_weights()
    losses = worker.losses_after_identical_steps(recipe, 2)
    assert len(losses) == 3 and all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert recipe.model is model and not model.compiled
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_a_dict_input_batch_is_saved_and_loaded_without_pickle(translator, tmp_path):
    recipe, initial = translator
    inputs, _ = next(recipe.batches("test").as_numpy_iterator())
    worker.save_arrays(tmp_path / "fixed.npz", inputs)
    loaded = worker.load_arrays(tmp_path / "fixed.npz")
    assert set(loaded) == set(inputs)
    for name, array in inputs.items():
        np.testing.assert_array_equal(loaded[name], array)
    outputs = runs.load_model(initial).predict(loaded, verbose=0)
    assert worker.flat_outputs(outputs).shape == outputs.shape
    assert outputs.shape[:2] == inputs["target_ids"].shape


# --- the loss curve: one point per group of steps_per_execution steps on every backend ------------


def timed_run(calls, per_step_losses, batches, group, epochs=2):
    """A StepTimer fed as Keras feeds it: `calls` batches per compiled call (4 as on JAX and
    TensorFlow with steps_per_execution=4, 1 as on PyTorch), the loss a running mean in the epoch."""
    timer = StepTimer(batches, group=group)
    timer.on_train_begin()
    for epoch in range(epochs):
        timer.on_epoch_begin(epoch)
        losses = per_step_losses[epoch * batches:(epoch + 1) * batches]
        for first in range(0, batches, calls):
            last = min(first + calls, batches) - 1
            timer.on_train_batch_begin(first)
            timer.on_train_batch_end(last, {"loss": np.mean(losses[:last + 1])})
        timer.on_epoch_end(epoch, {"loss": np.mean(losses)})
    return timer


def test_the_loss_curve_has_the_same_points_on_every_backend():
    losses = list(np.linspace(3.0, 1.0, 20))                    # 2 epochs of 10 batches
    jax_like, torch_like = timed_run(4, losses, 10, group=4), timed_run(1, losses, 10, group=4)
    for timer in (jax_like, torch_like):
        assert timer.loss_steps == [4, 8, 10, 14, 18, 20]          # a group ends early at an epoch's end
        assert timer.epoch_end_steps == [10, 20] and len(timer.step_seconds) == 20
        assert timer.losses[2] == pytest.approx(np.mean(losses[:10]))
        assert timer.losses[3] == pytest.approx(np.mean(losses[10:14]))   # the running mean restarts
    assert torch_like.losses == pytest.approx(jax_like.losses)
    assert timed_run(1, losses, 10, group=1).loss_steps == list(range(1, 21))


def test_loss_curves_png_plots_those_points_and_marks_the_epochs():
    losses = list(np.linspace(3.0, 1.0, 20))
    comparison = Comparison("recipes/digits_cnn.toml", settings={})
    for label, calls in (("jax", 4), ("torch", 1)):
        timer = timed_run(calls, losses, 10, group=4)
        comparison.add({"label": label, "backend": label, "loss_curve": timer.losses, "loss_group": 4,
                        "loss_curve_steps": timer.loss_steps, "epoch_end_steps": timer.epoch_end_steps})
    axes = comparison.loss_figure().axes[0]
    curves = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in axes.get_lines()}
    assert set(curves) == {"jax", "torch", "epoch boundary"}
    assert curves["jax"][0] == curves["torch"][0] == [4, 8, 10, 14, 18, 20]
    assert curves["jax"][1] == pytest.approx(curves["torch"][1])
    assert curves["epoch boundary"][0] == [10.5, 10.5]            # between the epochs' steps 10 and 11
    assert axes.get_xlabel() == "step (a point every 4 steps)"
    assert "epoch boundary" in [text.get_text() for text in axes.get_legend().get_texts()]


def test_a_steps_comparison_cuts_a_longer_warmup_to_its_steps(translation_overrides):
    recipe = recipes.create("translator", [*translation_overrides, "train.schedule=warmup_cosine",
                                           "train.warmup_steps=400"])
    said = []
    worker.fit_warmup_to_the_steps(recipe, 8, said.append)
    assert recipe.config.train.warmup_steps == 8
    assert said == ["train.warmup_steps 400 cut to the 8 steps compared"]
    worker.fit_warmup_to_the_steps(recipe, 20, said.append)
    assert recipe.config.train.warmup_steps == 8 and len(said) == 1
