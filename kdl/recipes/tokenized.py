"""What the two recipes that tokenize text with one `kdl.data.Tokenizer` share (text_classifier,
language_model): the vocabulary file of a run directory, and the check that model.keras takes
the token ids that vocabulary and recipe.toml make. A language model's run is then also a
text classifier's backbone with the same vocabulary file.

>>> TokenizedText.vocabulary_file
'vocabulary.txt'
"""

import pathlib

import keras

from kdl.data import Tokenizer
from kdl.errors import ConfigError


class TokenizedText:
    """Mixed into a Recipe whose `tokenizer` attribute encodes its texts (data fields `tokenizer`,
    `max_length`, `ngrams`) and whose model takes them as the input "token_ids"."""

    vocabulary_file = "vocabulary.txt"

    def save_assets(self, path):
        self.tokenizer.save(pathlib.Path(path) / self.vocabulary_file)

    def load_assets(self, path):
        vocabulary = pathlib.Path(path) / self.vocabulary_file
        if not vocabulary.is_file():
            raise ConfigError(f"run directory {str(path)!r} has no {self.vocabulary_file}; a {self.task} "
                              "run needs the vocabulary its tokenizer learned")
        data = self.config.data
        self.tokenizer = Tokenizer.load(vocabulary, kind=data.tokenizer, max_length=data.max_length,
                                        ngrams=data.ngrams)
        self.check_vocabulary(vocabulary)

    def check_vocabulary(self, path):
        """Raise ConfigError if the loaded vocabulary (read from `path`) cannot serve this task."""

    def input_mismatch(self):
        """A model.keras that takes other token ids than vocabulary.txt and recipe.toml make (files
        of different runs) would give NaN or a backend error at predict: checked on load."""
        length = self.model.get_layer("token_ids").output.shape[1]
        embeddings = [layer.input_dim for layer in self.model._flatten_layers()
                      if isinstance(layer, keras.layers.Embedding)]
        width = max(embeddings, default=None)      # the token embedding (BERT's segments have 2)
        expected = self.tokenizer.vocabulary_size, self.config.data.max_length
        if (width is not None and width != expected[0]) or length != expected[1]:
            return (f"its {self.vocabulary_file} and recipe.toml make {expected[1]} token ids from 0 to "
                    f"{expected[0] - 1} per text, but model.keras takes {length} ids from 0 to "
                    f"{width - 1 if width else '?'}")
        return None
