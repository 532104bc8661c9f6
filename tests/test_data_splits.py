"""kdl.data.splits: every hold-out and split rule (counts, seeding, order, stratification, limit,
a source's own splits) and the TFDS split slices, checked against a fake TFDS builder."""

import types
import warnings

import numpy as np
import pytest
import tensorflow as tf

from kdl.data import load_audio, load_parallel, load_texts, load_transcripts
from kdl.data.splits import (
    TEST_FRACTION,
    array_splits,
    check_split_options,
    held_count,
    limited,
    plain_hold_out,
    split_arrays,
    stratified_hold_out,
    tfds_slices,
)
from kdl.errors import DataError, KdlWarning


@pytest.mark.parametrize("size, fraction, held", [(10, 0.2, 2), (21, 0.2, 5), (10, 0.25, 3), (1, 0.01, 1),
                                                  (0, 0.2, 0), (203, 0.1, 21)])
def test_held_count_rounds_up(size, fraction, held):
    assert held_count(size, fraction) == held


def test_plain_hold_out_is_seeded_disjoint_and_keeps_the_order():
    items, targets = np.arange(21) * 10, np.arange(21)
    (kept, kept_targets), (held, held_targets) = plain_hold_out(items, targets, 0.2, seed=3)
    assert len(held) == 5 and len(kept) == 16
    assert sorted([*kept, *held]) == items.tolist()
    assert kept.tolist() == sorted(kept) and held.tolist() == sorted(held)       # the source's order
    np.testing.assert_array_equal(held_targets * 10, held)                       # pairs stay together
    np.testing.assert_array_equal(kept_targets * 10, kept)
    again = plain_hold_out(items, targets, 0.2, seed=3)[1][0]
    other = plain_hold_out(items, targets, 0.2, seed=4)[1][0]
    assert again.tolist() == held.tolist() and other.tolist() != held.tolist()


def test_stratified_hold_out_keeps_each_class_share():
    items, labels = np.arange(40), np.array([0] * 30 + [1] * 10)
    (kept, kept_labels), (held, held_labels) = stratified_hold_out(items, labels, 0.2, seed=0)
    assert np.bincount(held_labels).tolist() == [6, 2] and np.bincount(kept_labels).tolist() == [24, 8]
    assert set(kept) | set(held) == set(items) and not set(kept) & set(held)
    assert stratified_hold_out(items, labels, 0.2, seed=0)[1][0].tolist() == held.tolist()
    assert stratified_hold_out(items, labels, 0.2, seed=1)[1][0].tolist() != held.tolist()


def test_stratified_hold_out_falls_back_to_a_plain_sample_for_a_one_example_class():
    items, labels = np.arange(11), np.array([0] * 10 + [1])
    (kept, _), (held, _) = stratified_hold_out(items, labels, 0.2, seed=0)
    assert len(held) == held_count(11, 0.2) == 3 and len(kept) == 8


def test_split_arrays_holds_out_a_fixed_test_split_then_limits_then_validation():
    items, labels = np.arange(100), np.arange(100) % 4
    first = split_arrays({"train": (items, labels)}, 0.25, None, seed=0)
    other = split_arrays({"train": (items, labels)}, 0.25, None, seed=7)
    assert list(first) == ["train", "validation", "test"]
    assert {name: len(x) for name, (x, _) in first.items()} == {"train": 60, "validation": 20, "test": 20}
    assert first["test"][0].tolist() == other["test"][0].tolist()               # test does not move with seed
    assert first["validation"][0].tolist() != other["validation"][0].tolist()   # validation does
    limited = split_arrays({"train": (items, labels)}, 0.25, 40, seed=0)
    assert {name: len(x) for name, (x, _) in limited.items()} == {"train": 30, "validation": 10, "test": 20}
    assert set(limited["test"][0]) == set(first["test"][0])         # limit comes after the test hold-out


def test_split_arrays_keeps_a_sources_own_splits_and_limits_each():
    train, validation, test = (np.arange(n) for n in (50, 7, 9))
    splits = {"test": (test, test % 2), "validation": (validation, validation % 2),
              "train": (train, train % 2)}
    arrays = split_arrays(splits, 0.5, 8, seed=0)
    assert list(arrays) == ["train", "validation", "test"]
    assert [len(x) for x, _ in arrays.values()] == [8, 7, 8]
    assert arrays["validation"][0].tolist() == list(range(7))                  # not over the limit
    for name, (x, y) in arrays.items():
        assert set(x) <= set(splits[name][0]) and x.tolist() == sorted(x)       # a subset, in order
        np.testing.assert_array_equal(y, x % 2)                                # pairs stay together
        assert np.bincount(y).tolist() == [4, 4] or name == "validation"       # each class its share
    other = split_arrays(splits, 0.5, 8, seed=1)
    assert other["train"][0].tolist() != arrays["train"][0].tolist()           # train moves with seed
    assert other["test"][0].tolist() == arrays["test"][0].tolist()             # test does not


