"""Audio features inside the model, so that a saved model takes raw audio on every backend.

`AudioFeatures`: (B, samples) waveform -> (B, frames, mel_bins) log-mel features (the spectrogram
keras.layers.MelSpectrogram computes, but exportable to ONNX), standardised per clip.
`SpecAugment`: time and frequency masks, active in training only. `audio_inputs` is the input
part every audio task model shares: waveform Input -> AudioFeatures -> SpecAugment.

>>> import numpy as np
>>> features = AudioFeatures(sample_rate=8000, mel_bins=40)
>>> tuple(features(np.zeros((2, 8000), "float32")).shape)     # 8000 // 80 + 1 frames
(2, 101, 40)
>>> waveforms, x = audio_inputs(8000, sample_rate=8000, spec_augment={"time_masks": 1})
>>> x.shape
(None, 101, 40)
"""

import keras
import numpy as np
import scipy.signal
from keras import layers, ops

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
        self.sample_rate, self.mel_bins = sample_rate, mel_bins
        self.window_ms, self.hop_ms = window_ms, hop_ms
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
        masks = ((1, self.time_masks, self.time_width), (2, self.freq_masks, self.freq_width))
        for axis, count, width in masks:
            for _ in range(count):
                keep = keep * self._mask(x, axis, width)
        return x * keep                                                           # (B, T, F)

    def _mask(self, x, axis, width):
        """(B, T, 1) or (B, 1, F): 0 on one random span of up to `width` steps along `axis`, else 1."""
        batch, size = ops.shape(x)[0], ops.shape(x)[axis]
        widths = keras.random.randint((batch, 1), 0, width + 1, seed=self.seed_generator)  # (B, 1)
        starts = ops.cast(keras.random.uniform((batch, 1), seed=self.seed_generator)
                          * ops.cast(ops.maximum(size - widths, 1), "float32"), "int32")  # (B, 1)
        positions = ops.arange(size)[None, :]                                     # (1, size)
        masked = ops.logical_and(positions >= starts, positions < starts + widths)  # (B, size)
        keep = 1.0 - ops.cast(masked, x.dtype)                                    # (B, size)
        return keep[:, :, None] if axis == 1 else keep[:, None, :]               # (B, T, 1) or (B, 1, F)

    def get_config(self):
        return {**super().get_config(), "freq_masks": self.freq_masks, "freq_width": self.freq_width,
                "time_masks": self.time_masks, "time_width": self.time_width, "seed": self.seed}


def audio_inputs(num_samples, sample_rate, features=None, spec_augment=None, seed=None):
    """(the waveforms Input (B, num_samples), its log-mel features (B, T, mel_bins)), through
    SpecAugment (training only) if `spec_augment` (its keywords) is given.

    features: AudioFeatures keywords (mel_bins, window_ms, hop_ms)."""
    waveforms = keras.Input(shape=(num_samples,), name="waveforms")                # (B, S) float32
    x = AudioFeatures(sample_rate, **(features or {}), name="features")(waveforms)   # (B, T, mel)
    if spec_augment:
        x = SpecAugment(**spec_augment, seed=seed, name="spec_augment")(x)   # (B, T, mel), train only
    return waveforms, x
