"""kdl.models: the registry (lazy per-kind modules, clear errors), the public surface, every image
backbone builds and trains a step, text pooling and audio features."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from kdl import models
from kdl.errors import ConfigError
from kdl.models import registry


def test_importing_kdl_models_imports_no_backbone_module_until_a_kind_is_looked_up():
    """The registry imports a kind's module (registry.MODULES) on its first lookup; nothing is
    imported just to register builders, and `import kdl.models` does not load keras_hub. (The
    translation backbone lives in the translator's module, which the package imports for
    MaskedCrossentropy and masked_accuracy.)"""
    script = """if True:
        import sys
        import kdl.models
        from kdl.models import registry
        modules = sorted(set(registry.MODULES.values()))
        print(sorted(m for m in modules if m in sys.modules), "keras_hub" in sys.modules)
        print(registry.names("image_backbone"))
        print(sorted(m for m in modules if m in sys.modules))
    """
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout.splitlines()
    assert out[-3:] == ["['kdl.models.text.translator'] False", "['cnn', 'resnet']",
                        "['kdl.models.image.backbones', 'kdl.models.text.translator']"]


@pytest.mark.parametrize("kind, expected", [
    ("image_backbone", ["cnn", "resnet"]),
    ("text_backbone", ["bert", "cnn", "fasttext", "transformer"]),
    ("translation_backbone", ["transformer"]),
    ("audio_backbone", ["cnn"]),
    ("speech_encoder", ["bigru", "transformer"]),
])
def test_every_kind_is_a_backbone_kind_found_in_its_module(kind, expected):
    assert registry.names(kind) == expected
    for name in expected:
        assert registry.get(kind, name).__module__ == registry.MODULES[kind]


def test_unknown_names_and_kinds_are_clear_config_errors():
    with pytest.raises(ConfigError, match="unknown model 'bigrru'; did you mean 'bigru'.*"
                                          "Known speech_encoder models: bigru, transformer"):
        models.get("speech_encoder", "bigrru")
    with pytest.raises(ConfigError, match=r"^unknown model 'lstm'\. Known translation_backbone models: "
                                          r"transformer$"):
        models.translator(10, 10, 8, backbone="lstm")
    with pytest.raises(ConfigError, match="unknown model kind 'translator'; known kinds: image_backbone, "):
        models.get("translator", "transformer")
    with pytest.raises(ConfigError, match="unknown model kind 'image'"):
        models.register("image", "mine")


def test_register_adds_a_backbone_that_the_task_model_finds():
    @models.register("image_backbone", "tiny")
    def tiny(x, units=4):
        return keras.layers.Dense(units)(keras.layers.Flatten()(x))

    try:
        model = models.image_classifier((4, 4, 1), 2, backbone="tiny", units=3)
        assert model.count_params() == (16 * 3 + 3) + (3 * 2 + 2)
        assert "tiny" in models.names("image_backbone")
    finally:
        del registry._BUILDERS["image_backbone"]["tiny"]


def test_options_are_the_keywords_with_defaults_not_the_inputs():
    """check_options skips a builder's parameters without a default (tensors, sizes)."""
    translation = models.get("translation_backbone", "transformer")
    models.check_options(translation, {"width": 8, "encoder_layers": 1})
    with pytest.raises(ConfigError, match="model 'transformer' has no option 'max_length'; its options "
                                          r"\(with defaults\) are: encoder_layers=3, decoder_layers=3"):
        models.check_options(translation, {"max_length": 8})
    with pytest.raises(ConfigError, match="has no option 'vocabulary_size'; its options .*: embedding=64,"):
        models.check_options(models.get("text_backbone", "fasttext"), {"vocabulary_size": 8})


def test_public_surface_and_registered_keras_names():
    """Saved model files name these classes: their registered names must not change."""
    assert sorted(models.__all__) == sorted([
        "image_classifier", "text_classifier", "translator", "audio_classifier", "speech_recognizer",
        "get", "names", "register", "check_options", "BeamSearch", "MaskedCrossentropy",
        "masked_accuracy", "AudioFeatures", "SpecAugment"])
    assert all(hasattr(models, name) for name in models.__all__)
    for cls in (models.AudioFeatures, models.SpecAugment, models.MaskedCrossentropy):
        assert keras.saving.get_registered_name(cls) == f"kdl>{cls.__name__}"


def test_translator_layers_keep_the_names_beam_search_looks_up():
    model = models.translator(20, 30, 8, encoder_layers=2, decoder_layers=1, width=8, heads=2,
                              intermediate=16)
    assert model.name == "transformer_translator" and model.output_shape == (None, None, 30)
    names = {layer.name for layer in model.layers}
    assert {"source_ids", "target_ids", "source_embedding", "source_dropout", "encoder_0", "encoder_1",
            "encoder_norm", "target_embedding", "target_dropout", "decoder_0", "decoder_norm",
            "logits"} <= names


