"""Image classification data from one call: `load_images(source)` -> `Dataset`.

Every source gives the same thing: `info` (class names, image shape, split sizes) and `splits`,
each a `tf.data.Dataset` of unbatched `(image, label)` pairs: HWC images with pixels in 0..255
(uint8; float32 when arrays are resized to image_size) and int32 labels. Sources:

- `"digits"`: scikit-learn's 8x8 digits, built in and offline (1,437 train / 360 test);
- a folder of MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`, ...; see `kdl.data.idx`);
- a folder with one sub-folder of images per class, directly or under `train/` and `test/`;
- `"tfds:NAME"`: a TensorFlow Datasets dataset, e.g. `"tfds:cifar10"`;
- arrays: `(x, y)` or `{"train": (x, y), "test": (x, y)}`.

A source without a test split of its own gets a fixed, stratified 20% test split. An image folder
is decoded in full when it is loaded (by PIL, as `predict` decodes a path: `read_image`), so a
corrupt, truncated or too large file is a DataError naming it then, not a tf.data error mid-fit.

>>> data = load_images("digits", validation_split=0.1)
>>> data.info.num_examples
{'train': 1293, 'validation': 144, 'test': 360}
>>> data.info.image_shape, data.info.class_names[:3]
((8, 8, 1), ['0', '1', '2'])
>>> image, label = next(iter(data.splits["train"]))
>>> image.dtype.name, image.shape.as_list(), label.dtype.name
('uint8', [8, 8, 1], 'int32')
"""

import contextlib
import dataclasses
import functools
import os
import re
import struct
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps, UnidentifiedImageError

from kdl import progress
from kdl.data import idx
from kdl.data.dataset import Dataset, class_names_for
from kdl.data.io import resolve_path, subfolders, unsupported_source, walk_folder
from kdl.data.splits import (
    array_splits,
    check_class_options,
    check_split_options,
    source_class_names,
    split_arrays,
    tfds_slices,
    tfds_splits,
)
from kdl.data.tfds_builder import prepared_tfds_builder
from kdl.errors import DataError

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
GREY_MODES = {"1", "L", "LA", "F"}  # PIL modes decoded to one channel, with the 16-bit ones ("I;16", "I")
CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}   # channels -> the PIL mode read_image converts to
# What PIL raises for a corrupt file: OSError (truncated, broken stream, unidentified), and from
# its format plugins ValueError, SyntaxError ("broken PNG file"), EOFError and struct.error.
PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error)
ACCEPTED_SOURCES = (
    '"digits" (built in), "tfds:NAME" (TensorFlow Datasets), a folder of MNIST-style IDX files '
    "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
    "t10k-labels-idx1-ubyte[.gz]), a folder with one sub-folder of images per class (directly or "
    'under train/ and test/), an (x, y) tuple of arrays, or {"train": (x, y), "test": (x, y)}'
)


def load_images(
    source, *, data_root=None, image_size=None, class_names=None, validation_split=0.0, limit=None, seed=0,
    classes=None, per_class=None,
):
    """Load an image classification dataset as "train", ["validation",] "test" splits.

    source: see the module docstring. A relative path is looked up in the current directory,
        then under `data_root`, then under the `KDL_DATA` environment variable.
    image_size: (height, width) to resize every image to (float32 pixels); None keeps the native size.
    class_names: names for label indices (arrays, IDX, TFDS; default "0", "1", ... or the TFDS
        names); for an image folder, which class sub-folders to use, in this order.
    validation_split: fraction of train held out as "validation", stratified and seeded by `seed`.
    limit: keep at most this many examples of each split (the first ones, before the hold-out).
    classes: only these classes (by name), in every split, their labels renumbered in this order.
    per_class: train (and the validation held out of it) on at most this many examples of each
        class, a seeded stratified sample; the test split is not cut (`kdl.data.splits`).
    """
    _check_options(image_size, validation_split, limit)
    check_class_options(classes, per_class)
    class_names = source_class_names(class_names, classes)
    options = dict(image_size=image_size, validation_split=validation_split, limit=limit, classes=classes,
                   per_class=per_class)
    if isinstance(source, (tuple, dict)):
        return _from_arrays("arrays", array_splits(source), class_names, seed=seed, **options)
    if isinstance(source, str) and source == "digits":
        return _from_arrays("digits", {"train": _digits()}, class_names, seed=seed, **options)
    if isinstance(source, str) and source.startswith("tfds:"):
        return _from_tfds(source, data_root, class_names, seed=seed, **options)
    if not isinstance(source, (str, os.PathLike)):
        raise unsupported_source(source, ACCEPTED_SOURCES)
    folder = resolve_path(source, data_root, ACCEPTED_SOURCES)
    if folder.is_dir() and idx.is_idx_folder(folder):
        return _from_arrays(os.fspath(source), idx.load_idx_folder(folder), class_names, seed=seed, **options)
    if folder.is_dir() and subfolders(folder):
        return _from_image_folder(os.fspath(source), folder, class_names, seed=seed, **options)
    contents = sorted(p.name + "/" * p.is_dir() for p in folder.iterdir()) if folder.is_dir() else None
    found = (
        "it is a file" if contents is None else f"it holds {contents[:10]}" + " ..." * (len(contents) > 10)
    )
    raise DataError(
        f"{folder} is neither a folder of IDX files nor a folder of class sub-folders: {found}. "
        f"Accepted: {ACCEPTED_SOURCES}"
    )


