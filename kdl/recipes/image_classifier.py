"""The image classification recipe.

>>> import kdl
>>> clf = kdl.recipes.image_classifier()      # scikit-learn's digits, a small CNN  # doctest: +SKIP
>>> clf.fit()                                  # ~97% test accuracy in ~10 s on 2 CPU cores  # doctest: +SKIP
>>> print(clf.evaluate())                      # doctest: +SKIP
>>> clf.predict(images).labels                 # images: (N, 8, 8) pixels 0..255  # doctest: +SKIP
"""

import dataclasses
import pathlib
import typing

import numpy as np

from kdl import models
from kdl.config import CardConfig, ClassificationDataConfig, ModelConfig, TrackConfig, TrainConfig
from kdl.data import load_images
from kdl.data.images import IMAGE_SUFFIXES, conform_pixels, conform_split_images, read_image
from kdl.errors import DataError, warn
from kdl.recipes.classifier import Classifier
from kdl.recipes.recipe import MODEL_FILE


@dataclasses.dataclass
class ImageDataConfig(ClassificationDataConfig):
    source: str = "digits"          # "digits", a folder (IDX files or class sub-folders), "tfds:NAME"
    image_size: typing.Optional[list[int]] = None   # [H, W] to resize to; None keeps the native size


@dataclasses.dataclass
class ImageModelConfig(ModelConfig):
    name: str = "cnn"               # a backbone in kdl.models: "cnn", "resnet"
    augment: list[str] = dataclasses.field(default_factory=list)  # flip, rotate, translate, zoom, contrast


@dataclasses.dataclass
class ImageClassifierConfig:
    task: str = "image_classifier"
    seed: int = 0
    data: ImageDataConfig = dataclasses.field(default_factory=ImageDataConfig)
    model: ImageModelConfig = dataclasses.field(default_factory=ImageModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=20, learning_rate=2e-3, schedule="cosine", steps_per_execution=8))
    track: TrackConfig = dataclasses.field(default_factory=TrackConfig)
    card: CardConfig = dataclasses.field(default_factory=CardConfig)


