"""Image backbones (kind "image_backbone"): images (B, H, W, C) scaled to 0..1 -> features (B, F).

`cnn`: a small VGG-style CNN, the image classifier's default, fast on a CPU; with `convs=1,
batch_norm=True` the BatchNorm CNN of the Fashion-MNIST time-to-accuracy recipe. `resnet`: basic
blocks (He et al. 2016, the CIFAR family), depth = 6*blocks + 2; down-sampling shortcuts
average-pool before their 1x1 projection (ResNet-D, He et al. 2019); `blocks=3` is ResNet-20
and `width` is the first stage's channel count, doubled per stage.

>>> import keras
>>> cnn(keras.Input((8, 8, 1)), filters=(16,)).shape
(None, 128)
>>> cnn(keras.Input((28, 28, 1)), filters=(8, 16), convs=1, batch_norm=True, dense=32).shape
(None, 32)
>>> resnet(keras.Input((28, 28, 1)), stages=2, blocks=1, width=8).shape
(None, 16)
"""

from keras import layers

from kdl.models.registry import register


@register("image_backbone", "cnn")
def cnn(x, filters=(32, 64), dense=128, dropout=0.25, convs=2, batch_norm=False):
    """Per entry of `filters`: `convs` 3x3 convolutions (each followed by BatchNormalization
    when `batch_norm`) and a 2x2 max-pool; then a dense layer."""
    for width in filters:                                                 # (B, H, W, C)
        for _ in range(convs):
            if batch_norm:
                x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
                x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
            else:
                x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)   # (B, H, W, width)
        x = layers.MaxPooling2D(padding="same")(x)                         # (B, H/2, W/2, width)
    x = layers.Flatten()(x)                                                # (B, H*W*width/4^n)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(dense, activation="relu")(x)                       # (B, dense)


@register("image_backbone", "resnet")
def resnet(x, stages=3, blocks=2, width=32, dropout=0.0):
    """Stem conv, then `stages` stages of `blocks` residual blocks, global average pool."""
    x = _conv_bn(x, width)                                         # (B, H, W, width)
    x = layers.ReLU()(x)
    for stage in range(stages):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, width * 2**stage, stride)          # (B, H/2^stage, W/2^stage, w)
    x = layers.GlobalAveragePooling2D()(x)                         # (B, width * 2^(stages-1))
    return layers.Dropout(dropout)(x) if dropout else x


def _basic_block(x, width, stride):
    """(B, H, W, C) -> (B, H/stride, W/stride, width): two 3x3 conv-BNs plus the shortcut."""
    shortcut = x
    y = layers.ReLU()(_conv_bn(x, width, stride))                  # (B, H/stride, W/stride, width)
    y = _conv_bn(y, width)                                         # (B, H/stride, W/stride, width)
    if stride != 1:   # ResNet-D shortcut (He et al. 2019): average-pool, then a 1x1 conv.
        shortcut = layers.AveragePooling2D(stride, padding="same")(shortcut)
    if shortcut.shape[-1] != width:   # (a strided 1x1 conv also crashes torch 2.13's CPU backward)
        shortcut = _conv_bn(shortcut, width, kernel_size=1)
    return layers.ReLU()(layers.Add()([shortcut, y]))              # (B, H/stride, W/stride, width)


def _conv_bn(x, width, stride=1, kernel_size=3):
    x = layers.Conv2D(width, kernel_size, strides=stride, padding="same", use_bias=False)(x)
    return layers.BatchNormalization(momentum=0.9)(x)   # PyTorch's rate: settles in few steps
