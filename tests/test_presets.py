"""Image, text and audio classifiers that start from a keras-hub preset (kdl.models.presets, the tasks'
`build_from_preset`), on the active backend. Presets cannot be downloaded here, so each test
writes a tiny, randomly initialised one with keras-hub's own `save_to_preset`; the download
failure of a "hub:NAME" is simulated at kagglehub, the one call keras-hub makes to fetch it."""

import json
import re

import numpy as np
import pytest

import kdl
from kdl import backend
from kdl.errors import ConfigError
from kdl.models import presets

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "##s", "a", "the"]


@pytest.fixture(scope="module")
def resnet_preset(tmp_path_factory):
    """A tiny ResNet (one basic block) with an ImageConverter that resizes to 16x16 and
    normalises per channel, as keras-hub's ImageNet presets do."""
    import keras_hub

    folder = tmp_path_factory.mktemp("presets") / "resnet_tiny"
    keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
        stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block").save_to_preset(folder)
    keras_hub.layers.ResNetImageConverter(
        image_size=(16, 16), scale=[1 / (255 * s) for s in (0.229, 0.224, 0.225)],
        offset=[-m / s for m, s in ((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))]).save_to_preset(folder)
    return folder


@pytest.fixture(scope="module")
def bert_preset(tmp_path_factory):
    """A tiny uncased BERT with its WordPiece vocabulary."""
    import keras_hub

    folder = tmp_path_factory.mktemp("presets") / "bert_tiny"
    keras_hub.models.BertBackbone(len(VOCABULARY), num_layers=1, num_heads=2, hidden_dim=16,
                                  intermediate_dim=32, max_sequence_length=16).save_to_preset(folder)
    keras_hub.models.BertTokenizer(vocabulary=VOCABULARY, lowercase=True).save_to_preset(folder)
    return folder


def stripes(count, seed):
    """Grey 12x12 images of horizontal (class 1) or vertical (class 0) stripes, pixels 0/255."""
    rng = np.random.default_rng(seed)
    images, labels = np.zeros((count, 12, 12), np.uint8), np.arange(count) % 2
    for image, label in zip(images, labels):
        phase = rng.integers(0, 2)
        if label:
            image[phase::2, :] = 255
        else:
            image[:, phase::2] = 255
    return images, labels


STRIPES = {"train": stripes(48, 0), "test": stripes(24, 1)}
TEXTS = {"train": ([f"{word} {other} {i}" for i in range(12) for word in ("good", "bad")
                    for other in ("film", "a")], [1, 1, 0, 0] * 12),
         "test": (["good film", "bad film", "a good", "the bad", "good", "bad films"], [1, 0, 1, 0, 1, 0])}


def log_loss(probabilities, labels):
    return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels] + 1e-7)))


def backbone_layer(model, name):
    return next(layer for layer in model.layers if type(layer).__name__ == name)


def fine_tune(recipe, preset, inputs, labels):
    """Build the recipe's model from `preset` by its hook, train it; (loss before, loss after)."""
    recipe.model = recipe.build_from_preset(str(preset))
    before = log_loss(recipe.predict(inputs).probabilities, labels)
    recipe.fit(verbose=0)
    return before, log_loss(recipe.predict(inputs).probabilities, labels)


# --- images ------------------------------------------------------------------------------------

def test_image_classifier_fine_tunes_a_resnet_preset_and_its_run_reloads(resnet_preset, tmp_path):
    import keras
    import keras_hub

    recipe = kdl.recipes.image_classifier(STRIPES, epochs=4, batch_size=8, learning_rate=1e-3,
                                          validation_split=0, augment=["flip"])
    images, labels = STRIPES["test"]
    saved = keras_hub.models.Backbone.from_preset(str(resnet_preset))
    before, after = fine_tune(recipe, resnet_preset, images, labels)
    model = recipe.model
    assert model.input_shape == (None, 12, 12, 1) and model.output_shape == (None, 2)
    converter = keras_hub.layers.ImageConverter.from_preset(str(resnet_preset))   # the preset's own
    preprocessed = keras.Model(model.input, model.get_layer("rescaling").output).predict(images, verbose=0)
    rgb = np.repeat(images[..., None], 3, axis=-1).astype("float32")
    np.testing.assert_allclose(preprocessed, converter(rgb), atol=1e-5)
    assert recipe.evaluate()["accuracy"] >= 0.9 and after < before / 2, (before, after)

    recipe.model = recipe.build_from_preset(str(resnet_preset))    # untrained: the preset's weights
    np.testing.assert_array_equal(backbone_layer(recipe.model, "ResNetBackbone").get_weights()[0],
                                  saved.get_weights()[0])
    recipe.model = model
    probabilities = recipe.predict(images).probabilities
    recipe.save(tmp_path / "run")
    loaded = kdl.recipes.load(tmp_path / "run")                    # model.keras in Keras' safe mode
    np.testing.assert_allclose(loaded.predict(images).probabilities, probabilities, atol=1e-5)
    assert loaded.predict(np.full((20, 30, 3), 128.0)).probabilities.shape == (1, 2)   # other sizes
    # an export holds the preprocessing and leaves augmentation and batch statistics off (kdl
    # checks the exported file against the Keras model before keeping it)
    export_format = {"tensorflow": "onnx", "jax": "saved_model", "torch": "onnx"}[backend.name()]
    loaded.export(tmp_path / "export", format=export_format)


