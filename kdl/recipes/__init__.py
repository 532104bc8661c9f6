"""The task API: `kdl.recipes.image_classifier(...)`, `kdl.recipes.text_classifier(...)`, and
`load` for recipe files and runs."""

from kdl.recipes.audio_classifier import AudioClassifier, audio_classifier
from kdl.recipes.classifier import Predictions
from kdl.recipes.image_classifier import ImageClassifier, image_classifier
from kdl.recipes.recipe import RECIPES, Recipe, TrainConfig, create, load
from kdl.recipes.speech_recognizer import SpeechRecognizer, speech_recognizer
from kdl.recipes.text_classifier import TextClassifier, text_classifier
from kdl.recipes.translator import Translator, translator

__all__ = ["ImageClassifier", "Predictions", "RECIPES", "Recipe", "TrainConfig", "TextClassifier",
           "create", "image_classifier", "load", "text_classifier", "Translator", "translator",
           "AudioClassifier", "audio_classifier", "SpeechRecognizer", "speech_recognizer"]
