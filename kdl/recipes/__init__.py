"""The task API: one factory per task (`kdl.recipes.image_classifier(...)`, ...), `load` for
recipe files and runs, and the result types `predict` returns. Every task follows the contract
in `kdl.recipes.recipe.Recipe`."""

from kdl.recipes.audio_classifier import AudioClassifier, audio_classifier
from kdl.recipes.image_classifier import ImageClassifier, image_classifier
from kdl.recipes.language_model import LanguageModel, language_model
from kdl.recipes.recipe import RECIPES, Recipe, TrainConfig, create, load
from kdl.recipes.results import Classification, MaskFilling, Result, Transcription, Translation
from kdl.recipes.speech_recognizer import SpeechRecognizer, speech_recognizer
from kdl.recipes.text_classifier import TextClassifier, text_classifier
from kdl.recipes.translator import Translator, translator

__all__ = ["RECIPES", "Recipe", "TrainConfig", "create", "load",
           "Result", "Classification", "Translation", "Transcription", "MaskFilling",
           "ImageClassifier", "image_classifier", "TextClassifier", "text_classifier",
           "Translator", "translator", "AudioClassifier", "audio_classifier",
           "SpeechRecognizer", "speech_recognizer", "LanguageModel", "language_model"]
