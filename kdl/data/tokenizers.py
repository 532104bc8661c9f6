"""Tokenisers for text recipes: raw strings -> (B, max_length) int32 token ids, 0 for padding.

They run in the tf.data pipeline (string ops exist only in TensorFlow), never inside the
model, so a model takes token ids on every backend. The vocabulary is learned on the
training split only and saved as a file beside the model; `Tokenizer.load` restores it.

- "words": keras `TextVectorization`: lower-cased, punctuation stripped, split on spaces;
  `ngrams=2` adds a token per word pair (fastText-style bigrams). Id 1 is out-of-vocabulary.
- "wordpiece": a keras-hub WordPiece vocabulary (sub-words; also the BERT presets' tokeniser).

>>> import tensorflow as tf
>>> tokenizer = Tokenizer.learn(tf.data.Dataset.from_tensor_slices(["a good film", "a bad film"]),
...                             vocabulary_size=100, max_length=5)
>>> tokenizer.vocabulary
['film', 'a', 'good', 'bad']
>>> tokenizer.to_numpy(["A good day!", ""]).tolist()
[[3, 4, 1, 0, 0], [0, 0, 0, 0, 0]]
"""

import pathlib

import keras
import numpy as np
import tensorflow as tf

from kdl.errors import ConfigError

KINDS = ("words", "wordpiece")
WORDPIECE_RESERVED = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]   # [PAD] has id 0


class Tokenizer:
    """Strings in, int32 token ids (B, max_length) out; call it on tf tensors inside `dataset.map`."""

    def __init__(self, vocabulary, *, kind="words", max_length=64, ngrams=1):
        _check(kind, ngrams)
        self.kind, self.max_length, self.ngrams = kind, max_length, ngrams
        self.vocabulary = [str(token) for token in vocabulary]
        if kind == "words":
            self.layer = keras.layers.TextVectorization(
                vocabulary=self.vocabulary, output_sequence_length=max_length,
                ngrams=ngrams if ngrams > 1 else None)
        else:
            import keras_hub

            self.layer = keras_hub.tokenizers.WordPieceTokenizer(
                vocabulary=self.vocabulary, sequence_length=max_length, lowercase=True)

    @classmethod
    def learn(cls, texts, *, kind="words", vocabulary_size=20_000, max_length=64, ngrams=1):
        """A tokenizer whose vocabulary is learned from `texts`, a tf.data.Dataset of strings."""
        _check(kind, ngrams)
        batched = texts.batch(1024)
        if kind == "words":
            layer = keras.layers.TextVectorization(max_tokens=vocabulary_size,
                                                   ngrams=ngrams if ngrams > 1 else None)
            layer.adapt(batched)
            vocabulary = layer.get_vocabulary(include_special_tokens=False)
        else:
            import keras_hub

            vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
                batched, vocabulary_size, lowercase=True, reserved_tokens=WORDPIECE_RESERVED)
        return cls(vocabulary, kind=kind, max_length=max_length, ngrams=ngrams)

    @classmethod
    def from_preset(cls, preset, *, max_length=64):
        """The WordPiece vocabulary of a keras-hub preset (e.g. a BERT preset directory)."""
        import keras_hub

        vocabulary = keras_hub.tokenizers.Tokenizer.from_preset(preset).get_vocabulary()
        return cls(vocabulary, kind="wordpiece", max_length=max_length)

    @classmethod
    def load(cls, path, **options):
        """The tokenizer saved by `save(path)`; `options` are kind, max_length, ngrams."""
        text = pathlib.Path(path).read_text(encoding="utf-8")
        return cls(text.removesuffix("\n").split("\n"), **options)

    def save(self, path):
        """Write the vocabulary, one token a line."""
        pathlib.Path(path).write_text("".join(f"{token}\n" for token in self.vocabulary), encoding="utf-8")

    @property
    def vocabulary_size(self):
        """The number of distinct ids the tokenizer emits (padding and out-of-vocabulary included)."""
        return len(self.vocabulary) + (2 if self.kind == "words" else 0)

    def __call__(self, texts):
        """(B,) tf.string -> (B, max_length) tf.int32."""
        return tf.cast(self.layer(texts), tf.int32)

    def to_numpy(self, texts, batch_size=256):
        """A list of strings -> (N, max_length) int32 numpy ids."""
        texts = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string))
        ids = texts.batch(batch_size).map(self)
        return np.concatenate(list(ids.as_numpy_iterator()))


def _check(kind, ngrams):
    if kind not in KINDS:
        raise ConfigError(f"data.tokenizer must be one of {', '.join(KINDS)}; got {kind!r}")
    if not (isinstance(ngrams, int) and ngrams >= 1) or (kind == "wordpiece" and ngrams > 1):
        raise ConfigError(f"data.ngrams must be a positive int (1 with the wordpiece tokenizer); got {ngrams!r}")
