"""Keras 3 model builders (keras.layers / keras.ops only; no backend imports)."""

from kdl.models.image_classifier import image_classifier
from kdl.models.registry import get, names, register
from kdl.models.text_classifier import text_classifier

__all__ = ["image_classifier", "get", "names", "register", "text_classifier"]
