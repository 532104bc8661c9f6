"""Tokenisers for text recipes: raw strings -> (B, max_length) int32 token ids, 0 for padding.

They run in the tf.data pipeline (string ops exist only in TensorFlow), never inside the
model, so a model takes token ids on every backend. The vocabulary is learned on the
training split only and saved as a file beside the model; `Tokenizer.load` restores it.

- "words": keras `TextVectorization`: lower-cased, punctuation stripped, split on spaces;
  `ngrams=2` adds a token per word pair (fastText-style bigrams). Id 1 is out-of-vocabulary.
- "wordpiece": a keras-hub WordPiece vocabulary (sub-words; also the BERT presets' tokeniser).
  `lowercase=False` keeps the case (translation: references are scored cased), `max_length=None`
  gives untruncated id lists (`to_lists`), and `detokenize` turns ids back into readable text.

>>> import tensorflow as tf
>>> tokenizer = Tokenizer.learn(tf.data.Dataset.from_tensor_slices(["a good film", "a bad film"]),
...                             vocabulary_size=100, max_length=5)
>>> tokenizer.vocabulary
['film', 'a', 'good', 'bad']
>>> tokenizer.to_numpy(["A good day!", ""]).tolist()
[[3, 4, 1, 0, 0], [0, 0, 0, 0, 0]]
"""

import pathlib
import re

import keras
import numpy as np
import tensorflow as tf

from kdl import progress
from kdl.data.io import decode_text, split_lines
from kdl.errors import ConfigError, DataError

KINDS = ("words", "wordpiece")
WORDPIECE_RESERVED = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]   # [PAD] has id 0


