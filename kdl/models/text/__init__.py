"""Text models over int32 token ids (0 is padding): backbones (kind "text_backbone"), the text
classifier, the translator (kind "translation_backbone") and its beam search.

>>> from kdl.models.text.classifier import text_classifier
>>> text_classifier(16, vocabulary_size=100, num_classes=2, backbone="fasttext").output_shape
(None, 2)
"""
