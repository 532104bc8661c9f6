"""kdl.data.load_texts and Tokenizer: every source gives the same splits of (string, int32 label),
and every bad input a DataError naming the file and line (or field)."""

import numpy as np
import pytest

from kdl.data import Tokenizer, load_texts
from kdl.errors import ConfigError, DataError


def examples(split):
    return [(text.decode(), int(label)) for text, label in split.as_numpy_iterator()]


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


# --- the real SST-2 GLUE folder --------------------------------------------------------------


def test_sst2_glue_folder_uses_dev_as_test(shared_data):
    data = load_texts(shared_data / "sst2", validation_split=0.1)
    assert data.info.class_names == ["0", "1"]
    assert data.info.num_examples == {"train": 60_614, "validation": 6_735, "test": 872}
    assert examples(data.splits["test"].take(1)) == [("it 's a charming and often affecting journey . ", 1)]
    assert data.splits["train"].element_spec[1].dtype.name == "int32"


def test_sst2_found_by_name_under_data_root_with_class_names(shared_data):
    data = load_texts("sst2", data_root=shared_data, class_names=["negative", "positive"], limit=100)
    assert data.info.class_names == ["negative", "positive"]
    assert data.info.num_examples == {"train": 100, "test": 100}


# --- files and folders --------------------------------------------------------------------------


def test_glue_folder_with_a_labelled_test_file(tmp_path):
    rows = "".join(f"text {i}\t{i % 2}\n" for i in range(10))
    for name in ("train", "dev", "test"):
        write(tmp_path / f"{name}.tsv", "sentence\tlabel\n" + rows)
    data = load_texts(tmp_path)
    assert data.info.num_examples == {"train": 10, "validation": 10, "test": 10}


def test_csv_with_named_columns_and_class_name_labels(tmp_path):
    csv = write(tmp_path / "reviews.csv",
                "review,stars\n" + '"Great, loved it",pos\nawful,neg\n"meh, ""fine""",neg\nsuperb,pos\n' * 5)
    data = load_texts(csv, text_column="review", label_column="stars", validation_split=0.25)
    assert data.info.class_names == ["neg", "pos"]
    assert data.info.num_examples == {"train": 12, "validation": 4, "test": 4}
    everything = sum((examples(split) for split in data.splits.values()), [])
    assert ('meh, "fine"', 0) in everything and ("Great, loved it", 1) in everything


def test_class_folders_of_txt_files_in_the_aclimdb_layout(tmp_path):
    for split in ("train", "test"):
        for name in ("neg", "pos", "unsup"):
            for i in range(3):
                write(tmp_path / split / name / f"{i}_1.txt", f"{name} review {i}<br />more")
    data = load_texts(tmp_path, class_names=["neg", "pos"])
    assert data.info.class_names == ["neg", "pos"]
    assert data.info.num_examples == {"train": 6, "test": 6}
    assert ("pos review 0<br />more", 1) in examples(data.splits["test"])


def test_arrays_of_strings():
    texts = [f"example {i}" for i in range(20)]
    data = load_texts({"train": (texts, np.arange(20) % 2), "test": (texts[:4], [0, 1, 0, 1])},
                      class_names=["no", "yes"])
    assert data.info.num_examples == {"train": 20, "test": 4}
    assert examples(data.splits["test"])[1] == ("example 1", 1)


# --- bad input: each a DataError naming the file and line, or the field ------------------------


def test_non_utf8_bytes_name_the_file_and_line(tmp_path):
    path = write(tmp_path / "train.tsv", b"sentence\tlabel\ngood\t1\ncaf\xe9 bad\t0\n")
    with pytest.raises(DataError, match=r"train.tsv, line 3: byte 0xe9 at column 4 is not UTF-8"):
        load_texts(tmp_path)
    assert path.exists()


def test_missing_label_column_names_the_columns_found(tmp_path):
    write(tmp_path / "data.tsv", "sentence\tsentiment\ngood\t1\n")
    with pytest.raises(DataError, match=r"data.tsv, line 1: no column 'label'; the header has "
                                        r"columns \['sentence', 'sentiment'\]"):
        load_texts(tmp_path / "data.tsv")