class ImageClassifier(Classifier):
    """Images in, class names and probabilities out. Build it with `kdl.recipes.image_classifier`."""

    Config = ImageClassifierConfig
    modality = "image"
    model_kind = "image_backbone"
    loader = staticmethod(load_images)
    input_range = (0, 255)          # pixel values; predict warns outside it
    input_files = IMAGE_SUFFIXES    # what `kdl predict RUN FOLDER` reads from a folder

    def build_model(self):
        model = self.config.model
        return models.image_classifier(self.data.info.image_shape, len(self.class_names),
                                       backbone=model.name, augment=model.augment,
                                       seed=self.config.seed, **model.options)

    def build_from_preset(self, preset):
        """The keras-hub preset's backbone with its own image preprocessing inside the model
        (kdl.models.presets.image_classifier), a new head for this data's classes."""
        from kdl.models import presets

        model = self.config.model
        return presets.image_classifier(preset, self.data.info.image_shape, len(self.class_names),
                                        augment=model.augment, seed=self.config.seed)

    def explain_point(self):
        return None, "pixels"             # the model's input

    def input_mismatch(self):
        size, shape = self.config.data.image_size, list(self.model.input_shape[1:3])
        if size and list(size) != shape:
            return f"its recipe.toml has data.image_size {list(size)} but {MODEL_FILE} takes {shape} images"
        return None

    def evaluation_options(self):
        return {"image_size": list(self.model.input_shape[1:3])}    # files resized as predict does

    def adapt_data(self, dataset):
        return conform_split_images(super().adapt_data(dataset), self.model.input_shape[1:])

    def export_description(self):
        return {**super().export_description(), "input_meaning": (
            "images (batch, H, W, C): float32 pixel values 0..255 (the model rescales them)")}

    def card_notes(self):
        height, width, channels = self.model.input_shape[1:]
        notes = [f"Input: {height}x{width} images of {channels} channel{'s' * (channels != 1)}, pixel values "
                 "0..255 (the model rescales them; values 0..1 look almost black to it). Image files, and "
                 "arrays of another size or channel count, are converted and resized to it as in training."]
        data = self.__dict__.get("data")      # the training images, when this recipe loaded them
        if data is not None and channels == 1 and data.info.num_examples.get("train"):
            notes.append(_polarity(data.splits["train"]))
        return [*notes, *super().card_notes()]

    def prepare_inputs(self, images):
        """Accepts image file paths, or arrays with pixel values 0..255: one image (H, W) or
        (H, W, C) with C of 1, 3 or 4, or a batch (N, H, W[, C]). Files and arrays of another size
        or channel count are converted and resized to the model's input as in training (files
        by `read_image`, arrays by `conform_pixels`)."""
        height, width, channels = self.model.input_shape[1:]
        if isinstance(images, (str, pathlib.Path)) or (
                isinstance(images, (list, tuple)) and images and
                all(isinstance(i, (str, pathlib.Path)) for i in images)):
            paths = [images] if isinstance(images, (str, pathlib.Path)) else images
            return np.stack([read_image(p, channels, (height, width)) for p in paths]).astype(np.float32)
        try:
            x = np.asarray(images, dtype="float32")
        except (TypeError, ValueError) as error:
            raise DataError(f"predict() got {type(images).__name__} that is not an array of pixel "
                            f"values: {error}") from None
        if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] in (1, 3, 4)):
            x = x[None]                                       # one image -> a batch of one
        if x.ndim == 3:
            x = x[..., None]                                  # (N, H, W) grey -> (N, H, W, 1)
        if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or 0 in x.shape:
            raise DataError(f"predict() got images of shape {np.shape(images)}; this model takes "
                            f"images (H, W[, C]) or a batch (N, H, W[, C]) with C of 1, 3 or 4 and "
                            f"pixel values 0..255 (it was trained on {height}x{width}x{channels}), "
                            "or image file paths")
        if np.isfinite(x).all() and x.size and 0 < x.max() <= 1 and x.min() >= 0:
            warn("predict() got pixel values within 0..1; this model takes 0..255 (multiply by 255), "
                 "so it sees almost black images")
        return conform_pixels(x, (height, width, channels)) if np.isfinite(x).all() else x


def image_classifier(dataset="digits", model="cnn", *, data_root=None, **overrides):
    """A new image classification recipe.

    dataset: "digits" (embedded), a folder of IDX files or of class sub-folders, "tfds:NAME",
        or NumPy arrays `(x, y)` / `{"train": (x, y), "test": (x, y)}`.
    model: "cnn" or "resnet" (see kdl.models).
    overrides: any config field by name (epochs=3, batch_size=64, learning_rate=1e-3,
        augment=["translate"], seed=1, ...); other names are the backbone's options
        (e.g. filters=[32, 64] for "cnn", blocks=3, width=16 for "resnet").
    """
    return ImageClassifier.new(dataset, model, data_root, overrides)


def _polarity(train):
    """Which way the one-channel training images `train` are drawn (bright on dark, or dark on
    light), from the median of their border pixels (the background) against their mean."""
    images = np.concatenate([x for x, _ in train.batch(256).take(2).as_numpy_iterator()]).astype("float32")
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=None)
    background, mean = float(np.median(border)), float(images.mean())
    seen = (f"in its training images the median border pixel, the background, is {background:.0f} of 255 "
            f"and the mean pixel {mean:.0f}")
    if background < mean:
        return (f"Polarity: bright strokes or objects on a dark background ({seen}). Invert (255 - x) "
                "images drawn dark on light, such as ink on paper, before predicting.")
    if background > mean:
        return (f"Polarity: dark strokes or objects on a light background ({seen}). Invert (255 - x) "
                "images drawn light on dark before predicting.")
    return f"Polarity: none found ({seen})."


def _read_image(path, size, channels):
    """The image file at `path` as the model's input (H, W, channels) float32, decoded as in training."""
    return read_image(path, channels, size).astype("float32")
