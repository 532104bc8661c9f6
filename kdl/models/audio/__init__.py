"""Audio models over raw waveforms (B, samples) float32: features (`AudioFeatures`, `SpecAugment`),
backbones (kinds "audio_backbone" and "speech_encoder"), the audio classifier and the speech
recognizer.

>>> from kdl.models.audio.classifier import audio_classifier
>>> audio_classifier(8000, num_classes=10, sample_rate=8000, filters=[8]).output_shape
(None, 10)
"""
