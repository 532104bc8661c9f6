"""Keras 3 model builders (keras.layers / keras.ops only; no backend imports)."""

from kdl.models.image_classifier import image_classifier
from kdl.models.registry import get, names, register

__all__ = ["image_classifier", "get", "names", "register"]
