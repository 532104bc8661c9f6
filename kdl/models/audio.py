"""Speech models: raw waveforms (B, samples) float32 in; class probabilities or CTC log-probabilities out.

The model owns its features, so a saved model takes raw audio on every backend:
`AudioFeatures` (a log-mel spectrogram, the one keras.layers.MelSpectrogram computes but exportable
to ONNX, standardised per clip) and `SpecAugment` (time and frequency masks, active in training only). Backbones are looked up
by name: kind "audio_backbone" (classification: "cnn") and "speech_encoder" (recognition:
"transformer", "bigru"); their keywords are the options a recipe may set (`[model.options]`).

>>> model = audio_classifier(8000, num_classes=10, sample_rate=8000, filters=[8])
>>> model.input_shape, model.output_shape
((None, 8000), (None, 10))
>>> model = speech_recognizer(16000, vocabulary_size=12, sample_rate=8000, width=32, blocks=1)
>>> model.output_shape                     # 201 mel frames, halved in time by the conv front-end
(None, 101, 13)
"""

import keras
import keras_hub
import numpy as np
import scipy.signal
from keras import layers, ops

from kdl.models.registry import check_options, get, register

LOG_FLOOR = 1e-6    # added to mel power before the log: silence (zeros) stays finite


@keras.saving.register_keras_serializable(package="kdl")
class AudioFeatures(layers.Layer):
    """(B, samples) waveform -> (B, frames, mel_bins) log-mel features with zero mean and unit
    variance per clip. frames = samples // hop + 1.

    The same spectrogram as keras.layers.MelSpectrogram (Hann window, centred frames with reflect
    padding, power, Keras' mel filters), computed as a strided convolution with fixed DFT kernels
    instead of an FFT, so that every ONNX converter can export it. No dB scaling: its top_db floor
    is taken over the whole batch (a clip's features would depend on the other clips in its batch).
    Always computed in float32, also under mixed precision."""

    def __init__(self, sample_rate=8000, mel_bins=40, window_ms=25.0, hop_ms=10.0, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.sample_rate, self.mel_bins, self.window_ms, self.hop_ms = sample_rate, mel_bins, window_ms, hop_ms
        self.window = int(round(sample_rate * window_ms / 1000))
        self.hop = int(round(sample_rate * hop_ms / 1000))
        self.fft_length = 1 << (self.window - 1).bit_length()
        self.dft_kernel, self.mel_matrix = _spectrogram_constants(
            self.window, self.fft_length, sample_rate, mel_bins)

    def call(self, waveforms):
        half = self.fft_length // 2
        x = ops.pad(ops.cast(waveforms, "float32"), ((0, 0), (half, half)), mode="reflect")  # (B, S + fft)
        spectrum = ops.conv(x[:, :, None], ops.convert_to_tensor(self.dft_kernel),
                            strides=self.hop)                             # (B, frames, 2 * bins)
        real, imaginary = ops.split(spectrum, 2, axis=-1)                 # (B, frames, bins) each
        power = ops.square(real) + ops.square(imaginary)                  # (B, frames, bins)
        mel = ops.matmul(power, ops.convert_to_tensor(self.mel_matrix))   # (B, frames, mel_bins)
        x = ops.log(mel + LOG_FLOOR)                                      # (B, frames, mel_bins)
        mean = ops.mean(x, axis=(1, 2), keepdims=True)                    # (B, 1, 1)
        std = ops.std(x, axis=(1, 2), keepdims=True)                      # (B, 1, 1)
        return (x - mean) / (std + 1e-5)                                  # (B, frames, mel_bins)

    def compute_output_shape(self, input_shape):
        frames = None if input_shape[1] is None else input_shape[1] // self.hop + 1
        return (input_shape[0], frames, self.mel_bins)

    def get_config(self):
        return {**super().get_config(), "sample_rate": self.sample_rate, "mel_bins": self.mel_bins,
                "window_ms": self.window_ms, "hop_ms": self.hop_ms}


def _spectrogram_constants(window, fft_length, sample_rate, mel_bins):
    """The fixed kernels of AudioFeatures: ((fft_length, 1, 2 * bins) DFT kernel whose first half
    gives the real and second half the imaginary part of a Hann-windowed frame's spectrum,
    (bins, mel_bins) mel filters), bins = fft_length // 2 + 1, as float32 numpy arrays."""
    left = (fft_length - window) // 2                       # the window sits centred in the frame
    hann = np.zeros(fft_length)
    hann[left:left + window] = scipy.signal.get_window("hann", window)
    angles = 2 * np.pi * np.outer(np.arange(fft_length), np.arange(fft_length // 2 + 1)) / fft_length
    kernel = np.concatenate([np.cos(angles), -np.sin(angles)], axis=1) * hann[:, None]
    mel = layers.MelSpectrogram(fft_length=fft_length, sampling_rate=sample_rate, num_mel_bins=mel_bins)
    matrix = mel.linear_to_mel_weight_matrix(num_mel_bins=mel_bins, num_spectrogram_bins=fft_length // 2 + 1,
                                             sampling_rate=sample_rate, lower_edge_hertz=mel.min_freq,
                                             upper_edge_hertz=mel.max_freq)
    return kernel[:, None, :].astype("float32"), np.asarray(ops.convert_to_numpy(matrix), "float32")


@keras.saving.register_keras_serializable(package="kdl")
class SpecAugment(layers.Layer):
    """SpecAugment (Park et al. 2019) without time warping: in training, zero `freq_masks` bands of
    up to `freq_width` mel bins and `time_masks` spans of up to `time_width` frames, drawn per clip.
    An identity at inference. Features are standardised first, so zero is their mean."""

    def __init__(self, freq_masks=2, freq_width=8, time_masks=2, time_width=10, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training:
            return x
        keep = ops.ones_like(x)                                                   # (B, T, F)
        for axis, count, width in ((1, self.time_masks, self.time_width), (2, self.freq_masks, self.freq_width)):
            for _ in range(count):
                keep = keep * self._mask(x, axis, width)
        return x * keep

    def _mask(self, x, axis, width):
        """(B, T, 1) or (B, 1, F): 0 on one random span of up to `width` steps along `axis`, else 1."""
        batch, size = ops.shape(x)[0], ops.shape(x)[axis]
        widths = keras.random.randint((batch, 1), 0, width + 1, seed=self.seed_generator)  # (B, 1)
        starts = ops.cast(keras.random.uniform((batch, 1), seed=self.seed_generator)
                          * ops.cast(ops.maximum(size - widths, 1), "float32"), "int32")  # (B, 1)
        positions = ops.arange(size)[None, :]                                     # (1, size)
        masked = ops.logical_and(positions >= starts, positions < starts + widths)  # (B, size)
        keep = 1.0 - ops.cast(masked, x.dtype)
        return keep[:, :, None] if axis == 1 else keep[:, None, :]

    def get_config(self):
        return {**super().get_config(), "freq_masks": self.freq_masks, "freq_width": self.freq_width,
                "time_masks": self.time_masks, "time_width": self.time_width, "seed": self.seed}


# --- classification backbones: (B, T, F) features -> (B, D) ----------------------------------


@register("audio_backbone", "cnn")
def cnn(features, filters=(16, 32, 64), dense=64, dropout=0.3):
    """Per entry of `filters`: a 3x3 conv, batch norm, ReLU and a 2x2 max-pool; then the mean and
    the maximum over time of each (frequency, channel) feature; a dense layer."""
    x = layers.Reshape((*features.shape[1:], 1))(features)                 # (B, T, F, 1)
    for width in filters:
        x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)      # (B, T, F, width)
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
        x = layers.MaxPooling2D(padding="same")(x)                          # (B, T/2, F/2, width)
    x = layers.Reshape((x.shape[1], x.shape[2] * x.shape[3]))(x)            # (B, T', F'*width)
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x),
                              layers.GlobalMaxPooling1D()(x)])              # (B, 2*F'*width)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(dense, activation="relu")(x)                        # (B, dense)


