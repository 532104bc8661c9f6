"""Image augmentation by name: Keras preprocessing layers that act only while training.

>>> augmentation(["translate", "rotate"]).name
'augmentation'
"""

import keras

from kdl.errors import ConfigError

AUGMENTATIONS = {
    "flip": lambda seed: keras.layers.RandomFlip("horizontal", seed=seed),
    "rotate": lambda seed: keras.layers.RandomRotation(0.05, seed=seed),
    "translate": lambda seed: keras.layers.RandomTranslation(0.1, 0.1, seed=seed),
    "zoom": lambda seed: keras.layers.RandomZoom(0.1, seed=seed),
    "contrast": lambda seed: keras.layers.RandomContrast(0.2, seed=seed),
}


def augmentation(names, seed=None):
    """A Sequential of the named augmentations, in order. Inactive at inference."""
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ConfigError(f"unknown augmentation {unknown[0]!r}; known: {', '.join(AUGMENTATIONS)}")
    return keras.Sequential([AUGMENTATIONS[name](seed) for name in names], name="augmentation")
