"""Audio backbones over log-mel features (B, T, F): "audio_backbone" (classification: features ->
(B, D)) and "speech_encoder" (recognition: features -> (B, ceil(T/2), D), after `conv_frontend`).

A backbone's keywords after the features are the options a recipe may set (`[model.options]`).

>>> import keras
>>> features = keras.Input((101, 40))
>>> cnn(features, filters=(8,)).shape, bigru(features, width=16, blocks=1).shape
((None, 64), (None, 51, 32))
>>> transformer(features, width=32, blocks=1, heads=2, intermediate=64).shape
(None, 51, 32)
"""

import keras_hub
from keras import layers

from kdl.errors import ConfigError
from kdl.models.registry import register

# --- classification backbones: (B, T, F) features -> (B, D) ----------------------------------------


@register("audio_backbone", "cnn")
def cnn(features, filters=(16, 32, 64), dense=64, dropout=0.3):
    """Per entry of `filters`: a 3x3 conv, batch norm, ReLU and a 2x2 max-pool; then the mean and
    the maximum over time of each (frequency, channel) feature; a dense layer."""
    x = layers.Reshape((*features.shape[1:], 1))(features)                 # (B, T, F, 1)
    for width in filters:
        x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)      # (B, T, F, width)
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
        x = layers.MaxPooling2D(padding="same")(x)                          # (B, T/2, F/2, width)
    x = layers.Reshape((x.shape[1], x.shape[2] * x.shape[3]))(x)            # (B, T', F'*width)
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x),
                              layers.GlobalMaxPooling1D()(x)])              # (B, 2*F'*width)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(dense, activation="relu")(x)                        # (B, dense)


# --- speech encoders: (B, T, F) features -> (B, T/2, D) -------------------------------------------


def conv_frontend(features, channels=32, width=144, frontend="conv"):
    """(B, T, F) -> (B, ceil(T/2), width). frontend "conv": two 3x3 convolutions (the first strided 2
    in time and frequency, the second 2 in frequency); "cnn": three 3x3 convolutions of channels,
    2x and 4x channels, each with batch norm, ReLU and a max-pool (2 in time after the first, 2 in
    frequency after each: pooling over frequency tolerates the small spectral shifts between
    voices). Then a projection to `width`."""
    x = layers.Reshape((*features.shape[1:], 1))(features)                               # (B, T, F, 1)
    if frontend == "cnn":
        for i, pool in enumerate([(2, 2), (1, 2), (1, 2)]):
            x = layers.Conv2D(channels * 2**i, 3, padding="same", use_bias=False)(x)  # (B, T', F', 2^i C)
            x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
            x = layers.MaxPooling2D(pool, padding="same")(x)     # last: (B, T/2, F/8, 4C)
    elif frontend == "conv":
        x = layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu")(x)    # (B, T/2, F/2, C)
        x = layers.Conv2D(channels, 3, (1, 2), padding="same", activation="relu")(x)       # (B, T/2, F/4, C)
    else:
        raise ConfigError(f'model.options.frontend must be "conv" or "cnn"; got {frontend!r}')
    x = layers.Reshape((x.shape[1], x.shape[2] * x.shape[3]))(x)                         # (B, T/2, F'*C')
    return layers.Dense(width)(x)                                                         # (B, T/2, width)


@register("speech_encoder", "transformer")
def transformer(features, width=144, blocks=3, heads=4, intermediate=288, channels=32, dropout=0.1,
                frontend="conv"):
    """Conv front-end, sinusoidal positions, `blocks` Transformer encoder blocks (pre-norm)."""
    x = conv_frontend(features, channels, width, frontend)                            # (B, T', width)
    x = x + keras_hub.layers.SinePositionEncoding()(x)                                # (B, T', width)
    x = layers.Dropout(dropout)(x)
    for _ in range(blocks):
        x = keras_hub.layers.TransformerEncoder(intermediate, heads, dropout=dropout,
                                                normalize_first=True)(x)              # (B, T', width)
    return layers.LayerNormalization()(x)                                             # (B, T', width)


@register("speech_encoder", "bigru")
def bigru(features, width=128, blocks=2, channels=32, dropout=0.1, frontend="conv"):
    """Conv front-end, then `blocks` bidirectional GRU layers of `width` units each way."""
    x = conv_frontend(features, channels, width, frontend)                            # (B, T', width)
    for _ in range(blocks):
        x = layers.Bidirectional(layers.GRU(width, return_sequences=True))(x)         # (B, T', 2*width)
        x = layers.Dropout(dropout)(x)
    return x