def test_image_preset_without_converter_and_rgba_images(resnet_preset, tmp_path):
    """A folder with only the backbone: pixels scaled to 0..1 (a warning says so); RGBA images
    lose their alpha for the RGB backbone, and the model still saves and loads in safe mode."""
    import keras
    import keras_hub

    folder = tmp_path / "backbone_only"
    keras_hub.models.Backbone.from_preset(str(resnet_preset)).save_to_preset(folder)
    with pytest.warns(UserWarning, match="has no image converter"):
        model = presets.image_classifier(str(folder), (10, 10, 4), num_classes=3)
    images = np.random.default_rng(0).uniform(0, 255, (2, 10, 10, 4)).astype("float32")
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (2, 3) and np.isfinite(probabilities).all()
    model.save(tmp_path / "model.keras")
    from kdl import runs

    np.testing.assert_allclose(runs.load_model(tmp_path / "model.keras").predict(images, verbose=0),
                               probabilities, atol=1e-5)
    assert isinstance(model.get_layer("rescaling"), keras.layers.Rescaling)


def test_image_factory_starts_from_a_preset_folder(resnet_preset):
    recipe = kdl.recipes.image_classifier(STRIPES, backbone=str(resnet_preset), epochs=2, batch_size=8,
                                          freeze_epochs=1,
                                          validation_split=0)
    recipe.fit(verbose=0)
    assert backbone_layer(recipe.model, "ResNetBackbone") is not None


# --- text --------------------------------------------------------------------------------------

def test_text_classifier_fine_tunes_a_bert_preset_and_its_run_reloads(bert_preset, tmp_path):
    import keras_hub

    recipe = kdl.recipes.text_classifier(TEXTS, epochs=3, batch_size=8, max_length=8,
                                         learning_rate=3e-3, validation_split=0)
    texts, labels = TEXTS["test"]
    texts, labels = texts + [""], np.array(labels)            # an empty string is all padding
    saved = keras_hub.models.Backbone.from_preset(str(bert_preset))
    recipe.model = recipe.build_from_preset(str(bert_preset))
    assert recipe.tokenizer.vocabulary == VOCABULARY and recipe.config.data.tokenizer == "wordpiece"
    assert recipe.tokenizer.to_numpy(["Good films"]).tolist()[0][:3] == [5, 7, 8]
    embedding = backbone_layer(recipe.model, "BertBackbone").get_layer("token_embedding")
    np.testing.assert_array_equal(embedding.get_weights()[0],
                                  saved.get_layer("token_embedding").get_weights()[0])
    before = log_loss(recipe.predict(texts).probabilities[:-1], labels)
    recipe.fit(verbose=0)
    probabilities = recipe.predict(texts).probabilities
    after = log_loss(probabilities[:-1], labels)
    assert np.mean(probabilities[:-1].argmax(axis=1) == labels) >= 0.8 and after < before / 2, (before, after)
    assert np.isfinite(probabilities).all()

    recipe.save(tmp_path / "run")
    assert (tmp_path / "run" / "vocabulary.txt").read_text().split() == VOCABULARY
    loaded = kdl.recipes.load(tmp_path / "run")
    np.testing.assert_allclose(loaded.predict(texts).probabilities, probabilities, atol=1e-5)


