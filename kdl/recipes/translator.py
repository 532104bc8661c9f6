"""The translation recipe: sentences in one language in, sentences in another out.

>>> import kdl
>>> mt = kdl.recipes.translator("multi30k/task1_raw", source="en", target="de",
...                             data_root="../shared/data")               # doctest: +SKIP
>>> mt.fit()                                                            # doctest: +SKIP
>>> print(mt.evaluate())                      # BLEU, chrF and example translations  # doctest: +SKIP
>>> mt.translate(["A man is riding a bike."], beam_size=4)             # doctest: +SKIP
['Ein Mann fährt Fahrrad.']
"""

import dataclasses
import functools
import math
import numbers
import pathlib

import numpy as np

from kdl import models
from kdl.config import CardConfig, DataConfig, ModelConfig, TrackConfig, TrainConfig, setting
from kdl.data import Tokenizer, bucketed_batches, load_parallel, pad_ids
from kdl.errors import ConfigError, warn
from kdl.recipes.recipe import MODEL_FILE, Recipe, as_strings
from kdl.recipes.results import Translation

VOCABULARY_FILES = {"source": "source_vocabulary.txt", "target": "target_vocabulary.txt"}
SHARED_VOCABULARY_FILE = "vocabulary.txt"
START, END = "[CLS]", "[SEP]"        # the WordPiece reserved tokens that open and close a target
MULTI30K_SPLITS = {"validation": "val", "test": "test_2016_flickr"}


@dataclasses.dataclass
class TranslatorDataConfig(DataConfig):
    source: str = "multi30k/task1_raw"  # line-file folder, .tsv/.txt pairs, "tfds:NAME" (load_parallel)
    batch_size: int = setting(64, at_least=1, pipeline=True)
    validation_split: float = setting(0.0, at_least=0, below=1)  # when the source has no validation split
    source_language: str = "en"
    target_language: str = "de"
    splits: dict[str, str] = dataclasses.field(default_factory=dict)  # our split -> the files' split name
    reverse: bool = False               # a TSV file's second column is the source
    max_length: int = setting(48, at_least=1, pipeline=True)  # sub-word tokens per sentence; longer are cut
    vocabulary_size: int = setting(8000, at_least=2, pipeline=True)  # WordPiece, learned on train, per side
    shared_vocabulary: bool = setting(False, pipeline=True)  # one vocabulary for both sides
    lowercase: bool = setting(False, pipeline=True)          # False: output keeps its case (BLEU is cased)


@dataclasses.dataclass
class TranslatorModelConfig(ModelConfig):
    name: str = "transformer"           # options: encoder_layers, decoder_layers, width, heads, ...


@dataclasses.dataclass
class TranslatorTrainConfig(TrainConfig):
    label_smoothing: float = setting(0.1, at_least=0, below=1)


@dataclasses.dataclass
class DecodeConfig:
    beam_size: int = setting(4, at_least=1)     # 1 is greedy search
    length_penalty: float = 0.6         # GNMT-style: score / ((5 + length) / 6) ** length_penalty
    batch_size: int = setting(128, at_least=1)  # sentences decoded per compiled call
    examples: int = setting(5, at_least=0)      # example translations kept in the report


@dataclasses.dataclass
class TranslatorConfig:
    task: str = "translator"
    seed: int = 0
    data: TranslatorDataConfig = dataclasses.field(default_factory=TranslatorDataConfig)
    model: TranslatorModelConfig = dataclasses.field(default_factory=TranslatorModelConfig)
    train: TranslatorTrainConfig = dataclasses.field(default_factory=lambda: TranslatorTrainConfig(
        epochs=10, learning_rate=1e-3, schedule="warmup_cosine", warmup_steps=1000))
    decode: DecodeConfig = dataclasses.field(default_factory=DecodeConfig)
    track: TrackConfig = dataclasses.field(default_factory=TrackConfig)
    card: CardConfig = dataclasses.field(default_factory=CardConfig)


