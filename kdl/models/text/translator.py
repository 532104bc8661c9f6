"""The translator: a Transformer encoder-decoder over token ids (kind "translation_backbone"), its
output head, and its training loss and metric.

`translator(...)` builds the training model: `{"source_ids": (B, S), "target_ids": (B, T)}` int32
(0 is padding; target_ids start with the start token) -> next-token logits (B, T, V). The
backbone `transformer` is made of keras-hub layers (`TokenAndPositionEmbedding`,
`TransformerEncoder`, `TransformerDecoder`, pre-layer-norm), so their kernel names are the
standard ones; `kdl.models.text.beam_search.BeamSearch` finds them by their layer names.

>>> model = translator(source_vocabulary_size=50, target_vocabulary_size=60, max_length=9,
...                    encoder_layers=1, decoder_layers=1, width=16, heads=2, intermediate=32)
>>> model.output_shape
(None, None, 60)
>>> import numpy as np
>>> loss = MaskedCrossentropy(label_smoothing=0.0)            # uniform logits, one real token
>>> round(float(loss(np.array([[4, 0]]), np.zeros((1, 2, 60)))), 3), round(float(np.log(60)), 3)
(4.094, 4.094)
"""

import keras
from keras import layers, ops

from kdl.models.registry import check_options, get, register


def translator(source_vocabulary_size, target_vocabulary_size, max_length, backbone="transformer",
               **options):
    """Backbone (decoder hidden states) -> a dense layer to target-vocabulary logits.
    `max_length` is the longest input in tokens (either side)."""
    build_backbone = get("translation_backbone", backbone)
    check_options(build_backbone, options)
    source_ids = keras.Input(shape=(None,), dtype="int32", name="source_ids")        # (B, S)
    target_ids = keras.Input(shape=(None,), dtype="int32", name="target_ids")        # (B, T)
    y = build_backbone(source_ids, target_ids, source_vocabulary_size, target_vocabulary_size,
                       max_length, **options)                                        # (B, T, W)
    logits = layers.Dense(target_vocabulary_size, dtype="float32", name="logits")(y)  # (B, T, V)
    return keras.Model({"source_ids": source_ids, "target_ids": target_ids}, logits,
                       name=f"{backbone}_translator")


@register("translation_backbone", "transformer")
def transformer(source_ids, target_ids, source_vocabulary_size, target_vocabulary_size, max_length,
                encoder_layers=3, decoder_layers=3, width=256, heads=4, intermediate=1024, dropout=0.1):
    """Source and target token + position embeddings, pre-norm Transformer encoder and decoder
    stacks, each with a final layer norm -> decoder hidden states (B, T, width)."""
    import keras_hub  # here, not at the top: `import kdl.models` stays quick (keras_hub takes seconds)

    hub = keras_hub.layers
    source_mask = ops.not_equal(source_ids, 0)                                       # (B, S)
    x = hub.TokenAndPositionEmbedding(source_vocabulary_size, max_length, width,
                                      name="source_embedding")(source_ids)           # (B, S, W)
    x = layers.Dropout(dropout, name="source_dropout")(x)
    for i in range(encoder_layers):
        x = hub.TransformerEncoder(intermediate, heads, dropout=dropout, normalize_first=True,
                                   name=f"encoder_{i}")(x, padding_mask=source_mask)  # (B, S, W)
    encoded = layers.LayerNormalization(epsilon=1e-5, name="encoder_norm")(x)        # (B, S, W)
    y = hub.TokenAndPositionEmbedding(target_vocabulary_size, max_length, width,
                                      name="target_embedding")(target_ids)           # (B, T, W)
    y = layers.Dropout(dropout, name="target_dropout")(y)
    for i in range(decoder_layers):
        y = hub.TransformerDecoder(intermediate, heads, dropout=dropout, normalize_first=True,
                                   name=f"decoder_{i}")(
            y, encoded, encoder_padding_mask=source_mask)                            # (B, T, W)
    return layers.LayerNormalization(epsilon=1e-5, name="decoder_norm")(y)           # (B, T, W)


@keras.saving.register_keras_serializable(package="kdl")
class MaskedCrossentropy(keras.losses.Loss):
    """Cross-entropy over logits with label smoothing, averaged over the non-padding tokens
    (label 0 is padding and counts for nothing)."""

    def __init__(self, label_smoothing=0.1, name="masked_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")                                           # (B, T)
        one_hot = ops.one_hot(y_true, ops.shape(y_pred)[-1])                          # (B, T, V)
        losses = keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=True, label_smoothing=self.label_smoothing)  # (B, T)
        mask = ops.cast(ops.not_equal(y_true, 0), losses.dtype)                      # (B, T)
        # the batch mean of losses * mask / mean(mask) is the mean over real tokens
        return losses * mask / ops.maximum(ops.mean(mask), 1e-9)                     # (B, T)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def masked_accuracy(y_true, y_pred):
    """Next-token accuracy over the non-padding tokens (a progress metric)."""
    y_true = ops.cast(y_true, "int32")                                               # (B, T)
    mask = ops.cast(ops.not_equal(y_true, 0), "float32")                             # (B, T)
    hits = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")  # (B, T)
    return hits * mask / ops.maximum(ops.mean(mask), 1e-9)                           # (B, T)
