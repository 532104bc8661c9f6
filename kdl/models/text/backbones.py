"""Text backbones (kind "text_backbone"): int32 token ids (B, L), 0 for padding -> features (B, F).

A backbone's keywords after `vocabulary_size` are the options a recipe may set
(`[model.options]`). transformer, fasttext and bert mask the padding out; every backbone gives
finite features for an all-padding row (an empty string). `pool` and `masked_mean` /
`masked_max` are the padding-aware poolings they share.

>>> import keras
>>> ids = keras.Input((16,), dtype="int32")
>>> cnn(ids, 100).shape, fasttext(ids, 100).shape, transformer(ids, 100, pooling="mean_max").shape
((None, 384), (None, 64), (None, 128))
"""

import keras_hub
from keras import layers, ops

from kdl.errors import ConfigError
from kdl.models.registry import register


def masked_mean(x, token_ids):
    """Mean of x (B, L, D) over the non-padding positions of token_ids (B, L); zeros if none."""
    mask = ops.cast(ops.not_equal(token_ids, 0), x.dtype)[:, :, None]       # (B, L, 1)
    total = ops.sum(x * mask, axis=1)                                        # (B, D)
    return total / ops.maximum(ops.sum(mask, axis=1), 1.0)                   # (B, D)


def masked_max(x, token_ids):
    """Max of x (B, L, D) over the non-padding positions of token_ids (B, L); zeros if none."""
    mask = ops.not_equal(token_ids, 0)[:, :, None]                           # (B, L, 1)
    lowest = ops.min(x) - 1.0                                                # below every value
    largest = ops.max(ops.where(mask, x, lowest), axis=1)                    # (B, D)
    return ops.where(ops.any(mask, axis=1), largest, ops.zeros_like(largest))  # (B, D)


POOLINGS = {"mean": [masked_mean], "max": [masked_max], "mean_max": [masked_mean, masked_max]}


def pool(x, token_ids, pooling):
    """`pooling` ("mean", "max" or "mean_max": both, concatenated) of x (B, L, D) -> (B, D or 2D)."""
    if pooling not in POOLINGS:
        raise ConfigError(f"model.options.pooling must be one of {', '.join(POOLINGS)}; "
                          f"got {pooling!r}")
    pooled = [function(x, token_ids) for function in POOLINGS[pooling]]     # [(B, D), ...]
    return ops.concatenate(pooled, axis=-1) if len(pooled) > 1 else pooled[0]


@register("text_backbone", "transformer")
def transformer(token_ids, vocabulary_size, embedding=64, blocks=2, heads=4, intermediate=128,
                dropout=0.1, pooling="mean"):
    """Token + position embedding, `blocks` Transformer encoder blocks, masked `pooling` over
    the tokens ("mean", "max", or "mean_max")."""
    sequence_length = token_ids.shape[1]
    x = keras_hub.layers.TokenAndPositionEmbedding(
        vocabulary_size, sequence_length, embedding)(token_ids)             # (B, L, embedding)
    padding_mask = ops.not_equal(token_ids, 0)                               # (B, L)
    for _ in range(blocks):
        x = keras_hub.layers.TransformerEncoder(intermediate, heads, dropout=dropout)(
            x, padding_mask=padding_mask)                                    # (B, L, embedding)
    x = pool(x, token_ids, pooling)                                          # (B, embedding or 2x)
    return layers.Dropout(dropout)(x)


@register("text_backbone", "cnn")
def cnn(token_ids, vocabulary_size, embedding=64, filters=128, kernel_sizes=(3, 4, 5), dropout=0.5):
    """Kim (2014): one embedding, a Conv1D per kernel size, global max-pooling, concatenated."""
    x = layers.Embedding(vocabulary_size, embedding)(token_ids)             # (B, L, embedding)
    pooled = [layers.GlobalMaxPooling1D()(
        layers.Conv1D(filters, size, padding="same", activation="relu")(x))  # (B, filters)
        for size in kernel_sizes]
    x = layers.Concatenate()(pooled) if len(pooled) > 1 else pooled[0]      # (B, filters * kernels)
    return layers.Dropout(dropout)(x)


@register("text_backbone", "fasttext")
def fasttext(token_ids, vocabulary_size, embedding=64, dropout=0.0):
    """fastText (Joulin et al., 2016): the mean embedding of the tokens (with data.ngrams=2,
    of every word and word pair)."""
    x = layers.Embedding(vocabulary_size, embedding)(token_ids)             # (B, L, embedding)
    x = masked_mean(x, token_ids)                                            # (B, embedding)
    return layers.Dropout(dropout)(x)


@register("text_backbone", "bert")
def bert(token_ids, vocabulary_size, blocks=2, heads=2, hidden=64, intermediate=128, dropout=0.1):
    """A new keras-hub BertBackbone, random, of the size the options give. A pretrained BERT
    preset is `model.backbone = "hub:NAME"` or a preset folder (kdl.models.presets)."""
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size, num_layers=blocks, num_heads=heads, hidden_dim=hidden,
        intermediate_dim=intermediate, dropout=dropout, max_sequence_length=token_ids.shape[1])
    outputs = backbone({"token_ids": token_ids,
                        "segment_ids": ops.zeros_like(token_ids),                # (B, L)
                        "padding_mask": ops.not_equal(token_ids, 0)})            # (B, L)
    x = masked_mean(outputs["sequence_output"], token_ids)                   # (B, hidden)
    return layers.Dropout(dropout)(x)
