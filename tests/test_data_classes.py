"""data.classes (train, validate and test on a subset of the classes, renumbered in the order
named) and data.per_class (at most N labelled examples of each class for train + validation),
one rule in kdl.data.splits, the same for every classification loader: image arrays, IDX and
class folders, text arrays and CSV, audio arrays and FSDD folders (and TFDS, under mock data)."""

import wave

import numpy as np
import pytest
from PIL import Image

from kdl.data import load_audio, load_images, load_texts
from kdl.errors import ConfigError, DataError

SIZES = (12, 10, 9, 8)      # examples of class 0, 1, 2, 3 in each source's train split (test: 3 each)


def labels_of(split):
    return [int(y) for _, y in split.as_numpy_iterator()]


# --- one small source of each kind; `original` reads an example's class before renumbering ---------


def _class_indices(sizes):
    return np.repeat(np.arange(len(sizes)), sizes)


def image_arrays(tmp_path):
    train, test = _class_indices(SIZES), _class_indices([3] * 4)
    pixels = lambda y: np.broadcast_to((y * 50).astype(np.uint8)[:, None, None, None], (len(y), 4, 4, 1))  # noqa: E731
    source = {"train": (pixels(train), train), "test": (pixels(test), test)}
    return load_images, source, lambda x: int(x[0, 0, 0]) // 50


def image_folder(tmp_path):
    for split, sizes in (("train", SIZES), ("test", [3] * 4)):
        for label, size in enumerate(sizes):
            folder = tmp_path / "images" / split / str(label)
            folder.mkdir(parents=True)
            for i in range(size):
                Image.fromarray(np.full((4, 4), label * 50, np.uint8)).save(folder / f"{i}.png")
    return load_images, tmp_path / "images", lambda x: int(x[0, 0, 0]) // 50


def text_arrays(tmp_path):
    train, test = _class_indices(SIZES), _class_indices([3] * 4)
    texts = lambda y: [f"word{label} example {i}" for i, label in enumerate(y)]  # noqa: E731
    source = {"train": (texts(train), train), "test": (texts(test), test)}
    return load_texts, source, lambda x: int(x.decode()[4])


def text_csv(tmp_path):
    names = ["ant", "bee", "cat", "dog"]         # names as labels: the classes are these names
    lines = ["sentence,label"] + [f"word{label} example {i},{names[label]}"
                                  for i, label in enumerate(_class_indices([s + 3 for s in SIZES]))]
    (tmp_path / "texts.csv").write_text("\n".join(lines) + "\n")
    return load_texts, tmp_path / "texts.csv", lambda x: int(x.decode()[4])


def audio_arrays(tmp_path):
    train, test = _class_indices(SIZES), _class_indices([3] * 4)
    waves = lambda y: [np.full(50, 0.1 * label + 0.05, np.float32) for label in y]  # noqa: E731
    source = {"train": (waves(train), train), "test": (waves(test), test)}
    return load_audio, source, lambda x: int(round((x[0] - 0.05) * 10))


