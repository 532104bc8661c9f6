"""Backend-free scoring of model outputs (numpy in, `Report` out); see docs/evaluation.md."""

from kdl.evaluation.classification import ClassificationReport, classification, expected_calibration_error
from kdl.evaluation.interpretation import (
    InterpretationReport,
    class_errors,
    interpretation,
    most_confused,
    top_losses,
)
from kdl.evaluation.language_model import LanguageModelReport, language_model
from kdl.evaluation.report import Report
from kdl.evaluation.speech import SpeechReport, speech_recognition
from kdl.evaluation.translation import TranslationReport, translation

__all__ = ["Report", "ClassificationReport", "classification", "expected_calibration_error",
           "TranslationReport", "translation", "SpeechReport", "speech_recognition",
           "LanguageModelReport", "language_model", "InterpretationReport", "interpretation", "top_losses",
           "most_confused", "class_errors"]