@pytest.mark.parametrize("rows, message", [
    ("good\t1\nbad\t0.5\n", r"line 3: label '0.5' is neither an integer class index nor a class name"),
    ("good\t1\nbad\t\n", r"line 3: label '' is neither"),
    ("good\t1\nbad\tneg\n", r"line 3: label 'neg' is not an integer, but .*line 2 has label '1'"),
])
def test_bad_labels_name_the_line_and_value(tmp_path, rows, message):
    write(tmp_path / "data.tsv", "sentence\tlabel\n" + rows)
    with pytest.raises(DataError, match=message):
        load_texts(tmp_path / "data.tsv")


def test_label_not_among_class_names(tmp_path):
    write(tmp_path / "data.csv", "sentence,label\ngood,pos\nbad,negative\n")
    with pytest.raises(DataError, match=r"data.csv, line 3: label 'negative' is not one of class_names"):
        load_texts(tmp_path / "data.csv", class_names=["neg", "pos"])


def test_a_single_class_in_the_training_data(tmp_path):
    write(tmp_path / "train.tsv", "sentence\tlabel\n" + "good\t1\n" * 5)
    write(tmp_path / "dev.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
    with pytest.raises(DataError, match=r"train.tsv: the training data has class '1' only \(5 examples\)"):
        load_texts(tmp_path)


def test_wrong_field_counts_and_array_types(tmp_path):
    write(tmp_path / "data.tsv", "sentence\tlabel\ngood\t1\textra\n")
    with pytest.raises(DataError, match=r"data.tsv, line 2: 3 fields, but the header has 2"):
        load_texts(tmp_path / "data.tsv")
    with pytest.raises(DataError, match=r"train texts\[1\] is int 7; expected str"):
        load_texts((["fine", 7], [0, 1]))


def test_unknown_source(tmp_path):
    with pytest.raises(DataError, match="not found; tried"):
        load_texts("no-such-corpus", data_root=tmp_path)


# --- TFDS, offline with tfds.testing.mock_data --------------------------------------------------


@pytest.mark.parametrize("name, classes", [("imdb_reviews", 2), ("ag_news_subset", 4), ("glue/sst2", 2)])
def test_tfds_text_datasets_with_mock_data(name, classes):
    # mock_data builds each dataset from its builder's code (real features and class names), but
    # every split yields num_examples whatever the slice.
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        data = load_texts(f"tfds:{name}", validation_split=0.25)
        assert len(data.info.class_names) == classes
        assert data.info.num_examples == {"train": 12, "validation": 12, "test": 12}
        text, label = next(iter(data.splits["train"]))
        assert text.dtype.name == "string" and label.dtype.name == "int32"


# --- tokenizers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["words", "wordpiece"])
def test_tokenizer_learns_saves_and_loads(kind, tmp_path):
    import tensorflow as tf

    texts = tf.data.Dataset.from_tensor_slices(["a good film", "a bad film", "good fun"] * 10)
    tokenizer = Tokenizer.learn(texts, kind=kind, vocabulary_size=200, max_length=6)
    ids = tokenizer.to_numpy(["A good film!", ""])
    assert ids.shape == (2, 6) and ids.dtype == np.int32
    assert ids[0, 0] > 0 and not ids[1].any()                  # "" is all padding
    tokenizer.save(tmp_path / "vocabulary.txt")
    loaded = Tokenizer.load(tmp_path / "vocabulary.txt", kind=kind, max_length=6)
    assert loaded.vocabulary_size == tokenizer.vocabulary_size
    np.testing.assert_array_equal(loaded.to_numpy(["A good film!", ""]), ids)


def test_tokenizer_options_are_checked():
    with pytest.raises(ConfigError, match="data.tokenizer must be one of words, wordpiece; got 'bpe'"):
        Tokenizer(["a"], kind="bpe")
    with pytest.raises(ConfigError, match="data.ngrams"):
        Tokenizer(["a"], kind="wordpiece", ngrams=2)


def test_line_numbers_count_newlines_inside_quoted_csv_fields(tmp_path):
    write(tmp_path / "data.csv", 'sentence,label\n"two\nlines",1\nbad,0.5\n')
    with pytest.raises(DataError, match=r"data.csv, line 4: label '0.5'"):
        load_texts(tmp_path / "data.csv")
