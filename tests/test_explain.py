"""kdl.explain proven on planted signals: a class decided only by where a bright patch is, or by
one trigger word; attributions must point there (the pointing game), change when the weights
are randomised (Adebayo et al., 2018), be complete (integrated gradients), and agree across
backends for one saved run. Every test runs on the active backend; the cross-backend test
explains the same run again on the next backend in a `kdl explain` process."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import scipy.stats
from conftest import next_backend

import kdl
from kdl import backend
from kdl.errors import ConfigError, DataError
from kdl.explain import gradients

SIZE, PATCH = 16, 4
CORNERS = [(2, 2), (2, 10), (10, 2), (10, 10)]      # where the patch may be: its top-left corner
FILLER = [f"w{i}" for i in range(40)]
TRIGGERS = ["alpha", "omega"]                        # class 0, class 1


def patch_images(count, seed):
    """(images (count, 16, 16, 1) 0..255, labels, places): dim noise and one bright 4x4 patch at a
    random one of CORNERS; the class is the patch's pattern: 0 solid, 1 a ring (dark centre)."""
    rng = np.random.default_rng(seed)
    labels, places = rng.integers(0, 2, count), rng.integers(0, len(CORNERS), count)
    images = rng.uniform(0, 60, (count, SIZE, SIZE, 1)).astype("float32")
    for image, label, place in zip(images, labels, places):
        row, col = CORNERS[place]
        image[row:row + PATCH, col:col + PATCH] = 255
        if label == 1:
            image[row + 1:row + 3, col + 1:col + 3] = 30
    return images, labels, places


def in_patch(peaks, places):
    """The share of (row, col) peaks inside their image's patch."""
    return float(np.mean([CORNERS[k][0] <= r < CORNERS[k][0] + PATCH and CORNERS[k][1] <= c < CORNERS[k][1]
                          + PATCH for (r, c), k in zip(peaks, places)]))


def trigger_texts(count, seed):
    """(texts, labels): 7 random filler words and one trigger word at a random place."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    texts = []
    for label in labels:
        words = list(rng.choice(FILLER, 7))
        words.insert(int(rng.integers(0, 8)), TRIGGERS[label])
        texts.append(" ".join(words))
    return texts, labels


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A small ResNet trained to tell the patterns apart, saved; and 30 test images."""
    train = patch_images(480, seed=0)
    test = patch_images(30, seed=1)
    recipe = kdl.recipes.image_classifier({"train": train[:2], "test": test[:2]}, model="resnet", epochs=6,
                                          stages=2, blocks=1, width=8, batch_size=32, learning_rate=3e-3,
                                          seed=0)
    recipe.fit(verbose=0)
    assert recipe.evaluate()["accuracy"] >= 0.95
    run = recipe.save(tmp_path_factory.mktemp("explain") / "patch_run")
    return recipe, run, test


@pytest.fixture(scope="module")
def text_recipe():
    train = trigger_texts(400, seed=0)
    test = trigger_texts(30, seed=1)
    recipe = kdl.recipes.text_classifier({"train": train, "test": test}, model="fasttext", epochs=10,
                                         ngrams=1, max_length=10, embedding=16, batch_size=32,
                                         learning_rate=1e-2, seed=0)
    recipe.fit(verbose=0)
    assert recipe.evaluate()["accuracy"] >= 0.95
    return recipe, test


@pytest.mark.parametrize("method", ["integrated_gradients", "grad_cam"])
def test_pointing_game_on_planted_patches(image_run, method):
    recipe, _, (images, labels, places) = image_run
    explanation = recipe.explain(images, method=method)
    assert explanation.attributions.shape == (len(images), SIZE, SIZE)
    assert explanation.target == [str(label) for label in labels]      # predicted = true here
    assert in_patch(explanation.peaks(), places) >= 0.9, explanation.peaks().tolist()


def test_integrated_gradients_is_complete(image_run, text_recipe):
    recipe, _, (images, _, _) = image_run
    for explanation in (recipe.explain(images[:8]), text_recipe[0].explain(text_recipe[1][0][:8])):
        checks = explanation.checks
        assert checks["converged"] and checks["completeness_gap"].max() <= checks["tolerance"]
        sums = explanation.attributions.reshape(len(explanation), -1).sum(axis=1)
        assert np.allclose(sums, checks["difference"], atol=checks["tolerance"])


def test_attributions_change_when_the_weights_are_randomised(image_run):
    recipe, run, (images, _, _) = image_run
    images = images[:10]
    randomised = kdl.recipes.load(run)
    randomised.model = keras.models.clone_model(recipe.model)      # the same layers, newly initialised
    for method in ("integrated_gradients", "grad_cam"):
        trained = recipe.explain(images, method=method, target=0).attributions
        other = randomised.explain(images, method=method, target=0).attributions
        correlations = [scipy.stats.spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(trained, other)]
        assert np.nanmean(correlations) < 0.5, (method, correlations)


def test_trigger_word_gets_the_highest_attribution(text_recipe):
    recipe, (texts, labels) = text_recipe
    for method, count, settings in (("integrated_gradients", 30, {}), ("occlusion", 12, {"max_evals": 64})):
        texts, labels = texts[:count], labels[:count]
        explanation = recipe.explain(texts, method=method, **settings)
        top = [tokens[int(np.argmax(row))] for tokens, row in
               zip(explanation.tokens, explanation.attributions)]
        hits = np.mean([word == TRIGGERS[label] for word, label in zip(top, labels)])
        assert hits >= 0.9, (method, top[:5])


