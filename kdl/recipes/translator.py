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
import math
import pathlib
import typing
import warnings

import numpy as np
import tensorflow as tf

from kdl import evaluation, models
from kdl.errors import ConfigError, DataError
from kdl.recipes.recipe import Recipe, TrainConfig, new_recipe

VOCABULARY_FILES = {"source": "source_vocabulary.txt", "target": "target_vocabulary.txt"}
SHARED_VOCABULARY_FILE = "vocabulary.txt"
START, END = "[CLS]", "[SEP]"        # the WordPiece reserved tokens that open and close a target
MULTI30K_SPLITS = {"validation": "val", "test": "test_2016_flickr"}
BUCKET = 8                           # batches are padded to a multiple of this many tokens


@dataclasses.dataclass
class TranslatorDataConfig:
    source: str = "multi30k/task1_raw"  # line-file folder, .tsv/.txt pairs, "tfds:NAME" (kdl.data.load_parallel)
    source_language: str = "en"
    target_language: str = "de"
    splits: dict[str, str] = dataclasses.field(default_factory=dict)  # our split -> the files' split name
    reverse: bool = False               # a TSV file's second column is the source
    batch_size: int = 64
    validation_split: float = 0.0       # held out of train when the source has no validation split
    limit: typing.Optional[int] = None  # at most this many pairs per split
    max_length: int = 48                # sub-word tokens per sentence; longer ones are cut (with a warning)
    vocabulary_size: int = 8000         # WordPiece, learned on the training split, per side
    shared_vocabulary: bool = False     # one vocabulary for both sides (related languages)
    lowercase: bool = False             # False: output keeps its case (BLEU is scored cased)


@dataclasses.dataclass
class TranslatorModelConfig:
    name: str = "transformer"
    options: dict[str, typing.Any] = dataclasses.field(default_factory=dict)  # layers, width, heads, ...


@dataclasses.dataclass
class TranslatorTrainConfig(TrainConfig):
    label_smoothing: float = 0.1


@dataclasses.dataclass
class DecodeConfig:
    beam_size: int = 4                  # 1 is greedy search
    length_penalty: float = 0.6         # GNMT-style: score / ((5 + length) / 6) ** length_penalty
    batch_size: int = 128               # sentences decoded per compiled call
    examples: int = 5                   # example translations kept in the report


@dataclasses.dataclass
class TranslatorConfig:
    task: str = "translator"
    seed: int = 0
    data: TranslatorDataConfig = dataclasses.field(default_factory=TranslatorDataConfig)
    model: TranslatorModelConfig = dataclasses.field(default_factory=TranslatorModelConfig)
    train: TranslatorTrainConfig = dataclasses.field(default_factory=lambda: TranslatorTrainConfig(
        epochs=10, learning_rate=1e-3, schedule="warmup_cosine", warmup_steps=1000))
    decode: DecodeConfig = dataclasses.field(default_factory=DecodeConfig)