def test_text_tokenizer_comes_from_the_preset_named_in_the_config(bert_preset):
    recipe = kdl.recipes.text_classifier(TEXTS, backbone=str(bert_preset), max_length=8)
    assert recipe.tokenizer.vocabulary == VOCABULARY
    assert recipe.config.data.tokenizer == "wordpiece"


def test_text_factory_starts_from_a_preset_folder(bert_preset):
    recipe = kdl.recipes.text_classifier(TEXTS, backbone=str(bert_preset), max_length=8)
    recipe.model = recipe.build_model()             # model.backbone: the preset, by the task's hook
    assert backbone_layer(recipe.model, "BertBackbone") is not None
    assert recipe.tokenizer.vocabulary == VOCABULARY
    assert recipe.predict(["good film", ""]).probabilities.shape == (2, 2)


def test_a_distilbert_preset_builds_too(tmp_path):
    import keras_hub

    folder = tmp_path / "distil"
    keras_hub.models.DistilBertBackbone(len(VOCABULARY), num_layers=1, num_heads=2, hidden_dim=8,
                                        intermediate_dim=16, max_sequence_length=16).save_to_preset(folder)
    keras_hub.models.DistilBertTokenizer(vocabulary=VOCABULARY, lowercase=True).save_to_preset(folder)
    tokenizer = presets.tokenizer(str(folder), max_length=8)
    model = presets.text_classifier(str(folder), 8, num_classes=3, vocabulary_size=tokenizer.vocabulary_size)
    probabilities = model.predict(tokenizer.to_numpy(["good film", ""]), verbose=0)
    assert probabilities.shape == (2, 3) and np.isfinite(probabilities).all()


# --- audio: a Moonshine preset reads raw waveforms ----------------------------------------------

@pytest.fixture(scope="module")
def moonshine_preset(tmp_path_factory):
    """A tiny Moonshine (one encoder and one decoder block) with its audio converter (16 kHz,
    per-clip normalisation); no tokenizer: a classifier does not use it."""
    import keras_hub

    folder = tmp_path_factory.mktemp("presets") / "moonshine_tiny"
    keras_hub.models.MoonshineBackbone(
        vocabulary_size=16, filter_dim=16, encoder_num_layers=1, decoder_num_layers=1, hidden_dim=16,
        intermediate_dim=32, encoder_num_heads=2, decoder_num_heads=2).save_to_preset(folder)
    keras_hub.layers.MoonshineAudioConverter(do_normalize=True).save_to_preset(folder)
    return folder


def sounds(count, seed, samples=8000):
    """Half a second at 16 kHz: a 440 Hz tone (class 1) or white noise (class 0)."""
    rng = np.random.default_rng(seed)
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16000)
    waves = [tone * rng.uniform(0.5, 1) if i % 2 else rng.normal(0, 0.3, samples) for i in range(count)]
    return np.clip(waves, -1, 1).astype("float32"), np.arange(count) % 2


def test_audio_classifier_fine_tunes_a_moonshine_preset_and_its_run_reloads(moonshine_preset, tmp_path):
    recipe = kdl.recipes.audio_classifier({"train": sounds(24, 0), "test": sounds(8, 1)}, sample_rate=16000,
                                          max_seconds=0.5, epochs=3, batch_size=8, learning_rate=3e-3,
                                          validation_split=0)
    waves, labels = sounds(8, 1)
    recipe.model = presets.audio_classifier(str(moonshine_preset), recipe.data.info.num_samples,
                                            len(recipe.class_names), recipe.config.data.sample_rate)
    assert recipe.model.input_shape == (None, 8000)
    before = log_loss(recipe.predict(waves).probabilities, labels)
    recipe.fit(verbose=0)
    probabilities = recipe.predict(waves).probabilities
    assert np.mean(probabilities.argmax(axis=1) == labels) >= 0.75, probabilities
    assert log_loss(probabilities, labels) < before / 2
    recipe.save(tmp_path / "run")
    np.testing.assert_allclose(kdl.recipes.load(tmp_path / "run").predict(waves).probabilities,
                               probabilities, atol=1e-5)
    with pytest.raises(ConfigError, match="takes audio at 16000 Hz but data.sample_rate is 8000; set "
                                          "data.sample_rate = 16000"):
        presets.audio_classifier(str(moonshine_preset), 8000, 2, sample_rate=8000)


def test_audio_factory_starts_from_a_moonshine_preset(moonshine_preset):
    recipe = kdl.recipes.audio_classifier(sounds(12, 0), backbone=str(moonshine_preset), sample_rate=16000,
                                          max_seconds=0.5)
    assert backbone_layer(recipe.build_model(), "MoonshineBackbone") is not None


