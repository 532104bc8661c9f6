"""Image models: backbones (kind "image_backbone"), augmentation and the image classifier.

>>> from kdl.models.image.classifier import image_classifier
>>> image_classifier((8, 8, 1), num_classes=3, filters=[8]).output_shape
(None, 3)
"""
