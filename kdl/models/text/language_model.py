"""The masked language model: a Transformer text encoder pretrained to fill in masked tokens
(kind "masked_lm_backbone").

`language_model(...)` builds the training model: `{"token_ids": (B, L), "mask_positions": (B, P)}`
int32 (token id 0 is padding; mask_positions index the tokens to predict) -> logits over the
vocabulary at each masked position (B, P, V). The encoder's output, (B, L, D) per token, comes
out of the layer named "sequence_features" (`SEQUENCE_FEATURES`): another run's task head is put
on it (the padding-masked mean over the tokens, `kdl.models.text.backbones.masked_mean`).

The keras-hub `MaskedLMHead` is not tied to the token embedding: a head that shares the
embedding layer does not load back from model.keras in a plain functional model (the shared
layer's weights are saved once, under the embedding), so it keeps its own output kernel.

>>> model = language_model(16, vocabulary_size=50, embedding=16, blocks=1, heads=2, intermediate=32)
>>> model.output_shape, model.get_layer("sequence_features").output.shape
((None, None, 50), (None, 16, 16))
"""

import keras
from keras import layers, ops

from kdl.models.registry import check_options, get, register

SEQUENCE_FEATURES = "sequence_features"    # the layer whose output (B, L, D) a transfer reads


def language_model(max_length, vocabulary_size, backbone="transformer", **options):
    """Backbone over token ids -> "sequence_features" -> a MaskedLMHead at the masked positions."""
    import keras_hub  # here, not at the top: `import kdl.models` stays quick (keras_hub takes seconds)

    build_backbone = get("masked_lm_backbone", backbone)
    check_options(build_backbone, options)
    token_ids = keras.Input(shape=(max_length,), dtype="int32", name="token_ids")      # (B, L)
    mask_positions = keras.Input(shape=(None,), dtype="int32", name="mask_positions")  # (B, P)
    x = build_backbone(token_ids, vocabulary_size, **options)                          # (B, L, D)
    x = layers.Identity(name=SEQUENCE_FEATURES)(x)                                     # (B, L, D)
    logits = keras_hub.layers.MaskedLMHead(vocabulary_size, dtype="float32",
                                           name="mlm_head")(x, mask_positions)       # (B, P, V)
    return keras.Model({"token_ids": token_ids, "mask_positions": mask_positions}, logits,
                       name=f"{backbone}_language_model")


@register("masked_lm_backbone", "transformer")
def transformer(token_ids, vocabulary_size, embedding=64, blocks=2, heads=4, intermediate=128,
                dropout=0.1):
    """Token + position embedding (layer-normed, as BERT's), then `blocks` keras-hub Transformer
    encoder blocks (post-norm, as the "transformer" text backbone) over the non-padding tokens."""
    import keras_hub

    hub = keras_hub.layers
    sequence_length = token_ids.shape[1]
    x = hub.TokenAndPositionEmbedding(vocabulary_size, sequence_length, embedding,
                                      name="embedding")(token_ids)                  # (B, L, embedding)
    x = layers.LayerNormalization(epsilon=1e-5, name="embedding_norm")(x)           # (B, L, embedding)
    x = layers.Dropout(dropout, name="embedding_dropout")(x)                        # (B, L, embedding)
    padding_mask = ops.not_equal(token_ids, 0)                                      # (B, L)
    for i in range(blocks):
        x = hub.TransformerEncoder(intermediate, heads, dropout=dropout,
                                   name=f"encoder_{i}")(x, padding_mask=padding_mask)  # (B, L, embedding)
    return x
