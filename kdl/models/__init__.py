"""Keras 3 model builders by modality (keras.layers / keras.ops only; no backend imports).

The task models: `image_classifier`, `text_classifier`, `translator`, `audio_classifier`,
`speech_recognizer`; each puts its inputs and head around a backbone named in the registry
(`get`, `names`, `register`, `check_options`; kinds "image_backbone", "text_backbone",
"translation_backbone", "audio_backbone", "speech_encoder"). Also the Keras classes saved
models use (`AudioFeatures`, `SpecAugment`, `MaskedCrossentropy`): importing this package
registers them, so a saved model file loads.

>>> from kdl import models
>>> models.names("speech_encoder")
['bigru', 'transformer']
>>> models.image_classifier((8, 8, 1), num_classes=3, backbone="resnet", stages=1, blocks=1).count_params()
19203
"""

from kdl.models.audio.classifier import audio_classifier
from kdl.models.audio.features import AudioFeatures, SpecAugment
from kdl.models.audio.recognizer import speech_recognizer
from kdl.models.image.classifier import image_classifier
from kdl.models.registry import check_options, get, names, register
from kdl.models.text.beam_search import BeamSearch
from kdl.models.text.classifier import text_classifier
from kdl.models.text.translator import MaskedCrossentropy, masked_accuracy, translator

__all__ = ["image_classifier", "text_classifier", "translator", "audio_classifier", "speech_recognizer",
           "get", "names", "register", "check_options", "BeamSearch", "MaskedCrossentropy",
           "masked_accuracy", "AudioFeatures", "SpecAugment"]