def test_limit_is_a_stratified_seeded_sample_not_the_first_examples():
    # FSDD's files sort by digit: the first 300 of 2,700 were digits 0 and 1 only
    items, labels = np.arange(2700), np.repeat(np.arange(10), 270)
    x, y = limited(items, labels, 300, seed=0, stratify=True)
    assert np.bincount(y).tolist() == [30] * 10
    assert x.tolist() == sorted(x) and set(x) <= set(items)
    assert limited(items, labels, 300, seed=0, stratify=True)[0].tolist() == x.tolist()
    assert limited(items, labels, 300, seed=1, stratify=True)[0].tolist() != x.tolist()
    arrays = split_arrays({"train": (items, labels)}, 0.1, 300, seed=0)
    assert {name: len(x) for name, (x, _) in arrays.items()} == {"train": 270, "validation": 30, "test": 300}
    assert all(np.bincount(y).tolist() == [n] * 10 for (_, y), n in zip(arrays.values(), (27, 3, 30)))


def test_limit_keeps_every_class_and_each_ones_share():
    labels = np.array([0] * 90 + [1] * 6 + [2] * 3 + [3])
    x, y = limited(np.arange(100), labels, 10, seed=0, stratify=True)
    assert np.bincount(y).tolist() == [7, 1, 1, 1]        # one each, the rest by what is left: 89:5:2:0
    assert len(limited(np.arange(100), labels, 3, seed=0, stratify=True)[0]) == 3   # fewer than classes
    assert limited(np.arange(100), labels, 100, seed=0, stratify=True)[0].tolist() == list(range(100))


def test_limit_of_strings_is_a_plain_seeded_sample_in_the_sources_order():
    sources = np.array([f"sentence {i:03d}" for i in range(200)], dtype=object)
    targets = np.array([f"Satz {i:03d}" for i in range(200)], dtype=object)
    x, y = limited(sources, targets, 20, seed=0, stratify=False)
    assert len(x) == 20 and x.tolist() != sources[:20].tolist() and x.tolist() == sorted(x)
    assert [s.split()[1] for s in x] == [t.split()[1] for t in y]
    assert max(int(s.split()[1]) for s in x) > 100                 # drawn from the whole split
    assert limited(sources, targets, 20, seed=0, stratify=False)[0].tolist() == x.tolist()
    pairs = load_parallel((sources.tolist(), targets.tolist()), limit=20, seed=3)
    assert pairs.info.num_examples == {"train": 20, "test": 20}
    assert max(int(text.split()[1]) for text in pairs.texts("train")[0]) > 100


def test_no_limit_or_a_limit_above_every_split_gives_the_same_splits():
    items, labels = np.arange(100), np.arange(100) % 4
    for stratify in (True, False):
        plain = split_arrays({"train": (items, labels)}, 0.25, None, seed=3, stratify=stratify)
        roomy = split_arrays({"train": (items, labels)}, 0.25, 1000, seed=3, stratify=stratify)
        hold_out = stratified_hold_out if stratify else plain_hold_out
        kept, test = hold_out(items, labels, TEST_FRACTION, seed=0)
        train, validation = hold_out(*kept, 0.25, seed=3)
        expected = [x.tolist() for x, _ in (train, validation, test)]
        for arrays in (plain, roomy):
            assert [x.tolist() for x, _ in arrays.values()] == expected