class Tokenizer:
    """Strings in, int32 token ids (B, max_length) out; call it on tf tensors inside `dataset.map`."""

    def __init__(self, vocabulary, *, kind="words", max_length=64, ngrams=1, lowercase=True):
        _check(kind, ngrams)
        self.kind, self.max_length, self.ngrams = kind, max_length, ngrams
        self.lowercase = lowercase      # "wordpiece" only: "words" always lower-cases
        self.vocabulary = [str(token) for token in vocabulary]
        if kind == "words":
            self.layer = keras.layers.TextVectorization(
                vocabulary=self.vocabulary, output_sequence_length=max_length,
                ngrams=ngrams if ngrams > 1 else None)
        else:
            import keras_hub

            self.layer = keras_hub.tokenizers.WordPieceTokenizer(
                vocabulary=self.vocabulary, sequence_length=max_length, lowercase=lowercase)

    @classmethod
    def learn(cls, texts, *, kind="words", vocabulary_size=20_000, max_length=64, ngrams=1,
              lowercase=True):
        """A tokenizer whose vocabulary is learned from `texts`, a tf.data.Dataset of strings."""
        _check(kind, ngrams)
        batched = texts.batch(1024)
        count = int(texts.cardinality())
        what = f"learning a {kind} vocabulary" + (f" from {count:,} texts" if count >= 0 else "")
        with progress.stage(what):
            if kind == "words":
                layer = keras.layers.TextVectorization(max_tokens=vocabulary_size,
                                                       ngrams=ngrams if ngrams > 1 else None)
                layer.adapt(batched)
                vocabulary = layer.get_vocabulary(include_special_tokens=False)
            else:
                import keras_hub

                vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
                    batched, vocabulary_size, lowercase=lowercase, reserved_tokens=WORDPIECE_RESERVED)
        if not [token for token in vocabulary if token not in WORDPIECE_RESERVED]:
            raise DataError("the training texts hold no tokens (every text is empty, or only "
                            "punctuation and spaces): there is no vocabulary to learn")
        return cls(vocabulary, kind=kind, max_length=max_length, ngrams=ngrams, lowercase=lowercase)

    @classmethod
    def load(cls, path, **options):
        """The tokenizer saved by `save(path)`; `options` are kind, max_length, ngrams, lowercase.

        A file that is not UTF-8, is empty, has an empty line or a token twice, or that the
        tokenizer refuses (a wordpiece vocabulary without "[UNK]") is a DataError naming it."""
        path = pathlib.Path(path)
        try:
            tokens = split_lines(decode_text(path.read_bytes(), path))
        except OSError as error:
            raise DataError(f"cannot read the vocabulary file {path}: {error.strerror or error}") from None
        if not tokens:
            raise DataError(f"the vocabulary file {path} is empty; expected one token a line, as "
                            "Tokenizer.save writes it")
        seen = {}
        for line, token in enumerate(tokens, start=1):
            if not token:      # " " and U+00A0 can be WordPiece tokens (Multi30k German has them)
                raise DataError(f"{path}, line {line}: an empty token; a vocabulary file holds one "
                                "token a line, none blank")
            if token in seen:
                raise DataError(f"{path}, line {line}: the token {token!r} again (first on line "
                                f"{seen[token]}); a vocabulary lists each token once")
            seen[token] = line
        _check(options.get("kind", "words"), options.get("ngrams", 1))
        try:
            return cls(tokens, **options)
        except ValueError as error:     # from Keras: a reserved token misplaced, "[UNK]" missing
            message = " ".join(str(error).split())
            raise DataError(f"the vocabulary file {path} does not suit a {options.get('kind', 'words')!r} "
                            f"tokenizer: {message}") from None

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

    def to_lists(self, texts, batch_size=1024):
        """A list of strings -> one list of token ids per string, untruncated when max_length is None."""
        texts = list(texts)
        batches = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string)).batch(batch_size)
        lists = []
        with progress.bar(what="tokenizing", total=len(texts), unit="texts") as shown:
            for ids in batches.map(self.layer).as_numpy_iterator():
                rows = ids.to_list() if hasattr(ids, "to_list") else [row.tolist() for row in ids]
                lists += rows
                shown.update(len(rows))
        return lists

    def token_id(self, token):
        """The id of a token of the vocabulary ("wordpiece": reserved tokens such as "[SEP]" too)."""
        offset = 2 if self.kind == "words" else 0
        try:
            return self.vocabulary.index(token) + offset
        except ValueError:
            raise ConfigError(f"token {token!r} is not in the vocabulary") from None

    def tokens(self, ids):
        """Rows of token ids -> rows of token strings, one per position ("" for padding, id 0).

        >>> Tokenizer(["film", "good"], max_length=4).tokens([[3, 1, 2, 0]])
        [['good', '[UNK]', 'film', '']]
        """
        names = ["", "[UNK]", *self.vocabulary] if self.kind == "words" else ["", *self.vocabulary[1:]]
        return [[names[i] if 0 <= i < len(names) else "[UNK]" for i in np.asarray(row).tolist()]
                for row in ids]

    def detokenize(self, ids):
        """Rows of token ids -> readable strings ("wordpiece" only): reserved tokens dropped,
        "##" pieces glued to the previous piece, no space before closing punctuation or around
        hyphens ("T - Shirt ." -> "T-Shirt.")."""
        if self.kind != "wordpiece":
            raise ConfigError("detokenize needs the wordpiece tokenizer (words lose case and punctuation)")
        reserved = set(WORDPIECE_RESERVED)
        texts = []
        for row in ids:
            pieces = [self.vocabulary[i] for i in row if 0 <= i < len(self.vocabulary)]
            words = []
            for piece in pieces:
                if piece in reserved:
                    continue
                if piece.startswith("##"):
                    if words:
                        words[-1] += piece[2:]
                    else:
                        words.append(piece[2:])
                else:
                    words.append(piece)
            texts.append(_join_words(words))
        return texts


def _join_words(words):
    """Words and punctuation -> a sentence with the usual spacing."""
    text = " ".join(words)
    text = re.sub(r" ([.,!?;:%)\]}])", r"\1", text)          # no space before closing marks
    text = re.sub(r"([(\[{]) ", r"\1", text)                 # ... nor after opening ones
    text = re.sub(r"(\w) ?([-/]) ?(?=\w)", r"\1\2", text)    # compounds: T - Shirt -> T-Shirt
    text = re.sub(r"(\w) ' (s|t|re|ve|ll|d|m)\b", r"\1'\2", text)  # man ' s -> man's
    return text


def _check(kind, ngrams):
    if kind not in KINDS:
        raise ConfigError(f"data.tokenizer must be one of {', '.join(KINDS)}; got {kind!r}")
    if not (isinstance(ngrams, int) and ngrams >= 1) or (kind == "wordpiece" and ngrams > 1):
        raise ConfigError(
            f"data.ngrams must be a positive int (1 with the wordpiece tokenizer); got {ngrams!r}"
        )
