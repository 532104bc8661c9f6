"""The audio classification recipe: spoken commands (raw waveforms or WAV files) in, class
names and probabilities out.

>>> import kdl
>>> clf = kdl.recipes.audio_classifier("fsdd/recordings", data_root="../shared/data")  # doctest: +SKIP
>>> clf.fit()                          # 99.7-100% on FSDD's official test split  # doctest: +SKIP
>>> print(clf.evaluate())              # the shared classification report  # doctest: +SKIP
>>> clf.predict(["seven.wav", waveform]).labels     # WAV paths or 1-D arrays  # doctest: +SKIP
"""

import dataclasses
import typing

from kdl import models
from kdl.recipes.classifier import Classifier
from kdl.recipes.recipe import TrainConfig, new_recipe


@dataclasses.dataclass
class AudioDataConfig:
    source: str = "fsdd/recordings"   # FSDD folder, label sub-folders, "tfds:speech_commands", ...
    batch_size: int = 32
    validation_split: float = 0.1     # fraction of train held out to watch overfitting
    class_names: typing.Optional[list[str]] = None  # None: the dataset's own names
    limit: typing.Optional[int] = None              # at most this many examples per split
    sample_rate: int = 8000           # Hz: every clip is resampled to it (and predict's input too)
    max_seconds: float = 1.0          # clip length: shorter clips padded at the end, longer centre-cropped


@dataclasses.dataclass
class AudioModelConfig:
    name: str = "cnn"                 # a backbone in kdl.models ("audio_backbone"): "cnn"
    mel_bins: int = 40                # log-mel features, computed inside the model
    window_ms: float = 25.0
    hop_ms: float = 10.0
    time_masks: int = 2               # SpecAugment in training; 0 time and 0 freq masks turn it off
    time_width: int = 10              # frames
    freq_masks: int = 2
    freq_width: int = 6               # mel bins
    options: dict[str, typing.Any] = dataclasses.field(default_factory=dict)  # backbone keywords


@dataclasses.dataclass
class AudioClassifierConfig:
    task: str = "audio_classifier"
    seed: int = 0
    data: AudioDataConfig = dataclasses.field(default_factory=AudioDataConfig)
    model: AudioModelConfig = dataclasses.field(default_factory=AudioModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=30, learning_rate=3e-3, schedule="cosine", steps_per_execution=4))


def feature_options(model):
    """(AudioFeatures keywords, SpecAugment keywords or None) from a model config."""
    features = dict(mel_bins=model.mel_bins, window_ms=model.window_ms, hop_ms=model.hop_ms)
    augment = dict(time_masks=model.time_masks, time_width=model.time_width,
                   freq_masks=model.freq_masks, freq_width=model.freq_width)
    return features, (augment if model.time_masks or model.freq_masks else None)


class AudioClassifier(Classifier):
    """Waveforms in, class names and probabilities out. Build it with `kdl.recipes.audio_classifier`."""

    task = "audio_classifier"
    Config = AudioClassifierConfig

    def load_data(self):
        from kdl.data.audio import load_audio

        data = self.config.data
        dataset = load_audio(self.arrays if data.source == "arrays" else data.source,
                             data_root=self.data_root, sample_rate=data.sample_rate,
                             max_seconds=data.max_seconds, class_names=data.class_names,
                             validation_split=data.validation_split, limit=data.limit,
                             seed=self.config.seed)
        data.class_names = list(dataset.info.class_names)   # the resolved config names them
        return dataset

    def build_model(self):
        model, data = self.config.model, self.config.data
        features, augment = feature_options(model)
        return models.audio_classifier(self.data.info.num_samples, len(self.class_names),
                                       data.sample_rate, backbone=model.name, features=features,
                                       spec_augment=augment, seed=self.config.seed, **model.options)

    def export_sample(self):
        return waveform_export_sample(self.model)

    def export_description(self):
        return {**super().export_description(), **waveform_export_description(self.config.data)}

    def prepare_inputs(self, inputs):
        """Accepts WAV file paths and 1-D waveforms at data.sample_rate, alone or in a list, or
        an (N, samples) array; each is padded or centre-cropped to the model's clip length."""
        from kdl.data.audio import waveform_batch

        return waveform_batch(inputs, self.model.input_shape[1], self.config.data.sample_rate)


def audio_classifier(dataset="fsdd/recordings", model="cnn", *, data_root=None, **overrides):
    """A new audio classification recipe.

    dataset: an FSDD folder, a folder of label sub-folders of WAVs, "tfds:speech_commands",
        "tfds:spoken_digit", or `(waveforms, labels)` / `{"train": ..., "test": ...}` arrays
        (see kdl.data.audio.load_audio).
    model: "cnn" (see kdl.models.audio).
    overrides: any config field by name (epochs=3, batch_size=64, sample_rate=16000,
        max_seconds=1.0, mel_bins=64, time_masks=0, seed=1, ...); other names are the
        backbone's options (e.g. filters=[16, 32], dense=32).
    """
    return new_recipe(AudioClassifier, dataset, model, "audio_backbone", overrides, data_root)


def waveform_export_sample(model):
    """A batch of random waveforms (-1..1) to check an exported audio model on."""
    from kdl import export

    return export.sample_inputs(model, value_range=(-1, 1))


def waveform_export_description(data):
    """signature.json's words for a model that takes raw waveforms."""
    return {"sample_rate": data.sample_rate, "input_meaning": (
        "float32 mono waveforms (batch, samples), values -1..1 at sample_rate Hz, padded at the "
        "end or centre-cropped to the clip length; the model computes its own features")}
