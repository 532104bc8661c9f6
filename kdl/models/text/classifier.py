"""The text classifier: int32 token ids (B, max_length) in, class probabilities out, any "text_backbone".

Tokenising raw strings is not part of the model (string ops exist only in TensorFlow): the
recipe's `kdl.data.Tokenizer` runs in the tf.data pipeline, so the model runs on every backend.

>>> model = text_classifier(16, vocabulary_size=100, num_classes=2, backbone="fasttext")
>>> model.output_shape
(None, 2)
"""

import keras
from keras import layers

from kdl.models.registry import check_options, get


def text_classifier(max_length, vocabulary_size, num_classes, backbone="transformer", **options):
    """Backbone over token ids -> softmax head."""
    build_backbone = get("text_backbone", backbone)
    check_options(build_backbone, options)
    token_ids = keras.Input(shape=(max_length,), dtype="int32", name="token_ids")   # (B, L)
    x = build_backbone(token_ids, vocabulary_size, **options)                     # (B, F)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                           name="probabilities")(x)                               # (B, num_classes)
    return keras.Model(token_ids, outputs, name=f"text_classifier_{backbone}")