class Translator(Recipe):
    """Strings in, translated strings out. Build it with `kdl.recipes.translator`.

    WordPiece vocabularies (`kdl.data.Tokenizer`, cased by default) are learned on the training
    split on first use and saved with the run. Sentences longer than `data.max_length` tokens are
    cut to that length, with a warning that counts them.
    """

    Config = TranslatorConfig
    modality = "text"
    model_kind = "translation_backbone"
    loader = staticmethod(load_parallel)
    learned = ("tokenizers",)
    Result = Translation

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self._arrays = {}
        self._searches = {}

    @functools.cached_property
    def tokenizers(self):
        """{"source": Tokenizer, "target": Tokenizer}: learned on the training split, or loaded."""
        data = self.config.data
        options = dict(kind="wordpiece", vocabulary_size=data.vocabulary_size, max_length=None,
                       lowercase=data.lowercase)
        pairs = self.data.splits["train"]
        if data.shared_vocabulary:
            both = pairs.map(lambda s, t: s).concatenate(pairs.map(lambda s, t: t))
            shared = Tokenizer.learn(both, **options)
            return {"source": shared, "target": shared}
        return {"source": Tokenizer.learn(pairs.map(lambda s, t: s), **options),
                "target": Tokenizer.learn(pairs.map(lambda s, t: t), **options)}

    def _token_ids(self, side, texts, what):
        """Untruncated id lists cut to max_length, warning once with how many were cut."""
        limit = self.config.data.max_length
        lists = self.tokenizers[side].to_lists(texts)
        cut = sum(len(ids) > limit for ids in lists)
        if cut:
            longest = max(len(ids) for ids in lists)
            warn(f"{what}: {cut} of {len(lists)} {side} sentences are longer than data.max_length={limit} "
                 f"tokens (longest {longest}); they are cut to {limit}")
        return [ids[:limit] for ids in lists]

    def _split_arrays(self, split):
        """(source ids (N, max_length), target ids (N, max_length + 2): start, tokens, end, padding)."""
        if split not in self._arrays:
            sources, targets = self.data.texts(split)
            what = f"{self.data.info.source} {split}"
            target_ids = pad_ids(self._token_ids("target", targets, what), self.config.data.max_length + 2,
                                 *self._frame_ids())
            self._arrays[split] = self._source_ids(sources, what), target_ids
        return self._arrays[split]

    def _source_ids(self, texts, what):
        return pad_ids(self._token_ids("source", texts, what), self.config.data.max_length)

    def _frame_ids(self):
        target = self.tokenizers["target"]
        return target.token_id(START), target.token_id(END)

    def batches(self, split, shuffle=False):
        """Batches of ({"source_ids": (B, L), "target_ids": (B, L)}, next-token labels (B, L)),
        sentences of similar length together (kdl.data.bucketed_batches)."""
        sources, targets = self._split_arrays(split)
        return bucketed_batches(sources, targets, self.config.data.batch_size, seed=self.config.seed,
                                shuffle=shuffle)

    # -- model and training -------------------------------------------------------------------------
    def build_model(self):
        model = self.config.model
        return models.translator(self.tokenizers["source"].vocabulary_size,
                                 self.tokenizers["target"].vocabulary_size, self.config.data.max_length + 1,
                                 backbone=model.name, **model.options)

    def compile_arguments(self):
        return {"loss": models.MaskedCrossentropy(self.config.train.label_smoothing),
                "metrics": [models.masked_accuracy]}

    # -- decoding -------------------------------------------------------------------------------------
    def _search(self, beam_size, length_penalty):
        # checked before the cache: 2.0 == 2 and True == 1 would find a search made for an int
        if not (isinstance(beam_size, numbers.Integral) and not isinstance(beam_size, bool)
                and beam_size >= 1):
            raise ConfigError(f"beam_size must be a positive int (1 is greedy); got {beam_size!r}")
        if not (isinstance(length_penalty, numbers.Real) and not isinstance(length_penalty, bool)
                and math.isfinite(length_penalty)):
            raise ConfigError(f"length_penalty must be a finite number (0 ranks by log-probability alone, "
                              f"0.6 is the GNMT default); got {length_penalty!r}")
        key = (int(beam_size), float(length_penalty))
        if key not in self._searches:
            start_id, end_id = self._frame_ids()
            search = models.BeamSearch(self.model, max_length=self.config.data.max_length,
                                       start_id=start_id, end_id=end_id, beam_size=key[0],
                                       length_penalty=key[1])
            search.compile(jit_compile=self.jit_compile)
            self._searches[key] = search
        return self._searches[key]

    def decode(self, source_ids, beam_size=None, length_penalty=None):
        """Source ids (N, max_length) -> (target ids (N, max_length + 2), log-probabilities (N,))."""
        settings = self.config.decode
        beam_size, length_penalty = self._decode_settings(beam_size, length_penalty)
        search = self._search(beam_size, length_penalty)
        source_ids = np.asarray(source_ids, "int32")
        count = len(source_ids)
        # pad the rows to a power of two (then to whole batches) so few shapes get compiled
        rows = settings.batch_size * math.ceil(count / settings.batch_size) if count > settings.batch_size \
            else min(settings.batch_size, 2 ** math.ceil(math.log2(max(count, 1))))
        source_ids = np.pad(source_ids, ((0, rows - count), (0, 0)))
        tokens, scores = search.predict(source_ids, batch_size=settings.batch_size, verbose=0)
        return np.asarray(tokens)[:count], np.asarray(scores)[:count]

    def prepare_inputs(self, texts):
        """Accepts one string or a list/array of strings."""
        return as_strings(texts)

    def source_ids(self, texts):
        """Strings -> source token ids (N, max_length) int32 as predict reads them (0 is padding;
        longer sentences are cut, with a warning); `decode` takes them."""
        return self._source_ids(as_strings(texts), "input")

    def predict_inputs(self, x, beam_size=None, length_penalty=None):
        """Translations of the strings `x`; beam_size 1 is greedy search (default: decode.beam_size)."""
        return self._translation(x, self._source_ids(x, "predict()"), beam_size, length_penalty)

    def predict_split(self, split):
        sources, references = self.data.texts(split)
        return self._translation(sources, self._split_arrays(split)[0]), references

    def _translation(self, sources, source_ids, beam_size=None, length_penalty=None):
        beam_size, length_penalty = self._decode_settings(beam_size, length_penalty)
        tokens, scores = self.decode(source_ids, beam_size, length_penalty)
        return Translation(list(sources), self.tokenizers["target"].detokenize(tokens), scores,
                           beam_size, length_penalty, self.config.decode.examples)

    def _decode_settings(self, beam_size, length_penalty):
        """(beam_size, length_penalty): as given, else the config's `decode` section."""
        settings = self.config.decode
        return (settings.beam_size if beam_size is None else beam_size,
                settings.length_penalty if length_penalty is None else length_penalty)

    def translate(self, texts, beam_size=None, length_penalty=None):
        """`predict(texts, ...).translations`: a list of readable strings."""
        return self.predict(texts, beam_size=beam_size, length_penalty=length_penalty).translations

    def output_width(self):
        return self.tokenizers["target"].vocabulary_size

    # -- export ---------------------------------------------------------------------------------------
    def export_sample(self):
        from kdl import export

        return export.sample_inputs(self.model, {"source_ids": self.tokenizers["source"].vocabulary_size,
                                                 "target_ids": self.tokenizers["target"].vocabulary_size})

    def export_description(self):
        return {**super().export_description(),
                "input_meaning": ("source_ids: int32 (batch, L) WordPiece ids of the source sentences, 0 for "
                                  "padding; target_ids: int32 (batch, L) the target so far, starting with "
                                  f"{START}; tokenize with the vocabulary files as kdl.data.Tokenizer does"),
                "output_meaning": ("next-token probabilities (batch, L, target vocabulary): decode greedily "
                                   f"or with beam search until {END}"),
                "max_length": self.config.data.max_length}

    def card_notes(self):
        data, decode = self.config.data, self.config.decode
        source, target = data.source_language, data.target_language
        sizes = {side: f"{tokenizer.vocabulary_size:,}" for side, tokenizer in self.tokenizers.items()}
        files = (SHARED_VOCABULARY_FILE if data.shared_vocabulary else
                 f"{VOCABULARY_FILES['source']}, {VOCABULARY_FILES['target']}")
        return [f"Translates {source} into {target}, one sentence at a time (nothing carries over between "
                "sentences).",
                f"Input: {source} sentences of up to {data.max_length} WordPiece tokens (a longer one is "
                f"cut, with a warning, and its end is not translated); vocabularies of {sizes['source']} "
                f"{source} and {sizes['target']} {target} tokens learned from the training pairs ({files}); "
                f"{'lower-cased' if data.lowercase else 'cased'}. Decoded by beam search "
                f"(decode.beam_size = {decode.beam_size}, length_penalty = {decode.length_penalty:g}).",
                *super().card_notes()]

    # -- run directory ---------------------------------------------------------------------------------
    def save_assets(self, path):
        path = pathlib.Path(path)
        if self.config.data.shared_vocabulary:
            self.tokenizers["source"].save(path / SHARED_VOCABULARY_FILE)
        else:
            for side, name in VOCABULARY_FILES.items():
                self.tokenizers[side].save(path / name)

    def load_assets(self, path):
        path = pathlib.Path(path)
        shared = self.config.data.shared_vocabulary
        files = {side: SHARED_VOCABULARY_FILE if shared else name for side, name in VOCABULARY_FILES.items()}
        for name in set(files.values()):
            if not (path / name).is_file():
                raise ConfigError(f"run directory {str(path)!r} has no {name}; a translation run needs "
                                  "the vocabularies its tokenizers learned")
        options = dict(kind="wordpiece", max_length=None, lowercase=self.config.data.lowercase)
        self.tokenizers = {side: Tokenizer.load(path / name, **options) for side, name in files.items()}
        self._check_model_inputs(path, files)

    def _check_model_inputs(self, path, files):
        """The source vocabulary and max_length must be those the model's embeddings were built
        for (a mismatch gives NaN or a backend error at predict); recipe.load checks the target
        vocabulary against the model's output width."""
        if self.model is None:
            return
        for side in ("source", "target"):
            try:
                layer = self.model.get_layer(f"{side}_embedding")    # keras-hub TokenAndPositionEmbedding
            except ValueError:      # a backbone without it: nothing to check
                continue
            built = layer.token_embedding.input_dim, layer.position_embedding.sequence_length
            expected = self.tokenizers[side].vocabulary_size, self.config.data.max_length + 1
            if built != expected:
                raise ConfigError(
                    f"run directory {str(path)!r} does not hold together: its {files[side]} and recipe.toml "
                    f"(data.max_length) make {side} token ids from 0 to {expected[0] - 1}, at most "
                    f"{expected[1]} per sentence, but {MODEL_FILE} takes ids from 0 to {built[0] - 1}, at "
                    f"most {built[1]}; the files come from different runs")


def translator(dataset="multi30k/task1_raw", source="en", target="de", model="transformer", *,
               data_root=None, **overrides):
    """A new translation recipe from `source` language to `target` language.

    dataset: a folder of aligned line files `{split}.{language}[.gz]`, a .tsv/.txt file of
        tab-separated pairs, "tfds:NAME" (e.g. "tfds:ted_hrlr_translate/pt_to_en"), or
        `(source_texts, target_texts)` / `{"train": (...), "test": (...)}` (see kdl.data.load_parallel).
        The Multi30k folder's splits are named for you (val, test_2016_flickr).
    model: "transformer" (keras-hub encoder and decoder layers).
    overrides: any config field by name (epochs=3, batch_size=32, max_length=32,
        vocabulary_size=4000, beam_size=1, splits={"test": "test2017"}, ...); other names are
        the model's options (encoder_layers, decoder_layers, width, heads, intermediate, dropout).
    """
    defaults = {"source_language": source, "target_language": target}
    if isinstance(dataset, (str, pathlib.Path)) and str(dataset).rstrip("/").endswith("multi30k/task1_raw"):
        defaults["splits"] = dict(MULTI30K_SPLITS)
    return Translator.new(dataset, model, data_root, overrides, **defaults)