@pytest.mark.parametrize("backbone, options", [
    ("cnn", {"filters": [8, 16], "dense": 16}),
    ("resnet", {"stages": 2, "blocks": 1, "width": 8}),
])
def test_backbones_build_and_train_a_step(backbone, options):
    model = models.image_classifier((12, 12, 1), num_classes=3, backbone=backbone,
                                    augment=["rotate", "translate"], seed=0, **options)
    assert model.input_shape == (None, 12, 12, 1) and model.output_shape == (None, 3)
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).integers(0, 256, (8, 12, 12, 1)).astype("uint8")
    loss = model.train_on_batch(x, np.arange(8) % 3)
    assert np.isfinite(loss)
    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_resnet_depth_follows_the_blocks_option():
    def conv_count(blocks):
        model = models.image_classifier((8, 8, 1), 2, backbone="resnet", stages=3, blocks=blocks, width=4)
        return sum(isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (3, 3)
                   for layer in model.layers)

    assert conv_count(3) + 1 == 20   # ResNet-20: 6 * 3 + 1 convolutions + the dense head
    assert conv_count(1) + 1 == 8


def test_augmentation_acts_only_in_training():
    model = models.image_classifier((8, 8, 1), 2, augment=["translate", "contrast"], seed=0)
    augmentation = model.get_layer("augmentation")
    x = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 1)).astype("float32") / 255

    def run(training):
        return keras.ops.convert_to_numpy(augmentation(x, training=training))

    np.testing.assert_array_equal(run(training=False), x)
    assert np.abs(run(training=True) - x).max() > 0.01


def test_unknown_model_and_option_and_augmentation():
    with pytest.raises(ConfigError, match="unknown model 'resnt'; did you mean 'resnet'.*cnn, resnet"):
        models.image_classifier((8, 8, 1), 2, backbone="resnt")
    with pytest.raises(ConfigError, match="model 'resnet' has no option 'depth'.*blocks=2"):
        models.image_classifier((8, 8, 1), 2, backbone="resnet", depth=20)
    with pytest.raises(ConfigError, match="unknown augmentation 'mixup'; known: flip, rotate"):
        models.image_classifier((8, 8, 1), 2, augment=["mixup"])


def test_text_pooling_ignores_padding_and_is_finite_for_empty_rows():
    from kdl.models.text.backbones import pool

    x = np.array([[[1.0, -5.0], [3.0, -1.0], [9.0, 9.0]],        # last position is padding
                  [[2.0, 2.0], [4.0, 4.0], [6.0, 6.0]]], "float32")   # all padding
    token_ids = np.array([[7, 8, 0], [0, 0, 0]], "int32")
    x, token_ids = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(token_ids)
    pooled = keras.ops.convert_to_numpy(pool(x, token_ids, "mean_max"))
    np.testing.assert_allclose(pooled, [[2.0, -3.0, 3.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    with pytest.raises(ConfigError, match="pooling must be one of mean, max, mean_max; got 'sum'"):
        pool(x, token_ids, "sum")


@pytest.mark.parametrize("sample_rate, samples", [(8000, 4000), (16000, 6001)])
def test_audio_features_are_keras_mel_spectrogram_without_an_fft(sample_rate, samples):
    """The DFT-as-convolution front-end (exportable to ONNX) gives MelSpectrogram's log-mel
    features, also for a clip length that is not a multiple of the hop, and stays float32 under
    mixed precision."""
    from kdl.models.audio.features import LOG_FLOOR, AudioFeatures

    waveforms = np.random.default_rng(0).normal(0, 0.3, (2, samples)).astype("float32")
    features = AudioFeatures(sample_rate, mel_bins=24, window_ms=30.0, hop_ms=12.0)
    mel = keras.layers.MelSpectrogram(
        fft_length=features.fft_length, sequence_length=features.window, sequence_stride=features.hop,
        sampling_rate=sample_rate, num_mel_bins=24, power_to_db=False, dtype="float32")
    expected = np.log(keras.ops.convert_to_numpy(mel(waveforms)).transpose(0, 2, 1) + LOG_FLOOR)
    expected = (expected - expected.mean(axis=(1, 2), keepdims=True)) / (
        expected.std(axis=(1, 2), keepdims=True) + 1e-5)
    got = keras.ops.convert_to_numpy(features(waveforms))
    assert got.shape == (2, samples // features.hop + 1, 24) == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        assert keras.ops.convert_to_numpy(AudioFeatures(sample_rate)(waveforms)).dtype == np.float32
    finally:
        keras.config.set_dtype_policy("float32")
