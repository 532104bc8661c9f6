"""kdl.data.load_images: every source gives the same splits, and every bad input a DataError."""

import gzip
import re
import struct

import numpy as np
import pytest
from PIL import Image

from kdl.data import batches, load_images
from kdl.data.images import read_image
from kdl.errors import DataError


def labels_of(dataset):
    return np.array([int(label) for _, label in dataset])


def cardinalities(data):
    return {name: int(split.cardinality()) for name, split in data.splits.items()}


# --- digits (the built-in default) -----------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_images("digits")


def test_digits_splits_shape_and_pixels(digits):
    assert digits.info.source == "digits"
    assert digits.info.num_examples == cardinalities(digits) == {"train": 1437, "test": 360}
    assert digits.info.image_shape == (8, 8, 1)
    assert digits.info.class_names == [str(digit) for digit in range(10)]
    images = np.stack([image for image, _ in digits.splits["test"]])
    assert images.dtype == np.uint8 and images.shape == (360, 8, 8, 1)
    assert images.min() == 0 and images.max() == 255
    assert digits.splits["test"].element_spec[1].dtype.name == "int32"


def test_digits_test_split_is_stratified_and_fixed(digits):
    labels = labels_of(digits.splits["test"])
    assert np.bincount(labels).min() >= 35  # every class, ~36 each
    again = load_images("digits", seed=123)  # the test split is fixed by the dataset, not the seed
    assert np.array_equal(labels_of(again.splits["test"]), labels)
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(digits.splits["test"], again.splits["test"]))


def test_digits_validation_split_and_limit():
    data = load_images("digits", validation_split=0.1, seed=1)
    assert list(data.splits) == ["train", "validation", "test"]
    assert data.info.num_examples == cardinalities(data) == {"train": 1293, "validation": 144, "test": 360}
    assert len(set(labels_of(data.splits["validation"]))) == 10
    limited = load_images("digits", validation_split=0.2, limit=50)
    assert limited.info.num_examples == {"train": 40, "validation": 10, "test": 50}


def test_batches_of_digits(digits):
    shapes = [
        (tuple(images.shape), tuple(labels.shape)) for images, labels in batches(digits.splits["test"], 128)
    ]
    assert shapes == [((128, 8, 8, 1), (128,))] * 2 + [((104, 8, 8, 1), (104,))]


# --- IDX folders ----------------------------------------------------------------------------


def test_fashion_mnist_idx_files(shared_data):
    data = load_images(shared_data / "fashion-mnist")
    assert data.info.num_examples == cardinalities(data) == {"train": 60_000, "test": 10_000}
    assert data.info.image_shape == (28, 28, 1)
    assert data.info.class_names == [str(label) for label in range(10)]
    for image, label in data.splits["train"].take(5):
        assert image.dtype.name == "uint8" and image.shape == (28, 28, 1) and 0 <= int(label) <= 9


