"""The image classification recipe end to end on the active backend: train, evaluate, predict,
save, load, and clear errors for bad input. What every task shares (cross-backend reload
included) is tests/test_contract.py."""

import numpy as np
import pytest

import kdl
from kdl import backend
from kdl.data import load_images
from kdl.errors import ConfigError, DataError
from kdl.evaluation import ClassificationReport


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The default recipe, trained as a user would: image_classifier().fit(), then saved."""
    recipe = kdl.recipes.image_classifier()
    recipe.fit(verbose=0)
    report = recipe.evaluate()
    run_dir = recipe.save(tmp_path_factory.mktemp("runs") / "digits")
    return recipe, report, run_dir


@pytest.fixture(scope="module")
def digits_test_images():
    dataset = load_images("digits")
    images, labels = zip(*dataset.splits["test"].as_numpy_iterator())
    return np.stack(images), np.array(labels)


def test_default_recipe_reaches_95_percent_on_digits(digits_run):
    _, report, _ = digits_run
    assert isinstance(report, ClassificationReport)
    assert report["accuracy"] >= 0.95, str(report)
    assert report.meta["backend"] == backend.name() and report.meta["num_examples"] == 360


def test_predict_returns_class_names_and_probabilities(digits_run, digits_test_images):
    recipe, report, _ = digits_run
    images, labels = digits_test_images
    predictions = recipe.predict(images[:, :, :, 0])            # (N, H, W) works for grey images
    assert predictions.probabilities.shape == (360, 10)
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert predictions.labels[:5] == [str(i) for i in predictions.class_ids[:5]]
    assert np.mean(predictions.class_ids == labels) == pytest.approx(report["accuracy"])
    single = recipe.predict(images[0])                           # one (H, W, C) image
    assert len(single) == 1 and single.top(3)[0][0][0] == predictions.labels[0]


def test_predict_on_image_files(digits_run, digits_test_images, tmp_path):
    from PIL import Image

    recipe, _, _ = digits_run
    images, _ = digits_test_images
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(images[i, :, :, 0]).save(paths[-1])
    np.testing.assert_allclose(recipe.predict(paths).probabilities,
                               recipe.predict(images[:3]).probabilities, atol=1e-6)


def test_run_directory_holds_model_config_and_report(digits_run):
    recipe, report, run_dir = digits_run
    assert {"model.keras", "recipe.toml", "report.json", "confusion_matrix.png"} <= {
        p.name for p in run_dir.iterdir()}
    saved = kdl.evaluation.Report.from_json(run_dir / "report.json")
    assert saved["accuracy"] == report["accuracy"]
    assert 'class_names = [' in (run_dir / "recipe.toml").read_text()


def test_loaded_run_evaluates_like_the_original(digits_run):
    _, report, run_dir = digits_run
    assert kdl.recipes.load(run_dir).evaluate()["accuracy"] == pytest.approx(report["accuracy"])


def test_predict_converts_arrays_of_another_size_or_channel_count_as_training_does(
        digits_run, digits_test_images, tmp_path):
    from PIL import Image

    recipe, _, _ = digits_run
    grey = digits_test_images[0][:4, :, :, 0].astype(np.float32)              # (4, 8, 8), 0..255
    expected = recipe.predict(grey).probabilities
    rgb = np.repeat(grey[..., None], 3, axis=-1)                               # grey as RGB: same pixels
    np.testing.assert_allclose(recipe.predict(rgb).probabilities, expected, atol=1e-5)
    rgba = np.concatenate([rgb, np.full((4, 8, 8, 1), 255)], axis=-1)
    np.testing.assert_allclose(recipe.predict(rgba).probabilities, expected, atol=1e-5)
    twice = np.repeat(np.repeat(grey, 2, axis=1), 2, axis=2)                   # (4, 16, 16)
    np.testing.assert_allclose(recipe.predict(twice).probabilities, expected, atol=1e-5)  # bilinear back
    path = tmp_path / "rgb.png"                                                # a file: PIL converts it
    Image.fromarray(rgb[0].astype(np.uint8), "RGB").save(path)
    np.testing.assert_allclose(recipe.predict(str(path)).probabilities, expected[:1], atol=1e-6)
    with pytest.raises(DataError, match=r"shape \(2, 8, 8, 3, 1\).*C of 1, 3 or 4"):
        recipe.predict(np.zeros((2, 8, 8, 3, 1)))
    with pytest.warns(kdl.errors.KdlWarning, match="within 0..1"):             # scaled for another model
        recipe.predict(grey / 255.0)
    with pytest.warns(kdl.errors.KdlWarning, match="from -5 to 2.55e"):
        recipe.predict(np.concatenate([grey[:1] * 0 - 5, grey[1:] * 1e30]))


def test_arrays_dataset_and_labels_outside_the_class_range():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (40, 8, 8)).astype("uint8"), np.arange(40) % 4
    recipe = kdl.recipes.image_classifier((x, y), epochs=1, filters=[4], dense=8)
    assert recipe.data.info.class_names == ["0", "1", "2", "3"]
    recipe.fit(verbose=0)
    assert recipe.predict(x[:2]).probabilities.shape == (2, 4)
    with pytest.raises(DataError, match="outside"):
        kdl.recipes.image_classifier((x, y), class_names=["a", "b", "c"])


def test_unknown_model_or_dataset_names():
    with pytest.raises(ConfigError, match="unknown model 'resnet50'"):
        kdl.recipes.image_classifier(model="resnet50")
    with pytest.raises(DataError, match="mnistt"):
        kdl.recipes.image_classifier("mnistt").fit(verbose=0)
    with pytest.raises(ConfigError, match="no model yet; call fit"):
        kdl.recipes.image_classifier().predict(np.zeros((8, 8)))


def test_fashion_mnist_resnet_recipe_file_trains_on_a_subset(shared_data, tmp_path):
    recipe = kdl.recipes.load("recipes/image_classification/fashion_mnist_resnet.toml",
                              ["data.limit=3000", "train.epochs=3", "model.options.width=8"],
                              data_root=shared_data)
    recipe.fit(verbose=0, out=tmp_path)
    report = recipe.evaluate()
    assert report.meta["num_examples"] == 3000 and report.class_names[0] == "T-shirt/top"
    assert report["accuracy"] > 0.5, str(report)   # chance is 0.1
    assert (tmp_path / "history.csv").read_text().count("\n") == 4
