"""The image classifier: raw pixels in, class probabilities out, any "image_backbone".

The model owns its preprocessing (rescaling, training-time augmentation), so a saved or
exported model takes images with pixel values 0..255 as they come from a file.

>>> model = image_classifier((8, 8, 1), num_classes=10, backbone="cnn", filters=[16])
>>> model.output_shape
(None, 10)
"""

import keras
from keras import layers

from kdl.models.image.augment import augmentation
from kdl.models.registry import check_options, get


def image_classifier(input_shape, num_classes, backbone="cnn", augment=(), seed=None, **options):
    """Rescaling -> augmentation (training only) -> backbone -> softmax head."""
    build_backbone = get("image_backbone", backbone)
    check_options(build_backbone, options)
    inputs = keras.Input(shape=tuple(input_shape), name="images")      # (B, H, W, C), 0..255
    x = layers.Rescaling(1 / 255)(inputs)                              # (B, H, W, C), 0..1
    if augment:
        x = augmentation(augment, seed)(x)                             # (B, H, W, C), train only
    x = build_backbone(x, **options)                                   # (B, F)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                           name="probabilities")(x)                    # (B, num_classes)
    return keras.Model(inputs, outputs, name=f"image_classifier_{backbone}")