def test_fashion_mnist_found_through_data_root_and_kdl_data(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = load_images("fashion-mnist", data_root=shared_data, limit=100)
    assert data.info.source == "fashion-mnist"
    assert data.info.num_examples == {"train": 100, "test": 100}
    monkeypatch.setenv("KDL_DATA", str(shared_data))
    assert load_images("fashion-mnist", limit=10).info.num_examples == {"train": 10, "test": 10}


def idx_bytes(array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder, gz=".gz", spelling="-idx"):
    """A tiny MNIST-layout folder: 12 train / 6 test images of 4x4 whose pixels all equal their label."""
    folder.mkdir()
    for prefix, size in (("train", 12), ("t10k", 6)):
        labels = np.arange(size) % 3
        images = np.repeat(labels, 16).reshape(size, 4, 4)
        for kind, array in (("images", images), ("labels", labels)):
            data = idx_bytes(array)
            name = f"{prefix}-{kind}{spelling}{array.ndim}-ubyte{gz}"
            (folder / name).write_bytes(gzip.compress(data) if gz else data)
    return folder


@pytest.mark.parametrize("gz, spelling", [(".gz", "-idx"), ("", ".idx")])
def test_small_idx_folder(tmp_path, gz, spelling):
    folder = write_idx_folder(tmp_path / "idx", gz, spelling)
    data = load_images(folder, class_names=["a", "b", "c"])
    assert data.info.num_examples == {"train": 12, "test": 6}
    assert data.info.class_names == ["a", "b", "c"] and data.info.image_shape == (4, 4, 1)
    assert all((image.numpy() == int(label)).all() for image, label in data.splits["train"])


def truncate(path):
    path.write_bytes(path.read_bytes()[:-10])


def break_magic(path):
    path.write_bytes(b"\x12\x34\x56\x78" + path.read_bytes()[4:])


def corrupt_gzip(path):
    path.write_bytes(gzip.compress(b"\x00" * 1000)[:20])


def drop_a_label(path):
    path.write_bytes(idx_bytes(np.zeros(11)))


@pytest.mark.parametrize(
    "name, gz, damage, message",
    [
        (
            "train-images-idx3-ubyte",
            "",
            truncate,
            "train-images-idx3-ubyte is truncated: its header says shape "
            "(12, 4, 4), which needs 208 bytes, but it has 198",
        ),
        (
            "train-labels-idx1-ubyte",
            "",
            break_magic,
            "train-labels-idx1-ubyte is not an IDX file: magic number 0x12345678",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            ".gz",
            corrupt_gzip,
            "t10k-images-idx3-ubyte.gz is a corrupt gzip stream",
        ),
        (
            "t10k-labels-idx1-ubyte",
            "",
            lambda path: path.unlink(),
            "missing the IDX files ['t10k-labels-idx1-ubyte']",
        ),
    ],
)
def test_bad_idx_files(tmp_path, name, gz, damage, message):
    folder = write_idx_folder(tmp_path / "idx", gz)
    damage(folder / name)
    with pytest.raises(DataError, match=re.escape(message)):
        load_images(folder)


def test_idx_count_mismatch_names_both_counts(tmp_path):
    folder = write_idx_folder(tmp_path / "idx", gz="")
    drop_a_label(folder / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError, match=r"holds 6 images but .*t10k-labels-idx1-ubyte holds 11 labels"):
        load_images(folder)


def test_missing_idx_file_lists_what_is_there(tmp_path):
    folder = write_idx_folder(tmp_path / "idx")
    (folder / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"expected \['train-images-idx3-ubyte', .*found \['t10k-images"):
        load_images(folder)


# --- image folders ---------------------------------------------------------------------------


def write_image(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_class_folders(root, classes=("cat", "dog", "fish"), per_class=5, size=(4, 6)):
    """Grey PNGs whose pixels all equal 40 * label + index, so each decoded image names its file."""
    for label, name in enumerate(classes):
        for index in range(per_class):
            write_image(root / name / f"{index}.png", np.full(size, 40 * label + index, np.uint8))
    return root


def test_class_folders_hold_out_a_stratified_test_split(tmp_path):
    data = load_images(write_class_folders(tmp_path / "pets"))
    assert data.info.class_names == ["cat", "dog", "fish"]
    assert data.info.num_examples == cardinalities(data) == {"train": 12, "test": 3}
    assert data.info.image_shape == (4, 6, 1)
    values = []
    for split in data.splits.values():
        for image, label in split:
            value = int(image[0, 0, 0])
            assert (
                image.dtype.name == "uint8" and (image.numpy() == value).all() and value // 40 == int(label)
            )
            values.append(value)
    assert sorted(values) == [40 * label + index for label in range(3) for index in range(5)]
    assert sorted(labels_of(data.splits["test"])) == [0, 1, 2]


def test_train_and_test_folders_are_the_splits(tmp_path):
    rng = np.random.default_rng(0)
    written = {}
    for split, count in (("train", 3), ("test", 2)):
        for label, name in enumerate(("ant", "bee")):
            for index in range(count):
                array = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
                write_image(tmp_path / split / name / f"{index}.png", array)
                written[array.tobytes()] = label
    data = load_images(tmp_path, validation_split=0.25)
    assert data.info.num_examples == {"train": 4, "validation": 2, "test": 4}
    assert data.info.image_shape == (5, 7, 3)
    decoded = {
        image.numpy().tobytes(): int(label) for split in data.splits.values() for image, label in split
    }
    assert decoded == written


def test_class_names_choose_and_order_the_folders(tmp_path):
    data = load_images(write_class_folders(tmp_path), class_names=["fish", "cat"])
    assert data.info.class_names == ["fish", "cat"] and sum(data.info.num_examples.values()) == 10
    for image, label in data.splits["train"]:
        assert int(image[0, 0, 0]) // 40 == [2, 0][int(label)]


def test_mixed_sizes_need_image_size(tmp_path):
    root = write_class_folders(tmp_path)
    write_image(root / "dog" / "big.png", np.zeros((9, 9), np.uint8))
    with pytest.raises(DataError, match=r"images differ in size: .* is 4x6 .*big.png is 9x9.*image_size"):
        load_images(root)
    data = load_images(root, image_size=(5, 5))
    assert data.info.image_shape == (5, 5, 1)
    images = [image.numpy() for split in data.splits.values() for image, _ in split]
    assert all(image.dtype.name == "uint8" and image.shape == (5, 5, 1) for image in images)
    # each file is resized as it is decoded, by the decoder predict uses: the same pixels
    from_predict = read_image(root / "dog" / "big.png", 1, (5, 5))
    assert any(np.array_equal(image, from_predict) for image in images)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "cat" / "3.png").write_bytes(b"not a png"), r"cannot read image .*cat/3\.png"),
        (lambda root: (root / "bird").mkdir(), r"class folder .*bird holds no images"),
        (lambda root: [path.unlink() for path in (root / "fish").iterdir()], r"fish holds no images"),
    ],
)
def test_bad_class_folders(tmp_path, damage, message):
    root = write_class_folders(tmp_path / "pets")
    damage(root)
    with pytest.raises(DataError, match=message):
        load_images(root)