# --- clear errors --------------------------------------------------------------------------------

def test_a_missing_folder_or_a_folder_that_is_not_a_preset(tmp_path):
    recipe = kdl.recipes.image_classifier(STRIPES)
    missing = re.escape(f"no keras-hub preset folder '{tmp_path / 'nope'}': it does not exist")
    with pytest.raises(ConfigError, match=missing):
        recipe.build_from_preset(str(tmp_path / "nope"))
    (tmp_path / "images").mkdir()
    with pytest.raises(ConfigError, match="is not a keras-hub preset folder: it has no config.json or "
                                          "metadata.json"):
        recipe.build_from_preset(str(tmp_path / "images"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"layers": 3}))
    (tmp_path / "other" / "metadata.json").write_text("{}")
    with pytest.raises(ConfigError, match="cannot load the config.json of the keras-hub preset .*"
                                          "Unrecognized format"):
        recipe.build_from_preset(str(tmp_path / "other"))


def test_a_preset_of_the_other_modality_names_its_backbone(resnet_preset, bert_preset, moonshine_preset):
    text = kdl.recipes.text_classifier(TEXTS, max_length=8)
    with pytest.raises(ConfigError, match="holds a ResNetBackbone, a backbone for image inputs; a text "
                                          "classifier needs one for text inputs"):
        text.build_from_preset(str(resnet_preset))
    with pytest.raises(ConfigError, match="holds a ResNetBackbone"):
        kdl.recipes.text_classifier(TEXTS, backbone=str(resnet_preset)).tokenizer
    image = kdl.recipes.image_classifier(STRIPES)
    with pytest.raises(ConfigError, match="holds a BertBackbone, a backbone for text inputs; an image "
                                          "classifier needs one for image inputs"):
        image.build_from_preset(str(bert_preset))
    with pytest.raises(ConfigError, match="holds a MoonshineBackbone, a backbone for audio inputs; an "
                                          "image classifier needs"):
        image.build_from_preset(str(moonshine_preset))
    with pytest.raises(ConfigError, match="holds a BertBackbone, a backbone for text inputs; an audio "
                                          "classifier needs one for audio inputs alone"):
        presets.audio_classifier(str(bert_preset), 8000, 2, sample_rate=16000)


def test_preset_parts_missing_or_too_short(bert_preset, resnet_preset, tmp_path):
    import keras_hub

    folder = tmp_path / "no_tokenizer"
    keras_hub.models.Backbone.from_preset(str(bert_preset)).save_to_preset(folder)
    with pytest.raises(ConfigError, match="has no tokenizer: .*tokenizer.json"):
        presets.tokenizer(str(folder))
    (resnet_preset.parent / "no_weights").mkdir(exist_ok=True)
    for name in ("config.json", "metadata.json"):
        (resnet_preset.parent / "no_weights" / name).write_bytes((resnet_preset / name).read_bytes())
    with pytest.raises(ConfigError, match="has no backbone: .*weights"):
        presets.image_classifier(str(resnet_preset.parent / "no_weights"), (8, 8, 3), 2)
    with pytest.raises(ConfigError, match="data.max_length = 32 is longer than .* max_sequence_length 16"):
        presets.text_classifier(str(bert_preset), 32, num_classes=2)


def test_a_hub_name_that_cannot_be_downloaded_is_one_clear_line(monkeypatch):
    import kagglehub
    import requests

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(kagglehub, "model_download", offline)
    image = kdl.recipes.image_classifier(STRIPES)
    with pytest.raises(ConfigError) as error:
        image.build_from_preset("resnet_18_imagenet")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("cannot download the keras-hub preset 'resnet_18_imagenet' here "
                              "(ConnectionError: Failed to resolve 'api.kaggle.com')")
    assert "needs a machine connected to the internet" in message and "local preset folder" in message
    with pytest.raises(ConfigError, match="cannot download the keras-hub preset 'bert_tiny_en_uncased'"):
        kdl.recipes.text_classifier(TEXTS, backbone="hub:bert_tiny_en_uncased").tokenizer
    with pytest.raises(ConfigError, match=r"no keras-hub preset named 'resnet_18_imagenett' \(did you mean "
                                          "'resnet_18_imagenet'"):
        image.build_from_preset("resnet_18_imagenett")
