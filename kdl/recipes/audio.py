"""What the two audio recipes (audio_classifier, speech_recognizer) share: the waveform data
fields, the feature and SpecAugment settings of the model, and how an exported audio model
is checked and described. Both take raw waveforms; the model computes its own features.

>>> WaveformDataConfig().sample_rate, AudioModelConfig().mel_bins
(8000, 40)
"""

import dataclasses
import typing

from kdl.config import DataConfig, ModelConfig, setting
from kdl.data.augment import AugmentConfig, Augmenter


@dataclasses.dataclass
class WaveformDataConfig(DataConfig):
    sample_rate: int = setting(8000, at_least=1)   # Hz: every clip is resampled to it (predict's input too)
    max_seconds: float = setting(1.0, above=0)     # clip length: shorter clips are padded at the end
    split: str = "default"            # "default": the source's test split; "speaker": held-out speakers
    test_speakers: list[str] = setting(factory=list)   # split = "speaker": whose clips are the test split
    speakers: typing.Optional[str] = None   # split = "speaker": a file of "NAME SPEAKER" lines (not FSDD)
    augment: AugmentConfig = setting(factory=AugmentConfig, pipeline=True)   # training batches only


@dataclasses.dataclass
class AudioModelConfig(ModelConfig):
    mel_bins: int = setting(40, at_least=1)    # log-mel features, computed inside the model
    window_ms: float = setting(25.0, above=0)
    hop_ms: float = setting(10.0, above=0)
    time_masks: int = setting(2, at_least=0)   # SpecAugment in training; 0 time and 0 freq masks: off
    time_width: int = setting(10, at_least=0)  # frames
    freq_masks: int = setting(2, at_least=0)
    freq_width: int = setting(6, at_least=0)   # mel bins


class WaveformTask:
    """Mixed into the audio recipes: model front-end options, training-batch augmentation and the
    export description."""

    input_range = (-1, 1)     # waveform samples; predict warns outside it
    input_files = (".wav",)   # what `kdl predict RUN FOLDER` reads from a folder

    def input_mismatch(self):
        data = self.config.data
        samples, width = int(round(data.max_seconds * data.sample_rate)), self.model.input_shape[1]
        if width is not None and samples != width:
            return (f"its recipe.toml makes clips of {samples} samples (data.max_seconds "
                    f"{data.max_seconds} x data.sample_rate {data.sample_rate}) but model.keras "
                    f"takes {width}")
        return None

    def explain_point(self):
        """The log-mel features (B, T, mel) the model computes (its layer "features")."""
        names = [layer.name for layer in self.model.layers]
        return ("features", "log-mel features") if "features" in names else None

    def augmenter(self, split, shuffle):
        """The Augmenter of `data.augment` for the batches fit trains on (the shuffled train split);
        None for every other split, and when no augmentation is on."""
        augment = self.config.data.augment
        if not (shuffle and split == "train" and augment.active):
            return None
        return Augmenter(augment, self.config.data.sample_rate, self.config.seed)

    def batches(self, split, shuffle=False):
        from kdl.data import batches

        return batches(self.data.splits[split], self.config.data.batch_size, shuffle=shuffle,
                       seed=self.config.seed, augment=self.augmenter(split, shuffle))

    def feature_options(self):
        """(AudioFeatures keywords, SpecAugment keywords or None) from the model config."""
        model = self.config.model
        features = dict(mel_bins=model.mel_bins, window_ms=model.window_ms, hop_ms=model.hop_ms)
        augment = dict(time_masks=model.time_masks, time_width=model.time_width,
                       freq_masks=model.freq_masks, freq_width=model.freq_width)
        return features, (augment if model.time_masks or model.freq_masks else None)

    def export_sample(self):
        """A batch of random waveforms (-1..1) to check an exported audio model on."""
        from kdl import export

        return export.sample_inputs(self.model, value_range=(-1, 1))

    def export_description(self):
        return {**super().export_description(), "sample_rate": self.config.data.sample_rate,
                "input_meaning": (
                    "float32 mono waveforms (batch, samples), values -1..1 at sample_rate Hz, padded at "
                    "the end or centre-cropped to the clip length; the model computes its own features")}