def _check_options(image_size, validation_split, limit):
    check_split_options(validation_split, limit)
    if image_size is not None and not (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(side, int) and side > 0 for side in image_size)
    ):
        raise DataError(f"image_size must be (height, width), two positive ints; got {image_size!r}")


# --- index-based sources: arrays, digits, IDX and image folders ---------------------------------


def _from_indexed(source, splits, class_names, to_dataset, *, image_size, validation_split, limit, seed,
                  classes, per_class):
    """A Dataset from split -> (items, labels) arrays, `to_dataset(items, labels)` making each split.

    A missing "test" split is a fixed stratified hold-out of train; then `limit`; then `classes`;
    then "validation" (or the `per_class` budget).
    """
    arrays = split_arrays(splits, validation_split, limit, seed, class_names=class_names, where=source,
                          classes=classes, per_class=per_class)
    datasets = {name: to_dataset(items, labels) for name, (items, labels) in arrays.items()}
    return _image_dataset(source, class_names if classes is None else classes, datasets, image_size)


def _image_dataset(source, class_names, datasets, image_size):
    """Resize each split when asked, then describe them all in a DatasetInfo."""
    if image_size is not None:
        resize = lambda image, label: (resize_pixels(image, image_size), label)  # noqa: E731
        datasets = {
            name: ds.map(resize, num_parallel_calls=tf.data.AUTOTUNE) for name, ds in datasets.items()
        }
    image_shape = tuple(datasets["train"].element_spec[0].shape.as_list())
    return Dataset.of(source, datasets, class_names=class_names, image_shape=image_shape)


def _from_arrays(source, splits, class_names, **options):
    splits = {name: _checked_arrays(name, pair) for name, pair in splits.items()}
    class_names = class_names_for(np.concatenate([labels for _, labels in splits.values()]), class_names)
    return _from_indexed(source, splits, class_names, _arrays_dataset, **options)


def _arrays_dataset(images, labels):
    return tf.data.Dataset.from_tensor_slices((images, labels))


def _checked_arrays(split, pair):
    """(images (N, H, W, C) uint8 or float32, labels (N,) int32) from a split's (x, y), checked."""
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise DataError(f"{split} data must be an (x, y) pair of arrays; got {type(pair).__name__}")
    x, y = np.asarray(pair[0]), np.asarray(pair[1])
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3, 4)):
        raise DataError(f"{split} x has shape {x.shape}; expected (N, H, W) or (N, H, W, C) with C 1, 3 or 4")
    if y.shape != (len(x),):
        raise DataError(f"{split} x holds {len(x)} images but y has shape {y.shape}; expected ({len(x)},)")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{split} y has dtype {y.dtype}; expected integer class indices")
    if np.issubdtype(x.dtype, np.floating) and x.size and x.max() <= 1.0:
        warnings.warn(
            "images are expected in 0..255 but these are all <= 1.0: they will look almost black to the model"
        )
    images = x[..., np.newaxis] if x.ndim == 3 else x
    return (images if images.dtype == np.uint8 else images.astype(np.float32)), y.astype(np.int32)


