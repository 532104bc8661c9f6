"""The audio classifier: raw waveforms (B, samples) in, class probabilities out, any "audio_backbone".

The model owns its features (`kdl.models.audio.features`), so a saved model takes raw audio.

>>> model = audio_classifier(8000, num_classes=10, sample_rate=8000, filters=[8])
>>> model.input_shape, model.output_shape
((None, 8000), (None, 10))
"""

import keras
from keras import layers

from kdl.models.audio.features import audio_inputs
from kdl.models.registry import check_options, get


def audio_classifier(num_samples, num_classes, sample_rate, backbone="cnn", features=None,
                     spec_augment=None, seed=None, **options):
    """Waveform -> log-mel features -> SpecAugment (training only) -> backbone -> softmax head.

    features: AudioFeatures keywords (mel_bins, window_ms, hop_ms); spec_augment: SpecAugment
    keywords, or None for none."""
    build = get("audio_backbone", backbone)
    check_options(build, options)
    waveforms, x = audio_inputs(num_samples, sample_rate, features, spec_augment, seed)  # (B, T, mel)
    x = build(x, **options)                                                  # (B, D)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                           name="probabilities")(x)                          # (B, num_classes)
    return keras.Model(waveforms, outputs, name=f"audio_classifier_{backbone}")