def test_single_class_and_mismatched_splits(tmp_path):
    with pytest.raises(DataError, match=r"found 1 class 'cat' in .*one; a classifier needs at least 2"):
        load_images(write_class_folders(tmp_path / "one", classes=["cat"]))
    write_class_folders(tmp_path / "two" / "train", classes=["a", "b"])
    write_class_folders(tmp_path / "two" / "test", classes=["a", "c"])
    with pytest.raises(DataError, match=r"train/ has classes \['a', 'b'\] but test/ has \['a', 'c'\]"):
        load_images(tmp_path / "two")


def test_folder_of_neither_layout(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"neither a folder of IDX files nor .*\['notes.txt'\].*Accepted"):
        load_images(tmp_path)


def test_exif_orientation_is_applied_the_same_for_training_and_predict(tmp_path):
    """A photo stored sideways with an EXIF orientation tag (6: turn 90 degrees clockwise to
    show it, as phones write them) is read upright by the training loader and by predict."""
    import kdl


    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        for index in range(3):
            write_image(tmp_path / label / f"{index}.png", rng.integers(0, 256, (4, 6, 3), dtype=np.uint8))
    upright = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6                               # Orientation: rotate 90 CW to display
    sideways = tmp_path / "a" / "sideways.png"
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(sideways, exif=exif)
    assert Image.open(sideways).size == (4, 6)     # stored 6 high, 4 wide

    data = load_images(tmp_path)
    assert data.info.image_shape == (4, 6, 3)      # not "images differ in size"
    loaded = [image.numpy() for split in data.splits.values() for image, _ in split]
    assert sum(np.array_equal(image, upright) for image in loaded) == 1
    np.testing.assert_array_equal(read_image(sideways), upright)

    recipe = kdl.recipes.image_classifier(str(tmp_path), filters=[4], dense=8)
    recipe.model = recipe.build_model()
    np.testing.assert_array_equal(recipe.prepare_inputs(str(sideways))[0], upright.astype("float32"))
    assert recipe.predict(str(sideways)).probabilities.shape == (1, 2)


# --- arrays --------------------------------------------------------------------------------


def test_array_tuple_gets_a_stratified_test_split():
    x = np.random.default_rng(0).integers(0, 256, (100, 6, 6), dtype=np.uint8)
    y = np.arange(100) % 4
    data = load_images((x, y))
    assert data.info.source == "arrays" and data.info.class_names == ["0", "1", "2", "3"]
    assert data.info.num_examples == cardinalities(data) == {"train": 80, "test": 20}
    assert data.info.image_shape == (6, 6, 1)
    assert np.bincount(labels_of(data.splits["test"])).tolist() == [5, 5, 5, 5]