def _digits():
    """scikit-learn's 8x8 digits: pixels 0..16 scaled to 0..255 uint8."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.round(digits.images * 255 / 16).astype(np.uint8), digits.target


def _from_image_folder(source, folder, class_names, *, image_size, **options):
    layout = {split: folder / split for split in ("train", "test")}
    if not all(path.is_dir() and subfolders(path) for path in layout.values()):
        layout = {"train": folder}
    files = {split: _class_files(path) for split, path in layout.items()}
    found = sorted(files["train"])
    if "test" in files and sorted(files["test"]) != found:
        raise DataError(
            f"{folder}: train/ has classes {found} but test/ has {sorted(files['test'])}; they must match"
        )
    unknown = sorted(set(class_names or ()) - set(found))
    if unknown:
        raise DataError(f"class_names {unknown} are not sub-folders of {folder}; found {found}")
    class_names = list(class_names or found)
    if len(class_names) < 2:
        found_names = ", ".join(map(repr, class_names))
        raise DataError(
            f"found {len(class_names)} class {found_names} in {folder}; a classifier needs at least 2"
        )
    paths = [path for by_class in files.values() for name in class_names for path in by_class[name]]
    shape = _image_shape(paths, image_size)
    if image_size is not None:      # read_image resizes each file as it decodes it, as predict does
        shape = (*image_size, shape[-1])
    splits = {split: _file_arrays(by_class, class_names) for split, by_class in files.items()}
    to_dataset = functools.partial(_files_dataset, shape=shape)
    return _from_indexed(source, splits, class_names, to_dataset, image_size=None, **options)


def _class_files(folder):
    """Class name -> its image files, for each class sub-folder of `folder`."""
    files = {}
    for class_folder in subfolders(folder):
        images = walk_folder(class_folder, IMAGE_SUFFIXES, recursive=True)[1]
        if not images:
            raise DataError(f"class folder {class_folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files[class_folder.name] = images
    return files


def _file_arrays(files, class_names):
    """(paths, labels) arrays of the named classes' files, in a fixed shuffled order so classes mix;
    paths as bytes (os.fsencode), so that a file name that is not UTF-8 is one too."""
    pairs = [(os.fsencode(path), label) for label, name in enumerate(class_names) for path in files[name]]
    order = np.random.default_rng(0).permutation(len(pairs))
    return np.array([pairs[i][0] for i in order]), np.array([pairs[i][1] for i in order], np.int32)


def _image_shape(paths, image_size):
    """(H, W, C) the images decode to, decoding every image now so that a bad file fails before
    training (see `decoded_image`).

    H and W are None when sizes differ (allowed only with image_size); C is 1 if all are grey, else 3.
    """
    headers = {}
    with progress.bar(paths, what="checking the images", unit="images") as shown:
        for path in shown:
            with decoded_image(path) as image:
                headers[path] = image.size, image.mode
    (width, height), _ = headers[paths[0]]
    odd = next((path for path in paths if headers[path][0] != (width, height)), None)
    if odd is not None and image_size is None:
        odd_width, odd_height = headers[odd][0]
        raise DataError(
            f"images differ in size: {paths[0]} is {height}x{width} (HxW) but {odd} is "
            f"{odd_height}x{odd_width}; pass image_size=(height, width) to resize them all"
        )
    channels = 1 if all(_is_grey(mode) for _, mode in headers.values()) else 3
    return (None, None, channels) if odd is not None else (height, width, channels)


def _files_dataset(paths, labels, *, shape):
    """A split decoding each image file lazily to `shape` (H, W, C), by `read_image` (PIL), as
    `predict` does; `_image_shape` has decoded each file once already, so none fails here."""

    def decode(path, label):
        image = tf.numpy_function(lambda path: read_image(os.fsdecode(path), shape[-1], shape[:2]),
                                  [path], tf.uint8)
        return tf.ensure_shape(image, shape), label

    return tf.data.Dataset.from_tensor_slices((paths, labels)).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE
    )


# --- images given as arrays: resized and converted the same way in training and predict ---------


def resize_pixels(images, size):
    """Images (…, H, W, C) resized to `size` (H, W), bilinear, float32: how arrays (IDX, TFDS,
    NumPy) are resized, in training (`image_size`) and in `predict`. Files are resized by PIL as
    they are decoded (`read_image`), in both too."""
    return tf.image.resize(images, size)


def conform_pixels(images, shape):
    """A batch of images (N, H, W, C), float32, made to `shape` (H, W, C): channels converted as
    PIL converts a file's (grey to RGB repeats it; RGB to grey is ITU-R 601-2 luma; alpha is
    dropped), then resized by `resize_pixels` if the size differs.

    >>> conform_pixels(np.full((1, 4, 4, 3), 255.0), (2, 2, 1)).shape
    (1, 2, 2, 1)
    """
    images = np.asarray(images, np.float32)
    have, want = images.shape[-1], shape[-1]
    if have != want:
        rgb = np.repeat(images, 3, axis=-1) if have == 1 else images[..., :3]
        if want == 1:
            images = rgb @ np.array([[0.299], [0.587], [0.114]], np.float32)
        elif want == 3:
            images = rgb
        else:                     # RGBA: opaque
            images = np.concatenate([rgb, np.full(rgb.shape[:-1] + (1,), 255, np.float32)], axis=-1)
    if tuple(images.shape[1:3]) != tuple(shape[:2]):
        images = np.asarray(resize_pixels(images, shape[:2]), np.float32)
    return images


def conform_split_images(dataset, shape):
    """A Dataset of (image, label) splits with every image made to `shape` (H, W, C) by
    `conform_pixels` (a run scored on images of another size or channel count)."""
    if tuple(dataset.info.image_shape or ()) == tuple(shape):
        return dataset

    def conform(image, label):
        image = tf.numpy_function(lambda x: conform_pixels(x[None], shape)[0], [image], tf.float32)
        return tf.ensure_shape(image, shape), label

    splits = {name: split.map(conform) for name, split in dataset.splits.items()}
    return dataclasses.replace(dataset, splits=splits,
                               info=dataclasses.replace(dataset.info, image_shape=tuple(shape)))


# --- decoding image files: the one decoder of training and predict ----------------------------


def read_image(path, channels=3, size=None):
    """The pixels of an image file as a (H, W, channels) uint8 array, decoded by PIL the same way
    for training and for `predict`: 1 channel is grey, 3 RGB (alpha dropped), 4 RGBA; 16-bit grey
    is scaled to 8 bits. `size` (H, W): resized to it (PIL's default filter). A DataError names
    a file PIL cannot fully decode (see `decoded_image`)."""
    with decoded_image(path) as image:
        if _is_sixteen_bit(image.mode):        # PIL's convert would clip 0..65535 to 0..255
            image = Image.fromarray(np.round(np.asarray(image, np.float64) / 257).astype(np.uint8))
        try:
            image = image.convert(CHANNEL_MODES[channels])
        except ValueError as error:      # a mode without a conversion, such as LAB to RGB
            raise DataError(f"cannot read image {path}: {error}") from None
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]))
        return np.asarray(image, np.uint8).reshape(image.height, image.width, channels)


@contextlib.contextmanager
def decoded_image(path):
    """The PIL image of a file, fully decoded, so that a corrupt or truncated body fails here,
    not in a tf.data kernel mid-fit, and upright: turned as its EXIF orientation tag says (as
    a phone's photo is shown; `ImageOps.exif_transpose`), so training, `predict` and the image
    sizes checked at load all see the same pixels. A DataError names the file PIL cannot read,
    and refuses one of more than PIL's `Image.MAX_IMAGE_PIXELS` (a decompression bomb: a few
    kB that decode to gigabytes)."""
    try:
        image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        raise _too_large(path, int(pixels[1]) if pixels else None) from None
    except PIL_ERRORS as error:
        raise _unreadable(path, error) from None
    with image:
        width, height = image.size
        if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
            raise _too_large(path, width * height, f" ({height}x{width}, HxW)")
        try:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
        except PIL_ERRORS as error:
            raise _unreadable(path, error) from None
        yield image


def _unreadable(path, error):
    if isinstance(error, UnidentifiedImageError):     # its message repeats the path
        reason = "not an image format PIL knows"
    else:
        reason = str(error) or type(error).__name__
    return DataError(f"cannot read image {path}: {reason}; expected a complete PNG, JPEG, GIF or BMP image")


def _too_large(path, pixels, shape=""):
    return DataError(
        f"image {path} has {'more' if pixels is None else f'{pixels:,}'} pixels{shape}, more than PIL's "
        f"limit of {Image.MAX_IMAGE_PIXELS:,} (PIL.Image.MAX_IMAGE_PIXELS): it may be a decompression "
        "bomb. Raise PIL.Image.MAX_IMAGE_PIXELS to read large images you trust"
    )


def _is_sixteen_bit(mode):
    return mode == "I" or mode.startswith("I;16")


def _is_grey(mode):
    return mode in GREY_MODES or _is_sixteen_bit(mode)


# --- TensorFlow Datasets --------------------------------------------------------------------------


def _from_tfds(source, data_root, class_names, *, image_size, validation_split, limit, seed, classes,
               per_class):
    import tensorflow_datasets as tfds  # slow to import: only this source needs it

    builder = prepared_tfds_builder(source, data_root)
    features = builder.info.features
    label = features["label"] if "label" in features else None  # FeaturesDict has no .get
    if "image" not in features or not isinstance(label, tfds.features.ClassLabel):
        raise DataError(
            f"{source} has features {list(features.keys())}; expected 'image' and a ClassLabel 'label'"
        )
    if class_names is not None and len(class_names) != label.num_classes:
        raise DataError(f"{source} has {label.num_classes} classes but {len(class_names)} class_names")
    if None in features["image"].shape and image_size is None:
        raise DataError(
            f"{source} images vary in size {features['image'].shape}; pass image_size=(height, width)"
        )
    splits = builder.info.splits  # empty when mocked by tfds.testing.mock_data
    test_split = "validation" if "test" not in splits and "validation" in splits else "test"
    slices = tfds_slices(builder, validation_split, limit, {"test": test_split}, hold_out=per_class is None)
    records, class_names = tfds_splits(builder, slices, class_names or label.names, classes=classes,
                                       per_class=per_class, validation_split=validation_split, seed=seed,
                                       where=source)
    datasets = {split: ds.map(_image_and_label) for split, ds in records.items()}
    return _image_dataset(source, class_names, datasets, image_size)


def _image_and_label(record):
    return record["image"], tf.cast(record["label"], tf.int32)
