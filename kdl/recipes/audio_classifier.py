"""The audio classification recipe: spoken commands (raw waveforms or WAV files) in, class
names and probabilities out.

>>> import kdl
>>> clf = kdl.recipes.audio_classifier("fsdd/recordings", data_root="../shared/data")  # doctest: +SKIP
>>> clf.fit()                          # 99.7-100% on FSDD's official test split  # doctest: +SKIP
>>> print(clf.evaluate())              # the shared classification report  # doctest: +SKIP
>>> clf.predict(["seven.wav", waveform]).labels     # WAV paths or 1-D arrays  # doctest: +SKIP
"""

import dataclasses

from kdl import models
from kdl.config import CardConfig, ClassificationDataConfig, TrackConfig, TrainConfig
from kdl.data import load_audio, waveform_batch
from kdl.recipes.audio import AudioModelConfig, WaveformDataConfig, WaveformTask
from kdl.recipes.classifier import Classifier


@dataclasses.dataclass
class AudioDataConfig(WaveformDataConfig, ClassificationDataConfig):
    source: str = "fsdd/recordings"   # FSDD folder, label sub-folders, "tfds:speech_commands", ...


@dataclasses.dataclass
class AudioClassifierModelConfig(AudioModelConfig):
    name: str = "cnn"                 # a backbone in kdl.models ("audio_backbone"): "cnn"


@dataclasses.dataclass
class AudioClassifierConfig:
    task: str = "audio_classifier"
    seed: int = 0
    data: AudioDataConfig = dataclasses.field(default_factory=AudioDataConfig)
    model: AudioClassifierModelConfig = dataclasses.field(default_factory=AudioClassifierModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=30, learning_rate=3e-3, schedule="cosine", steps_per_execution=4))
    track: TrackConfig = dataclasses.field(default_factory=TrackConfig)
    card: CardConfig = dataclasses.field(default_factory=CardConfig)


class AudioClassifier(WaveformTask, Classifier):
    """Waveforms in, class names and probabilities out. Build it with `kdl.recipes.audio_classifier`."""

    Config = AudioClassifierConfig
    modality = "audio"
    model_kind = "audio_backbone"
    loader = staticmethod(load_audio)

    def build_model(self):
        model, data = self.config.model, self.config.data
        features, augment = self.feature_options()
        return models.audio_classifier(self.data.info.num_samples, len(self.class_names),
                                       data.sample_rate, backbone=model.name, features=features,
                                       spec_augment=augment, seed=self.config.seed, **model.options)

    def build_from_preset(self, preset):
        from kdl.models import presets

        return presets.audio_classifier(preset, self.data.info.num_samples, len(self.class_names),
                                        self.config.data.sample_rate)

    def prepare_inputs(self, inputs):
        """Accepts WAV file paths and 1-D waveforms at data.sample_rate, alone or in a list, or
        an (N, samples) array; each is padded or centre-cropped to the model's clip length."""
        return waveform_batch(inputs, self.model.input_shape[1], self.config.data.sample_rate)

    def card_notes(self):
        data = self.config.data
        return [f"Input: mono audio at {data.sample_rate:,} Hz, values -1..1 (WAV files are mixed down and "
                f"resampled to it), one clip of {data.max_seconds:g} s per prediction: a shorter clip is "
                "padded at the end, a longer one centre-cropped, so what it is to hear must fall within it.",
                *super().card_notes()]


def audio_classifier(dataset="fsdd/recordings", model="cnn", *, data_root=None, **overrides):
    """A new audio classification recipe.

    dataset: an FSDD folder, a folder of label sub-folders of WAVs, "tfds:speech_commands",
        "tfds:spoken_digit", or `(waveforms, labels)` / `{"train": ..., "test": ...}` arrays
        (see kdl.data.load_audio).
    model: "cnn" (see kdl.models).
    overrides: any config field by name (epochs=3, batch_size=64, sample_rate=16000,
        max_seconds=1.0, mel_bins=64, time_masks=0, seed=1, ...); other names are the
        backbone's options (e.g. filters=[16, 32], dense=32).
    """
    return AudioClassifier.new(dataset, model, data_root, overrides)