# --- speech encoders: (B, T, F) features -> (B, T/2, D) -------------------------------------------


def conv_frontend(features, channels=32, width=144):
    """Two 3x3 convolutions (the first strided 2 in time and frequency, the second 2 in frequency),
    then a projection to `width`: (B, T, F) -> (B, ceil(T/2), width)."""
    x = layers.Reshape((*features.shape[1:], 1))(features)                           # (B, T, F, 1)
    x = layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu")(x)   # (B, T/2, F/2, C)
    x = layers.Conv2D(channels, 3, strides=(1, 2), padding="same", activation="relu")(x)  # (B, T/2, F/4, C)
    x = layers.Reshape((x.shape[1], x.shape[2] * x.shape[3]))(x)                     # (B, T/2, F/4*C)
    return layers.Dense(width)(x)                                                     # (B, T/2, width)


@register("speech_encoder", "transformer")
def transformer(features, width=144, blocks=3, heads=4, intermediate=288, channels=32, dropout=0.1):
    """Conv front-end, sinusoidal positions, `blocks` Transformer encoder blocks (pre-norm)."""
    x = conv_frontend(features, channels, width)                                      # (B, T', width)
    x = x + keras_hub.layers.SinePositionEncoding()(x)                                # (B, T', width)
    x = layers.Dropout(dropout)(x)
    for _ in range(blocks):
        x = keras_hub.layers.TransformerEncoder(intermediate, heads, dropout=dropout,
                                                normalize_first=True)(x)              # (B, T', width)
    return layers.LayerNormalization()(x)


