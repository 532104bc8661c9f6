"""The masked-language-model recipe: self-supervised pretraining of a text encoder on raw text.

About 15% of the tokens of every text are picked for prediction by keras-hub's
`MaskedLMMaskGenerator` in the tf.data pipeline (BERT's 80/10/10 rule: a picked token becomes
[MASK], a random token, or stays as it is), and the model learns to predict them from the rest
(`kdl.models.text.language_model`: a Transformer encoder and a keras-hub `MaskedLMHead`). The trained
encoder is a backbone for other text runs (`transfer_features`; a text classifier can reuse
its vocabulary and encoder), and `predict` fills in "[MASK]"s.

>>> import kdl
>>> lm = kdl.recipes.language_model("sst2", extra_sources=["multi30k/task1_raw/train.en.gz"],
...                                 data_root="../shared/data")                 # doctest: +SKIP
>>> lm.fit()                                                                   # doctest: +SKIP
>>> print(lm.evaluate())          # masked-token accuracy and perplexity on the test split  # doctest: +SKIP
>>> lm.predict("a [MASK] and funny film").filled()                             # doctest: +SKIP
['a smart and funny film']

Masking is seeded: training batches get new masks every epoch (a seeded random number per
batch, `tf.data.Dataset.random`, drawn anew each epoch), reproducibly for a given `seed`; the
validation and test splits get the same masks in every process, run and backend
(`EVALUATION_MASK_SEED`, a counter per batch), so their scores are reproducible.
"""

import dataclasses
import functools
import math
import random
import threading

import keras
import numpy as np
import tensorflow as tf

from kdl import models
from kdl.config import CardConfig, DataConfig, ModelConfig, TrackConfig, TrainConfig, setting
from kdl.data import Tokenizer, batches
from kdl.data.corpus import load_corpus
from kdl.data.tokenizers import WORDPIECE_RESERVED
from kdl.errors import ConfigError, DataError
from kdl.models.text.language_model import SEQUENCE_FEATURES
from kdl.models.text.language_model import language_model as build_language_model
from kdl.recipes.recipe import Recipe, as_strings
from kdl.recipes.results import MASK, MASK_PATTERN, MaskFilling
from kdl.recipes.tokenized import TokenizedText

EVALUATION_MASK_SEED = 0     # validation and test masks: the same for every run, seed and backend
MASK_SEED_STRIDE = 1_000_003  # unshuffled batches: batch i of seed s is masked with seed s x this + i
UNKNOWN = "[UNK]"            # the "words" tokenizer's id 1: never masked (its true word is unknown)


# --- the config -----------------------------------------------------------------------------------


@dataclasses.dataclass
class LanguageModelDataConfig(DataConfig):
    source: str = "sst2"            # a text/CSV/TSV file, a GLUE or line-file folder (see load_corpus)
    extra_sources: list[str] = dataclasses.field(default_factory=list)  # more training text (all of it)
    text_column: str = "sentence"   # CSV/TSV/GLUE: the column read (labels are ignored)
    batch_size: int = setting(64, at_least=1, pipeline=True)
    validation_split: float = setting(0.05, at_least=0, below=1)
    max_length: int = setting(32, at_least=2, pipeline=True)      # tokens per text: cut or padded
    vocabulary_size: int = setting(16_000, at_least=4, pipeline=True)  # learned on train, [MASK] included
    tokenizer: str = setting("words", pipeline=True)   # "words" (TextVectorization) or "wordpiece"
    ngrams: int = setting(1, at_least=1, pipeline=True)  # 1 only: kept so a text classifier reads the run
    mask_rate: float = setting(0.15, above=0, below=1, pipeline=True)   # share of tokens picked to predict
    max_masks: int = setting(0, at_least=0, pipeline=True)  # per text at most; 0: max_length x rate + 1


@dataclasses.dataclass
class LanguageModelModelConfig(ModelConfig):
    name: str = "transformer"       # options: embedding, blocks, heads, intermediate, dropout


