"""The speech recognition recipe: raw waveforms or WAV files in, text out, trained with CTC.

>>> import kdl
>>> asr = kdl.recipes.speech_recognizer("fsdd_digit_strings:fsdd/recordings",
...                                     data_root="../shared/data")            # doctest: +SKIP
>>> asr.fit()                                                                  # doctest: +SKIP
>>> print(asr.evaluate())            # WER, CER and example transcripts      # doctest: +SKIP
>>> asr.transcribe(["digits.wav"])                                            # doctest: +SKIP
['three one four']

The model emits, per output frame, log-probabilities over the CTC blank (id 0) and the
characters of the vocabulary (ids 1..), learned from the training transcripts (or given as
`data.characters`) and saved as `characters.json` in the run directory. Training uses
`keras.losses.CTC`; decoding `keras.ops.ctc_decode` (greedy, or beam search with
`model.decoder = "beam_search"`).
"""

import dataclasses
import json
import pathlib
import typing

import keras
import numpy as np
import tensorflow as tf

from kdl import evaluation, models
from kdl.errors import ConfigError, DataError
from kdl.recipes.audio_classifier import (AudioModelConfig, feature_options, waveform_export_description,
                                          waveform_export_sample)
from kdl.recipes.recipe import Recipe, TrainConfig, new_recipe

CHARACTERS_FILE = "characters.json"
DECODERS = ("greedy", "beam_search")


@dataclasses.dataclass
class SpeechDataConfig:
    source: str = "fsdd_digit_strings:fsdd/recordings"  # also an LJSpeech folder, "tfds:librispeech"
    batch_size: int = 32
    validation_split: float = 0.1     # fraction of train held out to watch overfitting
    limit: typing.Optional[int] = None              # at most this many utterances per split
    sample_rate: int = 8000           # Hz: every clip is resampled to it (and transcribe's input too)
    max_seconds: float = 3.0          # clip length: shorter clips padded at the end; longer is an error
    lowercase: bool = True            # lower-case every transcript
    characters: typing.Optional[str] = None         # the vocabulary; None: learned from train transcripts
    utterances: list[int] = dataclasses.field(default_factory=lambda: [2000, 300])  # digit strings: train, test
    max_digits: int = 5               # digit strings: 1 to max_digits digits per utterance


@dataclasses.dataclass
class SpeechModelConfig(AudioModelConfig):
    name: str = "bigru"               # a speech encoder in kdl.models: "bigru", "transformer"
    decoder: str = "greedy"           # "greedy" or "beam_search" (keras.ops.ctc_decode)
    beam_width: int = 16


@dataclasses.dataclass
class SpeechRecognizerConfig:
    task: str = "speech_recognizer"
    seed: int = 0
    data: SpeechDataConfig = dataclasses.field(default_factory=SpeechDataConfig)
    model: SpeechModelConfig = dataclasses.field(default_factory=SpeechModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=30, learning_rate=1e-3, schedule="cosine"))


