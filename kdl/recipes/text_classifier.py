"""The text classification recipe: raw strings in, class names and probabilities out.

>>> import kdl
>>> clf = kdl.recipes.text_classifier("sst2", model="cnn", data_root="../shared/data")  # doctest: +SKIP
>>> clf.fit()                                  # 81-82% dev accuracy in ~1 min on 2 CPU cores # doctest: +SKIP
>>> print(clf.evaluate())                      # doctest: +SKIP
>>> clf.predict(["a gripping, funny film", ""]).labels   # doctest: +SKIP
"""

import dataclasses
import functools

from kdl import models
from kdl.config import CardConfig, ClassificationDataConfig, ModelConfig, TrackConfig, TrainConfig, setting
from kdl.data import Tokenizer, batches, load_texts, tokenized
from kdl.recipes.classifier import Classifier
from kdl.recipes.recipe import as_strings
from kdl.recipes.tokenized import TokenizedText


@dataclasses.dataclass
class TextDataConfig(ClassificationDataConfig):
    source: str = "sst2"            # a GLUE folder, a .csv/.tsv file, a folder of class folders, "tfds:NAME"
    text_column: str = "sentence"   # CSV/TSV/GLUE header names
    label_column: str = "label"
    max_length: int = setting(64, at_least=1, pipeline=True)   # token ids per example: cut or padded
    vocabulary_size: int = setting(20_000, at_least=2, pipeline=True)  # learned on the training split
    tokenizer: str = setting("words", pipeline=True)   # "words" (TextVectorization) or "wordpiece"
    ngrams: int = setting(1, at_least=1, pipeline=True)  # 2 adds word-pair tokens (fastText bigrams)


@dataclasses.dataclass
class TextModelConfig(ModelConfig):
    name: str = "transformer"       # a text backbone in kdl.models: transformer, cnn, fasttext, bert


@dataclasses.dataclass
class TextClassifierConfig:
    task: str = "text_classifier"
    seed: int = 0
    data: TextDataConfig = dataclasses.field(default_factory=TextDataConfig)
    model: TextModelConfig = dataclasses.field(default_factory=TextModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=5, learning_rate=1e-3, schedule="cosine", early_stopping=2))
    track: TrackConfig = dataclasses.field(default_factory=TrackConfig)
    card: CardConfig = dataclasses.field(default_factory=CardConfig)