@dataclasses.dataclass
class PredictConfig:
    top_k: int = setting(5, at_least=1)      # candidate tokens predict lists per [MASK]
    examples: int = setting(5, at_least=0)   # masked tokens shown in the evaluation report


@dataclasses.dataclass
class LanguageModelConfig:
    task: str = "language_model"
    seed: int = 0
    data: LanguageModelDataConfig = dataclasses.field(default_factory=LanguageModelDataConfig)
    model: LanguageModelModelConfig = dataclasses.field(default_factory=LanguageModelModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=5, learning_rate=1e-3, schedule="cosine"))
    predict: PredictConfig = dataclasses.field(default_factory=PredictConfig)
    track: TrackConfig = dataclasses.field(default_factory=TrackConfig)
    card: CardConfig = dataclasses.field(default_factory=CardConfig)


# --- the recipe -----------------------------------------------------------------------------------


_MASKING = threading.Lock()     # the masker draws from Python's `random`: one batch at a time


@dataclasses.dataclass
class MaskedTexts:
    """What `prepare_inputs` makes of the texts given to predict."""

    texts: list
    token_ids: np.ndarray       # (N, max_length) int32, [MASK] ids where the texts have "[MASK]"
    positions: np.ndarray       # (N, most masks of a text) int32, 0-padded
    counts: np.ndarray          # (N,) masks per text