class SpeechRecognizer(Recipe):
    """Waveforms in, transcripts out. Build it with `kdl.recipes.speech_recognizer`."""

    task = "speech_recognizer"
    Config = SpeechRecognizerConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self._characters = None

    def load_data(self):
        from kdl.data.audio import load_transcripts

        data = self.config.data
        if data.source == "arrays" and self.arrays is None:
            raise DataError("data.source is \"arrays\" but no arrays were given; pass them to "
                            "kdl.recipes.speech_recognizer((waveforms, transcripts))")
        return load_transcripts(self.arrays if data.source == "arrays" else data.source,
                                data_root=self.data_root, sample_rate=data.sample_rate,
                                max_seconds=data.max_seconds, lowercase=data.lowercase,
                                validation_split=data.validation_split, limit=data.limit,
                                seed=self.config.seed, utterances=tuple(data.utterances),
                                max_digits=data.max_digits)

    @property
    def characters(self):
        """The vocabulary (a string; character i has id i + 1): given, loaded, or learned from train."""
        if self._characters is None:
            given = self.config.data.characters
            texts = [text for text, _ in self.data.transcripts["train"]]
            self._characters = given if given else "".join(sorted(set("".join(texts))))
            self._check_transcripts()
        return self._characters

    def _check_transcripts(self):
        known = set(self._characters)
        for split, rows in self.data.transcripts.items():
            for text, where in rows:
                outside = sorted(set(text) - known)
                if outside:
                    raise DataError(f"{where}: transcript {text[:60]!r} has characters {outside} outside the "
                                    f"vocabulary {self._characters!r}; set data.characters to include them, "
                                    "or clean the transcript")
                if not text.strip():
                    raise DataError(f"{where}: the transcript is empty")

    def build_model(self):
        model, data = self.config.model, self.config.data
        features, augment = feature_options(model)
        return models.speech_recognizer(self.data.info.num_samples, len(self.characters),
                                        data.sample_rate, encoder=model.name, features=features,
                                        spec_augment=augment, seed=self.config.seed, **model.options)

    def compile_arguments(self):
        return {"loss": keras.losses.CTC()}

    def batches(self, split, shuffle=False):
        """(waveforms (B, samples) float32, character ids (B, L) int32, 0-padded) of one split;
        L is the longest train/validation transcript."""
        from kdl.data import batches

        lookup = keras.layers.StringLookup(vocabulary=list(self.characters), num_oov_indices=1)
        length = self._label_length()

        def encode(waveform, text):
            ids = tf.cast(lookup(tf.strings.unicode_split(text, "UTF-8")), tf.int32)   # (len,), 1..
            return waveform, tf.ensure_shape(tf.pad(ids, [[0, length - tf.shape(ids)[0]]]), [length])

        pairs = self.data.splits[split].map(encode, num_parallel_calls=tf.data.AUTOTUNE)
        return batches(pairs, self.config.data.batch_size, shuffle=shuffle, seed=self.config.seed)

    def _label_length(self):
        rows = [text for split in ("train", "validation") for text, _ in self.data.transcripts.get(split, [])]
        length = max(len(text) for text in rows)
        frames = self.model.output_shape[1] if self.model is not None else None
        needed = max(len(text) + sum(a == b for a, b in zip(text, text[1:])) for text in rows)
        if frames is not None and needed > frames:
            raise DataError(f"the longest transcript needs {needed} CTC frames but the model outputs "
                            f"{frames} per clip; lower model.hop_ms or raise data.max_seconds")
        return length

    def score(self, split):
        waveforms = self.data.splits[split].map(lambda waveform, text: waveform)
        log_probs = self.model.predict(waveforms.batch(self.config.data.batch_size), verbose=0)
        hypotheses = self.decode(log_probs)
        references = [text for text, _ in self.data.transcripts[split]]
        report = evaluation.speech_recognition(references, hypotheses)
        report.meta.update(decoder=self.config.model.decoder, characters=self.characters)
        return report

    def decode(self, log_probs, decoder=None):
        """Transcripts from the model's output (N, frames, vocabulary + 1) with keras.ops.ctc_decode."""
        model = self.config.model
        decoder = decoder or model.decoder
        if decoder not in DECODERS:
            raise ConfigError(f"model.decoder must be one of {', '.join(DECODERS)}; got {decoder!r}")
        texts = []
        for start in range(0, len(log_probs), 256):
            chunk = log_probs[start:start + 256]
            lengths = np.full((len(chunk),), chunk.shape[1], np.int32)
            decoded, _ = keras.ops.ctc_decode(chunk, lengths, strategy=decoder, beam_width=model.beam_width,
                                              mask_index=0)
            for ids in keras.ops.convert_to_numpy(decoded)[0]:
                texts.append("".join(self.characters[i - 1] for i in ids if 0 < i <= len(self.characters)))
        return texts

    def transcribe(self, inputs, decoder=None):
        """Transcripts of WAV file paths or 1-D waveforms at data.sample_rate (alone or in a list).
        A clip longer than data.max_seconds is a DataError naming it."""
        from kdl.data.audio import waveform_batch

        self._require_model("transcribe")
        x = waveform_batch(inputs, self.model.input_shape[1], self.config.data.sample_rate, crop=False)
        log_probs = self.model.predict(x, batch_size=self.config.data.batch_size, verbose=0)
        return self.decode(log_probs, decoder)

    def export_sample(self):
        return waveform_export_sample(self.model)

    def export_description(self):
        return {**super().export_description(), **waveform_export_description(self.config.data),
                "output_meaning": ("per-frame log-probabilities: id 0 the CTC blank, id i the "
                                   "i-th character of characters.json")}

    def save_assets(self, path):
        text = json.dumps(list(self.characters), ensure_ascii=False)
        (pathlib.Path(path) / CHARACTERS_FILE).write_text(text + "\n", encoding="utf-8")

    def load_assets(self, path):
        file = pathlib.Path(path) / CHARACTERS_FILE
        if not file.is_file():
            raise ConfigError(f"run directory {str(path)!r} has no {CHARACTERS_FILE}; a speech run "
                              "needs the character vocabulary it was trained with")
        self._characters = "".join(json.loads(file.read_text(encoding="utf-8")))


def speech_recognizer(dataset="fsdd_digit_strings:fsdd/recordings", model="bigru", *,
                      data_root=None, **overrides):
    """A new speech recognition recipe.

    dataset: "fsdd_digit_strings:FOLDER", an LJSpeech folder, "tfds:librispeech", or
        `(waveforms, transcripts)` / `{"train": ..., "test": ...}` (see kdl.data.audio.load_transcripts).
    model: "bigru" or "transformer" (see kdl.models.audio).
    overrides: any config field by name (epochs=3, max_seconds=4.0, utterances=[500, 100],
        characters="abc ", decoder="beam_search", time_masks=0, ...); other names are the
        encoder's options (e.g. width=96, blocks=2).
    """
    return new_recipe(SpeechRecognizer, dataset, model, "speech_encoder", overrides, data_root)