def test_a_training_split_without_a_class_of_the_test_split_warns_naming_it():
    train = (np.arange(6), np.array([0, 0, 0, 1, 1, 1]))
    test = (np.arange(3), np.array([0, 1, 2]))
    with pytest.warns(KdlWarning, match=r"cats.csv: the training split has no examples of 1 class\(es\) "
                                        r"that the test split has: 'bird'; the model cannot learn them"):
        split_arrays({"train": train, "test": test}, 0.0, None, seed=0, class_names=["cat", "dog", "bird"],
                     where="cats.csv")
    with pytest.warns(KdlWarning, match=r"has: '2'"):                   # no names: the class index
        split_arrays({"train": train, "test": test}, 0.0, None, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split_arrays({"train": train, "test": (np.arange(2), np.array([0, 1]))}, 0.0, None, seed=0)
        split_arrays({"train": train, "test": test}, 0.0, None, seed=0, stratify=False)   # not classes


def test_a_text_table_sorted_by_label_keeps_both_classes_under_a_limit(tmp_path):
    table = tmp_path / "reviews.csv"
    rows = [f"review {i},{'negative' if i < 500 else 'positive'}" for i in range(1000)]
    table.write_text("sentence,label\n" + "\n".join(rows) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_texts(table, limit=50, validation_split=0.1)
    labels = {name: [int(y) for _, y in split.as_numpy_iterator()] for name, split in data.splits.items()}
    assert {name: sorted(np.bincount(y).tolist()) for name, y in labels.items()} == {
        "train": [22, 23], "validation": [2, 3], "test": [25, 25]}          # was [50, 0] each


def test_fsdd_under_a_limit_trains_on_every_digit(shared_data):
    data = load_audio(shared_data / "fsdd" / "recordings", limit=300, validation_split=0.1)
    counts = {name: np.bincount([y for _, y in split.as_numpy_iterator()], minlength=10).tolist()
              for name, split in data.splits.items()}
    assert counts == {"train": [27] * 10, "validation": [3] * 10, "test": [30] * 10}


def test_split_arrays_without_stratify_is_the_plain_hold_out():
    items = np.arange(21)
    arrays = split_arrays({"train": (items, items)}, 0.0, None, seed=5, stratify=False)
    (kept, _), (held, _) = plain_hold_out(items, items, TEST_FRACTION, seed=0)
    assert arrays["train"][0].tolist() == kept.tolist() and arrays["test"][0].tolist() == held.tolist()


def test_transcripts_and_translation_pairs_hold_out_by_the_same_rule():
    count = 21                                      # 20% is 4.2 pairs: both hold out ceil = 5, the same ones
    speech = load_transcripts(([np.full(10, i / 100, "float32") for i in range(count)],
                               [f"text {i}" for i in range(count)]), sample_rate=100, max_seconds=0.1)
    pairs = load_parallel(([f"text {i}" for i in range(count)], [f"Text {i}" for i in range(count)]))
    assert speech.info.num_examples == pairs.info.num_examples == {"train": 16, "test": 5}
    assert [text for text, _ in speech.transcripts["test"]] == pairs.texts("test")[0]


def test_array_splits_and_split_options_name_what_is_wrong():
    assert array_splits((1, 2)) == {"train": (1, 2)}
    assert set(array_splits({"train": 1, "validation": 2}, validation=True)) == {"train", "validation"}
    with pytest.raises(DataError, match=r"array splits \['train', 'validation'\]: expected .*\(x, y\)"):
        array_splits({"train": 1, "validation": 2})
    with pytest.raises(DataError, match=r"array splits \['test'\]: .*\(\"validation\" optional\)"):
        array_splits({"test": 1}, "(sources, targets)", validation=True)
    with pytest.raises(DataError, match=r"validation_split must be in \[0, 1\); got 1"):
        check_split_options(1, None)
    with pytest.raises(DataError, match="limit must be a positive int or None; got 0"):
        check_split_options(0.1, 0)


# --- TFDS split slices ----------------------------------------------------------------------------


def fake_builder(sizes, listed=True):
    """Enough of a TFDS builder for tfds_slices: info.splits (empty when not `listed`, as under
    tfds.testing.mock_data) and as_dataset(split=NAME) of sizes[NAME] examples."""
    return types.SimpleNamespace(
        info=types.SimpleNamespace(splits=dict(sizes) if listed else {}),
        as_dataset=lambda split: tf.data.Dataset.range(sizes[split]))


def test_tfds_slices_use_the_test_split_and_carve_validation_from_trains_end():
    builder = fake_builder({"train": 100, "test": 50, "validation": 30})
    assert tfds_slices(builder, 0.1, None) == {
        "train": "train[:90]", "validation": "train[90:100]", "test": "test[:50]"}
    assert tfds_slices(builder, 0.0, 40) == {"train": "train[:40]", "test": "test[:40]"}
    assert tfds_slices(builder, 0.1, None, {"test": "validation"})["test"] == "validation[:30]"


def test_tfds_slices_use_a_named_validation_split_when_the_dataset_has_it():
    builder = fake_builder({"train": 100, "test": 50, "validation": 30})
    assert tfds_slices(builder, 0.1, 20, {"validation": "validation"}) == {
        "train": "train[:20]", "validation": "validation[:20]", "test": "test[:20]"}
    assert tfds_slices(builder, 0.0, None, {"validation": "validation"}) == {
        "train": "train[:100]", "test": "test[:50]"}
    carved = tfds_slices(fake_builder({"train": 100, "test": 50}), 0.1, None, {"validation": "validation"})
    assert carved["validation"] == "train[90:100]"


def test_tfds_slices_hold_out_test_from_train_when_the_dataset_has_none():
    builder = fake_builder({"train": 101})
    assert tfds_slices(builder, 0.25, None) == {
        "train": "train[:60]", "validation": "train[60:80]", "test": "train[80:101]"}   # 21 = ceil(20.2)


def test_tfds_slices_under_mock_data_take_the_named_splits_to_exist():
    builder = fake_builder({"train_clean100": 10, "dev_clean": 6, "test_clean": 4, "train": 10}, listed=False)
    names = {"train": "train_clean100", "validation": "dev_clean", "test": "test_clean"}
    assert tfds_slices(builder, 0.5, None, names) == {
        "train": "train_clean100[:10]", "validation": "dev_clean[:6]", "test": "test_clean[:4]"}
    assert tfds_slices(builder, 0.0, None) == {"train": "train[:8]", "test": "train[8:10]"}
