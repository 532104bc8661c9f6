"""The speech recognizer: raw waveforms (B, samples) in, per-frame CTC log-probabilities out,
any "speech_encoder".

>>> model = speech_recognizer(16000, vocabulary_size=12, sample_rate=8000, width=32, blocks=1)
>>> model.output_shape                     # 201 mel frames, halved in time by the conv front-end
(None, 101, 13)
"""

import keras
from keras import layers

from kdl.models.audio.features import audio_inputs
from kdl.models.registry import check_options, get


def speech_recognizer(num_samples, vocabulary_size, sample_rate, encoder="transformer", features=None,
                      spec_augment=None, seed=None, **options):
    """Waveform -> log-mel features -> SpecAugment -> encoder -> CTC head: per output frame, log
    probabilities over the blank (id 0) and `vocabulary_size` characters (ids 1..)."""
    build = get("speech_encoder", encoder)
    check_options(build, options)
    waveforms, x = audio_inputs(num_samples, sample_rate, features, spec_augment, seed)  # (B, T, mel)
    x = build(x, **options)                                                  # (B, T', D)
    outputs = layers.Dense(vocabulary_size + 1, activation="log_softmax", dtype="float32",
                           name="log_probabilities")(x)                      # (B, T', vocabulary + 1)
    return keras.Model(waveforms, outputs, name=f"speech_recognizer_{encoder}")
