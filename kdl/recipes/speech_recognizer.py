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
`data.characters`) and saved as `characters.json` in the run directory, with the training
transcripts' words (`words.txt`).
Training uses `keras.losses.CTC`; decoding `keras.ops.ctc_decode` (greedy, or beam search with
`model.decoder = "beam_search"`), or, with `model.decoder = "lexicon"`, a beam search that emits
only words of a lexicon (`kdl.recipes.lexicon`: the training words, `model.words`, a word list
file, or the words of `model.lm`, an ARPA n-gram model that also ranks the word sequences).
"""

import dataclasses
import functools
import json
import pathlib
import typing

import keras
import numpy as np

from kdl import models
from kdl.config import CardConfig, TrackConfig, TrainConfig, setting
from kdl.data import batches, ctc_labels, load_transcripts, waveform_batch
from kdl.data.io import read_text, resolve_path
from kdl.errors import ConfigError, DataError
from kdl.recipes import lexicon
from kdl.recipes.audio import AudioModelConfig, WaveformDataConfig, WaveformTask
from kdl.recipes.recipe import Recipe
from kdl.recipes.results import Transcription

CHARACTERS_FILE = "characters.json"
WORDS_FILE = "words.txt"      # the training transcripts' words: the lexicon decoder's default lexicon
DECODERS = ("greedy", "beam_search", "lexicon")


@dataclasses.dataclass
class SpeechDataConfig(WaveformDataConfig):
    source: str = "fsdd_digit_strings:fsdd/recordings"  # also an LJSpeech folder, "tfds:librispeech"
    max_seconds: float = setting(3.0, above=0)   # clip length: shorter clips padded; longer is an error
    lowercase: bool = True            # lower-case every transcript
    characters: typing.Optional[str] = setting(None, pipeline=True)  # the vocabulary; None: learned
    utterances: list[int] = setting(factory=lambda: [2000, 300])   # digit strings: train, test
    max_digits: int = setting(5, at_least=1)   # digit strings: 1 to max_digits digits per utterance
    pauses: list[float] = setting(factory=lambda: [0.05, 0.25])   # digit strings: seconds between digits
    overlap: float = setting(0.0, at_least=0)   # digit strings, train: joins overlap up to this many seconds
    loudness: float = setting(0.0, at_least=0)  # digit strings, train: each digit's gain within +-dB


@dataclasses.dataclass
class SpeechModelConfig(AudioModelConfig):
    name: str = "bigru"               # a speech encoder in kdl.models: "bigru", "transformer"
    decoder: str = "greedy"           # "greedy", "beam_search" (keras.ops.ctc_decode) or "lexicon"
    beam_width: int = setting(16, at_least=1)
    words: typing.Optional[str] = None   # lexicon decoder: a word list file (default: the training words)
    lm: typing.Optional[str] = None      # lexicon decoder: an ARPA n-gram model (its words, if no word list)
    lm_weight: float = setting(0.5, at_least=0)   # lexicon decoder with lm: weight of ln P(word | history)
    word_bonus: float = 1.0             # lexicon decoder with lm: added per word


@dataclasses.dataclass
class SpeechRecognizerConfig:
    task: str = "speech_recognizer"
    seed: int = 0
    data: SpeechDataConfig = dataclasses.field(default_factory=SpeechDataConfig)
    model: SpeechModelConfig = dataclasses.field(default_factory=SpeechModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=30, learning_rate=1e-3, schedule="cosine"))
    track: TrackConfig = dataclasses.field(default_factory=TrackConfig)
    card: CardConfig = dataclasses.field(default_factory=CardConfig)


class SpeechRecognizer(WaveformTask, Recipe):
    """Waveforms in, transcripts out. Build it with `kdl.recipes.speech_recognizer`."""

    Config = SpeechRecognizerConfig
    modality = "audio"
    model_kind = "speech_encoder"
    loader = staticmethod(load_transcripts)
    Result = Transcription
    learned = ("characters", "lexicon_words")

    lexicon_words = None      # the training transcripts' words (set on load from words.txt)

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
        L is the longest train/validation transcript. The shuffled train split (what fit trains
        on) is augmented as `data.augment` says."""
        if split == "train" and self.config.model.decoder == "lexicon":
            self._check_lexicon()
        pairs = ctc_labels(self.data.splits[split], self.characters, self._label_length())
        return batches(pairs, self.config.data.batch_size, shuffle=shuffle, seed=self.config.seed,
                       augment=self.augmenter(split, shuffle))

    def training_words(self):
        """The words of the train (and validation) transcripts, sorted: the default lexicon."""
        if self.lexicon_words is None:
            rows = [text for split in ("train", "validation")
                    for text, _ in self.data.transcripts.get(split, [])]
            self.lexicon_words = sorted({word for text in rows for word in text.split()})
        return self.lexicon_words

    def _check_lexicon(self):
        """With decoder = "lexicon", every training transcript word must be in the lexicon (the
        decoder could never write it): a DataError names the first transcript that has others."""
        model = self.config.model
        if not (model.words or model.lm):
            return
        decoder = self.lexicon_decoder()
        for split in ("train", "validation"):
            for text, where in self.data.transcripts.get(split, []):
                outside = sorted(set(text.split()) - decoder.words)
                if outside:
                    source = (f"the word list {model.words!r}" if model.words else
                              f"the language model {model.lm!r}")
                    raise DataError(f"{where}: transcript {text[:60]!r} has words {outside[:5]} outside "
                                    f"{source} ({len(decoder.words)} words); the lexicon decoder can only "
                                    "write lexicon words: add them to the lexicon, or use another decoder")

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

    def decode(self, log_probs, decoder=None, words=None, lm=None):
        """Transcripts from the model's output (N, frames, vocabulary + 1): keras.ops.ctc_decode
        ("greedy", "beam_search"), or the lexicon decoder (numpy, kdl.recipes.lexicon) with the
        word list `words` / ARPA model `lm` (default: model.words / model.lm, else the training words)."""
        model = self.config.model
        decoder = decoder or model.decoder
        if decoder not in DECODERS:
            raise ConfigError(f"model.decoder must be one of {', '.join(DECODERS)}; got {decoder!r}")
        if decoder == "lexicon":
            return self.lexicon_decoder(words, lm).decode(keras.ops.convert_to_numpy(log_probs))
        if words is not None or lm is not None:
            raise ConfigError(f"a word list (words) or language model (lm) is for decoder='lexicon'; "
                              f"got decoder={decoder!r}")
        texts = []
        for start in range(0, len(log_probs), 256):
            chunk = log_probs[start:start + 256]
            lengths = np.full((len(chunk),), chunk.shape[1], np.int32)
            decoded, _ = keras.ops.ctc_decode(chunk, lengths, strategy=decoder, beam_width=model.beam_width,
                                              mask_index=0)
            for ids in keras.ops.convert_to_numpy(decoded)[0]:
                texts.append("".join(self.characters[i - 1] for i in ids if 0 < i <= len(self.characters)))
        return texts

    def lexicon_decoder(self, words=None, lm=None):
        """The LexiconDecoder of this run for a word list file and/or an ARPA file (default:
        model.words and model.lm; neither: the training transcripts' words), kept for reuse."""
        model = self.config.model
        words, lm = words or model.words, lm or model.lm
        key = (words, lm, model.beam_width, model.lm_weight, model.word_bonus)
        cache = self.__dict__.setdefault("_lexicon_decoders", {})
        if key not in cache:
            lexicon_words = (lexicon.read_words(self._file(words, "word list")) if words else
                             None if lm else self._run_words())
            if lexicon_words is not None and self.config.data.lowercase:
                lexicon_words = list(dict.fromkeys(word.lower() for word in lexicon_words))
            ngram = lexicon.read_arpa(self._file(lm, "language model")) if lm else None
            cache[key] = lexicon.LexiconDecoder(self.characters, lexicon_words, ngram, model.beam_width,
                                                model.lm_weight, model.word_bonus)
        return cache[key]

    def _file(self, path, what):
        return resolve_path(path, self.data_root, f"a {what} file")

    def _run_words(self):
        if self.lexicon_words is None and getattr(self, "_loaded_from", None) is not None:
            raise ConfigError(f"the run {str(self._loaded_from)!r} has no {WORDS_FILE} (it was saved before "
                              "kdl had the lexicon decoder); give a word list (words=FILE, --words FILE) or "
                              "a language model (lm=FILE, --lm FILE)")
        return self.training_words()

    def prepare_inputs(self, inputs):
        """Accepts WAV file paths or 1-D waveforms at data.sample_rate (alone or in a list), or an
        (N, samples) array. A clip longer than data.max_seconds is a DataError naming it."""
        return waveform_batch(inputs, self.model.input_shape[1], self.config.data.sample_rate, crop=False)

    def predict_inputs(self, x, decoder=None, words=None, lm=None):
        """Transcripts of a waveform batch; `decoder`: "greedy", "beam_search" or "lexicon" (default:
        model.decoder); `words`, `lm`: the lexicon decoder's word list / ARPA file (see `decode`)."""
        log_probs = self.model.predict(x, batch_size=self.config.data.batch_size, verbose=0)
        decoder = decoder or self.config.model.decoder
        return Transcription(self.decode(log_probs, decoder, words, lm), log_probs, decoder, self.characters)

    def transcribe(self, inputs, decoder=None, words=None, lm=None):
        """`predict(inputs, decoder=..., words=..., lm=...).transcripts`: a list of strings."""
        options = {name: value for name, value in (("words", words), ("lm", lm)) if value is not None}
        return self.predict(inputs, decoder=decoder, **options).transcripts

    def export_description(self):
        return {**super().export_description(), "output_meaning": (
            "per-frame log-probabilities: id 0 the CTC blank, id i the i-th character of characters.json")}

    def card_notes(self):
        data, model = self.config.data, self.config.model
        lexicon = "; it writes only words of its lexicon" if model.decoder == "lexicon" else ""
        case = ", lower-cased" if data.lowercase else ""
        return [f"Input: mono audio at {data.sample_rate:,} Hz, values -1..1 (WAV files are mixed down and "
                f"resampled to it), at most {data.max_seconds:g} s a clip: a longer clip is refused (cut it "
                "first).",
                f"Writes only the {len(self.characters)} characters of its vocabulary "
                f"({''.join(self.characters)!r}, {CHARACTERS_FILE}){case}; decoder "
                f"{model.decoder!r}{lexicon}.",
                *super().card_notes()]

    def save_assets(self, path):
        text = json.dumps(list(self.characters), ensure_ascii=False)
        (pathlib.Path(path) / CHARACTERS_FILE).write_text(text + "\n", encoding="utf-8")
        if self.lexicon_words is not None or getattr(self, "_loaded_from", None) is None:
            words = "".join(f"{word}\n" for word in self.training_words())
            (pathlib.Path(path) / WORDS_FILE).write_text(words, encoding="utf-8")

    def load_assets(self, path):
        file = pathlib.Path(path) / CHARACTERS_FILE
        if not file.is_file():
            raise ConfigError(f"run directory {str(path)!r} has no {CHARACTERS_FILE}; a speech run "
                              "needs the character vocabulary it was trained with")
        try:
            characters = json.loads(read_text(file))
        except ValueError as error:          # not JSON (DataError, not UTF-8, is a ValueError too)
            raise DataError(f"{file} is not a JSON list of characters, as kdl writes it: {error}") from None
        if not (isinstance(characters, list) and characters and
                all(isinstance(c, str) and len(c) == 1 for c in characters)):
            raise DataError(f"{file} must hold a JSON list of one-character strings, as kdl writes it; "
                            f"got {str(characters)[:80]}")
        self.characters = "".join(characters)
        self._loaded_from = path
        words = pathlib.Path(path) / WORDS_FILE
        if words.is_file():      # runs saved before the lexicon decoder have none
            self.lexicon_words = read_text(words).split()

    def _on(self, source, data_options):
        if self.lexicon_words is None and getattr(self, "_loaded_from", None) is None:
            self.training_words()         # the lexicon is the training data's, not the scored data's
        view = super()._on(source, data_options)
        view._loaded_from = getattr(self, "_loaded_from", None)
        return view


def speech_recognizer(dataset="fsdd_digit_strings:fsdd/recordings", model="bigru", *,
                      data_root=None, **overrides):
    """A new speech recognition recipe.

    dataset: "fsdd_digit_strings:FOLDER", an LJSpeech folder, "tfds:librispeech", or
        `(waveforms, transcripts)` / `{"train": ..., "test": ...}` (see kdl.data.load_transcripts).
    model: "bigru" or "transformer" (see kdl.models).
    overrides: any config field by name (epochs=3, max_seconds=4.0, utterances=[500, 100],
        characters="abc ", decoder="lexicon", split="speaker", test_speakers=["theo"],
        augment={"speed": 0.1}, time_masks=0, ...); other names are the
        encoder's options (e.g. width=96, blocks=2).
    """
    return SpeechRecognizer.new(dataset, model, data_root, overrides)
