"""Parallel (translation) data: aligned line files (plain and gzip'd, split names mapped), TSV pairs,
arrays, TFDS translation datasets (offline, tfds.testing.mock_data), Multi30k, and a clear
DataError for each kind of bad input."""

import gzip

import pytest

from kdl.data import load_parallel
from kdl.errors import DataError

EN = ["A dog runs.", "Two cats sleep.", "A man reads.", "The sun shines.", "Kids play."]
DE = ["Ein Hund rennt.", "Zwei Katzen schlafen.", "Ein Mann liest.", "Die Sonne scheint.", "Kinder spielen."]


def write(path, lines, zipped=False):
    text = "".join(f"{line}\n" for line in lines).encode("utf-8")
    if zipped:
        path = path.with_name(path.name + ".gz")
        text = gzip.compress(text)
    path.write_bytes(text)
    return path


@pytest.fixture
def line_files(tmp_path):
    for split, count in (("train", 5), ("val", 2), ("test_2016", 3)):
        write(tmp_path / f"{split}.en", EN[:count], zipped=split == "train")
        write(tmp_path / f"{split}.de", DE[:count], zipped=split == "train")
    return tmp_path


def test_line_files_with_mapped_split_names(line_files):
    data = load_parallel(line_files, source_language="en", target_language="de",
                         splits={"validation": "val", "test": "test_2016"})
    assert data.info.num_examples == {"train": 5, "validation": 2, "test": 3}
    assert data.texts("train") == (EN, DE)               # gzip'd train, plain val/test
    reverse = load_parallel(line_files, source_language="de", target_language="en",
                            splits={"validation": "val", "test": "test_2016"})
    assert reverse.texts("test") == (DE[:3], EN[:3])


def test_line_files_with_different_line_counts(line_files):
    write(line_files / "val.de", DE[:3])
    with pytest.raises(DataError, match=r"val\.en has 2 lines but .*val\.de has 3"):
        load_parallel(line_files, splits={"validation": "val", "test": "test_2016"})


def test_empty_line_names_file_and_line(line_files):
    write(line_files / "test_2016.de", [DE[0], "  ", DE[2]])
    with pytest.raises(DataError, match=r"test_2016\.de, line 2: empty line"):
        load_parallel(line_files, splits={"validation": "val", "test": "test_2016"})


def test_missing_split_is_a_clear_error(line_files):
    with pytest.raises(DataError, match=r"no test split: test\.en\[\.gz\] is missing .*splits = \{test"):
        load_parallel(line_files)
    with pytest.raises(DataError, match=r"no validation split: valid\.en"):
        load_parallel(line_files, splits={"validation": "valid", "test": "test_2016"})
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_parallel(line_files, splits={"dev": "val"})


def test_a_folder_of_one_train_pair_holds_out_a_test_split(tmp_path):
    write(tmp_path / "train.en", EN * 5)
    write(tmp_path / "train.de", DE * 5)
    data = load_parallel(tmp_path, validation_split=0.1)
    count = len(EN) * 5
    assert sum(data.info.num_examples.values()) == count and data.info.num_examples["test"] == -(-count // 5)
    sources, targets = data.texts("test")
    assert all(DE[EN.index(source)] == target for source, target in zip(sources, targets))
    write(tmp_path / "test_2016.en", EN)                   # another file: the test split must be named
    with pytest.raises(DataError, match=r"no test split: test\.en\[\.gz\] is missing"):
        load_parallel(tmp_path)
    with pytest.raises(DataError, match=r"no test split: final\.en"):
        load_parallel(tmp_path, splits={"test": "final"})


def test_tsv_pairs_in_the_anki_layout(tmp_path):
    path = tmp_path / "spa.txt"
    path.write_text("".join(f"{en}\t{de}\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i}\n"
                            for i, (en, de) in enumerate(zip(EN * 4, DE * 4))), encoding="utf-8")
    data = load_parallel(path, source_language="en", target_language="es", validation_split=0.25)
    assert data.info.num_examples == {"train": 12, "validation": 4, "test": 4}
    sources, targets = data.texts("train")
    assert all(DE[EN.index(s)] == t for s, t in zip(sources, targets))
    reverse = load_parallel(path, reverse=True)
    assert all(EN[DE.index(s)] == t for s, t in zip(*reverse.texts("test")))


def test_tsv_line_without_a_tab(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text(f"{EN[0]}\t{DE[0]}\n{EN[1]} {DE[1]}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs\.tsv, line 2: expected source<TAB>target"):
        load_parallel(path)


def test_arrays_and_their_errors():
    data = load_parallel({"train": (EN, DE), "test": (EN[:2], DE[:2])})
    assert data.info.num_examples == {"train": 5, "test": 2} and data.info.source == "arrays"
    with pytest.raises(DataError, match="train has 5 source texts but 4 target texts"):
        load_parallel((EN, DE[:4]))
    with pytest.raises(DataError, match=r"train target text \[1\] is ''"):
        load_parallel((EN[:2], [DE[0], ""]))


def test_unknown_source(tmp_path):
    with pytest.raises(DataError, match="not found; tried"):
        load_parallel("no-such-corpus", data_root=tmp_path)


@pytest.mark.parametrize("name, source, target", [("ted_hrlr_translate/pt_to_en", "pt", "en"),
                                                  ("wmt14_translate/de-en", "en", "de")])
def test_tfds_translation_datasets_with_mock_data(name, source, target):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        data = load_parallel(f"tfds:{name}", source_language=source, target_language=target)
        assert data.info.num_examples == {"train": 6, "validation": 6, "test": 6}
        sources, targets = data.texts("train")
        assert all(isinstance(text, str) for text in sources + targets)
        with pytest.raises(DataError, match="no 'fr'"):
            load_parallel(f"tfds:{name}", source_language="fr", target_language=target)


def test_multi30k(shared_data):
    data = load_parallel(shared_data / "multi30k" / "task1_raw", source_language="en", target_language="de",
                         splits={"validation": "val", "test": "test_2016_flickr"})
    assert data.info.num_examples == {"train": 29000, "validation": 1014, "test": 1000}
    sources, targets = data.texts("test")
    assert sources[0] and targets[0][0].isupper()


def test_cased_wordpiece_round_trips_to_readable_text():
    import tensorflow as tf

    from kdl.data import Tokenizer

    texts = ["Ein Mann im T-Shirt liest (ein Buch).", "Zwei Hunde, ein Ball!"] * 20
    tokenizer = Tokenizer.learn(tf.data.Dataset.from_tensor_slices(texts), kind="wordpiece",
                                vocabulary_size=300, max_length=None, lowercase=False)
    ids = tokenizer.to_lists(texts[:2])
    assert len(ids[0]) > 8 and ids[0][0] != ids[1][0]
    assert tokenizer.detokenize(ids) == texts[:2]              # case and punctuation restored
    assert tokenizer.detokenize([[tokenizer.token_id("[CLS]"), *ids[1], tokenizer.token_id("[SEP]"), 0, 0]]) \
        == [texts[1]]
