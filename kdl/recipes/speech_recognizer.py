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
import functools
import json
import pathlib
import typing

import keras
import numpy as np

from kdl import models
from kdl.config import TrainConfig, setting
from kdl.data import batches, ctc_labels, load_transcripts, waveform_batch
from kdl.errors import ConfigError, DataError
from kdl.recipes.audio import AudioModelConfig, WaveformDataConfig, WaveformTask
from kdl.recipes.recipe import Recipe
from kdl.recipes.results import Transcription

CHARACTERS_FILE = "characters.json"
DECODERS = ("greedy", "beam_search")


@dataclasses.dataclass
class SpeechDataConfig(WaveformDataConfig):
    source: str = "fsdd_digit_strings:fsdd/recordings"  # also an LJSpeech folder, "tfds:librispeech"
    max_seconds: float = setting(3.0, above=0)   # clip length: shorter clips padded; longer is an error
    lowercase: bool = True            # lower-case every transcript
    characters: typing.Optional[str] = setting(None, pipeline=True)  # the vocabulary; None: learned
    utterances: list[int] = setting(factory=lambda: [2000, 300])   # digit strings: train, test
    max_digits: int = setting(5, at_least=1)   # digit strings: 1 to max_digits digits per utterance


@dataclasses.dataclass
class SpeechModelConfig(AudioModelConfig):
    name: str = "bigru"               # a speech encoder in kdl.models: "bigru", "transformer"
    decoder: str = "greedy"           # "greedy" or "beam_search" (keras.ops.ctc_decode)
    beam_width: int = setting(16, at_least=1)


@dataclasses.dataclass
class SpeechRecognizerConfig:
    task: str = "speech_recognizer"
    seed: int = 0
    data: SpeechDataConfig = dataclasses.field(default_factory=SpeechDataConfig)
    model: SpeechModelConfig = dataclasses.field(default_factory=SpeechModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=30, learning_rate=1e-3, schedule="cosine"))


class SpeechRecognizer(WaveformTask, Recipe):
    """Waveforms in, transcripts out. Build it with `kdl.recipes.speech_recognizer`."""

    Config = SpeechRecognizerConfig
    model_kind = "speech_encoder"
    loader = staticmethod(load_transcripts)
    Result = Transcription

    @functools.cached_property
    def characters(self):
        """The vocabulary (a string; character i has id i + 1): given, loaded, or learned from train."""
        texts = [text for text, _ in self.data.transcripts["train"]]
        characters = self.config.data.characters or "".join(sorted(set("".join(texts))))
        self._check_transcripts(characters)
        return characters

    def _check_transcripts(self, characters):
        known = set(characters)
        for split, rows in self.data.transcripts.items():
            for text, where in rows:
                outside = sorted(set(text) - known)
                if outside:
                    raise DataError(f"{where}: transcript {text[:60]!r} has characters {outside} outside the "
                                    f"vocabulary {characters!r}; set data.characters to include them, "
                                    "or clean the transcript")
                if not text.strip():
                    raise DataError(f"{where}: the transcript is empty")

    def build_model(self):
        model, data = self.config.model, self.config.data
        features, augment = self.feature_options()
        return models.speech_recognizer(self.data.info.num_samples, len(self.characters),
                                        data.sample_rate, encoder=model.name, features=features,
                                        spec_augment=augment, seed=self.config.seed, **model.options)

    def output_width(self):
        return len(self.characters) + 1       # id 0 is the CTC blank

    def compile_arguments(self):
        return {"loss": keras.losses.CTC()}

    def batches(self, split, shuffle=False):
        """(waveforms (B, samples) float32, character ids (B, L) int32, 0-padded) of one split;
        L is the longest train/validation transcript."""
        pairs = ctc_labels(self.data.splits[split], self.characters, self._label_length())
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

    def predict_split(self, split):
        waveforms = self.data.splits[split].map(lambda waveform, text: waveform)
        result = self.predict_inputs(waveforms.batch(self.config.data.batch_size))
        return result, [text for text, _ in self.data.transcripts[split]]

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

    def prepare_inputs(self, inputs):
        """Accepts WAV file paths or 1-D waveforms at data.sample_rate (alone or in a list), or an
        (N, samples) array. A clip longer than data.max_seconds is a DataError naming it."""
        return waveform_batch(inputs, self.model.input_shape[1], self.config.data.sample_rate, crop=False)

    def predict_inputs(self, x, decoder=None):
        """Transcripts of a waveform batch; `decoder`: "greedy" or "beam_search" (default: model.decoder)."""
        log_probs = self.model.predict(x, batch_size=self.config.data.batch_size, verbose=0)
        decoder = decoder or self.config.model.decoder
        return Transcription(self.decode(log_probs, decoder), log_probs, decoder, self.characters)

    def transcribe(self, inputs, decoder=None):
        """`predict(inputs, decoder=...).transcripts`: a list of strings."""
        return self.predict(inputs, decoder=decoder).transcripts

    def export_description(self):
        return {**super().export_description(), "output_meaning": (
            "per-frame log-probabilities: id 0 the CTC blank, id i the i-th character of characters.json")}

    def save_assets(self, path):
        text = json.dumps(list(self.characters), ensure_ascii=False)
        (pathlib.Path(path) / CHARACTERS_FILE).write_text(text + "\n", encoding="utf-8")

    def load_assets(self, path):
        file = pathlib.Path(path) / CHARACTERS_FILE
        if not file.is_file():
            raise ConfigError(f"run directory {str(path)!r} has no {CHARACTERS_FILE}; a speech run "
                              "needs the character vocabulary it was trained with")
        self.characters = "".join(json.loads(file.read_text(encoding="utf-8")))


def speech_recognizer(dataset="fsdd_digit_strings:fsdd/recordings", model="bigru", *,
                      data_root=None, **overrides):
    """A new speech recognition recipe.

    dataset: "fsdd_digit_strings:FOLDER", an LJSpeech folder, "tfds:librispeech", or
        `(waveforms, transcripts)` / `{"train": ..., "test": ...}` (see kdl.data.load_transcripts).
    model: "bigru" or "transformer" (see kdl.models).
    overrides: any config field by name (epochs=3, max_seconds=4.0, utterances=[500, 100],
        characters="abc ", decoder="beam_search", time_masks=0, ...); other names are the
        encoder's options (e.g. width=96, blocks=2).
    """
    return SpeechRecognizer.new(dataset, model, data_root, overrides)