@register("speech_encoder", "bigru")
def bigru(features, width=128, blocks=2, channels=32, dropout=0.1):
    """Conv front-end, then `blocks` bidirectional GRU layers of `width` units each way."""
    x = conv_frontend(features, channels, width)                                      # (B, T', width)
    for _ in range(blocks):
        x = layers.Bidirectional(layers.GRU(width, return_sequences=True))(x)         # (B, T', 2*width)
        x = layers.Dropout(dropout)(x)
    return x


# --- the task models ---------------------------------------------------------------------------


def _front(num_samples, sample_rate, features, spec_augment, seed):
    waveforms = keras.Input(shape=(num_samples,), name="waveforms")         # (B, S) float32
    x = AudioFeatures(sample_rate, **(features or {}), name="features")(waveforms)   # (B, T, mel)
    if spec_augment:
        x = SpecAugment(**spec_augment, seed=seed, name="spec_augment")(x)   # (B, T, mel), train only
    return waveforms, x


def audio_classifier(num_samples, num_classes, sample_rate, backbone="cnn", features=None,
                     spec_augment=None, seed=None, **options):
    """Waveform -> log-mel features -> SpecAugment (training only) -> backbone -> softmax head.

    features: AudioFeatures keywords (mel_bins, window_ms, hop_ms); spec_augment: SpecAugment
    keywords, or None for none."""
    build = get("audio_backbone", backbone)
    check_options(build, options)
    waveforms, x = _front(num_samples, sample_rate, features, spec_augment, seed)
    x = build(x, **options)                                                  # (B, D)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                           name="probabilities")(x)                          # (B, num_classes)
    return keras.Model(waveforms, outputs, name=f"audio_classifier_{backbone}")


def speech_recognizer(num_samples, vocabulary_size, sample_rate, encoder="transformer", features=None,
                      spec_augment=None, seed=None, **options):
    """Waveform -> log-mel features -> SpecAugment -> encoder -> CTC head: per output frame, log
    probabilities over the blank (id 0) and `vocabulary_size` characters (ids 1..)."""
    build = get("speech_encoder", encoder)
    check_options(build, options)
    waveforms, x = _front(num_samples, sample_rate, features, spec_augment, seed)
    x = build(x, **options)                                                  # (B, T', D)
    outputs = layers.Dense(vocabulary_size + 1, activation="log_softmax", dtype="float32",
                           name="log_probabilities")(x)                      # (B, T', vocabulary + 1)
    return keras.Model(waveforms, outputs, name=f"speech_recognizer_{encoder}")