def test_same_attributions_on_the_next_backend(image_run, tmp_path):
    recipe, run, (images, _, _) = image_run
    images = images[:4]
    here = recipe.explain(images, steps=64, tolerance=1.0)
    other = next_backend(backend.name())
    np.save(tmp_path / "images.npy", images)
    env = dict(os.environ, KERAS_BACKEND=other, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "kdl", "explain", str(run), str(tmp_path / "images.npy"),
                           "--steps", "64", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    there = np.load(tmp_path / "out" / "attributions.npy")
    assert json.loads((tmp_path / "out" / "explanation.json").read_text())["checks"]["steps"] == 64
    assert np.abs(here.attributions - there).max() <= 1e-4
    assert (tmp_path / "out" / "index.html").is_file() and (tmp_path / "out" / "003.png").is_file()


def test_audio_models_explain_their_log_mel_features():
    rate, samples = 8000, 2000
    t = np.arange(samples) / rate
    labels = np.arange(24) % 2                                      # a low tone or a high one
    waves = np.stack([0.5 * np.sin(2 * np.pi * (300, 1200)[label] * t) for label in labels]).astype("float32")
    recipe = kdl.recipes.audio_classifier((waves, labels), max_seconds=0.25, filters=[4, 8], dense=8)
    recipe.model = recipe.build_model()         # untrained: the shapes and the plumbing are checked
    features = recipe.model.get_layer("features").output.shape[1:]
    for method in ("integrated_gradients", "grad_cam"):
        explanation = recipe.explain(waves[:3], method=method)
        assert explanation.attributions.shape == (3, *features) == explanation.features.shape
    assert recipe.explain(waves[:3], at="input").attributions.shape == (3, samples)
    assert recipe.explain(waves[:2], method="occlusion").attributions.shape == (2, samples)


def test_methods_that_do_not_apply_are_named(image_run, text_recipe):
    recipe, _, (images, _, _) = image_run
    with pytest.raises(ConfigError, match="methods that do: integrated_gradients, occlusion"):
        text_recipe[0].explain(["alpha w1"], method="grad_cam")
    with pytest.raises(ConfigError, match="methods that do: integrated_gradients, grad_cam, occlusion"):
        recipe.explain(images[:1], method="attention")
    with pytest.raises(ConfigError, match="unknown explanation method 'shap'"):
        recipe.explain(images[:1], method="shap")
    with pytest.raises(ConfigError, match="grad_cam has no setting 'steps'"):
        recipe.explain(images[:1], method="grad_cam", steps=3)
    with pytest.raises(ConfigError, match="is not a 2-D convolution of this model"):
        recipe.explain(images[:1], method="grad_cam", layer="probabilities")
    with pytest.raises(DataError, match="target 'cat' is not a class of this model"):
        recipe.explain(images[:1], target="cat")
    with pytest.raises(ConfigError, match="baseline 'sky'"):
        recipe.explain(images[:1], baseline="sky")


def test_split_model_heads_reproduce_the_model_and_leave_it_whole(text_recipe, image_run, tmp_path):
    recipe, (texts, _) = text_recipe
    ids = recipe.prepare_inputs(texts[:3])
    point, _ = recipe.explain_point()
    front, head, extra = gradients.split(recipe.model, point)
    rebuilt = gradients._numpy(gradients._call(head, front(ids), [ids] if extra else []))
    assert np.allclose(rebuilt, recipe.model.predict(ids, verbose=0), atol=1e-6)
    # explaining cuts a working copy: the run's own model still saves and loads afterwards
    images = image_run[2][0][:2]
    image_run[0].explain(images, method="grad_cam")
    for explained in (recipe, image_run[0]):
        explained.save(tmp_path / explained.task)
        again = kdl.recipes.load(tmp_path / explained.task)
        assert again.model.count_params() == explained.model.count_params()


def test_the_speech_recognizer_explains_its_own_transcript():
    rate = 8000
    t = np.arange(2400) / rate
    waves = [(0.3 * np.sin(2 * np.pi * f * t)).astype("float32") for f in (300, 900, 300, 900)]
    data = {"train": (waves, ["a", "b", "ab", "ba"]), "test": (waves[:2], ["a", "b"])}
    recipe = kdl.recipes.speech_recognizer(data, sample_rate=rate, max_seconds=0.3, width=16, blocks=1,
                                           channels=4, mel_bins=16, hop_ms=20.0)
    recipe.model = recipe.build_model()         # untrained: what it explains is its own (odd) transcript
    assert kdl.explain.methods(recipe) == ["integrated_gradients", "grad_cam", "occlusion"]
    explanation = recipe.explain(waves[:2])
    features = recipe.model.get_layer("features").output.shape[1:]
    assert explanation.attributions.shape == (2, *features) and explanation.checks["converged"]
    assert explanation.predicted == recipe.predict(waves[:2], decoder="greedy").transcripts
    assert recipe.explain(waves[:2], method="grad_cam").attributions.shape == (2, *features)
    assert recipe.explain(waves[:1], method="occlusion").attributions.shape == (1, 2400)
    with pytest.raises(ConfigError, match="explains the transcript it decodes itself"):
        recipe.explain(waves[:1], target="a")