class LanguageModel(TokenizedText, Recipe):
    """Raw text in, a pretrained text encoder out; `predict` fills in "[MASK]"s. Build it with
    `kdl.recipes.language_model`.

    The tokenizer (`kdl.data.Tokenizer`, the text classifier's) is learned on the training split
    on first use, with a "[MASK]" token added, and saved as `vocabulary.txt` in the run directory.
    """

    Config = LanguageModelConfig
    modality = "text"
    model_kind = "masked_lm_backbone"
    loader = staticmethod(load_corpus)
    learned = ("tokenizer",)
    Result = MaskFilling

    # -- vocabulary and masking ---------------------------------------------------------------------
    @functools.cached_property
    def tokenizer(self):
        """The tokenizer: learned on the training split on first use, or loaded with the run."""
        data = self.config.data
        if data.ngrams != 1:
            raise ConfigError(f"data.ngrams must be 1 for a language model (word-pair tokens would give the "
                              f"masked words away); got {data.ngrams}")
        texts = self.data.splits["train"]
        if data.tokenizer == "words":     # [MASK] is one of the vocabulary_size ids, never made from text
            learned = Tokenizer.learn(texts, kind="words", vocabulary_size=data.vocabulary_size - 1,
                                      max_length=data.max_length)
            return Tokenizer([MASK, *learned.vocabulary], kind="words", max_length=data.max_length)
        return Tokenizer.learn(texts, kind=data.tokenizer, vocabulary_size=data.vocabulary_size,
                               max_length=data.max_length)    # "wordpiece": [MASK] is a reserved token

    @property
    def tokens(self):
        """The vocabulary by token id: what each id the model predicts stands for."""
        if self.tokenizer.kind == "words":
            return ["", UNKNOWN, *self.tokenizer.vocabulary]
        return list(self.tokenizer.vocabulary)

    @property
    def special_ids(self):
        """Token ids never masked nor offered as candidates: padding, unknown, [MASK], reserved."""
        reserved = {"", MASK, UNKNOWN, *WORDPIECE_RESERVED}
        return tuple(i for i, token in enumerate(self.tokens) if token in reserved)

    @property
    def max_masks(self):
        data = self.config.data
        return data.max_masks or min(data.max_length, math.ceil(data.max_length * data.mask_rate) + 1)

    @functools.cached_property
    def masker(self):
        """The keras-hub MaskedLMMaskGenerator the pipeline masks token ids with."""
        import keras_hub

        return keras_hub.layers.MaskedLMMaskGenerator(
            vocabulary_size=self.tokenizer.vocabulary_size, mask_selection_rate=self.config.data.mask_rate,
            mask_token_id=self.tokenizer.token_id(MASK), mask_selection_length=self.max_masks,
            unselectable_token_ids=list(self.special_ids))

    def _mask(self, token_ids, seed):
        """(masked ids (B, L), mask positions (B, P), true ids (B, P), 0 where no mask) of a batch of
        token ids (numpy), by the MaskedLMMaskGenerator, its random draws seeded with `seed`."""
        with _MASKING:
            state = random.getstate()
            random.seed(int(seed))
            try:
                masked = self.masker.call(token_ids)     # eager: the layer's Python path, seeded above
            finally:
                random.setstate(state)
        return tuple(np.asarray(keras.ops.convert_to_numpy(masked[name]), "int32")
                     for name in ("token_ids", "mask_positions", "mask_ids"))

    def _token_ids(self, split):
        """A split as unbatched token ids (max_length,) int32, its cardinality kept."""
        texts = self.data.splits[split]
        ids = texts.batch(1024).map(self.tokenizer).unbatch()
        return ids.apply(tf.data.experimental.assert_cardinality(texts.cardinality()))

    def batches(self, split, shuffle=False):
        """Batches of ({"token_ids": (B, L), "mask_positions": (B, P)}, true ids (B, P), 0 = no mask).

        Each batch's masks are seeded by a number of their own. Shuffled (training) batches take
        it from `tf.data.Dataset.random`, drawn anew every epoch and seeded as the shuffle is, so
        the masks change each epoch. The batches of the other splits (and unshuffled training
        batches) take batch i's from a counter, the same in every process and on every backend
        (TF's global seed plays no part), so a split is masked the same way every time."""
        data, length, width = self.config.data, self.config.data.max_length, self.max_masks
        ids = batches(self._token_ids(split), data.batch_size, shuffle=shuffle, seed=self.config.seed)
        if shuffle:
            seeds = tf.data.Dataset.random(seed=self.config.seed, rerandomize_each_iteration=True)
        else:
            first = self.config.seed if split == "train" else EVALUATION_MASK_SEED
            seeds = tf.data.Dataset.counter(start=first * MASK_SEED_STRIDE)

        def mask(token_ids, batch_seed):
            masked, positions, labels = tf.numpy_function(self._mask, [token_ids, batch_seed],
                                                          [tf.int32] * 3, stateful=False)
            return ({"token_ids": tf.ensure_shape(masked, [None, length]),
                     "mask_positions": tf.ensure_shape(positions, [None, width])},
                    tf.ensure_shape(labels, [None, width]))

        return tf.data.Dataset.zip(ids, seeds).map(mask).prefetch(tf.data.AUTOTUNE)

    # -- model and training -------------------------------------------------------------------------
    def build_model(self):
        model = self.config.model
        return build_language_model(self.config.data.max_length, self.tokenizer.vocabulary_size,
                                    backbone=model.name, **model.options)

    def compile_arguments(self):
        return {"loss": models.MaskedCrossentropy(label_smoothing=0.0), "metrics": [models.masked_accuracy]}

    def transfer_features(self):
        """The padding-masked mean (`kdl.models.text.backbones.masked_mean`) of the
        "sequence_features" over the "token_ids" input (B, D). It is computed in a small model of
        its own, "masked_mean_pooling": the names of its operations then cannot clash with those
        of a model loaded from model.keras (whose `not_equal` the pooling's would repeat)."""
        from kdl.models.text.backbones import masked_mean

        sequence, token_ids = self.model.get_layer(SEQUENCE_FEATURES).output, self.transfer_inputs()
        x = keras.Input(sequence.shape[1:], dtype=sequence.dtype)                   # (B, L, D)
        ids = keras.Input(token_ids.shape[1:], dtype=token_ids.dtype)               # (B, L)
        pooling = keras.Model([x, ids], masked_mean(x, ids), name="masked_mean_pooling")
        return pooling([sequence, token_ids])                                       # (B, D)

    def transfer_inputs(self):
        """The model input `transfer_features` depends on: "token_ids" (B, L) alone, not
        "mask_positions", which only the MaskedLMHead reads."""
        return self.model.get_layer("token_ids").output                     # (B, L)

    # -- predict and evaluate -----------------------------------------------------------------------
    def prepare_inputs(self, texts):
        """Accepts one string or a list/array of strings, each with at least one "[MASK]" (any case)
        where a token is to be filled in, within the first data.max_length tokens."""
        texts = as_strings(texts)
        pieces = [MASK_PATTERN.split(text) for text in texts]
        missing = next((i for i, parts in enumerate(pieces) if len(parts) == 1), None)
        if missing is not None:
            raise DataError(f"predict() fills in masked words: text {missing} ({texts[missing][:80]!r}) has "
                            f"no {MASK}; mark each word to fill in with {MASK}, e.g. 'a {MASK} film'")
        length, mask_id = self.config.data.max_length, self.tokenizer.token_id(MASK)
        lists = iter(self.tokenizer.to_lists([part for parts in pieces for part in parts]))
        rows = []
        for i, parts in enumerate(pieces):
            ids, positions = [], []
            for j, _ in enumerate(parts):
                if j:
                    positions.append(len(ids))
                    ids.append(mask_id)
                ids += [token for token in next(lists) if token]
            if positions[-1] >= length:
                raise DataError(f"predict(): text {i} ({texts[i][:80]!r}) has a {MASK} after its first "
                                f"{length} tokens; the model reads {length} tokens a text (data.max_length): "
                                "shorten it")
            rows.append((ids[:length], positions))
        token_ids = np.zeros((len(texts), length), "int32")
        mask_positions = np.zeros((len(texts), max(len(p) for _, p in rows)), "int32")
        for row, (ids, positions) in enumerate(rows):
            token_ids[row, :len(ids)] = ids
            mask_positions[row, :len(positions)] = positions
        return MaskedTexts(texts, token_ids, mask_positions, np.array([len(p) for _, p in rows]))

    def predict_inputs(self, x, top_k=None):
        """The candidates for each [MASK] of the texts `x`; top_k: how many rows() and lines() list
        (default: predict.top_k)."""
        logits = self.model.predict({"token_ids": x.token_ids, "mask_positions": x.positions},
                                    batch_size=self.config.data.batch_size, verbose=0)    # (N, P, V)
        real = np.arange(x.positions.shape[1])[None, :] < x.counts[:, None]              # (N, P)
        result = self._result(x.texts, x.counts, _softmax(np.asarray(logits)[real]), top_k)
        result.top()      # a bad top_k is an error now, not when the result is printed
        return result

    def predict_split(self, split):
        """The masked split's Result (texts shown with [MASK] where a token was picked) and the true
        token ids of its masks."""
        texts, counts, probabilities, references = [], [], [], []
        for x, labels in self.batches(split).as_numpy_iterator():
            logits = np.asarray(self.model.predict_on_batch(x))          # (B, P, V)
            real = labels != 0                                           # (B, P)
            probabilities.append(_softmax(logits[real]))                 # (masks, V)
            references.append(labels[real])
            counts.append(real.sum(axis=1))
            texts += self._masked_texts(x["token_ids"], x["mask_positions"], labels)
        vocabulary = self.tokenizer.vocabulary_size
        probabilities = (np.concatenate(probabilities) if probabilities
                         else np.zeros((0, vocabulary), "float32"))
        references = np.concatenate(references) if references else np.zeros(0, "int64")
        counts = np.concatenate(counts) if counts else np.zeros(0, "int64")
        return self._result(texts, counts, probabilities), references.astype("int64")

    def _result(self, texts, counts, probabilities, top_k=None):
        settings = self.config.predict
        return MaskFilling(list(texts), np.asarray(counts, "int64"), probabilities, self.tokens,
                           self.special_ids, settings.top_k if top_k is None else top_k, settings.examples)

    def _masked_texts(self, token_ids, positions, labels):
        """Each row's original tokens as text, "[MASK]" at its masked positions."""
        tokens, texts = self.tokens, []
        for ids, where, truth in zip(token_ids, positions, labels):
            masked = set(where[truth != 0].tolist())
            words = [MASK if j in masked else tokens[i]
                     for j, i in enumerate(ids.tolist()) if i or j in masked]
            if self.tokenizer.kind == "wordpiece":
                glued = []
                for word in words:
                    if word.startswith("##") and glued:
                        glued[-1] += word[2:]
                    else:
                        glued.append(word)
                words = glued
            texts.append(" ".join(words))
        return texts

    def output_width(self):
        return self.tokenizer.vocabulary_size

    def evaluation_options(self):
        return {"extra_sources": []}     # another source is scored alone, without this run's extras

    # -- export -------------------------------------------------------------------------------------
    def export_sample(self):
        from kdl import export

        return export.sample_inputs(self.model, {"token_ids": self.tokenizer.vocabulary_size,
                                                 "mask_positions": self.config.data.max_length})

    def export_description(self):
        data = self.config.data
        return {**super().export_description(),
                "input_meaning": ("token_ids: int32 (batch, max_length) ids of the texts, 0 for padding, "
                                  f"the id of {MASK} where a token is to be predicted; mask_positions: int32 "
                                  "(batch, masks) the positions to predict. Tokenize with the vocabulary "
                                  "file (one token a line) the way kdl.data.Tokenizer does"),
                "output_meaning": ("logits over the vocabulary at each masked position "
                                   "(batch, masks, vocabulary)"),
                "tokenizer": {"kind": data.tokenizer, "max_length": data.max_length,
                              "ngrams": data.ngrams, "vocabulary": self.vocabulary_file,
                              "mask_token": MASK}}

    def card_notes(self):
        data = self.config.data
        return [f"Fills in {MASK}: input is text with {MASK} where a token is to be predicted, within its "
                f"first {data.max_length} tokens; it lists the {self.config.predict.top_k} likeliest of the "
                f"{self.tokenizer.vocabulary_size:,} tokens of its {data.tokenizer} vocabulary "
                f"({self.vocabulary_file}) per {MASK}. Words outside it all read as one unknown token.",
                "Made to be fine-tuned: a text classifier with `model.backbone` = this run starts from its "
                "encoder and vocabulary; on its own it answers no task but filling in masked words.",
                *super().card_notes()]

    # -- run directory ------------------------------------------------------------------------------
    def check_vocabulary(self, path):
        if MASK not in self.tokenizer.vocabulary:
            raise ConfigError(f"{path} has no {MASK} token: it is not a language model's vocabulary")


def _softmax(logits):
    """Probabilities (float32) of logits (..., V), computed in float64."""
    logits = np.asarray(logits, np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def language_model(dataset="sst2", model="transformer", *, data_root=None, **overrides):
    """A new masked-language-model recipe.

    dataset: raw text (see kdl.data.corpus.load_corpus): a text file, one text a line
        (.txt, or gzip'd .gz); a .csv/.tsv file (its `text_column`; labels ignored); a GLUE folder
        (train.tsv, dev.tsv: "sst2"); a folder of line files (train.txt[.gz], test.txt[.gz]); a
        list of strings, or {"train": [...], "test": [...]}. More training text:
        `extra_sources=["multi30k/task1_raw/train.en.gz", ...]`.
    model: "transformer" (keras-hub token and position embedding and encoder blocks).
    overrides: any config field by name (epochs=3, batch_size=128, max_length=32,
        vocabulary_size=8000, tokenizer="wordpiece", mask_rate=0.15, top_k=10, ...); other names
        are the model's options (embedding, blocks, heads, intermediate, dropout).
    """
    return LanguageModel.new(dataset, model, data_root, overrides)