def audio_fsdd_folder(tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    for label, size in enumerate(SIZES):
        for index in [*range(3), *range(5, 5 + size)]:     # index 0-4: the test split
            samples = np.full(50, 0.1 * label + 0.05)
            with wave.open(str(folder / f"{label}_ann_{index}.wav"), "wb") as out:
                out.setnchannels(1), out.setsampwidth(2), out.setframerate(1000)
                out.writeframes(np.round(samples * 32767).astype("<i2").tobytes())
    return load_audio, folder, lambda x: int(round((x[0] - 0.05) * 10))


SOURCES = [image_arrays, image_folder, text_arrays, text_csv, audio_arrays, audio_fsdd_folder]
AUDIO = dict(sample_rate=1000, max_seconds=0.05)


def load(kind, folder, **options):
    """(the Dataset `kind` loads with `options`, its `original`), its files written under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    loader, source, original = kind(folder)
    options = {**(AUDIO if loader is load_audio else {}), **options}
    return loader(source, **options), original


def names_of(kind, tmp_path):
    return load(kind, tmp_path)[0].info.class_names


# --- classes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SOURCES)
def test_classes_keep_only_those_classes_in_every_split_renumbered_in_the_order_given(kind, tmp_path):
    every = names_of(kind, tmp_path)
    classes = [every[3], every[1]]
    data, original = load(kind, tmp_path / "again", classes=classes, validation_split=0.2)
    assert data.info.class_names == classes
    assert set(data.splits) == {"train", "validation", "test"}
    for name, split in data.splits.items():
        pairs = {(original(x), int(y)) for x, y in split.as_numpy_iterator()}
        assert pairs == {(3, 0), (1, 1)}, name          # class 3 is now 0, class 1 is 1; no others
    full = load(kind, tmp_path / "full")[0]
    assert data.info.num_examples["test"] == sum(y in (1, 3) for y in labels_of(full.splits["test"]))


@pytest.mark.parametrize("kind", SOURCES)
def test_an_unknown_class_is_a_data_error_naming_it_and_the_datas_classes(kind, tmp_path):
    every = names_of(kind, tmp_path)
    unknown = r"classes \['nope'\] are not classes of the data; its classes: "
    with pytest.raises(DataError, match=unknown) as error:
        load(kind, tmp_path / "again", classes=[every[0], "nope"])
    assert str(every) in str(error.value)


@pytest.mark.parametrize("classes, message", [
    (["0"], r"classes = \['0'\] names 1 class; a classifier needs at least 2"),
    ([], r"classes = \[\] names 0 class"),
    (["0", "1", "0"], r"names \['0'\] more than once"),
    ("0,1", r"classes must be a list of class names \(str\); got '0,1'"),
])
def test_fewer_than_two_or_repeated_classes_are_a_config_error(tmp_path, classes, message):
    loader, source, _ = image_arrays(tmp_path)
    with pytest.raises(ConfigError, match=message):
        loader(source, classes=classes)


def test_classes_name_integer_labels_by_class_names_when_given(tmp_path):
    loader, source, original = image_arrays(tmp_path)
    data = loader(source, class_names=["ant", "bee", "cat", "dog"], classes=["dog", "ant"])
    assert data.info.class_names == ["dog", "ant"]
    assert {original(x): int(y) for x, y in data.splits["test"].as_numpy_iterator()} == {3: 0, 0: 1}


@pytest.mark.parametrize("kind", [image_arrays, text_csv, image_folder])
def test_a_runs_recorded_class_names_equal_to_classes_load_the_same_data(kind, tmp_path):
    # A run's recipe.toml records the resolved class_names (the subset) beside `classes`.
    classes = names_of(kind, tmp_path)[2:0:-1]
    first = load(kind, tmp_path / "a", classes=classes)[0]
    again = load(kind, tmp_path / "b", classes=classes, class_names=classes)[0]
    assert (again.info.class_names, again.info.num_examples) == (classes, first.info.num_examples)
    assert labels_of(again.splits["train"]) == labels_of(first.splits["train"])


# --- per_class ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SOURCES)
def test_per_class_trains_and_validates_on_n_of_each_class_and_leaves_test_alone(kind, tmp_path):
    data = load(kind, tmp_path, per_class=5, validation_split=0.2, seed=1)[0]
    train, held = labels_of(data.splits["train"]), labels_of(data.splits["validation"])
    assert np.bincount(train).tolist() == [4] * 4 and np.bincount(held).tolist() == [1] * 4
    whole = load(kind, tmp_path / "whole", seed=1)[0]
    assert labels_of(data.splits["test"]) == labels_of(whole.splits["test"])


@pytest.mark.parametrize("kind", [image_arrays, text_csv, audio_fsdd_folder])
def test_per_class_with_classes_and_without_validation(kind, tmp_path):
    every = names_of(kind, tmp_path)
    data = load(kind, tmp_path / "again", classes=[every[2], every[0]], per_class=7, validation_split=0.0)[0]
    assert set(data.splits) == {"train", "test"}
    assert np.bincount(labels_of(data.splits["train"])).tolist() == [7, 7]


def test_per_class_is_reproducible_with_its_seed_and_differs_with_another(tmp_path):
    loader, source, original = image_arrays(tmp_path)
    source = {"train": (np.arange(200, dtype=np.uint8).reshape(-1, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8),
                        np.arange(200) % 4)}

    def drawn(seed):
        data = loader(source, per_class=6, validation_split=0.5, seed=seed)
        return {name: sorted(int(x[0, 0, 0]) for x, _ in split.as_numpy_iterator())
                for name, split in data.splits.items()}

    first = drawn(seed=3)
    assert len(first["train"]) == len(first["validation"]) == 12
    assert drawn(seed=3) == first
    other = drawn(seed=4)
    assert other["train"] != first["train"] and other["test"] == first["test"]


def test_a_class_with_fewer_than_per_class_keeps_all_of_them(tmp_path):
    loader, source, _ = image_arrays(tmp_path)
    data = loader(source, per_class=10, validation_split=0.0)
    assert np.bincount(labels_of(data.splits["train"])).tolist() == [10, 10, 9, 8]
    data = loader(source, per_class=10, validation_split=0.25)        # ceil(n x 0.25) of each class held
    assert np.bincount(labels_of(data.splits["validation"])).tolist() == [3, 3, 3, 2]
    assert np.bincount(labels_of(data.splits["train"])).tolist() == [7, 7, 6, 6]


def test_a_class_too_small_to_hold_validation_out_of_is_a_config_error(tmp_path):
    train = np.array([0] * 20 + [1] * 20 + [2])           # class 2: one example
    source = {"train": (np.zeros((41, 2, 2, 1), np.uint8), train), "test": (np.zeros((3, 2, 2, 1), np.uint8),
                                                                            np.arange(3))}
    assert load_images(source, per_class=5).info.num_examples["train"] == 11     # no validation: kept
    with pytest.raises(ConfigError, match=r"arrays: class '2' has only 1 training example\(s\) \(per_class = "
                                          r"5\), and validation_split = 0.1 holds out ceil\(1 x 0.1\) = 1 "
                                          r"of them, leaving none to train on"):
        load_images(source, per_class=5, validation_split=0.1)


def test_a_per_class_budget_that_validation_takes_whole_is_a_config_error(tmp_path):
    loader, source, _ = image_arrays(tmp_path)
    with pytest.raises(ConfigError, match=r"per_class = 1 leaves no training example: validation_split = "
                                          r"0.1 holds out ceil\(1 x 0.1\) = 1 of each class's 1; set "
                                          r"per_class to at least 2, or validation_split = 0"):
        loader(source, per_class=1, validation_split=0.1)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match=r"per_class must be a positive int or None; got "):
            loader(source, per_class=bad)


# --- real data and TFDS ---------------------------------------------------------------------------


def test_fashion_mnist_idx_classes_are_named_0_to_9_and_split_in_two_halves(shared_data):
    folder = shared_data / "fashion-mnist"
    full = load_images(folder, limit=400)
    assert full.info.class_names == [str(i) for i in range(10)]
    full_test = np.array(labels_of(full.splits["test"]))
    for half in (["0", "1", "2", "3", "4"], ["5", "6", "7", "8", "9"]):
        data = load_images(folder, limit=400, classes=half, per_class=20, validation_split=0.1, seed=2)
        assert data.info.class_names == half
        assert np.bincount(labels_of(data.splits["train"])).tolist() == [18] * 5
        assert np.bincount(labels_of(data.splits["validation"])).tolist() == [2] * 5
        test = labels_of(data.splits["test"])
        assert set(test) == set(range(5))
        assert len(test) == np.isin(full_test, [int(name) for name in half]).sum()   # full test's share


def test_tfds_classes_and_per_class_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=40):        # made-up records, the same on every read
        raw = labels_of(load_images("tfds:mnist").splits["train"])
        common = [int(label) for label in np.argsort(np.bincount(raw))[::-1][:2]]   # 2+ examples each
        classes = [str(label) for label in common]
        data = load_images("tfds:mnist", classes=classes, per_class=3, validation_split=0.4, seed=0)
        assert data.info.class_names == classes
        train, held = labels_of(data.splits["train"]), labels_of(data.splits["validation"])
        test = labels_of(data.splits["test"])
    drawn = np.bincount(train, minlength=2) + np.bincount(held, minlength=2)
    assert drawn.tolist() == [min(3, raw.count(label)) for label in common]
    assert np.bincount(held, minlength=2).min() >= 1           # validation: some of each class's draw
    assert set(test) <= {0, 1} and len(test) == data.info.num_examples["test"]


# --- end to end -----------------------------------------------------------------------------------


def test_an_image_classifier_fits_on_a_subset_with_a_label_budget():
    import kdl.recipes

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (120, 8, 8, 1)).astype(np.uint8), np.arange(120) % 4
    recipe = kdl.recipes.image_classifier((x, y), classes=["3", "1"], per_class=10, epochs=1, batch_size=8)
    history = recipe.fit(verbose=0)
    assert recipe.class_names == ["3", "1"] and recipe.config.data.class_names is None   # classes names them
    assert recipe.data.info.num_examples == {"train": 18, "validation": 2, "test": 12}
    assert len(history.history["loss"]) == 1
    assert recipe.model.output_shape[-1] == 2


def test_a_saved_run_on_a_subset_reloads_and_scores_the_same_test_split(tmp_path):
    import kdl.recipes

    recipe = kdl.recipes.image_classifier("digits", classes=["9", "0"], per_class=15, limit=200, epochs=1,
                                          batch_size=16)
    recipe.fit(verbose=0)
    recipe.save(tmp_path / "run")
    loaded = kdl.recipes.load(tmp_path / "run")
    report = loaded.evaluate()
    assert loaded.class_names == ["9", "0"]
    assert report.meta["num_examples"] == recipe.data.info.num_examples["test"]


def test_a_saved_run_with_class_names_for_integer_labels_and_classes_reloads(tmp_path):
    import kdl.recipes

    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    recipe = kdl.recipes.image_classifier("digits", class_names=names, classes=["nine", "zero"], limit=200,
                                          epochs=1, batch_size=16)
    recipe.fit(verbose=0)
    recipe.save(tmp_path / "run")
    assert kdl.recipes.load(tmp_path / "run").evaluate().meta["class_names"] == ["nine", "zero"]


def test_evaluating_a_per_class_run_on_new_data_scores_all_of_it():
    import kdl.recipes

    x, y = np.random.default_rng(0).integers(0, 256, (120, 8, 8, 1)).astype(np.uint8), np.arange(120) % 4
    recipe = kdl.recipes.image_classifier((x, y), classes=["3", "1"], per_class=10, epochs=1, batch_size=8)
    recipe.fit(verbose=0)
    assert recipe.evaluate(data=(x, y)).meta["num_examples"] == 60      # every example of classes 3 and 1