class TextClassifier(TokenizedText, Classifier):
    """Strings in, class names and probabilities out. Build it with `kdl.recipes.text_classifier`.

    The tokenizer (`kdl.data.Tokenizer`) is learned on the training split on first use, runs in
    the tf.data pipeline, and is saved as `vocabulary.txt` in the run directory.
    """

    Config = TextClassifierConfig
    modality = "text"
    model_kind = "text_backbone"
    loader = staticmethod(load_texts)
    learned = ("tokenizer",)
    backbone_fields = ("tokenizer", "vocabulary_size", "max_length", "ngrams")

    @functools.cached_property
    def tokenizer(self):
        """The tokenizer: learned on the training split on first use, or loaded with the run; with
        a keras-hub preset as model.backbone, the preset's own WordPiece vocabulary."""
        data = self.config.data
        preset = self._preset()
        if preset is not None:
            return self._preset_tokenizer(preset)
        options = dict(kind=data.tokenizer, max_length=data.max_length, ngrams=data.ngrams)
        texts = self.data.splits["train"].map(lambda text, label: text)
        return Tokenizer.learn(texts, vocabulary_size=data.vocabulary_size, **options)

    def _preset(self):
        """The keras-hub preset (a name or a folder) model.backbone names, else None."""
        from kdl.recipes import transfer

        backbone = self.config.model.backbone
        if not backbone:
            return None
        kind, where = transfer.locate(backbone, self.data_root)
        return where if kind == "preset" else None

    def _preset_tokenizer(self, preset):
        """The preset's WordPiece tokenizer; data.tokenizer becomes "wordpiece" (vocabulary.txt
        is then read back as one), data.vocabulary_size does not apply."""
        from kdl.models import presets

        tokenizer = presets.tokenizer(preset, max_length=self.config.data.max_length)
        self.config.data.tokenizer = "wordpiece"
        return tokenizer

    def build_model(self):
        model = self.config.model
        return models.text_classifier(self.config.data.max_length, self.tokenizer.vocabulary_size,
                                      len(self.class_names), backbone=model.name, **model.options)

    def build_from_preset(self, preset):
        """The keras-hub preset's text backbone with a new head for this data's classes
        (kdl.models.presets.text_classifier); the tokenizer is the preset's too."""
        from kdl.models import presets

        if "tokenizer" not in self.__dict__:        # not yet made from model.backbone
            self.tokenizer = self._preset_tokenizer(preset)
        return presets.text_classifier(preset, self.config.data.max_length, len(self.class_names),
                                       vocabulary_size=self.tokenizer.vocabulary_size)

    def explain_point(self):
        """The token embeddings (B, L, D), when the model embeds its token ids at its top level."""
        return token_embeddings(self.model)

    def batches(self, split, shuffle=False):
        """The batched pipeline of one split: (token ids (B, max_length) int32, labels (B,))."""
        return batches(tokenized(self.data.splits[split], self.tokenizer), self.config.data.batch_size,
                       shuffle=shuffle, seed=self.config.seed)

    def prepare_inputs(self, texts):
        """Accepts one string or a list/array of strings ("" is fine: it is all padding)."""
        return self.tokenizer.to_numpy(as_strings(texts))

    def export_sample(self):
        from kdl import export

        return export.sample_inputs(self.model, self.tokenizer.vocabulary_size)

    def export_description(self):
        data = self.config.data
        return {**super().export_description(), "input_meaning": (
            "int32 token ids (batch, max_length), 0 for padding: tokenize each text with the "
            "vocabulary file (one token a line) the way kdl.data.Tokenizer does"),
            "tokenizer": {"kind": data.tokenizer, "max_length": data.max_length,
                          "ngrams": data.ngrams, "vocabulary": "vocabulary.txt"}}

    def card_notes(self):
        data = self.config.data
        return [f"Input: text in the language of its training texts, tokenized with the {data.tokenizer} "
                f"vocabulary of {self.tokenizer.vocabulary_size:,} tokens learned from them (vocabulary.txt"
                f"{', plus word pairs' if data.ngrams > 1 else ''}) and cut or padded to {data.max_length} "
                f"tokens: only a text's first {data.max_length} tokens count, and every word outside the "
                "vocabulary reads as the same unknown token.", *super().card_notes()]

def token_embeddings(model):
    """(the name of the model's top-level layer that embeds its token ids, "token embeddings"), or
    None (the embedding is inside a nested model, as in a keras-hub BERT backbone)."""
    import keras
    import keras_hub

    kinds = (keras.layers.Embedding, keras_hub.layers.TokenAndPositionEmbedding)
    layer = next((layer for layer in model.layers if isinstance(layer, kinds)), None)
    return None if layer is None else (layer.name, "token embeddings")


def text_classifier(dataset="sst2", model="transformer", *, data_root=None, **overrides):
    """A new text classification recipe.

    dataset: a GLUE folder (train.tsv, dev.tsv), a .csv/.tsv file, a folder with one
        sub-folder of .txt files per class, "tfds:NAME", or `(texts, labels)` /
        `{"train": (texts, labels), "test": (texts, labels)}` (see kdl.data.load_texts).
    model: "transformer", "cnn", "fasttext" (word + word-pair tokens unless ngrams= says
        otherwise) or "bert" (a new keras-hub BertBackbone).
    overrides: any config field by name (epochs=3, batch_size=64, max_length=128,
        vocabulary_size=10000, tokenizer="wordpiece", text_column="review", seed=1, ...);
        other names are the backbone's options (e.g. embedding=32, blocks=1, dropout=0.2).
        backbone="hub:bert_tiny_en_uncased" (or a local keras-hub preset folder) starts from
        that preset's encoder and WordPiece vocabulary instead of a new `model`.
    """
    defaults = {"ngrams": 2 if model == "fasttext" else 1}
    return TextClassifier.new(dataset, model, data_root, overrides, **defaults)