def test_array_dict_keeps_its_splits_and_float_pixels():
    rng = np.random.default_rng(0)
    train = (rng.uniform(0, 255, (10, 5, 5, 3)), np.arange(10) % 2)
    test = (rng.uniform(0, 255, (4, 5, 5, 3)), np.array([0, 1, 1, 0]))
    data = load_images({"train": train, "test": test}, class_names=["no", "yes"])
    assert data.info.num_examples == {"train": 10, "test": 4}
    assert data.info.image_shape == (5, 5, 3) and data.info.class_names == ["no", "yes"]
    image, label = next(iter(data.splits["test"]))
    assert image.dtype.name == "float32" and np.allclose(image, test[0][0]) and int(label) == 0


BLANK = np.zeros((10, 6, 6), np.uint8)


@pytest.mark.parametrize(
    "x, y, class_names, message",
    [
        (np.zeros((10, 36), np.uint8), np.arange(10) % 2, None, r"x has shape \(10, 36\)"),
        (np.zeros((10, 6, 6, 2), np.uint8), np.arange(10) % 2, None, r"x has shape \(10, 6, 6, 2\)"),
        (BLANK, np.arange(9) % 2, None, r"x holds 10 images but y has shape \(9,\)"),
        (BLANK, np.arange(10) * 0.5, None, r"y has dtype float64; expected integer"),
        (BLANK, np.arange(10) - 1, None, r"labels \[-1\] are outside \[0, 9\)"),
        (BLANK, np.arange(10), ["a", "b"], r"labels \[2, 3, .*outside \[0, 2\) \(2 = len\(class_names"),
        (BLANK, np.zeros(10, int), None, r"found 1 class; a classifier needs at least 2"),
    ],
)
def test_bad_arrays(x, y, class_names, message):
    with pytest.raises(DataError, match=message):
        load_images((x, y), class_names=class_names)


def test_images_in_0_1_warn():
    x, y = np.random.default_rng(0).uniform(0, 1, (20, 4, 4)), np.arange(20) % 2
    with pytest.warns(UserWarning, match=r"expected in 0\.\.255"):
        load_images((x, y))


# --- TFDS (offline, mocked) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tfds():
    return pytest.importorskip("tensorflow_datasets")


def test_tfds_mnist_with_mock_data(tfds):
    # Offline, mock_data builds the dataset from the builder's code: its features are real (class
    # names, shapes) but every split yields num_examples, whatever the slice.
    with tfds.testing.mock_data(num_examples=20):
        data = load_images("tfds:mnist", validation_split=0.1)
        image, label = next(iter(data.splits["train"]))
    assert data.info.source == "tfds:mnist"
    assert data.info.class_names == [str(digit) for digit in range(10)]
    assert data.info.image_shape == (28, 28, 1)
    assert data.info.num_examples == cardinalities(data) == {"train": 20, "validation": 20, "test": 20}
    assert image.dtype.name == "uint8" and label.dtype.name == "int32"


def test_tfds_unknown_name_lists_close_matches(tfds):
    with pytest.raises(DataError, match=r"unknown TFDS dataset 'mnistt'; close matches: \[.*'mnist'"):
        load_images("tfds:mnistt")


def test_tfds_download_failure(tfds, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(type(tfds.builder("mnist", data_dir=tmp_path)), "download_and_prepare", no_network)
    with pytest.raises(
        DataError, match=r"'mnist' could not be downloaded or found in data_dir .*network unreachable"
    ):
        load_images("tfds:mnist", data_root=tmp_path)


# --- unknown sources and options -------------------------------------------------------------


def test_unknown_name_lists_accepted_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"'mnistt' not found.*Accepted sources: \"digits\""):
        load_images("mnistt")
    with pytest.raises(DataError, match=r"unsupported data source of type int; accepted: \"digits\""):
        load_images(7)


def test_missing_path_names_every_location_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KDL_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError) as raised:
        load_images("no/such/folder", data_root=tmp_path / "root")
    message = str(raised.value)
    for root in (tmp_path, tmp_path / "root", tmp_path / "env"):
        assert str(root / "no" / "such" / "folder") in message
    assert "KDL_DATA" in message and "--data-root" in message


@pytest.mark.parametrize(
    "options, message",
    [
        ({"validation_split": 1.0}, r"validation_split must be in \[0, 1\)"),
        ({"limit": 0}, "limit must be a positive int"),
        ({"image_size": 32}, r"image_size must be \(height, width\)"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(DataError, match=message):
        load_images("digits", **options)