class Translator(Recipe):
    """Strings in, translated strings out. Build it with `kdl.recipes.translator`.

    WordPiece vocabularies (`kdl.data.Tokenizer`, cased by default) are learned on the training
    split on first use and saved with the run. Sentences longer than `data.max_length` tokens are
    cut to that length, with a warning that counts them.
    """

    task = "translator"
    Config = TranslatorConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self._tokenizers = None
        self._arrays = {}
        self._searches = {}

    # -- data ------------------------------------------------------------------------------------
    def load_data(self):
        from kdl.data.parallel import load_parallel

        data = self.config.data
        return load_parallel(self.arrays if data.source == "arrays" else data.source,
                             source_language=data.source_language, target_language=data.target_language,
                             splits=data.splits, data_root=self.data_root, reverse=data.reverse,
                             validation_split=data.validation_split, limit=data.limit, seed=self.config.seed)

    @property
    def tokenizers(self):
        """{"source": Tokenizer, "target": Tokenizer}: learned on the training split, or loaded."""
        if self._tokenizers is None:
            self._tokenizers = self._learn_tokenizers()
        return self._tokenizers

    def _learn_tokenizers(self):
        from kdl.data import Tokenizer

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
            warnings.warn(f"{what}: {cut} of {len(lists)} {side} sentences are longer than data.max_length="
                          f"{limit} tokens (longest {longest}); they are cut to {limit}", stacklevel=3)
        return [ids[:limit] for ids in lists]

    def _split_arrays(self, split):
        """(source ids (N, max_length), target ids (N, max_length + 2): start, tokens, end, padding)."""
        if split not in self._arrays:
            sources, targets = self.data.texts(split)
            what = f"{self.data.info.source} {split}"
            self._arrays[split] = (self._pad(self._token_ids("source", sources, what), 0),
                                   self._pad(self._token_ids("target", targets, what), 2, framed=True))
        return self._arrays[split]

    def _pad(self, lists, extra, framed=False):
        start, end = self.tokenizers["target"].token_id(START), self.tokenizers["target"].token_id(END)
        ids = np.zeros((len(lists), self.config.data.max_length + extra), "int32")
        for row, tokens in zip(ids, lists):
            tokens = [start, *tokens, end] if framed else tokens
            row[:len(tokens)] = tokens
        return ids

    def batches(self, split, shuffle=False):
        """Batches of ({"source_ids": (B, L), "target_ids": (B, L)}, next-token labels (B, L)).

        Sentences of similar length share a batch, padded to a multiple of 8 tokens, so little
        compute goes to padding and the compiled step sees a handful of shapes. Batch order is
        reshuffled every epoch (seeded) when `shuffle`.
        """
        sources, targets = self._split_arrays(split)
        lengths = np.maximum((sources > 0).sum(1), (targets > 0).sum(1) - 1)            # (N,)
        jitter = np.random.default_rng(self.config.seed).random(len(lengths))
        order = np.lexsort((jitter, lengths))
        size, cap = self.config.data.batch_size, self.config.data.max_length + 1
        groups = {}
        for first in range(0, len(order), size):
            rows = order[first:first + size]
            width = min(cap, BUCKET * math.ceil(lengths[rows].max() / BUCKET))
            groups.setdefault((width, len(rows)), []).append(rows)
        datasets, sources = [], np.pad(sources, ((0, 0), (0, cap - sources.shape[1])))  # (N, cap)
        for (width, _), batches in sorted(groups.items()):
            rows = np.stack(batches)                                                   # (n, B)
            source = sources[rows, :width]                                             # (n, B, width)
            decoder_in, labels = targets[rows, :width], targets[rows, 1:width + 1]
            datasets.append(tf.data.Dataset.from_tensor_slices(
                ({"source_ids": source, "target_ids": decoder_in}, labels)))
        dataset = datasets[0]
        for more in datasets[1:]:
            dataset = dataset.concatenate(more)
        if shuffle:
            dataset = dataset.shuffle(len(order), seed=self.config.seed, reshuffle_each_iteration=True)
        return dataset.prefetch(tf.data.AUTOTUNE)

    # -- model and training -------------------------------------------------------------------------
    def build_model(self):
        model = self.config.model
        return models.get("translator", model.name)(
            self.tokenizers["source"].vocabulary_size, self.tokenizers["target"].vocabulary_size,
            self.config.data.max_length + 1, **model.options)

    def compile_arguments(self):
        from kdl.models.translator import MaskedCrossentropy, masked_accuracy

        return {"loss": MaskedCrossentropy(self.config.train.label_smoothing), "metrics": [masked_accuracy]}

    def fit(self, epochs=None, *, out=None, verbose="auto", callbacks=(), steps_per_epoch=None):
        """Train; `out` also receives the vocabularies first, so its per-epoch checkpoint is
        usable mid-run."""
        if out is not None:
            pathlib.Path(out).mkdir(parents=True, exist_ok=True)
            self.save_assets(out)
        return super().fit(epochs, out=out, verbose=verbose, callbacks=callbacks,
                           steps_per_epoch=steps_per_epoch)

    # -- decoding -------------------------------------------------------------------------------------
    def _search(self, beam_size, length_penalty):
        from kdl.models.translator import BeamSearch

        key = (beam_size, length_penalty)
        if key not in self._searches:
            if not (isinstance(beam_size, int) and beam_size >= 1):
                raise ConfigError(f"beam_size must be a positive int (1 is greedy); got {beam_size!r}")
            target = self.tokenizers["target"]
            search = BeamSearch(self.model, max_length=self.config.data.max_length,
                                start_id=target.token_id(START), end_id=target.token_id(END),
                                beam_size=beam_size, length_penalty=float(length_penalty))
            search.compile(jit_compile=self.jit_compile)
            self._searches[key] = search
        return self._searches[key]

    def decode(self, source_ids, beam_size=None, length_penalty=None):
        """Source ids (N, max_length) -> (target ids (N, max_length + 2), log-probabilities (N,))."""
        self._require_model("translate")
        settings = self.config.decode
        beam_size = settings.beam_size if beam_size is None else beam_size
        length_penalty = settings.length_penalty if length_penalty is None else length_penalty
        search = self._search(beam_size, length_penalty)
        source_ids = np.asarray(source_ids, "int32")
        count = len(source_ids)
        # pad the rows to a power of two (then to whole batches) so few shapes get compiled
        rows = settings.batch_size * math.ceil(count / settings.batch_size) if count > settings.batch_size \
            else min(settings.batch_size, 2 ** math.ceil(math.log2(max(count, 1))))
        source_ids = np.pad(source_ids, ((0, rows - count), (0, 0)))
        tokens, scores = search.predict(source_ids, batch_size=settings.batch_size, verbose=0)
        return np.asarray(tokens)[:count], np.asarray(scores)[:count]

    def translate(self, texts, beam_size=None, length_penalty=None):
        """Translate one string or a list of strings; returns a list of readable strings.

        beam_size: 1 is greedy search (default: decode.beam_size).
        """
        texts = [texts] if isinstance(texts, str) else texts
        texts = texts.tolist() if isinstance(texts, np.ndarray) else texts
        if not isinstance(texts, (list, tuple)) or not texts:
            raise DataError(f"translate() takes a string or a non-empty list of strings; "
                            f"got {type(texts).__name__} {str(texts)[:80]!r}")
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise DataError(f"translate() takes strings; item {bad} is {type(texts[bad]).__name__} {texts[bad]!r}")
        source_ids = self._pad(self._token_ids("source", texts, "translate()"), 0)
        tokens, _ = self.decode(source_ids, beam_size, length_penalty)
        return self.tokenizers["target"].detokenize(tokens)

    def score(self, split):
        sources, references = self.data.texts(split)
        source_ids, _ = self._split_arrays(split)
        tokens, _ = self.decode(source_ids)
        report = evaluation.translation(self.tokenizers["target"].detokenize(tokens), references,
                                        sources=sources, examples=self.config.decode.examples)
        report.meta.update(beam_size=self.config.decode.beam_size,
                           length_penalty=self.config.decode.length_penalty)
        return report

    # -- run directory ---------------------------------------------------------------------------------
    def save_assets(self, path):
        path = pathlib.Path(path)
        if self.config.data.shared_vocabulary:
            self.tokenizers["source"].save(path / SHARED_VOCABULARY_FILE)
        else:
            for side, name in VOCABULARY_FILES.items():
                self.tokenizers[side].save(path / name)

    def load_assets(self, path):
        from kdl.data import Tokenizer

        path = pathlib.Path(path)
        shared = self.config.data.shared_vocabulary
        files = {side: SHARED_VOCABULARY_FILE if shared else name for side, name in VOCABULARY_FILES.items()}
        for name in set(files.values()):
            if not (path / name).is_file():
                raise ConfigError(f"run directory {str(path)!r} has no {name}; a translation run needs "
                                  "the vocabularies its tokenizers learned")
        options = dict(kind="wordpiece", max_length=None, lowercase=self.config.data.lowercase)
        self._tokenizers = {side: Tokenizer.load(path / name, **options) for side, name in files.items()}


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
    return new_recipe(Translator, dataset, model, "translator", overrides, data_root, **defaults)
