"""kdl.models: every image backbone builds, trains a step, and rejects unknown names/options."""

import keras
import numpy as np
import pytest

from kdl import models
from kdl.errors import ConfigError


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
    from kdl.models.text_backbones import pool

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
    from kdl.models.audio import LOG_FLOOR, AudioFeatures

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
