"""A small VGG-style CNN backbone: the image classifier's default, fast on a CPU.

>>> import keras
>>> from kdl.models.cnn import cnn
>>> cnn(keras.Input((8, 8, 1)), filters=(16,)).shape
(None, 128)
"""

import keras
from keras import layers

from kdl.models.registry import register


@register("image_backbone", "cnn")
def cnn(x, filters=(32, 64), dense=128, dropout=0.25):
    """Per entry of `filters`: two 3x3 convolutions and a 2x2 max-pool; then a dense layer."""
    for width in filters:                                                 # (B, H, W, C)
        x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)  # (B, H, W, width)
        x = layers.MaxPooling2D(padding="same")(x)                         # (B, H/2, W/2, width)
    x = layers.Flatten()(x)                                                # (B, H*W*width/4^n)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(dense, activation="relu")(x)                       # (B, dense)
