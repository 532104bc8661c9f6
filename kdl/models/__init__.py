"""Keras 3 model builders (keras.layers / keras.ops only; no backend imports)."""

from kdl.models.audio import audio_classifier, speech_recognizer
from kdl.models.image_classifier import image_classifier
from kdl.models.registry import get, names, register
from kdl.models.text_classifier import text_classifier
from kdl.models.translator import translator

__all__ = ["image_classifier", "get", "names", "register", "text_classifier", "translator",
           "audio_classifier", "speech_recognizer"]
